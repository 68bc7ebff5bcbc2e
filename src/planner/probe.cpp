// The machine probe: CPU roofline (ferry/roofline_probe.h), ferry's own GEMM and decode-attention kernels
// timed at planner-relevant sizes, the SSD and the GPU (probe_ssd.cpp, probe_gpu.cpp).
#include "ferry/planner/probe.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <thread>
#include <vector>

#include "ferry/error.h"
#include "ferry/ops/attention.h"
#include "ferry/ops/expert_ffn.h"
#include "ferry/ops/matmul.h"
#include "ferry/ops/packed_matrix.h"
#include "ferry/roofline_probe.h"

namespace ferry::planner {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The median rate of `run` (`flops` each) over at least two runs and a quarter of a second (a twentieth with
// --quick): this VM's memory bandwidth switches between modes, and the median of a longer window is what a
// forward sees. GFLOP/s.
double median_gflops(double flops, const std::function<void()>& run, bool quick) {
  const double window = quick ? 0.05 : 0.25;
  std::vector<double> runs;
  for (double start = now_s(); runs.size() < 2 || (now_s() - start < window && runs.size() < 1000);) {
    double t0 = now_s();
    run();
    runs.push_back(flops / (now_s() - t0) / 1e9);
  }
  return median(runs);
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  return "host CPU";
}

std::string today() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::localtime(&t));
  return buf;
}

// GEMM y[rows, N] = x[rows, K]·Wᵀ of one of ferry's CPU kernels, at the row counts of decode micro-batches
// and per-expert token groups. Each W [N, K] is 64 MiB whatever the element width, and successive calls
// take the next of six, as a forward streams one layer's weights after another: no weight is still in the
// last-level cache (a victim cache on Zen) when it is read again, so the small-row points measure DRAM
// streaming as a model's forward sees it.
std::vector<GemmPoint> gemm_curve(CpuKernel kernel, bool quick, const std::function<void(const std::string&)>& log) {
  const DType dtype = kernel == CpuKernel::Int8 ? DType::I8 : kernel == CpuKernel::Int4 ? DType::I4 : DType::BF16;
  const int k = 4096, widen = dtype == DType::I8 ? 2 : dtype == DType::I4 ? 4 : 1;
  const int n = (quick ? 2048 : 8192) * widen;
  const char* name = kernel == CpuKernel::Bf16        ? "bf16"
                     : kernel == CpuKernel::Bf16Exact ? "bf16, f32 activations"
                     : kernel == CpuKernel::Int8      ? "int8"
                                                      : "int4";
  std::vector<uint16_t> w(static_cast<size_t>(n) * k);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint16_t>(0x3c00 + (i * 2654435761u >> 24) % 64);
  const int n_set = quick ? 2 : 6;
  std::vector<cpu::PackedMatrix> set;
  for (int i = 0; i < n_set; ++i) set.push_back(cpu::pack_matrix_bf16(w.data(), n, k, dtype));
  w = {};
  int next = 0;
  std::vector<GemmPoint> curve;
  const std::vector<int> rows =
      quick ? std::vector<int>{1, 16, 128} : std::vector<int>{1, 4, 16, 64, 256, 1024, 4096};
  for (int m : rows) {
    std::vector<uint16_t> xb(static_cast<size_t>(m) * k, 0x3c00);
    std::vector<float> xf(static_cast<size_t>(m) * k, 1.0f);
    std::vector<float> y(static_cast<size_t>(m) * n);
    auto run = [&] {
      const cpu::PackedMatrix& packed = set[next++ % n_set];
      if (kernel == CpuKernel::Bf16)
        cpu::matmul_xbf16(packed, xb.data(), y.data(), m);
      else if (kernel == CpuKernel::Bf16Exact)
        cpu::matmul_f32_activations(packed, xf.data(), y.data(), m);
      else
        cpu::matmul(packed, xf.data(), y.data(), m);
    };
    run();  // warm up (and first-call allocations)
    curve.push_back({static_cast<double>(m), median_gflops(2.0 * m * n * k, run, quick)});
    if (log) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "  cpu gemm %s rows=%d: %.0f GFLOP/s", name, m, curve.back().gflops);
      log(buf);
    }
  }
  return curve;
}

// Causal prompt attention (attention_prefill) over a bf16 KV cache, GQA 32/8 heads of 128, at prompt lengths
// from short chat turns to long documents: GFLOP/s at 4·H·Dh FLOPs per (query, key) pair, by length.
// Also the rate new keys and values are written into the cache (kv_cache_store), GB/s of bf16 cache.
// A routed expert's whole FFN on the exact path (cpu::expert_ffn_rows with f32 activations: gather the rows,
// gate and up, SiLU, down), D = 2048, F = 4096 (48 MiB of bf16 weights), four experts taken in turn, at the
// rows per expert the planner prices: GFLOP/s at 2·3·D·F per row.
std::vector<GemmPoint> expert_ffn_curve(bool quick, const std::function<void(const std::string&)>& log) {
  const int d = 2048, f = quick ? 1024 : 4096, n_expert = quick ? 2 : 4;
  std::vector<uint16_t> w(static_cast<size_t>(f) * d);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint16_t>(0x3c00 + (i * 2654435761u >> 24) % 64);
  struct Expert {
    cpu::PackedMatrix gate, up, down;
  };
  std::vector<Expert> experts;
  for (int e = 0; e < n_expert; ++e)
    experts.push_back({cpu::pack_matrix_bf16(w.data(), f, d, DType::BF16),
                       cpu::pack_matrix_bf16(w.data(), f, d, DType::BF16),
                       cpu::pack_matrix_bf16(w.data(), d, f, DType::BF16)});
  w = {};
  const std::vector<int> rows = quick ? std::vector<int>{1, 16, 128} : std::vector<int>{1, 4, 16, 64, 256, 1024};
  std::vector<GemmPoint> curve;
  int next = 0;
  for (int m : rows) {
    const int tokens = 2 * m;  // the expert's rows are every other token of the batch, as routing scatters them
    std::vector<float> x(static_cast<size_t>(tokens) * d, 0.01f), out(static_cast<size_t>(m) * d),
        x_rows(static_cast<size_t>(m) * d), gate(static_cast<size_t>(m) * f), up(gate.size());
    std::vector<int32_t> index(m);
    for (int i = 0; i < m; ++i) index[i] = 2 * i;
    auto run = [&] {
      const Expert& e = experts[next++ % n_expert];
      cpu::expert_ffn_rows({&e.gate, &e.up, &e.down}, &cpu::matmul_f32_activations, x.data(), index.data(), m,
                           out.data(), x_rows.data(), gate.data(), up.data());
    };
    run();  // warm up (and first-call allocations)
    curve.push_back({static_cast<double>(m), median_gflops(2.0 * m * 3.0 * d * f, run, quick)});
    if (log) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "  cpu expert FFN (f32 activations) rows=%d: %.0f GFLOP/s", m, curve.back().gflops);
      log(buf);
    }
  }
  return curve;
}

// A bf16 paged KV cache of n_seq sequences of blocks_per_seq blocks each (GQA 8 kv heads of 128), every
// element 1.0, and the block tables that give sequence s the blocks s·blocks_per_seq onwards.
struct ProbeKv {
  cpu::KvCacheLayer layer;
  std::vector<uint16_t> k, v;
  std::vector<int32_t> tables;
  ProbeKv(int n_seq, int blocks_per_seq, int block) {
    layer.dtype = DType::BF16;
    layer.n_block = n_seq * blocks_per_seq;
    layer.block_size = block;
    layer.n_head_kv = 8;
    layer.head_dim = 128;
    k.assign(layer.block_elems() * layer.n_block, 0x3c00);
    v.assign(k.size(), 0x3c00);
    layer.k = k.data();
    layer.v = v.data();
    tables.resize(static_cast<size_t>(n_seq) * blocks_per_seq);
    for (size_t i = 0; i < tables.size(); ++i) tables[i] = static_cast<int32_t>(i);
  }
};

struct PromptAttentionProbe {
  std::vector<GemmPoint> by_len;
  double kv_store_gbps = 0;
};
PromptAttentionProbe prompt_attention(bool quick) {
  const int block = 16, hkv = 8, dh = 128, h = 32, total_tokens = quick ? 1024 : 4096;  // ProbeKv's heads
  PromptAttentionProbe out;
  const std::vector<int> lens = quick ? std::vector<int>{32, 256} : std::vector<int>{32, 128, 512};
  for (int len : lens) {
    const int n_prompt = std::max(1, total_tokens / len), blocks_per_seq = len / block;
    ProbeKv cache(n_prompt, blocks_per_seq, block);
    const cpu::KvCacheLayer& kv = cache.layer;
    const std::vector<int32_t>& tables = cache.tables;
    std::vector<float> q(static_cast<size_t>(len) * h * dh, 0.01f), o(q.size());
    cpu::AttentionParams params;
    params.n_head = h;
    auto run = [&] {
      for (int s = 0; s < n_prompt; ++s)
        cpu::attention_prefill(q.data(), kv, tables.data() + static_cast<size_t>(s) * blocks_per_seq, 0, len,
                               params, o.data());
    };
    run();
    const double flops = n_prompt * 4.0 * h * dh * len * (len + 1) / 2.0;
    std::vector<double> runs;
    for (int r = 0; r < (quick ? 3 : 5); ++r) {
      double t0 = now_s();
      run();
      runs.push_back(flops / (now_s() - t0) / 1e9);
    }
    out.by_len.push_back({static_cast<double>(len), median(runs)});
    if (len == lens.back()) {  // the cache store: every slot of these prompts written once
      const int n_tok = n_prompt * len;
      std::vector<int32_t> slots(n_tok);
      for (int t = 0; t < n_tok; ++t) slots[t] = t;
      std::vector<float> k_new(static_cast<size_t>(n_tok) * hkv * dh, 0.5f), v_new(k_new.size(), 0.25f);
      cpu::kv_cache_store(kv, slots.data(), n_tok, k_new.data(), v_new.data());
      std::vector<double> rates;
      for (int r = 0; r < (quick ? 3 : 5); ++r) {
        double t0 = now_s();
        cpu::kv_cache_store(kv, slots.data(), n_tok, k_new.data(), v_new.data());
        rates.push_back(static_cast<double>(kv.bytes()) / (now_s() - t0) / 1e9);
      }
      out.kv_store_gbps = median(rates);
    }
  }
  return out;
}

// Decode attention over a bf16 KV cache (GQA 32/8 heads of 128, Mixtral's shape): the KV bytes read per
// second, the rate the planner charges CPU attention.
double attention_gbps(bool quick) {
  const int n_seq = quick ? 8 : 32, ctx = quick ? 512 : 1024, block = 64, dh = 128, h = 32;  // ProbeKv: 8 kv heads of 128
  const int blocks_per_seq = ctx / block;
  ProbeKv cache(n_seq, blocks_per_seq, block);
  const cpu::KvCacheLayer& kv = cache.layer;
  const std::vector<int32_t>& tables = cache.tables;
  std::vector<int32_t> n_ctx(n_seq, ctx);
  std::vector<float> q(static_cast<size_t>(n_seq) * h * dh, 0.01f), out(q.size());
  cpu::AttentionParams params;
  params.n_head = h;
  cpu::attention_decode(q.data(), kv, tables.data(), blocks_per_seq, n_ctx.data(), n_seq, params, out.data());
  double bytes = static_cast<double>(kv.bytes());
  std::vector<double> runs;
  for (int r = 0; r < (quick ? 3 : 7); ++r) {
    double t0 = now_s();
    cpu::attention_decode(q.data(), kv, tables.data(), blocks_per_seq, n_ctx.data(), n_seq, params,
                          out.data());
    runs.push_back(bytes / (now_s() - t0) / 1e9);
  }
  return median(runs);
}

}  // namespace

HardwareProfile probe_machine(const ProbeOptions& o) {
  auto log = [&](const std::string& s) {
    if (o.log) o.log(s);
  };
  HardwareProfile hw;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  hw.name = std::string("probe-") + host;
  hw.description = std::string("measured by ferry probe on ") + host + ", " + today();

  // ---- CPU and DRAM
  log("probing CPU roofline ...");
  RooflineOptions ro;
  ro.buffer_mib = o.quick ? 128 : 1024;
  ro.repeats = o.quick ? 3 : 5;
  Roofline roof = probe_roofline(ro);
  log("  " + roof.describe());
  MemoryLevel& cpu = hw.cpu;
  cpu.name = cpu_model_name();
  cpu.cores = static_cast<int>(std::thread::hardware_concurrency());
  cpu.capacity_bytes =
      static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  cpu.bandwidth_gbps = roof.dram_read_gbps;
  double f32 = roof.peak_gflops_f32 / 1e3;
  cpu.peak.fp32_tflops = f32;
  cpu.peak.bf16_tflops = roof.peak_gflops_bf16 > 0 ? roof.peak_gflops_bf16 / 1e3 : f32;
  cpu.peak.int8_tops = roof.peak_gops_int8 > 0 ? roof.peak_gops_int8 / 1e3 : cpu.peak.bf16_tflops;
  cpu.usable_fraction = 0.8;
  log("probing CPU GEMM throughput ...");
  cpu.gemm_curve = gemm_curve(CpuKernel::Bf16, o.quick, o.log);
  cpu.kernels.bf16_exact = gemm_curve(CpuKernel::Bf16Exact, o.quick, o.log);
  cpu.kernels.int8 = gemm_curve(CpuKernel::Int8, o.quick, o.log);
  cpu.kernels.int4 = gemm_curve(CpuKernel::Int4, o.quick, o.log);
  cpu.kernels.expert_ffn = expert_ffn_curve(o.quick, o.log);
  log("probing CPU prompt attention ...");
  {
    PromptAttentionProbe pa = prompt_attention(o.quick);
    cpu.kernels.prefill_attention = pa.by_len;
    cpu.kernels.kv_store_gbps = pa.kv_store_gbps;
    std::string line = "  cpu prompt attention";
    char buf[64];
    for (const GemmPoint& p : pa.by_len) {
      std::snprintf(buf, sizeof buf, " len=%d: %.0f GFLOP/s;", static_cast<int>(p.rows), p.gflops);
      line += buf;
    }
    std::snprintf(buf, sizeof buf, " KV store %.1f GB/s", pa.kv_store_gbps);
    log(line + buf);
  }
  log("probing CPU decode attention ...");
  cpu.attention_gbps = attention_gbps(o.quick);
  {
    char buf[128];
    std::snprintf(buf, sizeof buf, "  cpu decode attention: %.1f GB/s of KV", cpu.attention_gbps);
    log(buf);
  }
  cpu.source = "probe " + today() + " (" + roof.isa + ", " + std::to_string(roof.n_threads) + " threads)";

  // ---- SSD
  hw.links.source = "probe " + today();
  if (!o.ssd_path.empty()) {
    log("probing SSD read bandwidth in " + o.ssd_path + " ...");
    SsdProbe s = probe_ssd(o.ssd_path, o.ssd_bytes, o.quick ? 1 : 3);
    char buf[160];
    std::snprintf(buf, sizeof buf, "  ssd: %.2f GB/s (%s), %.0f GB free", s.read_gbps, s.method.c_str(),
                  s.free_bytes / 1e9);
    log(buf);
    MemoryLevel ssd;
    ssd.name = "SSD at " + o.ssd_path;
    ssd.capacity_bytes = s.free_bytes;
    ssd.bandwidth_gbps = s.read_gbps;
    ssd.usable_fraction = 0.9;
    ssd.source = "probe " + today() + ": " + s.method + ", free space of " + o.ssd_path;
    hw.ssd = ssd;
    hw.links.ssd_read_gbps = s.read_gbps;
  } else {
    log("no --ssd-path: the profile has no SSD tier");
  }

  // ---- GPU
  GpuProbe g = probe_gpu(o.quick);
  if (g.present) {
    MemoryLevel gpu;
    gpu.name = g.name;
    gpu.capacity_bytes = g.memory_bytes;
    gpu.bandwidth_gbps = g.memory_gbps;
    gpu.peak = {g.bf16_tflops, g.bf16_tflops / 2, g.bf16_tflops * 2};
    gpu.usable_fraction = 0.9;
    gpu.source = "probe " + today() + " (peak = measured bf16 GEMM; int8/fp32 derived)";
    hw.gpu = gpu;
    hw.links.h2d_gbps = g.h2d_gbps;
    hw.links.d2h_gbps = g.d2h_gbps;
    char buf[200];
    std::snprintf(buf, sizeof buf, "  gpu %s: %.0f GB/s memory, %.1f TFLOPS bf16 GEMM, PCIe %.1f / %.1f GB/s",
                  g.name.c_str(), g.memory_gbps, g.bf16_tflops, g.h2d_gbps, g.d2h_gbps);
    log(buf);
  } else {
    log("no GPU: " + g.note);
  }
  return hw;
}

}  // namespace ferry::planner
