// The pipelined executor against the reference paths, over a grid of policies (μ, N/μ, pinned experts,
// attention on host or device) at bf16 and int4 experts on the oracle models, on `sim` and `cpu`:
//  - against the `cpu` target at the same expert precision (the same-precision reference): greedy
//    tokens identical and every row of logits bit-identical, whatever the policy and device;
//  - against the fp32 reference: logits within the tolerance ferry/cpu_model.h states for that
//    precision (the executor computes what the cpu target computes).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "exec/device/stream_device.h"
#include "ferry/checkpoint.h"
#include "ferry/cpu_model.h"
#include "ferry/device.h"
#include "ferry/exec/pipelined_model.h"
#include "ferry/reference_model.h"
#include "test_util.h"

namespace ferry {
namespace {

constexpr int kGreedySteps = 4;     // tokens per sequence in the grid runs
constexpr int kForcedSteps = 12;    // teacher-forced decode steps against the fp32 reference

struct Oracle {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<int32_t>> greedy;  // transformers' greedy tokens (teacher forcing)
};

Oracle read_oracle(const std::filesystem::path& dir) {
  auto f = SafetensorsFile::open(dir / "reference.safetensors");
  Oracle o;
  for (int i = 0; f->find("prompt." + std::to_string(i)); ++i) {
    auto ids = test::read_tensor<int64_t>(*f, "prompt." + std::to_string(i));
    o.prompts.emplace_back(ids.begin(), ids.end());
    auto g = test::read_tensor<int64_t>(*f, "greedy." + std::to_string(i));
    o.greedy.emplace_back(g.begin(), g.end());
  }
  return o;
}

int32_t argmax(const float* v, int n) { return static_cast<int32_t>(std::max_element(v, v + n) - v); }

// One run of n_seq sequences (sequence s holds prompt s % prompts): a batched prefill, then decode
// steps fed each sequence's own argmax, or the oracle's tokens when `forced`.
struct Rows {
  std::vector<std::vector<float>> logits;    // per sequence: the prompt's last row, then one per step
  std::vector<std::vector<int32_t>> greedy;  // per sequence: argmax of each row
};

Rows run(Model& m, const Oracle& o, int n_seq, int steps, bool forced) {
  const int V = m.config().n_vocab;
  Rows r;
  r.logits.resize(n_seq);
  r.greedy.resize(n_seq);
  std::vector<int> seqs;
  std::vector<ForwardItem> items;
  for (int s = 0; s < n_seq; ++s) {
    seqs.push_back(m.add_sequence());
    items.push_back({seqs.back(), o.prompts[s % o.prompts.size()], false});
  }
  std::vector<int32_t> next(n_seq);
  for (int step = 0; step < steps; ++step) {
    const std::vector<float> logits = m.forward(items);
    for (int s = 0; s < n_seq; ++s) {
      const float* row = logits.data() + static_cast<size_t>(s) * V;
      r.logits[s].insert(r.logits[s].end(), row, row + V);
      r.greedy[s].push_back(argmax(row, V));
      next[s] = forced ? o.greedy[s % o.prompts.size()][step] : r.greedy[s].back();
      items[s] = {seqs[s], std::span<const int32_t>(&next[s], 1), false};
    }
  }
  for (int s : seqs) m.free_sequence(s);
  return r;
}

planner::Policy make_policy(const ModelConfig& c, int mu, int n_ub, int pinned, bool host_attention,
                            planner::Precision precision) {
  return test::pipeline_policy(c, mu, n_ub, pinned, 0, host_attention, precision);
}


struct GridPoint {
  int mu, n_ub;
  int pinned;  // 0: none, 1: half, 2: all
  bool host_attention;
};

// The full grid (54 policies) on two oracle models that differ in every structural feature (mixtral:
// no shared expert, all layers MoE; qwen2_moe_tied_f32: gated shared expert, a dense layer, tied f32
// embeddings); on the others six policies that take every value of every axis at least once.
bool full_grid(const std::string& model) { return model == "mixtral_fused" || model == "qwen2_moe_tied_f32"; }

std::vector<GridPoint> policy_grid(bool full) {
  if (!full)
    return {{1, 1, 0, true}, {2, 3, 1, false}, {4, 5, 2, true}, {4, 3, 0, false}, {1, 5, 1, true}, {2, 1, 2, false}};
  std::vector<GridPoint> grid;
  for (int mu : {1, 2, 4})
    for (int n_ub : {1, 3, 5})
      for (int pinned : {0, 1, 2})
        for (bool host : {true, false}) grid.push_back({mu, n_ub, pinned, host});
  return grid;
}

std::string describe(const std::string& model, planner::Precision prec, const GridPoint& g, const char* target) {
  static const char* const kPinned[] = {"none", "half", "all"};
  return model + " " + std::string(planner::precision_name(prec)) + " mu=" + std::to_string(g.mu) +
         " N/mu=" + std::to_string(g.n_ub) + " pinned=" + kPinned[g.pinned] +
         (g.host_attention ? " host" : " device") + " attention on " + target;
}

DType dtype_of(planner::Precision p) { return p == planner::Precision::Bf16 ? DType::BF16 : DType::I4; }

class ExecutorEquivalence : public ::testing::TestWithParam<std::string> {
 protected:
  // This thread packs every weight matrix of ~150 models (each pack a parallel region) and runs the
  // `cpu` device: with teams of 2 spin-waiting on a 2-core machine shared with other jobs that costs
  // 30-100x. One thread here; the sim device's CPU attention still runs the default team, and the
  // results do not depend on the thread count (the test would show it: it compares bit for bit).
  void SetUp() override {
    saved_threads_ = omp_get_max_threads();
    omp_set_num_threads(1);
  }
  void TearDown() override { omp_set_num_threads(saved_threads_); }
  int saved_threads_ = 1;
};

// Greedy tokens identical to the cpu target's at the same expert precision, and every row of logits
// bit-identical: the executor runs the cpu target's layer math on the same packed weights, each
// sequence's arithmetic does not depend on its micro-batch, and routed experts are summed in a fixed
// order whatever order their pages arrive in.
TEST_P(ExecutorEquivalence, EveryPolicyAndDeviceMatchesTheCpuTargetBitForBit) {
  auto ckpt = Checkpoint::open(test::oracle_dir(GetParam()));
  const ModelConfig& c = ckpt->config();
  const Oracle o = read_oracle(test::oracle_dir(GetParam()));
  ASSERT_FALSE(o.prompts.empty());
  const int n_prompt = static_cast<int>(o.prompts.size());
  const bool full = full_grid(GetParam());
  for (planner::Precision prec : {planner::Precision::Bf16, planner::Precision::Int4}) {
    CpuModelOptions co;
    co.expert_dtype = dtype_of(prec);
    CpuModel cpu_target(*ckpt, co);
    const Rows want = run(cpu_target, o, n_prompt, kGreedySteps, false);
    int runs = 0;
    for (const GridPoint& g : policy_grid(full)) {
      const int pinned = g.pinned == 0 ? 0 : g.pinned == 1 ? c.n_expert / 2 : c.n_expert;
      planner::Policy policy = make_policy(c, g.mu, g.n_ub, pinned, g.host_attention, prec);
      const int n_seq = g.mu * g.n_ub;
      // `cpu` device (synchronous) on a third of the full grid and all of the small one: the same code
      // path as `sim` without the worker threads, which the runtime budget spends on `sim`; demand fetch
      // (the routing back to the host mid-layer, misses fetched after it) on half the full grid
      for (const char* target : {"sim:l4", "cpu", "demand on sim:l4"}) {
        const std::string t = target;
        if (t == "cpu" && full && runs % 3 != 0) continue;
        if (t != "cpu" && t != "sim:l4" && (pinned == c.n_expert || (full && runs % 2 != 0))) continue;
        policy.expert_fetch = t == "sim:l4" || t == "cpu" ? planner::ExpertFetch::Prefetch : planner::ExpertFetch::Demand;
        auto dev = create_device(t == "cpu" ? "cpu" : "sim:l4");
        PipelinedModel model(*ckpt, *dev, policy);
        const Rows got = run(model, o, n_seq, kGreedySteps, false);
        for (int s = 0; s < n_seq; ++s) {
          const int p = s % n_prompt;
          EXPECT_EQ(got.greedy[s], want.greedy[p]) << describe(GetParam(), prec, g, target) << ", sequence " << s;
          EXPECT_TRUE(got.logits[s] == want.logits[p])
              << describe(GetParam(), prec, g, target) << ", sequence " << s << ": logits differ";
        }
      }
      ++runs;
    }
    std::printf("  %s %s: %d policies match the cpu target\n", GetParam().c_str(),
                std::string(planner::precision_name(prec)).c_str(), runs);
  }
}

// Row errors (max |got - want| over a row / the range of the reference's logits of that prompt) of a
// teacher-forced run against the fp32 reference, checked against the cpu target's stated bounds: bf16
// experts kCpuErrorBf16Kv, int4 experts kCpuErrorI4 (weight quantisation included).
TEST_P(ExecutorEquivalence, LogitsWithinTheStatedToleranceOfTheFp32Reference) {
  auto ckpt = Checkpoint::open(test::oracle_dir(GetParam()));
  const ModelConfig& c = ckpt->config();
  const Oracle o = read_oracle(test::oracle_dir(GetParam()));
  const int n_prompt = static_cast<int>(o.prompts.size()), V = c.n_vocab;
  ReferenceModel reference(load_weights_f32(*ckpt));
  const Rows want = run(reference, o, n_prompt, kForcedSteps, true);
  for (planner::Precision prec : {planner::Precision::Bf16, planner::Precision::Int4}) {
    const LogitErrorBound bound = prec == planner::Precision::Bf16 ? kCpuErrorBf16Kv : kCpuErrorI4;
    auto dev = create_device("sim:l4");
    PipelinedModel model(*ckpt, *dev, make_policy(c, 2, (n_prompt + 1) / 2, c.n_expert / 2, true, prec));
    const Rows got = run(model, o, n_prompt, kForcedSteps, true);
    std::vector<double> errs;
    for (int p = 0; p < n_prompt; ++p) {
      auto [lo, hi] = std::minmax_element(want.logits[p].begin(), want.logits[p].end());
      for (int r = 0; r < kForcedSteps; ++r) {
        double d = 0;
        for (int v = 0; v < V; ++v) {
          const size_t i = static_cast<size_t>(r) * V + v;
          d = std::max(d, std::fabs(static_cast<double>(got.logits[p][i]) - want.logits[p][i]));
        }
        errs.push_back(d / (*hi - *lo));
      }
    }
    std::sort(errs.begin(), errs.end());
    const double median = errs[errs.size() / 2], p90 = errs[errs.size() * 9 / 10], max = errs.back();
    const std::string what = GetParam() + " " + std::string(planner::precision_name(prec));
    std::printf("  %-28s row error median %.1e p90 %.1e max %.1e (%zu rows)\n", what.c_str(), median, p90, max,
                errs.size());
    EXPECT_LE(median, bound.median) << what;
    EXPECT_LE(p90, bound.p90) << what;
    EXPECT_LE(max, bound.max) << what;
  }
}

// The first n layers of a checkpoint as a model of its own (garbage text, deterministic numbers).
class FirstLayers : public WeightSource {
 public:
  FirstLayers(const Checkpoint& ckpt, int n_layer) : inner_(checkpoint_weight_source(ckpt)), config_(ckpt.config()) {
    config_.n_layer = n_layer;
    config_.layer_is_moe.resize(n_layer);
  }
  const ModelConfig& config() const override { return config_; }
  bool has(const WeightId& id) const override { return inner_->has(id); }
  std::vector<float> f32(const WeightId& id) const override { return inner_->f32(id); }

 private:
  std::unique_ptr<WeightSource> inner_;
  ModelConfig config_;
};

// The ring's halves alternate per layer load, across steps too (the next step's layer 0 loads during
// the last layer): with one layer, layer 0 prefetches itself into the other half; with two, the halves
// swap roles every step. Several decode steps, every expert streamed, against the cpu target.
TEST(ExecutorLayerCounts, OneAndTwoLayerModelsMatchTheCpuTarget) {
  omp_set_num_threads(1);
  auto ckpt = Checkpoint::open(test::oracle_dir("mixtral_fused"));
  const Oracle o = read_oracle(test::oracle_dir("mixtral_fused"));
  for (int n_layer : {1, 2}) {
    const FirstLayers source(*ckpt, n_layer);
    CpuModel cpu_target(source);
    const Rows want = run(cpu_target, o, static_cast<int>(o.prompts.size()), 6, false);
    for (bool host_attention : {true, false}) {
      const planner::Policy policy = make_policy(source.config(), 1, 3, 0, host_attention, planner::Precision::Bf16);
      auto dev = create_device("sim:l4");
      PipelinedModel model(source, *dev, policy);
      const Rows got = run(model, o, 3, 6, false);
      for (int s = 0; s < 3; ++s)
        EXPECT_TRUE(got.logits[s] == want.logits[s % o.prompts.size()])
            << n_layer << " layers, " << (host_attention ? "host" : "device") << " attention, sequence " << s;
    }
  }
  omp_set_num_threads(std::max(1, omp_get_num_procs()));
}

// Prefill runs through the decode steps one chunk of a prompt at a time: chunks of 5 tokens (every
// prompt in several chunks, the last one short), with logits of every prompt position, host and device
// attention, every expert streamed: bit-identical to the cpu target's whole-prompt prefill.
TEST(ExecutorPrefill, ChunkedPromptsThroughTheDecodeStepsMatchTheCpuTarget) {
  omp_set_num_threads(1);
  auto ckpt = Checkpoint::open(test::oracle_dir("qwen2_moe_tied_f32"));
  const Oracle o = read_oracle(test::oracle_dir("qwen2_moe_tied_f32"));
  const ModelConfig& c = ckpt->config();
  const int V = c.n_vocab;
  CpuModel cpu_target(*ckpt);
  for (bool host_attention : {true, false}) {
    planner::Policy policy = make_policy(c, 2, 2, 0, host_attention, planner::Precision::Bf16);
    policy.prefill_chunk_tokens = 5;  // max(5, mu) = 5 tokens per chunk
    auto dev = create_device("sim:l4");
    PipelinedModel model(*ckpt, *dev, policy);
    int n_chunked = 0;
    for (const std::vector<int32_t>& prompt : o.prompts) {
      n_chunked += prompt.size() > 5;  // shorter ones are one (short) chunk: checked too
      const int a = cpu_target.add_sequence(), b = model.add_sequence();
      const ForwardItem want_item{a, prompt, true}, got_item{b, prompt, true};
      const std::vector<float> want = cpu_target.forward(std::span<const ForwardItem>(&want_item, 1));
      const std::vector<float> got = model.forward(std::span<const ForwardItem>(&got_item, 1));
      ASSERT_EQ(got.size(), prompt.size() * V);
      EXPECT_TRUE(got == want) << (host_attention ? "host" : "device") << " attention, prompt of "
                               << prompt.size() << " tokens";
      // and a decode step after the chunked prefill reads the cache the chunks wrote
      const int32_t next = prompt.front();
      const ForwardItem want_next{a, std::span<const int32_t>(&next, 1), false};
      const ForwardItem got_next{b, std::span<const int32_t>(&next, 1), false};
      EXPECT_TRUE(model.forward(std::span<const ForwardItem>(&got_next, 1)) ==
                  cpu_target.forward(std::span<const ForwardItem>(&want_next, 1)));
      cpu_target.free_sequence(a);
      model.free_sequence(b);
    }
    EXPECT_GE(n_chunked, 2) << "the oracle's prompts should include several longer than one chunk";
  }
  omp_set_num_threads(std::max(1, omp_get_num_procs()));
}

// The executor is device-generic: it never touches device memory from the host. On a device whose arena
// is unmapped (PROT_NONE) except while the device's own streams run, any host read or write of a device
// buffer -- by the schedule, the host attention task or the statistics -- would fault, as it would read
// garbage on a GPU. Every policy shape runs to the cpu target's logits.
TEST(ExecutorDeviceMemory, HostNeverTouchesDeviceBuffers) {
  omp_set_num_threads(1);
  auto ckpt = Checkpoint::open(test::oracle_dir("qwen2_moe_tied_f32"));
  const Oracle o = read_oracle(test::oracle_dir("qwen2_moe_tied_f32"));
  const ModelConfig& c = ckpt->config();
  CpuModel cpu_target(*ckpt);
  const Rows want = run(cpu_target, o, static_cast<int>(o.prompts.size()), 3, false);
  for (bool host_attention : {true, false})
    for (int pinned : {0, c.n_expert / 2}) {
      DeviceInfo info;
      info.name = "cpu (guarded)";
      info.capacity_bytes = size_t{1} << 30;
      exec::StreamDevice dev(info, /*guard_device_memory=*/true);
      PipelinedModel model(*ckpt, dev, make_policy(c, 2, 2, pinned, host_attention, planner::Precision::Bf16));
      const Rows got = run(model, o, 4, 3, false);
      for (int s = 0; s < 4; ++s)
        EXPECT_TRUE(got.logits[s] == want.logits[s % o.prompts.size()])
            << (host_attention ? "host" : "device") << " attention, " << pinned << " pinned, sequence " << s;
    }
  omp_set_num_threads(std::max(1, omp_get_num_procs()));
}

// ... and the guard does catch a host task reading a device buffer.
TEST(ExecutorDeviceMemoryDeathTest, GuardFaultsOnAHostReadOfDeviceMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  DeviceInfo info;
  info.name = "cpu (guarded)";
  info.capacity_bytes = size_t{1} << 20;
  exec::StreamDevice dev(info, /*guard_device_memory=*/true);
  const BufferId buf = dev.alloc("hidden", 4096);
  const float* p = static_cast<const float*>(dev.data(buf));
  dev.launch(StreamKind::Compute, {TaskKind::Embed, 0, 0}, {}, [p] { (void)*static_cast<const volatile float*>(p); });
  EXPECT_DEATH(dev.launch(StreamKind::Host, {TaskKind::Attention, 0, 0}, {},
                          [p] { (void)*static_cast<const volatile float*>(p); }),
               "");
}

// Demand fetch moves only what the router asks for: at one sequence per step (K of E experts routed per
// layer) it streams fewer bytes than copying every streamed expert, the same logits, and its counts add up:
// every streamed expert of every layer load was prefetched, fetched after the router, or not moved.
TEST(ExecutorDemandFetch, MovesFewerBytesThanCopyingEveryStreamedExpertAndTheSameLogits) {
  omp_set_num_threads(1);
  auto ckpt = Checkpoint::open(test::oracle_dir("mixtral_fused"));
  const ModelConfig& c = ckpt->config();
  const Oracle o = read_oracle(test::oracle_dir("mixtral_fused"));
  ASSERT_LT(c.n_expert_used * 2, c.n_expert);  // a single token leaves most experts unrouted
  Rows rows[2];
  PipelineStats st[2];
  for (int d = 0; d < 2; ++d) {
    planner::Policy p = make_policy(c, 1, 1, 1, true, planner::Precision::Bf16);
    p.expert_fetch = d ? planner::ExpertFetch::Demand : planner::ExpertFetch::Prefetch;
    auto dev = create_device("sim:l4");
    PipelinedModel model(*ckpt, *dev, p);
    rows[d] = run(model, o, 1, kGreedySteps, false);
    st[d] = model.stats();
  }
  EXPECT_TRUE(rows[1].logits == rows[0].logits);
  EXPECT_LT(st[1].streamed_bytes, st[0].streamed_bytes);
  EXPECT_GT(st[1].experts_not_moved, 0);
  const int64_t per_load = c.n_expert - 1;  // streamed experts of a layer
  const int64_t loads = st[1].experts_prefetched + st[1].experts_fetched_late + st[1].experts_not_moved;
  EXPECT_EQ(loads % per_load, 0);
  EXPECT_GE(loads / per_load, static_cast<int64_t>(kGreedySteps) * c.n_layer);
  std::printf("  demand fetch: %llu of %llu bytes streamed; %lld experts prefetched, %lld fetched after the router, "
              "%lld not moved\n",
              static_cast<unsigned long long>(st[1].streamed_bytes), static_cast<unsigned long long>(st[0].streamed_bytes),
              static_cast<long long>(st[1].experts_prefetched), static_cast<long long>(st[1].experts_fetched_late),
              static_cast<long long>(st[1].experts_not_moved));
}

INSTANTIATE_TEST_SUITE_P(Oracles, ExecutorEquivalence, ::testing::ValuesIn(test::oracle_fixtures()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ferry
