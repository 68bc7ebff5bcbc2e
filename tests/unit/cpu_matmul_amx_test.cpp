// The AMX bf16 matmul (cpu/matmul_amx.cpp): the three-term split of f32 activations is exact, the exact
// path matches the f64 reference to f32 rounding and gives every row the same bits whatever the batch
// around it, the bf16-activation path agrees with the AVX-512 kernel, and capping the ISA below Amx turns
// the tiles off. Skipped (except the cap test) on CPUs without AMX or where the OS refuses the tiles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cpu/matmul_kernels.h"
#include "ferry/cpu_features.h"
#include "ferry/ops/isa.h"
#include "ferry/ops/matmul.h"
#include "ferry/ops/packed_matrix.h"

namespace ferry::cpu {
namespace {

bool have_amx() {
  return detected_isa() == Isa::Amx;
}

std::vector<float> normal(size_t n, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

double nmse(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0.0, ref = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    err += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    ref += static_cast<double>(b[i]) * b[i];
  }
  return err / ref;
}

TEST(CpuMatmulAmx, DetectionIsConsistent) {
  const CpuFeatures& f = cpu_features();
  if (have_amx()) {
    EXPECT_TRUE(f.amx_tile && f.amx_bf16 && f.avx512_bf16) << f.describe();
  }
  {
    ScopedIsaCap cap(Isa::Avx512);
    EXPECT_FALSE(amx_active());
    EXPECT_NE(active_level(), Isa::Amx);
  }
  EXPECT_EQ(amx_active(), have_amx());
  // Every other op keys on the SIMD level, which stays at most Avx512.
  EXPECT_LE(static_cast<int>(active_isa()), static_cast<int>(Isa::Avx512));
}

TEST(CpuMatmulAmx, ExactPathIsOffBelowAmx) {
  const std::vector<float> w = normal(64 * 96, 0.02f, 1), x = normal(96, 1.0f, 2);
  const PackedMatrix p = pack_matrix(w.data(), 64, 96, DType::BF16);
  std::vector<float> y(64, -1.0f);
  ScopedIsaCap cap(Isa::Avx512);
  EXPECT_FALSE(matmul_exact_amx(p, x.data(), y.data(), 1));
  EXPECT_EQ(y[0], -1.0f);  // untouched
  const PackedMatrix f = pack_matrix(w.data(), 64, 96, DType::F32);
  EXPECT_FALSE(matmul_exact_amx(f, x.data(), y.data(), 1));
}

// Three bf16 terms hold an f32 exactly: the rows of the packed A tiles add back to x, bit for bit.
TEST(CpuMatmulAmx, ThreeTermSplitIsExact) {
  if (!have_amx()) GTEST_SKIP() << "no AMX";
  const int m = 7, k = 45;  // 2 row blocks (5 rows each), 2 k blocks (the second partial)
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> expo(-60, 60);
  std::vector<float> x(static_cast<size_t>(m) * k);
  for (float& v : x) v = std::ldexp(mant(rng), expo(rng));
  x[3] = 0.0f;
  x[4] = -0.0f;
  x[5] = 1e38f;  // large (within 2^-9 of FLT_MAX the leading term overflows)
  x[6] = std::numeric_limits<float>::min() * 65536.0f;  // small: the last term still a normal bf16
  const int kp = k + 1;
  std::vector<uint16_t> tiles(amx_tiles_elems(m, kp, 3) + 32);
  uint16_t* t =
      tiles.data() + (32 - reinterpret_cast<uintptr_t>(tiles.data()) % 64 / 2) % 32;  // 64-byte aligned
  pack_tiles_amx(x.data(), m, k, kp, 3, t);
  const int n_kblock = (kp + 31) / 32;
  auto at = [&](int block, int tile_row, int col) {
    return bf16_to_f32(
        t[(static_cast<size_t>(block) * n_kblock + col / 32) * 512 + tile_row * 32 + col % 32]);
  };
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < n_kblock * 32; ++c) {
      const int b = r / 5, i = r % 5;
      const float h = at(b, 3 * i, c), mid = at(b, 3 * i + 1, c), l = at(b, 3 * i + 2, c);
      const float want = c < k ? x[static_cast<size_t>(r) * k + c] : 0.0f;
      // h + mid and then + l are exact in f32 (the terms do not overlap), so this is a bit comparison.
      EXPECT_EQ((h + mid) + l, want) << "row " << r << " col " << c;
      if (c < k) {
        EXPECT_LE(std::fabs(l), std::ldexp(std::fabs(want), -16)) << "row " << r << " col " << c;
      }
    }
  for (int c = 0; c < n_kblock * 32; ++c) {  // tile row 15 of a 3-term block is unused: zero
    EXPECT_EQ(at(0, 15, c), 0.0f);
    for (int tr = 3 * (m - 5); tr < 16; ++tr) EXPECT_EQ(at(1, tr, c), 0.0f);  // rows past m
  }
}

TEST(CpuMatmulAmx, ExactPathMatchesReferenceAndIsBatchInvariant) {
  if (!have_amx()) GTEST_SKIP() << "no AMX";
  for (auto [n, k] : {std::pair{100, 200}, std::pair{48, 2100}, std::pair{33, 67}}) {
    const int m = 60;  // 12 row blocks: at k = 2100 the kernel splits K in two chunks
    const std::vector<float> w = normal(static_cast<size_t>(n) * k, 0.02f, 4),
                             x = normal(static_cast<size_t>(m) * k, 1.0f, 5);
    const std::vector<float> bias = normal(n, 0.1f, 6);
    const PackedMatrix p = pack_matrix(w.data(), n, k, DType::BF16);
    std::vector<float> y(static_cast<size_t>(m) * n), ref(y.size());
    ASSERT_TRUE(matmul_exact_amx(p, x.data(), y.data(), m, bias.data()));
    matmul_ref(p, x.data(), ref.data(), m, bias.data());
    EXPECT_LT(nmse(y, ref), 1e-12) << n << "x" << k;
    for (int r = 0; r < m; ++r) {  // each row alone, and at other offsets in smaller batches
      std::vector<float> one(n);
      ASSERT_TRUE(matmul_exact_amx(p, x.data() + static_cast<size_t>(r) * k, one.data(), 1, bias.data()));
      EXPECT_EQ(std::memcmp(one.data(), y.data() + static_cast<size_t>(r) * n, sizeof(float) * n), 0)
          << n << "x" << k << " row " << r;
    }
    const int m2 = m - 3;  // rows 3.. shifted to other tile rows and row blocks
    std::vector<float> y2(static_cast<size_t>(m2) * n);
    ASSERT_TRUE(matmul_exact_amx(p, x.data() + 3 * static_cast<size_t>(k), y2.data(), m2, bias.data()));
    EXPECT_EQ(std::memcmp(y2.data(), y.data() + 3 * static_cast<size_t>(n), sizeof(float) * y2.size()), 0);
  }
}

TEST(CpuMatmulAmx, Bf16ActivationsAgreeWithAvx512Kernel) {
  if (!have_amx()) GTEST_SKIP() << "no AMX";
  const int n = 300, k = 520;
  for (int m : {8, 16, 37, 100}) {
    const std::vector<float> w = normal(static_cast<size_t>(n) * k, 0.02f, 7),
                             x = normal(static_cast<size_t>(m) * k, 1.0f, 8);
    const PackedMatrix p = pack_matrix(w.data(), n, k, DType::BF16);
    std::vector<float> amx(static_cast<size_t>(m) * n), avx(amx.size()), ref(amx.size());
    matmul(p, x.data(), amx.data(), m);
    {
      ScopedIsaCap cap(Isa::Avx512);
      matmul(p, x.data(), avx.data(), m);
    }
    matmul_ref(p, x.data(), ref.data(), m);
    // Same bf16-rounded activations, f32 accumulation in different orders.
    EXPECT_LT(nmse(amx, avx), 1e-9) << "m " << m;
    EXPECT_LT(nmse(amx, ref), 1e-4) << "m " << m;
  }
}

}  // namespace
}  // namespace ferry::cpu
