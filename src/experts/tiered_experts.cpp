#include "ferry/experts/tiered_experts.h"

#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "ferry/error.h"

namespace ferry::experts {

namespace {

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

size_t checked_budget(size_t budget, size_t entry_bytes) {
  if (budget < entry_bytes)
    throw Error("the DRAM expert budget of " + std::to_string(budget >> 20) + " MiB cannot hold one expert of " +
                std::to_string(entry_bytes >> 20) + " MiB; raise --dram-budget");
  return budget;
}

// A read's reload cost for the score policy: the chunk's bytes at an NVMe-class 2 GB/s.
double reload_cost_s(const ExpertChunk& c) { return static_cast<double>(c.stored_bytes) / 2e9; }

}  // namespace

struct TieredExperts::Pending {
  ExpertCache::Pin pin;
  const ExpertChunk* chunk = nullptr;
  AlignedBuffer staging;  // zstd chunks land here, then decompress into the pin
  int attempts = 0;
  bool prefetch = false;
};

TieredExperts::TieredExperts(const StoreManifest& store, const ExpertTierFile& file, TieredExpertsOptions o)
    : store_(store),
      file_(&store_.experts.at(static_cast<size_t>(&file - store.experts.data()))),
      entry_bytes_(round_up(file.image.bytes, kChunkAlign)),
      reader_(o.reader_override ? std::move(o.reader_override) : make_chunk_reader(o.reader, o.queue_depth)),
      cache_(checked_budget(o.dram_budget_bytes, entry_bytes_), o.eviction, entry_bytes_) {
  max_pinned_ = static_cast<int>(cache_.capacity() / entry_bytes_);
  proto_.gate = matrix_view(file_->gate, nullptr);
  proto_.up = matrix_view(file_->up, nullptr);
  proto_.down = matrix_view(file_->down, nullptr);
  fd_ = reader_->open(store_.dir / file_->file);
  // Uncompressed chunks land straight in the cache's slots: register them once for fixed-buffer reads.
  registered_ = reader_->register_memory(cache_.arena(), cache_.arena_bytes(), cache_.slot_bytes());
  views_.resize(max_pinned_);
}

TieredExperts::~TieredExperts() {
  held_.clear();
  try {
    while (reader_->in_flight() > 0) {
      done_.clear();
      reader_->wait(done_, 1);
    }
  } catch (...) {
  }
  pending_.clear();
  if (zstd_) ZSTD_freeDCtx(static_cast<ZSTD_DCtx*>(zstd_));
}

void TieredExperts::submit(Pending& p) {
  ++p.attempts;
  const bool zstd = p.chunk->codec == ChunkCodec::Zstd;
  if (zstd && p.staging.size() < p.chunk->stored_bytes) p.staging = AlignedBuffer(p.chunk->stored_bytes);
  ChunkRead r;
  r.file = fd_;
  r.offset = p.chunk->offset;
  r.bytes = p.chunk->stored_bytes;
  r.dst = zstd ? p.staging.data() : p.pin.data();
  r.tag = next_tag_;
  reader_->submit(std::span<const ChunkRead>(&r, 1));
}

void TieredExperts::start_read(ExpertCache::Pin pin, const ExpertChunk& chunk, bool prefetch) {
  // Reads reuse finished ones' records (and their zstd staging): a miss allocates nothing once warm.
  std::unique_ptr<Pending> p;
  if (spare_.empty()) {
    p = std::make_unique<Pending>();
  } else {
    p = std::move(spare_.back());
    spare_.pop_back();
  }
  p->attempts = 0;
  p->pin = std::move(pin);
  p->chunk = &chunk;
  p->prefetch = prefetch;
  const uint64_t tag = next_tag_;
  submit(*p);
  pending_.emplace(tag, std::move(p));
  ++next_tag_;
  if (prefetch) ++stats_.prefetch_reads;
}

void TieredExperts::finish(uint64_t tag, int error) {
  auto it = pending_.find(tag);
  FERRY_ASSERT(it != pending_.end());
  Pending& p = *it->second;
  const ExpertChunk& c = *p.chunk;
  const std::string where = (store_.dir / file_->file).string() + ": expert chunk (layer " +
                            std::to_string(c.layer) + ", expert " + std::to_string(c.expert) + ") at offset " +
                            std::to_string(c.offset);
  auto retire = [&] {
    std::unique_ptr<Pending> done = std::move(it->second);
    pending_.erase(it);
    done->pin = ExpertCache::Pin{};
    spare_.push_back(std::move(done));
  };
  auto fail = [&](const std::string& why) {
    cache_.erase(p.pin);
    retire();
    throw Error(where + ": " + why);
  };
  if (error != 0)
    fail(error == kEndOfFile ? std::string("the file ends before the chunk does (truncated store)")
                             : std::string("read failed: ") + std::strerror(error));
  stats_.bytes_read += c.stored_bytes;
  const uint8_t* payload = c.codec == ChunkCodec::Zstd ? p.staging.data() : p.pin.data();
  if (xxhash64(payload, c.payload_bytes) != c.xxh64) {
    if (p.attempts < 2) {  // a transient fault (bus, cable, driver) passes on a second read
      ++stats_.checksum_retries;
      auto node = pending_.extract(it);
      const uint64_t retry_tag = next_tag_;
      submit(*node.mapped());
      ++next_tag_;
      node.key() = retry_tag;
      pending_.insert(std::move(node));
      return;
    }
    fail("fails its checksum twice; the store is damaged: convert the model again");
  }
  if (c.codec == ChunkCodec::Zstd) {
    if (!zstd_) zstd_ = ZSTD_createDCtx();
    const size_t n = ZSTD_decompressDCtx(static_cast<ZSTD_DCtx*>(zstd_), p.pin.data(), file_->image.bytes, payload,
                                         c.payload_bytes);
    if (ZSTD_isError(n) || n != file_->image.bytes) fail("does not decompress");
  }
  cache_.mark_ready(p.pin);
  retire();
}

void TieredExperts::complete_one_batch() {
  done_.clear();
  reader_->wait(done_, 1);
  for (const ChunkCompletion& d : done_) finish(d.tag, d.error);
}

void TieredExperts::acquire(int layer, std::span<const int> ids, const MlpWeights** table) {
  FERRY_ASSERT(held_.empty());
  FERRY_ASSERT(static_cast<int>(ids.size()) <= max_pinned_);
  try {
    acquire_pinned(layer, ids);
  } catch (...) {
    held_.clear();  // a failed read leaves nothing pinned: the caller may go on (or retry) after the error
    throw;
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    views_[i] = image_view(proto_, file_->image, reinterpret_cast<std::byte*>(held_[i].data()));
    table[ids[i]] = &views_[i];
  }
}

void TieredExperts::acquire_pinned(int layer, std::span<const int> ids) {
  for (int e : ids) {
    const ExpertKey key{layer, e};
    ExpertCache::Pin pin = cache_.find(key);
    if (pin) {
      ++stats_.hits;
      if (prefetched_.erase(key)) ++stats_.prefetch_hits;
      held_.push_back(std::move(pin));
      continue;
    }
    ++stats_.misses;
    const ExpertChunk* chunk = file_->find(layer, e);
    FERRY_ASSERT(chunk);
    pin = cache_.insert(key, entry_bytes_, reload_cost_s(*chunk));
    // Only this acquire's own pins and in-flight prefetches hold room: wait for the prefetches to land (they
    // unpin then) and try again.
    while (!pin && !pending_.empty()) {
      complete_one_batch();
      pin = cache_.insert(key, entry_bytes_, reload_cost_s(*chunk));
    }
    FERRY_ASSERT_MSG(pin, "acquire asked for more experts than max_pinned()");
    ExpertCache::Pin mine = cache_.find(key);  // the acquire's own pin (the cache counts it a hit); the loader keeps the other
    held_.push_back(std::move(mine));
    start_read(std::move(pin), *chunk, false);
  }
  const auto wait_start = std::chrono::steady_clock::now();
  bool waited = false;
  for (;;) {
    bool all_ready = true;
    for (const ExpertCache::Pin& p : held_) all_ready = all_ready && p.ready();
    if (all_ready) break;
    complete_one_batch();
    waited = true;
  }
  if (waited) stats_.stall_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count();
}

void TieredExperts::release() { held_.clear(); }

void TieredExperts::prefetch(int layer, std::span<const int> ids) {
  for (int e : ids) {
    const ExpertKey key{layer, e};
    if (cache_.contains(key)) continue;
    const ExpertChunk* chunk = file_->find(layer, e);
    if (!chunk) continue;
    ExpertCache::Pin pin = cache_.insert(key, entry_bytes_, reload_cost_s(*chunk));
    if (!pin) return;  // no unpinned room: prefetch never waits
    start_read(std::move(pin), *chunk, true);
    prefetched_.insert(key);
  }
}

}  // namespace ferry::experts
