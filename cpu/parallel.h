// Internal to cpu/: split [0, n) over the OpenMP threads when there is enough work to pay for waking
// them (work_bytes: roughly the bytes the whole range touches).
#pragma once
#include <omp.h>

#include <cstddef>
#include <cstdint>

namespace ferry::cpu {

inline constexpr size_t kParallelMinWorkBytes = 128 * 1024;

template <typename Fn>
void parallel_range(int64_t n, size_t work_bytes, Fn&& fn) {
  if (n <= 0) return;
  const int max_threads = omp_get_max_threads();
  if (max_threads <= 1 || n == 1 || work_bytes < kParallelMinWorkBytes || omp_in_parallel()) {
    fn(int64_t{0}, n);
    return;
  }
  const int n_threads = static_cast<int>(n < max_threads ? n : max_threads);
#pragma omp parallel num_threads(n_threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) fn(begin, end);
  }
}

}  // namespace ferry::cpu
