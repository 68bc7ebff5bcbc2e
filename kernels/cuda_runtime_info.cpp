// Asks the CUDA runtime how many GPUs there are. With no driver (a build machine, CI) the call
// returns an error and leaves the count unwritten, so the count is initialised and the code checked.
#include <cuda_runtime.h>

#include "kernels/cuda_runtime_info.h"

namespace ferry::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  return count;
}

}  // namespace ferry::cuda
