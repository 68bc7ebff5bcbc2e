// The pipelined executor on a link-bound `sim` device: overlap efficiency with overlap on, wall time
// with overlap off, and a timeline picture of two decode steps (docs/img/timeline-sim.svg by default).
//   bench_pipeline [model_dir] [--h2d GBps] [--steps N] [--svg PATH] [--trace PATH]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ferry/checkpoint.h"
#include "ferry/device.h"
#include "ferry/exec/pipelined_model.h"
#include "ferry/exec/trace.h"

using namespace ferry;

namespace {

struct Run {
  double wall = 0;
  TraceMetrics metrics;
};

Run run(const Checkpoint& ckpt, const std::string& target, bool overlap, int steps, Trace& trace) {
  const ModelConfig& c = ckpt.config();
  planner::Policy p;
  p.batch_size = 8;
  p.micro_batch = 2;  // 4 micro-batches: CPU attention two ahead, a layer's experts in 4 pages
  p.overlap = overlap;
  for (int l = 0; l < c.n_layer; ++l) {
    p.gpu_experts_per_layer.push_back(1);
    p.dram_experts_per_layer.push_back(c.n_expert - 1);
    p.ssd_experts_per_layer.push_back(0);
  }
  auto dev = create_device(target);
  PipelinedModel model(ckpt, *dev, p);
  std::vector<int> seqs;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<ForwardItem> items;
  for (int s = 0; s < 8; ++s) {
    seqs.push_back(model.add_sequence());
    prompts.push_back({1, 10 + s, 20 + 2 * s, 30, 40 + s});
  }
  for (int s = 0; s < 8; ++s) items.push_back({seqs[s], prompts[s], false});
  model.forward_view(items);
  std::vector<int32_t> next(8, 3);
  for (int s = 0; s < 8; ++s) items[s] = {seqs[s], std::span<const int32_t>(&next[s], 1), false};
  model.forward_view(items);  // warm-up
  dev->set_trace(&trace);
  trace.restart();
  const auto t0 = std::chrono::steady_clock::now();
  for (int step = 0; step < steps; ++step) {
    std::span<const float> logits = model.forward_view(items);
    for (int s = 0; s < 8; ++s) next[s] = static_cast<int32_t>((logits[size_t(s) * c.n_vocab] > 0 ? 5 : 9) + s);
  }
  Run r;
  r.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  dev->set_trace(nullptr);
  r.metrics = trace_metrics(trace);
  return r;
}

void print(const char* label, const Run& r, int tokens) {
  const TraceMetrics& m = r.metrics;
  std::printf("%-12s wall %7.1f ms  %6.0f tok/s  overlap efficiency %.2f (busiest: %s)\n", label, r.wall * 1e3,
              tokens / r.wall, m.overlap_efficiency, resource_label(m.busiest));
  for (int s = 0; s < kStreamCount; ++s)
    std::printf("    %-15s busy %7.1f ms  %8.2f MB\n", resource_label(static_cast<StreamKind>(s)),
                m.busy_seconds[s] * 1e3, m.bytes[s] / 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir = std::string(FERRY_SOURCE_DIR) + "/tests/data/oracles/mixtral_fused";
  std::string svg = std::string(FERRY_SOURCE_DIR) + "/docs/img/timeline-sim.svg", trace_path;
  double h2d = 0.1;
  int steps = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--h2d" && i + 1 < argc) h2d = std::stod(argv[++i]);
    else if (a == "--steps" && i + 1 < argc) steps = std::stoi(argv[++i]);
    else if (a == "--svg" && i + 1 < argc) svg = argv[++i];
    else if (a == "--trace" && i + 1 < argc) trace_path = argv[++i];
    else model_dir = a;
  }
  try {
    auto ckpt = Checkpoint::open(model_dir);
    const ModelConfig& c = ckpt->config();
    char target_buf[96];
    std::snprintf(target_buf, sizeof target_buf, "sim:l4,h2d=%g,d2h=%g", h2d, h2d);
    const std::string target = target_buf;
    std::printf("model %s (L=%d, E=%d, 1 pinned expert per layer), N=8, mu=2, device %s, %d decode steps\n",
                model_dir.c_str(), c.n_layer, c.n_expert, target.c_str(), steps);
    Trace on_trace, off_trace;
    const Run on = run(*ckpt, target, true, steps, on_trace);
    const Run off = run(*ckpt, target, false, steps, off_trace);
    print("overlap on", on, 8 * steps);
    print("overlap off", off, 8 * steps);
    std::printf("overlap off / on wall time: %.2fx\n", off.wall / on.wall);
    // a picture of the last two decode steps with overlap on
    Trace one;
    run(*ckpt, target, true, 2, one);
    write_timeline_svg(one, svg, "ferry decode on " + target + ", N=8, mu=2, overlap on");
    std::printf("timeline: %s\n", svg.c_str());
    if (!trace_path.empty()) write_chrome_trace(on_trace, trace_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pipeline: %s\n", e.what());
    return 1;
  }
  return 0;
}
