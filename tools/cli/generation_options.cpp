#include "generation_options.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <thread>

#include "flag_checks.h"

namespace ferry::cli {
namespace {

// Upper bounds that keep every count far inside int (and its products inside int64) while allowing
// anything a real run could use.
constexpr int64_t kMaxBatch = 1 << 20;          // sequences decoded together
constexpr int64_t kMaxNewTokens = 1 << 24;      // tokens generated per prompt
constexpr int64_t kMaxKvTokens = int64_t{1} << 32;  // KV cache capacity over all sequences

int64_t max_threads() {
  return 4 * static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

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
  app.add_option("--expert-fetch", o.expert_fetch,
                 "pipeline targets: how streamed experts reach the device: prefetch (every streamed expert one "
                 "layer ahead) or demand (ahead only those the last step routed there, the other routed ones "
                 "after the router; unrouted experts are not moved). Default: the policy's (auto: prefetch)")
      ->check(one_of({"prefetch", "demand"}));
  app.add_option("--expert-residency", o.expert_residency,
                 "pipeline targets: which experts stay resident on the device: frequency (the ones the router "
                 "has been choosing, re-ranked as the run goes) or index (experts 0..g-1 of each layer). "
                 "Default: the policy's (auto: frequency)")
      ->check(one_of({"frequency", "index"}));
  app.add_option("--trace", o.trace_path, "pipeline targets: write a Chrome/Perfetto trace of every task here");
  app.add_option("--timeline", o.timeline_path, "pipeline targets: draw the same trace as an SVG timeline here");
  app.add_option("--expert-dtype", o.target.expert_dtype,
                 "cpu and pipeline targets: routed expert weights: bf16, int8, int4")
      ->check(one_of({"bf16", "int8", "int4"}))
      ->capture_default_str();
  app.add_option("--kv-dtype", o.target.kv_dtype, "cpu target: KV cache element type (bf16, f16, f32)")
      ->check(one_of({"bf16", "f16", "f32"}))
      ->capture_default_str();
  app.add_option("--group-size", o.target.group_size,
                 "cpu and pipeline targets: int8/int4 quantisation group (32..128, a multiple of 16)")
      ->check(count_in_range(32, 128))
      ->check([](const std::string& v) {
        return std::stoll(v) % 16 == 0 ? std::string() : std::string("must be a multiple of 16");
      })
      ->each([&o](const std::string&) { o.group_size_given = true; })
      ->capture_default_str();
  const int64_t threads_max = max_threads();
  app.add_option("--threads", o.target.threads,
                 "cpu target: threads, 0 (the default) for every core; at most 4 x this machine's cores (" +
                     std::to_string(threads_max) + ")")
      ->check(count_in_range(0, threads_max,
                             "0: every core; at most 4 x this machine's " + std::to_string(threads_max / 4) +
                                 " cores"))
      ->capture_default_str();
  app.add_option("--kv-tokens", o.target.kv_cache_tokens,
                 "cpu and pipeline targets: KV cache capacity in tokens over all sequences, 0 (the default) "
                 "for auto")
      ->check(count_in_range(0, kMaxKvTokens, "0: auto"))
      ->capture_default_str();
  app.add_option("--dram-budget", o.target.dram_budget_gb,
                 "cpu target, packed stores (ferry convert): GB of DRAM for routed experts; the others are read "
                 "from the store on SSD as the router asks (0, the default: every expert in DRAM)")
      ->check(non_negative_number("0: every expert in DRAM"))
      ->capture_default_str();
  app.add_option("--eviction", o.target.eviction, "cpu target with --dram-budget: the expert cache's eviction "
                 "policy: lru, lfu or score (frequency x reload cost, aged)")
      ->check(one_of({"lru", "lfu", "score"}))
      ->capture_default_str();
  app.add_option("--reader", o.target.reader, "cpu target with --dram-budget: how expert chunks are read: auto "
                 "(io_uring, else pread), io_uring (O_DIRECT), pread")
      ->check(one_of({"auto", "io_uring", "pread"}))
      ->capture_default_str();
  app.add_option("--substitute-below", o.target.substitute_below,
                 "cpu target with --dram-budget: substitution on a miss: a routed expert not in DRAM whose every "
                 "token gives it a gate weight below this runs from a resident --substitute-dtype copy instead of "
                 "being read (0, the default: off)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--substitute-dtype", o.target.substitute_dtype,
                 "cpu target with --substitute-below: the resident copies' precision (the store must hold it: "
                 "ferry convert --precision bf16,int4)")
      ->check(one_of({"int8", "int4"}))
      ->capture_default_str();
  app.add_flag("--populate", o.target.populate,
               "cpu target, packed stores: read the mapped weights at load (MAP_POPULATE) rather than on first use");
  app.add_option("--record-routing", o.target.record_routing,
                 "cpu target: write each forward's routing (which experts each MoE layer chose) to this JSONL "
                 "file, to compare expert-cache policies on (tools/bench/bench_expert_cache)");
  app.add_option("--hw", o.hw,
                 "cpu target: a hardware profile (ferry probe --out FILE) or preset; the run then reports the "
                 "planner's predicted tokens/s and time per part beside what it measures")
      ->check(non_empty_text("a profile file or preset name"));
  app.add_flag("--bf16-activations", o.target.bf16_activations,
               "cpu target: round activations to bf16 in bf16 matmuls (faster prefill, not token-exact)");
  app.add_option("-n,--max-tokens", o.max_tokens, "Tokens to generate per prompt (at least 1)")
      ->check(count_in_range(1, kMaxNewTokens))
      ->capture_default_str();
  app.add_option("--temperature,--temp", o.sampling.temperature, "Sampling temperature (0: greedy)")
      ->check(non_negative_number("0: greedy"))
      ->capture_default_str();
  app.add_option("--top-k", o.sampling.top_k, "Keep the k most likely tokens (0: off)")
      ->check(count_in_range(0, std::numeric_limits<int>::max(), "0: off"))
      ->capture_default_str();
  app.add_option("--top-p", o.sampling.top_p, "Nucleus sampling mass, in (0, 1] (1: off)")
      ->check(number_in_range({0, 1, true, false}, "1: off"))
      ->capture_default_str();
  app.add_option("--min-p", o.sampling.min_p, "Drop tokens below min-p x the best probability, in [0, 1) (0: off)")
      ->check(number_in_range({0, 1, false, true}, "0: off"))
      ->capture_default_str();
  app.add_option("--repeat-penalty", o.sampling.repetition_penalty, "Repetition penalty, > 0 (1: off)")
      ->check(positive_number("1: off"))
      ->capture_default_str();
  app.add_option("--seed", o.sampling.seed, "Random seed (same seed, same output)")->capture_default_str();
  app.add_option("--stop", o.stop, "Stop before this string (repeatable; not empty)")
      ->check(non_empty_text("an empty stop string would end every output before its first token"));
  app.add_flag("--ignore-eos", o.ignore_eos, "Keep generating after the end-of-sequence token");
  app.add_flag("--no-bos", o.no_bos, "Do not add the beginning-of-sequence token");
  app.add_option("--batch", o.batch,
                 "Sequences decoded together, at least 1 (default 16; on a pipeline target the policy's batch "
                 "N, and with --policy auto this pins N)")
      ->check(count_in_range(1, kMaxBatch, "leave --batch out for the default"));
}

static std::string find_bundled(const std::string& relative) {
  // Next to the source tree the binary was built from, or relative to the working directory.
  for (const std::filesystem::path& base : {std::filesystem::path(FERRY_SOURCE_DIR), std::filesystem::current_path()})
    if (std::filesystem::exists(base / relative)) return (base / relative).string();
  return relative;
}

std::string bundled_model_dir() { return find_bundled("tools/data/tiny_moe"); }
std::string bundled_prompts_file() { return find_bundled("tools/data/prompts.txt"); }

}  // namespace ferry::cli
