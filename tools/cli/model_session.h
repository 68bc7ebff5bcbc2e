// The model a generating command (generate, run) runs, opened from its options: `reference`, `cpu`, or
// a pipeline target (ferry/pipeline_target.h) with its policy, trace and end-of-run metrics.
#pragma once
#include <cstdio>
#include <memory>
#include <optional>
#include <span>

#include <nlohmann/json.hpp>

#include "ferry/checkpoint.h"
#include "ferry/cpu_prediction.h"
#include "ferry/exec/trace.h"
#include "ferry/generator.h"
#include "ferry/model.h"
#include "ferry/pipeline_target.h"
#include "generation_options.h"

namespace ferry::cli {

struct ModelSession {
  std::unique_ptr<Model> model;
  PipelineTarget* pipeline = nullptr;  // the model, when the target is a pipeline target
  std::unique_ptr<Trace> trace;        // when --trace or --timeline was given
  int max_sequences = 16;              // sequences the generator decodes together
  std::optional<CpuRunPrediction> cpu_prediction;  // cpu target with --hw
};

// `requests` (tokenized) describe the workload the planner plans for and predicts. Throws ferry::Error
// for pipeline-only flags on another target.
ModelSession open_model(const Checkpoint& checkpoint, const GenerationOptions& options,
                        std::span<const GenerationRequest> requests);

// After the run, for pipeline targets: prints the metrics to `out` (when not null) (wall time, busy time and bytes per
// resource, overlap efficiency, expert cache hits and misses, tokens/s, the planner's prediction) and
// writes the trace and timeline files. Returns the metrics as JSON (null for other targets).
nlohmann::json finish_session(ModelSession& session, const GenerationOptions& options, const GenerationStats& stats,
                              std::FILE* out);

}  // namespace ferry::cli
