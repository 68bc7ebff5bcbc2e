// Expert bytes the pipelined executor moves per token, replayed on routing traces (recorded with
// `ferry run|generate --target cpu --record-routing FILE`): for g experts per layer resident on the device,
//   prefetch   every streamed expert of every layer copied once per forward (experts.fetch prefetch);
//   demand     the last forward's routed experts of the layer copied ahead, the other routed ones after the
//              router (experts.fetch demand); unrouted experts are not moved;
// each with the resident experts chosen by index (experts 0..g-1, what the executor pins) or by observed
// frequency (the g most routed so far in the layer, re-chosen every forward; a newly resident expert
// costs one copy). Prints experts moved per token and the demand predictor's precision and recall.
//
//   bench_expert_fetch --trace FILE [--trace FILE ...] [--resident 0,1,2] [--expert-mb 1.18]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "ferry/error.h"
#include "ferry/experts/routing_trace.h"

using namespace ferry;
using namespace ferry::experts;

namespace {

struct Totals {
  double moved = 0;                          // expert copies
  double predicted = 0, predicted_used = 0;  // demand: prefetched, and of those routed
  double routed_streamed = 0;                // routed experts that were not resident
};

// One replay: `by_frequency` picks the resident experts from the counts so far, else experts 0..g-1.
Totals replay(const std::vector<ForwardRouting>& trace, int n_expert, int g, bool demand, bool by_frequency) {
  Totals t;
  std::vector<std::vector<double>> count;       // [layer][expert]
  std::vector<std::vector<uint8_t>> last;       // [layer][expert]: routed in the last forward
  std::vector<std::vector<uint8_t>> resident;   // [layer][expert]
  auto grow = [&](size_t l) {
    while (count.size() <= l) {
      count.emplace_back(n_expert, 0.0);
      last.emplace_back(n_expert, uint8_t{1});  // the first forward prefetches everything
      std::vector<uint8_t> r(n_expert, 0);
      for (int e = 0; e < g && e < n_expert; ++e) r[e] = 1;
      resident.push_back(std::move(r));
    }
  };
  std::vector<uint8_t> routed(n_expert);
  std::vector<int> order(n_expert);
  for (const ForwardRouting& f : trace) {
    for (const LayerRouting& lr : f.layers) {
      const size_t l = static_cast<size_t>(lr.layer);
      grow(l);
      std::fill(routed.begin(), routed.end(), uint8_t{0});
      for (auto [e, n] : lr.experts) routed[e] = 1;
      for (int e = 0; e < n_expert; ++e) {
        if (resident[l][e]) continue;
        t.routed_streamed += routed[e];
        if (!demand) {
          t.moved += 1;
          continue;
        }
        t.moved += last[l][e] || routed[e];  // prefetched, or fetched after the router
        t.predicted += last[l][e];
        t.predicted_used += last[l][e] && routed[e];
      }
      last[l] = routed;
      for (auto [e, n] : lr.experts) count[l][e] += n;
      if (by_frequency) {  // the g most routed so far become resident; a new one is one copy
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return count[l][a] > count[l][b]; });
        std::vector<uint8_t> next(n_expert, 0);
        for (int i = 0; i < g && i < n_expert; ++i) next[order[i]] = 1;
        for (int e = 0; e < n_expert; ++e) t.moved += next[e] && !resident[l][e];
        resident[l] = next;
      }
    }
  }
  return t;
}

std::vector<int> parse_ints(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    char* end = nullptr;
    v.push_back(static_cast<int>(std::strtol(p, &end, 10)));
    p = *end == ',' ? end + 1 : end;
    if (end == p && *p) throw Error(std::string("bad list '") + s + "'");
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> traces;
    std::vector<int> resident_counts{0, 1, 2};
    double expert_mb = 1.18;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--trace" && i + 1 < argc) traces.push_back(argv[++i]);
      else if (a == "--resident" && i + 1 < argc) resident_counts = parse_ints(argv[++i]);
      else if (a == "--expert-mb" && i + 1 < argc) expert_mb = std::atof(argv[++i]);
      else throw Error("usage: bench_expert_fetch --trace FILE [--trace FILE ...] [--resident 0,1,2] [--expert-mb MB]");
    }
    if (traces.empty()) throw Error("give at least one --trace FILE (ferry run --target cpu --record-routing FILE)");
    std::printf("%-28s %9s %9s %-10s %12s %12s %10s %8s\n", "trace", "resident", "tokens", "resident by",
                "prefetch MB", "demand MB", "ratio", "prec/rec");
    for (const std::string& path : traces) {
      const std::vector<ForwardRouting> trace = read_routing_trace(path);
      int n_expert = 0;
      double tokens = 0;
      for (const ForwardRouting& f : trace) {
        tokens += f.tokens;
        for (const LayerRouting& lr : f.layers)
          for (auto [e, n] : lr.experts) n_expert = std::max(n_expert, e + 1);
      }
      const std::string name = path.substr(path.find_last_of('/') + 1);
      for (int g : resident_counts)
        for (bool freq : {false, true}) {
          const Totals p = replay(trace, n_expert, g, false, freq), d = replay(trace, n_expert, g, true, freq);
          const double prec = d.predicted > 0 ? d.predicted_used / d.predicted : 0;
          const double rec = d.routed_streamed > 0 ? d.predicted_used / d.routed_streamed : 0;
          std::printf("%-28s %9d %9.0f %-10s %12.3f %12.3f %9.2fx %3.0f/%3.0f%%\n", name.c_str(), g, tokens,
                      freq ? "frequency" : "index", p.moved * expert_mb / tokens, d.moved * expert_mb / tokens,
                      d.moved > 0 ? p.moved / d.moved : 0.0, 100 * prec, 100 * rec);
        }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_expert_fetch: %s\n", e.what());
    return 1;
  }
  return 0;
}
