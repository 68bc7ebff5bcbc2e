// The op harness: every op case declares its parameters, FLOPs, bytes and a tolerance (NMSE by dtype);
// check mode runs the op on every backend against the reference, with guard bytes around the outputs:
// the cpu ops at every ISA level this CPU has, and the CUDA kernels (cuda_backend.h) where the case has a
// CUDA implementation and there is a GPU (otherwise reported as skipped, never as passed); perf mode times
// the cpu implementation and reports GFLOP/s, GB/s and the fraction of this machine's measured roofline.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ferry/dtype.h"
#include "ferry/ops/packed_matrix.h"

namespace ferry::ops_test {

// A buffer of n elements with guard zones before and after, so an overrun of the op is caught.
template <typename T>
class Guarded {
 public:
  static constexpr size_t kGuardBytes = 256;
  static constexpr uint8_t kPattern = 0xa5;

  Guarded() = default;
  explicit Guarded(size_t n) : n_(n), raw_(kGuardBytes * 2 + n * sizeof(T) + 64) {
    offset_ = kGuardBytes + (64 - reinterpret_cast<uintptr_t>(raw_.data() + kGuardBytes) % 64) % 64;
    std::memset(raw_.data(), kPattern, raw_.size());
  }
  T* data() { return reinterpret_cast<T*>(raw_.data() + offset_); }
  const T* data() const { return reinterpret_cast<const T*>(raw_.data() + offset_); }
  size_t size() const { return n_; }
  T& operator[](size_t i) { return data()[i]; }
  const T& operator[](size_t i) const { return data()[i]; }
  bool intact() const {
    for (size_t i = 0; i < offset_; ++i)
      if (raw_[i] != kPattern) return false;
    for (size_t i = offset_ + n_ * sizeof(T); i < raw_.size(); ++i)
      if (raw_[i] != kPattern) return false;
    return true;
  }
  void assign(const std::vector<T>& v) { std::memcpy(data(), v.data(), sizeof(T) * n_); }
  void fill(T v) {
    for (size_t i = 0; i < n_; ++i) data()[i] = v;
  }

 private:
  size_t n_ = 0;
  size_t offset_ = 0;
  std::vector<uint8_t> raw_;
};

// One output of an op, compared by NMSE (floats) or exactly (integers).
struct OutputCheck {
  std::string name;
  const float* fast = nullptr;
  const float* ref = nullptr;
  const int32_t* fast_int = nullptr;
  const int32_t* ref_int = nullptr;
  size_t n = 0;
  bool guards_intact = true;
};

// Where a case runs: the cpu ops (run_fast, at each ISA level) or the CUDA kernels on host arrays.
enum class Backend { Cpu, Cuda };

// Which peak bounds the op: its element type of arithmetic.
enum class Peak { F32, Bf16, Int8 };

// A performance target of the issue this case measures: `fraction` of the measured DRAM read bandwidth
// (in the case's bytes) or of the measured peak of its Peak type.
struct Target {
  std::string what;
  double fraction = 0;
  bool of_bandwidth = true;
};

class OpCase {
 public:
  virtual ~OpCase() = default;
  virtual std::string op() const = 0;      // "matmul": what --filter matches
  virtual std::string params() const = 0;  // "w=bf16 m=1 n=4096 k=14336"
  virtual double flops() const = 0;
  virtual double bytes() const = 0;        // bytes that must move (weights, KV, activations)
  virtual double max_nmse() const = 0;
  virtual Peak peak() const { return Peak::F32; }
  virtual bool has_reference() const { return true; }
  virtual Target target() const { return {}; }
  // Cases with the same comparison key are printed side by side (ferry vs oneDNN).
  virtual std::string comparison_key() const { return ""; }
  virtual std::string impl() const { return "ferry"; }

  // Allocates and fills inputs (deterministic from rng) and computes the reference outputs.
  virtual void init(std::mt19937& rng, bool with_reference) = 0;
  // Resets the outputs (to NaN for ops that overwrite, to the initial values for ops that accumulate),
  // then runs the fast implementation at the current ISA level.
  virtual void run_fast() = 0;
  virtual std::vector<OutputCheck> outputs() = 0;
  virtual void reset_outputs() {}
  // Runs the op on backend b into the outputs run_fast writes (after reset_outputs); Cpu is run_fast at
  // the current ISA level. Returns false, running nothing, where the case has no implementation on b: the
  // harness reports it as skipped. Cases with a CUDA implementation override this for Backend::Cuda.
  virtual bool run_backend(Backend b) {
    if (b != Backend::Cpu) return false;
    run_fast();
    return true;
  }
  // The tolerance on backend b (the CUDA kernels may round differently from the cpu ops).
  virtual double max_nmse_on(Backend b) const { return max_nmse(); }
};

using CaseList = std::vector<std::unique_ptr<OpCase>>;

// Case families, one file each. `perf` selects the large shapes of perf mode.
void add_matmul_cases(CaseList& cases, bool perf);
void add_ffn_cases(CaseList& cases, bool perf);
void add_attention_cases(CaseList& cases, bool perf);
void add_small_op_cases(CaseList& cases, bool perf);

// Normalised mean squared error: sum (a - b)^2 / sum b^2 (NaN if any NaN in a).
double nmse(const float* a, const float* b, size_t n);

// Helpers for cases.
std::vector<float> random_normal(std::mt19937& rng, size_t n, float stddev = 1.0f, float mean = 0.0f);
std::vector<uint16_t> to_bf16(const std::vector<float>& v);
std::vector<float> round_bf16(const std::vector<float>& v);
inline constexpr float kNaN = __builtin_nanf("");

// Perf mode: DRAM-bound cases cycle through this many copies of their data (weights, KV cache) of
// `bytes` each, so together they exceed cold_working_set_bytes() (> 2x the last-level cache) and every
// repetition reads cold data, as a real decode step does (its next matmul reads other weights).
int cold_copies(size_t bytes);
cpu::PackedMatrix clone_packed(const cpu::PackedMatrix& w);

}  // namespace ferry::ops_test
