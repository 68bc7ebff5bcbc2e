// Measures this machine's CPU roofline: DRAM read bandwidth with 1 and n threads, and peak arithmetic
// throughput per dtype (register-resident FMA / dot-product loops at the best ISA level). Used by the op
// harness to report the fraction of the roofline each op reaches, and by `ferry probe`.
#pragma once
#include <string>

namespace ferry {

struct RooflineOptions {
  int n_threads = 0;             // 0: omp_get_max_threads()
  double buffer_mib = 512;       // DRAM read buffer (well above the last-level cache)
  int repeats = 5;               // each figure is the median of this many runs
};

struct Roofline {
  int n_threads = 0;
  double dram_read_gbps_1t = 0;  // GB/s (1e9 bytes/s), one thread
  double dram_read_gbps = 0;     // GB/s, n_threads
  double peak_gflops_f32 = 0;    // FMA, n_threads
  double peak_gflops_bf16 = 0;   // vdpbf16ps (0 without AVX-512 BF16)
  double peak_gops_int8 = 0;     // vpdpbusd  (0 without AVX-512 VNNI)
  std::string isa;               // ISA level the peaks were measured at
  std::string describe() const;
};

Roofline probe_roofline(const RooflineOptions& options = {});

}  // namespace ferry
