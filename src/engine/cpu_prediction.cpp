#include "ferry/cpu_prediction.h"

#include <algorithm>

#include "ferry/precision.h"

namespace ferry {

planner::Policy cpu_target_policy(const ModelConfig& c, const CpuModelOptions& o, int batch, int max_prefill_tokens) {
  planner::Policy p;
  p.hardware = "cpu";
  p.batch_size = std::max(1, batch);
  p.micro_batch = p.batch_size;
  p.prefill_chunk_tokens = std::max(1, max_prefill_tokens);
  p.attention_device = p.ffn_device = p.dense_device = p.prefill_device = planner::Device::Cpu;
  for (int l = 0; l < c.n_layer; ++l) {
    p.gpu_experts_per_layer.push_back(0);
    p.dram_experts_per_layer.push_back(c.layer_is_moe[l] ? c.n_expert : 0);
    p.ssd_experts_per_layer.push_back(0);
  }
  // DType names of the packed expert types are the precision vocabulary (bf16, int8, int4).
  p.gpu_expert_precision = p.dram_expert_precision = p.ssd_expert_precision =
      parse_precision(dtype_name(o.expert_dtype), "the cpu target's expert dtype");
  p.group_size = o.group_size;
  // The planner prices the KV cache in bf16 or narrower; an f16 cache reads what a bf16 one does.
  p.kv_precision = planner::Precision::Bf16;
  p.overlap = false;  // one thread team runs the parts in turn
  return p;
}

CpuRunPrediction predict_cpu_run(const ModelConfig& c, const std::string& model_name, const CpuModelOptions& o,
                                 const planner::HardwareProfile& hw, const planner::Workload& workload, int batch,
                                 int max_prefill_tokens) {
  CpuRunPrediction r;
  r.hardware = hw.name;
  r.policy = cpu_target_policy(c, o, batch, max_prefill_tokens);
  r.workload = workload;
  planner::CostOptions co;
  co.cpu_bf16_activations = o.bf16_activations;
  planner::CostModel cost(planner::ModelShape::from_config(c, model_name), hw, workload, co);
  r.estimate = cost.evaluate(r.policy, /*itemize=*/false);
  return r;
}

std::vector<PredictedMeasured> compare_cpu_run(const CpuRunPrediction& p, const GenerationStats& s,
                                               const CpuForwardTimes& m) {
  std::vector<PredictedMeasured> rows;
  const planner::Estimate& e = p.estimate;
  rows.push_back({"tokens/s (generated, whole run)", e.tokens_per_s, s.tokens_per_second()});
  rows.push_back({"decode tokens/s", e.decode.tokens_per_s, s.decode_tokens_per_second()});
  rows.push_back({"prefill tokens/s", e.prefill.tokens_per_s,
                  s.prefill_seconds > 0 ? static_cast<double>(s.prompt_tokens) / s.prefill_seconds : 0});
  // Per decode step: the measured steps took in one token per sequence; per prefill batch of N prompts.
  const double steps = static_cast<double>(std::max<int64_t>(1, m.decode.forwards));
  const double n = static_cast<double>(std::min<int64_t>(p.policy.batch_size, p.workload.requests));
  const double batch_tokens = n * p.workload.avg_prompt_len;
  const double per_batch = m.prefill.tokens > 0 ? batch_tokens / static_cast<double>(m.prefill.tokens) : 0;
  struct Part {
    const char* name;
    double planner::PartTimes::*predicted;
    double CpuPartSeconds::*measured;
  };
  const Part parts[] = {{"dense", &planner::PartTimes::dense, &CpuPartSeconds::dense},
                        {"attention", &planner::PartTimes::attention, &CpuPartSeconds::attention},
                        {"experts", &planner::PartTimes::experts, &CpuPartSeconds::experts},
                        {"lm_head", &planner::PartTimes::head, &CpuPartSeconds::head}};
  for (const Part& part : parts)
    rows.push_back({std::string("decode step: ") + part.name + " (ms)", 1e3 * (e.decode.parts.*part.predicted),
                    1e3 * (m.decode.*part.measured) / steps});
  rows.push_back({"decode step: all (ms)", 1e3 * e.decode.seconds, 1e3 * m.decode.total / steps});
  for (const Part& part : parts)
    rows.push_back({std::string("prefill batch: ") + part.name + " (ms)", 1e3 * (e.prefill.parts.*part.predicted),
                    1e3 * (m.prefill.*part.measured) * per_batch});
  rows.push_back({"prefill batch: all (ms)", 1e3 * e.prefill.seconds, 1e3 * m.prefill.total * per_batch});
  // Not modelled (a warm-up cost, not a steady-state one): growing the buffers for the largest prefill.
  rows.push_back({"prefill batch: buffer growth (ms)", 0, 1e3 * m.prefill.setup * per_batch});
  return rows;
}

}  // namespace ferry
