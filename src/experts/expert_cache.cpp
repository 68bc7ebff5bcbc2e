#include "ferry/experts/expert_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ferry/error.h"

namespace ferry::experts {

namespace {

// O_DIRECT reads need page-aligned buffers; the SSD loader reads straight into an entry.
constexpr size_t kEntryAlignment = 4096;
size_t alloc_bytes(size_t bytes) {
  return std::max<size_t>(kEntryAlignment, (bytes + kEntryAlignment - 1) / kEntryAlignment * kEntryAlignment);
}

struct FreeDeleter {
  bool owned = true;  // false: a slot of the cache's arena
  void operator()(uint8_t* p) const noexcept {
    if (owned) std::free(p);
  }
};

std::string mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

}  // namespace

struct ExpertCache::Entry {
  ExpertKey key;
  size_t bytes = 0;
  std::unique_ptr<uint8_t, FreeDeleter> data;
  bool ready = false;
  bool erased = false;  // dropped from the lookup; freed at the last unpin
  int pins = 0;
  uint64_t frequency = 0;  // uses of the key: inserts and find hits, counting earlier residencies
  uint64_t last_use = 0;   // the cache's tick at its last use (unique per entry)
  double reload_cost_s = 0;
  double score = 0;        // the score policy's priority (GreedyDual's H)
  OrderKey order{};        // its key in order_
};

// ---- Pin --------------------------------------------------------------------------------------------

ExpertCache::Pin::Pin(ExpertCache* cache, Entry* entry) : cache_(cache), entry_(entry) { cache_->pin(*entry_); }

ExpertCache::Pin::Pin(Pin&& other) noexcept
    : cache_(std::exchange(other.cache_, nullptr)), entry_(std::exchange(other.entry_, nullptr)) {}

ExpertCache::Pin& ExpertCache::Pin::operator=(Pin&& other) noexcept {
  if (this != &other) {
    reset();
    cache_ = std::exchange(other.cache_, nullptr);
    entry_ = std::exchange(other.entry_, nullptr);
  }
  return *this;
}

void ExpertCache::Pin::reset() {
  if (!entry_) return;
  Entry* e = std::exchange(entry_, nullptr);
  std::exchange(cache_, nullptr)->unpin(*e);
}

uint8_t* ExpertCache::Pin::data() const {
  FERRY_ASSERT_MSG(entry_, "data() of an empty Pin");
  return entry_->data.get();
}

size_t ExpertCache::Pin::bytes() const {
  FERRY_ASSERT_MSG(entry_, "bytes() of an empty Pin");
  return entry_->bytes;
}

ExpertKey ExpertCache::Pin::key() const {
  FERRY_ASSERT_MSG(entry_, "key() of an empty Pin");
  return entry_->key;
}

bool ExpertCache::Pin::ready() const {
  FERRY_ASSERT_MSG(entry_, "ready() of an empty Pin");
  return entry_->ready;
}

// ---- ExpertCache ------------------------------------------------------------------------------------

ExpertCache::ExpertCache(size_t capacity_bytes, EvictionPolicy policy, size_t slot_bytes)
    : capacity_(capacity_bytes), policy_(policy) {
  if (slot_bytes == 0) return;
  slot_bytes_ = alloc_bytes(slot_bytes);
  const size_t n = capacity_bytes / slot_bytes_;
  if (n == 0)
    throw Error("the DRAM expert cache budget of " + mib(capacity_bytes) + " cannot hold one expert of " +
                mib(slot_bytes_) + ": raise the DRAM expert cache budget");
  capacity_ = n * slot_bytes_;
  // 2 MiB-aligned and marked for transparent huge pages: the arena is faulted in (and, registered with
  // io_uring, pinned) 512 times faster than in 4 KiB pages.
  const size_t huge = size_t{2} << 20;
  arena_ = static_cast<uint8_t*>(std::aligned_alloc(huge, (capacity_ + huge - 1) / huge * huge));
  if (arena_) madvise(arena_, (capacity_ + huge - 1) / huge * huge, MADV_HUGEPAGE);
  if (!arena_)
    throw Error("cannot allocate " + mib(capacity_) + " of host memory for the DRAM expert cache (" +
                std::strerror(errno) + "): lower the DRAM expert cache budget");
  for (size_t i = n; i-- > 0;) pool_.push_back({slot_bytes_, arena_ + i * slot_bytes_});
}

ExpertCache::~ExpertCache() {
  FERRY_ASSERT_MSG(live_pins_ == 0, "an ExpertCache::Pin outlived its cache");
  if (arena_) {
    std::free(arena_);
    return;
  }
  for (const PoolBlock& b : pool_) std::free(b.data);
}

void ExpertCache::give_back(Entry& e) {
  if (arena_) {  // a slot goes back to the free list whatever the bytes
    pool_.push_back({slot_bytes_, e.data.release()});
    return;
  }
  const size_t alloc = alloc_bytes(e.bytes);
  if (!e.data || bytes_resident_ + pooled_bytes_ + alloc > capacity_) return;  // freed with the entry
  pool_.push_back({alloc, e.data.release()});
  pooled_bytes_ += alloc;
}

uint8_t* ExpertCache::take(size_t alloc) {
  if (arena_) {
    FERRY_ASSERT_MSG(!pool_.empty(), "slot mode: charges admitted an entry with no free slot");
    uint8_t* p = pool_.back().data;
    pool_.pop_back();
    return p;
  }
  for (size_t i = 0; i < pool_.size(); ++i)
    if (pool_[i].alloc == alloc) {
      uint8_t* p = pool_[i].data;
      pool_[i] = pool_.back();
      pool_.pop_back();
      pooled_bytes_ -= alloc;
      return p;
    }
  return nullptr;
}

// The eviction order: the entry with the smallest key goes first. The second member is the entry's
// last-use tick, unique per entry, so keys never collide and ties go to the least recent entry.
//   lru    (0, last_use)
//   lfu    (frequency, last_use)
//   score  (H, last_use) with GreedyDual-Size-Frequency's priority (Cherkasova 1998)
//              H = L + frequency * reload_cost_s / bytes
//          where L, the clock, starts at 0 and is raised to the H of every entry evicted. H is
//          recomputed from the current L at each use. frequency * cost / bytes is the reload time a
//          resident byte of the entry has saved: a costly-to-reload entry outlives a cheap one of equal
//          frequency, and a large entry must earn its room, since under a byte budget it displaces
//          several small ones. L ages the cache: an entry not used since the clock passed its H goes
//          before any entry used since, however hot it once was (plain LFU's weakness).
// frequency counts every use of the key since the cache was made, across evictions (past_uses_ keeps
// the count of keys not resident: at most L x E numbers). The runtime requests each layer's experts in
// turn, so an expert's next request comes a whole forward step later; a cache smaller than one step's
// working set evicts every entry before its reuse, and a count that restarted at each load would leave
// every entry at 1 (LFU and score would degrade to LRU, which then hits nothing). Kept counts let the
// hot experts win their room back (tools/bench/bench_expert_cache --synthetic shows the difference).
ExpertCache::OrderKey ExpertCache::order_key(const Entry& e) const {
  switch (policy_) {
    case EvictionPolicy::Lru: return {0.0, e.last_use};
    case EvictionPolicy::Lfu: return {static_cast<double>(e.frequency), e.last_use};
    case EvictionPolicy::Score: return {e.score, e.last_use};
  }
  FERRY_ASSERT_MSG(false, "unknown EvictionPolicy");
  return {};
}

// Callers take e out of order_ first and put it back after: its order key changes.
void ExpertCache::touch(Entry& e) {
  ++e.frequency;
  e.last_use = ++clock_tick_;
  const double per_byte = e.reload_cost_s / static_cast<double>(std::max<size_t>(e.bytes, 1));
  e.score = score_clock_ + static_cast<double>(e.frequency) * per_byte;
  e.order = order_key(e);
}

void ExpertCache::remember(const Entry& e) { past_uses_[e.key] = e.frequency; }

void ExpertCache::pin(Entry& e) {
  if (e.pins++ == 0) bytes_pinned_ += e.bytes;
  ++live_pins_;
}

void ExpertCache::unpin(Entry& e) {
  FERRY_ASSERT(e.pins > 0 && live_pins_ > 0);
  --live_pins_;
  if (--e.pins > 0) return;
  bytes_pinned_ -= e.bytes;
  if (e.erased) drop(e);
}

void ExpertCache::drop(Entry& e) {
  FERRY_ASSERT(e.erased && e.pins == 0);
  bytes_resident_ -= e.bytes;
  give_back(e);
  auto it = std::find_if(erased_.begin(), erased_.end(), [&](const auto& p) { return p.get() == &e; });
  FERRY_ASSERT(it != erased_.end());
  erased_.erase(it);  // frees the entry and its memory
}

ExpertCache::Pin ExpertCache::find(ExpertKey key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    ++counters_.misses;
    return {};
  }
  ++counters_.hits;
  Entry& e = *it->second;
  order_.erase(e.order);
  touch(e);
  order_.emplace(e.order, &e);
  return Pin(this, &e);
}

bool ExpertCache::contains(ExpertKey key) const { return entries_.count(key) != 0; }

// Walks the eviction order once from the front, skipping pinned entries, until `bytes` more fit. The
// caller has checked that the unpinned entries free enough.
void ExpertCache::evict_until_fits(size_t bytes) {
  for (auto it = order_.begin(); capacity_ - bytes_resident_ < bytes;) {
    FERRY_ASSERT_MSG(it != order_.end(), "pinned bytes were checked to leave room");
    Entry& victim = *it->second;
    if (victim.pins > 0) {
      ++it;
      continue;
    }
    if (policy_ == EvictionPolicy::Score) score_clock_ = std::max(score_clock_, victim.score);
    it = order_.erase(it);
    bytes_resident_ -= victim.bytes;
    ++counters_.evictions;
    remember(victim);
    give_back(victim);
    const ExpertKey key = victim.key;  // a copy: erasing frees victim
    entries_.erase(key);
  }
}

ExpertCache::Pin ExpertCache::insert(ExpertKey key, size_t asked_bytes, double reload_cost_s) {
  FERRY_ASSERT_MSG(!contains(key), "insert of a resident expert: find() it instead");
  FERRY_ASSERT_MSG(!arena_ || asked_bytes <= slot_bytes_, "slot mode: an insert larger than a slot");
  const size_t bytes = arena_ ? slot_bytes_ : asked_bytes;  // slot mode charges a whole slot
  FERRY_ASSERT_MSG(std::isfinite(reload_cost_s) && reload_cost_s >= 0, "reload cost must be finite, >= 0");
  if (bytes > capacity_)
    throw Error("expert " + to_string(key) + " needs " + std::to_string(bytes) + " bytes (" + mib(bytes) +
                ") but the DRAM expert cache budget is " + std::to_string(capacity_) + " bytes (" + mib(capacity_) +
                ") in all: raise the DRAM expert cache budget to at least " + mib(bytes) +
                " (several experts' worth, so that a layer's experts fit together)");
  // Pinned entries stay: when even evicting everything else leaves no room, refuse without evicting
  // anything (the caller streams this expert without caching it, or waits for pins to go).
  if (capacity_ - bytes_pinned_ < bytes) {
    ++counters_.refusals;
    return {};
  }
  evict_until_fits(bytes);

  const size_t alloc = alloc_bytes(bytes);
  auto e = std::make_unique<Entry>();
  uint8_t* reused = take(alloc);
  if (arena_) {
    e->data = std::unique_ptr<uint8_t, FreeDeleter>(reused, FreeDeleter{false});
  } else if (!reused && bytes_resident_ + pooled_bytes_ + bytes > capacity_) {
    // blocks of another size hold the room: give them up first
    for (const PoolBlock& b : pool_) std::free(b.data);
    pool_.clear();
    pooled_bytes_ = 0;
  }
  if (!arena_) e->data.reset(reused ? reused : static_cast<uint8_t*>(std::aligned_alloc(kEntryAlignment, alloc)));
  if (!e->data)
    throw Error("cannot allocate " + mib(bytes) + " of host memory for expert " + to_string(key) +
                " in the DRAM expert cache (" + std::strerror(errno) + "): lower the DRAM expert cache budget");
  e->key = key;
  e->bytes = bytes;
  e->reload_cost_s = reload_cost_s;
  if (auto past = past_uses_.find(key); past != past_uses_.end()) {
    e->frequency = past->second;
    past_uses_.erase(past);
  }
  touch(*e);  // the insert is its first use
  order_.emplace(e->order, e.get());
  bytes_resident_ += bytes;
  ++counters_.inserts;
  Entry* raw = e.get();
  entries_.emplace(key, std::move(e));
  return Pin(this, raw);
}

void ExpertCache::mark_ready(const Pin& pin) {
  FERRY_ASSERT_MSG(pin && pin.cache_ == this, "mark_ready of an empty Pin or another cache's Pin");
  FERRY_ASSERT_MSG(!pin.entry_->ready, "mark_ready of an entry already Ready");
  pin.entry_->ready = true;
}

void ExpertCache::erase(const Pin& pin) {
  FERRY_ASSERT_MSG(pin && pin.cache_ == this, "erase of an empty Pin or another cache's Pin");
  if (pin.entry_->erased) return;
  erase(pin.entry_->key);
}

void ExpertCache::erase(ExpertKey key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  Entry& e = *it->second;
  order_.erase(e.order);
  remember(e);
  e.erased = true;
  if (e.pins > 0) {
    erased_.push_back(std::move(it->second));  // stays charged until its last Pin goes
    entries_.erase(it);
  } else {
    bytes_resident_ -= e.bytes;
    give_back(e);
    entries_.erase(it);
  }
}

CacheStats ExpertCache::stats() const {
  CacheStats s = counters_;
  s.bytes_resident = bytes_resident_;
  s.capacity = capacity_;
  return s;
}

void ExpertCache::reset_stats() { counters_ = CacheStats{}; }

}  // namespace ferry::experts
