// Which resident expert the DRAM expert cache gives up when it needs room (ferry/experts/expert_cache.h).
//   lru    least recently used: right when the router's hot set drifts over time.
//   lfu    least frequently used (ties: least recent), counting uses before earlier evictions too: right
//          when a few experts per layer stay hot, but an entry once hot keeps its count after it cools.
//   score  GreedyDual-Size-Frequency: frequency weighted by what a reload costs per byte, aged by a clock
//          so that cooled entries lose out to fresh ones (the formula: src/experts/expert_cache.cpp).
#pragma once
#include <string>
#include <string_view>

namespace ferry::experts {

enum class EvictionPolicy { Lru, Lfu, Score };

// "lru", "lfu", "score".
std::string_view eviction_policy_name(EvictionPolicy p);
// The inverse of eviction_policy_name; throws ferry::Error naming the choices for anything else.
EvictionPolicy parse_eviction_policy(std::string_view name);

}  // namespace ferry::experts
