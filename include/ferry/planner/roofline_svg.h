// The roofline picture of a plan as an SVG: the roofs of every level and of the links, the turning
// points P1 and P2, and where decode attention and the MoE FFN sit at the chosen N and μ.
#pragma once
#include <string>

#include "ferry/planner/cost_model.h"

namespace ferry::planner {

std::string roofline_svg(const ModelShape& shape, const HardwareProfile& hw, const Policy& policy);

}  // namespace ferry::planner
