// The planner's prediction of a cpu-target run, and the run's measurements beside it: the closed loop
// `ferry probe` -> `ferry run --target cpu --hw probe.json` that checks the planner's time model on the
// machine it ran on (docs/PLANNER.md, "Predicted vs measured").
#pragma once
#include <string>
#include <vector>

#include "ferry/cpu_model.h"
#include "ferry/generator.h"
#include "ferry/model_config.h"
#include "ferry/planner/cost_model.h"
#include "ferry/planner/hardware_profile.h"
#include "ferry/planner/policy.h"

namespace ferry {

// The policy that describes what the cpu target does: every part on the CPU, every routed expert in DRAM
// at the target's expert precision, N = `batch` sequences decoded together as one micro-batch, prompts
// prefilled `max_prefill_tokens` at a time.
planner::Policy cpu_target_policy(const ModelConfig& config, const CpuModelOptions& options, int batch,
                                  int max_prefill_tokens);

struct CpuRunPrediction {
  std::string hardware;  // the profile's name
  planner::Policy policy;
  planner::Workload workload;
  planner::Estimate estimate;
};
CpuRunPrediction predict_cpu_run(const ModelConfig& config, const std::string& model_name,
                                 const CpuModelOptions& options, const planner::HardwareProfile& hw,
                                 const planner::Workload& workload, int batch, int max_prefill_tokens);

// One row of the comparison: a rate or a time, predicted and measured.
struct PredictedMeasured {
  std::string what;   // "decode tokens/s", "decode: experts (ms per step)", ...
  double predicted = 0, measured = 0;
  double ratio() const { return predicted > 0 ? measured / predicted : 0; }
};
// Tokens/s (total, decode, prefill), then each part's time per decode step and per prefill batch of the
// policy's N prompts (the measured prefill time scaled to that many prompt tokens).
std::vector<PredictedMeasured> compare_cpu_run(const CpuRunPrediction& prediction, const GenerationStats& stats,
                                               const CpuForwardTimes& measured);

}  // namespace ferry
