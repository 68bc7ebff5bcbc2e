// The routed experts of a packed store served from two tiers: the store's expert file on SSD and a DRAM
// cache under a byte budget (ExpertCache). acquire() makes a layer's routed experts resident and pinned
// (the misses read together through the ChunkReader, several in flight), checks each chunk's XXH64 (a
// mismatch is read again once, then reported naming layer, expert, file and offset), decompresses zstd
// chunks, and hands out views the CPU ops read in place. prefetch() starts reads for experts a later layer
// is expected to use without waiting for them, so the disk works while the CPU computes.
//
// Used from one thread (the forward's). A budget smaller than one layer's routed experts works: the caller
// acquires them in groups of at most max_pinned() (ferry's cpu target does).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ferry/exec/model_weights.h"
#include "ferry/experts/chunk_reader.h"
#include "ferry/experts/eviction_policy.h"
#include "ferry/experts/expert_cache.h"
#include "ferry/experts/packed_store.h"
#include "ferry/experts/tier_stats.h"

namespace ferry::experts {

struct TieredExpertsOptions {
  size_t dram_budget_bytes = 0;  // > 0
  EvictionPolicy eviction = EvictionPolicy::Lru;
  ReaderKind reader = ReaderKind::Auto;
  int queue_depth = 16;
  std::unique_ptr<ChunkReader> reader_override;  // tests: a fake reader with injected faults
};

class TieredExperts {
 public:
  // `file` is one of store.experts. Throws ferry::Error when the budget cannot hold one expert.
  TieredExperts(const StoreManifest& store, const ExpertTierFile& file, TieredExpertsOptions options);
  ~TieredExperts();

  // Experts that fit the budget at once: the most one acquire may ask for.
  int max_pinned() const { return max_pinned_; }
  // Makes experts `ids` of `layer` resident and pinned until release(); table[e] = a view of expert e for
  // each e in ids (other entries untouched). At most max_pinned() ids, none twice.
  void acquire(int layer, std::span<const int> ids, const MlpWeights** table);
  void release();
  // Whether expert `expert` of `layer` is in DRAM or on its way there (a read in flight): an acquire of it
  // reads nothing new from the store.
  bool holds(int layer, int expert) const { return cache_.contains({layer, expert}); }
  // Starts reads of these experts of `layer` that are not resident, as far as unpinned room allows.
  void prefetch(int layer, std::span<const int> ids);

  const TieredExpertsStats& stats() const { return stats_; }
  // The cache's own counters (its hits include the acquire's second pin on each miss: use stats()).
  CacheStats cache_stats() const { return cache_.stats(); }
  size_t chunk_bytes() const { return entry_bytes_; }
  const ExpertImage& image() const { return file_->image; }  // the layout of every chunk
  ReaderKind reader_kind() const { return reader_->kind(); }
  bool fixed_buffers() const { return registered_; }  // the cache's slots registered with the reader

 private:
  struct Pending;
  void acquire_pinned(int layer, std::span<const int> ids);  // held_[i] = a Ready pin of ids[i]
  void start_read(ExpertCache::Pin pin, const ExpertChunk& chunk, bool prefetch);
  void submit(Pending& p);
  void complete_one_batch();  // waits for at least one completion and processes what came
  void finish(uint64_t tag, int error);

  StoreManifest store_;
  const ExpertTierFile* file_ = nullptr;
  MlpWeights proto_;
  size_t entry_bytes_ = 0;
  int max_pinned_ = 0;
  std::unique_ptr<ChunkReader> reader_;
  int fd_ = 0;
  ExpertCache cache_;
  std::unordered_map<uint64_t, std::unique_ptr<Pending>> pending_;  // by tag
  std::vector<std::unique_ptr<Pending>> spare_;                       // finished, for the next reads
  uint64_t next_tag_ = 1;
  std::vector<ExpertCache::Pin> held_;
  std::vector<MlpWeights> views_;  // [max_pinned]: the views handed out by the last acquire
  void* zstd_ = nullptr;           // ZSTD_DCtx
  TieredExpertsStats stats_;
  bool registered_ = false;
  std::vector<ChunkCompletion> done_;
  std::unordered_set<ExpertKey, ExpertKeyHash> prefetched_;  // read ahead and not used yet
};

}  // namespace ferry::experts
