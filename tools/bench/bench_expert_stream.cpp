// Disk read throughput of the SSD expert tier against the raw O_DIRECT figure `ferry probe` measures, side
// by side in one run (rounds alternate, medians reported): the store's routed experts are streamed through
// TieredExperts (a DRAM budget smaller than the experts, every chunk checksummed, the next layer's experts
// prefetched while the current layer's are handed out) the way the cpu target walks a forward, from a cold
// cache each round. The page cache is bypassed by both (O_DIRECT), so repeated rounds read the disk.
//
//   bench_expert_stream --store DIR [--precision bf16|int8|int4] [--group-size 64] [--budget 0.3]
//                       [--rounds 5] [--probe-mb 1024] [--reader auto|io_uring|pread]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "ferry/dtype.h"
#include "ferry/error.h"
#include "ferry/experts/packed_store.h"
#include "ferry/experts/tiered_experts.h"
#include "ferry/planner/probe.h"

using namespace ferry;
using namespace ferry::experts;

namespace {

struct Args {
  std::string store;
  std::string precision = "bf16";
  int group_size = 64;
  double budget = 0.3;
  int rounds = 5;
  int probe_mb = 1024;
  std::string reader = "auto";
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    auto next = [&](const char* name) -> std::string {
      if (i + 1 >= argc) throw Error(std::string(name) + " needs a value");
      return argv[++i];
    };
    const std::string f = argv[i];
    if (f == "--store") a.store = next("--store");
    else if (f == "--precision") a.precision = next("--precision");
    else if (f == "--group-size") a.group_size = std::stoi(next("--group-size"));
    else if (f == "--budget") a.budget = std::stod(next("--budget"));
    else if (f == "--rounds") a.rounds = std::stoi(next("--rounds"));
    else if (f == "--probe-mb") a.probe_mb = std::stoi(next("--probe-mb"));
    else if (f == "--reader") a.reader = next("--reader");
    else throw Error("unknown flag " + f + " (see the comment at the top of tools/bench/bench_expert_stream.cpp)");
  }
  if (a.store.empty()) throw Error("--store DIR (a packed store: ferry convert) is required");
  if (!(a.budget > 0 && a.budget < 1)) throw Error("--budget is a fraction of the experts in (0, 1)");
  if (a.rounds < 1 || a.probe_mb < 16) throw Error("--rounds >= 1, --probe-mb >= 16");
  return a;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Stream {
  double gbps = 0, stall_share = 0;
  uint64_t bytes = 0;
};

// One cold pass over every routed expert, layer by layer.
Stream stream_once(const StoreManifest& store, const ExpertTierFile& file, const Args& a) {
  TieredExpertsOptions o;
  o.dram_budget_bytes = static_cast<size_t>(a.budget * static_cast<double>(file.stored_bytes()));
  o.reader = parse_reader_kind(a.reader);
  TieredExperts tier(store, file, std::move(o));
  std::vector<int> layers;
  for (const ExpertChunk& c : file.chunks)
    if (layers.empty() || layers.back() != c.layer) layers.push_back(c.layer);
  const int E = store.config.n_expert, group = tier.max_pinned();
  std::vector<int> all(E);
  std::iota(all.begin(), all.end(), 0);
  std::vector<const MlpWeights*> table(E, nullptr);
  const double t0 = now_s();
  for (size_t i = 0; i < layers.size(); ++i) {
    for (int g = 0; g < E; g += group) {
      const int n = std::min(group, E - g);
      tier.acquire(layers[i], std::span<const int>(all.data() + g, n), table.data());
      // the next group (or the next layer's first experts) is read while this one is "computed"
      const bool last_group = g + n >= E;
      if (!last_group) {
        tier.release();
        tier.prefetch(layers[i], std::span<const int>(all.data() + g + n, std::min(group, E - g - n)));
        continue;
      }
      if (i + 1 < layers.size()) tier.prefetch(layers[i + 1], std::span<const int>(all.data(), std::min(group, E)));
      tier.release();
    }
  }
  const double s = now_s() - t0;
  Stream r;
  r.bytes = tier.stats().bytes_read;
  r.gbps = static_cast<double>(r.bytes) / s / 1e9;
  r.stall_share = tier.stats().stall_seconds / s;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    const StoreManifest store = read_store_manifest(a.store);
    const DType dtype = dtype_from_string(a.precision);
    const ExpertTierFile* file = store.expert_file(dtype, a.group_size);
    if (!file) throw Error("the store has no " + a.precision + " experts");
    std::printf("store %s: %zu %s chunks of %.1f MB, %.0f MB in all; DRAM budget %.0f%% of them\n", a.store.c_str(),
                file->chunks.size(), a.precision.c_str(), static_cast<double>(file->image.bytes) / 1e6,
                static_cast<double>(file->stored_bytes()) / 1e6, 100 * a.budget);
    std::vector<double> raw, streamed;
    for (int r = 0; r < a.rounds; ++r) {
      const planner::SsdProbe p = planner::probe_ssd(a.store, int64_t{a.probe_mb} << 20, 1);
      const Stream s = stream_once(store, *file, a);
      raw.push_back(p.read_gbps);
      streamed.push_back(s.gbps);
      std::printf("  round %d: raw %s %.2f GB/s | streaming experts %.2f GB/s (%.0f MB, %.0f%% of the time waiting) "
                  "| ratio %.2f\n",
                  r + 1, p.method.c_str(), p.read_gbps, s.gbps, static_cast<double>(s.bytes) / 1e6,
                  100 * s.stall_share, s.gbps / p.read_gbps);
    }
    std::printf("median: raw O_DIRECT %.2f GB/s, streaming experts %.2f GB/s, ratio %.2f\n", median(raw),
                median(streamed), median(streamed) / median(raw));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_expert_stream: %s\n", e.what());
    return 1;
  }
  return 0;
}
