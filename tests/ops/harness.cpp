#include "tests/ops/harness.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ferry/roofline_probe.h"

namespace ferry::ops_test {

double nmse(const float* a, const float* b, size_t n) {
  double err = 0.0, ref = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return std::nan("");
    if (std::isnan(a[i])) continue;
    const double d = static_cast<double>(a[i]) - b[i];
    err += d * d;
    ref += static_cast<double>(b[i]) * b[i];
  }
  return ref > 0.0 ? err / ref : err;
}

std::vector<float> random_normal(std::mt19937& rng, size_t n, float stddev, float mean) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

std::vector<float> round_bf16(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(f32_to_bf16(v[i]));
  return out;
}

int cold_copies(size_t bytes) {
  const size_t want = cold_working_set_bytes();
  return static_cast<int>(std::max<size_t>(1, (want + bytes - 1) / std::max<size_t>(1, bytes)));
}

cpu::PackedMatrix clone_packed(const cpu::PackedMatrix& w) {
  cpu::PackedMatrix c;
  c.dtype = w.dtype;
  c.rows = w.rows;
  c.cols = w.cols;
  c.cols_padded = w.cols_padded;
  c.group_size = w.group_size;
  c.scale_dtype = w.scale_dtype;
  c.data = cpu::AlignedBytes(w.data.size());
  c.scales = cpu::AlignedBytes(w.scales.size());
  c.zeros = cpu::AlignedBytes(w.zeros.size());
  std::memcpy(c.data.data(), w.data.data(), w.data.size());
  if (w.scales.size()) std::memcpy(c.scales.data(), w.scales.data(), w.scales.size());
  if (w.zeros.size()) std::memcpy(c.zeros.data(), w.zeros.data(), w.zeros.size());
  return c;
}

}  // namespace ferry::ops_test
