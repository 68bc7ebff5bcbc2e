// Checkpoint: per-expert, fused and sharded layouts give the same canonical weights; every way a
// checkpoint directory can be broken is an error naming the file, tensor or key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "ferry/checkpoint.h"
#include "ferry/error.h"
#include "model_fixtures.h"
#include "test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using test::FixtureTensor;
using test::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr int kL = 2, kE = 4, kD = 16, kF = 24;

std::string open_error(const fs::path& dir) {
  try {
    Checkpoint::open(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<FixtureTensor> without(std::vector<FixtureTensor> tensors, const std::string& name) {
  std::erase_if(tensors, [&](const FixtureTensor& t) { return t.name == name; });
  return tensors;
}

TEST(Checkpoint, PerExpertMixtralViewsAndValues) {
  TempDir dir;
  const auto tensors = test::tiny_mixtral_tensors(false);
  test::write_model_dir(dir.path(), test::tiny_mixtral_config(), tensors);
  auto ckpt = Checkpoint::open(dir.path());
  EXPECT_EQ(ckpt->dir(), dir.path());
  EXPECT_EQ(ckpt->config().family, Family::Mixtral);
  EXPECT_EQ(ckpt->expert_layout(), ExpertLayout::PerExpert);

  TensorView q = ckpt->view({WeightKind::Wq, 1});
  EXPECT_EQ(q.name, "model.layers.1.self_attn.q_proj.weight");
  EXPECT_EQ(q.dtype, DType::BF16);
  EXPECT_EQ(q.shape, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(q.bytes(), 16 * 16 * 2);
  EXPECT_EQ(ckpt->f32({WeightKind::Wq, 1}), test::find_fixture(tensors, q.name).values);

  TensorView router = ckpt->view({WeightKind::Router, 0});
  EXPECT_EQ(router.name, "model.layers.0.block_sparse_moe.gate.weight");
  EXPECT_EQ(router.shape, (std::vector<int64_t>{kE, kD}));

  TensorView down = ckpt->view({WeightKind::ExpertDown, 1, 3});
  EXPECT_EQ(down.name, "model.layers.1.block_sparse_moe.experts.3.w2.weight");
  EXPECT_EQ(down.shape, (std::vector<int64_t>{kD, kF}));
  EXPECT_EQ(ckpt->f32({WeightKind::ExpertUp, 1, 2}), test::tiny_expert_values("up", 1, 2, kF * kD));

  EXPECT_TRUE(ckpt->has({WeightKind::LmHead}));
  EXPECT_EQ(ckpt->view({WeightKind::LmHead}).name, "lm_head.weight");
  EXPECT_FALSE(ckpt->has({WeightKind::Bq, 0}));
  EXPECT_FALSE(ckpt->has({WeightKind::SharedGate, 0}));
  EXPECT_THAT([&] { ckpt->view({WeightKind::Bq, 0}); }, ::testing::Throws<Error>());

  // Stored tensors: everything written, split into routed experts and the rest.
  auto stored = ckpt->stored_tensors();
  EXPECT_EQ(stored.size(), tensors.size());
  int64_t expert_bytes = 0;
  for (const auto& t : stored) {
    EXPECT_EQ(t.file, "model.safetensors");
    if (is_routed_expert_tensor(t.name)) expert_bytes += static_cast<int64_t>(t.bytes);
  }
  EXPECT_EQ(expert_bytes, int64_t{kL} * kE * 3 * kF * kD * 2);
}

TEST(Checkpoint, FusedExpertsGiveTheSameCanonicalWeights) {
  TempDir per_expert_dir, fused_dir;
  test::write_model_dir(per_expert_dir.path(), test::tiny_mixtral_config(),
                        test::tiny_mixtral_tensors(false));
  test::write_model_dir(fused_dir.path(), test::tiny_mixtral_config(), test::tiny_mixtral_tensors(true));
  auto per_expert = Checkpoint::open(per_expert_dir.path());
  auto fused = Checkpoint::open(fused_dir.path());
  EXPECT_EQ(fused->expert_layout(), ExpertLayout::Fused);
  EXPECT_EQ(fused->view({WeightKind::Router, 1}).name, "model.layers.1.mlp.gate.weight");
  EXPECT_EQ(fused->view({WeightKind::ExpertGate, 1, 2}).name, "model.layers.1.mlp.experts.gate_up_proj");
  for (int l = 0; l < kL; ++l) {
    EXPECT_EQ(per_expert->f32({WeightKind::Router, l}), fused->f32({WeightKind::Router, l}));
    for (int e = 0; e < kE; ++e)
      for (WeightKind k : {WeightKind::ExpertGate, WeightKind::ExpertUp, WeightKind::ExpertDown}) {
        const WeightId id{k, l, e};
        SCOPED_TRACE(weight_id_string(id));
        EXPECT_EQ(per_expert->view(id).shape, fused->view(id).shape);
        EXPECT_EQ(per_expert->f32(id), fused->f32(id));
      }
  }
}

TEST(Checkpoint, ShardedCheckpointReadsEveryShard) {
  TempDir single, sharded;
  const auto tensors = test::tiny_mixtral_tensors(true);
  test::write_model_dir(single.path(), test::tiny_mixtral_config(), tensors);
  test::write_sharded_model_dir(sharded.path(), test::tiny_mixtral_config(), tensors, 3);
  auto a = Checkpoint::open(single.path());
  auto b = Checkpoint::open(sharded.path());
  std::set<std::string> files;
  for (const auto& t : b->stored_tensors()) files.insert(t.file);
  EXPECT_EQ(files.size(), 3u);
  for (const WeightId& id : model_weight_ids(a->config()))
    EXPECT_EQ(a->f32(id), b->f32(id)) << weight_id_string(id);
}

TEST(Checkpoint, MissingShard) {
  TempDir dir;
  test::write_sharded_model_dir(dir.path(), test::tiny_mixtral_config(), test::tiny_mixtral_tensors(false),
                                3);
  fs::remove(dir / "model-00002-of-00003.safetensors");
  EXPECT_THAT(open_error(dir.path()),
              AllOf(HasSubstr((dir / "model.safetensors.index.json").string()),
                    HasSubstr("shard 'model-00002-of-00003.safetensors'"), HasSubstr("missing")));
}

TEST(Checkpoint, IndexMapsATensorToAShardWithoutIt) {
  TempDir dir;
  test::write_sharded_model_dir(dir.path(), test::tiny_mixtral_config(), test::tiny_mixtral_tensors(false),
                                2);
  std::ifstream in(dir / "model.safetensors.index.json");
  nlohmann::json index = nlohmann::json::parse(in);
  // model.embed_tokens.weight went to shard 1 (round-robin from index 0); point it at shard 2.
  index["weight_map"]["model.embed_tokens.weight"] = "model-00002-of-00002.safetensors";
  test::write_text(dir / "model.safetensors.index.json", index.dump());
  EXPECT_THAT(open_error(dir.path()),
              AllOf(HasSubstr("maps tensor 'model.embed_tokens.weight' to model-00002-of-00002.safetensors"),
                    HasSubstr("no such tensor")));
  index["weight_map"]["model.embed_tokens.weight"] = "../elsewhere.safetensors";
  test::write_text(dir / "model.safetensors.index.json", index.dump());
  EXPECT_THAT(open_error(dir.path()), HasSubstr("not a file name in the model directory"));
  test::write_text(dir / "model.safetensors.index.json", R"({"metadata": {}})");
  EXPECT_THAT(open_error(dir.path()), HasSubstr("no \"weight_map\""));
}

TEST(Checkpoint, MissingTensorNamesTheTensorAndTheDirectory) {
  TempDir dir;
  const std::string name = "model.layers.1.block_sparse_moe.experts.2.w3.weight";
  test::write_model_dir(dir.path(), test::tiny_mixtral_config(),
                        without(test::tiny_mixtral_tensors(false), name));
  EXPECT_THAT(open_error(dir.path()),
              AllOf(HasSubstr("missing tensor '" + name + "'"), HasSubstr(dir.path().string()),
                    HasSubstr("ExpertUp (layer 1, expert 2)")));
}

TEST(Checkpoint, ShapeDisagreeingWithConfig) {
  TempDir dir;
  auto tensors = test::tiny_mixtral_tensors(false);
  for (auto& t : tensors)
    if (t.name == "model.layers.0.self_attn.q_proj.weight") t = test::make_tensor(t.name, {12, 16});
  test::write_model_dir(dir.path(), test::tiny_mixtral_config(), tensors);
  EXPECT_THAT(open_error(dir.path()),
              HasSubstr("tensor 'model.layers.0.self_attn.q_proj.weight' has shape [12,16] but " +
                        (dir / "config.json").string() + " implies [16,16]"));
  // A fused expert tensor of the wrong width.
  TempDir fused;
  tensors = test::tiny_mixtral_tensors(true);
  for (auto& t : tensors)
    if (t.name == "model.layers.1.mlp.experts.down_proj") t = test::make_tensor(t.name, {kE, kD, kF - 1});
  test::write_model_dir(fused.path(), test::tiny_mixtral_config(), tensors);
  EXPECT_THAT(open_error(fused.path()),
              HasSubstr("'model.layers.1.mlp.experts.down_proj' has shape [4,16,23]"));
}

TEST(Checkpoint, WeightsMustBeFloat) {
  TempDir dir;
  auto tensors = test::tiny_mixtral_tensors(false);
  for (auto& t : tensors)
    if (t.name == "model.norm.weight") t.dtype = DType::I32;
  test::write_model_dir(dir.path(), test::tiny_mixtral_config(), tensors);
  EXPECT_THAT(open_error(dir.path()), HasSubstr("tensor 'model.norm.weight' has dtype I32"));
}

TEST(Checkpoint, F16AndF32WeightsConvert) {
  TempDir dir;
  auto tensors = test::tiny_mixtral_tensors(false);
  tensors[0].dtype = DType::F32;  // embed
  tensors[1].dtype = DType::F16;  // final norm
  test::write_model_dir(dir.path(), test::tiny_mixtral_config(), tensors);
  auto ckpt = Checkpoint::open(dir.path());
  EXPECT_EQ(ckpt->view({WeightKind::Embed}).dtype, DType::F32);
  EXPECT_EQ(ckpt->f32({WeightKind::Embed}), tensors[0].values);
  EXPECT_EQ(ckpt->view({WeightKind::FinalNorm}).dtype, DType::F16);
  EXPECT_EQ(ckpt->f32({WeightKind::FinalNorm}), tensors[1].values);
}

TEST(Checkpoint, TiedEmbeddingsResolveLmHeadToTheEmbedding) {
  TempDir dir;
  auto config = test::tiny_mixtral_config();
  config["tie_word_embeddings"] = true;
  const auto tensors = without(test::tiny_mixtral_tensors(false), "lm_head.weight");
  test::write_model_dir(dir.path(), config, tensors);
  auto ckpt = Checkpoint::open(dir.path());
  EXPECT_TRUE(ckpt->has({WeightKind::LmHead}));
  EXPECT_EQ(ckpt->view({WeightKind::LmHead}).name, "model.embed_tokens.weight");
  EXPECT_EQ(ckpt->f32({WeightKind::LmHead}), ckpt->f32({WeightKind::Embed}));

  // Untied and no lm_head: an error naming it.
  TempDir untied;
  test::write_model_dir(untied.path(), test::tiny_mixtral_config(), tensors);
  EXPECT_THAT(open_error(untied.path()), HasSubstr("missing tensor 'lm_head.weight'"));
}

TEST(Checkpoint, RotaryInverseFrequencyBuffersAreIgnored) {
  TempDir dir;
  auto tensors = test::tiny_mixtral_tensors(false);
  tensors.push_back(test::make_tensor("model.layers.0.self_attn.rotary_emb.inv_freq", {2}, DType::F32));
  test::write_model_dir(dir.path(), test::tiny_mixtral_config(), tensors);
  auto ckpt = Checkpoint::open(dir.path());
  for (const auto& t : ckpt->stored_tensors()) EXPECT_EQ(t.name.find("inv_freq"), std::string::npos);
  EXPECT_EQ(ckpt->stored_tensors().size(), tensors.size() - 1);
}

TEST(Checkpoint, NonexistentOrIncompleteDirectory) {
  TempDir dir;
  EXPECT_THAT(open_error(dir / "no-such-model"),
              AllOf(HasSubstr((dir / "no-such-model").string()), HasSubstr("does not exist")));
  EXPECT_THAT(open_error(dir.path()),
              AllOf(HasSubstr((dir / "config.json").string()), HasSubstr("not found")));
  test::write_config(dir.path(), test::tiny_mixtral_config());
  EXPECT_THAT(open_error(dir.path()),
              AllOf(HasSubstr(dir.path().string()), HasSubstr("no model.safetensors")));
  test::write_text(dir / "consolidated.safetensors", "");
  EXPECT_THAT(open_error(dir.path()), HasSubstr("found consolidated.safetensors"));
  EXPECT_THAT(open_error(dir / "config.json"), HasSubstr("is not a directory"));
}

TEST(Checkpoint, UnknownFamilyAndCorruptWeights) {
  TempDir dir;
  auto config = test::tiny_mixtral_config();
  config["model_type"] = "gpt2";
  test::write_model_dir(dir.path(), config, test::tiny_mixtral_tensors(false));
  EXPECT_THAT(open_error(dir.path()), AllOf(HasSubstr((dir / "config.json").string()), HasSubstr("'gpt2'")));

  TempDir corrupt;
  test::write_model_dir(corrupt.path(), test::tiny_mixtral_config(), test::tiny_mixtral_tensors(false));
  fs::resize_file(corrupt / "model.safetensors", fs::file_size(corrupt / "model.safetensors") - 1);
  EXPECT_THAT(open_error(corrupt.path()), AllOf(HasSubstr((corrupt / "model.safetensors").string()),
                                                HasSubstr("exceed the data buffer")));
}

TEST(Checkpoint, Qwen2MoeSharedExpertDenseLayerAndBiases) {
  TempDir dir;
  const auto tensors = test::tiny_qwen2_moe_tensors();
  test::write_model_dir(dir.path(), test::tiny_qwen2_moe_config(), tensors);
  auto ckpt = Checkpoint::open(dir.path());
  EXPECT_EQ(ckpt->view({WeightKind::SharedExpertGate, 2}).shape, (std::vector<int64_t>{1, 16}));
  EXPECT_EQ(ckpt->view({WeightKind::SharedDown, 0}).shape, (std::vector<int64_t>{16, 12}));
  EXPECT_EQ(ckpt->view({WeightKind::DenseGate, 1}).name, "model.layers.1.mlp.gate_proj.weight");
  EXPECT_EQ(ckpt->view({WeightKind::DenseDown, 1}).shape, (std::vector<int64_t>{16, 20}));
  EXPECT_EQ(ckpt->f32({WeightKind::Bk, 2}),
            test::find_fixture(tensors, "model.layers.2.self_attn.k_proj.bias").values);
  EXPECT_FALSE(ckpt->has({WeightKind::Router, 1}));  // layer 1 is dense
  EXPECT_EQ(ckpt->view({WeightKind::ExpertGate, 2, 3}).shape, (std::vector<int64_t>{8, 16}));
  // Every weight the config implies is there with its canonical shape.
  for (const WeightId& id : model_weight_ids(ckpt->config()))
    EXPECT_EQ(ckpt->view(id).shape, canonical_shape(ckpt->config(), id)) << weight_id_string(id);

  // The shared-expert gate is required when the config has a shared expert.
  TempDir missing;
  test::write_model_dir(missing.path(), test::tiny_qwen2_moe_config(),
                        without(tensors, "model.layers.0.mlp.shared_expert_gate.weight"));
  EXPECT_THAT(open_error(missing.path()),
              HasSubstr("missing tensor 'model.layers.0.mlp.shared_expert_gate.weight'"));
}

TEST(Checkpoint, DbrxFusedQkvAndStackedExperts) {
  TempDir dir;
  const auto tensors = test::tiny_dbrx_tensors();
  test::write_model_dir(dir.path(), test::tiny_dbrx_config(), tensors);
  auto ckpt = Checkpoint::open(dir.path());
  EXPECT_EQ(ckpt->expert_layout(), ExpertLayout::Stacked);
  const auto& wqkv =
      test::find_fixture(tensors, "transformer.blocks.0.norm_attn_norm.attn.Wqkv.weight").values;
  // Wqkv [32, 16]: q rows 0..15, k rows 16..23, v rows 24..31.
  auto k = ckpt->f32({WeightKind::Wk, 0});
  ASSERT_EQ(k.size(), 8u * 16);
  EXPECT_EQ(k, std::vector<float>(wqkv.begin() + 16 * 16, wqkv.begin() + 24 * 16));
  EXPECT_EQ(ckpt->view({WeightKind::Wv, 0}).shape, (std::vector<int64_t>{8, 16}));
  // w1 [E*F, D]: expert 2's gate is rows 16..23.
  const auto& w1 = test::find_fixture(tensors, "transformer.blocks.0.ffn.experts.mlp.w1").values;
  EXPECT_EQ(ckpt->f32({WeightKind::ExpertGate, 0, 2}), std::vector<float>(w1.begin() + 16 * 16, w1.end()));
  // w2 holds down transposed: canonical down [D, F][i][j] = w2[e*F + j][i].
  const auto& w2 = test::find_fixture(tensors, "transformer.blocks.0.ffn.experts.mlp.w2").values;
  TensorView down = ckpt->view({WeightKind::ExpertDown, 0, 1});
  EXPECT_EQ(down.shape, (std::vector<int64_t>{16, 8}));
  auto d = ckpt->f32({WeightKind::ExpertDown, 0, 1});
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) ASSERT_EQ(d[i * 8 + j], w2[(8 + j) * 16 + i]) << i << "," << j;
}

// The checkpoints written by Hugging Face transformers (tests/data/oracles).
TEST(Checkpoint, EveryTransformersFixtureLoads) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(test::data_dir() / "oracles", ec))
    if (fs::exists(entry.path() / "config.json")) names.push_back(entry.path().filename());
  if (names.empty()) GTEST_SKIP() << "no fixtures under tests/data/oracles";
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    std::unique_ptr<Checkpoint> ckpt;
    ASSERT_NO_THROW(ckpt = Checkpoint::open(test::oracle_dir(name)));
    const ModelConfig& c = ckpt->config();
    EXPECT_EQ(ckpt->view({WeightKind::Embed}).shape, (std::vector<int64_t>{c.n_vocab, c.d_model}));
    EXPECT_EQ(ckpt->view({WeightKind::Wq, 0}).shape, (std::vector<int64_t>{c.q_dim(), c.d_model}));
    EXPECT_EQ(ckpt->view({WeightKind::LmHead}).shape, (std::vector<int64_t>{c.n_vocab, c.d_model}));
    int64_t stored = 0;
    for (const auto& t : ckpt->stored_tensors()) {
      int64_t numel = 1;
      for (int64_t d : t.shape) numel *= d;
      stored += numel;
    }
    EXPECT_EQ(stored, c.params_total());  // nothing missing, nothing extra
    for (int l = 0; l < c.n_layer; ++l) {
      if (!c.layer_is_moe[static_cast<size_t>(l)]) continue;
      EXPECT_EQ(ckpt->view({WeightKind::ExpertGate, l, c.n_expert - 1}).shape,
                (std::vector<int64_t>{c.d_expert, c.d_model}));
      EXPECT_EQ(ckpt->view({WeightKind::ExpertDown, l, 0}).shape,
                (std::vector<int64_t>{c.d_model, c.d_expert}));
    }
  }
}

TEST(Checkpoint, TransformersFusedAndPerExpertFixturesAgree) {
  const fs::path fused_dir = test::oracle_dir("mixtral_fused"),
                 per_expert_dir = test::oracle_dir("mixtral_spm");
  if (!fs::exists(fused_dir / "config.json") || !fs::exists(per_expert_dir / "config.json"))
    GTEST_SKIP() << "mixtral_fused / mixtral_spm fixtures absent";
  auto fused = Checkpoint::open(fused_dir);
  auto per_expert = Checkpoint::open(per_expert_dir);
  EXPECT_EQ(fused->expert_layout(), ExpertLayout::Fused);
  EXPECT_EQ(per_expert->expert_layout(), ExpertLayout::PerExpert);
  const ModelConfig& a = fused->config();
  const ModelConfig& b = per_expert->config();
  ASSERT_EQ(a.n_expert, b.n_expert);
  ASSERT_EQ(a.d_expert, b.d_expert);
  // Different random models (the widths agree, d_model may not): compare what the shapes must share.
  for (int e = 0; e < a.n_expert; ++e) {
    TensorView fg = fused->view({WeightKind::ExpertGate, 0, e}),
               pg = per_expert->view({WeightKind::ExpertGate, 0, e});
    EXPECT_EQ(fg.shape[0], pg.shape[0]);
    EXPECT_EQ(fg.shape, canonical_shape(a, {WeightKind::ExpertGate, 0, e}));
    EXPECT_EQ(pg.shape, canonical_shape(b, {WeightKind::ExpertGate, 0, e}));
    TensorView fd = fused->view({WeightKind::ExpertDown, 0, e}),
               pd = per_expert->view({WeightKind::ExpertDown, 0, e});
    EXPECT_EQ(fd.shape[1], pd.shape[1]);
    EXPECT_EQ(fd.shape, canonical_shape(a, {WeightKind::ExpertDown, 0, e}));
  }
  // Within the fused tensor, gate and up of one expert are adjacent row blocks: up follows gate.
  TensorView gate = fused->view({WeightKind::ExpertGate, 1, 2}),
             up = fused->view({WeightKind::ExpertUp, 1, 2});
  EXPECT_EQ(up.data - gate.data, a.d_expert * a.d_model * 2);
}

}  // namespace
}  // namespace ferry
