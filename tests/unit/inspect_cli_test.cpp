// `ferry inspect`: the numbers it prints (checked against hand computation), config-only directories,
// and a non-zero exit with a message naming the file for broken models.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "model_fixtures.h"
#include "test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string quoted(const fs::path& p) {
  return "'" + p.string() + "'";
}

nlohmann::json mixtral_8x7b_config() {
  return nlohmann::json::parse(R"({
    "model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 32768,
    "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "num_local_experts": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": null,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 32000, "bos_token_id": 1,
    "eos_token_id": 2})");
}

TEST(InspectCli, ConfigOnlyDirectoryReportsConfigFactsAndAbsentWeights) {
  TempDir dir;
  test::write_config(dir.path(), mixtral_8x7b_config());
  auto text = test::run_ferry("inspect --model " + quoted(dir.path()));
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, AllOf(HasSubstr("Mixtral"), HasSubstr("46.70 B"), HasSubstr("12.88 B"),
                              HasSubstr("absent"), HasSubstr("top-2"), HasSubstr("8 kv heads")));

  auto r = test::run_ferry("inspect --json --model " + quoted(dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["family"], "Mixtral");
  EXPECT_EQ(j["n_layer"], 32);
  EXPECT_EQ(j["n_head_kv"], 8);
  EXPECT_EQ(j["head_dim"], 128);
  EXPECT_EQ(j["n_expert"], 8);
  EXPECT_EQ(j["n_expert_used"], 2);
  EXPECT_EQ(j["d_expert"], 14336);
  EXPECT_EQ(j["dense_layers"].size(), 0u);
  EXPECT_EQ(j["moe_layers"].size(), 32u);
  EXPECT_EQ(j["declared_dtype"], "bfloat16");
  EXPECT_EQ(j["weights"]["present"], false);
  EXPECT_EQ(j["params"]["total"], 46'702'792'704LL);
  EXPECT_EQ(j["params"]["active_per_token"], 12'879'925'248LL);
  EXPECT_EQ(j["params"]["experts"], 45'097'156'608LL);
  // bf16: 2 bytes a parameter.
  EXPECT_EQ(j["bytes"]["bf16"]["experts"], 2 * 45'097'156'608LL);
  EXPECT_EQ(j["bytes"]["bf16"]["dense"], 2 * 1'605'636'096LL);
  // int8 experts: 1 byte a parameter + a bf16 scale per row (rows: 14336 for w1/w3, 4096 for w2).
  EXPECT_EQ(j["bytes"]["int8"]["experts"], 45'097'156'608LL + 256LL * 2 * (2 * 14336 + 4096));
  // int4 experts: half a byte a parameter + 4 bytes (bf16 scale + zero) per group of 64 along a row.
  EXPECT_EQ(j["bytes"]["int4"]["experts"], 45'097'156'608LL / 2 + 45'097'156'608LL / 64 * 4);
}

TEST(InspectCli, ModelWithWeightsReportsStoredBytes) {
  TempDir dir;
  test::write_model_dir(dir.path(), test::tiny_mixtral_config(), test::tiny_mixtral_tensors(true));
  auto r = test::run_ferry("inspect --json --model " + quoted(dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["weights"]["present"], true);
  EXPECT_EQ(j["weights"]["expert_layout"], "fused gate_up_proj/down_proj");
  EXPECT_EQ(j["weights"]["files"], 1);
  // L=2 layers x E=4 experts x 3 x F=24 x D=16, bf16.
  EXPECT_EQ(j["weights"]["expert_bytes"]["BF16"], 2 * 4 * 3 * 24 * 16 * 2);
  EXPECT_EQ(j["weights"]["params"], j["params"]["total"]);

  auto text = test::run_ferry("inspect --model " + quoted(dir.path()));
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, AllOf(HasSubstr("stored BF16"), HasSubstr("matches config.json")));
}

// A packed store (ferry convert): its files, precisions, chunk counts and sizes; --verify checks every
// checksum and names the file of a damaged chunk.
TEST(InspectCli, PackedStoreShowsItsTiersAndVerifyFindsADamagedChunk) {
  TempDir dir;
  test::write_model_dir(dir.path() / "hf", test::tiny_mixtral_config(), test::tiny_mixtral_tensors(true));
  const fs::path store = dir.path() / "store";
  auto c = test::run_ferry("convert --model " + quoted(dir.path() / "hf") + " --out " + quoted(store) +
                           " --precision bf16,int4 --group-size 32");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  auto r = test::run_ferry("inspect --json --verify --model " + quoted(store));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["store"]["experts"].size(), 2u);
  EXPECT_EQ(j["store"]["experts"][0]["precision"], "bf16");
  EXPECT_EQ(j["store"]["experts"][1]["precision"], "int4");
  EXPECT_EQ(j["store"]["experts"][1]["group_size"], 32);
  for (const auto& e : j["store"]["experts"]) {
    EXPECT_EQ(e["chunks"], 2 * 4);  // L=2 MoE layers x E=4 experts
    EXPECT_EQ(e["stored_bytes"].get<int64_t>() % 4096, 0);
    EXPECT_GT(e["chunk_bytes"].get<int64_t>(), 0);
  }
  EXPECT_EQ(j["store"]["verified"]["failed"], 0);
  EXPECT_EQ(j["store"]["verified"]["checked"], 1 + 2 * 8);

  auto text = test::run_ferry("inspect --model " + quoted(store));
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, AllOf(HasSubstr("experts-bf16.bin: 8 chunks"), HasSubstr("experts int4 (group 32)")));

  {  // one byte of the first int4 chunk flipped
    std::fstream f(store / "experts-int4-g32.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(10);
    char b = 0;
    f.get(b);
    f.seekp(10);
    f.put(static_cast<char>(b ^ 1));
  }
  auto bad = test::run_ferry("inspect --verify --model " + quoted(store));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, AllOf(HasSubstr("experts-int4-g32.bin"), HasSubstr("layer 0, expert 0"), HasSubstr("checksum")));
}

TEST(InspectCli, BrokenModelsExitNonZeroNamingTheFile) {
  TempDir truncated;
  test::write_model_dir(truncated.path(), test::tiny_mixtral_config(), test::tiny_mixtral_tensors(false));
  fs::resize_file(truncated / "model.safetensors", 100);
  auto r = test::run_ferry("inspect --model " + quoted(truncated.path()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr((truncated / "model.safetensors").string()));

  TempDir unknown;
  auto config = test::tiny_mixtral_config();
  config["model_type"] = "llama";
  test::write_config(unknown.path(), config);
  r = test::run_ferry("inspect --model " + quoted(unknown.path()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, AllOf(HasSubstr((unknown / "config.json").string()), HasSubstr("'llama'")));

  r = test::run_ferry("inspect --model " + quoted(unknown / "missing-dir"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, AllOf(HasSubstr("missing-dir"), HasSubstr("does not exist")));

  TempDir no_shard;
  test::write_sharded_model_dir(no_shard.path(), test::tiny_mixtral_config(),
                                test::tiny_mixtral_tensors(false), 2);
  fs::remove(no_shard / "model-00001-of-00002.safetensors");
  r = test::run_ferry("inspect --model " + quoted(no_shard.path()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(
      r.err, AllOf(HasSubstr("model.safetensors.index.json"), HasSubstr("model-00001-of-00002.safetensors")));
}

TEST(InspectCli, EveryTransformersFixtureInspects) {
  std::error_code ec;
  int n = 0;
  for (const auto& entry : fs::directory_iterator(test::data_dir() / "oracles", ec)) {
    if (!fs::exists(entry.path() / "config.json")) continue;
    ++n;
    auto r = test::run_ferry("inspect --json --model " + quoted(entry.path()));
    ASSERT_EQ(r.exit_code, 0) << entry.path() << ": " << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["weights"]["present"], true) << entry.path();
    EXPECT_EQ(j["weights"]["params"], j["params"]["total"]) << entry.path();
  }
  if (n == 0) GTEST_SKIP() << "no fixtures under tests/data/oracles";
}

}  // namespace
}  // namespace ferry
