#pragma once
namespace ferry::cuda {
// Number of usable CUDA devices; 0 when there is no driver or no GPU.
int device_count();
}  // namespace ferry::cuda
