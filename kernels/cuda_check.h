// Every CUDA runtime and cuBLAS call goes through one checking macro that throws ferry::Error
// with the call, the file and the line.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "ferry/error.h"

#define FERRY_CUDA_CHECK(call)                                                                  \
  do {                                                                                          \
    cudaError_t ferry_err_ = (call);                                                            \
    if (ferry_err_ != cudaSuccess)                                                              \
      throw ::ferry::Error(std::string("CUDA call ") + #call + " failed at " + __FILE__ + ":" + \
                           std::to_string(__LINE__) + ": " + cudaGetErrorString(ferry_err_));   \
  } while (0)

#define FERRY_CUBLAS_CHECK(call)                                                                   \
  do {                                                                                             \
    cublasStatus_t ferry_st_ = (call);                                                             \
    if (ferry_st_ != CUBLAS_STATUS_SUCCESS)                                                        \
      throw ::ferry::Error(std::string("cuBLAS call ") + #call + " failed at " + __FILE__ + ":" + \
                           std::to_string(__LINE__) + ": status " + std::to_string(ferry_st_));    \
  } while (0)
