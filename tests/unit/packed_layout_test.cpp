// The device twin of cpu::packed_at (ferry/ops/packed_layout.h): packed_element, and the word-wise decode
// the CUDA matmul kernels use (packed_word + packed_word_value; packed_row_word for a whole word), equal
// cpu::packed_at for every element of BF16, F32, I8 and I4 matrices (both scale dtypes, several group
// sizes, rows not a multiple of 16), padding reading 0.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ferry/ops/packed_layout.h"
#include "ferry/ops/packed_matrix.h"

namespace ferry {
namespace {

std::vector<float> random_matrix(int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(rows) * cols);
  for (float& v : w) v = dist(rng);
  // a few exact zeros and outliers, so quantisation ranges vary between groups
  for (size_t i = 0; i < w.size(); i += 37) w[i] = 0.0f;
  for (size_t i = 11; i < w.size(); i += 101) w[i] *= 20.0f;
  return w;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

struct Case {
  DType dtype;
  int rows, cols, group_size;
  DType scale_dtype;
};

std::string describe(const Case& c) {
  return std::string(dtype_name(c.dtype)) + " [" + std::to_string(c.rows) + ", " + std::to_string(c.cols) +
         "] group " + std::to_string(c.group_size) + " scales " + std::string(dtype_name(c.scale_dtype));
}

void check_every_element(const Case& c) {
  SCOPED_TRACE(describe(c));
  const std::vector<float> w = random_matrix(c.rows, c.cols, 17u + c.rows + c.cols);
  const cpu::PackedMatrix m = cpu::pack_matrix(w.data(), c.rows, c.cols, c.dtype, {c.group_size, c.scale_dtype});
  const PackedLayout L = packed_layout(m);
  ASSERT_EQ(packed_panel_bytes(L), m.panel_bytes());
  ASSERT_EQ(packed_n_panel(L), m.n_panel());
  ASSERT_EQ(packed_n_group(L), m.n_group());
  const int v = packed_values_per_word(L.dtype);
  ASSERT_GT(v, 0);
  ASSERT_EQ(L.cols_padded % v, 0);
  int mismatches = 0;
  for (int row = 0; row < c.rows; ++row) {
    for (int col = 0; col < c.cols; ++col) {
      const float want = cpu::packed_at(m, row, col);
      const float got = packed_element(L, row, col);
      // the word-wise path of the kernels: one word, its group's scale and zero, value j
      const int panel = row / kPackedPanelRows, r = row % kPackedPanelRows, word = col / v;
      const int group = L.group_size ? col / L.group_size : 0;
      const float by_word = packed_word_value(L.dtype, packed_word(L, panel, word, r), col % v,
                                              packed_scale(L, panel, group, r), packed_zero(L, panel, group, r));
      if (!same_bits(got, want) || !same_bits(by_word, want)) {
        if (++mismatches <= 5)
          ADD_FAILURE() << "element (" << row << ", " << col << "): packed_at " << want << ", packed_element "
                        << got << ", word decode " << by_word;
      }
    }
    // padding columns and rows read as zero
    for (int col = c.cols; col < L.cols_padded; ++col)
      if (packed_element(L, row, col) != 0.0f) ++mismatches;
  }
  for (int row = c.rows; row < packed_n_panel(L) * kPackedPanelRows; ++row)
    for (int col = 0; col < L.cols_padded; ++col)
      if (packed_element(L, row, col) != 0.0f) ++mismatches;
  EXPECT_EQ(mismatches, 0);

  // packed_row_word, the whole-word decode of the unpack and tiled kernels: every word of every row of
  // every panel, padding rows and columns included (they read 0)
  int word_mismatches = 0;
  for (int row = 0; row < packed_n_panel(L) * kPackedPanelRows; ++row)
    for (int word = 0; word < packed_words_per_row(L); ++word) {
      float vals[8];
      ASSERT_EQ(packed_row_word(L, row, word, vals), v);
      for (int j = 0; j < v; ++j) {
        const int col = word * v + j;
        const float want = row < c.rows && col < c.cols ? cpu::packed_at(m, row, col) : 0.0f;
        if (!same_bits(vals[j], want) && !(want == 0.0f && vals[j] == 0.0f)) {
          if (++word_mismatches <= 5)
            ADD_FAILURE() << "row " << row << " word " << word << " value " << j << ": packed_row_word " << vals[j]
                          << ", packed_at " << want;
        }
      }
    }
  EXPECT_EQ(word_mismatches, 0);
}

TEST(PackedLayout, Bf16AndF32MatchPackedAt) {
  for (DType t : {DType::BF16, DType::F32})
    for (auto [rows, cols] : {std::pair{1, 1}, {16, 2}, {17, 7}, {45, 130}, {200, 1001}})
      check_every_element({t, rows, cols, 0, DType::BF16});
}

TEST(PackedLayout, Int8MatchesPackedAt) {
  for (DType s : {DType::BF16, DType::F16})
    for (int g : {32, 48, 64, 128})
      for (auto [rows, cols] : {std::pair{1, 5}, {33, 200}, {100, 257}})
        check_every_element({DType::I8, rows, cols, g, s});
}

TEST(PackedLayout, Int4MatchesPackedAt) {
  for (DType s : {DType::BF16, DType::F16})
    for (int g : {32, 48, 64, 128})
      for (auto [rows, cols] : {std::pair{1, 5}, {33, 200}, {100, 257}})
        check_every_element({DType::I4, rows, cols, g, s});
}

}  // namespace
}  // namespace ferry
