// The HardwareProfile of a CUDA device (cuda_hardware.h).
#include "kernels/cuda_hardware.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "ferry/error.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_device.h"

namespace ferry::cuda {

namespace {

// Dense tensor-core bf16 (fp16 on sm_75) FLOPs per SM per clock with fp32 accumulation, and fp32 FMA
// FLOPs per SM per clock. Checked against datasheets: T4 65, A100 312, A10 125, L4 121, H100 SXM 989 TFLOPS.
struct SmRates {
  double tensor, fp32;
};
SmRates sm_rates(int major, int minor) {
  if (major == 7) return {1024, 128};
  if (major == 8 && minor == 0) return {2048, 128};
  if (major == 8) return {1024, 256};
  if (major == 9) return {4096, 256};
  if (major == 10) return {8192, 256};
  return {1024, 256};  // newer consumer parts: a conservative guess
}

struct Pcie {
  double h2d = 0, d2h = 0;
  std::string source;
};

// Best of 3 timed pinned copies each way after a warm-up. Throws on a CUDA failure.
Pcie measure_pcie() {
  size_t bytes = size_t{256} << 20;
  void* dev = nullptr;
  if (cudaMalloc(&dev, bytes) != cudaSuccess) {
    cudaGetLastError();
    bytes = size_t{64} << 20;
    FERRY_CUDA_CHECK(cudaMalloc(&dev, bytes));
  }
  void* host = nullptr;
  cudaStream_t s = nullptr;
  cudaEvent_t a = nullptr, b = nullptr;
  Pcie p;
  try {
    FERRY_CUDA_CHECK(cudaHostAlloc(&host, bytes, cudaHostAllocDefault));
    FERRY_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    FERRY_CUDA_CHECK(cudaEventCreate(&a));
    FERRY_CUDA_CHECK(cudaEventCreate(&b));
    auto rate = [&](void* dst, const void* src, cudaMemcpyKind kind) {
      double best = 0;
      for (int r = 0; r < 4; ++r) {
        FERRY_CUDA_CHECK(cudaEventRecord(a, s));
        FERRY_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));
        FERRY_CUDA_CHECK(cudaEventRecord(b, s));
        FERRY_CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        FERRY_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        if (r > 0 && ms > 0) best = std::max(best, static_cast<double>(bytes) / (ms * 1e-3) / 1e9);  // r 0: warm-up
      }
      return best;
    };
    p.h2d = rate(dev, host, cudaMemcpyHostToDevice);
    p.d2h = rate(host, dev, cudaMemcpyDeviceToHost);
    p.source = "measured at startup: pinned copies of " + std::to_string(bytes >> 20) + " MiB";
  } catch (...) {
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    if (s) cudaStreamDestroy(s);
    if (host) cudaFreeHost(host);
    cudaFree(dev);
    throw;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaStreamDestroy(s);
  cudaFreeHost(host);
  cudaFree(dev);
  return p;
}

// Once per GPU and process.
Pcie pcie_of(int ordinal) {
  static std::mutex mutex;
  static std::map<int, Pcie> measured;
  std::lock_guard lock(mutex);
  auto it = measured.find(ordinal);
  if (it != measured.end()) return it->second;
  Pcie p;
  try {
    p = measure_pcie();
  } catch (const Error& e) {
    cudaGetLastError();
    p = {25.0, 25.0, std::string("assumed PCIe 4.0 x16 (the copy measurement failed: ") + e.what() + ")"};
  }
  measured[ordinal] = p;
  return p;
}

}  // namespace

planner::HardwareProfile cuda_hardware(const CudaDevice& device) {
  device.make_current();
  const int ordinal = device.ordinal();
  cudaDeviceProp prop{};
  FERRY_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal));
  int sm_clock_khz = 0, mem_clock_khz = 0, bus_bits = 0;
  FERRY_CUDA_CHECK(cudaDeviceGetAttribute(&sm_clock_khz, cudaDevAttrClockRate, ordinal));
  FERRY_CUDA_CHECK(cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, ordinal));
  FERRY_CUDA_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, ordinal));

  planner::HardwareProfile hw = planner::hardware_preset("cpu-server");  // the host side
  hw.name = device.info().name;
  hw.description = device.info().name + " (compute capability " + std::to_string(prop.major) + "." +
                   std::to_string(prop.minor) + ", " + std::to_string(prop.multiProcessorCount) + " SMs) on this host";

  planner::MemoryLevel gpu;
  gpu.name = prop.name;
  gpu.capacity_bytes = static_cast<double>(device.info().capacity_bytes);
  gpu.bandwidth_gbps = 2.0 * mem_clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;  // double data rate
  const SmRates r = sm_rates(prop.major, prop.minor);
  const double clock_hz = sm_clock_khz * 1e3, sms = prop.multiProcessorCount;
  gpu.peak.bf16_tflops = sms * clock_hz * r.tensor / 1e12;
  gpu.peak.fp32_tflops = sms * clock_hz * r.fp32 / 1e12;
  gpu.peak.int8_tops = 2 * gpu.peak.bf16_tflops;
  gpu.usable_fraction = 0.9;
  char src[256];
  std::snprintf(src, sizeof src,
                "cudaGetDeviceProperties: %d SMs at %.0f MHz, memory %.0f MHz x %d bits; capacity = the device's "
                "arena",
                prop.multiProcessorCount, sm_clock_khz / 1e3, mem_clock_khz / 1e3, bus_bits);
  gpu.source = src;
  hw.gpu = gpu;

  const DeviceInfo& info = device.info();
  if (info.h2d_gbps > 0 && info.d2h_gbps > 0) {
    hw.links.h2d_gbps = info.h2d_gbps;
    hw.links.d2h_gbps = info.d2h_gbps;
    hw.links.source = "the target's h2d= / d2h= caps";
  } else {
    const Pcie p = pcie_of(ordinal);
    hw.links.h2d_gbps = info.h2d_gbps > 0 ? info.h2d_gbps : p.h2d;
    hw.links.d2h_gbps = info.d2h_gbps > 0 ? info.d2h_gbps : p.d2h;
    hw.links.source = p.source + (info.h2d_gbps > 0 || info.d2h_gbps > 0 ? "; capped by the target" : "");
  }

  hw.cpu.cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  hw.cpu.capacity_bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  hw.cpu.source += "; cores and DRAM size of this machine";
  return hw;
}

planner::HardwareProfile cuda_hardware(Device& device) {
  const auto* cuda = dynamic_cast<const CudaDevice*>(&device);
  if (!cuda) throw Error("device " + device.info().name + " is not a CUDA device");
  return cuda_hardware(*cuda);
}

}  // namespace ferry::cuda
