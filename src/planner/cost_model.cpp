#include "ferry/planner/cost_model.h"

#include <algorithm>
#include <cmath>

#include "ferry/error.h"
#include "ferry/validate.h"

namespace ferry::planner {
namespace {

constexpr double kBf16 = 2.0;
constexpr double kF32 = 4.0;

std::vector<LayerClass> layer_classes(const ModelShape& m, const Policy& p) {
  std::vector<LayerClass> classes;
  for (int l = 0; l < m.n_layer; ++l) {
    LayerClass c{m.layer_is_moe[l], m.dense_params_per_layer[l], 0, 0, 0, 1};
    if (c.moe && l < static_cast<int>(p.gpu_experts_per_layer.size())) {
      c.gpu = p.gpu_experts_per_layer[l];
      c.dram = p.dram_experts_per_layer[l];
      c.ssd = p.ssd_experts_per_layer[l];
    }
    auto same = [&](const LayerClass& o) {
      return o.moe == c.moe && o.dense_params == c.dense_params && o.gpu == c.gpu && o.dram == c.dram &&
             o.ssd == c.ssd;
    };
    auto it = std::find_if(classes.begin(), classes.end(), same);
    if (it == classes.end())
      classes.push_back(c);
    else
      ++it->count;
  }
  return classes;
}

// Bytes of a memory-plan entry as an integer. A workload far beyond any machine (N and lengths at their
// bounds) can ask for more than int64 holds; saturating keeps the conversion defined, and such a plan
// does not fit anyway.
int64_t plan_bytes(double bytes) {
  constexpr double kMax = 4611686018427387904.0;  // 2^62
  return bytes >= kMax ? static_cast<int64_t>(kMax) : bytes > 0 ? static_cast<int64_t>(bytes) : 0;
}

double ceil_div(double a, double b) {
  return std::ceil(a / b - 1e-9);
}

double link_seconds(double bytes, double gbps) {
  if (bytes <= 0) return 0;
  return gbps > 0 ? bytes / (gbps * 1e9) : INFINITY;
}

// Accumulates the kernels and transfers of one layer on the profile's roofs.
class LayerWork {
 public:
  LayerWork(const HardwareProfile& hw, CpuKernel dense_kernel) : hw_(hw), dense_kernel_(dense_kernel) {}

  // The part of the model the kernels that follow belong to.
  void part(double PartTimes::*p) { part_ = p; }

  // `times` identical kernels of `flops` and `bytes`; `rows` activation rows per weight matrix.
  void gpu(double flops, double bytes, double rows, double times) {
    if (times <= 0 || (flops <= 0 && bytes <= 0)) return;
    double comp = flops / hw_.gpu->gemm_flops(rows);
    double mem = bytes / (hw_.gpu->bandwidth_gbps * 1e9);
    rt.gpu_compute += comp * times;
    rt.gpu_memory += mem * times;
    rt.gpu_busy += std::max(comp, mem) * times;
    parts.*part_ += std::max(comp, mem) * times;
  }
  // A CPU matmul of bf16 weights (the dense kernel: exact unless activations are rounded to bf16).
  void cpu(double flops, double bytes, double rows, double times) {
    cpu_at(flops, bytes, hw_.cpu.gemm_flops(rows, dense_kernel_), hw_.cpu.bandwidth_gbps * 1e9, times);
  }
  // The routed experts' FFNs at `precision`, `rows` rows per expert.
  void cpu_experts(Precision precision, double flops, double bytes, double rows, double times) {
    const CpuKernel kernel = precision == Precision::Int8   ? CpuKernel::Int8
                             : precision == Precision::Int4 ? CpuKernel::Int4
                                                            : dense_kernel_;
    cpu_at(flops, bytes, hw_.cpu.expert_ffn_flops(rows, kernel), hw_.cpu.bandwidth_gbps * 1e9, times);
  }
  // Causal prompt attention on the CPU over prompts of `prompt_len` tokens: f32 arithmetic, at the rate
  // measured for that length when there is one; then the new keys and values stored into the cache.
  void cpu_prefill_attention(double flops, double bytes, double kv_written, double prompt_len, double times) {
    double rate = hw_.cpu.kernels.prefill_attention_flops(prompt_len);
    if (rate <= 0) rate = fp32_peak_flops();
    cpu_at(flops, bytes, rate, hw_.cpu.bandwidth_gbps * 1e9, times);
    if (hw_.cpu.kernels.kv_store_gbps > 0) cpu_at(0, kv_written, 1, hw_.cpu.kernels.kv_store_gbps * 1e9, times);
  }
  // Decode attention on the CPU: fp32 arithmetic, at the measured attention rate when there is one.
  void cpu_attention(double flops, double bytes) {
    double bw = hw_.cpu.attention_gbps > 0 ? hw_.cpu.attention_gbps : hw_.cpu.bandwidth_gbps;
    cpu_at(flops, bytes, fp32_peak_flops(), bw * 1e9, 1);
  }
  void dram(double bytes) { rt.dram += bytes / (hw_.cpu.bandwidth_gbps * 1e9); }
  void h2d(double bytes) { rt.h2d += link_seconds(bytes, hw_.links.h2d_gbps); }
  void d2h(double bytes) { rt.d2h += link_seconds(bytes, hw_.links.d2h_gbps); }
  void ssd(double bytes) {
    if (bytes > 0) rt.ssd += hw_.links.ssd_read_gbps > 0 ? bytes / (hw_.links.ssd_read_gbps * 1e9) : INFINITY;
  }

  ResourceTimes rt;
  PartTimes parts;

 private:
  // The CPU's f32 peak (its bf16 one when the profile has no f32 figure), FLOP/s.
  double fp32_peak_flops() const {
    return (hw_.cpu.peak.fp32_tflops > 0 ? hw_.cpu.peak.fp32_tflops : hw_.cpu.peak.bf16_tflops) * 1e12;
  }
  void cpu_at(double flops, double bytes, double flops_rate, double bw, double times) {
    if (times <= 0 || (flops <= 0 && bytes <= 0)) return;
    double comp = flops / flops_rate;
    double mem = bytes / bw;
    rt.cpu_compute += comp * times;
    rt.cpu_memory += mem * times;
    rt.cpu_busy += std::max(comp, mem) * times;
    parts.*part_ += std::max(comp, mem) * times;
    rt.dram += bytes / (hw_.cpu.bandwidth_gbps * 1e9) * times;
  }
  const HardwareProfile& hw_;
  CpuKernel dense_kernel_;
  double PartTimes::*part_ = &PartTimes::dense;
};

double wall_time(const ResourceTimes& r, bool overlap) {
  if (!overlap) return r.h2d + r.d2h + r.gpu_busy + r.cpu_busy + r.ssd;
  return std::max({r.h2d, r.d2h, r.gpu_busy, r.cpu_busy, r.dram, r.ssd, r.chain});
}

Resource binding_of(const ResourceTimes& r, bool overlap) {
  if (!overlap) return Resource::Serial;
  struct Entry {
    double t;
    Resource res;
  };
  Entry entries[] = {
      {r.h2d, Resource::H2d},
      {r.d2h, Resource::D2h},
      {r.gpu_busy, r.gpu_compute >= r.gpu_memory ? Resource::GpuCompute : Resource::GpuMemory},
      {r.cpu_busy, r.cpu_compute >= r.cpu_memory ? Resource::CpuCompute : Resource::CpuMemory},
      {r.dram, Resource::Dram},
      {r.ssd, Resource::Ssd},
      {r.chain, Resource::Chain},
  };
  Entry best = entries[0];
  for (const Entry& e : entries)
    if (e.t > best.t) best = e;
  return best.res;
}

}  // namespace

void PartTimes::add(const PartTimes& o, double w) {
  dense += w * o.dense;
  attention += w * o.attention;
  experts += w * o.experts;
  head += w * o.head;
}

void ResourceTimes::add(const ResourceTimes& o, double w) {
  gpu_compute += w * o.gpu_compute;
  gpu_memory += w * o.gpu_memory;
  gpu_busy += w * o.gpu_busy;
  cpu_compute += w * o.cpu_compute;
  cpu_memory += w * o.cpu_memory;
  cpu_busy += w * o.cpu_busy;
  dram += w * o.dram;
  h2d += w * o.h2d;
  d2h += w * o.d2h;
  ssd += w * o.ssd;
  chain += w * o.chain;
}

std::string_view resource_name(Resource r) {
  switch (r) {
    case Resource::GpuCompute:
      return "GPU compute roof";
    case Resource::GpuMemory:
      return "GPU memory roof";
    case Resource::CpuCompute:
      return "CPU compute roof";
    case Resource::CpuMemory:
      return "CPU memory roof";
    case Resource::Dram:
      return "DRAM bandwidth (CPU kernels + DMA)";
    case Resource::H2d:
      return "PCIe host->device (cross-level roof)";
    case Resource::D2h:
      return "PCIe device->host";
    case Resource::Ssd:
      return "SSD read roof";
    case Resource::Chain:
      return "pipeline latency (too few micro-batches to overlap)";
    case Resource::Serial:
      return "serial execution (overlap off)";
  }
  return "?";
}

double MemoryPlan::worst_relative_short() const {
  auto rel = [](double short_bytes, double usable) {
    return short_bytes <= 0 ? 0.0 : usable > 0 ? short_bytes / usable : INFINITY;
  };
  return std::max({rel(gpu_short(), gpu_usable), rel(cpu_short(), cpu_usable), rel(ssd_short(), ssd_usable)});
}

CostModel::CostModel(ModelShape shape, HardwareProfile hw, Workload workload, CostOptions options)
    : shape_(std::move(shape)), hw_(std::move(hw)), workload_(workload), options_(options) {
  roofs_ = HrmRoofs::from(hw_);
  dense_kernel_ = options_.cpu_bf16_activations ? CpuKernel::Bf16 : CpuKernel::Bf16Exact;
  dense_params_total_ = shape_.dense_params_total();
  // Finite and bounded, so every count derived from them (tokens, bytes, batches) converts safely.
  constexpr int64_t kMaxTokens = int64_t{1} << 30;
  require_count(workload_.gen_len, 1, kMaxTokens, "the workload's generation length", "tokens");
  require_in_range(workload_.avg_prompt_len, {1, static_cast<double>(kMaxTokens)},
                   "the workload's average prompt length", "tokens");
  require_count(workload_.max_prompt_len, 1, kMaxTokens, "the workload's longest prompt", "tokens");
  if (static_cast<double>(workload_.max_prompt_len) < workload_.avg_prompt_len)
    throw Error("max prompt length (" + std::to_string(workload_.max_prompt_len) +
                ") is below the average prompt length (" + number_text(workload_.avg_prompt_len) + ")");
  require_count(workload_.requests, 1, int64_t{1} << 50, "the workload's number of requests");
}

double CostModel::kv_tokens(double n_seqs) const {
  // Length-balanced batches without padding hold about the average prompt per sequence; reserve one
  // sequence at the maximum length on top.
  return n_seqs * (workload_.avg_prompt_len + workload_.gen_len) +
         (workload_.max_prompt_len - workload_.avg_prompt_len);
}

MemoryPlan CostModel::memory_of_buffers(const Policy& p, bool itemize) const {
  MemoryPlan plan;
  plan.gpu_usable = hw_.gpu->usable_bytes();
  plan.cpu_usable = hw_.cpu.usable_bytes();
  plan.ssd_usable = hw_.has_ssd() ? hw_.ssd->usable_bytes() : 0;
  const int64_t kv = options_.kv_tokens ? *options_.kv_tokens
                                        : plan_bytes(std::ceil(kv_tokens(static_cast<double>(p.batch_size))));
  const BufferList list = options_.buffers->buffers(p, kv);
  plan.gpu_bytes = static_cast<double>(list.total(BufferLevel::Device));
  plan.cpu_bytes = static_cast<double>(list.total(BufferLevel::Host));
  plan.cache = list.cache_sizes();
  plan.prefill_hidden_on_gpu = true;  // the executor prefills one chunk at a time: nothing spills
  bool any_ssd = false;
  for (int l = 0; l < shape_.n_layer; ++l)
    any_ssd = any_ssd || (shape_.layer_is_moe[l] && p.ssd_experts_per_layer.at(l) > 0);
  if (any_ssd) {
    const double store = shape_.expert_params_total() * bytes_per_element(p.ssd_expert_precision, p.group_size);
    plan.ssd_bytes = store;
    plan.cache.ssd_expert_store = plan_bytes(store);
  }
  if (!itemize) return plan;
  // One line per (level, policy field), in the list's order.
  struct Group {
    BufferLevel level;
    BufferRole role;
    const char* what;
  };
  const Group groups[] = {
      {BufferLevel::Device, BufferRole::DenseWeights, "dense weights (embeddings, attention, router, shared experts, lm_head)"},
      {BufferLevel::Device, BufferRole::ResidentExperts, "resident experts"},
      {BufferLevel::Device, BufferRole::StreamBuffer, "expert stream buffer (streamed experts, double-buffered)"},
      {BufferLevel::Device, BufferRole::KvCache, "KV cache"},
      {BufferLevel::Device, BufferRole::Activations, "activations, relays + workspace"},
      {BufferLevel::Host, BufferRole::ResidentExperts, "experts (pinned store)"},
      {BufferLevel::Host, BufferRole::KvCache, "KV cache"},
      {BufferLevel::Host, BufferRole::Staging, "pinned relays (activations) + SSD read staging"},
      {BufferLevel::Host, BufferRole::Other, "returned logits"},
  };
  for (const Group& g : groups) {
    int64_t bytes = 0;
    for (const PlannedBuffer& b : list.buffers)
      if (b.level == g.level && b.role == g.role) bytes += list.charged(b);
    if (bytes > 0) plan.items.push_back({g.level == BufferLevel::Device ? "gpu" : "dram", g.what, static_cast<double>(bytes)});
  }
  if (any_ssd) plan.items.push_back({"ssd", "expert store", plan.ssd_bytes});
  return plan;
}

MemoryPlan CostModel::memory(const Policy& p, bool itemize) const {
  if (options_.buffers && hw_.has_gpu() && options_.buffers->runs(p)) return memory_of_buffers(p, itemize);
  const ModelShape& m = shape_;
  MemoryPlan plan;
  const bool gpu_present = hw_.has_gpu();
  plan.gpu_usable = gpu_present ? hw_.gpu->usable_bytes() : 0;
  plan.cpu_usable = hw_.cpu.usable_bytes();
  plan.ssd_usable = hw_.has_ssd() ? hw_.ssd->usable_bytes() : 0;

  const double n = static_cast<double>(p.batch_size);
  const double mu = std::min<double>(p.micro_batch, n);
  const double prompt_tokens = n * workload_.avg_prompt_len;
  const double chunk = std::min<double>(p.prefill_chunk_tokens, prompt_tokens);
  const double kvb = m.kv_bytes_per_token_layer(p.kv_precision);
  const double kv_total = kv_tokens(n) * kvb * m.n_layer;
  const double d = m.d_model, f = m.d_expert, k = m.top_k, v = m.n_vocab;
  const double eb_gpu = m.expert_bytes(p.gpu_expert_precision, p.group_size);
  const double eb_dram = m.expert_bytes(p.dram_expert_precision, p.group_size);
  const double eb_ssd = m.expert_bytes(p.ssd_expert_precision, p.group_size);

  double gpu_experts = 0, dram_experts = 0, stream_layer = 0, ssd_layer = 0;
  bool any_ssd = false;
  for (int l = 0; l < m.n_layer; ++l) {
    if (!m.layer_is_moe[l]) continue;
    gpu_experts += p.gpu_experts_per_layer[l] * eb_gpu;
    dram_experts += p.dram_experts_per_layer[l] * eb_dram;
    stream_layer =
        std::max(stream_layer, p.dram_experts_per_layer[l] * eb_dram + p.ssd_experts_per_layer[l] * eb_ssd);
    ssd_layer = std::max(ssd_layer, p.ssd_experts_per_layer[l] * eb_ssd);
    any_ssd = any_ssd || p.ssd_experts_per_layer[l] > 0;
  }
  const double dense_weights = dense_params_total_ * kBf16;
  const double stream_buffer = (p.prefetch_depth + 1) * stream_layer;
  const bool att_gpu = p.attention_device == Device::Gpu;
  const double share = att_gpu ? p.kv_gpu_share : 0;

  auto add = [&](const char* level, const char* what, double bytes) {
    if (bytes <= 0 || !itemize) return;
    plan.items.push_back({level, what, bytes});
  };

  // ---- GPU: resident weights, then the larger of the decode and prefill working sets.
  if (gpu_present) {
    double resident = 0;
    if (p.dense_device == Device::Gpu) {
      add("gpu", "dense weights (attention, router, shared experts, lm_head)", dense_weights);
      resident += dense_weights;
    }
    add("gpu", "resident experts", gpu_experts);
    resident += gpu_experts;
    double kv_gpu = share * kv_total;
    add("gpu", "KV cache share", kv_gpu);
    resident += kv_gpu;

    // Working sets without the stream buffer; each phase adds the buffer when it streams experts.
    double decode_act = 0;
    if (p.dense_device == Device::Gpu) {
      decode_act += n * d * kBf16 * 2;  // hidden + residual of every sequence in flight
      decode_act += mu * (m.qkv_width + m.attn_out_width) * kBf16;
      decode_act += mu * v * kF32;  // logits
    }
    if (p.ffn_device == Device::Gpu || gpu_experts > 0) decode_act += mu * k * (2 * f + d) * kBf16;
    if (att_gpu && share < 1) decode_act += 2 * mu * (workload_.max_prompt_len + workload_.gen_len) * kvb;
    const double decode_buffer = p.ffn_device == Device::Gpu ? stream_buffer : 0;

    double prefill_act = 0, prefill_hidden = 0;
    const double prefill_buffer = p.prefill_device == Device::Gpu ? stream_buffer : 0;
    if (p.prefill_device == Device::Gpu) {
      if (options_.moe_lightning_workspace) {
        // MoE-Lightning's LP: hidden/residual 4·D·μ·2s, KV staging 4·s·h_kv·μ·2, fused-MoE 2.4·μ·s·K·(D+3F).
        prefill_act += 4 * d * chunk * 2 + 2 * chunk * kvb * 2 + 2.4 * chunk * k * (d + 3 * f);
      } else {
        prefill_act += chunk * d * kBf16 * 3 + chunk * (m.qkv_width + m.attn_out_width) * kBf16;
        prefill_act += chunk * k * (2 * f + d) * kBf16 + 2 * chunk * kvb;
        prefill_act += std::min(n, chunk) * v * kF32;
      }
      prefill_hidden = prompt_tokens * d * kBf16 * 2;  // the whole batch's hidden + residual
    }
    const double decode_phase = decode_buffer + decode_act;
    plan.prefill_hidden_on_gpu =
        p.prefill_device == Device::Gpu &&
        resident + std::max(decode_phase, prefill_buffer + prefill_act + prefill_hidden) <= plan.gpu_usable;
    if (plan.prefill_hidden_on_gpu) prefill_act += prefill_hidden;
    const double prefill_phase = prefill_buffer + prefill_act;
    const double buffer = std::max(decode_buffer, prefill_buffer);
    const double working = std::max(decode_phase, prefill_phase);
    add("gpu", "expert stream buffer (streamed experts, double-buffered)", buffer);
    add("gpu",
        decode_phase >= prefill_phase ? "activations + workspace (decode peak)"
                                      : "activations + workspace (prefill peak)",
        working - buffer);
    plan.gpu_bytes = resident + working;
    plan.cache.gpu_dense_weights = plan_bytes(p.dense_device == Device::Gpu ? dense_weights : 0);
    plan.cache.gpu_expert_cache = plan_bytes(gpu_experts);
    plan.cache.gpu_kv_cache = plan_bytes(kv_gpu);
    plan.cache.gpu_stream_buffer = plan_bytes(buffer);
    plan.cache.gpu_activations = plan_bytes(working - buffer);
  } else {
    plan.prefill_hidden_on_gpu = false;
  }

  // ---- DRAM
  add("dram", "experts", dram_experts);
  add("dram", "KV cache", (1 - share) * kv_total);
  double embeddings = m.embedding_params * kBf16;
  add("dram", "token embeddings", embeddings);
  double other = 0;
  if (p.dense_device == Device::Cpu || !gpu_present) {
    add("dram", "dense weights", dense_weights);
    other += dense_weights;
  }
  double relays = 0;
  if (gpu_present) relays = n * (m.qkv_width + m.attn_out_width + 2 * d) * kBf16;
  double ssd_staging = any_ssd ? (p.prefetch_depth + 1) * ssd_layer : 0;
  add("dram", "pinned relays (activations)", relays);
  add("dram", "pinned SSD read staging", ssd_staging);
  double cpu_work = 0;
  if (p.ffn_device == Device::Cpu) cpu_work += mu * k * (2 * f + d) * kF32;
  if (!gpu_present) {
    cpu_work += n * d * kBf16 * 2 + mu * (m.qkv_width + m.attn_out_width) * kF32 + mu * v * kF32;
    cpu_work += std::max(0.0, chunk * (d * kBf16 * 3 + k * (2 * f + d) * kF32));
  }
  double spill = (gpu_present && !plan.prefill_hidden_on_gpu) ? prompt_tokens * d * kBf16 * 2 : 0;
  add("dram", "prefill activations spilled from the GPU", spill);
  add("dram", "CPU activations + workspace", cpu_work);
  plan.cpu_bytes =
      dram_experts + (1 - share) * kv_total + embeddings + other + relays + ssd_staging + spill + cpu_work;
  plan.cache.dram_expert_cache = plan_bytes(dram_experts);
  plan.cache.dram_kv_cache = plan_bytes((1 - share) * kv_total);
  plan.cache.dram_pinned_staging = plan_bytes(relays + ssd_staging);
  plan.cache.dram_other = plan_bytes(embeddings + other + spill + cpu_work);

  // ---- SSD: the expert store, when anything is read from it.
  if (any_ssd) {
    double store = m.expert_params_total() * bytes_per_element(p.ssd_expert_precision, p.group_size);
    add("ssd", "expert store", store);
    plan.ssd_bytes = store;
    plan.cache.ssd_expert_store = plan_bytes(store);
  }
  return plan;
}

PhaseEstimate CostModel::decode_step(const Policy& p, double n_seqs, double ctx) const {
  return decode_step_of(p, layer_classes(shape_, p), n_seqs, ctx);
}

PhaseEstimate CostModel::decode_step_of(const Policy& p, const std::vector<LayerClass>& classes,
                                        double n_seqs, double ctx) const {
  const ModelShape& m = shape_;
  const double n = n_seqs;
  const double mu = std::min<double>(p.micro_batch, n);
  const double n_ub = ceil_div(n, mu);
  const double d = m.d_model, f = m.d_expert, k = m.top_k, e = m.n_expert;
  const double kvb = m.kv_bytes_per_token_layer(p.kv_precision);
  const double eb_gpu = m.expert_bytes(p.gpu_expert_precision, p.group_size);
  const double eb_dram = m.expert_bytes(p.dram_expert_precision, p.group_size);
  const double eb_ssd = m.expert_bytes(p.ssd_expert_precision, p.group_size);
  const bool gpu_present = hw_.has_gpu();
  const bool dense_gpu = gpu_present && p.dense_device == Device::Gpu;
  const double share = p.attention_device == Device::Gpu ? p.kv_gpu_share : 0;
  const double ffn_act = k * (4 * d + 8 * f);  // bytes per token: in/out and the gate/up intermediates

  PhaseEstimate out;
  ResourceTimes total;
  double seconds = 0;
  for (const LayerClass& c : classes) {
    LayerWork w(hw_, dense_kernel_);
    double act_h2d = 0, act_d2h = 0;  // activations that cross PCIe on every micro-batch's path
    double miss_link = 0;             // demand fetch: experts fetched after the router
    // Projections, norms, router, shared expert.
    const double dense_bytes = c.dense_params * kBf16;
    if (dense_gpu)
      w.gpu(2 * mu * c.dense_params, dense_bytes + mu * d * kBf16 * 4, mu, n_ub);
    else
      w.cpu(2 * mu * c.dense_params, dense_bytes + mu * d * kBf16 * 4, mu, n_ub);

    // Attention over the KV cache.
    w.part(&PartTimes::attention);
    Traffic att = decode_attention(m, ctx, p.kv_precision);
    if (p.attention_device == Device::Cpu) {
      w.cpu_attention(n * att.flops, n * att.bytes);
      if (dense_gpu) {
        act_d2h += n * m.qkv_width * kBf16;
        act_h2d += n * m.attn_out_width * kBf16;
      }
    } else {
      w.gpu(mu * att.flops, mu * att.bytes, mu, n_ub);
      double moved = (1 - share) * n * att.bytes;  // the DRAM share of the cache comes over PCIe
      w.h2d(moved);
      w.dram(moved);
      w.d2h((1 - share) * n * kvb);
    }

    // Routed experts.
    w.part(&PartTimes::experts);
    if (c.moe) {
      const double p_batch = expected_distinct_experts(m.n_expert, m.top_k, n) / e;  // P(expert touched)
      const double p_ub = expected_distinct_experts(m.n_expert, m.top_k, mu) / e;
      const double rows_ub = mu * k / (e * p_ub);  // rows per expert a micro-batch touches
      const double ssd_touched = c.ssd * eb_ssd * p_batch;  // the CPU FFN reads only what is touched
      if (p.ffn_device == Device::Gpu && gpu_present) {
        // What crosses PCIe depends on how experts are fetched (policy.expert_fetch). Prefetch copies every
        // streamed expert once per step. Demand copies ahead the experts the last step touched and, after
        // the router, the touched ones that did not come: with independent steps an expert is touched with
        // probability p, so p·S moves ahead and p(1-p)·S after the router, on the layer's critical path.
        const double streamed = c.dram * eb_dram + c.ssd * eb_ssd;
        const bool demand = p.expert_fetch == ExpertFetch::Demand;
        const double moved = demand ? streamed * p_batch * (2 - p_batch) : streamed;
        const double ssd_read = c.ssd * eb_ssd;  // a layer load reads its SSD experts whole, either way
        w.ssd(ssd_read);
        w.h2d(moved);
        w.dram(moved + ssd_read);  // DMA reads; SSD data lands in DRAM first
        if (demand) miss_link += link_seconds(streamed * p_batch * (1 - p_batch), hw_.links.h2d_gbps);
        double resident_bytes = c.gpu * eb_gpu + c.dram * eb_dram + c.ssd * eb_ssd;  // all E, on the GPU
        w.gpu(mu * k * 2 * m.expert_params, p_ub * resident_bytes + mu * ffn_act, rows_ub, n_ub);
      } else {
        w.ssd(ssd_touched);
        double host_share = (c.dram + c.ssd) / e;
        w.cpu_experts(p.dram_expert_precision, mu * k * 2 * m.expert_params * host_share,
                      p_ub * (c.dram * eb_dram + c.ssd * eb_ssd) + mu * ffn_act * host_share, rows_ub, n_ub);
        w.dram(ssd_touched);  // SSD reads land in DRAM
        if (c.gpu > 0 && gpu_present) {
          double gpu_share = c.gpu / e;
          w.gpu(mu * k * 2 * m.expert_params * gpu_share, p_ub * c.gpu * eb_gpu + mu * ffn_act * gpu_share,
                rows_ub, n_ub);
        }
        if (gpu_present && (dense_gpu || c.gpu > 0)) {  // tokens cross to the experts' device and back
          act_d2h += n * d * kBf16;
          act_h2d += n * d * kBf16;
        }
      }
    }
    w.h2d(act_h2d);
    w.d2h(act_d2h);
    bool alternates = gpu_present && (act_h2d > 0 || act_d2h > 0);
    if (alternates) {
      double act_link = link_seconds(act_h2d, hw_.links.h2d_gbps) + link_seconds(act_d2h, hw_.links.d2h_gbps);
      w.rt.chain = (w.rt.gpu_busy + w.rt.cpu_busy + act_link) / n_ub;
    }
    w.rt.chain += miss_link;  // demand fetch: the layer's misses cross after its router, before its experts
    total.add(w.rt, c.count);
    out.parts.add(w.parts, c.count);
    seconds += c.count * wall_time(w.rt, p.overlap);
  }

  // Final norm + lm_head on the dense device.
  LayerWork head(hw_, dense_kernel_);
  head.part(&PartTimes::head);
  double head_bytes = m.lm_head_params * kBf16 + mu * m.n_vocab * kF32;
  if (dense_gpu)
    head.gpu(2 * mu * m.lm_head_params, head_bytes, mu, n_ub);
  else
    head.cpu(2 * mu * m.lm_head_params, head_bytes, mu, n_ub);
  total.add(head.rt, 1);
  out.parts.add(head.parts, 1);
  seconds += wall_time(head.rt, p.overlap);

  out.per_layer = ResourceTimes{};
  out.per_layer.add(total, 1.0 / m.n_layer);
  out.seconds = seconds;
  out.binding = binding_of(total, p.overlap);
  out.tokens_per_s = seconds > 0 ? n / seconds : 0;
  return out;
}

PhaseEstimate CostModel::prefill(const Policy& p, const MemoryPlan& mem, double n_seqs) const {
  return prefill_of(p, layer_classes(shape_, p), mem, n_seqs);
}

PhaseEstimate CostModel::prefill_of(const Policy& p, const std::vector<LayerClass>& classes,
                                    const MemoryPlan& mem, double n_seqs) const {
  const ModelShape& m = shape_;
  const double tokens = n_seqs * workload_.avg_prompt_len;
  // The batch's prompts in n_chunk chunks of at most prefill_chunk_tokens, priced as equal chunks: the
  // work is the batch's tokens, not n_chunk full chunks.
  const double n_chunk = ceil_div(tokens, std::min<double>(p.prefill_chunk_tokens, tokens));
  const double chunk = tokens / n_chunk;
  const double d = m.d_model, f = m.d_expert, k = m.top_k, e = m.n_expert;
  const double kvb = m.kv_bytes_per_token_layer(p.kv_precision);
  const double eb_gpu = m.expert_bytes(p.gpu_expert_precision, p.group_size);
  const double eb_dram = m.expert_bytes(p.dram_expert_precision, p.group_size);
  const double eb_ssd = m.expert_bytes(p.ssd_expert_precision, p.group_size);
  const bool on_gpu = hw_.has_gpu() && p.prefill_device == Device::Gpu;
  const double share = p.attention_device == Device::Gpu ? p.kv_gpu_share : 0;
  const double ffn_act = k * (4 * d + 8 * f);
  // Causal attention: a prompt token attends to (position + 1) keys, (s + 1) / 2 on average.
  const double att_flops = m.attn_flops_per_position * (workload_.avg_prompt_len + 1) / 2;

  PhaseEstimate out;
  ResourceTimes total;
  double seconds = 0;
  for (const LayerClass& c : classes) {
    LayerWork w(hw_, dense_kernel_);
    const double dense_bytes = c.dense_params * kBf16;
    const double dense_flops = chunk * 2 * c.dense_params;
    const double kv_read = chunk * (workload_.avg_prompt_len + 1) / 2 * kvb;  // each query reads its keys
    if (on_gpu) {
      w.gpu(dense_flops, dense_bytes + chunk * (d * kBf16 * 4 + m.qkv_width * kBf16), chunk, n_chunk);
      w.part(&PartTimes::attention);
      w.gpu(chunk * att_flops, std::min(kv_read, tokens * kvb), chunk, n_chunk);
      if (!mem.prefill_hidden_on_gpu) {  // the batch's hidden states go out and come back each layer
        w.h2d(tokens * d * kBf16);
        w.d2h(tokens * d * kBf16);
        w.dram(2 * tokens * d * kBf16);
      }
      w.d2h((1 - share) * tokens * kvb);  // the new KV goes to DRAM
      w.dram((1 - share) * tokens * kvb);
    } else {
      w.cpu(dense_flops, dense_bytes + chunk * d * kBf16 * 4, chunk, n_chunk);
      w.part(&PartTimes::attention);
      w.cpu_prefill_attention(chunk * att_flops, std::min(kv_read, tokens * kvb), chunk * kvb,
                              workload_.avg_prompt_len, n_chunk);
    }
    w.part(&PartTimes::experts);
    if (c.moe) {
      const double p_batch = expected_distinct_experts(m.n_expert, m.top_k, tokens) / e;
      const double p_chunk = expected_distinct_experts(m.n_expert, m.top_k, chunk) / e;
      const double rows_chunk = chunk * k / (e * p_chunk);  // rows per expert a chunk touches
      const double dram_touched = c.dram * eb_dram * p_batch;
      const double ssd_touched = c.ssd * eb_ssd * p_batch;
      w.ssd(ssd_touched);
      if (on_gpu) {
        // Each layer's experts stream once per batch; every chunk then runs from GPU memory.
        w.h2d(dram_touched + ssd_touched);
        w.dram(dram_touched + 2 * ssd_touched);
        double resident_bytes = c.gpu * eb_gpu + c.dram * eb_dram + c.ssd * eb_ssd;
        w.gpu(chunk * k * 2 * m.expert_params, p_chunk * resident_bytes + chunk * ffn_act, rows_chunk, n_chunk);
      } else {
        w.cpu_experts(p.dram_expert_precision, chunk * k * 2 * m.expert_params,
                      p_chunk * (c.dram * eb_dram + c.ssd * eb_ssd) + chunk * ffn_act, rows_chunk, n_chunk);
        w.dram(ssd_touched);
      }
    }
    total.add(w.rt, c.count);
    out.parts.add(w.parts, c.count);
    seconds += c.count * wall_time(w.rt, p.overlap);
  }
  // lm_head for the last prompt token of each sequence: the first generated token.
  LayerWork head(hw_, dense_kernel_);
  head.part(&PartTimes::head);
  double head_flops = 2 * n_seqs * m.lm_head_params;
  double head_bytes = m.lm_head_params * kBf16 + n_seqs * m.n_vocab * kF32;
  if (on_gpu)
    head.gpu(head_flops, head_bytes, n_seqs, 1);
  else
    head.cpu(head_flops, head_bytes, n_seqs, 1);
  total.add(head.rt, 1);
  out.parts.add(head.parts, 1);
  seconds += wall_time(head.rt, p.overlap);

  out.per_layer.add(total, 1.0 / m.n_layer);
  out.seconds = seconds;
  out.binding = binding_of(total, p.overlap);
  out.tokens_per_s = seconds > 0 ? tokens / seconds : 0;
  return out;
}

Estimate CostModel::evaluate(const Policy& p, bool itemize) const {
  Estimate est;
  est.memory = memory(p, itemize);
  const int64_t requests = workload_.requests;
  const int64_t n = std::min<int64_t>(p.batch_size, requests);
  const double ctx = workload_.avg_prompt_len + workload_.gen_len / 2.0;
  const double steps = static_cast<double>(workload_.gen_len - 1);

  const std::vector<LayerClass> classes = layer_classes(shape_, p);
  auto batch_seconds = [&](double seqs, PhaseEstimate* prefill_out, PhaseEstimate* decode_out) {
    PhaseEstimate pre = prefill_of(p, classes, est.memory, seqs);
    PhaseEstimate dec = decode_step_of(p, classes, seqs, ctx);
    if (prefill_out) *prefill_out = pre;
    if (decode_out) *decode_out = dec;
    return pre.seconds + steps * dec.seconds;
  };
  est.batch_seconds = batch_seconds(static_cast<double>(n), &est.prefill, &est.decode);
  int64_t full = requests / n;
  int64_t rest = requests % n;
  est.n_batches = full + (rest > 0 ? 1 : 0);
  est.workload_seconds = full * est.batch_seconds;
  if (rest > 0) est.workload_seconds += batch_seconds(static_cast<double>(rest), nullptr, nullptr);
  est.tokens_per_s = est.workload_seconds > 0 && std::isfinite(est.workload_seconds)
                         ? static_cast<double>(requests) * workload_.gen_len / est.workload_seconds
                         : 0;
  return est;
}

}  // namespace ferry::planner
