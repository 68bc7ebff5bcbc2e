#include "test_util.h"

#include "ferry/exec/pipeline_buffers.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace ferry::test {

std::vector<std::string> oracle_fixtures() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir() / "oracles", ec))
    if (std::filesystem::exists(entry.path() / "reference.safetensors")) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

static std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CommandResult run_ferry(const std::string& args) {
  char tmpl[] = "/tmp/ferry-cli-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (!dir) throw std::runtime_error("mkdtemp failed");
  const std::filesystem::path d(dir);
  const std::string cmd = std::string("'") + FERRY_BINARY + "' " + args + " >'" + (d / "out").string() + "' 2>'" +
                          (d / "err").string() + "' </dev/null";
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(d / "out");
  r.err = slurp(d / "err");
  std::filesystem::remove_all(d);
  return r;
}

planner::Policy pipeline_policy(const ModelConfig& c, int mu, int n_ub, int gpu, int ssd, bool host_attention,
                                planner::Precision precision) {
  planner::Policy p;
  p.batch_size = mu * n_ub;
  p.micro_batch = mu;
  p.prefill_chunk_tokens = 256;
  p.attention_device = host_attention ? planner::Device::Cpu : planner::Device::Gpu;
  p.kv_gpu_share = host_attention ? 0 : 1;  // the executor keeps the KV cache where attention runs
  for (int l = 0; l < c.n_layer; ++l) {
    const bool moe = c.layer_is_moe[l];
    p.gpu_experts_per_layer.push_back(moe ? gpu : 0);
    p.dram_experts_per_layer.push_back(moe ? c.n_expert - gpu - ssd : 0);
    p.ssd_experts_per_layer.push_back(moe ? ssd : 0);
  }
  p.gpu_expert_precision = p.dram_expert_precision = p.ssd_expert_precision = precision;
  // A small KV cache (the tests' prompts are short): 20 sequences of 64 tokens.
  (host_attention ? p.cache.dram_kv_cache : p.cache.gpu_kv_cache) = pipeline_kv_bytes(c, 20 * 64);
  return p;
}

}  // namespace ferry::test
