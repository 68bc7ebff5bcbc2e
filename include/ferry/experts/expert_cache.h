// The DRAM tier of the expert store: a cache of expert weights under a byte budget.
//
// The runtime asks it for the experts the router chose for a layer (find); a miss is loaded from the
// SSD store into a fresh entry (insert, the loader writes the bytes, mark_ready); predicted experts are
// prefetched the same way after a contains() check that counts nothing. Every entry handed out is
// pinned by a Pin handle: while any Pin of an entry lives it is never evicted, so the bytes a layer's
// FFN reads cannot vanish under it. The runtime holds a layer's pins while the layer runs.
//
// Charging: an entry charges exactly the bytes asked for against the capacity, and the sum of charges
// never exceeds it. Each entry owns its memory, 4096-byte aligned (O_DIRECT reads land in it directly);
// the rounding up to a whole page is not charged (under one page per expert of several MB). An evicted
// entry's memory goes to a free pool that the next insert of the same size takes, as long as the pool and
// the resident entries together stay within the capacity: a miss then costs the read alone, not a fresh
// mapping of several MB that the kernel must fault in and zero. With a slot size (the TieredExperts case:
// every expert of a store has the same size) the whole capacity is one arena carved into slots up front,
// each entry charged one slot: nothing is allocated after construction, and the arena can be registered
// with the reader once (io_uring fixed buffers).
//
// Threading: single-threaded. The cache and its Pins are used from one thread (the executor's
// scheduling thread); a loader on another thread may write into Pin::data() of a Loading entry, but
// calls on the cache itself (find, insert, mark_ready, erase, Pin destruction) stay on that one thread.
// There is no global state: caches are independent.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ferry/experts/eviction_policy.h"
#include "ferry/experts/expert_key.h"

namespace ferry::experts {

struct CacheStats {
  uint64_t hits = 0;       // find() calls that found the key resident (Ready or Loading)
  uint64_t misses = 0;     // find() calls that did not
  uint64_t evictions = 0;  // entries given up to make room (not counting erase())
  uint64_t inserts = 0;    // entries created by insert()
  uint64_t refusals = 0;   // insert() calls that found no room because pinned entries hold it
  size_t bytes_resident = 0;  // charged now, including erased entries a Pin still holds
  size_t capacity = 0;
};

class ExpertCache {
  struct Entry;

 public:
  // A pin on one entry: while it lives the entry stays resident. Empty (false) when find missed or
  // insert found no room. Move-only; destroying it (or reset()) unpins. Must not outlive its cache.
  class Pin {
   public:
    Pin() = default;
    Pin(Pin&& other) noexcept;
    Pin& operator=(Pin&& other) noexcept;
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    ~Pin() { reset(); }

    explicit operator bool() const { return entry_ != nullptr; }
    // The entry's bytes(); a loader writes them while the entry is Loading, everyone reads them once
    // it is Ready. The pointer is 4096-byte aligned.
    uint8_t* data() const;
    size_t bytes() const;
    ExpertKey key() const;
    bool ready() const;  // Ready; false while Loading
    void reset();        // unpins now; the Pin becomes empty

   private:
    friend class ExpertCache;
    Pin(ExpertCache* cache, Entry* entry);
    ExpertCache* cache_ = nullptr;
    Entry* entry_ = nullptr;
  };

  // slot_bytes > 0: the arena mode above (capacity rounded down to whole slots; an insert may ask for at
  // most slot_bytes and is charged a slot). Throws ferry::Error when the capacity holds no slot.
  ExpertCache(size_t capacity_bytes, EvictionPolicy policy, size_t slot_bytes = 0);
  ~ExpertCache();  // every Pin must be gone by now (asserted)
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  // Pins and returns the resident entry (Ready or Loading: a Loading one is being read by a loader the
  // caller waits for), counting a hit and a use for the policy; an empty Pin on a miss, counting a miss.
  Pin find(ExpertKey key);
  // Whether the key is resident (Ready or Loading), counting nothing and changing no policy state: for
  // prefetch decisions and tests.
  bool contains(ExpertKey key) const;

  // Creates a Loading entry of `bytes` for a key that is not resident (a resident key is a programmer
  // error: find first), evicting unpinned entries in the policy's order until it fits, and returns a
  // Pin to it for the loader. reload_cost_s is what loading it again would cost (the score policy
  // keeps costly entries longer). Returns an empty Pin, evicting nothing, when pinned entries hold so
  // much that it cannot fit; throws ferry::Error when `bytes` exceeds the whole capacity.
  Pin insert(ExpertKey key, size_t bytes, double reload_cost_s);
  // The loader finished writing: Loading -> Ready.
  void mark_ready(const Pin& pin);
  // Drops an entry whose load failed (or any resident key): find() misses it from now on and the key
  // may be inserted again; its memory and charge go when its last Pin does. erase(key) of a key that is
  // not resident does nothing.
  void erase(const Pin& pin);
  void erase(ExpertKey key);

  CacheStats stats() const;
  void reset_stats();  // zeroes the counters; residency and policy state stay
  size_t capacity() const { return capacity_; }
  size_t bytes_resident() const { return bytes_resident_; }
  size_t bytes_pinned() const { return bytes_pinned_; }
  size_t n_resident() const { return entries_.size(); }  // erased entries not counted
  EvictionPolicy policy() const { return policy_; }
  // The arena (slot mode) and its slot size; {nullptr, 0} otherwise.
  uint8_t* arena() const { return arena_; }
  size_t arena_bytes() const { return arena_ ? capacity_ : 0; }
  size_t slot_bytes() const { return slot_bytes_; }

 private:
  using OrderKey = std::pair<double, uint64_t>;  // evict the smallest first; see order_key()

  OrderKey order_key(const Entry& e) const;
  void touch(Entry& e);  // a use: frequency, recency and the score priority go up (e out of order_)
  void pin(Entry& e);
  void unpin(Entry& e);
  void evict_until_fits(size_t bytes);
  void drop(Entry& e);  // an erased entry whose last Pin went: frees it
  void remember(const Entry& e);  // it leaves: keep its use count for its next load
  void give_back(Entry& e);       // its memory to the pool, or freed when the pool would pass the capacity
  uint8_t* take(size_t alloc_bytes);  // a pooled block of that size (the pool gives it up), or null

  size_t capacity_;
  EvictionPolicy policy_;
  size_t bytes_resident_ = 0;
  size_t bytes_pinned_ = 0;
  uint64_t clock_tick_ = 0;  // recency: each use gets the next tick
  double score_clock_ = 0;   // GreedyDual's L: the priority of the last evicted entry
  int64_t live_pins_ = 0;
  CacheStats counters_;
  std::unordered_map<ExpertKey, std::unique_ptr<Entry>, ExpertKeyHash> entries_;
  std::map<OrderKey, Entry*> order_;  // every resident entry, pinned or not, in eviction order
  std::vector<std::unique_ptr<Entry>> erased_;  // erased while pinned: freed at their last unpin
  std::unordered_map<ExpertKey, uint64_t, ExpertKeyHash> past_uses_;  // use counts of keys not resident
  struct PoolBlock {
    size_t alloc = 0;   // bytes allocated (page-rounded)
    uint8_t* data = nullptr;
  };
  std::vector<PoolBlock> pool_;  // memory of evicted entries, for the next inserts (slot mode: free slots)
  uint8_t* arena_ = nullptr;     // slot mode
  size_t slot_bytes_ = 0;
  size_t pooled_bytes_ = 0;      // their allocated bytes
};

}  // namespace ferry::experts
