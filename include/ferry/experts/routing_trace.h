// Routing traces: which experts each MoE layer's router chose, forward by forward, recorded from real runs
// (`--record-routing FILE`) so that expert-cache policies can be compared on what models actually do
// (tools/bench/bench_expert_cache.cpp). One JSON object per line, one line per forward:
//   {"tokens": T, "routing": [[layer, [[expert, tokens routed], ...]], ...]}
// with the MoE layers in order and, per layer, the experts that received at least one token.
#pragma once
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace ferry::experts {

struct LayerRouting {
  int layer = 0;
  std::vector<std::pair<int, int>> experts;  // (expert, tokens routed to it), expert ascending
};
struct ForwardRouting {
  int tokens = 0;
  std::vector<LayerRouting> layers;
};

// Appends one line per forward; every write is checked (ferry::Error naming the file on failure).
class RoutingTraceWriter {
 public:
  // Creates (truncates) the file at once, so a bad path fails before any work.
  explicit RoutingTraceWriter(const std::filesystem::path& path);
  ~RoutingTraceWriter();
  RoutingTraceWriter(const RoutingTraceWriter&) = delete;
  RoutingTraceWriter& operator=(const RoutingTraceWriter&) = delete;

  // offsets[e + 1] - offsets[e] tokens went to expert e of `layer` in this forward (the MoE layer's
  // grouping offsets, E + 1 entries).
  void layer(int layer, std::span<const int> offsets);
  void end_forward(int tokens);  // writes the line of the layers given since the last one
  void close();                  // flushes and closes; throws on a failed write

 private:
  std::filesystem::path path_;
  std::FILE* f_ = nullptr;
  std::string line_;
  bool first_layer_ = true;
};

// Reads a trace; throws ferry::Error naming the file and line of anything malformed.
std::vector<ForwardRouting> read_routing_trace(const std::filesystem::path& path);

}  // namespace ferry::experts
