// The DRAM expert cache: charges never pass the capacity, a pinned entry is never evicted, and each
// eviction policy gives up the entry its rule names (LRU the least recent, LFU the least used with uses
// counted across evictions, score a cheap-to-reload entry before a costly one of equal use).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ferry/error.h"
#include "ferry/experts/expert_cache.h"

namespace ferry::experts {
namespace {

constexpr size_t kEntry = 8192;

ExpertCache::Pin load(ExpertCache& c, int expert, double cost = 1e-3) {
  ExpertCache::Pin p = c.insert({0, expert}, kEntry, cost);
  if (p) c.mark_ready(p);
  return p;
}

TEST(ExpertCache, ChargesStayWithinTheCapacityAndPinsBlockEviction) {
  ExpertCache c(3 * kEntry, EvictionPolicy::Lru);
  ExpertCache::Pin a = load(c, 0);
  ExpertCache::Pin b = load(c, 1);
  ExpertCache::Pin d = load(c, 2);
  EXPECT_EQ(c.bytes_resident(), 3 * kEntry);
  EXPECT_EQ(c.bytes_pinned(), 3 * kEntry);
  // everything pinned: refused, nothing evicted
  EXPECT_FALSE(c.insert({0, 3}, kEntry, 1e-3));
  EXPECT_EQ(c.stats().refusals, 1u);
  EXPECT_EQ(c.n_resident(), 3u);
  b.reset();  // expert 1 may go now, though 0 is older
  ExpertCache::Pin e = load(c, 3);
  ASSERT_TRUE(e);
  EXPECT_TRUE(c.contains({0, 0}));
  EXPECT_FALSE(c.contains({0, 1}));
  EXPECT_TRUE(c.contains({0, 2}));
  EXPECT_LE(c.bytes_resident(), c.capacity());
  EXPECT_EQ(c.stats().evictions, 1u);
}

TEST(ExpertCache, PinnedBytesStayReadableUntilTheLastPinGoes) {
  ExpertCache c(2 * kEntry, EvictionPolicy::Lru);
  ExpertCache::Pin a = load(c, 0);
  a.data()[5] = 42;
  ExpertCache::Pin again = c.find({0, 0});
  c.erase(ExpertKey{0, 0});  // a failed load, say: gone from lookup at once
  EXPECT_FALSE(c.contains({0, 0}));
  EXPECT_EQ(again.data()[5], 42);
  EXPECT_EQ(c.bytes_resident(), kEntry);  // still charged
  a.reset();
  again.reset();
  EXPECT_EQ(c.bytes_resident(), 0u);
}

TEST(ExpertCache, AnEvictedEntrysMemoryIsReusedByTheNextInsert) {
  ExpertCache c(2 * kEntry, EvictionPolicy::Lru);
  const uint8_t* first = load(c, 0).data();
  load(c, 1);
  const uint8_t* third = load(c, 2).data();  // evicts 0 and takes its block: no fresh mapping
  EXPECT_EQ(third, first);
  EXPECT_LE(c.bytes_resident(), c.capacity());
  // a key erased by hand gives its block to the next insert too
  const uint8_t* second = c.find({0, 1}).data();
  c.erase(ExpertKey{0, 1});
  EXPECT_EQ(load(c, 3).data(), second);
}

TEST(ExpertCache, SlotModeCarvesOneArenaAndChargesAWholeSlot) {
  ExpertCache c(3 * kEntry + 100, EvictionPolicy::Lru, kEntry);
  EXPECT_EQ(c.capacity(), 3 * kEntry);  // whole slots
  EXPECT_EQ(c.arena_bytes(), 3 * kEntry);
  std::vector<const uint8_t*> seen;
  for (int e = 0; e < 7; ++e) {
    ExpertCache::Pin p = c.insert({0, e}, kEntry / 2, 1e-3);  // half a slot asked, a slot charged
    ASSERT_TRUE(p);
    c.mark_ready(p);
    EXPECT_GE(p.data(), c.arena());
    EXPECT_LT(p.data(), c.arena() + c.arena_bytes());
    EXPECT_EQ((p.data() - c.arena()) % kEntry, 0);
    seen.push_back(p.data());
  }
  EXPECT_EQ(c.bytes_resident(), 3 * kEntry);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()) - seen.begin(), 3);  // only the three slots, reused
  EXPECT_THROW(ExpertCache(kEntry - 1, EvictionPolicy::Lru, kEntry), Error);
}

TEST(ExpertCache, LruEvictsTheLeastRecentlyUsed) {
  ExpertCache c(2 * kEntry, EvictionPolicy::Lru);
  load(c, 0);
  load(c, 1);
  c.find({0, 0});  // 0 is now the more recent
  load(c, 2);
  EXPECT_TRUE(c.contains({0, 0}));
  EXPECT_FALSE(c.contains({0, 1}));
}

TEST(ExpertCache, LfuKeepsTheHotExpertAndRemembersCountsAcrossEvictions) {
  ExpertCache c(2 * kEntry, EvictionPolicy::Lfu);
  load(c, 0);
  for (int i = 0; i < 5; ++i) c.find({0, 0});
  load(c, 1);
  load(c, 2);  // 1 (one use) goes, not 0 (six)
  EXPECT_TRUE(c.contains({0, 0}));
  EXPECT_FALSE(c.contains({0, 1}));
  // 0 evicted by hand, then loaded again: it comes back with its count and outlives 2
  c.erase(ExpertKey{0, 0});
  load(c, 0);
  load(c, 3);
  EXPECT_TRUE(c.contains({0, 0}));
  EXPECT_FALSE(c.contains({0, 2}));
}

TEST(ExpertCache, ScoreKeepsTheCostlierReloadAtEqualUse) {
  ExpertCache c(2 * kEntry, EvictionPolicy::Score);
  load(c, 0, 10e-3);  // slow to read again (say, from SSD)
  load(c, 1, 1e-3);   // cheap
  load(c, 2, 1e-3);
  EXPECT_TRUE(c.contains({0, 0}));
  EXPECT_FALSE(c.contains({0, 1}));
}

TEST(ExpertCache, AnEntryLargerThanTheWholeBudgetIsAnErrorNamingTheBudget) {
  ExpertCache c(kEntry, EvictionPolicy::Lru);
  try {
    c.insert({2, 7}, 2 * kEntry, 1e-3);
    FAIL() << "accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("layer 2 expert 7"), std::string::npos) << m;
    EXPECT_NE(m.find("budget"), std::string::npos) << m;
  }
}

TEST(ExpertCache, PolicyNamesRoundTripAndUnknownOnesListTheChoices) {
  for (EvictionPolicy p : {EvictionPolicy::Lru, EvictionPolicy::Lfu, EvictionPolicy::Score})
    EXPECT_EQ(parse_eviction_policy(eviction_policy_name(p)), p);
  try {
    parse_eviction_policy("fifo");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lru"), std::string::npos);
  }
}

}  // namespace
}  // namespace ferry::experts
