// libFuzzer target: any byte string given as a policy file (what `ferry plan --json` writes and
// `--policy FILE` reads) either loads into a Policy whose fields keep their documented ranges, or is a
// ferry::Error -- never a crash, a hang, undefined behaviour or another exception. A policy that loads
// survives a round trip through to_json/from_json unchanged, and checking it against a model either
// passes or is a ferry::Error.
//
// Policy::load reads a path, so each input is written to a file in a private temporary directory
// (on /dev/shm when it exists): the target exercises the same code as `--policy FILE`, JSON parsing included.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/model_config.h"
#include "ferry/planner/policy.h"
#include "scratch_file.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// A small model to check loaded policies against: 3 layers, 6 experts, the middle layer dense.
const ferry::ModelConfig& model() {
  static const ferry::ModelConfig m = [] {
    ferry::ModelConfig c;
    c.source = "fuzz/config.json";
    c.n_layer = 3;
    c.n_expert = 6;
    c.n_expert_used = 2;
    c.layer_is_moe = {true, false, true};
    return c;
  }();
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ferry::planner::Policy;
  const std::filesystem::path path = ferry::fuzz::scratch().write("policy.json", data, size);
  Policy p;
  try {
    p = Policy::load(path);
  } catch (const ferry::Error&) {
    return 0;
  }
  check(p.batch_size >= 1 && p.micro_batch >= 1 && p.micro_batch <= p.batch_size);
  check(p.prefill_chunk_tokens >= 1);
  check(p.n_micro_batches() >= 1 && p.n_micro_batches() <= p.batch_size);
  const size_t n_layer = p.gpu_experts_per_layer.size();
  check(p.dram_experts_per_layer.size() == n_layer && p.ssd_experts_per_layer.size() == n_layer);
  for (size_t l = 0; l < n_layer; ++l)
    check(p.gpu_experts_per_layer[l] >= 0 && p.dram_experts_per_layer[l] >= 0 && p.ssd_experts_per_layer[l] >= 0);
  check(std::isfinite(p.kv_gpu_share) && p.kv_gpu_share >= 0 && p.kv_gpu_share <= 1);
  check(p.prefetch_depth >= 0);
  const ferry::planner::CacheSizes& c = p.cache;
  for (int64_t bytes : {c.gpu_dense_weights, c.gpu_expert_cache, c.gpu_stream_buffer, c.gpu_kv_cache,
                        c.gpu_activations, c.dram_expert_cache, c.dram_kv_cache, c.dram_pinned_staging,
                        c.dram_other, c.ssd_expert_store})
    check(bytes >= 0);
  // What `ferry plan --json` writes, `--policy` reads back to the same policy.
  const nlohmann::json out = p.to_json();
  Policy again;
  try {
    again = Policy::from_json(out, "fuzz/roundtrip.json");
  } catch (const ferry::Error&) {
    std::abort();
  }
  check(again.to_json() == out);
  try {
    p.validate_for(model(), "fuzz/policy.json");
  } catch (const ferry::Error&) {
  }
  return 0;
}
