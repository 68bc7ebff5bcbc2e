// What the CUDA runtime says about this machine, without creating a device.
#pragma once
#include <string>

namespace ferry::cuda {
// Number of usable CUDA devices; 0 when there is no driver or no GPU.
int device_count();
// The same, and when there are none, why: the failing call and its result, e.g.
// "cudaGetDeviceCount failed: no CUDA-capable device is detected (cudaErrorNoDevice)".
int device_count(std::string* why_none);
}  // namespace ferry::cuda
