// The packed store (ferry convert): the cpu target computes the same logits from a store as from the
// Hugging Face directory, at every stored precision and with zstd chunks; an interrupted or damaged store is
// refused with a message naming the file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "ferry/checkpoint.h"
#include "ferry/cpu_model.h"
#include "ferry/error.h"
#include "ferry/experts/chunk_reader.h"
#include "ferry/experts/packed_store.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
const fs::path kOracles = fs::path(FERRY_TEST_DATA) / "oracles";

class PackedStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-store-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path convert(const std::string& model, const std::string& name, experts::ConvertOptions o = {}) {
    const auto ckpt = Checkpoint::open(kOracles / model);
    const fs::path out = dir_ / name;
    last_ = experts::convert_to_store(*ckpt, out, o);
    return out;
  }
  // Logits of a short prompt and two decode steps.
  static std::vector<float> logits(const Checkpoint& ckpt, DType expert_dtype) {
    CpuModelOptions o;
    o.expert_dtype = expert_dtype;
    o.kv_dtype = DType::F32;
    CpuModel m(ckpt, o);
    const int s = m.add_sequence();
    std::vector<float> all;
    const std::vector<int32_t> prompt{1, 5, 9, 14, 3};
    std::vector<float> l = m.forward(std::vector<ForwardItem>{{s, prompt, true}});
    all.insert(all.end(), l.begin(), l.end());
    for (int32_t t : {7, 11}) {
      const std::vector<int32_t> one{t};
      l = m.forward(std::vector<ForwardItem>{{s, one, false}});
      all.insert(all.end(), l.begin(), l.end());
    }
    return all;
  }
  fs::path dir_;
  experts::ConvertResult last_;
};

TEST_F(PackedStoreTest, CpuTargetFromAStoreGivesTheLogitsOfTheCheckpointAtEveryPrecision) {
  for (const std::string model : {"mixtral_spm", "qwen2_moe_bpe", "olmoe_bpe"}) {
    experts::ConvertOptions o;
    o.precisions = {DType::BF16, DType::I8, DType::I4};
    const fs::path store = convert(model, model, o);
    ASSERT_TRUE(experts::is_packed_store(store));
    const auto hf = Checkpoint::open(kOracles / model);
    const auto st = Checkpoint::open(store);
    ASSERT_NE(st->packed_store(), nullptr) << model;
    EXPECT_EQ(st->config().n_layer, hf->config().n_layer);
    for (DType d : {DType::BF16, DType::I8, DType::I4})
      EXPECT_EQ(logits(*st, d), logits(*hf, d)) << model << " " << dtype_name(d);
  }
}

TEST_F(PackedStoreTest, ZstdChunksDecompressToTheSameLogits) {
  experts::ConvertOptions o;
  o.zstd = true;
  const fs::path store = convert("mixtral_spm", "z", o);
  EXPECT_GT(last_.zstd_chunks, 0u) << "bf16 experts of normal weights compress by a page or more";
  EXPECT_EQ(logits(*Checkpoint::open(store), DType::BF16),
            logits(*Checkpoint::open(kOracles / "mixtral_spm"), DType::BF16));
  // the dequantising path (another precision than the store holds) reads the zstd chunks too
  EXPECT_EQ(logits(*Checkpoint::open(store), DType::I8),
            logits(*Checkpoint::open(kOracles / "mixtral_spm"), DType::I8));
}

// Greedy decoding from a store: the prompt's and each step's logits, the tokens chosen.
struct Greedy {
  std::vector<float> logits;
  std::vector<int32_t> tokens;
};
Greedy greedy(const Checkpoint& ckpt, CpuModelOptions o, int n_new) {
  o.kv_dtype = DType::F32;
  CpuModel m(ckpt, o);
  Greedy g;
  const int s = m.add_sequence();
  std::vector<int32_t> step{1, 5, 9, 14, 3, 22, 8};
  for (int i = 0; i < n_new; ++i) {
    const std::vector<float> l = m.forward(std::vector<ForwardItem>{{s, step, false}});
    g.logits.insert(g.logits.end(), l.begin(), l.end());
    const int32_t next = static_cast<int32_t>(std::max_element(l.end() - m.config().n_vocab, l.end()) -
                                              (l.end() - m.config().n_vocab));
    g.tokens.push_back(next);
    step = {next};
  }
  return g;
}

TEST_F(PackedStoreTest, CpuTargetUnderADramBudgetAThirdOfTheModelGeneratesTheSameTokens) {
  for (const std::string model : {"mixtral_spm", "qwen2_moe_bpe"}) {
    experts::ConvertOptions co;
    co.precisions = {DType::BF16, DType::I8};
    co.zstd = model == "mixtral_spm";
    const fs::path store = convert(model, model + "-budget", co);
    const auto st = Checkpoint::open(store);
    const experts::StoreManifest& m = *st->packed_store();
    for (DType d : {DType::BF16, DType::I8}) {
      const experts::ExpertTierFile* f = m.expert_file(d, 64);
      ASSERT_NE(f, nullptr);
      const uint64_t model_bytes = m.dense_bytes + f->stored_bytes();
      CpuModelOptions o;
      o.expert_dtype = d;
      const Greedy all = greedy(*st, o, 12);
      for (const char* policy : {"lru", "lfu", "score"}) {
        o.dram_expert_budget = f->stored_bytes() / 3;  // the model is more than 3x as large
        o.eviction = policy;
        o.reader = "pread";
        ASSERT_LE(o.dram_expert_budget * 3, model_bytes);
        const Greedy tiered = greedy(*st, o, 12);
        EXPECT_EQ(tiered.tokens, all.tokens) << model << " " << dtype_name(d) << " " << policy;
        EXPECT_EQ(tiered.logits, all.logits) << model << " " << dtype_name(d) << " " << policy;
      }
      // the io_uring reader (auto falls back to pread where io_uring is refused) and a budget of one expert
      o.reader = "auto";
      o.eviction = "lru";
      o.dram_expert_budget = f->image.bytes + experts::kChunkAlign;
      EXPECT_EQ(greedy(*st, o, 6).tokens, std::vector<int32_t>(all.tokens.begin(), all.tokens.begin() + 6))
          << model << " " << dtype_name(d);
    }
  }
}

// Substitution on a miss: a threshold no gate weight falls below changes nothing (bit-identical logits, no
// substitution); a threshold of 1 serves every missed expert from its int4 copy, so fewer experts are read
// from the store, every routed expert use is a hit, a miss or a substitution, and the logits stay within
// the int4 bound of the bf16 run.
TEST_F(PackedStoreTest, SubstitutionOnAMissServesLightlyWeightedMissesFromTheResidentCopy) {
  experts::ConvertOptions co;
  co.precisions = {DType::BF16, DType::I4};
  const fs::path store = convert("mixtral_spm", "subst", co);
  const auto st = Checkpoint::open(store);
  const experts::ExpertTierFile* f = st->packed_store()->expert_file(DType::BF16, 64);
  ASSERT_NE(f, nullptr);
  CpuModelOptions o;
  o.dram_expert_budget = f->stored_bytes() / 4;
  o.reader = "pread";
  constexpr int kSteps = 24;
  const ModelConfig& c = st->config();
  const uint64_t routed_uses = static_cast<uint64_t>(kSteps) * c.n_moe_layers() * c.n_expert_used;
  auto run = [&](float below, experts::TieredExpertsStats* tier, SubstitutionStats* sub) {
    o.substitute_below = below;
    CpuModel m(*st, o);
    std::vector<float> out;
    const int s = m.add_sequence();
    for (int i = 0; i < kSteps; ++i) {  // one teacher-forced token per forward, as decode runs
      const int32_t token = static_cast<int32_t>(1 + (i * 7919) % (m.config().n_vocab - 1));
      const std::vector<float> l = m.forward(std::vector<ForwardItem>{{s, std::span(&token, 1), false}});
      out.insert(out.end(), l.begin(), l.end());
    }
    *tier = *m.expert_tier_stats();
    *sub = m.substitution_stats();
    return out;
  };
  experts::TieredExpertsStats t_off, t_none, t_all;
  SubstitutionStats s_off, s_none, s_all;
  const std::vector<float> off = run(0, &t_off, &s_off);
  const std::vector<float> none = run(1e-9f, &t_none, &s_none);
  EXPECT_EQ(s_none.experts, 0u);
  EXPECT_EQ(none, off);
  const std::vector<float> all = run(1.0f, &t_all, &s_all);
  EXPECT_GT(s_all.experts, 0u);
  EXPECT_GE(s_all.assignments, s_all.experts);
  EXPECT_EQ(s_all.bytes_not_read, s_all.experts * f->image.bytes);
  EXPECT_LT(t_all.misses, t_off.misses);
  EXPECT_EQ(t_off.hits + t_off.misses, routed_uses);  // one token: K distinct experts per layer
  EXPECT_EQ(t_all.hits + t_all.misses + s_all.experts, routed_uses);
  EXPECT_NE(all, off);
  const auto [lo, hi] = std::minmax_element(off.begin(), off.end());
  double worst = 0;
  for (size_t i = 0; i < off.size(); ++i) worst = std::max<double>(worst, std::fabs(all[i] - off[i]));
  EXPECT_LT(worst / (*hi - *lo), kCpuErrorI4.max);
}

TEST_F(PackedStoreTest, SubstitutionNeedsABudgetALowerPrecisionAndItsFile) {
  const fs::path store = convert("mixtral_spm", "bf16-only-subst");
  const auto st = Checkpoint::open(store);
  auto error_of = [&](CpuModelOptions o) {
    try {
      CpuModel m(*st, o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CpuModelOptions o;
  o.substitute_below = 0.3f;
  EXPECT_NE(error_of(o).find("--dram-budget"), std::string::npos) << error_of(o);
  o.dram_expert_budget = 1 << 16;
  EXPECT_NE(error_of(o).find("--precision bf16,int4"), std::string::npos) << error_of(o);
  o.substitute_dtype = DType::BF16;
  EXPECT_NE(error_of(o).find("int8 or int4"), std::string::npos) << error_of(o);
  o.substitute_dtype = DType::I4;
  o.substitute_below = 1.5f;
  EXPECT_NE(error_of(o).find("(0, 1]"), std::string::npos) << error_of(o);
}

TEST_F(PackedStoreTest, ADramBudgetNeedsAStoreAndTheStoresPrecision) {
  CpuModelOptions o;
  o.dram_expert_budget = 1 << 20;
  try {
    CpuModel m(*Checkpoint::open(kOracles / "mixtral_spm"), o);
    FAIL() << "a budget over a Hugging Face directory was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ferry convert"), std::string::npos) << e.what();
  }
  const fs::path store = convert("mixtral_spm", "bf16-only");
  o.expert_dtype = DType::I4;
  try {
    CpuModel m(*Checkpoint::open(store), o);
    FAIL() << "a precision the store lacks was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--precision int4"), std::string::npos) << e.what();
  }
}

TEST_F(PackedStoreTest, AStoreIsReadableByEveryCommandThatReadsAModelDirectory) {
  const fs::path store = convert("mixtral_spm", "s");
  for (const char* f : {"config.json", "tokenizer.model", "ferry-store.json", "dense.bin", "experts-bf16.bin"})
    EXPECT_TRUE(fs::exists(store / f)) << f;
  EXPECT_EQ(load_model_config(store).n_expert, load_model_config(kOracles / "mixtral_spm").n_expert);
}

TEST_F(PackedStoreTest, ConvertRefusesANonEmptyDirectoryAndLeavesNoManifestWhenItFails) {
  fs::create_directories(dir_ / "busy");
  std::ofstream(dir_ / "busy" / "x") << "x";
  const auto ckpt = Checkpoint::open(kOracles / "mixtral_spm");
  try {
    experts::convert_to_store(*ckpt, dir_ / "busy", {});
    FAIL() << "converted into a non-empty directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not empty"), std::string::npos) << e.what();
  }
  experts::ConvertOptions bad;
  bad.precisions = {DType::BF16, DType::F32};
  EXPECT_THROW(experts::convert_to_store(*ckpt, dir_ / "bad", bad), Error);
  EXPECT_FALSE(experts::is_packed_store(dir_ / "bad"));
}

std::string open_error(const fs::path& store) {
  try {
    const auto ckpt = Checkpoint::open(store);
    CpuModel m(*ckpt);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_F(PackedStoreTest, DamagedStoresAreRefusedNamingTheFile) {
  const fs::path store = convert("mixtral_spm", "d");
  // a flipped byte in the dense weights
  {
    std::fstream f(store / "dense.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(100);
    char c;
    f.get(c);
    f.seekp(100);
    f.put(static_cast<char>(c ^ 1));
  }
  std::string msg = open_error(store);
  EXPECT_NE(msg.find("dense.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("checksum"), std::string::npos) << msg;
  // a truncated expert file
  const fs::path store2 = convert("mixtral_spm", "t");
  fs::resize_file(store2 / "experts-bf16.bin", fs::file_size(store2 / "experts-bf16.bin") - 4096);
  msg = open_error(store2);
  EXPECT_NE(msg.find("experts-bf16.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("past the end"), std::string::npos) << msg;
  // a manifest from another model (its chunk count does not match the config)
  const fs::path store3 = convert("mixtral_spm", "m");
  const fs::path other = convert("olmoe_bpe", "o");
  fs::copy_file(other / "config.json", store3 / "config.json", fs::copy_options::overwrite_existing);
  msg = open_error(store3);
  EXPECT_NE(msg.find("ferry-store.json"), std::string::npos) << msg;
}

}  // namespace
}  // namespace ferry
