// Times `ferry plan`'s search for every shipped model on every hardware preset (the budget is 2 s each),
// and with --validate prints the table of docs/PLANNER.md: MoE-Lightning's measured throughputs beside
// ferry's predictions on the paper's hardware profiles.
//   plan_bench             timing grid (median of 3 runs per cell)
//   plan_bench --validate  paper table (markdown)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ferry/exec/pipeline_buffers.h"
#include "ferry/planner/model_catalog.h"
#include "ferry/planner/planner.h"

using namespace ferry::planner;

namespace {

// What `ferry plan` searches with: policies the pipelined executor runs priced as it allocates them.
PlannerOptions shipped_options(const ferry::ModelConfig& config) {
  PlannerOptions o;
  ferry::price_as_pipeline(o, config, nullptr, 0);
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int timing_grid() {
  const Workload w{10000, 77, 418, 128};
  std::printf("%-20s %-11s %9s %9s  %s\n", "model", "hardware", "search s", "tok/s", "policy");
  double worst = 0;
  for (const std::string& model : model_names()) {
    const ferry::ModelConfig config = resolve_model(model).config;
    ModelShape m = ModelShape::from_config(config, model);
    for (const std::string& preset : preset_names()) {
      HardwareProfile hw = hardware_preset(preset);
      std::vector<double> runs;
      AutoPlan ap;
      for (int r = 0; r < 3; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        ap = plan_with_fallback(m, hw, w, shipped_options(config), true);
        runs.push_back(seconds_since(t0));
      }
      std::sort(runs.begin(), runs.end());
      worst = std::max(worst, runs[1]);
      const Policy& p = ap.result.best.policy;
      std::printf("%-20s %-11s %9.3f %9.1f  N=%lld mu=%lld attn=%s ffn=%s%s\n", model.c_str(), preset.c_str(),
                  runs[1], ap.result.best.estimate.tokens_per_s, static_cast<long long>(p.batch_size),
                  static_cast<long long>(p.micro_batch), std::string(device_name(p.attention_device)).c_str(),
                  std::string(device_name(p.ffn_device)).c_str(),
                  ap.note.empty() ? "" : " (quantised experts)");
    }
  }
  std::printf("slowest search: %.3f s (median of 3)\n", worst);
  return 0;
}

struct PaperRow {
  const char* setting;
  const char* preset;
  Workload ferry_workload;  // as measured: no padding
  Workload ml_workload;     // the paper's policy space (padded rows pad to the max prompt)
  double paper_tokens_per_s;
};

std::string policy_cell(const Policy& p) {
  long gpu = 0;
  for (int g : p.gpu_experts_per_layer) gpu += g;
  char buf[200];
  std::snprintf(buf, sizeof buf, "N=%lld, μ=%lld (N/μ=%lld), attn %s, FFN %s, %ld experts on GPU",
                static_cast<long long>(p.batch_size), static_cast<long long>(p.micro_batch),
                static_cast<long long>(p.n_micro_batches()),
                std::string(device_name(p.attention_device)).c_str(),
                std::string(device_name(p.ffn_device)).c_str(), gpu);
  return buf;
}

int validation_table() {
  const ferry::ModelConfig config = resolve_model("mixtral-8x7b").config;
  ModelShape m = ModelShape::from_config(config, "mixtral-8x7b");
  // Request counts: the paper's L4 runs were one batch each (measured wall time x throughput / gen).
  const int64_t l4_requests[] = {4491, 3617, 2608, 1560};
  const int64_t gens[] = {32, 64, 128, 256};
  const double l4_paper[] = {203.0, 294.5, 217.5, 167.9};
  const double t4_paper[] = {63.0, 101.3, 97.7, 96.7};
  std::vector<PaperRow> rows;
  for (int i = 0; i < 4; ++i) {
    Workload w{l4_requests[i], 77, 418, gens[i]};
    rows.push_back({"MTBench L4", "l4-ml", w, w, l4_paper[i]});
  }
  for (int i = 0; i < 4; ++i) {
    Workload w{l4_requests[i], 77, 418, gens[i]};
    rows.push_back({"MTBench T4", "t4-ml", w, w, t4_paper[i]});
  }
  rows.push_back(
      {"HELM reasoning L4 (padded)", "l4-ml", {10000, 242, 256, 50}, {10000, 256, 256, 50}, 105.3});

  std::printf(
      "| setting | gen | paper tok/s | ferry policy | ferry tok/s | ratio | MoE-Lightning-space policy | "
      "predicted tok/s | ratio |\n|---|---|---|---|---|---|---|---|---|\n");
  for (const PaperRow& r : rows) {
    HardwareProfile hw = hardware_preset(r.preset);
    PlanResult ferry = Planner(m, hw, r.ferry_workload, shipped_options(config)).plan();
    PlannerOptions ml;
    ml.moe_lightning_space = true;
    PlanResult space = Planner(m, hw, r.ml_workload, ml).plan();
    double f = ferry.feasible ? ferry.best.estimate.tokens_per_s : 0;
    double s = space.feasible ? space.best.estimate.tokens_per_s : 0;
    std::printf(
        "| %s | %lld | %.1f | %s | %.1f | %.2f | %s | %.1f | %.2f |\n", r.setting,
        static_cast<long long>(r.ferry_workload.gen_len), r.paper_tokens_per_s,
        ferry.feasible ? policy_cell(ferry.best.policy).c_str() : "none fits", f, f / r.paper_tokens_per_s,
        space.feasible ? policy_cell(space.best.policy).c_str() : "none fits", s, s / r.paper_tokens_per_s);
  }

  // The paper's own published policies, costed as they are.
  struct Fixed {
    const char* what;
    const char* preset;
    Workload w;
    int64_t n, mu;
    double paper;
  };
  const Fixed fixed[] = {
      {"HELM reasoning L4, MoE-Lightning(p) policy", "l4-ml", {1500, 256, 256, 50}, 1500, 100, 105.29},
      {"MTBench T4 gen 128, MoE-Lightning(p) policy (Table 5)",
       "t4-ml",
       {504, 418, 418, 128},
       504,
       36,
       30.12},
  };
  std::printf(
      "\n| published policy | paper tok/s | predicted tok/s | ratio | decode bound by "
      "|\n|---|---|---|---|---|\n");
  for (const Fixed& fx : fixed) {
    PlannerOptions o;
    o.moe_lightning_space = true;
    o.batch_size = fx.n;
    o.micro_batch = fx.mu;
    HardwareProfile hw = hardware_preset(fx.preset);
    PlanResult r = Planner(m, hw, fx.w, o).plan();
    if (!r.feasible) {
      std::printf("| %s | %.2f | does not fit (DRAM short by %.1f GB) | | |\n", fx.what, fx.paper,
                  r.closest.estimate.memory.cpu_short() / 1e9);
      continue;
    }
    std::printf("| %s | %.2f | %.1f | %.2f | %s |\n", fx.what, fx.paper, r.best.estimate.tokens_per_s,
                r.best.estimate.tokens_per_s / fx.paper,
                std::string(resource_name(r.best.estimate.decode.binding)).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--validate") == 0) return validation_table();
  return timing_grid();
}
