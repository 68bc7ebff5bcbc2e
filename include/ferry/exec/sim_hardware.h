// The hardware profile a `sim:<profile>[,scale=X][,h2d=GBps][,d2h=GBps]` device emulates: the preset
// (or profile JSON) with its GPU capacity scaled and its link bandwidths overridden as the target says,
// so that the planner plans for, and predicts, exactly the device a run uses.
#pragma once
#include <string>

#include "ferry/planner/hardware_profile.h"

namespace ferry {

// Throws ferry::Error for a target that is not `sim:...`, an unknown profile or option, or a profile
// without a GPU. The profile's name is set to the target.
planner::HardwareProfile sim_hardware(const std::string& target);

}  // namespace ferry
