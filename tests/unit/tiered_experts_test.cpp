// The SSD and DRAM tiers of a packed store's routed experts (TieredExperts), driven through the fake chunk
// reader: what acquire() hands out is the store's bytes, pins survive a budget smaller than the model,
// prefetched experts are hits, and every fault the reader can inject (short reads, EIO, a flipped byte, a
// truncated file) is either absorbed (short reads, one flipped byte) or reported naming layer, expert,
// file and offset: never wrong bytes.
#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "chunk_test_util.h"
#include "ferry/checkpoint.h"
#include "ferry/error.h"
#include "ferry/experts/packed_store.h"
#include "ferry/experts/tiered_experts.h"

namespace ferry::experts {
namespace {

namespace fs = std::filesystem;
const fs::path kOracles = fs::path(FERRY_TEST_DATA) / "oracles";

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

class TieredExpertsTest : public ::testing::Test {
 protected:
  void SetUp() override { use_store(false); }

  void use_store(bool zstd) {
    const fs::path out = tmp_.path() / (zstd ? "zstd" : "plain");
    if (!fs::exists(out)) {
      ConvertOptions o;
      o.zstd = zstd;
      const auto ckpt = Checkpoint::open(kOracles / "mixtral_spm");
      convert_to_store(*ckpt, out, o);
    }
    store_ = read_store_manifest(out);
    file_ = store_.expert_file(DType::BF16, 0);
    ASSERT_NE(file_, nullptr);
    bytes_ = read_bytes(store_.dir / file_->file);
    entry_ = (file_->image.bytes + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
  }

  // A TieredExperts over the store through a fake reader holding `bytes` (the store's file unless given)
  // with these faults, and a budget of n_entries experts.
  std::unique_ptr<TieredExperts> make(int n_entries, const FakeFaults& faults = {},
                                      EvictionPolicy policy = EvictionPolicy::Lru,
                                      const std::vector<uint8_t>* bytes = nullptr) {
    auto fake = make_fake_reader();
    const fs::path path = store_.dir / file_->file;
    fake->add_file(path, bytes ? *bytes : bytes_);
    fake->set_faults(path, faults);
    TieredExpertsOptions o;
    o.dram_budget_bytes = static_cast<size_t>(n_entries) * entry_;
    o.eviction = policy;
    o.reader_override = std::move(fake);
    return std::make_unique<TieredExperts>(store_, *file_, std::move(o));
  }

  // The stored image of (layer, expert): what a view handed out must point at.
  std::vector<uint8_t> image_of(int layer, int expert) const {
    const ExpertChunk* c = file_->find(layer, expert);
    EXPECT_NE(c, nullptr);
    EXPECT_EQ(c->codec, ChunkCodec::None);
    return {bytes_.begin() + static_cast<ptrdiff_t>(c->offset),
            bytes_.begin() + static_cast<ptrdiff_t>(c->offset + file_->image.bytes)};
  }
  static const uint8_t* base_of(const MlpWeights& m, const ExpertImage& img) {
    return m.gate.data.data() - img.offset[0];
  }
  int first_moe_layer() const { return file_->chunks.front().layer; }
  int n_expert() const { return store_.config.n_expert; }
  // The error message of acquiring expert 0 of the first MoE layer.
  std::string acquire_error(TieredExperts& t) {
    std::vector<const MlpWeights*> table(n_expert(), nullptr);
    const int id = 0;
    try {
      t.acquire(first_moe_layer(), {&id, 1}, table.data());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  test::TempDir tmp_;
  StoreManifest store_;
  const ExpertTierFile* file_ = nullptr;
  std::vector<uint8_t> bytes_;
  size_t entry_ = 0;
};

TEST_F(TieredExpertsTest, AcquiredExpertsAreTheStoredImagesUnderABudgetOfTwo) {
  auto t = make(2);
  EXPECT_EQ(t->max_pinned(), 2);
  std::vector<const MlpWeights*> table(n_expert(), nullptr);
  for (const ExpertChunk& c : file_->chunks) {
    const int other = (c.expert + 1) % n_expert();
    const int ids[] = {c.expert, other};
    t->acquire(c.layer, ids, table.data());
    for (int e : ids) {
      const std::vector<uint8_t> want = image_of(c.layer, e);
      ASSERT_EQ(std::memcmp(base_of(*table[e], file_->image), want.data(), want.size()), 0)
          << "layer " << c.layer << " expert " << e;
      EXPECT_EQ(table[e]->gate.rows, store_.config.d_expert);
    }
    t->release();
  }
  // every chunk was read at least once; a budget of two cannot hold a layer, so most were read again
  EXPECT_GE(t->stats().misses, file_->chunks.size());
  EXPECT_LE(t->cache_stats().bytes_resident, 2 * entry_);
}

TEST_F(TieredExpertsTest, ARepeatedAcquireHitsAndReadsNothing) {
  auto t = make(4);
  std::vector<const MlpWeights*> table(n_expert(), nullptr);
  const int ids[] = {1, 3};
  t->acquire(first_moe_layer(), ids, table.data());
  t->release();
  const uint64_t read = t->stats().bytes_read;
  t->acquire(first_moe_layer(), ids, table.data());
  t->release();
  EXPECT_EQ(t->stats().hits, 2u);
  EXPECT_EQ(t->stats().misses, 2u);
  EXPECT_EQ(t->stats().bytes_read, read);
}

TEST_F(TieredExpertsTest, PrefetchedExpertsAreHitsWithTheRightBytes) {
  auto t = make(4);
  const int l = first_moe_layer();
  const int ids[] = {2, 0};
  t->prefetch(l, ids);
  EXPECT_EQ(t->stats().prefetch_reads, 2u);
  std::vector<const MlpWeights*> table(n_expert(), nullptr);
  t->acquire(l, ids, table.data());
  EXPECT_EQ(t->stats().prefetch_hits, 2u);
  EXPECT_EQ(t->stats().misses, 0u);
  for (int e : ids) {
    const std::vector<uint8_t> want = image_of(l, e);
    EXPECT_EQ(std::memcmp(base_of(*table[e], file_->image), want.data(), want.size()), 0);
  }
  t->release();
}

TEST_F(TieredExpertsTest, PrefetchNeverEvictsPinnedExperts) {
  auto t = make(2);
  const int l = first_moe_layer();
  std::vector<const MlpWeights*> table(n_expert(), nullptr);
  const int held[] = {0, 1};
  t->acquire(l, held, table.data());
  const int more[] = {2, 3};
  t->prefetch(l, more);  // no unpinned room: nothing starts
  EXPECT_EQ(t->stats().prefetch_reads, 0u);
  for (int e : held) {
    const std::vector<uint8_t> want = image_of(l, e);
    EXPECT_EQ(std::memcmp(base_of(*table[e], file_->image), want.data(), want.size()), 0);
  }
  t->release();
}

TEST_F(TieredExpertsTest, ShortReadsAndLatencyAreAbsorbed) {
  FakeFaults f;
  f.short_read_bytes = 1000;
  f.latency_s = 0.001;
  auto t = make(2, f);
  std::vector<const MlpWeights*> table(n_expert(), nullptr);
  const int l = first_moe_layer(), id = 3;
  t->acquire(l, {&id, 1}, table.data());
  const std::vector<uint8_t> want = image_of(l, id);
  EXPECT_EQ(std::memcmp(base_of(*table[id], file_->image), want.data(), want.size()), 0);
  t->release();
}

TEST_F(TieredExpertsTest, OneFlippedByteIsReadAgainAndTwoAreAnErrorNamingTheChunk) {
  const ExpertChunk* c = file_->find(first_moe_layer(), 0);
  FakeFaults once;
  once.flip_at_offset = c->offset + 17;
  auto t = make(2, once);
  EXPECT_EQ(acquire_error(*t), "");
  EXPECT_EQ(t->stats().checksum_retries, 1u);

  FakeFaults always = once;
  always.flip_times = INT32_MAX;
  auto bad = make(2, always);
  const std::string msg = acquire_error(*bad);
  EXPECT_NE(msg.find("checksum"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layer " + std::to_string(c->layer) + ", expert 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find(file_->file), std::string::npos) << msg;
  EXPECT_NE(msg.find("offset " + std::to_string(c->offset)), std::string::npos) << msg;
  // the failed entry is gone: a later acquire reads it again (and fails again), never serves it
  EXPECT_NE(acquire_error(*bad).find("checksum"), std::string::npos);
}

TEST_F(TieredExpertsTest, EioIsAnErrorNamingTheChunkAndTheErrno) {
  const ExpertChunk* c = file_->find(first_moe_layer(), 0);
  FakeFaults f;
  f.eio_at_offset = c->offset;
  f.eio_times = INT32_MAX;
  auto t = make(2, f);
  const std::string msg = acquire_error(*t);
  EXPECT_NE(msg.find("read failed"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::strerror(EIO)), std::string::npos) << msg;
  EXPECT_NE(msg.find("expert 0"), std::string::npos) << msg;
  // other experts still read
  std::vector<const MlpWeights*> table(n_expert(), nullptr);
  const int id = 1;
  EXPECT_NO_THROW(t->acquire(first_moe_layer(), {&id, 1}, table.data()));
  t->release();
}

TEST_F(TieredExpertsTest, ATruncatedFileIsAnErrorNamingTheTruncation) {
  const ExpertChunk* c = file_->find(first_moe_layer(), 0);
  std::vector<uint8_t> cut(bytes_.begin(), bytes_.begin() + static_cast<ptrdiff_t>(c->offset + kChunkAlign));
  auto t = make(2, {}, EvictionPolicy::Lru, &cut);
  const std::string msg = acquire_error(*t);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find(file_->file), std::string::npos) << msg;
}

TEST_F(TieredExpertsTest, DataThatDoesNotMatchTheManifestIsNeverServed) {
  // bytes that are not the ones the manifest describes: every chunk fails its checksum
  std::vector<uint8_t> wrong = bytes_;
  for (size_t i = 0; i < wrong.size(); i += 97) wrong[i] ^= 0x5a;
  auto t = make(2, {}, EvictionPolicy::Lru, &wrong);
  EXPECT_NE(acquire_error(*t).find("checksum"), std::string::npos);
}

TEST_F(TieredExpertsTest, ZstdChunksDecompressToTheImage) {
  std::vector<std::vector<uint8_t>> want;  // the uncompressed store's images, in chunk order
  for (const ExpertChunk& c : file_->chunks) want.push_back(image_of(c.layer, c.expert));
  use_store(true);
  auto t = make(2);
  std::vector<const MlpWeights*> table(n_expert(), nullptr);
  size_t n_zstd = 0;
  for (size_t i = 0; i < file_->chunks.size(); ++i) {
    const ExpertChunk& c = file_->chunks[i];
    n_zstd += c.codec == ChunkCodec::Zstd;
    t->acquire(c.layer, {&c.expert, 1}, table.data());
    EXPECT_EQ(std::memcmp(base_of(*table[c.expert], file_->image), want[i].data(), want[i].size()), 0)
        << "layer " << c.layer << " expert " << c.expert;
    t->release();
  }
  EXPECT_GT(n_zstd, 0u) << "zstd saved nothing on bf16 random weights";
}

TEST_F(TieredExpertsTest, ABudgetBelowOneExpertIsRefusedNamingTheFlag) {
  auto fake = make_fake_reader();
  TieredExpertsOptions o;
  o.dram_budget_bytes = entry_ - 1;
  o.reader_override = std::move(fake);
  try {
    TieredExperts t(store_, *file_, std::move(o));
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--dram-budget"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ferry::experts
