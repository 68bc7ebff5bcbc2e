// The steps of the decode schedule, each a few tasks on the device's streams guarded by events. A
// task captures only a pointer to its micro-batch (Task's inline storage): nothing allocates.
#include <algorithm>
#include <array>

#include "exec/pipeline/pipeline_impl.h"

namespace ferry {

namespace {

TaskTag tag_of(TaskKind kind, int layer, int micro_batch) {
  return {kind, static_cast<int16_t>(layer), static_cast<int16_t>(micro_batch)};
}

// Decode attention of n_tok sequences, one new token each: stores K/V at their slots, attends.
void attend(const ModelConfig& c, const cpu::KvCacheLayer& kv, const cpu_target::QkvRows& qkv, int n_tok,
            const int32_t* slots, const int32_t* tables, int table_stride, const int32_t* n_ctx, float* out) {
  cpu::kv_cache_store(kv, slots, n_tok, qkv.k, qkv.v);
  cpu::AttentionParams p;
  p.n_head = c.n_head;
  p.sliding_window = c.sliding_window;
  cpu::attention_decode(qkv.q, kv, tables, table_stride, n_ctx, n_tok, p, out);
}

}  // namespace

void PipelinedModel::Impl::begin_layer_load(int layer) {
  if (layer < c.n_layer) {
    layer_half[layer] = next_half;
    next_half ^= 1;
  }
}

void PipelinedModel::Impl::issue_page(int layer, int page) {
  if (layer >= c.n_layer || !w.layers[layer].is_moe) return;
  const int h = layer_half[layer], g = n_pinned[layer];
  const auto [first, last] = page_slots(layer, page);
  if (first >= last) return;
  dev.wait(StreamKind::H2D, page_free[h][page]);  // the ring page's previous layer is done with it
  for (int s = first; s < last; ++s) {
    const cpu_target::PackedMlp& src = w.layers[layer].experts[g + s];
    cpu_target::PackedMlp& dst = ring[h][s];
    std::array<CopySegment, kMaxCopySegments> seg;
    int n = 0;
    for (auto [d, sm] : {std::pair{&dst.gate, &src.gate}, {&dst.up, &src.up}, {&dst.down, &src.down}}) {
      seg[n++] = {d->data.data(), sm->data.data(), sm->data.size()};
      if (sm->scales.size()) seg[n++] = {d->scales.data(), sm->scales.data(), sm->scales.size()};
      if (sm->zeros.size()) seg[n++] = {d->zeros.data(), sm->zeros.data(), sm->zeros.size()};
    }
    dev.copy(StreamKind::H2D, tag_of(TaskKind::ExpertPage, layer, page), ring_page[h][page], BufferId{},
             std::span<const CopySegment>(seg.data(), n));
    stats.streamed_bytes += src.bytes();
  }
  dev.record(page_ready[h][page], StreamKind::H2D);
  step_done();
}

void PipelinedModel::Impl::embed(Micro& m) {
  const BufferAccess acc[] = {{m.hidden, Access::Write}};
  dev.launch(StreamKind::Compute, tag_of(TaskKind::Embed, -1, m.j), acc, [m = &m] {
    Impl& s = *m->self;
    cpu_target::embed_tokens(s.w, m->tokens.data(), m->n_tok, typed<float>(s.dev, m->hidden));
  });
  step_done();
}

void PipelinedModel::Impl::pre_attention(int layer, Micro& m) {
  const BufferAccess pre[] = {{m.hidden, Access::Read}, {m.qkv_dev, Access::Write}};
  dev.launch(StreamKind::Compute, tag_of(TaskKind::PreAttention, layer, m.j), pre, [m = &m, layer] {
    Impl& s = *m->self;
    cpu_target::attention_input(s.c, s.w.layers[layer], s.rope, s.matmul, typed<float>(s.dev, m->hidden), m->n_tok,
                                m->positions.data(), s.attn_x, s.qkv_rows, s.qkv(m->qkv_dev, m->n_tok));
  });
  step_done();
  const TaskTag attn_tag = tag_of(TaskKind::Attention, layer, m.j);
  auto attention = [m = &m, layer](BufferId qkv, BufferId out) {
    Impl& s = *m->self;
    attend(s.c, s.kv[layer], s.qkv(qkv, m->n_tok), m->n_tok, m->slots.data(), m->tables.data(), s.max_blocks,
           m->n_ctx.data(), typed<float>(s.dev, out));
  };
  if (!host_attention) {  // attention on the device, over the KV cache in device memory
    const BufferAccess acc[] = {{m.qkv_dev, Access::Read}, {m.attn_dev, Access::Write}};
    dev.launch(StreamKind::Compute, attn_tag, acc, [attention, m = &m] { attention(m->qkv_dev, m->attn_dev); });
    step_done();
    return;
  }
  const int qkv_floats = m.n_tok * (c.q_dim() + 2 * c.kv_dim());
  dev.record(m.qkv_ready, StreamKind::Compute);
  dev.wait(StreamKind::D2H, m.qkv_ready);
  dev.copy(StreamKind::D2H, tag_of(TaskKind::OffloadQkv, layer, m.j), m.qkv_pin, m.qkv_dev, dev.data(m.qkv_pin),
           dev.data(m.qkv_dev), sizeof(float) * qkv_floats);
  dev.record(m.qkv_on_host, StreamKind::D2H);
  step_done();
  dev.wait(StreamKind::Host, m.qkv_on_host);
  const BufferAccess acc[] = {{m.qkv_pin, Access::Read}, {m.attn_pin, Access::Write}};
  dev.launch(StreamKind::Host, attn_tag, acc, [attention, m = &m] { attention(m->qkv_pin, m->attn_pin); });
  dev.record(m.attn_done, StreamKind::Host);
  step_done();
}

void PipelinedModel::Impl::load_hidden(int layer, Micro& m) {
  // The host waits for the CPU attention before it enqueues the load: the H2D FIFO then never holds a
  // copy that waits for the CPU, so expert pages queued behind it are never blocked (head-of-line).
  // The attention was enqueued two micro-batches ago (CGOPipe's lookahead), so this rarely waits.
  dev.synchronize(m.attn_done);
  dev.copy(StreamKind::H2D, tag_of(TaskKind::LoadHidden, layer, m.j), m.attn_dev, m.attn_pin, dev.data(m.attn_dev),
           dev.data(m.attn_pin), sizeof(float) * m.n_tok * c.q_dim());
  dev.record(m.attn_loaded, StreamKind::H2D);
  step_done();
}

void PipelinedModel::Impl::post_attention(int layer, int h, Micro& m) {
  const bool moe = w.layers[layer].is_moe;
  if (host_attention) dev.wait(StreamKind::Compute, m.attn_loaded);
  // O-proj, router; then the experts already resident (pinned) and the shared expert, while pages land
  const BufferAccess acc[] = {{m.attn_dev, Access::Read}, {m.hidden, Access::Write}};
  dev.launch(StreamKind::Compute, tag_of(TaskKind::PostAttention, layer, m.j), acc, [m = &m, layer, h] {
    Impl& s = *m->self;
    const cpu_target::CpuLayerWeights& L = s.w.layers[layer];
    float* hidden = typed<float>(s.dev, m->hidden);
    cpu_target::attention_output(s.c, L, s.matmul, typed<float>(s.dev, m->attn_dev), m->n_tok, s.attn_y, hidden);
    cpu_target::ffn_input(s.c, L, hidden, m->n_tok, s.ffn);
    if (L.is_moe)
      cpu_target::routed_expert_outputs(s.expert_of[h][layer].data(), 0, s.n_pinned[layer], s.matmul, s.c.d_model,
                                        s.ffn, s.mlp);
    cpu_target::shared_outputs(s.c, L, s.matmul, m->n_tok, s.ffn, s.mlp);
  });
  step_done();
  // then the streamed pages, in the order they were issued (cache-state order)
  for (int p = 0; moe && p < n_pages; ++p) {
    const auto [first, last] = page_slots(layer, p);
    if (first >= last) continue;
    dev.wait(StreamKind::Compute, page_ready[h][p]);
    const BufferAccess pacc[] = {{ring_page[h][p], Access::Read}};
    dev.launch(StreamKind::Compute, tag_of(TaskKind::Experts, layer, m.j), pacc, [m = &m, layer, h, first, last] {
      Impl& s = *m->self;
      const int g = s.n_pinned[layer];
      cpu_target::routed_expert_outputs(s.expert_of[h][layer].data(), g + first, g + last, s.matmul, s.c.d_model,
                                        s.ffn, s.mlp);
    });
    dev.record(page_free[h][p], StreamKind::Compute);
    step_done();
  }
  const BufferAccess cacc[] = {{m.hidden, Access::Write}};
  dev.launch(StreamKind::Compute, tag_of(TaskKind::Experts, layer, m.j), cacc, [m = &m, layer] {
    Impl& s = *m->self;
    const cpu_target::CpuLayerWeights& L = s.w.layers[layer];
    cpu_target::ffn_output(s.c, L, m->n_tok, s.ffn, typed<float>(s.dev, m->hidden));
    s.count_expert_use(layer, m->n_tok);
  });
  step_done();
  if (layer == c.n_layer - 1) lm_head(m);
}

void PipelinedModel::Impl::count_expert_use(int layer, int n_tok) {
  if (!w.layers[layer].is_moe) return;
  const int n = n_tok * c.n_expert_used;
  for (int i = 0; i < n; ++i) ++(ffn.topk_idx[i] < n_pinned[layer] ? stats.expert_hits : stats.expert_misses);
}

void PipelinedModel::Impl::lm_head(Micro& m) {
  const BufferAccess lacc[] = {{m.hidden, Access::Read}, {m.logits_dev, Access::Write}};
  dev.launch(StreamKind::Compute, tag_of(TaskKind::LmHead, c.n_layer - 1, m.j), lacc, [m = &m] {
    Impl& s = *m->self;
    cpu_target::final_logits(s.w, s.matmul, typed<float>(s.dev, m->hidden), m->n_tok, s.attn_x,
                             typed<float>(s.dev, m->logits_dev));
  });
  dev.record(m.logits_ready, StreamKind::Compute);
  dev.wait(StreamKind::D2H, m.logits_ready);
  dev.copy(StreamKind::D2H, tag_of(TaskKind::Logits, c.n_layer - 1, m.j), m.logits_pin, m.logits_dev,
           dev.data(m.logits_pin), dev.data(m.logits_dev), sizeof(float) * m.n_tok * c.n_vocab);
  dev.record(m.logits_done, StreamKind::D2H);
  step_done();
}

}  // namespace ferry
