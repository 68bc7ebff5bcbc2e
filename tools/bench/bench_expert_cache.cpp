// The DRAM expert cache's eviction policies compared on routing traces: each trace (recorded from a real run
// with `ferry generate|run --target cpu --record-routing FILE`, or made with --synthetic) is replayed through
// an ExpertCache of each policy and budget the way the cpu target asks for experts (layer by layer, the
// layer's experts pinned while it runs, released after), and the hit rate and the bytes read per forward
// are printed.
//
//   bench_expert_cache --trace FILE [--trace FILE ...] [--budgets 0.1,0.25,0.5] [--expert-mb 12.6]
//   bench_expert_cache --synthetic [--layers 8] [--experts 8] [--top-k 2] [--tokens 16] [--forwards 2000]
//                      [--zipf 1.0] [--drift 200] [--seed 1]
//
// Budgets are fractions of all the routed experts the trace names (layers x experts). --synthetic draws each
// layer's routing from a Zipf popularity over the experts whose ranking is reshuffled every --drift forwards
// (a hot set that moves, as routing does across topics of a prompt file).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ferry/error.h"
#include "ferry/experts/expert_cache.h"
#include "ferry/experts/routing_trace.h"

using namespace ferry;
using namespace ferry::experts;

namespace {

struct Args {
  std::vector<std::string> traces;
  bool synthetic = false;
  std::vector<double> budgets{0.1, 0.25, 0.5};
  double expert_mb = 12.6;
  int layers = 8, experts = 8, top_k = 2, tokens = 16, forwards = 2000, drift = 200;
  double zipf = 1.0;
  unsigned seed = 1;
};

std::vector<double> parse_list(const char* s) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stod(item));
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    auto next = [&](const char* name) -> const char* {
      if (i + 1 >= argc) throw Error(std::string(name) + " needs a value");
      return argv[++i];
    };
    const std::string f = argv[i];
    if (f == "--trace") a.traces.push_back(next("--trace"));
    else if (f == "--synthetic") a.synthetic = true;
    else if (f == "--budgets") a.budgets = parse_list(next("--budgets"));
    else if (f == "--expert-mb") a.expert_mb = std::stod(next("--expert-mb"));
    else if (f == "--layers") a.layers = std::atoi(next("--layers"));
    else if (f == "--experts") a.experts = std::atoi(next("--experts"));
    else if (f == "--top-k") a.top_k = std::atoi(next("--top-k"));
    else if (f == "--tokens") a.tokens = std::atoi(next("--tokens"));
    else if (f == "--forwards") a.forwards = std::atoi(next("--forwards"));
    else if (f == "--zipf") a.zipf = std::stod(next("--zipf"));
    else if (f == "--drift") a.drift = std::atoi(next("--drift"));
    else if (f == "--seed") a.seed = static_cast<unsigned>(std::atoi(next("--seed")));
    else throw Error("unknown flag " + f + " (see the comment at the top of tools/bench/bench_expert_cache.cpp)");
  }
  if (a.traces.empty() && !a.synthetic) throw Error("give --trace FILE (from --record-routing) or --synthetic");
  if (a.layers < 1 || a.experts < 1 || a.top_k < 1 || a.top_k > a.experts || a.tokens < 1 || a.forwards < 1 ||
      a.drift < 1)
    throw Error("--layers, --experts, --tokens, --forwards and --drift must be at least 1, --top-k in [1, experts]");
  for (double b : a.budgets)
    if (!(b > 0 && b <= 1)) throw Error("--budgets are fractions in (0, 1]");
  return a;
}

std::vector<ForwardRouting> synthetic_trace(const Args& a) {
  std::mt19937 rng(a.seed);
  std::vector<double> weight(a.experts);
  for (int r = 0; r < a.experts; ++r) weight[r] = 1.0 / std::pow(r + 1, a.zipf);
  std::vector<std::vector<int>> rank(a.layers, std::vector<int>(a.experts));  // [layer][rank] -> expert
  std::vector<ForwardRouting> out;
  for (int f = 0; f < a.forwards; ++f) {
    if (f % a.drift == 0)
      for (auto& r : rank) {
        for (int e = 0; e < a.experts; ++e) r[e] = e;
        std::shuffle(r.begin(), r.end(), rng);
      }
    ForwardRouting fr;
    fr.tokens = a.tokens;
    for (int l = 0; l < a.layers; ++l) {
      std::vector<int> count(a.experts, 0);
      for (int t = 0; t < a.tokens; ++t) {
        std::vector<double> w = weight;  // top-k without replacement
        for (int k = 0; k < a.top_k; ++k) {
          std::discrete_distribution<int> pick(w.begin(), w.end());
          const int r = pick(rng);
          ++count[rank[l][r]];
          w[r] = 0;
        }
      }
      LayerRouting lr;
      lr.layer = l;
      for (int e = 0; e < a.experts; ++e)
        if (count[e]) lr.experts.emplace_back(e, count[e]);
      fr.layers.push_back(std::move(lr));
    }
    out.push_back(std::move(fr));
  }
  return out;
}

struct Replay {
  double hit_rate = 0;
  double mb_per_forward = 0;
  uint64_t requests = 0;
};

// The cpu target's order of requests: per forward, per layer, the routed experts (pinned for the layer).
Replay replay(const std::vector<ForwardRouting>& trace, size_t n_entries, EvictionPolicy policy, double expert_mb) {
  constexpr size_t kEntry = 4096;  // the byte size does not change the order; all entries are equal
  ExpertCache cache(n_entries * kEntry, policy);
  std::vector<ExpertCache::Pin> held;
  uint64_t hits = 0, misses = 0;
  for (const ForwardRouting& f : trace)
    for (const LayerRouting& l : f.layers) {
      for (const auto& [e, n] : l.experts) {
        const ExpertKey key{l.layer, e};
        ExpertCache::Pin p = cache.find(key);
        if (p) {
          ++hits;
        } else {
          ++misses;
          p = cache.insert(key, kEntry, 1e-3);
          if (!p) {  // a layer wider than the budget: the runtime acquires in groups; release and retry
            held.clear();
            p = cache.insert(key, kEntry, 1e-3);
          }
          cache.mark_ready(p);
        }
        held.push_back(std::move(p));
      }
      held.clear();
    }
  Replay r;
  r.requests = hits + misses;
  r.hit_rate = r.requests ? static_cast<double>(hits) / static_cast<double>(r.requests) : 0;
  r.mb_per_forward = trace.empty() ? 0 : static_cast<double>(misses) * expert_mb / static_cast<double>(trace.size());
  return r;
}

void compare(const std::string& name, const std::vector<ForwardRouting>& trace, const Args& a) {
  int max_layer = 0, max_expert = 0;
  uint64_t tokens = 0;
  for (const ForwardRouting& f : trace) {
    tokens += f.tokens;
    for (const LayerRouting& l : f.layers) {
      max_layer = std::max(max_layer, l.layer);
      for (const auto& [e, n] : l.experts) max_expert = std::max(max_expert, e);
    }
  }
  int n_moe = 0;
  if (!trace.empty()) n_moe = static_cast<int>(trace.front().layers.size());
  const size_t universe = static_cast<size_t>(n_moe) * (max_expert + 1);
  std::printf("\n%s: %zu forwards, %llu tokens, %d MoE layers x %d experts (%.0f MB at %.1f MB an expert)\n",
              name.c_str(), trace.size(), static_cast<unsigned long long>(tokens), n_moe, max_expert + 1,
              static_cast<double>(universe) * a.expert_mb, a.expert_mb);
  std::printf("  %-8s %-8s %10s %10s %14s\n", "budget", "experts", "lru", "lfu", "score");
  for (double b : a.budgets) {
    const size_t n = std::max<size_t>(1, static_cast<size_t>(std::floor(b * static_cast<double>(universe))));
    std::printf("  %-8.2f %-8zu", b, n);
    for (EvictionPolicy p : {EvictionPolicy::Lru, EvictionPolicy::Lfu, EvictionPolicy::Score}) {
      const Replay r = replay(trace, n, p, a.expert_mb);
      std::printf(" %5.1f%% %4.0fMB", 100 * r.hit_rate, r.mb_per_forward);
    }
    std::printf("\n");
  }
  std::printf("  (hit rate, and MB read from the store per forward)\n");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    for (const std::string& t : a.traces) compare(t, read_routing_trace(t), a);
    if (a.synthetic) {
      char name[160];
      std::snprintf(name, sizeof name, "synthetic (zipf %.2f, drift every %d forwards, %d tokens a forward)", a.zipf,
                    a.drift, a.tokens);
      compare(name, synthetic_trace(a), a);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_expert_cache: %s\n", e.what());
    return 1;
  }
  return 0;
}
