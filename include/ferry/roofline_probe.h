// Measures this machine's CPU roofline: DRAM read bandwidth with 1 and n threads, and peak arithmetic
// throughput per dtype (register-resident FMA / dot-product loops at the best ISA level). Used by the op
// harness to report the fraction of the roofline each op reaches, and by `ferry probe`.
#pragma once
#include <cstddef>
#include <string>

namespace ferry {

// Bytes of last-level cache on this machine, all instances together (e.g. every CCD's L3 on a Zen part),
// from sysfs (else sysconf, else 32 MiB). A benchmark that claims DRAM bandwidth must read more than this
// between two reads of the same byte; on a Xeon with a 300 MiB L3 a "DRAM-bound" 100 MB matrix read
// twice in a row is mostly a cache benchmark.
size_t last_level_cache_bytes();

// Bytes a DRAM-bound benchmark should cycle through so every repetition reads cold data: more than twice
// the last-level cache, and at least 256 MiB (FERRY_COLD_MIB in the environment overrides it).
size_t cold_working_set_bytes();

struct RooflineOptions {
  int n_threads = 0;             // 0: omp_get_max_threads()
  // DRAM read buffer. 0: max(1 GiB, 4x the last-level cache). An explicit size is raised to at least
  // 4x the last-level cache, so the figure is never a cache bandwidth.
  double buffer_mib = 0;
  int repeats = 5;               // each figure is the best of this many runs
};

struct Roofline {
  int n_threads = 0;
  double dram_read_gbps_1t = 0;  // GB/s (1e9 bytes/s), one thread
  double dram_read_gbps = 0;     // GB/s, n_threads
  double peak_gflops_f32 = 0;    // FMA, n_threads
  double peak_gflops_bf16 = 0;   // vdpbf16ps (0 without AVX-512 BF16)
  double peak_gops_int8 = 0;     // vpdpbusd  (0 without AVX-512 VNNI)
  double peak_gflops_amx_bf16 = 0;  // tdpbf16ps on tile-resident data (0 unless amx_active())
  std::string isa;               // ISA level the peaks were measured at
  size_t llc_bytes = 0;          // last_level_cache_bytes()
  size_t buffer_bytes = 0;       // the DRAM read buffer actually used
  std::string describe() const;
};

Roofline probe_roofline(const RooflineOptions& options = {});

}  // namespace ferry
