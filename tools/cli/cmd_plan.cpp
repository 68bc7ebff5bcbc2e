// `ferry plan`: a dry run. Picks the policy for a model, a machine and a workload with the hierarchical
// roofline model and predicts the throughput; needs only the model's config.json, no weights, no GPU.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "command.h"
#include "ferry/checkpoint.h"
#include "ferry/error.h"
#include "ferry/exec/pipeline_buffers.h"
#include "ferry/planner/model_catalog.h"
#include "ferry/planner/plan_report.h"
#include "ferry/planner/planner.h"
#include "ferry/planner/roofline_svg.h"
#include "flag_checks.h"

namespace ferry::cli {
namespace {

// The checkpoint behind --model when it is a model directory with weights (or a packed store); null for a
// config file or a catalog name, or weights that do not open (the plan then works from the config alone).
std::unique_ptr<Checkpoint> open_checkpoint_if_any(const std::string& model) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir(model);
  if (!fs::is_directory(dir, ec)) return nullptr;
  const bool weights = fs::exists(dir / "model.safetensors", ec) || fs::exists(dir / "model.safetensors.index.json", ec) ||
                       fs::exists(dir / "ferry-store.json", ec);
  if (!weights) return nullptr;
  try {
    return Checkpoint::open(dir);
  } catch (const Error&) {
    return nullptr;
  }
}

using namespace ferry::planner;

// Bounds of the workload and hardware flags: wide enough for any real machine and workload, narrow
// enough that every figure derived from them (bytes, seconds, token counts) stays finite and in range.
constexpr int64_t kMaxTokens = 1 << 24;              // a prompt or a generation
constexpr int64_t kMaxRequests = 1'000'000'000'000;  // requests in the workload
constexpr int64_t kMaxBatch = 1 << 24;               // N and μ
constexpr int64_t kMaxCores = 1 << 16;
constexpr double kMaxGB = 1e7;     // capacities, GB (10 PB)
constexpr double kMaxGBps = 1e6;   // bandwidths, GB/s
constexpr double kMaxTflops = 1e6;

struct PlanArgs {
  std::string model, hw;
  double prompt_len = 0;
  int64_t max_prompt_len = 0;
  int64_t gen_len = 0;
  int64_t requests = 10000;
  std::string json_path;
  bool explain = false;
  std::string plot_path;
  bool list = false;
  std::string precisions;  // empty: bf16, widened only if nothing fits
  std::string kv_precision = "bf16";
  std::string attention, ffn, policy_space = "ferry";
  int64_t batch = 0, micro_batch = 0;
  int group_size = planner::kQuantGroup;
  bool no_overlap = false;
  HardwareOverrides overrides;
  // CLI11 needs plain storage for optional numbers; copied into `overrides` when given.
  int host_cores = 0;
  double host_dram_gb = 0, host_dram_gbps = 0, host_cpu_tflops = 0, ssd_gbps = -1, ssd_gb = 0, pcie_gbps = 0,
         gpu_mem_gb = 0;
};

std::vector<Precision> parse_precision_list(const std::string& list) {
  std::vector<Precision> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(parse_precision(item, "--precisions"));
  if (out.empty()) throw Error("--precisions needs at least one of bf16, int8, int4");
  return out;
}

std::string workload_line(const Workload& w) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%lld requests, prompt avg %.0f / max %lld tokens, generate %lld tokens",
                static_cast<long long>(w.requests), w.avg_prompt_len,
                static_cast<long long>(w.max_prompt_len), static_cast<long long>(w.gen_len));
  return buf;
}

std::string model_line(const ModelShape& m) {
  char buf[400];
  std::snprintf(
      buf, sizeof buf,
      "%s: %d layers (%d MoE), %d experts top-%d, D %d, F %d; routed experts %s, the rest %s (bf16)",
      m.name.c_str(), m.n_layer, m.n_moe_layer, m.n_expert, m.top_k, m.d_model, m.d_expert,
      format_bytes(m.expert_params_total() * 2).c_str(),
      format_bytes((m.dense_params_total() + m.embedding_params) * 2).c_str());
  return buf;
}

std::string hardware_lines(const HardwareProfile& hw) {
  char buf[1024];
  std::string out =
      "  hardware  " + hw.name + (hw.description.empty() ? "" : " (" + hw.description + ")") + "\n";
  if (hw.has_gpu()) {
    std::snprintf(buf, sizeof buf, "            GPU %s: %s, %.0f GB/s, %.1f TFLOPS bf16  [%s]\n",
                  hw.gpu->name.c_str(), format_bytes(hw.gpu->capacity_bytes).c_str(), hw.gpu->bandwidth_gbps,
                  hw.gpu->peak.bf16_tflops, hw.gpu->source.c_str());
    out += buf;
  } else {
    out += "            no GPU\n";
  }
  std::snprintf(buf, sizeof buf, "            CPU %s: %d cores, %s DRAM, %.0f GB/s, %.2f TFLOPS bf16  [%s]\n",
                hw.cpu.name.c_str(), hw.cpu.cores, format_bytes(hw.cpu.capacity_bytes).c_str(),
                hw.cpu.bandwidth_gbps, hw.cpu.peak.bf16_tflops, hw.cpu.source.c_str());
  out += buf;
  if (hw.has_gpu()) {
    std::snprintf(buf, sizeof buf, "            PCIe %.1f GB/s host->device, %.1f device->host  [%s]\n",
                  hw.links.h2d_gbps, hw.links.d2h_gbps, hw.links.source.c_str());
    out += buf;
  }
  if (hw.has_ssd()) {
    std::snprintf(buf, sizeof buf, "            SSD %s, %.1f GB/s read  [%s]\n",
                  format_bytes(hw.ssd->capacity_bytes).c_str(), hw.links.ssd_read_gbps,
                  hw.ssd->source.c_str());
    out += buf;
  } else {
    out += "            no SSD tier\n";
  }
  return out;
}

int run_plan(PlanArgs& a, CLI::App& app) {
  if (a.list) {
    std::printf("models (%s):\n", model_configs_dir().string().c_str());
    for (const auto& n : model_names()) std::printf("  %s\n", n.c_str());
    std::printf("hardware presets:\n");
    for (const auto& n : preset_names())
      std::printf("  %-12s %s\n", n.c_str(), hardware_preset(n).description.c_str());
    return 0;
  }
  if (a.model.empty() || a.hw.empty()) throw Error("ferry plan needs --model and --hw (see --list)");
  if (!app.count("--prompt-len") || !app.count("--gen-len"))
    throw Error("ferry plan needs --prompt-len and --gen-len (both > 0)");
  // The flags' own ranges are checked as they are parsed (setup below); what is left are the pairs.
  if (a.max_prompt_len > 0 && static_cast<double>(a.max_prompt_len) < a.prompt_len)
    throw InvalidValue("--max-prompt-len", "got " + std::to_string(a.max_prompt_len) +
                                               ", shorter than the average --prompt-len " +
                                               number_text(a.prompt_len) +
                                               "; expected the longest prompt, at least the average");
  if (a.batch > 0 && a.micro_batch > a.batch)
    throw InvalidValue("--micro-batch", "got " + std::to_string(a.micro_batch) + ", larger than --batch " +
                                            std::to_string(a.batch) + "; expected at most --batch");

  ResolvedModel rm = resolve_model(a.model);
  ModelShape shape = ModelShape::from_config(rm.config, rm.name);
  HardwareProfile hw = resolve_hardware(a.hw);
  if (app.count("--host-cores")) a.overrides.host_cores = a.host_cores;
  if (app.count("--host-dram-gb")) a.overrides.host_dram_gb = a.host_dram_gb;
  if (app.count("--host-dram-gbps")) a.overrides.host_dram_gbps = a.host_dram_gbps;
  if (app.count("--host-cpu-tflops")) a.overrides.host_cpu_tflops = a.host_cpu_tflops;
  if (app.count("--ssd-gbps")) a.overrides.ssd_gbps = a.ssd_gbps;
  if (app.count("--ssd-gb")) a.overrides.ssd_gb = a.ssd_gb;
  if (app.count("--pcie-gbps")) a.overrides.pcie_gbps = a.pcie_gbps;
  if (app.count("--gpu-mem-gb")) a.overrides.gpu_memory_gb = a.gpu_mem_gb;
  apply_overrides(hw, a.overrides);

  Workload w;
  w.requests = a.requests;
  w.avg_prompt_len = a.prompt_len;
  w.max_prompt_len = a.max_prompt_len > 0 ? a.max_prompt_len : static_cast<int64_t>(std::ceil(a.prompt_len));
  w.gen_len = a.gen_len;

  PlannerOptions o;
  bool widen = a.precisions.empty();
  if (!widen) o.expert_precisions = parse_precision_list(a.precisions);
  o.kv_precision = parse_precision(a.kv_precision, "--kv-precision");
  o.group_size = a.group_size;
  o.overlap = !a.no_overlap;
  if (a.policy_space == "moe-lightning")
    o.moe_lightning_space = true;
  else if (a.policy_space != "ferry")
    throw Error("--policy-space is '" + a.policy_space + "'; expected ferry or moe-lightning");
  if (!a.attention.empty()) o.attention_device = parse_device(a.attention, "--attention");
  if (!a.ffn.empty()) o.ffn_device = parse_device(a.ffn, "--ffn");
  if (a.batch > 0) o.batch_size = a.batch;
  if (a.micro_batch > 0) o.micro_batch = a.micro_batch;

  // Policies the pipelined executor runs are priced as it allocates them (the checkpoint's own tensors when
  // --model is a model directory), so a policy written here fits the device it was planned for.
  std::unique_ptr<Checkpoint> ckpt = open_checkpoint_if_any(a.model);
  if (!o.moe_lightning_space) price_as_pipeline(o, rm.config, ckpt.get(), 0);
  AutoPlan ap = plan_with_fallback(shape, hw, w, o, widen);
  CostModel cost(shape, hw, w, CostOptions{o.moe_lightning_space, o.buffers, o.kv_tokens});
  ReportContext ctx{shape, hw, w, cost, ap.note};
  const bool json_stdout = app.count("--json") && a.json_path.empty();

  if (!ap.result.feasible) {
    std::string report = "ferry plan\n  model     " + model_line(shape) + "\n" + hardware_lines(hw) +
                         "  workload  " + workload_line(w) + "\n\n" + infeasible_report(ctx, ap.result);
    std::fputs(report.c_str(), json_stdout ? stderr : stdout);
    std::fflush(stdout);
    std::fprintf(stderr, "ferry: error: no policy fits %s on %s (what is short is listed above)\n",
                 shape.name.c_str(), hw.name.c_str());
    return 2;
  }

  const Policy& best = ap.result.best.policy;
  if (json_stdout) {
    std::cout << best.to_json().dump(2) << "\n";
  } else {
    std::string report = "ferry plan\n  model     " + model_line(shape) + "\n" + hardware_lines(hw) +
                         "  workload  " + workload_line(w) + "\n\n" + plan_report(ctx, ap.result, a.explain);
    std::fputs(report.c_str(), stdout);
  }
  if (!a.json_path.empty()) {
    best.save(a.json_path);
    std::fprintf(json_stdout ? stderr : stdout, "policy written to %s\n", a.json_path.c_str());
  }
  if (!a.plot_path.empty()) {
    std::ofstream out(a.plot_path);
    if (!out) throw Error("cannot write plot '" + a.plot_path + "'");
    out << roofline_svg(shape, hw, best);
    if (!out) throw Error("error writing plot '" + a.plot_path + "'");
    std::fprintf(json_stdout ? stderr : stdout, "roofline written to %s\n", a.plot_path.c_str());
  }
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<PlanArgs>();
  app.add_option("--model", a->model, "model: short name (see --list), config.json or checkpoint dir");
  app.add_option("--hw", a->hw, "hardware: preset name (see --list) or profile JSON (ferry probe)");
  app.add_option("--prompt-len", a->prompt_len, "average prompt length, tokens (>= 1)")
      ->check(number_in_range({1, static_cast<double>(kMaxTokens)}, "tokens"));
  app.add_option("--max-prompt-len", a->max_prompt_len, "longest prompt, tokens (default: --prompt-len)")
      ->check(count_in_range(1, kMaxTokens, "tokens; leave it out to use --prompt-len"));
  app.add_option("--gen-len", a->gen_len, "tokens generated per request (>= 1)")
      ->check(count_in_range(1, kMaxTokens, "tokens"));
  app.add_option("--requests", a->requests, "requests in the workload")
      ->check(count_in_range(1, kMaxRequests))
      ->capture_default_str();
  app.add_option("--json", a->json_path,
                 "write the policy JSON to FILE (no FILE: print it instead of the report)")
      ->expected(0, 1);
  app.add_flag("--explain", a->explain, "show the best policy of every other family and why it loses");
  app.add_option("--plot", a->plot_path, "draw the roofline picture of the plan as an SVG");
  app.add_flag("--list", a->list, "list the model specs and hardware presets");
  app.add_option("--precisions", a->precisions,
                 "expert precisions the search may use, e.g. bf16,int8,int4 (default: bf16, widened only "
                 "when nothing fits)");
  app.add_option("--group-size", a->group_size,
                 "int8/int4 experts: the quantisation group the policies are priced at and carry (32..128, a "
                 "multiple of 16)")
      ->check(count_in_range(32, 128))
      ->check([](const std::string& v) {
        return std::stoll(v) % 16 == 0 ? std::string() : std::string("must be a multiple of 16");
      })
      ->capture_default_str();
  app.add_option("--kv-precision", a->kv_precision, "KV cache precision: bf16, int8, int4")
      ->check(one_of({"bf16", "int8", "int4"}))
      ->capture_default_str();
  app.add_option("--attention", a->attention, "pin decode attention to cpu or gpu")->check(one_of({"cpu", "gpu"}));
  app.add_option("--ffn", a->ffn, "pin the expert FFN to gpu or cpu")->check(one_of({"gpu", "cpu"}));
  app.add_option("--batch", a->batch, "pin the batch size N (>= 1)")
      ->check(count_in_range(1, kMaxBatch, "leave it out to let the planner choose"));
  app.add_option("--micro-batch", a->micro_batch, "pin the micro-batch size (>= 1, at most --batch)")
      ->check(count_in_range(1, kMaxBatch, "leave it out to let the planner choose"));
  app.add_flag("--no-overlap", a->no_overlap, "model serial execution (no CPU/GPU/transfer overlap)");
  app.add_option("--policy-space", a->policy_space,
                 "ferry, or moe-lightning to search only MoE-Lightning's policies")
      ->check(one_of({"ferry", "moe-lightning"}))
      ->capture_default_str();
  app.add_option("--host-cores", a->host_cores, "host CPU cores")->check(count_in_range(1, kMaxCores));
  app.add_option("--host-dram-gb", a->host_dram_gb, "host DRAM capacity, GB")
      ->check(positive_number("GB", kMaxGB));
  app.add_option("--host-dram-gbps", a->host_dram_gbps, "host DRAM read bandwidth, GB/s")
      ->check(positive_number("GB/s", kMaxGBps));
  app.add_option("--host-cpu-tflops", a->host_cpu_tflops, "host CPU peak, bf16 TFLOPS")
      ->check(positive_number("TFLOPS", kMaxTflops));
  app.add_option("--ssd-gbps", a->ssd_gbps, "SSD read bandwidth, GB/s (0: no SSD tier)")
      ->check(non_negative_number("GB/s; 0: no SSD tier", kMaxGBps));
  app.add_option("--ssd-gb", a->ssd_gb, "SSD capacity for the expert store, GB")
      ->check(positive_number("GB", kMaxGB));
  app.add_option("--pcie-gbps", a->pcie_gbps, "PCIe bandwidth per direction, GB/s")
      ->check(positive_number("GB/s", kMaxGBps));
  app.add_option("--gpu-mem-gb", a->gpu_mem_gb, "GPU memory, GB")->check(positive_number("GB", kMaxGB));
  CLI::App* app_ptr = &app;
  return [a, app_ptr] { return run_plan(*a, *app_ptr); };
}

RegisterCommand reg{
    {"plan", "pick the execution policy and predict throughput (dry run, no weights)", setup, 40}};

}  // namespace
}  // namespace ferry::cli
