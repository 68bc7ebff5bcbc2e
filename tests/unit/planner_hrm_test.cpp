// The hierarchical roofline formulas on hand-computed cases (numbers worked out in the comments from the
// models' config.json and the l4-ml profile: P_c 1.6 TFLOP/s, B_c 100 GB/s, B_cg 16 GB/s, B_g 285 GB/s,
// P_g 104 TFLOP/s).
#include <cmath>

#include <gtest/gtest.h>

#include "ferry/planner/hrm.h"
#include "ferry/planner/model_catalog.h"

namespace ferry::planner {
namespace {

ModelShape shape(const std::string& name) {
  return ModelShape::from_config(resolve_model(name).config, name);
}

TEST(Hrm, ExpectedDistinctExperts) {
  // E·(1 - (1 - K/E)^t), Mixtral E=8, K=2.
  EXPECT_DOUBLE_EQ(expected_distinct_experts(8, 2, 0), 0);
  EXPECT_DOUBLE_EQ(expected_distinct_experts(8, 2, 1), 2);      // one token: exactly its K experts
  EXPECT_DOUBLE_EQ(expected_distinct_experts(8, 2, 2), 3.5);    // 8·(1 - 0.75²)
  EXPECT_DOUBLE_EQ(expected_distinct_experts(8, 2, 3), 4.625);  // 8·(1 - 0.75³)
  EXPECT_NEAR(expected_distinct_experts(8, 2, 64), 8, 1e-6);    // large batches touch all
  EXPECT_DOUBLE_EQ(expected_distinct_experts(64, 8, 1), 8);     // OLMoE
  EXPECT_NEAR(expected_distinct_experts(128, 8, 16), 128 * (1 - std::pow(120.0 / 128, 16)), 1e-9);
  // Monotone in tokens and never above E.
  double prev = 0;
  for (double t = 1; t < 300; t *= 1.7) {
    double e = expected_distinct_experts(128, 8, t);
    EXPECT_GT(e, prev);
    EXPECT_LE(e, 128);
    prev = e;
  }
}

TEST(Hrm, ModelShapeSizes) {
  ModelShape m = shape("mixtral-8x7b");
  EXPECT_DOUBLE_EQ(m.expert_params, 3.0 * 4096 * 14336);  // 176,160,768
  EXPECT_DOUBLE_EQ(m.expert_bytes(Precision::Bf16), 352321536);
  // q, o 4096², k, v 1024x4096, two RMSNorms, router 8x4096.
  EXPECT_DOUBLE_EQ(m.dense_params_per_layer[0], 2 * 4096.0 * 4096 + 2 * 1024.0 * 4096 + 2 * 4096 + 8 * 4096);
  EXPECT_DOUBLE_EQ(m.kv_bytes_per_token_layer(Precision::Bf16), 4096);  // 2·8·128 bf16
  EXPECT_EQ(m.n_moe_layer, 32);

  ModelShape ds = shape("deepseek-v2-lite");
  EXPECT_FALSE(ds.layer_is_moe[0]);  // first_k_dense_replace = 1
  EXPECT_EQ(ds.n_moe_layer, 26);
  EXPECT_DOUBLE_EQ(ds.kv_elems_per_token_layer, 512 + 64);  // MLA latent + rope key
}

TEST(Hrm, DecodeAttentionIntensityDependsOnKvDtypeAndGqaGroupOnly) {
  // QKᵀ and PV: 4·H·Dh FLOPs per cached position; K and V: 2·Hkv·Dh elements.
  ModelShape mixtral = shape("mixtral-8x7b");  // H 32, Hkv 8 (group 4), Dh 128
  EXPECT_DOUBLE_EQ(decode_attention_intensity(mixtral, Precision::Bf16), 4.0);  // 16384 / 4096
  EXPECT_NEAR(decode_attention_intensity(mixtral, Precision::Int8), 16384.0 / (2048 * (1 + 2.0 / 64)), 1e-12);
  EXPECT_NEAR(decode_attention_intensity(mixtral, Precision::Int4), 16384.0 / (2048 * (0.5 + 3.0 / 64)),
              1e-12);
  EXPECT_DOUBLE_EQ(decode_attention_intensity(shape("olmoe-1b-7b"), Precision::Bf16), 1.0);    // MHA: group 1
  EXPECT_DOUBLE_EQ(decode_attention_intensity(shape("qwen3-30b-a3b"), Precision::Bf16), 8.0);  // group 8
  // MLA, absorbed: 2·16·(512+64) + 2·16·512 = 34816 FLOPs over 576 bf16 latent elements.
  EXPECT_NEAR(decode_attention_intensity(shape("deepseek-v2-lite"), Precision::Bf16), 34816.0 / 1152, 1e-12);
  // Independent of the context length.
  Traffic a = decode_attention(mixtral, 100, Precision::Bf16),
          b = decode_attention(mixtral, 5000, Precision::Bf16);
  EXPECT_DOUBLE_EQ(a.intensity(), b.intensity());
  EXPECT_DOUBLE_EQ(b.bytes, 5000.0 * 4096);
}

TEST(Hrm, MoeFfnIntensityGrowsWithTokensThroughDistinctExperts) {
  ModelShape m = shape("mixtral-8x7b");
  const double per_token_flops = 2.0 * 2 * 176160768;  // K·2 FLOPs per weight of 3·D·F
  Traffic one = moe_ffn(m, 1, Precision::Bf16);
  EXPECT_DOUBLE_EQ(one.flops, per_token_flops);
  EXPECT_DOUBLE_EQ(one.bytes, 2 * 352321536.0 + 4096 * 2 * 2);  // its 2 experts + bf16 in/out
  Traffic two = moe_ffn(m, 2, Precision::Bf16);
  EXPECT_DOUBLE_EQ(two.bytes, 3.5 * 352321536 + 2 * 4096 * 2 * 2);  // 3.5 distinct experts expected
  Traffic big = moe_ffn(m, 1024, Precision::Bf16);
  EXPECT_NEAR(big.intensity(), 1024 * per_token_flops / (8 * 352321536.0 + 1024 * 16384), 1e-6);
  // Link intensity counts only the streamed weights: N·K/E·... = N/4 FLOP/B for Mixtral bf16 once all
  // 8 experts are touched (the paper's "N/4").
  EXPECT_NEAR(moe_ffn_link_intensity(m, 3072, Precision::Bf16), 768, 1e-6);
  EXPECT_NEAR(moe_ffn_link_intensity(m, 3072, Precision::Int4), 768 * 2 / (0.5 + 3.0 / 64), 1e-6);
  // At N = 1 it is K·2·3DF / (K experts' bytes) = 1 FLOP/B.
  EXPECT_NEAR(moe_ffn_link_intensity(m, 1, Precision::Bf16), 1.0, 1e-12);
}

TEST(Hrm, TurningPointsOnTheMoeLightningL4Profile) {
  HrmRoofs r = HrmRoofs::from(hardware_preset("l4-ml"));
  EXPECT_DOUBLE_EQ(r.cpu.ridge(), 16);               // 1.6e12 / 100e9
  EXPECT_DOUBLE_EQ(turning_point_p1(r), 100);        // 1.6e12 / 16e9: the CPU compute roof meets the link
  EXPECT_DOUBLE_EQ(r.cpu.attainable(4), 400e9);      // attention on the CPU memory roof
  EXPECT_DOUBLE_EQ(r.gpu.attainable(1000), 104e12);  // above the GPU ridge (365)
  // P2 at a GPU intensity of 254 FLOP/B: 285e9·254 / 16e9.
  EXPECT_NEAR(turning_point_p2(r, 254), 285e9 * 254 / 16e9, 1e-9);
  EXPECT_NEAR(turning_point_p2(r, 5000), 104e12 / 16e9, 1e-9);  // kernel compute-bound: P_g / B_cg

  // A link as fast as DRAM: shipping never loses, P1 = 0.
  HrmRoofs fast = r;
  fast.h2d = 200e9;
  EXPECT_DOUBLE_EQ(turning_point_p1(fast), 0);
}

TEST(Hrm, BalancePointEquatesKernelAndLinkRates) {
  ModelShape m = shape("mixtral-8x7b");
  HrmRoofs r = HrmRoofs::from(hardware_preset("l4-ml"));
  for (double mu : {32.0, 128.0, 1024.0}) {
    double n = balance_batch(m, r, mu, Precision::Bf16);
    double kernel = r.gpu.bandwidth * moe_ffn(m, mu, Precision::Bf16).intensity();
    double link = r.h2d * moe_ffn_link_intensity(m, n, Precision::Bf16);
    EXPECT_NEAR(link / kernel, 1.0, 1e-6) << "mu " << mu;
    // Once all experts are touched, link intensity is N/4, so N = 4·B_g·I^i(μ)/B_cg.
    EXPECT_NEAR(n, 4 * kernel / r.h2d, 1e-3 * n) << "mu " << mu;
  }
}

}  // namespace
}  // namespace ferry::planner
