// The paged KV cache every target uses (src/exec/kv_cache.h): block tables, slots, reuse of a finished
// sequence's blocks, a caller-given arena, and the errors a user sees.
#include <gtest/gtest.h>

#include <vector>

#include "exec/kv_cache.h"
#include "ferry/error.h"

namespace ferry {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 8;
  c.d_model = 32;
  c.max_position = 64;
  return c;
}

TEST(KvCache, SlotsFollowTheBlockTableAndFreedBlocksAreReusedFirst) {
  const ModelConfig c = tiny_config();
  KvCache kv(c, DType::BF16, 16, 64);  // 4 blocks
  EXPECT_EQ(kv.blocks_total(), 4);
  EXPECT_EQ(kv.max_blocks_per_sequence(), 4);
  const int a = kv.add_sequence(), b = kv.add_sequence();
  std::vector<int32_t> slots(20);
  kv.reserve(a, 20, slots.data());  // 2 blocks
  EXPECT_EQ(kv.n_blocks(a), 2);
  for (int p = 0; p < 20; ++p) EXPECT_EQ(slots[p], kv.block_table(a)[p / 16] * 16 + p % 16) << p;
  kv.advance(a, 20);
  EXPECT_EQ(kv.length(a), 20);
  EXPECT_EQ(kv.blocks_needed(a, 12), 0);  // fits the second block
  EXPECT_EQ(kv.blocks_needed(a, 13), 1);
  kv.reserve(b, 1, slots.data());
  const int32_t b_block = kv.block_table(b)[0];
  EXPECT_EQ(kv.blocks_free(), 1);
  const std::vector<int32_t> a_blocks(kv.block_table(a), kv.block_table(a) + 2);
  kv.free_sequence(a);
  EXPECT_EQ(kv.blocks_free(), 3);
  const int c2 = kv.add_sequence();
  EXPECT_EQ(c2, a);  // the freed id first
  kv.reserve(c2, 1, slots.data());
  EXPECT_TRUE(kv.block_table(c2)[0] == a_blocks[0] || kv.block_table(c2)[0] == a_blocks[1]);
  EXPECT_NE(kv.block_table(c2)[0], b_block);
}

TEST(KvCache, FullCacheAndContextLimitAreClearErrors) {
  const ModelConfig c = tiny_config();
  KvCache kv(c, DType::BF16, 16, 32);  // 2 blocks
  const int a = kv.add_sequence();
  try {
    kv.reserve(a, 65, nullptr);
    FAIL() << "expected a context error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context of 64"), std::string::npos) << e.what();
  }
  kv.reserve(a, 32, nullptr);
  kv.advance(a, 32);
  const int b = kv.add_sequence();
  try {
    kv.reserve(b, 1, nullptr);
    FAIL() << "expected a full-cache error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("KV cache is full"), std::string::npos) << e.what();
  }
  EXPECT_EQ(kv.n_blocks(b), 0);  // a failed reserve takes nothing
}

TEST(KvCache, CallerArenaIsAddressedNotOwned) {
  const ModelConfig c = tiny_config();
  const size_t bytes = KvCache::bytes_for(c, DType::F32, 16, 32);
  EXPECT_EQ(bytes, 2u * 2 * 2 * 2 * 16 * 8 * 4);  // K+V, layers, blocks, Hkv, block tokens, Dh, f32
  std::vector<std::byte> arena(bytes);
  KvCache kv(c, DType::F32, 16, 32, arena.data());
  EXPECT_EQ(kv.layer(0).k, arena.data());
  EXPECT_EQ(static_cast<std::byte*>(kv.layer(1).v) + bytes / 4, arena.data() + bytes);
  const int a = kv.add_sequence();
  int32_t slot = -1;
  kv.reserve(a, 1, &slot);
  const std::vector<float> k(16, 1.5f), v(16, -2.0f);
  cpu::kv_cache_store(kv.layer(1), &slot, 1, k.data(), v.data());
  std::vector<float> k_out(16), v_out(16);
  cpu::kv_cache_load(kv.layer(1), slot, k_out.data(), v_out.data());
  EXPECT_EQ(k_out, k);
  EXPECT_EQ(v_out, v);
}

}  // namespace
}  // namespace ferry
