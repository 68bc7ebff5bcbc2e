// Helpers shared by the unit tests: fixture paths, reading reference tensors, running the CLI.
#pragma once
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "ferry/model_config.h"
#include "ferry/planner/policy.h"
#include "ferry/safetensors.h"

namespace ferry::test {

inline std::filesystem::path data_dir() { return FERRY_TEST_DATA; }
inline std::filesystem::path oracle_dir(const std::string& name) { return data_dir() / "oracles" / name; }

// Names of the oracle fixtures present under tests/data/oracles (each has reference.safetensors).
std::vector<std::string> oracle_fixtures();

template <typename T>
std::vector<T> read_tensor(const SafetensorsFile& f, const std::string& name) {
  const SafetensorsTensor& t = f.at(name);
  auto bytes = f.aligned(t);
  if (t.element_size != static_cast<int>(sizeof(T)))
    throw std::runtime_error("tensor " + name + " has element size " + std::to_string(t.element_size));
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};
// Runs the ferry binary with `args` (a shell-quoted string), capturing stdout and stderr.
CommandResult run_ferry(const std::string& args);

// A pipeline policy by hand: N = mu x n_ub, `gpu` experts of each MoE layer resident on the device, the
// last `ssd` on the SSD tier, the rest in DRAM, every tier at `precision`.
planner::Policy pipeline_policy(const ModelConfig& c, int mu, int n_ub, int gpu, int ssd, bool host_attention,
                                planner::Precision precision);

}  // namespace ferry::test
