#include "generation_options.h"

#include <filesystem>

namespace ferry::cli {

void add_generation_options(CLI::App& app, GenerationOptions& o) {
  app.add_option("--target", o.target.target,
                 "Where the model runs: reference (fp32, plain loops); cpu (the fast CPU engine); "
                 "sim:<profile>[,scale=X][,h2d=GBps][,d2h=GBps] (the pipelined executor on an emulated GPU, "
                 "e.g. sim:l4); cuda[:N][,capacity=SIZE] (the pipelined executor on an NVIDIA GPU, its memory "
                 "capped at SIZE); pipeline:<device> (the pipelined executor on a device: pipeline:cpu, "
                 "pipeline:sim:l4, pipeline:cuda); auto (cuda when a GPU is visible, else cpu)")
      ->capture_default_str();
  app.add_option("--policy", o.policy,
                 "pipeline targets: a policy file (ferry plan --json) or auto (the planner picks it for the "
                 "model, the prompts and the device's hardware profile)")
      ->capture_default_str();
  app.add_option("--trace", o.trace_path, "pipeline targets: write a Chrome/Perfetto trace of every task here");
  app.add_option("--timeline", o.timeline_path, "pipeline targets: draw the same trace as an SVG timeline here");
  app.add_option("--expert-dtype", o.target.expert_dtype,
                 "cpu and pipeline targets: routed expert weights: bf16, int8, int4")
      ->check(CLI::IsMember({"bf16", "int8", "int4"}))
      ->capture_default_str();
  app.add_option("--kv-dtype", o.target.kv_dtype, "cpu target: KV cache element type (bf16, f16, f32)")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}))
      ->capture_default_str();
  app.add_option("--group-size", o.target.group_size,
                 "cpu and pipeline targets: int8/int4 quantisation group (32..128)")
      ->check(CLI::Range(32, 128))
      ->capture_default_str();
  app.add_option("--threads", o.target.threads, "cpu target: threads (0: every core)")->capture_default_str();
  app.add_option("--kv-tokens", o.target.kv_cache_tokens,
                 "cpu and pipeline targets: KV cache capacity in tokens (0: auto)")
      ->capture_default_str();
  app.add_flag("--bf16-activations", o.target.bf16_activations,
               "cpu target: round activations to bf16 in bf16 matmuls (faster prefill, not token-exact)");
  app.add_option("-n,--max-tokens", o.max_tokens, "Tokens to generate per prompt")->capture_default_str();
  app.add_option("--temperature,--temp", o.sampling.temperature, "Sampling temperature (0: greedy)")
      ->capture_default_str();
  app.add_option("--top-k", o.sampling.top_k, "Keep the k most likely tokens (0: off)")->capture_default_str();
  app.add_option("--top-p", o.sampling.top_p, "Nucleus sampling mass (1: off)")->capture_default_str();
  app.add_option("--min-p", o.sampling.min_p, "Drop tokens below min-p x the best probability (0: off)")
      ->capture_default_str();
  app.add_option("--repeat-penalty", o.sampling.repetition_penalty, "Repetition penalty (1: off)")
      ->capture_default_str();
  app.add_option("--seed", o.sampling.seed, "Random seed (same seed, same output)")->capture_default_str();
  app.add_option("--stop", o.stop, "Stop before this string (repeatable)");
  app.add_flag("--ignore-eos", o.ignore_eos, "Keep generating after the end-of-sequence token");
  app.add_flag("--no-bos", o.no_bos, "Do not add the beginning-of-sequence token");
  app.add_option("--batch", o.batch,
                 "Sequences decoded together (default 16; on a pipeline target the policy's batch N, and "
                 "with --policy auto this pins N)");
}

static std::string find_bundled(const std::string& relative) {
  // Next to the source tree the binary was built from, or relative to the working directory.
  for (const std::filesystem::path base : {std::filesystem::path(FERRY_SOURCE_DIR), std::filesystem::current_path()})
    if (std::filesystem::exists(base / relative)) return (base / relative).string();
  return relative;
}

std::string bundled_model_dir() { return find_bundled("tests/data/oracles/mixtral_spm"); }
std::string bundled_prompts_file() { return find_bundled("tools/data/prompts.txt"); }

}  // namespace ferry::cli
