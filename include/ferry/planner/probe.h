// `ferry probe`: measures this machine and returns a HardwareProfile whose figures are measured, not
// taken from a datasheet: DRAM read bandwidth and CPU peaks (the CPU roofline probe), CPU GEMM throughput
// at the micro-batch sizes the planner considers, CPU decode-attention KV read rate, SSD O_DIRECT read
// bandwidth on a chosen directory, and with a CUDA build and a GPU: pinned H2D/D2H, device memory
// bandwidth and GEMM throughput.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "ferry/planner/hardware_profile.h"

namespace ferry::planner {

struct ProbeOptions {
  std::string ssd_path;                         // directory on the SSD to test; empty: no SSD measurement
  int64_t ssd_bytes = 1ll << 30;                // size of the temporary file read back with O_DIRECT
  bool quick = false;                           // smaller buffers and fewer repeats (tests, CI)
  std::function<void(const std::string&)> log;  // progress lines; may be empty
};

HardwareProfile probe_machine(const ProbeOptions& options);

// Pieces, exposed for tests.
struct SsdProbe {
  double read_gbps = 0;
  double free_bytes = 0;
  std::string method;  // "io_uring QD8 4 MiB O_DIRECT" or "pread 4 MiB O_DIRECT"
};
// Writes `bytes` to a temporary file in `dir`, reads it back with O_DIRECT in 4 MiB blocks and deletes it.
// Throws ferry::Error when the directory is not writable or does not support O_DIRECT (tmpfs).
SsdProbe probe_ssd(const std::string& dir, int64_t bytes, int repeats);

struct GpuProbe {
  bool present = false;
  std::string name;
  double memory_bytes = 0;
  double memory_gbps = 0, h2d_gbps = 0, d2h_gbps = 0, bf16_tflops = 0;
  std::string note;  // why nothing was measured, when present is false
};
GpuProbe probe_gpu(bool quick);

}  // namespace ferry::planner
