// The address of one routed expert's weights: (layer, expert). The store, the DRAM cache, the prefetcher
// and routing traces all name experts this way; precision is a property of the store a cache serves, not
// of the key, so one cache holds one precision.
#pragma once
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace ferry::experts {

struct ExpertKey {
  int layer = 0;   // in [0, L)
  int expert = 0;  // in [0, E)
  friend constexpr auto operator<=>(const ExpertKey&, const ExpertKey&) = default;
};

// "layer 3 expert 17", for messages.
inline std::string to_string(ExpertKey k) {
  return "layer " + std::to_string(k.layer) + " expert " + std::to_string(k.expert);
}

struct ExpertKeyHash {
  size_t operator()(ExpertKey k) const noexcept {
    const uint64_t packed = (static_cast<uint64_t>(static_cast<uint32_t>(k.layer)) << 32) |
                            static_cast<uint32_t>(k.expert);
    return std::hash<uint64_t>{}(packed);
  }
};

}  // namespace ferry::experts

template <>
struct std::hash<ferry::experts::ExpertKey> : ferry::experts::ExpertKeyHash {};
