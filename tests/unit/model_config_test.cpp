// config.json parsing for every family, the derived sizes on hand-computed numbers, and every real
// config under models/configs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ferry/checkpoint.h"
#include "ferry/error.h"
#include "ferry/model_config.h"
#include "model_fixtures.h"

namespace ferry {
namespace {

using nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string parse_error(const json& j, const std::string& source = "dir/config.json") {
  try {
    parse_model_config(j, source);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// mistralai/Mixtral-8x7B-v0.1 config.json.
json mixtral_8x7b() {
  return json::parse(R"({
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32,
    "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8,
    "output_router_logits": false, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0.dev0", "use_cache": true, "vocab_size": 32000})");
}

TEST(ModelConfig, Mixtral8x7bFields) {
  ModelConfig c = parse_model_config(mixtral_8x7b(), "m/config.json");
  EXPECT_EQ(c.family, Family::Mixtral);
  EXPECT_EQ(c.model_type, "mixtral");
  EXPECT_EQ(c.source, "m/config.json");
  EXPECT_EQ(c.n_layer, 32);
  EXPECT_EQ(c.d_model, 4096);
  EXPECT_EQ(c.n_head, 32);
  EXPECT_EQ(c.n_head_kv, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.n_vocab, 32000);
  EXPECT_EQ(c.max_position, 32768);
  EXPECT_EQ(c.n_expert, 8);
  EXPECT_EQ(c.n_expert_used, 2);
  EXPECT_EQ(c.d_expert, 14336);
  EXPECT_EQ(c.d_shared, 0);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.router, RouterKind::SoftmaxTopK);
  EXPECT_EQ(c.norm, NormKind::RmsNorm);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.rope.scaling, RopeScalingType::None);
  EXPECT_EQ(c.rope.pairing, RopePairing::HalfSplit);
  EXPECT_EQ(c.rope.rotary_dim, 128);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.qk_norm, QkNorm::None);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(32, true));
  EXPECT_EQ(family_name(c.family), "Mixtral");
}

TEST(ModelConfig, Mixtral8x7bDerivedSizesMatchHandComputation) {
  ModelConfig c = parse_model_config(mixtral_8x7b(), "config.json");
  // One expert: w1, w3 [14336, 4096] and w2 [4096, 14336].
  EXPECT_EQ(c.params_per_expert(), 3LL * 4096 * 14336);  // 176,160,768
  EXPECT_EQ(c.params_experts(), 45'097'156'608LL);       // 32 layers x 8 experts
  // Attention: q, o [4096, 4096]; k, v [1024, 4096].
  EXPECT_EQ(c.params_attention_layer(), 41'943'040LL);
  // Per layer also two RMSNorms (8192) and the router (32768); embeddings 2 x 32000 x 4096; final norm 4096.
  EXPECT_EQ(c.params_dense(), 32LL * (41'943'040 + 8'192 + 32'768) + 262'144'000 + 4'096);  // 1,605,636,096
  EXPECT_EQ(c.params_total(), 46'702'792'704LL);                                            // "46.7B"
  EXPECT_EQ(c.params_active_per_token(), 1'605'636'096LL + 32LL * 2 * 176'160'768);         // "12.9B"
  EXPECT_NEAR(c.params_active_per_token() / 1e9, 12.9, 0.05);
  EXPECT_EQ(c.kv_elems_per_token_layer(), 2 * 8 * 128);
  EXPECT_EQ(c.q_dim(), 4096);
  EXPECT_EQ(c.kv_dim(), 1024);
  EXPECT_EQ(c.n_moe_layers(), 32);
}

// The parameter count from the formulas must equal the sum over the canonical weight shapes.
int64_t params_from_shapes(const ModelConfig& c) {
  int64_t n = 0;
  for (const WeightId& id : model_weight_ids(c)) {
    if (id.kind == WeightKind::LmHead && c.tie_word_embeddings) continue;
    int64_t numel = 1;
    for (int64_t d : canonical_shape(c, id)) numel *= d;
    n += numel;
  }
  return n;
}

TEST(ModelConfig, MixtralAcceptsNumExpertsAliasAndEosList) {
  json j = mixtral_8x7b();
  j.erase("num_local_experts");
  j["num_experts"] = 4;
  j["eos_token_id"] = {2, 7};
  j["head_dim"] = nullptr;  // transformers 5 writes null for "derive from hidden/heads"
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.n_expert, 4);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{2, 7}));
  EXPECT_EQ(c.head_dim, 128);
}

TEST(ModelConfig, Qwen2MoeScheduleSharedExpertAndBias) {
  ModelConfig c = parse_model_config(test::tiny_qwen2_moe_config(), "q/config.json");
  EXPECT_EQ(c.family, Family::Qwen2Moe);
  EXPECT_EQ(c.layer_is_moe, (std::vector<bool>{true, false, true}));
  EXPECT_EQ(c.n_moe_layers(), 2);
  EXPECT_EQ(c.d_expert, 8);
  EXPECT_EQ(c.d_ff_dense, 20);
  EXPECT_EQ(c.d_shared, 12);
  EXPECT_EQ(c.n_shared_expert, 1);
  EXPECT_TRUE(c.shared_expert_gated);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.sliding_window, 0);  // use_sliding_window false
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{2, 3}));
  // D=16: attention q,o 16x16, k,v 8x16 + bias 16+8+8 = 800; norms 32 per layer.
  EXPECT_EQ(c.params_attention_layer(), 2 * 256 + 2 * 128 + 32);
  const int64_t moe_layer_dense = 800 + 32 + 4 * 16 + 3 * 16 * 12 + 16;  // + router, shared MLP, shared gate
  const int64_t dense_layer = 800 + 32 + 3 * 16 * 20;
  EXPECT_EQ(c.params_dense(), 2 * moe_layer_dense + dense_layer + 2 * 32 * 16 + 16);
  EXPECT_EQ(c.params_experts(), 2LL * 4 * 3 * 16 * 8);
  EXPECT_EQ(c.params_total(), params_from_shapes(c));
}

TEST(ModelConfig, Qwen2MoeDecoderSparseStep) {
  json j = test::tiny_qwen2_moe_config();
  j["num_hidden_layers"] = 4;
  j["mlp_only_layers"] = json::array();
  j["decoder_sparse_step"] = 2;
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.layer_is_moe, (std::vector<bool>{false, true, false, true}));
  j["qkv_bias"] = false;
  EXPECT_FALSE(parse_model_config(j, "config.json").qkv_bias);
  j["mlp_only_layers"] = {7};
  EXPECT_THAT(parse_error(j), AllOf(HasSubstr("'mlp_only_layers'"), HasSubstr("layer 7 of 4")));
}

TEST(ModelConfig, Qwen3MoeExplicitHeadDimAndPerHeadNorm) {
  json j = {{"model_type", "qwen3_moe"},
            {"vocab_size", 384},
            {"hidden_size", 64},
            {"num_hidden_layers", 3},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"head_dim", 24},
            {"intermediate_size", 96},
            {"moe_intermediate_size", 40},
            {"num_experts", 8},
            {"num_experts_per_tok", 3},
            {"norm_topk_prob", true},
            {"rope_theta", 1e6},
            {"rms_norm_eps", 1e-6},
            {"attention_bias", false}};
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.family, Family::Qwen3Moe);
  EXPECT_EQ(c.head_dim, 24);  // not 64 / 4
  EXPECT_EQ(c.q_dim(), 96);
  EXPECT_EQ(c.kv_dim(), 48);
  EXPECT_EQ(c.rope.rotary_dim, 24);
  EXPECT_EQ(c.qk_norm, QkNorm::PerHead);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(canonical_shape(c, {WeightKind::QNorm, 0}), std::vector<int64_t>{24});
  EXPECT_EQ(canonical_shape(c, {WeightKind::Wq, 0}), (std::vector<int64_t>{96, 64}));
  EXPECT_EQ(canonical_shape(c, {WeightKind::Wo, 0}), (std::vector<int64_t>{64, 96}));
  // q, o 96x64, k, v 48x64, q/k norms 24 each.
  EXPECT_EQ(c.params_attention_layer(), 2 * 96 * 64 + 2 * 48 * 64 + 48);
  EXPECT_EQ(c.params_total(), params_from_shapes(c));
}

TEST(ModelConfig, OlmoeFullWidthNormAndClip) {
  json j = {{"model_type", "olmoe"},           {"vocab_size", 50304},       {"hidden_size", 2048},
            {"num_hidden_layers", 16},         {"num_attention_heads", 16}, {"num_key_value_heads", 16},
            {"intermediate_size", 1024},       {"num_experts", 64},         {"num_experts_per_tok", 8},
            {"norm_topk_prob", false},         {"clip_qkv", 8.0},           {"rope_theta", 10000.0},
            {"max_position_embeddings", 4096}, {"eos_token_id", 50279}};
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.family, Family::Olmoe);
  EXPECT_EQ(c.qk_norm, QkNorm::Full);
  EXPECT_DOUBLE_EQ(c.clip_qkv, 8.0);
  EXPECT_EQ(c.d_expert, 1024);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(canonical_shape(c, {WeightKind::QNorm, 3}), std::vector<int64_t>{2048});
  EXPECT_EQ(canonical_shape(c, {WeightKind::KNorm, 3}), std::vector<int64_t>{2048});
  // OLMoE-1B-7B: 6.92B total, 1.28B active ("1B active, 7B total").
  EXPECT_EQ(c.params_experts(), 16LL * 64 * 3 * 2048 * 1024);
  EXPECT_EQ(c.params_total(), params_from_shapes(c));
  EXPECT_NEAR(c.params_total() / 1e9, 6.92, 0.01);
  EXPECT_NEAR(c.params_active_per_token() / 1e9, 1.28, 0.01);
}

json deepseek_v2_lite() {
  return json::parse(R"({
    "model_type": "deepseek_v2", "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944,
    "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16, "q_lora_rank": null,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6, "moe_intermediate_size": 1408,
    "first_k_dense_replace": 1, "moe_layer_freq": 1, "topk_method": "greedy", "n_group": 1, "topk_group": 1,
    "norm_topk_prob": false, "routed_scaling_factor": 1.0, "scoring_func": "softmax", "rms_norm_eps": 1e-06,
    "rope_theta": 10000, "max_position_embeddings": 163840,
    "rope_scaling": {"type": "yarn", "factor": 40, "beta_fast": 32, "beta_slow": 1, "mscale": 0.707,
                     "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096},
    "tie_word_embeddings": false, "bos_token_id": 100000, "eos_token_id": 100001})");
}

TEST(ModelConfig, DeepseekV2LiteMlaSharedExpertsAndYarn) {
  ModelConfig c = parse_model_config(deepseek_v2_lite(), "config.json");
  EXPECT_EQ(c.family, Family::DeepseekV2);
  EXPECT_EQ(c.attention, AttentionKind::Mla);
  EXPECT_EQ(c.q_lora_rank, 0);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.head_dim, 192);
  EXPECT_EQ(c.q_dim(), 16 * 192);
  EXPECT_EQ(c.rope.rotary_dim, 64);
  EXPECT_EQ(c.rope.pairing, RopePairing::Interleaved);
  EXPECT_EQ(c.rope.scaling, RopeScalingType::Yarn);
  EXPECT_DOUBLE_EQ(c.rope.factor, 40.0);
  EXPECT_EQ(c.rope.original_max_position, 4096);
  EXPECT_DOUBLE_EQ(c.rope.yarn_beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.yarn_mscale, 0.707);
  EXPECT_DOUBLE_EQ(c.rope.yarn_mscale_all_dim, 0.707);
  EXPECT_FALSE(c.layer_is_moe[0]);
  EXPECT_EQ(c.n_moe_layers(), 26);
  EXPECT_EQ(c.d_ff_dense, 10944);
  EXPECT_EQ(c.n_shared_expert, 2);
  EXPECT_EQ(c.d_shared, 2816);
  EXPECT_FALSE(c.shared_expert_gated);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 1.0);
  // The compressed KV cache: latent 512 + one shared rope key of 64.
  EXPECT_EQ(c.kv_elems_per_token_layer(), 576);
  // q_proj 2048x3072, kv_a 2048x576 + norm 512, kv_b 512x(16*256), o_proj 2048x2048.
  EXPECT_EQ(c.params_attention_layer(), 6'291'456 + 1'179'648 + 512 + 2'097'152 + 4'194'304);
  EXPECT_EQ(c.params_total(), params_from_shapes(c));
  EXPECT_NEAR(c.params_total() / 1e9, 15.7, 0.05);  // "15.7B total"
  // With a q latent the q path is q_a [1536, D] + norm + q_b [H*192, 1536].
  json j = deepseek_v2_lite();
  j["q_lora_rank"] = 1536;
  ModelConfig full = parse_model_config(j, "config.json");
  EXPECT_EQ(full.params_attention_layer() - c.params_attention_layer(),
            (2048LL * 1536 + 1536 + 1536LL * 3072) - 2048LL * 3072);
  EXPECT_EQ(full.params_total(), params_from_shapes(full));
}

TEST(ModelConfig, PhiMoeLayerNormBiasesSparseMixerLongRope) {
  json j = {{"model_type", "phimoe"},
            {"vocab_size", 32064},
            {"hidden_size", 4096},
            {"intermediate_size", 6400},
            {"num_hidden_layers", 32},
            {"num_attention_heads", 32},
            {"num_key_value_heads", 8},
            {"num_local_experts", 16},
            {"num_experts_per_tok", 2},
            {"attention_bias", true},
            {"lm_head_bias", true},
            {"router_jitter_noise", 0.01},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", 10000.0},
            {"sliding_window", 131072},
            {"max_position_embeddings", 131072},
            {"original_max_position_embeddings", 4096}};
  j["rope_scaling"] = {{"type", "longrope"},
                       {"short_factor", std::vector<double>(64, 1.0)},
                       {"long_factor", std::vector<double>(64, 2.0)},
                       {"short_mscale", 1.243},
                       {"long_mscale", 1.243}};
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.family, Family::PhiMoe);
  EXPECT_EQ(c.norm, NormKind::LayerNorm);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  EXPECT_TRUE(c.lm_head_bias);
  EXPECT_EQ(c.router, RouterKind::SparseMixer);
  EXPECT_DOUBLE_EQ(c.router_jitter_eps, 0.01);
  EXPECT_EQ(c.sliding_window, 131072);
  EXPECT_EQ(c.rope.scaling, RopeScalingType::LongRope);
  EXPECT_EQ(c.rope.longrope_short_factor.size(), 64u);
  EXPECT_DOUBLE_EQ(c.rope.longrope_long_factor[5], 2.0);
  EXPECT_DOUBLE_EQ(c.rope.longrope_long_mscale, 1.243);
  EXPECT_EQ(c.rope.original_max_position, 4096);
  EXPECT_EQ(c.params_total(), params_from_shapes(c));
  EXPECT_NEAR(c.params_total() / 1e9, 41.9, 0.05);            // "41.9B"
  EXPECT_NEAR(c.params_active_per_token() / 1e9, 6.6, 0.05);  // "6.6B active"

  j["rope_scaling"]["short_factor"] = std::vector<double>(48, 1.0);
  EXPECT_THAT(parse_error(j), AllOf(HasSubstr("'rope_scaling.short_factor'"), HasSubstr("has 48 entries")));
  j["rope_scaling"]["short_factor"] = std::vector<double>(64, 1.0);
  j["num_experts_per_tok"] = 3;
  EXPECT_THAT(parse_error(j), HasSubstr("'num_experts_per_tok' must be 2"));
}

TEST(ModelConfig, DbrxNestedConfigs) {
  json j = json::parse(R"({
    "model_type": "dbrx", "d_model": 6144, "n_heads": 48, "n_layers": 40, "max_seq_len": 32768,
    "vocab_size": 100352, "tie_word_embeddings": false,
    "attn_config": {"clip_qkv": 8, "kv_n_heads": 8, "rope_theta": 500000},
    "ffn_config": {"ffn_hidden_size": 10752, "moe_num_experts": 16, "moe_top_k": 4, "moe_jitter_eps": 0}})");
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.family, Family::Dbrx);
  EXPECT_EQ(c.n_layer, 40);
  EXPECT_EQ(c.d_model, 6144);
  EXPECT_EQ(c.n_head, 48);
  EXPECT_EQ(c.n_head_kv, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position, 32768);
  EXPECT_DOUBLE_EQ(c.clip_qkv, 8.0);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.n_expert, 16);
  EXPECT_EQ(c.n_expert_used, 4);
  EXPECT_EQ(c.d_expert, 10752);
  EXPECT_EQ(c.norm, NormKind::LayerNormNoBias);
  EXPECT_EQ(c.router, RouterKind::SoftmaxTopKPNorm);
  EXPECT_TRUE(c.norm_topk_prob);  // moe_normalize_expert_weights defaults to 1
  EXPECT_DOUBLE_EQ(c.router_pnorm, 1.0);
  // Hand-computed: experts 40 x 16 x 3 x 6144 x 10752; dense = 40 x (attention 88,080,384 + norms 12,288
  // + router 98,304) + embeddings 2 x 100352 x 6144 + final norm 6144.
  EXPECT_EQ(c.params_experts(), 126'835'752'960LL);
  EXPECT_EQ(c.params_dense(), 4'760'770'560LL);
  EXPECT_EQ(c.params_total(), 131'596'523'520LL);             // "132B total"
  EXPECT_NEAR(c.params_active_per_token() / 1e9, 36.5, 0.1);  // "36B active"
  EXPECT_EQ(c.params_total(), params_from_shapes(c));

  j["ffn_config"]["moe_normalize_expert_weights"] = nullptr;
  EXPECT_FALSE(parse_model_config(j, "config.json").norm_topk_prob);
  j["ffn_config"].erase("moe_top_k");
  EXPECT_THAT(parse_error(j),
              AllOf(HasSubstr("dir/config.json"), HasSubstr("'ffn_config.moe_top_k' is missing")));
}

TEST(ModelConfig, RopeSpellings) {
  json j = mixtral_8x7b();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};  // transformers 5
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.scaling, RopeScalingType::None);

  j["rope_parameters"] = {{"rope_type", "yarn"},
                          {"rope_theta", 1e4},
                          {"factor", 4.0},
                          {"original_max_position_embeddings", 8192},
                          {"beta_fast", 16}};
  c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.rope.scaling, RopeScalingType::Yarn);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position, 8192);
  EXPECT_DOUBLE_EQ(c.rope.yarn_beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(c.rope.yarn_beta_slow, 1.0);

  j = mixtral_8x7b();
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.rope.scaling, RopeScalingType::Llama3);
  EXPECT_DOUBLE_EQ(c.rope.llama3_high_freq_factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(parse_model_config(j, "config.json").rope.scaling, RopeScalingType::Linear);
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  EXPECT_EQ(parse_model_config(j, "config.json").rope.scaling, RopeScalingType::Dynamic);
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse_model_config(j, "config.json").rope.scaling, RopeScalingType::None);
  j["partial_rotary_factor"] = 0.5;
  EXPECT_EQ(parse_model_config(j, "config.json").rope.rotary_dim, 64);

  j["rope_scaling"] = {{"type", "ntk-by-parts"}};
  EXPECT_THAT(parse_error(j), AllOf(HasSubstr("dir/config.json: key 'rope_scaling.type'"),
                                    HasSubstr("'ntk-by-parts'"), HasSubstr("yarn")));
}

TEST(ModelConfig, UnknownFamilyNamesTheFileTheValueAndTheFamilies) {
  json j = mixtral_8x7b();
  j["model_type"] = "llama";
  EXPECT_THAT(parse_error(j), AllOf(HasSubstr("dir/config.json"), HasSubstr("'llama'"), HasSubstr("mixtral"),
                                    HasSubstr("qwen2_moe"), HasSubstr("qwen3_moe"), HasSubstr("olmoe"),
                                    HasSubstr("deepseek_v2"), HasSubstr("phimoe"), HasSubstr("dbrx")));
  j.erase("model_type");
  EXPECT_THAT(parse_error(j), AllOf(HasSubstr("dir/config.json"), HasSubstr("'model_type' is missing")));
  EXPECT_THAT(parse_error(json::array()), HasSubstr("expected a JSON object"));
}

TEST(ModelConfig, MissingOrMistypedKeysNameTheKeyAndFile) {
  for (const char* key : {"num_local_experts", "hidden_size", "num_hidden_layers", "num_attention_heads",
                          "vocab_size", "num_experts_per_tok", "intermediate_size"}) {
    json j = mixtral_8x7b();
    j.erase(key);
    EXPECT_THAT(parse_error(j), AllOf(HasSubstr("dir/config.json"), HasSubstr("'" + std::string(key) + "'"),
                                      HasSubstr("missing")))
        << key;
  }
  json j = mixtral_8x7b();
  j["hidden_size"] = "4096";
  EXPECT_THAT(parse_error(j), HasSubstr("key 'hidden_size' must be an integer"));
  j = mixtral_8x7b();
  j["num_experts_per_tok"] = 9;
  EXPECT_THAT(parse_error(j), HasSubstr("experts per token must be in [1, 8]"));
  j = mixtral_8x7b();
  j["num_key_value_heads"] = 5;
  EXPECT_THAT(parse_error(j), HasSubstr("'num_key_value_heads' must be positive and divide"));
  j = mixtral_8x7b();
  j["tie_word_embeddings"] = 1;
  EXPECT_THAT(parse_error(j), HasSubstr("'tie_word_embeddings' must be true or false"));
  // A Qwen2-MoE model with dense layers needs the dense width.
  j = test::tiny_qwen2_moe_config();
  j.erase("intermediate_size");
  EXPECT_THAT(parse_error(j), HasSubstr("'intermediate_size' is missing or not positive"));
}

TEST(ModelConfig, LoadFromDirectoryOrFile) {
  test::TempDir dir;
  test::write_config(dir.path(), mixtral_8x7b());
  EXPECT_EQ(load_model_config(dir.path()).source, (dir / "config.json").string());
  EXPECT_EQ(load_model_config(dir / "config.json").n_layer, 32);

  try {
    load_model_config(dir / "nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr((dir / "nope").string()), HasSubstr("does not exist")));
  }
  test::TempDir empty;
  try {
    load_model_config(empty.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr((empty / "config.json").string()), HasSubstr("not found")));
  }
  test::write_text(empty / "config.json", "{ not json");
  try {
    load_model_config(empty.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr((empty / "config.json").string()), HasSubstr("not valid JSON")));
  }
}

// Published totals of the public checkpoints (model cards), in billions.
const std::map<std::string, double> kPublishedTotalParams = {
    {"mixtral-8x7b.json", 46.7},      {"mixtral-8x22b.json", 141.0}, {"dbrx.json", 132.0},
    {"deepseek-v2-lite.json", 15.7},  {"olmoe-1b-7b.json", 6.9},     {"phi-3.5-moe.json", 41.9},
    {"qwen1.5-moe-a2.7b.json", 14.3}, {"qwen3-30b-a3b.json", 30.5},
};

TEST(ModelConfig, EveryRealConfigUnderModelsConfigsParses) {
  const std::filesystem::path dir = std::filesystem::path(FERRY_SOURCE_DIR) / "models" / "configs";
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  if (files.empty()) GTEST_SKIP() << "no configs under " << dir;
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    ModelConfig c;
    ASSERT_NO_THROW(c = load_model_config(file));
    EXPECT_GT(c.n_layer, 0);
    EXPECT_GT(c.params_active_per_token(), 0);
    EXPECT_LT(c.params_active_per_token(), c.params_total());
    EXPECT_EQ(c.params_total(), params_from_shapes(c));
    EXPECT_GT(c.kv_elems_per_token_layer(), 0);
    auto published = kPublishedTotalParams.find(file.filename().string());
    if (published != kPublishedTotalParams.end())
      EXPECT_NEAR(c.params_total() / 1e9, published->second, published->second * 0.01);
  }
}

// Sizes no model has are refused before any derived size is computed: 2^31 - 1 wide layers overflowed
// 3 * D * F in int64, and 10^8 layers kept ferry plan busy for minutes.
TEST(ModelConfig, AbsurdSizesAreRefusedNamingTheKeyOrTheTotal) {
  json j = mixtral_8x7b();
  j["num_hidden_layers"] = 100000;
  std::string msg = parse_error(j);
  EXPECT_NE(msg.find("num_hidden_layers"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4096"), std::string::npos) << msg;
  j = mixtral_8x7b();
  j["hidden_size"] = 2147483640;
  j["intermediate_size"] = 2147483647;
  j["num_attention_heads"] = 8;
  j["num_key_value_heads"] = 8;
  msg = parse_error(j);
  EXPECT_NE(msg.find("hidden size"), std::string::npos) << msg;
  // every width within bounds, but 4096 layers of 65536 experts of width 2^18: 10^19 parameters
  j = mixtral_8x7b();
  j["num_hidden_layers"] = 4096;
  j["num_local_experts"] = 65536;
  j["intermediate_size"] = 1 << 18;
  msg = parse_error(j);
  EXPECT_NE(msg.find("trillion parameters"), std::string::npos) << msg;
  // the largest published shapes still load: 61 layers, 256 experts, vocabulary 256k (DeepSeek-V3-like)
  j = mixtral_8x7b();
  j["num_hidden_layers"] = 61;
  j["num_local_experts"] = 256;
  j["vocab_size"] = 256000;
  EXPECT_EQ(parse_model_config(j, "config.json").n_expert, 256);
}

}  // namespace
}  // namespace ferry
