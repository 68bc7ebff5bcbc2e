#include "ferry/experts/eviction_policy.h"

#include "ferry/error.h"

namespace ferry::experts {

std::string_view eviction_policy_name(EvictionPolicy p) {
  switch (p) {
    case EvictionPolicy::Lru: return "lru";
    case EvictionPolicy::Lfu: return "lfu";
    case EvictionPolicy::Score: return "score";
  }
  FERRY_ASSERT_MSG(false, "unknown EvictionPolicy");
  return {};
}

EvictionPolicy parse_eviction_policy(std::string_view name) {
  for (EvictionPolicy p : {EvictionPolicy::Lru, EvictionPolicy::Lfu, EvictionPolicy::Score})
    if (name == eviction_policy_name(p)) return p;
  throw Error("unknown expert cache eviction policy \"" + std::string(name) + "\"; choose one of: lru, lfu, score");
}

}  // namespace ferry::experts
