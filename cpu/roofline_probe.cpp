// The roofline probe: DRAM read bandwidth (a large buffer read once per run with wide loads, 1 and n
// threads) and peak arithmetic (independent chains of FMA / vdpbf16ps / vpdpbusd in registers).
#include "ferry/roofline_probe.h"

#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "cpu/simd.h"
#include "ferry/ops/isa.h"

namespace ferry {

namespace {

using cpu::Isa;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The best of the runs: on a shared machine a run can only be slowed down, and a roofline is what the
// machine can do (a median let a probe taken in a slow minute report less than ops measured later in a
// fast one, i.e. more than 100% of "peak").
double best(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

// Reads [p, p + bytes) as `streams` equal sub-ranges advanced together, one 64-byte line of each per
// step (1: one sequential stream, 256 bytes per step).
FERRY_TARGET_AVX512 uint64_t read_avx512(const uint8_t* p, size_t bytes, int streams) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  if (streams == 1) {
    for (size_t i = 0; i + 256 <= bytes; i += 256) {
      a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
      a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
      a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
      a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
    }
  } else {
    const size_t part = bytes / streams / 64 * 64;
    for (size_t i = 0; i + 64 <= part; i += 64)
      for (int s = 0; s + 4 <= streams; s += 4) {
        a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + (s + 0) * part + i));
        a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + (s + 1) * part + i));
        a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + (s + 2) * part + i));
        a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + (s + 3) * part + i));
      }
  }
  const __m512i a = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  return static_cast<uint64_t>(_mm512_reduce_or_epi64(a));
}

FERRY_TARGET_AVX2 uint64_t read_avx2(const uint8_t* p, size_t bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= bytes; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  return static_cast<uint64_t>(_mm256_extract_epi64(a, 0) | _mm256_extract_epi64(a, 3));
}

uint64_t read_scalar(const uint8_t* p, size_t bytes) {
  uint64_t a = 0;
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    a ^= v;
  }
  return a;
}

uint64_t read_range(Isa isa, const uint8_t* p, size_t bytes, int streams) {
  if (isa == Isa::Avx512) return read_avx512(p, bytes, streams);
  if (isa == Isa::Avx2) return read_avx2(p, bytes);
  return read_scalar(p, bytes);
}

// GB/s reading `bytes` of buf with n_threads, in 4 MiB chunks handed out dynamically, each chunk read
// as `streams` sub-ranges at once.
double dram_read_gbps(Isa isa, const uint8_t* buf, size_t bytes, int n_threads, int repeats, int streams) {
  constexpr size_t kChunk = 4 << 20;
  const int64_t n_chunk = static_cast<int64_t>(bytes / kChunk);
  std::vector<double> runs;
  volatile uint64_t sink = 0;
  for (int r = 0; r < repeats; ++r) {
    uint64_t acc = 0;
    const double t0 = now_s();
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1) reduction(^ : acc)
    for (int64_t c = 0; c < n_chunk; ++c) acc ^= read_range(isa, buf + c * kChunk, kChunk, streams);
    runs.push_back(static_cast<double>(n_chunk * kChunk) / (now_s() - t0) / 1e9);
    sink = sink ^ acc;
  }
  (void)sink;
  return best(runs);
}

constexpr int kChains = 12;
constexpr int64_t kIters = 4'000'000;

FERRY_TARGET_AVX512 double fma_f32_avx512(int64_t iters) {
  __m512 a[kChains];
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
  for (int c = 0; c < kChains; ++c) a[c] = _mm512_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) a[c] = _mm512_fmadd_ps(a[c], x, y);
  float s = 0;
  for (int c = 0; c < kChains; ++c) s += _mm512_reduce_add_ps(a[c]);
  return s;
}

FERRY_TARGET_AVX2 double fma_f32_avx2(int64_t iters) {
  __m256 a[kChains];
  const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-7f);
  for (int c = 0; c < kChains; ++c) a[c] = _mm256_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) a[c] = _mm256_fmadd_ps(a[c], x, y);
  alignas(32) float lanes[8];
  float s = 0;
  for (int c = 0; c < kChains; ++c) {
    _mm256_store_ps(lanes, a[c]);
    s += lanes[0];
  }
  return s;
}

FERRY_TARGET_AVX512 double dp_bf16_avx512(int64_t iters) {
  __m512 a[kChains];
  const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x33803380);
  for (int c = 0; c < kChains; ++c) a[c] = _mm512_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) a[c] = _mm512_dpbf16_ps(a[c], x, y);
  float s = 0;
  for (int c = 0; c < kChains; ++c) s += _mm512_reduce_add_ps(a[c]);
  return s;
}

FERRY_TARGET_AVX512 double dp_int8_avx512(int64_t iters) {
  __m512i a[kChains];
  const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(-1);
  for (int c = 0; c < kChains; ++c) a[c] = _mm512_set1_epi32(c);
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) a[c] = _mm512_dpbusd_epi32(a[c], x, y);
  int64_t s = 0;
  for (int c = 0; c < kChains; ++c) s += _mm512_reduce_add_epi32(a[c]);
  return static_cast<double>(s);
}

// AMX: 4 independent C tiles (16x16 f32) += A (16x32 bf16) . B (16 pairs x 16 x 2), all in registers:
// 16384 flops per tdpbf16ps.
#define FERRY_PROBE_TARGET_AMX \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2")))

struct alignas(64) ProbeTileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

constexpr int kAmxChains = 4;

FERRY_PROBE_TARGET_AMX double dp_amx_bf16(int64_t iters) {
  ProbeTileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  asm volatile("" : : "r"(&cfg) : "memory");  // GCC 12 may otherwise drop the stores as dead
  _tile_loadconfig(&cfg);
  alignas(64) static const uint16_t ones[16 * 32] = {};
  _tile_loadd(4, ones, 64);
  _tile_loadd(5, ones, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  // kChains x iters / kAmxChains products in total, so the caller's op count formula holds.
  const int64_t n = iters * kChains / kAmxChains;
  for (int64_t i = 0; i < n; ++i) {
    _tile_dpbf16ps(0, 4, 5);
    _tile_dpbf16ps(1, 4, 5);
    _tile_dpbf16ps(2, 4, 5);
    _tile_dpbf16ps(3, 4, 5);
  }
  alignas(64) float c[16 * 16];
  _tile_stored(0, c, 64);
  _tile_release();
  return c[0];
}

// Runs `kernel` on every thread at once; returns operations per second over all threads.
template <typename Kernel>
double peak_ops(Kernel kernel, double ops_per_iter_chain, int n_threads, int repeats) {
  std::vector<double> runs;
  volatile double sink = 0;
  kernel(kIters / 10);  // warm up (clock ramp)
  for (int r = 0; r < repeats; ++r) {
    double acc = 0;
    const double t0 = now_s();
#pragma omp parallel num_threads(n_threads) reduction(+ : acc)
    acc += kernel(kIters);
    const double dt = now_s() - t0;
    sink = sink + acc;
    runs.push_back(ops_per_iter_chain * kChains * kIters * n_threads / dt);
  }
  (void)sink;
  return best(runs);
}

std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

// "48K", "2048K", "300M" -> bytes (0 if unreadable).
size_t parse_size(const std::string& s) {
  if (s.empty()) return 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  const char unit = end && *end ? *end : 'B';
  return static_cast<size_t>(v) * (unit == 'K' ? 1024 : unit == 'M' ? 1024 * 1024 : unit == 'G' ? 1024ull << 20 : 1);
}

// The highest-level data or unified cache in sysfs, times the number of distinct instances over the
// online CPUs.
size_t llc_from_sysfs() {
  const std::string cpu0 = "/sys/devices/system/cpu/cpu0/cache/index";
  int best_index = -1, best_level = 0;
  size_t best_size = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string type = read_line(cpu0 + std::to_string(i) + "/type");
    if (type.empty()) break;
    if (type == "Instruction") continue;
    const int level = std::atoi(read_line(cpu0 + std::to_string(i) + "/level").c_str());
    const size_t size = parse_size(read_line(cpu0 + std::to_string(i) + "/size"));
    if (level > best_level && size > 0) {
      best_level = level;
      best_index = i;
      best_size = size;
    }
  }
  if (best_index < 0) return 0;
  std::set<std::string> instances;
  const long n_cpu = sysconf(_SC_NPROCESSORS_CONF);
  for (long c = 0; c < std::max(1L, n_cpu); ++c) {
    const std::string shared = read_line("/sys/devices/system/cpu/cpu" + std::to_string(c) + "/cache/index" +
                                         std::to_string(best_index) + "/shared_cpu_list");
    if (!shared.empty()) instances.insert(shared);
  }
  return best_size * std::max<size_t>(1, instances.size());
}

}  // namespace

size_t last_level_cache_bytes() {
  static const size_t bytes = [] {
    size_t b = llc_from_sysfs();
#ifdef _SC_LEVEL3_CACHE_SIZE
    if (b == 0) b = static_cast<size_t>(std::max(0L, sysconf(_SC_LEVEL3_CACHE_SIZE)));
    if (b == 0) b = static_cast<size_t>(std::max(0L, sysconf(_SC_LEVEL2_CACHE_SIZE)));
#endif
    return b > 0 ? b : size_t{32} << 20;
  }();
  return bytes;
}

size_t cold_working_set_bytes() {
  if (const char* mib = std::getenv("FERRY_COLD_MIB"))  // override, to measure how much the figures depend on it
    if (std::atof(mib) > 0) return static_cast<size_t>(std::atof(mib) * 1048576.0);
  return std::max(2 * last_level_cache_bytes() + (size_t{16} << 20), size_t{256} << 20);
}

Roofline probe_roofline(const RooflineOptions& options) {
  Roofline r;
  r.n_threads = options.n_threads > 0 ? options.n_threads : omp_get_max_threads();
  const Isa isa = cpu::active_isa();
  r.isa = cpu::isa_name(isa);
  const int repeats = std::max(1, options.repeats);

  r.llc_bytes = last_level_cache_bytes();
  const size_t want = options.buffer_mib > 0 ? static_cast<size_t>(options.buffer_mib * 1024 * 1024)
                                             : std::max(size_t{1} << 30, 4 * r.llc_bytes);
  const size_t bytes = (std::max(want, 4 * r.llc_bytes) + (size_t{2} << 20) - 1) / (size_t{2} << 20) * (size_t{2} << 20);
  r.buffer_bytes = bytes;
  uint8_t* buf = static_cast<uint8_t*>(std::aligned_alloc(size_t{2} << 20, bytes));
  if (!buf) throw std::bad_alloc();
  madvise(buf, bytes, MADV_HUGEPAGE);  // as the packed weights: transparent huge pages where enabled
#pragma omp parallel for num_threads(r.n_threads) schedule(static)
  for (int64_t i = 0; i < static_cast<int64_t>(bytes / 4096); ++i) std::memset(buf + i * 4096, static_cast<int>(i), 4096);
  // The best of one sequential stream and 4 or 8 concurrent streams per thread (the matmul kernels read
  // 1-4 panels at once): the bandwidth a well-behaved kernel can reach.
  dram_read_gbps(isa, buf, bytes, r.n_threads, 1, 1);  // warm up
  for (int streams : {1, 4, 8}) {
    r.dram_read_gbps_1t = std::max(r.dram_read_gbps_1t, dram_read_gbps(isa, buf, bytes, 1, repeats, streams));
    r.dram_read_gbps = std::max(r.dram_read_gbps, dram_read_gbps(isa, buf, bytes, r.n_threads, repeats, streams));
  }
  std::free(buf);

  if (isa == Isa::Avx512) {
    r.peak_gflops_f32 = peak_ops(fma_f32_avx512, 32, r.n_threads, repeats) / 1e9;
    r.peak_gflops_bf16 = peak_ops(dp_bf16_avx512, 64, r.n_threads, repeats) / 1e9;
    r.peak_gops_int8 = peak_ops(dp_int8_avx512, 128, r.n_threads, repeats) / 1e9;
    if (cpu::amx_active())  // kIters / 10 x kChains products of 16384 flops per thread and run
      r.peak_gflops_amx_bf16 = peak_ops([](int64_t it) { return dp_amx_bf16(it / 10); }, 16384.0 / 10, r.n_threads,
                                        repeats) / 1e9;
  } else if (isa == Isa::Avx2) {
    r.peak_gflops_f32 = peak_ops(fma_f32_avx2, 16, r.n_threads, repeats) / 1e9;
  } else {
    r.peak_gflops_f32 = 0;  // not measured for plain C++
  }
  return r;
}

std::string Roofline::describe() const {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "threads %d (%s): DRAM read %.1f GB/s (1 thread %.1f; %.0f MiB buffer, LLC %.0f MiB); peak f32 %.0f "
                "GFLOP/s, bf16 %.0f GFLOP/s, int8 %.0f GOP/s",
                n_threads, isa.c_str(), dram_read_gbps, dram_read_gbps_1t, buffer_bytes / 1048576.0,
                llc_bytes / 1048576.0, peak_gflops_f32, peak_gflops_bf16, peak_gops_int8);
  if (peak_gflops_amx_bf16 > 0) {
    const size_t used = std::strlen(buf);
    std::snprintf(buf + used, sizeof buf - used, ", AMX bf16 %.0f GFLOP/s", peak_gflops_amx_bf16);
  }
  return buf;
}

}  // namespace ferry
