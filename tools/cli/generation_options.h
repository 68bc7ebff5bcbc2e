// Options shared by the commands that generate text (generate, run): model, target (and, for pipeline
// targets, policy, trace and timeline), sampling.
#pragma once
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ferry/generator.h"
#include "ferry/model_factory.h"
#include "ferry/sampler.h"

namespace ferry::cli {

struct GenerationOptions {
  std::string model_dir;
  TargetOptions target;
  SamplingParams sampling;
  int max_tokens = 128;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool no_bos = false;
  int batch = 0;  // sequences decoded together; 0: 16, or the policy's N on a pipeline target
  // pipeline targets (sim:<profile>, pipeline:<device>)
  std::string policy = "auto";
  std::string trace_path, timeline_path;
  std::string expert_fetch;       // --expert-fetch prefetch|demand; empty: the policy's
  std::string expert_residency;   // --expert-residency frequency|index; empty: the policy's
  bool group_size_given = false;  // --group-size on the command line (a policy file must then agree)
  // cpu target: a hardware profile (ferry probe) or preset to predict the run with (--hw)
  std::string hw;
};

// Adds --target and the cpu target's flags (--expert-dtype, --kv-dtype, --group-size, --threads,
// --kv-tokens, --bf16-activations), the pipeline targets' flags (--policy, --trace, --timeline),
// sampling flags, -n, --stop, --ignore-eos, --no-bos, --batch to `app`.
void add_generation_options(CLI::App& app, GenerationOptions& o);

// The model directory bundled with ferry, used when --model is not given.
std::string bundled_model_dir();
std::string bundled_prompts_file();

}  // namespace ferry::cli
