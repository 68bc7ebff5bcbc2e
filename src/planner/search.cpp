// The policy search (see planner.h). For every family (devices and precisions) and every (N, μ, KV share)
// on fixed grids, experts are placed GPU-first, then DRAM, then SSD, and the policy is costed end to end.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "ferry/error.h"
#include "ferry/validate.h"
#include "ferry/planner/planner.h"

namespace ferry::planner {
namespace {

// Micro-batch sizes (tokens per kernel) and micro-batch counts per layer. Fixed so the search is
// deterministic and a machine with more of anything sees a superset of the feasible policies.
const std::vector<int64_t> kMicroBatches = {1,   2,    4,    8,    12,   16,   24,   32,  48,  64,
                                            80,  96,   128,  160,  192,  256,  320,  384, 512, 640,
                                            768, 1024, 1280, 1536, 2048, 2560, 3072, 4096};
const std::vector<int64_t> kMicroBatchCounts = {1,  2,   3,   4,   5,   6,   7,   8,   9,   10,  11, 12, 14,
                                                16, 18,  20,  22,  24,  28,  32,  36,  40,  48,  56, 64, 80,
                                                96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512};
const std::vector<double> kKvShares = {0, 0.25, 0.5, 0.75, 1};
const std::vector<int64_t> kPrefillChunks = {256, 512, 1024, 2048, 4096, 8192, 16384};
// The smallest chunk the search shrinks a prefill chunk to when its workspace does not fit.
constexpr int64_t kMinPrefillChunk = 16;

bool better(const Candidate& a, const Candidate& b) {
  return a.estimate.tokens_per_s > b.estimate.tokens_per_s;
}

}  // namespace

Planner::Planner(const ModelShape& shape, const HardwareProfile& hw, const Workload& workload,
                 PlannerOptions options)
    : shape_(shape),
      hw_(hw),
      workload_(workload),
      options_(std::move(options)),
      cost_(shape, hw, workload, CostOptions{options_.moe_lightning_space, options_.buffers, options_.kv_tokens}) {
  if (options_.expert_precisions.empty()) throw Error("at least one expert precision must be allowed");
  // Pinned sizes: the prefill chunk (μ x the average prompt) and every count derived from N stay in range.
  constexpr int64_t kMaxBatch = int64_t{1} << 24;
  if (options_.batch_size) require_count(*options_.batch_size, 1, kMaxBatch, "the pinned batch size N");
  if (options_.micro_batch) {
    require_count(*options_.micro_batch, 1, kMaxBatch, "the pinned micro-batch size");
    if (options_.batch_size && *options_.micro_batch > *options_.batch_size)
      throw Error("the pinned micro-batch size (" + std::to_string(*options_.micro_batch) +
                  ") is larger than the pinned batch size N (" + std::to_string(*options_.batch_size) + ")");
  }
  if (shape_.n_moe_layer == 0 || shape_.n_expert == 0)
    throw Error("model '" + shape_.name + "' has no MoE layers");
  if (options_.moe_lightning_space && !hw_.has_gpu())
    throw Error("MoE-Lightning's policy space needs a GPU; profile '" + hw_.name + "' has none");
}

std::vector<Planner::Family> Planner::families() const {
  std::vector<Family> out;
  if (options_.moe_lightning_space) {
    out.push_back({Device::Gpu, Device::Cpu, Device::Gpu, Precision::Bf16, Precision::Bf16});
    return out;
  }
  const auto& precs = options_.expert_precisions;
  auto allowed = [&](Device att, Device ffn) {
    return (!options_.attention_device || *options_.attention_device == att) &&
           (!options_.ffn_device || *options_.ffn_device == ffn);
  };
  if (!hw_.has_gpu()) {
    if (allowed(Device::Cpu, Device::Cpu))
      for (Precision dp : precs) out.push_back({Device::Cpu, Device::Cpu, Device::Cpu, dp, dp});
    return out;
  }
  const std::pair<Device, Device> gpu_dense[] = {{Device::Cpu, Device::Gpu},
                                                 {Device::Gpu, Device::Gpu},
                                                 {Device::Cpu, Device::Cpu},
                                                 {Device::Gpu, Device::Cpu}};
  for (auto [att, ffn] : gpu_dense)
    if (allowed(att, ffn))
      for (Precision gp : precs)
        for (Precision dp : precs) out.push_back({Device::Gpu, att, ffn, gp, dp});
  // Everything on the host, the GPU holding (and computing) only resident experts.
  if (allowed(Device::Cpu, Device::Cpu))
    for (Precision gp : precs)
      for (Precision dp : precs) out.push_back({Device::Cpu, Device::Cpu, Device::Cpu, gp, dp});
  return out;
}

std::string Planner::family_name(const Family& f) const {
  std::string s =
      "attention " + std::string(device_name(f.attention)) + ", ffn " + std::string(device_name(f.ffn));
  if (hw_.has_gpu() && f.dense == Device::Cpu) s += ", dense cpu";
  if (hw_.has_gpu())
    s += ", experts " + std::string(precision_name(f.gpu_precision)) + "/" +
         std::string(precision_name(f.dram_precision));
  else
    s += ", experts " + std::string(precision_name(f.dram_precision));
  return s;
}

Policy Planner::base_policy(const Family& f, int64_t n, int64_t mu, double kv_share) const {
  Policy p;
  p.model = shape_.name;
  p.hardware = hw_.name;
  p.batch_size = n;
  p.micro_batch = std::min(mu, n);
  p.attention_device = f.attention;
  p.ffn_device = f.ffn;
  p.dense_device = f.dense;
  p.prefill_device = (hw_.has_gpu() && f.dense == Device::Gpu) ? Device::Gpu : Device::Cpu;
  p.gpu_expert_precision = f.gpu_precision;
  p.dram_expert_precision = f.dram_precision;
  p.ssd_expert_precision = f.dram_precision;
  p.group_size = options_.group_size;
  p.kv_precision = options_.kv_precision;
  p.kv_gpu_share = kv_share;
  p.overlap = options_.overlap;
  p.prefetch_depth = 1;
  if (options_.moe_lightning_space) {
    // MoE-Lightning prefills μ whole prompts per kernel.
    p.prefill_chunk_tokens =
        std::max<int64_t>(1, static_cast<int64_t>(std::ceil(mu * workload_.avg_prompt_len)));
  } else {
    // The smallest chunk at which the expert kernel reaches its device's compute roof.
    const HrmRoofs& r = cost_.roofs();
    double ridge = (p.prefill_device == Device::Gpu) ? r.gpu.ridge() : r.cpu.ridge();
    p.prefill_chunk_tokens = kPrefillChunks.back();
    for (int64_t c : kPrefillChunks)
      if (moe_ffn(shape_, static_cast<double>(c), f.dram_precision, options_.group_size).intensity() >= ridge) {
        p.prefill_chunk_tokens = c;
        break;
      }
  }
  return p;
}

void Planner::place_experts(Policy& p, int64_t gpu_total, int64_t dram_total) const {
  const int64_t n_moe = shape_.n_moe_layer;
  const int64_t e = shape_.n_expert;
  const int64_t all = e * n_moe;
  gpu_total = std::clamp<int64_t>(gpu_total, 0, all);
  dram_total = std::clamp<int64_t>(dram_total, 0, all - gpu_total);
  const int64_t ssd_total = all - gpu_total - dram_total;
  p.gpu_experts_per_layer.assign(shape_.n_layer, 0);
  p.dram_experts_per_layer.assign(shape_.n_layer, 0);
  p.ssd_experts_per_layer.assign(shape_.n_layer, 0);
  // GPU experts go to the first layers' extra slots, SSD experts to the last layers' (those with fewer
  // GPU experts), so every layer streams about the same number of bytes.
  int64_t i = 0, ssd_left = ssd_total;
  for (int l = 0; l < shape_.n_layer; ++l) {
    if (!shape_.layer_is_moe[l]) continue;
    int64_t g = gpu_total / n_moe + (i < gpu_total % n_moe ? 1 : 0);
    int64_t s = ssd_total / n_moe + (i >= n_moe - ssd_total % n_moe ? 1 : 0);
    s = std::min({s, e - g, ssd_left});
    ssd_left -= s;
    p.gpu_experts_per_layer[l] = static_cast<int>(g);
    p.ssd_experts_per_layer[l] = static_cast<int>(s);
    ++i;
  }
  // Rounding can leave SSD experts unplaced: put them wherever there is room.
  for (int l = 0; l < shape_.n_layer && ssd_left > 0; ++l) {
    if (!shape_.layer_is_moe[l]) continue;
    int64_t room = e - p.gpu_experts_per_layer[l] - p.ssd_experts_per_layer[l];
    int64_t add = std::min(room, ssd_left);
    p.ssd_experts_per_layer[l] += static_cast<int>(add);
    ssd_left -= add;
  }
  for (int l = 0; l < shape_.n_layer; ++l)
    if (shape_.layer_is_moe[l])
      p.dram_experts_per_layer[l] =
          static_cast<int>(e - p.gpu_experts_per_layer[l] - p.ssd_experts_per_layer[l]);
}

std::optional<Candidate> Planner::best_placement(const Family& f, int64_t n, int64_t mu, double kv_share,
                                                 Candidate* closest, int64_t* evaluated) const {
  const int64_t n_moe = shape_.n_moe_layer;
  const int64_t all = static_cast<int64_t>(shape_.n_expert) * n_moe;
  Policy p = base_policy(f, n, mu, kv_share);
  const bool ml = options_.moe_lightning_space;

  auto memory_with = [&](int64_t gpu_total, int64_t dram_total) {
    place_experts(p, gpu_total, dram_total);
    return cost_.memory(p, false);
  };
  auto remember_closest = [&](const MemoryPlan& mem) {
    if (closest->policy.batch_size == 0 ||
        mem.worst_relative_short() < closest->estimate.memory.worst_relative_short()) {
      closest->policy = p;
      closest->estimate = Estimate{};
      closest->estimate.memory = mem;
      closest->family = family_name(f);
    }
  };

  // ---- How many experts the GPU can hold (GPU memory does not depend on the DRAM/SSD split).
  int64_t gpu_max = 0;
  if (hw_.has_gpu()) {
    auto gpu_fits = [&](int64_t g) {
      MemoryPlan mem = memory_with(g, all - g);
      return mem.gpu_bytes <= mem.gpu_usable;
    };
    const int64_t step = ml ? n_moe : 1;  // MoE-Lightning pins the same experts in every layer
    // The prefill chunk's workspace grows with it: a smaller chunk may fit where the ridge chunk does not.
    while (!ml && !gpu_fits(0) && p.prefill_chunk_tokens > kMinPrefillChunk)
      p.prefill_chunk_tokens = std::max(kMinPrefillChunk, p.prefill_chunk_tokens / 2);
    if (!gpu_fits(0)) {
      remember_closest(memory_with(0, all));
      return std::nullopt;
    }
    if (gpu_fits(all)) {
      gpu_max = all;
    } else {
      // Usage grows with the GPU experts except where a whole row of them removes a layer's streamed
      // expert from the buffer; search the rows (starts of each q = experts per layer), then within one.
      int64_t lo = 0, hi = all / n_moe;  // rows: q experts in every layer
      while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (gpu_fits(mid * n_moe))
          lo = mid;
        else
          hi = mid - 1;
      }
      gpu_max = lo * n_moe;
      if (step == 1) {
        int64_t a = gpu_max, b = std::min(all - 1, gpu_max + n_moe - 1);
        while (a < b) {
          int64_t mid = (a + b + 1) / 2;
          if (gpu_fits(mid))
            a = mid;
          else
            b = mid - 1;
        }
        gpu_max = a;
      }
    }
  }

  // ---- For a GPU count: fill DRAM with the rest as far as it fits, then cost the policy.
  auto cost_with_gpu = [&](int64_t g) -> std::optional<Candidate> {
    int64_t rest = all - g;
    MemoryPlan mem = memory_with(g, rest);
    int64_t dram = rest;
    if (mem.cpu_bytes > mem.cpu_usable) {
      if (!hw_.has_ssd() || ml) {
        remember_closest(mem);
        return std::nullopt;
      }
      int64_t lo = 0, hi = rest;
      while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        MemoryPlan m2 = memory_with(g, mid);
        if (m2.cpu_bytes <= m2.cpu_usable)
          lo = mid;
        else
          hi = mid - 1;
      }
      dram = lo;
      mem = memory_with(g, dram);
      if (!mem.fits()) {
        remember_closest(mem);
        return std::nullopt;
      }
    } else if (!mem.fits()) {
      remember_closest(mem);
      return std::nullopt;
    }
    ++*evaluated;
    Candidate c;
    c.policy = p;
    c.estimate = cost_.evaluate(p, false);
    c.family = family_name(f);
    // An executor that fetches on demand (the pipelined one, when its buffer model is attached) may move
    // fewer expert bytes that way: small batches touch few experts. Same memory, so only time decides.
    if (options_.buffers && f.ffn == Device::Gpu && !ml && rest > 0) {
      Policy d = p;
      d.expert_fetch = ExpertFetch::Demand;
      Estimate de = cost_.evaluate(d, false);
      if (de.tokens_per_s > c.estimate.tokens_per_s) {
        c.policy = d;
        c.estimate = de;
      }
    }
    return c;
  };

  std::optional<Candidate> best;
  auto consider = [&](int64_t g) {
    auto c = cost_with_gpu(g);
    if (c && (!best || better(*c, *best))) best = std::move(c);
  };
  if (!hw_.has_gpu()) {
    consider(0);
  } else if (f.ffn == Device::Gpu) {
    // Every resident expert saves its bytes on PCIe and costs nothing else, except GPU room that
    // could otherwise hold the prefill activations: try both ends of that trade.
    consider(gpu_max);
    if (!ml && best && !best->estimate.memory.prefill_hidden_on_gpu) {
      int64_t lo = 0, hi = gpu_max;
      while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        place_experts(p, mid, all - mid);
        if (cost_.memory(p, false).prefill_hidden_on_gpu)
          lo = mid;
        else
          hi = mid - 1;
      }
      if (lo < gpu_max) consider(lo);
    }
  } else {
    // Resident experts run on the GPU while the CPU computes the rest: more of them unload the CPU but
    // load the GPU. Scan a grid over [0, gpu_max], then refine around the best point.
    const int kSteps = 8;
    std::vector<int64_t> grid;
    for (int i = 0; i <= kSteps; ++i) grid.push_back(gpu_max * i / kSteps);
    grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
    int64_t best_g = -1;
    for (int64_t g : grid) {
      auto c = cost_with_gpu(g);
      if (c && (!best || better(*c, *best))) {
        best = std::move(c);
        best_g = g;
      }
    }
    if (best_g >= 0 && gpu_max > kSteps) {
      int64_t lo = std::max<int64_t>(0, best_g - gpu_max / kSteps);
      int64_t hi = std::min(gpu_max, best_g + gpu_max / kSteps);
      auto tput = [&](int64_t g) {
        auto c = cost_with_gpu(g);
        double t = c ? c->estimate.tokens_per_s : -1;
        if (c && better(*c, *best)) best = std::move(c);
        return t;
      };
      while (hi - lo > 2) {  // ternary search on a unimodal curve
        int64_t m1 = lo + (hi - lo) / 3, m2 = hi - (hi - lo) / 3;
        if (tput(m1) < tput(m2))
          lo = m1 + 1;
        else
          hi = m2 - 1;
      }
      for (int64_t g = lo; g <= hi; ++g) tput(g);
    }
  }
  return best;
}

PlanResult Planner::plan() const {
  auto t0 = std::chrono::steady_clock::now();
  PlanResult result;
  result.closest.policy.batch_size = 0;
  const int64_t requests = workload_.requests;

  std::vector<int64_t> micro_batches;
  if (options_.micro_batch) {
    micro_batches = {*options_.micro_batch};
  } else if (options_.moe_lightning_space) {
    micro_batches = {1, 2, 3, 4};  // MoE-Lightning's optimizer: 1..4, then steps of 32
    for (int64_t m = 36; m <= 4096; m += 32) micro_batches.push_back(m);
  } else {
    micro_batches = kMicroBatches;
  }
  std::vector<int64_t> counts = kMicroBatchCounts;
  if (options_.moe_lightning_space) {
    counts.clear();
    for (int64_t c = 1; c <= 512; ++c) counts.push_back(c);
  }

  std::vector<Family> fams = families();
  if (fams.empty())
    throw Error("no policy family is allowed by the given --attention/--ffn on this hardware");

  // Independent tasks, one per (family, KV share), run in parallel; their results are merged in task
  // order below, so the outcome is the same as a sequential search.
  struct Task {
    size_t family;
    double share;
    std::optional<Candidate> best;
    Candidate closest;
    int64_t evaluated = 0;
  };
  std::vector<Task> tasks;
  for (size_t fi = 0; fi < fams.size(); ++fi)
    for (double share : fams[fi].attention != Device::Gpu ? std::vector<double>{0}
                        : options_.kv_gpu_share ? std::vector<double>{*options_.kv_gpu_share}
                                                : kKvShares)
      tasks.push_back({fi, share, std::nullopt, {}, 0});

#pragma omp parallel for schedule(dynamic, 1)
  for (size_t ti = 0; ti < tasks.size(); ++ti) {
    Task& t = tasks[ti];
    const Family& f = fams[t.family];
    t.closest.policy.batch_size = 0;
    for (int64_t mu : micro_batches) {
      if (options_.batch_size && mu > *options_.batch_size) continue;
      std::vector<int64_t> batch_sizes;
      if (options_.batch_size) {
        batch_sizes = {*options_.batch_size};
      } else {
        for (int64_t c : counts) {
          int64_t n = std::min(mu * c, requests);
          if (n < mu) break;
          if (batch_sizes.empty() || n != batch_sizes.back()) batch_sizes.push_back(n);
          if (n == requests) break;
        }
      }
      for (int64_t n : batch_sizes) {
        auto c = best_placement(f, n, mu, t.share, &t.closest, &t.evaluated);
        // Every memory term grows with N at a fixed μ: once nothing fits, larger batches fit less.
        if (!c) break;
        if (!t.best || better(*c, *t.best)) t.best = std::move(c);
      }
    }
  }

  std::vector<std::optional<Candidate>> per_family(fams.size());
  for (Task& t : tasks) {
    result.evaluated += t.evaluated;
    auto& fb = per_family[t.family];
    if (t.best && (!fb || better(*t.best, *fb))) fb = std::move(t.best);
    if (t.closest.policy.batch_size > 0 &&
        (result.closest.policy.batch_size == 0 || t.closest.estimate.memory.worst_relative_short() <
                                                      result.closest.estimate.memory.worst_relative_short()))
      result.closest = t.closest;
  }
  std::vector<Candidate> family_best;
  for (auto& fb : per_family)
    if (fb) family_best.push_back(std::move(*fb));

  std::stable_sort(family_best.begin(), family_best.end(), better);
  for (Candidate& c : family_best) {
    c.estimate.memory = cost_.memory(c.policy);  // with the itemised buffers
    c.policy.cache = c.estimate.memory.cache;
  }
  if (!family_best.empty()) {
    result.feasible = true;
    result.best = family_best.front();
    result.alternatives.assign(family_best.begin() + 1, family_best.end());
    // Neighbours: the chosen family and μ at half and twice the batch.
    const Policy& bp = result.best.policy;
    for (int64_t n : {bp.batch_size / 2, bp.batch_size * 2}) {
      if (n < bp.micro_batch || n > requests || n == bp.batch_size) continue;
      Policy q = bp;
      q.batch_size = n;
      Candidate c;
      c.policy = q;
      c.family = result.best.family;
      c.estimate = cost_.evaluate(q);
      c.policy.cache = c.estimate.memory.cache;
      result.neighbours.push_back(c);
    }
  } else if (result.closest.policy.batch_size > 0) {
    result.closest.estimate = Estimate{};
    result.closest.estimate.memory = cost_.memory(result.closest.policy);
  }
  result.search_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace ferry::planner

namespace ferry::planner {

AutoPlan plan_with_fallback(const ModelShape& shape, const HardwareProfile& hw, const Workload& workload,
                            PlannerOptions options, bool widen_precisions) {
  AutoPlan out;
  out.options = options;
  out.result = Planner(shape, hw, workload, options).plan();
  if (out.result.feasible || !widen_precisions || options.moe_lightning_space) return out;
  const std::vector<std::vector<Precision>> wider = {{Precision::Bf16, Precision::Int8},
                                                     {Precision::Bf16, Precision::Int8, Precision::Int4}};
  for (const auto& precisions : wider) {
    PlannerOptions o = options;
    o.expert_precisions = precisions;
    PlanResult r = Planner(shape, hw, workload, o).plan();
    if (r.feasible) {
      out.note = std::string("bf16 experts fit nowhere on this machine; planned allowing ") +
                 (precisions.size() == 2 ? "int8" : "int8 and int4") +
                 " experts (quantised experts change the outputs; pass --precisions bf16 to insist on bf16)";
      out.options = o;
      out.result = std::move(r);
      return out;
    }
  }
  return out;
}

}  // namespace ferry::planner
