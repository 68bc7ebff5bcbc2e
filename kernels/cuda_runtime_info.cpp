// Asks the CUDA runtime how many GPUs there are. With no driver (a build machine, CI) the call
// returns an error and leaves the count unwritten, so the count is initialised and the code checked.
#include "kernels/cuda_runtime_info.h"

#include <cuda_runtime.h>

namespace ferry::cuda {

int device_count() { return device_count(nullptr); }

int device_count(std::string* why_none) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    if (why_none)
      *why_none = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(err) + " (" + cudaGetErrorName(err) +
                  ")";
    return 0;
  }
  if (count == 0 && why_none) *why_none = "the CUDA runtime reports no GPU";
  return count;
}

}  // namespace ferry::cuda
