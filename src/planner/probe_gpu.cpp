// GPU side of `ferry probe` (CUDA builds): pinned host<->device copy rates, device memory bandwidth
// (device-to-device copy: each byte read once and written once) and bf16 GEMM throughput (cuBLAS).
// Without CUDA, or with no usable device, it reports why and measures nothing.
#include "ferry/planner/probe.h"

#ifdef FERRY_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda_runtime_info.h"
#endif

namespace ferry::planner {

#ifndef FERRY_HAVE_CUDA

GpuProbe probe_gpu(bool) {
  GpuProbe g;
  g.note = "this ferry was built without CUDA (FERRY_CUDA=OFF or no nvcc)";
  return g;
}

#else

namespace {

// Seconds per call of `op` on the default stream, the median of `reps` timed with events.
template <typename Op>
double time_op(Op op, int reps) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  op();  // warm up
  std::vector<double> runs;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(a);
    op();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    runs.push_back(ms / 1e3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

}  // namespace

GpuProbe probe_gpu(bool quick) {
  GpuProbe g;
  if (ferry::cuda::device_count() == 0) {
    g.note = "the CUDA runtime reports no usable device";
    return g;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    cudaGetLastError();
    g.note = "cudaGetDeviceProperties failed";
    return g;
  }
  g.name = prop.name;
  g.memory_bytes = static_cast<double>(prop.totalGlobalMem);
  const size_t bytes = (quick ? 64ull : 512ull) << 20;
  const int reps = quick ? 3 : 10;
  void *host = nullptr, *dev_a = nullptr, *dev_b = nullptr;
  if (cudaMallocHost(&host, bytes) != cudaSuccess || cudaMalloc(&dev_a, bytes) != cudaSuccess ||
      cudaMalloc(&dev_b, bytes) != cudaSuccess) {
    cudaGetLastError();
    if (host) cudaFreeHost(host);
    if (dev_a) cudaFree(dev_a);
    g.note = "could not allocate probe buffers";
    return g;
  }
  g.h2d_gbps =
      bytes / time_op([&] { cudaMemcpyAsync(dev_a, host, bytes, cudaMemcpyHostToDevice); }, reps) / 1e9;
  g.d2h_gbps =
      bytes / time_op([&] { cudaMemcpyAsync(host, dev_a, bytes, cudaMemcpyDeviceToHost); }, reps) / 1e9;
  g.memory_gbps = 2.0 * bytes /
                  time_op([&] { cudaMemcpyAsync(dev_b, dev_a, bytes, cudaMemcpyDeviceToDevice); }, reps) /
                  1e9;

  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS) {
    const int n = 8192;  // square bf16 GEMM within the probe buffers: 3 x 128 MiB
    size_t need = static_cast<size_t>(n) * n * 2;
    void* dev_c = nullptr;
    if (need <= bytes && cudaMalloc(&dev_c, need) == cudaSuccess) {
      float alpha = 1, beta = 0;
      double s = time_op(
          [&] {
            cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, dev_a, CUDA_R_16BF, n, dev_b,
                         CUDA_R_16BF, n, &beta, dev_c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT);
          },
          reps);
      g.bf16_tflops = 2.0 * n * n * n / s / 1e12;
      cudaFree(dev_c);
    }
    cublasDestroy(handle);
  }
  cudaFree(dev_a);
  cudaFree(dev_b);
  cudaFreeHost(host);
  g.present = g.h2d_gbps > 0 && g.memory_gbps > 0 && g.bf16_tflops > 0;
  if (!g.present) g.note = "the GEMM or copy measurements failed";
  return g;
}

#endif

}  // namespace ferry::planner
