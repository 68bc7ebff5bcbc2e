#include "ferry/planner/plan_report.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>

namespace ferry::planner {
namespace {

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  return buf;
}

double ms(double s) {
  return s * 1e3;
}

// "1 on GPU, 7 in DRAM" with ranges when layers differ.
std::string expert_split(const Policy& p, const ModelShape& m) {
  auto range = [&](const std::vector<int>& v) {
    int lo = 1 << 30, hi = -1;
    long total = 0;
    for (int l = 0; l < m.n_layer; ++l)
      if (m.layer_is_moe[l]) {
        lo = std::min(lo, v[l]);
        hi = std::max(hi, v[l]);
        total += v[l];
      }
    if (hi < 0) return std::string("0");
    return lo == hi ? fmt("%d", lo) : fmt("%d-%d (%ld in all)", lo, hi, total);
  };
  return range(p.gpu_experts_per_layer) + " on GPU (" + std::string(precision_name(p.gpu_expert_precision)) +
         "), " + range(p.dram_experts_per_layer) + " in DRAM (" +
         std::string(precision_name(p.dram_expert_precision)) + "), " + range(p.ssd_experts_per_layer) +
         " on SSD (" + std::string(precision_name(p.ssd_expert_precision)) + ")";
}

std::string rate(double tokens_per_s) {
  return tokens_per_s >= 100 ? fmt("%.0f", tokens_per_s) : fmt("%.1f", tokens_per_s);
}

// Why `alt` loses against `best`, from the resources that bind it.
std::string why_loses(const Candidate& alt, const Candidate& best) {
  const Estimate& a = alt.estimate;
  std::string s = fmt("%.0f%% of the chosen policy's throughput; decode bound by %s",
                      100.0 * a.tokens_per_s / best.estimate.tokens_per_s,
                      std::string(resource_name(a.decode.binding)).c_str());
  const ResourceTimes& r = a.decode.per_layer;
  switch (a.decode.binding) {
    case Resource::H2d:
      s += fmt(" (%.1f ms/layer moving %s)", ms(r.h2d),
               alt.policy.attention_device == Device::Gpu ? "experts and the DRAM share of the KV cache"
                                                          : "streamed experts");
      break;
    case Resource::CpuCompute:
    case Resource::CpuMemory:
      s += fmt(" (%.1f ms/layer of CPU work)", ms(r.cpu_busy));
      break;
    case Resource::GpuCompute:
    case Resource::GpuMemory:
      s += fmt(" (%.1f ms/layer of GPU kernels)", ms(r.gpu_busy));
      break;
    default:
      break;
  }
  return s;
}

std::string memory_table(const MemoryPlan& mem, const HardwareProfile& hw) {
  std::string out;
  for (const char* level : {"gpu", "dram", "ssd"}) {
    double used = 0, usable = 0, capacity = 0;
    if (std::string(level) == "gpu") {
      if (!hw.has_gpu()) continue;
      used = mem.gpu_bytes, usable = mem.gpu_usable, capacity = hw.gpu->capacity_bytes;
    } else if (std::string(level) == "dram") {
      used = mem.cpu_bytes, usable = mem.cpu_usable, capacity = hw.cpu.capacity_bytes;
    } else {
      if (mem.ssd_bytes <= 0) continue;
      used = mem.ssd_bytes, usable = mem.ssd_usable, capacity = hw.has_ssd() ? hw.ssd->capacity_bytes : 0;
    }
    for (const MemoryItem& it : mem.items)
      if (it.level == level)
        out += fmt("  %-4s  %-58s %16.0f  %10s\n", level, it.what.c_str(), it.bytes,
                   format_bytes(it.bytes).c_str());
    double short_bytes = used > usable ? used - usable : 0;
    out += fmt("  %-4s  %-58s %16.0f  %10s   of %s usable (%s x %.2f)%s\n", level, "total", used,
               format_bytes(used).c_str(), format_bytes(usable).c_str(), format_bytes(capacity).c_str(),
               capacity > 0 ? usable / capacity : 0.0,
               short_bytes > 0 ? ("  SHORT by " + format_bytes(short_bytes)).c_str() : "");
  }
  return out;
}

std::string roofline_section(const ReportContext& ctx, const Candidate& best) {
  const ModelShape& m = ctx.shape;
  const Policy& p = best.policy;
  const HrmRoofs& r = ctx.cost.roofs();
  std::string out = "Hierarchical roofline\n";
  double i_att = decode_attention_intensity(m, p.kv_precision);
  double p1 = turning_point_p1(r);
  out += fmt("  decode attention: %.2f FLOP/B (%s KV); CPU roof there %.0f GFLOP/s", i_att,
             std::string(precision_name(p.kv_precision)).c_str(), r.cpu.attainable(i_att) / 1e9);
  if (r.has_gpu) {
    out += fmt(", via PCIe %.0f GFLOP/s\n", r.h2d * i_att / 1e9);
    out += fmt("  P1 (compute where the data is below this) = %.1f FLOP/B -> attention %s P1: %s\n", p1,
               i_att < p1 ? "<" : ">=",
               i_att < p1 ? "keep the KV cache in DRAM, attend on the CPU"
                          : "moving the KV cache to the GPU can pay");
    double mu = static_cast<double>(std::min(p.micro_batch, p.batch_size));
    double i_gpu = moe_ffn(m, mu, p.dram_expert_precision, p.group_size).intensity();
    double i_link =
        moe_ffn_link_intensity(m, static_cast<double>(p.batch_size), p.dram_expert_precision, p.group_size);
    double p2 = turning_point_p2(r, i_gpu);
    out +=
        fmt("  MoE FFN: %.0f FLOP/B against GPU memory at μ=%lld (kernel %.1f TFLOP/s), %.0f FLOP/B against\n"
            "           the link at N=%lld (%.1f of %d experts touched per layer)\n",
            i_gpu, static_cast<long long>(mu), r.gpu.attainable(i_gpu) / 1e12, i_link,
            static_cast<long long>(p.batch_size),
            expected_distinct_experts(m.n_expert, m.top_k, static_cast<double>(p.batch_size)), m.n_expert);
    out +=
        fmt("  P2 (link-bound below, kernel-bound above) = %.0f FLOP/B; balance point at this μ: N = %.0f\n",
            p2, balance_batch(m, r, mu, p.dram_expert_precision));
  } else {
    out += "\n";
  }
  return out;
}

}  // namespace

std::string format_bytes(double bytes) {
  const double gib = 1024.0 * 1024.0 * 1024.0;
  if (bytes >= gib) return fmt("%.2f GiB", bytes / gib);
  if (bytes >= 1024.0 * 1024.0) return fmt("%.1f MiB", bytes / (1024.0 * 1024.0));
  return fmt("%.0f KiB", bytes / 1024.0);
}

std::string describe_policy(const Policy& p, const ModelShape& m) {
  std::string out;
  out += fmt(
      "  batch N = %lld sequences, micro-batch μ = %lld tokens (%lld per layer), prefill chunk %lld tokens\n",
      static_cast<long long>(p.batch_size), static_cast<long long>(p.micro_batch),
      static_cast<long long>(p.n_micro_batches()), static_cast<long long>(p.prefill_chunk_tokens));
  out += fmt("  attention %s, expert FFN %s, dense layers %s, prefill %s; overlap %s, prefetch depth %d, "
             "experts fetched %s\n",
             std::string(device_name(p.attention_device)).c_str(),
             std::string(device_name(p.ffn_device)).c_str(), std::string(device_name(p.dense_device)).c_str(),
             std::string(device_name(p.prefill_device)).c_str(), p.overlap ? "on" : "off", p.prefetch_depth,
             p.expert_fetch == ExpertFetch::Demand ? "on demand (what the router asks for)" : "ahead (every streamed one)");
  out += "  experts per layer: " + expert_split(p, m) + "\n";
  out += fmt("  KV cache %s, %.0f%% on the GPU\n", std::string(precision_name(p.kv_precision)).c_str(),
             100 * p.kv_gpu_share);
  return out;
}

std::string summary_line(const Candidate& c) {
  const Policy& p = c.policy;
  long total_gpu = 0;
  for (int g : p.gpu_experts_per_layer) total_gpu += g;
  return fmt("N=%lld μ=%lld attn=%s ffn=%s gpu-experts=%ld -> %s tok/s (decode %s, prefill %s)",
             static_cast<long long>(p.batch_size), static_cast<long long>(p.micro_batch),
             std::string(device_name(p.attention_device)).c_str(),
             std::string(device_name(p.ffn_device)).c_str(), total_gpu, rate(c.estimate.tokens_per_s).c_str(),
             rate(c.estimate.decode.tokens_per_s).c_str(), rate(c.estimate.prefill.tokens_per_s).c_str());
}

std::string plan_report(const ReportContext& ctx, const PlanResult& result, bool explain) {
  const Candidate& best = result.best;
  const Estimate& e = best.estimate;
  const Workload& w = ctx.workload;
  std::string out;
  if (!ctx.precision_note.empty()) out += "Note: " + ctx.precision_note + "\n\n";
  out += "Policy\n" + describe_policy(best.policy, ctx.shape) + "\n";

  out += "Predicted throughput\n";
  out += fmt("  total    %10s tokens/s   (%lld requests x %lld tokens in %.0f s, %lld batches)\n",
             rate(e.tokens_per_s).c_str(), static_cast<long long>(w.requests),
             static_cast<long long>(w.gen_len), e.workload_seconds, static_cast<long long>(e.n_batches));
  out += fmt("  decode   %10s tokens/s   (%.3f s per step over all layers)\n",
             rate(e.decode.tokens_per_s).c_str(), e.decode.seconds);
  out += fmt("  prefill  %10s tokens/s   (%.2f s per batch of %.0f prompt tokens)\n",
             rate(e.prefill.tokens_per_s).c_str(), e.prefill.seconds,
             static_cast<double>(std::min(best.policy.batch_size, w.requests)) * w.avg_prompt_len);
  out += "\n";

  out += "Time per layer on each resource (ms)        decode step    prefill batch\n";
  const ResourceTimes& d = e.decode.per_layer;
  const ResourceTimes& p = e.prefill.per_layer;
  auto row = [&](const char* name, double a, double b) {
    if (a <= 0 && b <= 0) return;
    out += fmt("  %-40s %12.2f %16.2f\n", name, ms(a), ms(b));
  };
  row("PCIe host->device", d.h2d, p.h2d);
  row("PCIe device->host", d.d2h, p.d2h);
  row("GPU busy", d.gpu_busy, p.gpu_busy);
  row("  GPU compute roof", d.gpu_compute, p.gpu_compute);
  row("  GPU memory roof", d.gpu_memory, p.gpu_memory);
  row("CPU busy", d.cpu_busy, p.cpu_busy);
  row("  CPU compute roof", d.cpu_compute, p.cpu_compute);
  row("  CPU memory roof", d.cpu_memory, p.cpu_memory);
  row("DRAM traffic (CPU kernels + DMA)", d.dram, p.dram);
  row("SSD reads", d.ssd, p.ssd);
  row("pipeline latency (one micro-batch)", d.chain, p.chain);
  out +=
      fmt("  binding roof: decode: %s; prefill: %s\n\n", std::string(resource_name(e.decode.binding)).c_str(),
          std::string(resource_name(e.prefill.binding)).c_str());

  out += "Memory plan (bytes per residence)\n";
  out += memory_table(e.memory, ctx.hw);
  if (!e.memory.prefill_hidden_on_gpu && ctx.hw.has_gpu() && best.policy.prefill_device == Device::Gpu)
    out +=
        "  (prefill activations of the batch do not fit beside the experts: they spill to DRAM between "
        "layers)\n";
  out += "\n" + roofline_section(ctx, best);

  if (explain) {
    out += "\nAlternatives (best policy of each other family)\n";
    if (result.alternatives.empty()) out += "  none: no other family fits\n";
    for (const Candidate& a : result.alternatives) {
      out += "  " + a.family + ": " + summary_line(a) + "\n";
      out += "      loses: " + why_loses(a, best) + "\n";
    }
    out += "\nSame family and μ, other batch sizes\n";
    for (const Candidate& n : result.neighbours) {
      out += "  " + summary_line(n) + "\n";
      if (!n.estimate.memory.fits()) {
        const MemoryPlan& m = n.estimate.memory;
        out += "      does not fit:";
        if (m.gpu_short() > 0) out += " GPU short by " + format_bytes(m.gpu_short());
        if (m.cpu_short() > 0) out += " DRAM short by " + format_bytes(m.cpu_short());
        if (m.ssd_short() > 0) out += " SSD short by " + format_bytes(m.ssd_short());
        out += "\n";
      } else {
        out += "      " + why_loses(n, best) + "\n";
      }
    }
    out += fmt("\nSearch: %lld policies costed in %.3f s\n", static_cast<long long>(result.evaluated),
               result.search_seconds);
  }
  return out;
}

std::string infeasible_report(const ReportContext& ctx, const PlanResult& result) {
  std::string out = "No policy fits this machine.\n";
  if (!ctx.precision_note.empty()) out += "Note: " + ctx.precision_note + "\n";
  if (result.closest.policy.batch_size == 0) return out;
  const MemoryPlan& m = result.closest.estimate.memory;
  out += "The closest policy (" + result.closest.family + "):\n";
  out += describe_policy(result.closest.policy, ctx.shape);
  if (m.gpu_short() > 0)
    out += fmt("  GPU memory short by %s: needs %s, %s usable\n", format_bytes(m.gpu_short()).c_str(),
               format_bytes(m.gpu_bytes).c_str(), format_bytes(m.gpu_usable).c_str());
  if (m.cpu_short() > 0)
    out += fmt("  DRAM short by %s: needs %s, %s usable\n", format_bytes(m.cpu_short()).c_str(),
               format_bytes(m.cpu_bytes).c_str(), format_bytes(m.cpu_usable).c_str());
  if (m.ssd_short() > 0)
    out += fmt("  SSD short by %s: needs %s, %s usable\n", format_bytes(m.ssd_short()).c_str(),
               format_bytes(m.ssd_bytes).c_str(), format_bytes(m.ssd_usable).c_str());
  out += "Memory plan of that policy:\n" + memory_table(m, ctx.hw);
  const Policy& p = result.closest.policy;
  bool quantised = p.dram_expert_precision != Precision::Bf16 || p.gpu_expert_precision != Precision::Bf16;
  if (m.cpu_short() > 0 || m.gpu_short() > 0) {
    out += "To make it fit:";
    if (!quantised) out += " allow quantised experts (--precisions bf16,int8,int4);";
    if (m.cpu_short() > 0 && !ctx.hw.has_ssd())
      out += " give the machine an SSD tier (--ssd-gbps, --ssd-gb);";
    if (m.cpu_short() > 0) out += " more DRAM (--host-dram-gb);";
    if (m.gpu_short() > 0) out += " a GPU with more memory;";
    out.back() = '\n';
  }
  return out;
}

}  // namespace ferry::planner
