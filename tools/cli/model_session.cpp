#include "model_session.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "ferry/cpu_model.h"
#include "ferry/error.h"
#include "ferry/model_factory.h"

namespace ferry::cli {

namespace {

constexpr size_t kTraceEventsPerResource = size_t{1} << 17;
constexpr int kDefaultBatch = 16;

planner::Workload workload_of(std::span<const GenerationRequest> requests, int max_tokens) {
  planner::Workload w;
  w.requests = std::max<int64_t>(1, static_cast<int64_t>(requests.size()));
  double total = 0;
  int64_t longest = 1, gen = 1;
  for (const GenerationRequest& r : requests) {
    total += static_cast<double>(r.prompt.size());
    longest = std::max<int64_t>(longest, static_cast<int64_t>(r.prompt.size()));
    gen = std::max<int64_t>(gen, r.max_tokens);
  }
  w.avg_prompt_len = requests.empty() ? 1.0 : std::max(1.0, total / static_cast<double>(requests.size()));
  w.max_prompt_len = longest;
  w.gen_len = requests.empty() ? std::max(1, max_tokens) : gen;
  return w;
}

// Tokens of the largest prefill the generator may run over these requests: the `batch` longest prompts,
// at most its per-forward limit. The cpu target reserves its activation buffers for it at load, so the job's
// first prefills do not pay for growing them.
int largest_prefill(std::span<const GenerationRequest> requests, int batch) {
  std::vector<int64_t> lengths;
  for (const GenerationRequest& r : requests) lengths.push_back(static_cast<int64_t>(r.prompt.size()));
  const size_t n = std::min<size_t>(lengths.size(), std::max(1, batch));
  std::partial_sort(lengths.begin(), lengths.begin() + n, lengths.end(), std::greater<>());
  int64_t tokens = 0;
  for (size_t i = 0; i < n; ++i) tokens += lengths[i];
  return static_cast<int>(std::min<int64_t>(tokens, GeneratorOptions{}.max_prefill_tokens));
}

// printf into a string
template <class... A>
void appendf(std::string& s, const char* fmt, A... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  s += buf;
}

planner::Precision precision_of(const std::string& dtype) {
  return planner::parse_precision(dtype, "--expert-dtype");
}

}  // namespace

ModelSession open_model(const Checkpoint& ckpt, const GenerationOptions& given,
                        std::span<const GenerationRequest> requests) {
  ModelSession s;
  GenerationOptions o = given;  // --target auto resolved: cuda with a usable GPU, else cpu
  std::string why;
  o.target.target = resolve_target(given.target.target, &why);
  if (!why.empty()) std::fprintf(stderr, "ferry: %s\n", why.c_str());
  if (!is_pipeline_target(o.target.target)) {
    if (o.policy != "auto" || !o.trace_path.empty() || !o.timeline_path.empty() || !o.expert_fetch.empty() ||
        !o.expert_residency.empty())
      throw Error("--policy, --expert-fetch, --expert-residency, --trace and --timeline apply to the pipeline targets (sim:<profile>, cuda, "
                  "pipeline:<device>), not to --target " + o.target.target);
    s.max_sequences = o.batch > 0 ? o.batch : kDefaultBatch;
    TargetOptions t = o.target;
    t.reserve_tokens = largest_prefill(requests, s.max_sequences);
    s.model = create_model(ckpt, t);
    if (!o.hw.empty()) {
      const auto* cpu = dynamic_cast<const CpuModel*>(s.model.get());
      if (!cpu)
        throw Error("--hw predicts a run of the cpu target; --target " + o.target.target +
                    " has no time model (use --target cpu)");
      s.cpu_prediction = predict_cpu_run(ckpt.config(), ckpt.dir().filename().string(), cpu->options(),
                                         planner::resolve_hardware(o.hw), workload_of(requests, o.max_tokens),
                                         s.max_sequences, GeneratorOptions{}.max_prefill_tokens);
    }
    return s;
  }
  if (!o.hw.empty())
    throw Error("--hw applies to the cpu target; a pipeline target predicts with the profile of its device "
                "(sim:<profile>) or the one the planner probed");
  if (o.target.substitute_below > 0)
    throw Error("--substitute-below applies to the cpu target under --dram-budget; the pipelined executor does not "
                "substitute on a miss yet");
  if (o.target.dram_budget_gb > 0 || !o.target.record_routing.empty() || o.target.populate)
    throw Error("--dram-budget, --record-routing and --populate apply to the cpu target for now; the pipelined "
                "executor puts experts on the SSD tier through its policy (ssd_experts_per_layer)");
  if (o.target.kv_dtype != "bf16" || o.target.bf16_activations || o.target.threads != 0)
    throw Error("--kv-dtype, --bf16-activations and --threads apply to the cpu target; the pipelined executor "
                "keeps the KV cache in bf16 and computes as the cpu target's defaults do");
  if (o.policy != "auto" && o.batch > 0)
    throw Error("--batch pins N when the planner picks the policy (--policy auto); the policy file " + o.policy +
                " sets N itself (batch_size)");
  PipelineTargetOptions po;
  po.target = o.target.target;
  po.policy = o.policy;
  po.workload = workload_of(requests, o.max_tokens);
  po.expert_precision = precision_of(o.target.expert_dtype);
  po.batch = o.batch;
  po.group_size = o.target.group_size;
  po.group_size_given = o.group_size_given;
  po.kv_cache_tokens = o.target.kv_cache_tokens;
  if (!o.expert_fetch.empty())
    po.expert_fetch = o.expert_fetch == "demand" ? planner::ExpertFetch::Demand : planner::ExpertFetch::Prefetch;
  if (!o.expert_residency.empty())
    po.expert_residency =
        o.expert_residency == "index" ? planner::ExpertResidency::Index : planner::ExpertResidency::Frequency;
  std::unique_ptr<PipelineTarget> t = PipelineTarget::create(ckpt, po);
  s.pipeline = t.get();
  s.max_sequences = static_cast<int>(std::max<int64_t>(1, t->policy().batch_size));
  s.model = std::move(t);
  if (!o.trace_path.empty() || !o.timeline_path.empty()) {
    s.trace = std::make_unique<Trace>(kTraceEventsPerResource);
    s.pipeline->device().set_trace(s.trace.get());
  }
  return s;
}

namespace {

// --hw: the planner's prediction beside the measurement, one row per rate and per part.
nlohmann::json report_prediction(const CpuRunPrediction& p, const GenerationStats& stats,
                                 const CpuForwardTimes& times, std::FILE* out) {
  const std::vector<PredictedMeasured> rows = compare_cpu_run(p, stats, times);
  if (out) {
    std::fprintf(out, "planner vs this run (profile %s, N=%lld, prompts %.1f tokens on average):\n",
                 p.hardware.c_str(), static_cast<long long>(p.policy.batch_size), p.workload.avg_prompt_len);
    std::fprintf(out, "  %-36s %12s %12s %9s\n", "", "predicted", "measured", "meas/pred");
    for (const PredictedMeasured& r : rows)
      std::fprintf(out, "  %-36s %12.3f %12.3f %9.2f\n", r.what.c_str(), r.predicted, r.measured, r.ratio());
  }
  nlohmann::json j = nlohmann::json::array();
  for (const PredictedMeasured& r : rows)
    j.push_back({{"what", r.what}, {"predicted", r.predicted}, {"measured", r.measured}, {"ratio", r.ratio()}});
  return {{"hardware", p.hardware}, {"rows", j}};
}

// The cpu target: the routing trace closed (its write errors reported), the expert tiers' counters, the
// prediction (--hw).
nlohmann::json finish_cpu_session(ModelSession& s, const GenerationStats& stats, std::FILE* out) {
  auto* cpu = dynamic_cast<CpuModel*>(s.model.get());
  if (!cpu) return nullptr;
  cpu->finish_routing_trace();
  nlohmann::json j = nlohmann::json::object();
  if (s.cpu_prediction)
    j["predicted_vs_measured"] = report_prediction(*s.cpu_prediction, stats, cpu->forward_times(), out);
  const experts::TieredExpertsStats* t = cpu->expert_tier_stats();
  if (!t) return j.empty() ? nlohmann::json(nullptr) : j;
  if (cpu->options().substitute_below > 0) {
    const SubstitutionStats& sub = cpu->substitution_stats();
    if (out)
      std::fprintf(out,
                   "ferry: substitution on a miss (gate weight below %.3g, %s copies): %llu expert uses (%llu "
                   "token assignments), %.1f MB not read\n",
                   cpu->options().substitute_below, std::string(dtype_name(cpu->options().substitute_dtype)).c_str(),
                   static_cast<unsigned long long>(sub.experts), static_cast<unsigned long long>(sub.assignments),
                   static_cast<double>(sub.bytes_not_read) / 1e6);
    j["substitution"] = {{"below", cpu->options().substitute_below},
                         {"dtype", dtype_name(cpu->options().substitute_dtype)},
                         {"experts", sub.experts},
                         {"assignments", sub.assignments},
                         {"bytes_not_read", sub.bytes_not_read}};
  }
  const uint64_t asked = t->hits + t->misses;
  const double hit_rate = asked ? static_cast<double>(t->hits) / static_cast<double>(asked) : 0;
  if (out)
    std::fprintf(out,
                 "ferry: experts under the DRAM budget: %.1f%% hits (%llu of %llu), %.1f MB read from the store "
                 "(%llu prefetched, %llu of them used), %.2f s waiting for reads\n",
                 100 * hit_rate, static_cast<unsigned long long>(t->hits), static_cast<unsigned long long>(asked),
                 static_cast<double>(t->bytes_read) / 1e6, static_cast<unsigned long long>(t->prefetch_reads),
                 static_cast<unsigned long long>(t->prefetch_hits), t->stall_seconds);
  j["expert_tiers"] = {{"hits", t->hits}, {"misses", t->misses}, {"hit_rate", hit_rate}, {"bytes_read", t->bytes_read},
            {"prefetch_reads", t->prefetch_reads}, {"prefetch_hits", t->prefetch_hits},
            {"checksum_retries", t->checksum_retries}, {"stall_seconds", t->stall_seconds}};
  return j;
}

}  // namespace

nlohmann::json finish_session(ModelSession& s, const GenerationOptions& o, const GenerationStats& stats,
                              std::FILE* out) {
  if (!s.pipeline) return finish_cpu_session(s, stats, out);
  Device& dev = s.pipeline->device();
  dev.synchronize();  // the next step's experts may still be loading
  dev.set_trace(nullptr);
  const DeviceCounters c = dev.counters();
  const PipelineStats& ps = s.pipeline->executor().stats();
  const planner::Policy& p = s.pipeline->policy();
  const double wall = stats.wall_seconds;
  int busiest = 0;
  for (int r = 0; r < kStreamCount; ++r)
    if (c.busy_seconds[r] > c.busy_seconds[busiest]) busiest = r;
  const double efficiency = wall > 0 ? c.busy_seconds[busiest] / wall : 0;
  const int64_t routed = ps.expert_hits + ps.expert_misses;
  const bool gpu = !dev.info().host_addressable;  // a real (CUDA) GPU
  const bool sim = dev.info().asynchronous && !gpu;
  std::string report;

  appendf(report, "pipeline on %s: %s\n", dev.info().name.c_str(),
               gpu ? "a GPU"
               : sim ? "an emulated GPU (its memory and links); sim timings are emulation, not GPU timings"
                     : "the host itself");
  appendf(report, "  policy             %s: N=%lld, micro-batch %lld, attention on %s, experts %s, overlap %s\n",
               s.pipeline->policy_source().c_str(), static_cast<long long>(p.batch_size),
               static_cast<long long>(p.micro_batch), std::string(planner::device_name(p.attention_device)).c_str(),
               std::string(planner::precision_name(p.gpu_expert_precision)).c_str(), p.overlap ? "on" : "off");
  appendf(report, "  wall time          %.3f s\n", wall);
  for (int r = 0; r < kStreamCount; ++r) {
    const auto k = static_cast<StreamKind>(r);
    appendf(report, "  busy %-14s %.3f s (%4.1f%%)", resource_label(k), c.busy_seconds[r],
                 wall > 0 ? 100 * c.busy_seconds[r] / wall : 0.0);
    if (k == StreamKind::H2D || k == StreamKind::D2H)
      appendf(report, ", %.2f MB moved (%.3f GB/s over the run)", c.bytes[r] / 1e6, wall > 0 ? c.bytes[r] / wall / 1e9 : 0.0);
    report += '\n';
  }
  appendf(report, "  overlap efficiency %.2f (busiest resource, %s, busy / wall time)\n", efficiency,
               resource_label(static_cast<StreamKind>(busiest)));
  appendf(report, "  expert cache       %lld hits (resident on the device), %lld misses (streamed): %.1f%% hit rate; "
               "residency by %s",
               static_cast<long long>(ps.expert_hits), static_cast<long long>(ps.expert_misses),
               routed ? 100.0 * ps.expert_hits / routed : 0.0,
               std::string(planner::expert_residency_name(p.expert_residency)).c_str());
  if (p.expert_residency == planner::ExpertResidency::Frequency)
    appendf(report, ", %lld trades (%.2f MB moved)", static_cast<long long>(ps.expert_swaps), ps.expert_swap_bytes / 1e6);
  report += '\n';
  const int compute = static_cast<int>(StreamKind::Compute);
  if (c.wait_seconds)
    appendf(report, "  compute stalls     %.3f s (%4.1f%% of the wall time) waiting for expert pages, loads and host "
            "attention\n", (*c.wait_seconds)[compute], wall > 0 ? 100 * (*c.wait_seconds)[compute] / wall : 0.0);
  appendf(report, "  expert fetch       %s: %.2f MB of experts streamed", std::string(planner::expert_fetch_name(p.expert_fetch)).c_str(),
          ps.streamed_bytes / 1e6);
  // The demand predictor (the last forward's routing at the layer): of what it copied ahead, the share
  // routed (precision); of what was routed, the share it had copied (recall).
  const int64_t predicted_used = ps.experts_prefetched - ps.experts_prefetched_unused;
  const double precision = ps.experts_prefetched ? static_cast<double>(predicted_used) / ps.experts_prefetched : 0.0;
  const double recall = predicted_used + ps.experts_fetched_late
                            ? static_cast<double>(predicted_used) / (predicted_used + ps.experts_fetched_late)
                            : 0.0;
  if (p.expert_fetch == planner::ExpertFetch::Demand)
    appendf(report, "; %lld prefetched (%lld unused), %lld fetched after the router, %lld not moved (%.2f MB "
            "avoided); prediction precision %.0f%%, recall %.0f%%; %.3f s waiting for routing",
            static_cast<long long>(ps.experts_prefetched), static_cast<long long>(ps.experts_prefetched_unused),
            static_cast<long long>(ps.experts_fetched_late), static_cast<long long>(ps.experts_not_moved),
            ps.bytes_not_moved / 1e6, 100 * precision, 100 * recall, ps.routing_wait_seconds);
  report += '\n';
  appendf(report, "  tokens/s           %.1f generated (decode %.1f)\n", stats.tokens_per_second(),
               stats.decode_tokens_per_second());
  const std::optional<double> predicted = s.pipeline->predicted_tokens_per_s();
  if (predicted && gpu)
    appendf(report, "  planner prediction %.1f tokens/s for this policy on %s\n", *predicted,
            s.pipeline->hardware().c_str());
  else if (predicted)
    appendf(report,
            "  planner prediction %.1f tokens/s for this policy on the real hardware %s emulates (a prediction "
            "for the GPU, not for this emulation)\n",
            *predicted, s.pipeline->hardware().c_str());
  else
    appendf(report, "  planner prediction none (no GPU profile to predict for on this device)\n");

  if (s.trace) {
    if (!o.trace_path.empty()) write_chrome_trace(*s.trace, o.trace_path);
    if (!o.timeline_path.empty())
      write_timeline_svg(*s.trace, o.timeline_path, "ferry on " + dev.info().name + ", " + s.pipeline->policy_source());
    if (s.trace->dropped() > 0)
      appendf(report, "  trace              kept the first %zu tasks per resource (%zu more not recorded)\n",
                   kTraceEventsPerResource, s.trace->dropped());
    if (!o.trace_path.empty()) appendf(report, "  trace written to   %s\n", o.trace_path.c_str());
    if (!o.timeline_path.empty()) appendf(report, "  timeline written to %s\n", o.timeline_path.c_str());
  }

  if (out) std::fputs(report.c_str(), out);

  nlohmann::json j = {{"device", dev.info().name},
                      {"policy_source", s.pipeline->policy_source()},
                      {"policy", p.to_json()},
                      {"wall_seconds", wall},
                      {"overlap_efficiency", efficiency},
                      {"busiest", resource_label(static_cast<StreamKind>(busiest))},
                      {"expert_hits", ps.expert_hits},
                      {"expert_misses", ps.expert_misses},
                      {"expert_residency",
                       {{"mode", planner::expert_residency_name(p.expert_residency)},
                        {"hit_rate", routed ? static_cast<double>(ps.expert_hits) / routed : 0.0},
                        {"trades", ps.expert_swaps},
                        {"trade_bytes", ps.expert_swap_bytes}}},
                      {"expert_fetch",
                       {{"mode", planner::expert_fetch_name(p.expert_fetch)},
                        {"streamed_bytes", ps.streamed_bytes},
                        {"prefetched", ps.experts_prefetched},
                        {"prefetched_unused", ps.experts_prefetched_unused},
                        {"fetched_after_router", ps.experts_fetched_late},
                        {"not_moved", ps.experts_not_moved},
                        {"bytes_not_moved", ps.bytes_not_moved},
                        {"prediction_precision", precision},
                        {"prediction_recall", recall},
                        {"routing_wait_seconds", ps.routing_wait_seconds}}},
                      {"tokens_per_second", stats.tokens_per_second()},
                      {"sim_timings_are_emulation", sim}};
  for (int r = 0; r < kStreamCount; ++r) {
    const std::string name = stream_name(static_cast<StreamKind>(r));
    j["busy_seconds"][name] = c.busy_seconds[r];
    j["bytes"][name] = c.bytes[r];
  }
  j["compute_stall_seconds"] = c.wait_seconds ? nlohmann::json((*c.wait_seconds)[compute]) : nlohmann::json(nullptr);
  j["planner_predicted_tokens_per_second"] = predicted ? nlohmann::json(*predicted) : nlohmann::json(nullptr);
  return j;
}

}  // namespace ferry::cli
