// The planner's HardwareProfile (ferry/planner/hardware_profile.h) of this machine with a CUDA device,
// for `--policy auto` on a cuda target:
//   GPU   name and capacity from the device (its arena capacity, after any capacity= cap); memory
//         bandwidth from the memory clock and bus width; peaks from the SM count, the SM clock and the
//         per-SM rates of the architecture (dense tensor-core bf16/fp16 with fp32 accumulation; fp32 FMA).
//   links H2D / D2H: the h2d= / d2h= caps when given, else measured once per GPU and process by timed
//         pinned copies of 256 MiB (64 MiB when that does not fit; 25 GB/s, labelled assumed, when no
//         copy can be made).
//   host  the planner's host description (the cpu-server preset: DRAM bandwidth, CPU peaks, SSD) with
//         this machine's core count and DRAM size.
#pragma once
#include "ferry/device.h"
#include "ferry/planner/hardware_profile.h"

namespace ferry::cuda {

class CudaDevice;

planner::HardwareProfile cuda_hardware(const CudaDevice& device);
// `device` must be a CudaDevice (create_device("cuda...")); throws ferry::Error otherwise.
planner::HardwareProfile cuda_hardware(Device& device);

}  // namespace ferry::cuda
