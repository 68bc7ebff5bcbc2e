// The generator admits a request only with KV room for all it may generate: on a cache that holds two of
// the requests at a time, the others wait (and produce what they produce alone) instead of a running
// sequence finding the cache full; one request that cannot fit even the empty cache fails by itself.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ferry/checkpoint.h"
#include "ferry/cpu_model.h"
#include "ferry/generator.h"
#include "ferry/tokenizer.h"
#include "test_util.h"

namespace ferry {
namespace {

std::vector<GenerationRequest> requests(const Tokenizer& tok, int n, int max_tokens) {
  std::vector<GenerationRequest> reqs(n);
  for (int i = 0; i < n; ++i) {
    reqs[i].id = std::to_string(i);
    reqs[i].prompt = tok.encode("the request number " + std::to_string(i), true);
    reqs[i].max_tokens = max_tokens;
    reqs[i].ignore_eos = true;
  }
  return reqs;
}

std::vector<GenerationOutput> run(Model& m, const Tokenizer& tok, std::span<const GenerationRequest> reqs, int batch) {
  Generator gen(m, tok, {.max_sequences = batch});
  std::vector<GenerationOutput> outs(reqs.size());
  gen.run(reqs, nullptr, [&](GenerationOutput&& o) { outs[o.index] = std::move(o); });
  return outs;
}

TEST(GeneratorKvAdmission, RequestsWaitForKvRoomInsteadOfFailing) {
  auto ckpt = Checkpoint::open(test::oracle_dir("mixtral_spm"));
  auto tok = load_tokenizer(test::oracle_dir("mixtral_spm"));
  const std::vector<GenerationRequest> reqs = requests(*tok, 6, 20);
  for (const GenerationRequest& r : reqs) ASSERT_LE(r.prompt.size() + 20, 32u);  // two blocks of 16 each

  CpuModelOptions roomy;
  CpuModel alone(*ckpt, roomy);
  CpuModelOptions tight;
  tight.kv_cache_tokens = 64;  // four blocks: two such requests at a time
  CpuModel small(*ckpt, tight);
  ASSERT_EQ(small.kv_blocks() * small.kv_block_tokens(), 64);

  const std::vector<GenerationOutput> want = run(alone, *tok, reqs, 1);
  const std::vector<GenerationOutput> got = run(small, *tok, reqs, 6);  // asks for 6 at once
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(got[i].finish, FinishReason::Length) << got[i].error;
    EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i;
  }
}

TEST(GeneratorKvAdmission, ARequestLargerThanTheWholeCacheFailsAlone) {
  auto ckpt = Checkpoint::open(test::oracle_dir("mixtral_spm"));
  auto tok = load_tokenizer(test::oracle_dir("mixtral_spm"));
  std::vector<GenerationRequest> reqs = requests(*tok, 3, 8);
  reqs[1].max_tokens = 100;  // prompt + 100 positions > 64
  CpuModelOptions tight;
  tight.kv_cache_tokens = 64;
  CpuModel small(*ckpt, tight);
  const std::vector<GenerationOutput> got = run(small, *tok, reqs, 3);
  EXPECT_EQ(got[0].finish, FinishReason::Length) << got[0].error;
  EXPECT_EQ(got[2].finish, FinishReason::Length) << got[2].error;
  ASSERT_EQ(got[1].finish, FinishReason::Error);
  EXPECT_NE(got[1].error.find("KV cache holds 64"), std::string::npos) << got[1].error;
  EXPECT_NE(got[1].error.find("--kv-tokens"), std::string::npos) << got[1].error;
}

}  // namespace
}  // namespace ferry
