// Group-wise int8 / int4 quantisation: the error bounds stated in ferry/ops/packed_matrix.h hold, per
// element and as NMSE for normal(0, 0.02) weights, and a GEMV on quantised weights stays within its
// stated NMSE of the bf16 GEMV.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ferry/error.h"
#include "ferry/ops/isa.h"
#include "ferry/ops/matmul.h"
#include "ferry/ops/packed_matrix.h"

namespace ferry::cpu {
namespace {

std::vector<float> normal_weights(int rows, int cols, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> w(static_cast<size_t>(rows) * cols);
  for (float& v : w) v = dist(rng);
  return w;
}

double nmse(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0.0, ref = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    err += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    ref += static_cast<double>(b[i]) * b[i];
  }
  return err / ref;
}

// The stored scale of (row, col)'s group, read through the documented layout [panel][group][16].
float stored_scale(const PackedMatrix& m, int row, int col) {
  const size_t at = (static_cast<size_t>(row / kPanelRows) * m.n_group() + col / m.group_size) * kPanelRows +
                    row % kPanelRows;
  const uint16_t bits = reinterpret_cast<const uint16_t*>(m.scales.data())[at];
  return m.scale_dtype == DType::F16 ? f16_to_f32(bits) : bf16_to_f32(bits);
}

struct QuantParam {
  DType dtype;
  int group_size;
  DType scale_dtype;
};

class QuantBounds : public ::testing::TestWithParam<QuantParam> {};

TEST_P(QuantBounds, DequantisedWeightsWithinStatedBounds) {
  const QuantParam p = GetParam();
  const int rows = 200, cols = 1000;  // neither a multiple of the panel nor of the group: padding is exercised
  const std::vector<float> w = normal_weights(rows, cols, 0.02f, 7);
  const PackedMatrix m = pack_matrix(w.data(), rows, cols, p.dtype, {p.group_size, p.scale_dtype});
  std::vector<float> dq(w.size());
  dequantize(m, dq.data());

  const double bound = p.dtype == DType::I8 ? kQuantNmseBoundI8 : kQuantNmseBoundI4;
  const double e = nmse(dq, w);
  EXPECT_LT(e, bound);
  RecordProperty("nmse", std::to_string(e));
  // Per element: |w - w'| <= s / 2 (int8), <= s (int4).
  const float factor = p.dtype == DType::I8 ? 0.5f : 1.0f;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(r) * cols + c;
      ASSERT_LE(std::fabs(dq[i] - w[i]), factor * stored_scale(m, r, c) * (1.0f + 1e-6f)) << "at " << r << ", " << c;
    }
}

TEST_P(QuantBounds, GemvWithinStatedBoundOfBf16Gemv) {
  const QuantParam p = GetParam();
  const int rows = 512, cols = 2048;
  const std::vector<float> w = normal_weights(rows, cols, 0.02f, 11);
  const std::vector<float> x = normal_weights(4, cols, 1.0f, 12);
  const PackedMatrix q = pack_matrix(w.data(), rows, cols, p.dtype, {p.group_size, p.scale_dtype});
  const PackedMatrix b = pack_matrix(w.data(), rows, cols, DType::BF16);
  for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Scalar}) {
    if (static_cast<int>(isa) > static_cast<int>(detected_isa())) continue;
    ScopedIsaCap cap(isa);
    std::vector<float> yq(4 * rows), yb(4 * rows);
    matmul(q, x.data(), yq.data(), 4);
    matmul(b, x.data(), yb.data(), 4);
    const double e = nmse(yq, yb);
    EXPECT_LT(e, p.dtype == DType::I8 ? kGemvNmseBoundI8 : kGemvNmseBoundI4) << isa_name(isa);
    RecordProperty(std::string("gemv_nmse_") + isa_name(isa), std::to_string(e));
  }
}

INSTANTIATE_TEST_SUITE_P(Groups, QuantBounds,
                         ::testing::Values(QuantParam{DType::I8, 32, DType::BF16}, QuantParam{DType::I8, 64, DType::BF16},
                                           QuantParam{DType::I8, 128, DType::F16}, QuantParam{DType::I4, 32, DType::F16},
                                           QuantParam{DType::I4, 64, DType::BF16},
                                           QuantParam{DType::I4, 128, DType::BF16}));

TEST(Quant, ZeroGroupsAreExactAndConstantGroupsWithinBound) {
  const int rows = 3, cols = 128;
  std::vector<float> w(static_cast<size_t>(rows) * cols, 0.0f);
  for (int c = 0; c < cols; ++c) w[cols + c] = 0.25f;
  for (DType dt : {DType::I8, DType::I4}) {
    const PackedMatrix m = pack_matrix(w.data(), rows, cols, dt);
    for (int c = 0; c < cols; ++c) {
      EXPECT_EQ(packed_at(m, 0, c), 0.0f) << dtype_name(dt);
      EXPECT_EQ(packed_at(m, 2, c), 0.0f) << dtype_name(dt);
      EXPECT_LE(std::fabs(packed_at(m, 1, c) - 0.25f), 0.5f * stored_scale(m, 1, c)) << dtype_name(dt);
    }
  }
}

TEST(Quant, OutlierKeepsItsGroupWithinBound) {
  std::vector<float> w = normal_weights(1, 64, 0.02f, 3);
  w[10] = 1.5f;  // one large weight: the group's scale grows, the bound follows it
  for (DType dt : {DType::I8, DType::I4}) {
    const PackedMatrix m = pack_matrix(w.data(), 1, 64, dt);
    for (int c = 0; c < 64; ++c)
      EXPECT_LE(std::fabs(packed_at(m, 0, c) - w[c]), (dt == DType::I8 ? 0.5f : 1.0f) * stored_scale(m, 0, c) * 1.000001f);
    EXPECT_NEAR(packed_at(m, 0, 10), 1.5f, dt == DType::I8 ? 1.5f / 254 : 1.5f / 15);
  }
}

TEST(Quant, Bf16PackingRoundsToNearestEven) {
  const std::vector<float> w = normal_weights(17, 33, 1.0f, 5);
  const PackedMatrix m = pack_matrix(w.data(), 17, 33, DType::BF16);
  for (int r = 0; r < 17; ++r)
    for (int c = 0; c < 33; ++c) EXPECT_EQ(packed_at(m, r, c), bf16_to_f32(f32_to_bf16(w[r * 33 + c])));
}

TEST(Quant, RejectsBadGroupSizesAndTypes) {
  const std::vector<float> w(64 * 64, 0.1f);
  EXPECT_THROW(pack_matrix(w.data(), 64, 64, DType::I4, {16}), Error);
  EXPECT_THROW(pack_matrix(w.data(), 64, 64, DType::I4, {256}), Error);
  EXPECT_THROW(pack_matrix(w.data(), 64, 64, DType::I8, {40}), Error);
  EXPECT_THROW(pack_matrix(w.data(), 64, 64, DType::I8, {64, DType::F32}), Error);
  EXPECT_THROW(pack_matrix(w.data(), 64, 64, DType::F16), Error);
}

}  // namespace
}  // namespace ferry::cpu
