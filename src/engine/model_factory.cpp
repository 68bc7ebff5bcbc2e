#include "ferry/model_factory.h"

#include "ferry/cpu_model.h"
#include "ferry/device.h"
#include "ferry/error.h"
#include "ferry/pipeline_target.h"
#include "ferry/reference_model.h"

namespace ferry {

namespace {

DType parse_choice(const std::string& value, const char* what,
                   std::initializer_list<std::pair<const char*, DType>> choices) {
  std::string known;
  for (const auto& [name, dtype] : choices) {
    if (value == name) return dtype;
    known += known.empty() ? name : std::string(", ") + name;
  }
  throw Error("unknown " + std::string(what) + " '" + value + "'; known: " + known);
}

CpuModelOptions cpu_options(const TargetOptions& o) {
  CpuModelOptions c;
  c.expert_dtype = parse_choice(o.expert_dtype, "expert dtype",
                                {{"bf16", DType::BF16}, {"int8", DType::I8}, {"int4", DType::I4}});
  c.kv_dtype =
      parse_choice(o.kv_dtype, "KV cache dtype", {{"bf16", DType::BF16}, {"f16", DType::F16}, {"f32", DType::F32}});
  c.group_size = o.group_size;
  c.threads = o.threads;
  c.kv_cache_tokens = o.kv_cache_tokens;
  c.bf16_activations = o.bf16_activations;
  c.dram_expert_budget = static_cast<size_t>(o.dram_budget_gb * 1e9);
  c.eviction = o.eviction;
  c.reader = o.reader;
  c.record_routing = o.record_routing;
  c.populate = o.populate;
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
