// Pipeline targets: device, policy (file or planner), prediction and executor, built in that order.
#include "ferry/pipeline_target.h"

#include <algorithm>
#include <string>

#include "ferry/error.h"
#include "ferry/exec/layer_ops.h"
#include "ferry/exec/pipeline_buffers.h"
#include "ferry/exec/sim_hardware.h"
#include "ferry/planner/plan_report.h"
#include "ferry/planner/planner.h"

#ifdef FERRY_HAVE_CUDA
#include "kernels/cuda_hardware.h"
#endif

namespace ferry {

namespace {

constexpr const char* kPipelinePrefix = "pipeline:";
constexpr int64_t kMaxAutoBatchOnCpu = 64;
constexpr int64_t kCpuPrefillChunk = 256;  // tokens per prefill op call on the cpu device

std::string model_name(const Checkpoint& ckpt) { return ckpt.dir().filename().string(); }

// Why auto planning failed, in terms a user can act on: what is short, the largest device buffer of the
// closest policy, and what to change.
std::string no_fit_message(const std::string& target, const std::string& model, const planner::PlanResult& r,
                           const planner::HardwareProfile& hw) {
  std::string msg = "the planner finds no policy for " + model + " that fits " + target + " (GPU memory " +
                    planner::format_bytes(hw.gpu->capacity_bytes) + ")";
  const planner::MemoryPlan& m = r.closest.estimate.memory;
  if (r.closest.policy.batch_size > 0 && m.gpu_short() > 0) {
    const planner::MemoryItem* largest = nullptr;
    for (const planner::MemoryItem& it : m.items)
      if (it.level == "gpu" && (!largest || it.bytes > largest->bytes)) largest = &it;
    msg += ": even the closest policy is short of " + planner::format_bytes(m.gpu_short()) + " of GPU memory (needs " +
           planner::format_bytes(m.gpu_bytes) + ", " + planner::format_bytes(m.gpu_usable) + " usable)";
    if (largest)
      msg += "; its largest GPU buffer is '" + largest->what + "' of " + planner::format_bytes(largest->bytes);
  }
  const std::string bigger = is_cuda_target(target) ? "raise or drop capacity=, or use a larger GPU"
                                                     : "raise scale= or drop it, or pick a larger profile";
  return msg + ". Use a device with more memory (" + bigger + "), or pass --policy FILE (ferry plan --json)";
}

// `host_attention`: restrict the plan to attention on the CPU (the cuda device has no device attention yet).
planner::Policy plan_auto(const Checkpoint& ckpt, const planner::HardwareProfile& hw, const PipelineTargetOptions& o,
                          const std::string& device, bool host_attention) {
  const planner::ModelShape shape = planner::ModelShape::from_config(ckpt.config(), model_name(ckpt));
  planner::PlannerOptions po;
  // Priced as the executor allocates: an auto policy always fits the device.
  price_as_pipeline(po, ckpt.config(), &ckpt, o.kv_cache_tokens);
  po.expert_precisions = {o.expert_precision};
  po.kv_precision = planner::Precision::Bf16;  // what the executor keeps
  po.ffn_device = planner::Device::Gpu;        // the executor computes every expert on the device
  po.kv_gpu_share = 1.0;                       // and keeps the whole KV cache where attention runs
  po.group_size = o.group_size;
  if (host_attention) po.attention_device = planner::Device::Cpu;
  if (o.batch > 0) po.batch_size = o.batch;
  planner::AutoPlan ap = planner::plan_with_fallback(shape, hw, o.workload, po, false);
  // A batch larger than the requests only costs memory: plan again with N pinned to them.
  if (ap.result.feasible && o.batch <= 0 && ap.result.best.policy.batch_size > o.workload.requests) {
    po.batch_size = std::max<int64_t>(1, o.workload.requests);
    ap = planner::plan_with_fallback(shape, hw, o.workload, po, false);
  }
  if (!ap.result.feasible) throw Error(no_fit_message(device, shape.name, ap.result, hw));
  planner::Policy p = ap.result.best.policy;
  p.model = shape.name;
  return p;
}

// The cpu device is the host: nothing to stream, so every expert is resident and attention runs on the
// host; one micro-batch per step (there is no link to overlap with).
planner::Policy cpu_policy(const ModelConfig& c, const PipelineTargetOptions& o) {
  planner::Policy p;
  p.hardware = "cpu";
  p.batch_size = o.batch > 0 ? o.batch : std::clamp<int64_t>(o.workload.requests, 1, kMaxAutoBatchOnCpu);
  p.micro_batch = p.batch_size;
  p.attention_device = planner::Device::Cpu;
  for (int l = 0; l < c.n_layer; ++l) {
    p.gpu_experts_per_layer.push_back(c.layer_is_moe[l] ? c.n_expert : 0);
    p.dram_experts_per_layer.push_back(0);
    p.ssd_experts_per_layer.push_back(0);
  }
  p.gpu_expert_precision = p.dram_expert_precision = p.ssd_expert_precision = o.expert_precision;
  p.group_size = o.group_size;
  p.prefill_chunk_tokens = kCpuPrefillChunk;
  if (o.kv_cache_tokens > 0) p.cache.dram_kv_cache = pipeline_kv_bytes(c, o.kv_cache_tokens);
  return p;
}

}  // namespace

std::optional<DeviceTarget> pipeline_device(const std::string& target) {
  const std::string prefix = kPipelinePrefix;
  if (target.rfind(prefix, 0) == 0) return parse_device_target(target.substr(prefix.size()));
  std::optional<DeviceTarget> d = parse_device_target(target);
  if (d && d->kind == DeviceKind::Host) return std::nullopt;  // `cpu` alone is the cpu target
  return d;
}

bool is_pipeline_target(const std::string& target) { return pipeline_device(target).has_value(); }

std::unique_ptr<PipelineTarget> PipelineTarget::create(const Checkpoint& ckpt, const PipelineTargetOptions& o) {
  const std::optional<DeviceTarget> parsed = pipeline_device(o.target);
  if (!parsed) throw Error("'" + o.target + "' is not a pipeline target");
  const std::string device = parsed->spec;
  std::unique_ptr<PipelineTarget> t(new PipelineTarget());
  t->device_ = create_device(device);
  const bool sim = parsed->kind == DeviceKind::Sim;
  const bool cuda = parsed->kind == DeviceKind::Cuda;
  const bool gpu = sim || cuda;  // a GPU (emulated or real) to plan and predict for
  planner::HardwareProfile hw;
  if (sim) hw = sim_hardware(device);
#ifdef FERRY_HAVE_CUDA
  if (cuda) hw = cuda::cuda_hardware(*t->device_);  // the real GPU, after capacity= and link caps
#endif
  if (gpu) t->hardware_ = hw.name;
  // Without device attention (cuda, for now) the executor attends on the host.
  const bool host_attention = !t->device_->ops().has_device_attention();
  if (o.policy == "auto") {
    t->policy_ = gpu ? plan_auto(ckpt, hw, o, device, host_attention) : cpu_policy(ckpt.config(), o);
    t->policy_source_ = gpu ? "auto (planned for " + hw.name + ")" : "auto (every expert resident on the cpu device)";
    if (o.expert_fetch) t->policy_.expert_fetch = *o.expert_fetch;
    if (o.expert_residency) t->policy_.expert_residency = *o.expert_residency;
  } else {
    t->policy_ = planner::Policy::load(o.policy);
    t->policy_source_ = o.policy;
    // Before anything reads per-layer fields (the cost model indexes them by the model's layers).
    t->policy_.validate_for(ckpt.config(), o.policy);
    if (o.group_size_given && o.group_size != t->policy_.group_size)
      throw Error("--group-size " + std::to_string(o.group_size) + " disagrees with the policy " + o.policy +
                  " (experts.group_size " + std::to_string(t->policy_.group_size) +
                  "): the policy decides; drop --group-size or edit the policy");
    if (o.expert_fetch && *o.expert_fetch != t->policy_.expert_fetch)
      throw Error("--expert-fetch " + std::string(planner::expert_fetch_name(*o.expert_fetch)) +
                  " disagrees with the policy " + o.policy + " (experts.fetch " +
                  std::string(planner::expert_fetch_name(t->policy_.expert_fetch)) +
                  "): the policy decides; drop --expert-fetch or edit the policy");
    if (o.expert_residency && *o.expert_residency != t->policy_.expert_residency)
      throw Error("--expert-residency " + std::string(planner::expert_residency_name(*o.expert_residency)) +
                  " disagrees with the policy " + o.policy + " (experts.residency " +
                  std::string(planner::expert_residency_name(t->policy_.expert_residency)) +
                  "): the policy decides; drop --expert-residency or edit the policy");
    if (o.kv_cache_tokens > 0) {
      planner::Policy& p = t->policy_;
      int64_t& field = p.attention_device == planner::Device::Gpu ? p.cache.gpu_kv_cache : p.cache.dram_kv_cache;
      const int64_t bytes = pipeline_kv_bytes(ckpt.config(), o.kv_cache_tokens);
      if (field > 0 && field != bytes)
        throw Error("--kv-tokens " + std::to_string(o.kv_cache_tokens) + " disagrees with the policy " + o.policy +
                    " (its cache_bytes hold " + std::to_string(pipeline_kv_tokens_in(ckpt.config(), field)) +
                    " KV tokens): the policy decides; drop --kv-tokens or edit the policy");
      field = bytes;
    }
    if (host_attention && t->policy_.attention_device == planner::Device::Gpu)
      throw Error("policy " + o.policy + " puts attention on the GPU, but " + t->device_->info().name +
                  " attends on the host only (device attention is not implemented yet); use --policy auto or a "
                  "policy with attention on the CPU (ferry plan --attention cpu --json)");
  }
  if (gpu) {
    try {
      planner::CostOptions co;
      co.buffers = std::make_shared<PipelineBufferModel>(ckpt.config(), &ckpt);
      co.kv_tokens = pipeline_kv_tokens(ckpt.config(), t->policy_);
      planner::CostModel cost(planner::ModelShape::from_config(ckpt.config(), model_name(ckpt)), hw, o.workload, co);
      t->predicted_ = cost.evaluate(t->policy_, /*itemize=*/false).tokens_per_s;
    } catch (const Error&) {
      // a hand-written policy the cost model cannot evaluate: run it, without a prediction
    }
  }
  t->executor_ = std::make_unique<PipelinedModel>(ckpt, *t->device_, t->policy_);
  return t;
}

PipelineTarget::~PipelineTarget() {
  executor_.reset();  // it may still be loading the next step's experts on the device
}

}  // namespace ferry
