// The executor's memory, planned once at construction: every device buffer is carved (or adopted and
// charged) here, so a policy that does not fit fails before the first token, naming the buffer, and
// the hot path allocates nothing.
#include <algorithm>
#include <string>

#include "exec/cpu/exact_matmul.h"
#include "exec/pipeline/pipeline_impl.h"
#include "ferry/cpu_model.h"
#include "ferry/error.h"

namespace ferry {

namespace {

CpuModelOptions packing_options(const planner::Policy& p, const PipelineOptions& o) {
  CpuModelOptions c;
  c.expert_dtype = expert_dtype_of(p.gpu_expert_precision);
  c.group_size = o.group_size;
  return c;
}

}  // namespace

PipelinedModel::Impl::Impl(const WeightSource& weights, Device& device, const planner::Policy& p,
                           const PipelineOptions& o)
    : w(cpu_target::load_cpu_weights(weights, packing_options(p, o))),
      c(w.config),
      dev(device),
      policy(p),
      opt(o),
      matmul(&cpu_target::matmul_f32_activations) {
  if (c.n_expert_used > kMaxExpertsUsed)
    throw Error("models with more than " + std::to_string(kMaxExpertsUsed) +
                " active experts per token are not supported");
  if (policy.kv_precision != planner::Precision::Bf16)
    throw Error("policy: the pipelined executor keeps the KV cache in bf16; set kv_precision to bf16");
  if (policy.gpu_expert_precision != policy.dram_expert_precision)
    throw Error("policy: the pipelined executor streams experts at the precision they are pinned at; set "
                "gpu_expert_precision and dram_expert_precision to the same value");
  policy.validate_for(c, "policy");
  rope = rope_frequencies(c.rope, c.max_position, c.max_position);
  mu = static_cast<int>(std::max<int64_t>(1, policy.micro_batch));
  n_batch = static_cast<int>(std::max<int64_t>(mu, policy.batch_size));
  n_pages = (n_batch + mu - 1) / mu;
  host_attention = policy.attention_device == planner::Device::Cpu;
  prefill_cap = std::max(opt.prefill_chunk_tokens, mu);
  plan_memory();
}

void PipelinedModel::Impl::plan_memory() {
  // Attention, router, shared experts, dense MLPs and lm_head live on the device; the token embeddings
  // stay in host memory (a lookup per token, as the planner assumes).
  dev.adopt("dense weights", w.lm_head.data.data(), w.dense_bytes());
  plan_experts();
  plan_kv_cache();
  plan_relays();
}

std::pair<int, int> PipelinedModel::Impl::page_slots(int layer, int page) const {
  const int n_stream = c.n_expert - n_pinned[layer];
  return {std::min(page * n_slot / n_pages, n_stream), std::min((page + 1) * n_slot / n_pages, n_stream)};
}

void PipelinedModel::Impl::plan_experts() {
  const int L = c.n_layer, E = c.n_expert, D = c.d_model;
  // Experts on the GPU tier (policy.gpu_experts_per_layer) stay resident; the DRAM and SSD tiers are
  // both streamed from the packed weights in host memory (the whole model is in DRAM here).
  n_pinned.assign(L, 0);
  for (int l = 0; l < L; ++l)
    if (w.layers[l].is_moe) {
      n_pinned[l] = std::clamp(policy.gpu_experts_per_layer[l], 0, E);
      n_slot = std::max(n_slot, E - n_pinned[l]);
      size_t pinned_bytes = 0;
      for (int e = 0; e < n_pinned[l]; ++e) pinned_bytes += w.layers[l].experts[e].bytes();
      if (pinned_bytes)
        dev.adopt("pinned experts layer " + std::to_string(l), w.layers[l].experts[0].gate.data.data(), pinned_bytes);
    }
  if (n_slot > 0) {
    const cpu_target::PackedMlp* proto = nullptr;
    for (const auto& l : w.layers)
      if (l.is_moe) proto = &l.experts[0];
    std::vector<float> zeros(static_cast<size_t>(c.d_expert) * D, 0.f);
    cpu::QuantOptions q;
    q.group_size = opt.group_size;
    const DType dt = proto->gate.dtype;
    for (int h = 0; h < 2; ++h) {
      for (int s = 0; s < n_slot; ++s)
        ring[h].push_back(cpu_target::PackedMlp{cpu::pack_matrix(zeros.data(), c.d_expert, D, dt, q),
                                                cpu::pack_matrix(zeros.data(), c.d_expert, D, dt, q),
                                                cpu::pack_matrix(zeros.data(), D, c.d_expert, dt, q)});
      for (int p = 0; p < n_pages; ++p) {
        const int first = p * n_slot / n_pages, last = (p + 1) * n_slot / n_pages;
        ring_page[h].push_back(dev.adopt("expert ring " + std::to_string(h) + " page " + std::to_string(p),
                                         ring[h][std::min(first, n_slot - 1)].gate.data.data(),
                                         (last - first) * proto->bytes()));
        page_ready[h].push_back(dev.create_event());
        page_free[h].push_back(dev.create_event());
      }
    }
  }
  layer_half.assign(L, 0);
  for (int h = 0; h < 2; ++h) {
    expert_of[h].assign(L, {});
    for (int l = 0; l < L; ++l) {
      if (!w.layers[l].is_moe) continue;
      expert_of[h][l].resize(E);
      for (int e = 0; e < E; ++e)
        expert_of[h][l][e] = e < n_pinned[l] ? &w.layers[l].experts[e] : &ring[h][e - n_pinned[l]];
    }
  }
}

void PipelinedModel::Impl::plan_kv_cache() {
  // bf16, paged: host DRAM for host attention, device memory when attention runs on the device
  const int L = c.n_layer, bs = opt.kv_block_size;
  max_blocks = (c.max_position + bs - 1) / bs;
  const int64_t kv_tokens = opt.kv_cache_tokens ? opt.kv_cache_tokens
                                                : std::min<int64_t>(int64_t{opt.max_sequences} * c.max_position, 65536);
  const int n_block = static_cast<int>((kv_tokens + bs - 1) / bs);
  const size_t layer_elems = static_cast<size_t>(n_block) * c.n_head_kv * bs * c.head_dim;  // K or V
  uint16_t* arena = nullptr;
  if (host_attention) {
    kv_host.assign(layer_elems * 2 * L, 0);
    arena = kv_host.data();
  } else {
    arena = typed<uint16_t>(dev, dev.alloc("kv cache", layer_elems * 2 * L * sizeof(uint16_t)));
  }
  for (int l = 0; l < L; ++l) {
    cpu::KvCacheLayer k;
    k.k = arena + layer_elems * 2 * l;
    k.v = arena + layer_elems * (2 * l + 1);
    k.dtype = DType::BF16;
    k.n_block = n_block;
    k.block_size = bs;
    k.n_head_kv = c.n_head_kv;
    k.head_dim = c.head_dim;
    kv.push_back(k);
  }
  for (int b = n_block - 1; b >= 0; --b) free_blocks.push_back(b);
  block_tables.assign(static_cast<size_t>(opt.max_sequences) * max_blocks, 0);
  seqs.reserve(opt.max_sequences);
}

void PipelinedModel::Impl::plan_relays() {
  const int D = c.d_model, V = c.n_vocab, qd = c.q_dim(), kd = c.kv_dim();
  mb.resize(n_pages);
  for (int j = 0; j < n_pages; ++j) {
    Micro& m = mb[j];
    auto named = [j](const char* what) {  // "hidden 3" (appended, not prefixed: GCC 12 -Wrestrict)
      std::string n(what);
      n += ' ';
      n += std::to_string(j);
      return n;
    };
    m.self = this;
    m.j = j;
    m.hidden = dev.alloc(named("hidden"), sizeof(float) * mu * D);
    m.qkv_dev = dev.alloc(named("qkv"), sizeof(float) * mu * (qd + 2 * kd));
    m.attn_dev = dev.alloc(named("attention out"), sizeof(float) * mu * qd);
    m.logits_dev = dev.alloc(named("logits"), sizeof(float) * mu * V);
    m.qkv_pin = dev.alloc_host(named("pinned qkv"), sizeof(float) * mu * (qd + 2 * kd));
    m.attn_pin = dev.alloc_host(named("pinned attention out"), sizeof(float) * mu * qd);
    m.logits_pin = dev.alloc_host(named("pinned logits"), sizeof(float) * mu * V);
    for (EventId* e : {&m.qkv_ready, &m.qkv_on_host, &m.attn_done, &m.attn_loaded, &m.logits_ready, &m.logits_done})
      *e = dev.create_event();
    for (auto* v : {&m.tokens, &m.positions, &m.slots, &m.n_ctx, &m.item}) v->assign(mu, 0);
    m.tables.assign(static_cast<size_t>(mu) * max_blocks, 0);
  }
  // compute scratch, sized for a prefill chunk of P tokens
  const size_t P = prefill_cap;
  const size_t attn_bytes = sizeof(float) * P * (2 * D + qd + 2 * kd) + 3 * 64;
  scratch_buf = dev.alloc("compute scratch", attn_bytes + cpu_target::ffn_buffer_bytes(c, prefill_cap));
  auto* base = typed<std::byte>(dev, scratch_buf);
  auto carve = [&](size_t bytes) {
    std::byte* p = base;
    base += (bytes + 63) / 64 * 64;
    return reinterpret_cast<float*>(p);
  };
  attn_x = carve(sizeof(float) * P * D);
  qkv_rows = carve(sizeof(float) * P * (qd + 2 * kd));
  attn_y = carve(sizeof(float) * P * D);
  ffn = cpu_target::carve_ffn_buffers(c, prefill_cap, base);
  mlp.reserve(prefill_cap, D, std::max({c.d_expert, c.d_shared, c.d_ff_dense, 1}));
  mlp_buf = dev.adopt("expert scratch", mlp.x_rows.data(), mlp.bytes());

  pf_hidden = dev.alloc("prefill hidden", sizeof(float) * P * D);
  pf_qkv = dev.alloc("prefill qkv", sizeof(float) * P * (qd + 2 * kd));
  pf_attn = dev.alloc("prefill attention out", sizeof(float) * P * qd);
  pf_logits = dev.alloc("prefill logits", sizeof(float) * P * V);
  pf_logits_pin = dev.alloc_host("pinned prefill logits", sizeof(float) * P * V);
  pf_logits_ready = dev.create_event();
  for (auto* v : {&pf_tokens, &pf_positions, &pf_slots}) v->assign(P, 0);
  order.reserve(opt.max_sequences);
  out.reserve(static_cast<size_t>(opt.max_sequences) * V);
  out_row.reserve(opt.max_sequences);
}

int PipelinedModel::Impl::alloc_block() {
  if (free_blocks.empty())
    throw Error("KV cache full (" + std::to_string(kv[0].n_block) + " blocks of " + std::to_string(opt.kv_block_size) +
                " tokens); raise kv_cache_tokens or run fewer sequences");
  const int b = free_blocks.back();
  free_blocks.pop_back();
  return b;
}

void PipelinedModel::Impl::reserve_positions(int seq, int n_tok, int32_t* slots_out) {
  Seq& s = seqs[seq];
  if (s.n_past + n_tok > c.max_position)
    throw Error("sequence of " + std::to_string(s.n_past + n_tok) + " tokens exceeds the model's context of " +
                std::to_string(c.max_position));
  int32_t* table = block_tables.data() + static_cast<size_t>(seq) * max_blocks;
  for (int i = 0; i < n_tok; ++i) {
    const int pos = s.n_past + i;
    if (pos / opt.kv_block_size >= s.n_blocks) table[s.n_blocks++] = alloc_block();
    slots_out[i] = cpu::kv_slot(table, pos, opt.kv_block_size);
  }
}

}  // namespace ferry
