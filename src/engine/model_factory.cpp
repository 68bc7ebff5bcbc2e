#include "ferry/model_factory.h"

#include <algorithm>

#include "ferry/cpu_model.h"
#include "ferry/device.h"
#include "ferry/error.h"
#include "ferry/precision.h"
#include "ferry/pipeline_target.h"
#include "ferry/reference_model.h"

namespace ferry {

namespace {

// The cpu target's KV cache element types (a vocabulary of its own: float formats, not weight precisions).
DType parse_kv_dtype(const std::string& value) {
  for (DType d : {DType::BF16, DType::F16, DType::F32})
    if (value == dtype_name(d)) return d;
  throw Error("unknown KV cache dtype '" + value + "'; known: bf16, f16, f32");
}

CpuModelOptions cpu_options(const TargetOptions& o) {
  CpuModelOptions c;
  c.expert_dtype = precision_dtype(parse_precision(o.expert_dtype, "--expert-dtype"));
  c.kv_dtype = parse_kv_dtype(o.kv_dtype);
  c.group_size = o.group_size;
  c.threads = o.threads;
  c.kv_cache_tokens = o.kv_cache_tokens;
  c.bf16_activations = o.bf16_activations;
  c.dram_expert_budget = static_cast<size_t>(o.dram_budget_gb * 1e9);
  c.eviction = o.eviction;
  c.reader = o.reader;
  c.record_routing = o.record_routing;
  c.populate = o.populate;
  c.max_batch_tokens = std::max(c.max_batch_tokens, o.reserve_tokens);
  c.substitute_below = static_cast<float>(o.substitute_below);
  c.substitute_dtype = precision_dtype(parse_precision(o.substitute_dtype, "--substitute-dtype"));
  return c;
}

}  // namespace

std::string resolve_target(const std::string& target, std::string* why) {
  if (target != "auto") return target;
  std::string none;
  const int n = cuda_device_count(&none);
  if (n > 0) {
    if (why) *why = "--target auto -> cuda (" + std::to_string(n) + " CUDA GPU" + (n > 1 ? "s" : "") + "; using cuda:0)";
    return "cuda";
  }
  if (why) *why = "--target auto -> cpu (no CUDA GPU: " + none + ")";
  return "cpu";
}

std::unique_ptr<Model> create_model(const Checkpoint& checkpoint, const TargetOptions& given) {
  TargetOptions options = given;
  options.target = resolve_target(given.target);
  if (options.target != "cpu" && options.dram_budget_gb > 0)
    throw Error("--dram-budget applies to the cpu target (--target cpu), not to --target " + options.target);
  if (options.target != "cpu" && options.substitute_below > 0)
    throw Error("--substitute-below applies to the cpu target under --dram-budget, not to --target " + options.target);
  if (options.target != "cpu" && !options.record_routing.empty())
    throw Error("--record-routing applies to the cpu target (--target cpu), not to --target " + options.target);
  if (options.target == "reference" || options.target == "ref")
    return std::make_unique<ReferenceModel>(load_weights_f32(checkpoint));
  if (options.target == "cpu") return std::make_unique<CpuModel>(checkpoint, cpu_options(options));
  if (is_pipeline_target(options.target))
    throw Error("target '" + options.target + "' is a pipeline target: build it with PipelineTarget::create "
                "(ferry/pipeline_target.h), which also takes its policy and workload");
  throw Error("unknown target '" + options.target +
              "'; known targets: reference, cpu, sim:<profile>[,scale=X][,h2d=GBps][,d2h=GBps], "
              "cuda[:N][,capacity=SIZE][,h2d=GBps], pipeline:<device>, auto");
}

}  // namespace ferry
