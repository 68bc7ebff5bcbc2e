#include "ferry/exec/pipelined_model.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

#include "exec/pipeline/layer_math.h"
#include "exec/pipeline/pipeline_weights.h"
#include "ferry/error.h"
#include "ferry/rope_frequencies.h"

namespace ferry {

DType expert_dtype_of(planner::Precision p) {
  switch (p) {
    case planner::Precision::Bf16: return DType::BF16;
    case planner::Precision::Int8: return DType::I8;
    case planner::Precision::Int4: return DType::I4;
  }
  return DType::BF16;
}

namespace {
constexpr int kLookahead = 2;  // pre-attention runs two micro-batches ahead (CGOPipe)
template <class T>
T* typed(Device& d, BufferId b) {
  return static_cast<T*>(d.data(b));
}
}  // namespace

struct PipelinedModel::Impl {
  // ---- fixed at construction ----
  exec::PackedWeights w;
  const ModelConfig& c;
  Device& dev;
  planner::Policy policy;
  PipelineOptions opt;
  RopeFrequencies rope;
  int mu = 1, n_batch = 1, n_pages = 1, max_blocks = 0, prefill_cap = 0;
  bool host_attention = true;
  std::vector<int> n_pinned;                            // [L]
  std::vector<std::vector<cpu::ExpertWeights>> experts[2];  // [half][L][E]: pinned (host packed) or ring slot
  // The ring half each layer's streamed experts were last issued to; halves alternate per layer load,
  // so any layer count works and the next step's layer 0 can load during the last layer.
  std::vector<int> layer_half;
  int next_half = 0;
  bool layer0_prefetched = false;
  std::vector<exec::PackedMlp> ring[2];                 // [half][slot]
  int n_slot = 0;                                        // streamed experts per half (max over layers)
  std::vector<BufferId> ring_page[2];                   // [half][page] tracked ring pages
  std::vector<EventId> page_ready[2], page_free[2];

  // KV cache: one arena of blocks per layer; a block free list; block tables per sequence slot.
  std::vector<cpu::KvCacheLayer> kv;
  std::vector<uint16_t> kv_host;  // host arena (host attention)
  std::vector<int32_t> free_blocks;
  std::vector<int32_t> block_tables;  // [max_sequences][max_blocks]
  struct Seq {
    bool live = false;
    int n_past = 0;
    int n_blocks = 0;
  };
  std::vector<Seq> seqs;

  // ---- per micro-batch relays (device) and pinned staging (host) ----
  struct Micro {
    Impl* self = nullptr;
    int j = 0, n_tok = 0;
    BufferId hidden, qkv_dev, attn_dev, logits_dev;  // device: [μ, D], [μ, q+2kv], [μ, H*Dh], [μ, V]
    BufferId qkv_pin, attn_pin, logits_pin;          // host
    EventId qkv_ready, qkv_on_host, attn_done, attn_loaded, logits_done;
    std::vector<int32_t> tokens, positions, slots, n_ctx, item;  // [μ]
    std::vector<int32_t> tables;                                  // [μ][max_blocks]
  };
  std::vector<Micro> mb;
  // compute scratch (device), prefill relays
  exec::LayerScratch scratch;
  BufferId scratch_buf, pf_hidden, pf_qkv, pf_attn, pf_logits, pf_logits_pin;
  std::vector<int32_t> pf_tokens, pf_positions, pf_slots;
  int pf_n_tok = 0, pf_seq = 0, pf_n_past = 0, pf_first_logit = 0;
  std::vector<int32_t> order;      // decode item order (sorted by context)
  std::vector<float> out;          // logits [rows, V]
  std::vector<size_t> out_row;     // per item: first row
  PipelineStats stats;

  Impl(const WeightsF32& weights, Device& device, const planner::Policy& p, const PipelineOptions& o);
  void plan_memory();
  int alloc_block();
  void reserve_positions(int seq, int n_tok, int32_t* slots_out);
  exec::QkvView qkv(BufferId b, int n_tok) { return exec::qkv_view(typed<float>(dev, b), c, n_tok); }
  void step_done() {
    if (!policy.overlap) dev.synchronize();
  }
  // pipeline steps
  void begin_layer_load(int layer) {
    if (layer < c.n_layer) {
      layer_half[layer] = next_half;
      next_half ^= 1;
    }
  }
  void issue_page(int layer, int page);
  void embed(Micro& m);
  void pre_attention(int layer, Micro& m);
  void post_attention(int layer, Micro& m, int n_ub);
  void decode(std::span<const ForwardItem> items, std::span<const int32_t> idx);
  void prefill(const ForwardItem& item, size_t first_row);
};

PipelinedModel::Impl::Impl(const WeightsF32& weights, Device& device, const planner::Policy& p,
                           const PipelineOptions& o)
    : w(exec::pack_weights(weights, expert_dtype_of(p.gpu_expert_precision))),
      c(w.config),
      dev(device),
      policy(p),
      opt(o) {
  if (c.attention != AttentionKind::Gqa) throw Error("the pipelined executor supports grouped-query attention only");
  if (policy.kv_precision != planner::Precision::Bf16)
    throw Error("policy: the pipelined executor keeps the KV cache in bf16; set kv_precision to bf16");
  if (policy.gpu_expert_precision != policy.dram_expert_precision)
    throw Error("policy: the pipelined executor streams experts at the precision they are pinned at; set "
                "gpu_expert_precision and dram_expert_precision to the same value");
  policy.validate_for(c, "policy");
  rope = rope_frequencies(c.rope, c.max_position, c.max_position);
  mu = static_cast<int>(std::max<int64_t>(1, policy.micro_batch));
  n_batch = static_cast<int>(std::max<int64_t>(mu, policy.batch_size));
  n_pages = static_cast<int>((n_batch + mu - 1) / mu);
  host_attention = policy.attention_device == planner::Device::Cpu;
  prefill_cap = std::max(opt.prefill_chunk_tokens, mu);
  plan_memory();
}

void PipelinedModel::Impl::plan_memory() {
  const int L = c.n_layer, E = c.n_expert, D = c.d_model, V = c.n_vocab, K = std::max(1, c.n_expert_used);
  const int qd = c.q_dim(), kd = c.kv_dim();
  dev.adopt("dense weights", w.embed.data(), w.dense_bytes());

  // pinned experts stay resident; streamed ones go through a double-buffered ring of pages
  n_pinned.assign(L, 0);
  for (int l = 0; l < L; ++l)
    if (w.layers[l].is_moe) {
      n_pinned[l] = policy.gpu_experts_per_layer.empty() ? E : policy.gpu_experts_per_layer[l];
      n_slot = std::max(n_slot, E - n_pinned[l]);
      size_t pinned_bytes = 0;
      for (int e = 0; e < n_pinned[l]; ++e) pinned_bytes += w.layers[l].experts[e].bytes();
      if (pinned_bytes)
        dev.adopt("pinned experts layer " + std::to_string(l), w.layers[l].experts[0].gate.data.data(), pinned_bytes);
    }
  if (n_slot > 0) {
    const exec::PackedMlp* proto = nullptr;
    for (const auto& l : w.layers)
      if (l.is_moe) proto = &l.experts[0];
    std::vector<float> zeros(static_cast<size_t>(c.d_expert) * D, 0.f);
    const DType dt = proto->gate.dtype;
    for (int h = 0; h < 2; ++h) {
      for (int s = 0; s < n_slot; ++s)
        ring[h].push_back(exec::PackedMlp{cpu::pack_matrix(zeros.data(), c.d_expert, D, dt),
                                          cpu::pack_matrix(zeros.data(), c.d_expert, D, dt),
                                          cpu::pack_matrix(zeros.data(), D, c.d_expert, dt)});
      for (int p = 0; p < n_pages; ++p) {
        const int first = p * n_slot / n_pages, last = (p + 1) * n_slot / n_pages;
        ring_page[h].push_back(dev.adopt("expert ring " + std::to_string(h) + " page " + std::to_string(p),
                                         ring[h][0].gate.data.data(), (last - first) * proto->bytes()));
        page_ready[h].push_back(dev.create_event());
        page_free[h].push_back(dev.create_event());
      }
    }
  }
  layer_half.assign(L, 0);
  for (int h = 0; h < 2; ++h) {
    experts[h].assign(L, {});
    for (int l = 0; l < L; ++l) {
      if (!w.layers[l].is_moe) continue;
      experts[h][l].resize(E);
      for (int e = 0; e < E; ++e)
        experts[h][l][e] = e < n_pinned[l] ? w.layers[l].experts[e].view() : ring[h][e - n_pinned[l]].view();
    }
  }

  // KV cache (bf16): host DRAM for host attention, device memory otherwise
  const int bs = opt.kv_block_size;
  max_blocks = (c.max_position + bs - 1) / bs;
  int64_t kv_tokens = opt.kv_cache_tokens ? opt.kv_cache_tokens
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

  // micro-batch relays
  mb.resize(n_pages);
  for (int j = 0; j < n_pages; ++j) {
    Micro& m = mb[j];
    const std::string s = " " + std::to_string(j);
    m.self = this;
    m.j = j;
    m.hidden = dev.alloc("hidden" + s, sizeof(float) * mu * D);
    m.qkv_dev = dev.alloc("qkv" + s, sizeof(float) * mu * (qd + 2 * kd));
    m.attn_dev = dev.alloc("attention out" + s, sizeof(float) * mu * qd);
    m.logits_dev = dev.alloc("logits" + s, sizeof(float) * mu * V);
    m.qkv_pin = dev.alloc_host("pinned qkv" + s, sizeof(float) * mu * (qd + 2 * kd));
    m.attn_pin = dev.alloc_host("pinned attention out" + s, sizeof(float) * mu * qd);
    m.logits_pin = dev.alloc_host("pinned logits" + s, sizeof(float) * mu * V);
    for (EventId* e : {&m.qkv_ready, &m.qkv_on_host, &m.attn_done, &m.attn_loaded, &m.logits_done}) *e = dev.create_event();
    for (auto* v : {&m.tokens, &m.positions, &m.slots, &m.n_ctx, &m.item}) v->assign(mu, 0);
    m.tables.assign(static_cast<size_t>(mu) * max_blocks, 0);
  }
  // compute scratch, sized for a prefill chunk
  const size_t P = prefill_cap;
  const size_t scratch_bytes = sizeof(float) * (2 * P * D + 2 * P * K * D + P * E + P) + sizeof(int32_t) * P * K +
                               sizeof(float) * P * K + sizeof(RouterChoice) * P + 6 * 64;
  scratch_buf = dev.alloc("compute scratch", scratch_bytes);
  auto* base = typed<std::byte>(dev, scratch_buf);
  auto carve = [&](size_t bytes) {
    std::byte* p = base;
    base += (bytes + 63) / 64 * 64;
    return p;
  };
  scratch.x = reinterpret_cast<float*>(carve(sizeof(float) * P * D));
  scratch.y = reinterpret_cast<float*>(carve(sizeof(float) * P * D));
  scratch.x_rep = reinterpret_cast<float*>(carve(sizeof(float) * P * K * D));
  scratch.y_rep = reinterpret_cast<float*>(carve(sizeof(float) * P * K * D));
  scratch.router_logits = reinterpret_cast<float*>(carve(sizeof(float) * P * std::max(E, 1)));
  scratch.gate = reinterpret_cast<float*>(carve(sizeof(float) * P));
  scratch.rows = reinterpret_cast<int32_t*>(carve(sizeof(int32_t) * P * K));
  scratch.row_weight = reinterpret_cast<float*>(carve(sizeof(float) * P * K));
  scratch.routing = reinterpret_cast<RouterChoice*>(carve(sizeof(RouterChoice) * P));
  pf_hidden = dev.alloc("prefill hidden", sizeof(float) * P * D);
  pf_qkv = dev.alloc("prefill qkv", sizeof(float) * P * (qd + 2 * kd));
  pf_attn = dev.alloc("prefill attention out", sizeof(float) * P * qd);
  pf_logits = dev.alloc("prefill logits", sizeof(float) * P * V);
  pf_logits_pin = dev.alloc_host("pinned prefill logits", sizeof(float) * P * V);
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

// ---- pipeline steps ----

void PipelinedModel::Impl::issue_page(int layer, int page) {
  if (layer >= c.n_layer || !w.layers[layer].is_moe) return;
  const int h = layer_half[layer], g = n_pinned[layer];
  const int n_stream = c.n_expert - g;
  const int first = std::min(page * n_slot / n_pages, n_stream), last = std::min((page + 1) * n_slot / n_pages, n_stream);
  if (first >= last) return;
  dev.wait(StreamKind::H2D, page_free[h][page]);  // the ring page's previous layer is done with it
  for (int s = first; s < last; ++s) {
    const exec::PackedMlp& src = w.layers[layer].experts[g + s];
    exec::PackedMlp& dst = ring[h][s];
    std::array<CopySegment, kMaxCopySegments> seg;
    int n = 0;
    for (auto [d, sm] : {std::pair{&dst.gate, &src.gate}, {&dst.up, &src.up}, {&dst.down, &src.down}}) {
      seg[n++] = {d->data.data(), sm->data.data(), sm->data.size()};
      if (sm->scales.size()) seg[n++] = {d->scales.data(), sm->scales.data(), sm->scales.size()};
      if (sm->zeros.size()) seg[n++] = {d->zeros.data(), sm->zeros.data(), sm->zeros.size()};
    }
    dev.copy(StreamKind::H2D, {TaskKind::ExpertPage, static_cast<int16_t>(layer), static_cast<int16_t>(page)},
             ring_page[h][page], BufferId{}, std::span<const CopySegment>(seg.data(), n));
    stats.streamed_bytes += src.bytes();
  }
  dev.record(page_ready[h][page], StreamKind::H2D);
  step_done();
}

void PipelinedModel::Impl::embed(Micro& m) {
  const BufferAccess acc[] = {{m.hidden, Access::Write}};
  dev.launch(StreamKind::Compute, {TaskKind::Embed, -1, static_cast<int16_t>(m.j)}, acc, [m = &m] {
    Impl& s = *m->self;
    cpu::embedding_gather(s.w.embed.data(), DType::F32, s.c.n_vocab, s.c.d_model, m->tokens.data(), m->n_tok,
                          typed<float>(s.dev, m->hidden));
  });
  step_done();
}

void PipelinedModel::Impl::pre_attention(int layer, Micro& m) {
  const TaskTag tag{TaskKind::PreAttention, static_cast<int16_t>(layer), static_cast<int16_t>(m.j)};
  const BufferAccess pre[] = {{m.hidden, Access::Read}, {m.qkv_dev, Access::Write}};
  dev.launch(StreamKind::Compute, tag, pre, [m = &m, layer] {
    Impl& s = *m->self;
    exec::pre_attention(s.c, s.w.layers[layer], s.rope, typed<float>(s.dev, m->hidden), m->n_tok,
                        m->positions.data(), s.qkv(m->qkv_dev, m->n_tok), s.scratch);
  });
  step_done();
  const TaskTag attn_tag{TaskKind::Attention, static_cast<int16_t>(layer), static_cast<int16_t>(m.j)};
  auto attention = [m = &m, layer](BufferId qkv, BufferId attn_out) {
    Impl& s = *m->self;
    exec::attention_decode_step(s.c, s.kv[layer], s.qkv(qkv, m->n_tok), m->n_tok, m->slots.data(), m->tables.data(),
                                s.max_blocks, m->n_ctx.data(), typed<float>(s.dev, attn_out));
  };
  if (!host_attention) {
    const BufferAccess acc[] = {{m.qkv_dev, Access::Read}, {m.attn_dev, Access::Write}};
    dev.launch(StreamKind::Compute, attn_tag, acc, [attention, m = &m] { attention(m->qkv_dev, m->attn_dev); });
    step_done();
    return;
  }
  const int qkv_floats = m.n_tok * (c.q_dim() + 2 * c.kv_dim());
  dev.record(m.qkv_ready, StreamKind::Compute);
  dev.wait(StreamKind::D2H, m.qkv_ready);
  dev.copy(StreamKind::D2H, {TaskKind::OffloadQkv, static_cast<int16_t>(layer), static_cast<int16_t>(m.j)}, m.qkv_pin,
           m.qkv_dev, dev.data(m.qkv_pin), dev.data(m.qkv_dev), sizeof(float) * qkv_floats);
  dev.record(m.qkv_on_host, StreamKind::D2H);
  step_done();
  dev.wait(StreamKind::Host, m.qkv_on_host);
  const BufferAccess acc[] = {{m.qkv_pin, Access::Read}, {m.attn_pin, Access::Write}};
  dev.launch(StreamKind::Host, attn_tag, acc, [attention, m = &m] { attention(m->qkv_pin, m->attn_pin); });
  dev.record(m.attn_done, StreamKind::Host);
  step_done();
}

void PipelinedModel::Impl::post_attention(int layer, Micro& m, int n_ub) {
  const int16_t l16 = static_cast<int16_t>(layer), j16 = static_cast<int16_t>(m.j);
  const int h = layer_half[layer];  // read before the next load may reuse this layer's entry (L = 1)
  const int next_layer = layer + 1 < c.n_layer ? layer + 1 : 0;
  if (host_attention) {  // LoadH: the attention output back to the device
    dev.wait(StreamKind::H2D, m.attn_done);
    dev.copy(StreamKind::H2D, {TaskKind::LoadHidden, l16, j16}, m.attn_dev, m.attn_pin, dev.data(m.attn_dev),
             dev.data(m.attn_pin), sizeof(float) * m.n_tok * c.q_dim());
    dev.record(m.attn_loaded, StreamKind::H2D);
    step_done();
  }
  // Page j of the next layer's streamed experts (pages p with p % n_ub == j; during the last layer, of
  // the next step's layer 0), after hidden(i, j) so the small hidden load is not stuck behind a page.
  if (m.j == 0) begin_layer_load(next_layer);
  for (int p = m.j; p < n_pages; p += n_ub) issue_page(next_layer, p);
  if (next_layer == 0 && m.j == n_ub - 1) layer0_prefetched = true;

  if (host_attention) dev.wait(StreamKind::Compute, m.attn_loaded);
  const BufferAccess acc[] = {{m.attn_dev, Access::Read}, {m.hidden, Access::Write}};
  dev.launch(StreamKind::Compute, {TaskKind::PostAttention, l16, j16}, acc, [m = &m, layer] {
    Impl& s = *m->self;
    const exec::PackedLayer& pl = s.w.layers[layer];
    exec::post_attention(s.c, pl, typed<float>(s.dev, m->attn_dev), typed<float>(s.dev, m->hidden), m->n_tok,
                         s.scratch);
    if (pl.is_moe) exec::run_experts(s.c, s.experts[0][layer], 0, s.n_pinned[layer], m->n_tok, s.scratch);
  });
  step_done();
  if (w.layers[layer].is_moe) {
    // cache-state order: pinned experts ran above; then the pages, earliest issued first
    const int g = n_pinned[layer], n_stream = c.n_expert - g;
    for (int p = 0; p < n_pages; ++p) {
      const int first = std::min(p * n_slot / n_pages, n_stream), last = std::min((p + 1) * n_slot / n_pages, n_stream);
      if (first >= last) continue;
      dev.wait(StreamKind::Compute, page_ready[h][p]);
      const BufferAccess pacc[] = {{ring_page[h][p], Access::Read}};
      dev.launch(StreamKind::Compute, {TaskKind::Experts, l16, j16}, pacc, [m = &m, layer, first, last, h] {
        Impl& s = *m->self;
        const int g = s.n_pinned[layer];
        exec::run_experts(s.c, s.experts[h][layer], g + first, g + last, m->n_tok, s.scratch);
      });
      dev.record(page_free[h][p], StreamKind::Compute);
      step_done();
    }
  }
  const BufferAccess cacc[] = {{m.hidden, Access::Write}};
  dev.launch(StreamKind::Compute, {TaskKind::Experts, l16, j16}, cacc, [m = &m, layer] {
    Impl& s = *m->self;
    const exec::PackedLayer& pl = s.w.layers[layer];
    exec::combine(s.c, pl, typed<float>(s.dev, m->hidden), m->n_tok, s.scratch);
    if (pl.is_moe)
      for (int t = 0; t < m->n_tok; ++t)
        for (int k = 0; k < s.scratch.routing[t].k; ++k)
          ++(s.scratch.routing[t].expert[k] < s.n_pinned[layer] ? s.stats.expert_hits : s.stats.expert_misses);
  });
  step_done();
  if (layer == c.n_layer - 1) {
    const BufferAccess lacc[] = {{m.hidden, Access::Read}, {m.logits_dev, Access::Write}};
    dev.launch(StreamKind::Compute, {TaskKind::LmHead, l16, j16}, lacc, [m = &m] {
      Impl& s = *m->self;
      exec::lm_head(s.w, typed<float>(s.dev, m->hidden), m->n_tok, s.scratch.x, typed<float>(s.dev, m->logits_dev));
    });
    dev.record(m.qkv_ready, StreamKind::Compute);
    dev.wait(StreamKind::D2H, m.qkv_ready);
    dev.copy(StreamKind::D2H, {TaskKind::Logits, l16, j16}, m.logits_pin, m.logits_dev, dev.data(m.logits_pin),
             dev.data(m.logits_dev), sizeof(float) * m.n_tok * c.n_vocab);
    dev.record(m.logits_done, StreamKind::D2H);
    step_done();
  }
}

void PipelinedModel::Impl::decode(std::span<const ForwardItem> items, std::span<const int32_t> idx) {
  const int n = static_cast<int>(idx.size()), L = c.n_layer, V = c.n_vocab;
  const int n_ub = (n + mu - 1) / mu;
  for (int j = 0; j < n_ub; ++j) {
    Micro& m = mb[j];
    m.n_tok = std::min(mu, n - j * mu);
    for (int t = 0; t < m.n_tok; ++t) {
      const int it = idx[j * mu + t];
      const ForwardItem& item = items[it];
      m.item[t] = it;
      m.tokens[t] = item.tokens[0];
      m.positions[t] = seqs[item.seq].n_past;
      reserve_positions(item.seq, 1, &m.slots[t]);
      m.n_ctx[t] = seqs[item.seq].n_past + 1;
      std::memcpy(m.tables.data() + static_cast<size_t>(t) * max_blocks,
                  block_tables.data() + static_cast<size_t>(item.seq) * max_blocks, sizeof(int32_t) * max_blocks);
    }
  }
  const int ahead = std::min(kLookahead, n_ub);
  const int n_flat = L * n_ub;
  // prologue: layer 0's streamed experts, embeddings, attention of the first micro-batches
  if (!layer0_prefetched) {
    begin_layer_load(0);
    for (int p = 0; p < n_pages; ++p) issue_page(0, p);
  }
  layer0_prefetched = false;
  for (int j = 0; j < n_ub; ++j) embed(mb[j]);
  for (int f = 0; f < ahead; ++f) pre_attention(f / n_ub, mb[f % n_ub]);
  // CGOPipe: the device runs (i, j) while the host attends (i, j+2) and the link carries layer i+1
  for (int i = 0; i < L; ++i)
    for (int j = 0; j < n_ub; ++j) {
      post_attention(i, mb[j], n_ub);
      const int f = i * n_ub + j + ahead;
      if (f < n_flat) pre_attention(f / n_ub, mb[f % n_ub]);
    }
  // wait for the logits only: the next step's layer 0 keeps loading meanwhile
  for (int j = 0; j < n_ub; ++j) dev.synchronize(mb[j].logits_done);
  for (int j = 0; j < n_ub; ++j) {
    const Micro& m = mb[j];
    for (int t = 0; t < m.n_tok; ++t) {
      std::memcpy(out.data() + out_row[m.item[t]] * V, typed<float>(dev, m.logits_pin) + static_cast<size_t>(t) * V,
                  sizeof(float) * V);
      ++seqs[items[m.item[t]].seq].n_past;
    }
  }
  stats.decode_tokens += n;
}

void PipelinedModel::Impl::prefill(const ForwardItem& item, size_t first_row) {
  const int total = static_cast<int>(item.tokens.size()), L = c.n_layer, V = c.n_vocab;
  size_t row = first_row;
  for (int start = 0; start < total; start += prefill_cap) {
    const int n_tok = std::min(prefill_cap, total - start);
    pf_n_tok = n_tok;
    pf_seq = item.seq;
    pf_n_past = seqs[item.seq].n_past;
    for (int t = 0; t < n_tok; ++t) {
      pf_tokens[t] = item.tokens[start + t];
      pf_positions[t] = pf_n_past + t;
    }
    reserve_positions(item.seq, n_tok, pf_slots.data());
    const BufferAccess eacc[] = {{pf_hidden, Access::Write}};
    dev.launch(StreamKind::Compute, {TaskKind::Embed, -1, -1}, eacc, [s = this] {
      cpu::embedding_gather(s->w.embed.data(), DType::F32, s->c.n_vocab, s->c.d_model, s->pf_tokens.data(),
                            s->pf_n_tok, typed<float>(s->dev, s->pf_hidden));
    });
    if (!layer0_prefetched) {
      begin_layer_load(0);
      for (int p = 0; p < n_pages; ++p) issue_page(0, p);
    }
    layer0_prefetched = false;
    for (int i = 0; i < L; ++i) {
      begin_layer_load(i + 1);
      for (int p = 0; p < n_pages; ++p) issue_page(i + 1, p);  // prefetch the next layer during this one
      const int h = layer_half[i];
      std::array<BufferAccess, 64> acc;
      int n_acc = 0;
      acc[n_acc++] = {pf_hidden, Access::Write};
      acc[n_acc++] = {pf_qkv, Access::Write};
      acc[n_acc++] = {pf_attn, Access::Write};
      if (w.layers[i].is_moe && n_slot > 0)
        for (int p = 0; p < n_pages && n_acc < 64; ++p) {
          dev.wait(StreamKind::Compute, page_ready[h][p]);
          acc[n_acc++] = {ring_page[h][p], Access::Read};
        }
      dev.launch(StreamKind::Compute, {TaskKind::Prefill, static_cast<int16_t>(i), -1},
                 std::span<const BufferAccess>(acc.data(), n_acc), [s = this, i, half = h] {
                   const int T = s->pf_n_tok;
                   float* h = typed<float>(s->dev, s->pf_hidden);
                   const exec::QkvView q = s->qkv(s->pf_qkv, T);
                   float* attn = typed<float>(s->dev, s->pf_attn);
                   const exec::PackedLayer& pl = s->w.layers[i];
                   exec::pre_attention(s->c, pl, s->rope, h, T, s->pf_positions.data(), q, s->scratch);
                   cpu::kv_cache_store(s->kv[i], s->pf_slots.data(), T, q.k, q.v);
                   cpu::AttentionParams ap;
                   ap.n_head = s->c.n_head;
                   ap.sliding_window = s->c.sliding_window;
                   cpu::attention_prefill(q.q, s->kv[i], s->block_tables.data() + static_cast<size_t>(s->pf_seq) * s->max_blocks,
                                          s->pf_n_past, T, ap, attn);
                   exec::post_attention(s->c, pl, attn, h, T, s->scratch);
                   if (pl.is_moe) exec::run_experts(s->c, s->experts[half][i], 0, s->c.n_expert, T, s->scratch);
                   exec::combine(s->c, pl, h, T, s->scratch);
                 });
      if (w.layers[i].is_moe)
        for (int p = 0; p < n_pages && n_slot > 0; ++p) dev.record(page_free[h][p], StreamKind::Compute);
      step_done();
    }
    const bool last_chunk = start + n_tok == total;
    const int first_logit = item.all_logits ? 0 : (last_chunk ? n_tok - 1 : n_tok);
    const int n_logit = n_tok - first_logit;
    if (n_logit > 0) {
      pf_first_logit = first_logit;
      const BufferAccess lacc[] = {{pf_hidden, Access::Read}, {pf_logits, Access::Write}};
      dev.launch(StreamKind::Compute, {TaskKind::LmHead, -1, -1}, lacc, [s = this, n_logit] {
        exec::lm_head(s->w, typed<float>(s->dev, s->pf_hidden) + static_cast<size_t>(s->pf_first_logit) * s->c.d_model,
                      n_logit, s->scratch.x, typed<float>(s->dev, s->pf_logits));
      });
      EventId& done = mb[0].qkv_ready;
      dev.record(done, StreamKind::Compute);
      dev.wait(StreamKind::D2H, done);
      dev.copy(StreamKind::D2H, {TaskKind::Logits, -1, -1}, pf_logits_pin, pf_logits, dev.data(pf_logits_pin),
               dev.data(pf_logits), sizeof(float) * n_logit * V);
    }
    dev.synchronize();
    if (n_logit > 0) {
      std::memcpy(out.data() + row * V, dev.data(pf_logits_pin), sizeof(float) * n_logit * V);
      row += n_logit;
    }
    seqs[item.seq].n_past += n_tok;
    stats.prefill_tokens += n_tok;
  }
}

// ---- Model interface ----

PipelinedModel::PipelinedModel(const WeightsF32& weights, Device& device, const planner::Policy& policy,
                               const PipelineOptions& options)
    : impl_(std::make_unique<Impl>(weights, device, policy, options)) {}
PipelinedModel::~PipelinedModel() {
  // the next step's layer 0 may still be loading from weights this object owns
  try {
    impl_->dev.synchronize();
  } catch (const std::exception&) {
  }
}

const ModelConfig& PipelinedModel::config() const { return impl_->c; }
const PipelineStats& PipelinedModel::stats() const { return impl_->stats; }
Device& PipelinedModel::device() { return impl_->dev; }

int PipelinedModel::add_sequence() {
  Impl& s = *impl_;
  for (size_t i = 0; i < s.seqs.size(); ++i)
    if (!s.seqs[i].live) {
      s.seqs[i] = Impl::Seq{true, 0, 0};
      return static_cast<int>(i);
    }
  if (static_cast<int>(s.seqs.size()) >= s.opt.max_sequences)
    throw Error("the pipelined executor holds at most " + std::to_string(s.opt.max_sequences) + " sequences");
  s.seqs.push_back(Impl::Seq{true, 0, 0});
  return static_cast<int>(s.seqs.size() - 1);
}

void PipelinedModel::free_sequence(int seq) {
  Impl& s = *impl_;
  FERRY_ASSERT(seq >= 0 && seq < static_cast<int>(s.seqs.size()) && s.seqs[seq].live);
  const int32_t* table = s.block_tables.data() + static_cast<size_t>(seq) * s.max_blocks;
  for (int b = 0; b < s.seqs[seq].n_blocks; ++b) s.free_blocks.push_back(table[b]);
  s.seqs[seq] = Impl::Seq{};
}

int PipelinedModel::sequence_length(int seq) const {
  FERRY_ASSERT(seq >= 0 && seq < static_cast<int>(impl_->seqs.size()) && impl_->seqs[seq].live);
  return impl_->seqs[seq].n_past;
}

std::span<const float> PipelinedModel::forward_view(std::span<const ForwardItem> items) {
  Impl& s = *impl_;
  const int V = s.c.n_vocab;
  s.out_row.clear();
  size_t rows = 0;
  for (const ForwardItem& it : items) {
    FERRY_ASSERT(it.seq >= 0 && it.seq < static_cast<int>(s.seqs.size()) && s.seqs[it.seq].live);
    for (int32_t t : it.tokens)
      if (t < 0 || t >= V) throw Error("token id " + std::to_string(t) + " is outside the vocabulary of " + std::to_string(V));
    s.out_row.push_back(rows);
    rows += it.all_logits ? it.tokens.size() : 1;
  }
  if (s.out.size() < rows * V) s.out.resize(rows * V);
  s.order.clear();
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].tokens.size() == 1)
      s.order.push_back(static_cast<int32_t>(i));
    else if (!items[i].tokens.empty())
      s.prefill(items[i], s.out_row[i]);
  }
  // decode: longest contexts first, so each micro-batch holds sequences of similar attention cost
  std::sort(s.order.begin(), s.order.end(), [&](int32_t a, int32_t b) {
    return s.seqs[items[a].seq].n_past > s.seqs[items[b].seq].n_past;
  });
  for (size_t first = 0; first < s.order.size(); first += s.n_batch) {
    const size_t n = std::min<size_t>(s.n_batch, s.order.size() - first);
    s.decode(items, std::span<const int32_t>(s.order.data() + first, n));
  }
  return std::span<const float>(s.out.data(), rows * V);
}

std::vector<float> PipelinedModel::forward(std::span<const ForwardItem> items) {
  std::span<const float> v = forward_view(items);
  return std::vector<float>(v.begin(), v.end());
}

}  // namespace ferry
