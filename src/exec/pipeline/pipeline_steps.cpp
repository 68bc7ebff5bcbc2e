// The steps of the schedule, each a few tasks on the device's streams guarded by events. Compute tasks
// call the device's op set with the stream context (on CUDA they enqueue kernels and return at once);
// only the attention task runs host code. A task captures only a pointer to its micro-batch (Task's
// inline storage): nothing allocates. Decode and prefill run the same steps: a micro-batch is either
// one token of each of its sequences or a chunk of one sequence's prompt.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>

#include "exec/device/host_ops.h"
#include "exec/pipeline/pipeline_impl.h"

namespace ferry {

namespace {

TaskTag tag_of(TaskKind kind, int layer, int micro_batch) {
  return {kind, static_cast<int16_t>(layer), static_cast<int16_t>(micro_batch)};
}

}  // namespace

void PipelinedModel::Impl::begin_layer_load(int layer) {
  if (layer >= c.n_layer) return;
  const int h = next_half;
  layer_half[layer] = h;
  next_half ^= 1;
  if (demand) std::fill(present[h].begin(), present[h].end(), uint8_t{0});  // the half now holds this layer
  if (n_ssd[layer] == 0) return;
  // The layer's SSD experts: read into staging half h once the half's previous layer has copied out of it.
  dev.wait(StreamKind::Host, ssd_free[h]);
  // The task captures its layer and half by value: the main thread may enqueue this half's next load before
  // the task has run.
  const BufferAccess acc[] = {{ssd_staging[h], Access::Write}};
  dev.launch(StreamKind::Host, tag_of(TaskKind::SsdRead, layer, -1), acc,
             [self = this, layer, h] { self->read_ssd_experts(layer, h); });
  dev.record(ssd_ready[h], StreamKind::Host);
  step_done();
}

void PipelinedModel::Impl::read_ssd_experts(int layer, int h) {
  const int E = c.n_expert, first = E - n_ssd[layer];
  std::byte* staging = typed<std::byte>(dev, ssd_staging[h]);
  const uint64_t before = ssd->stats().bytes_read;
  for (int e0 = first; e0 < E; e0 += ssd->max_pinned()) {
    ssd_ids.clear();
    for (int e = e0; e < std::min(E, e0 + ssd->max_pinned()); ++e) ssd_ids.push_back(e);
    ssd->acquire(layer, ssd_ids, ssd_table.data());
    for (int e : ssd_ids)
      std::memcpy(staging + static_cast<size_t>(e - first) * image.bytes,
                  ssd_table[e]->gate.data.data() - image.offset[0], image.bytes);
    ssd->release();
  }
  stats.ssd_read_bytes += ssd->stats().bytes_read - before;
}

void PipelinedModel::Impl::issue_page(int layer, int page) {
  if (layer >= c.n_layer || !dw.layers[layer].is_moe) return;
  const int h = layer_half[layer], g = n_pinned[layer];
  const auto [first, last] = page_slots(layer, page);
  if (first >= last) return;
  dev.wait(StreamKind::H2D, page_free[h][page]);  // the ring page's previous layer is done with it
  copy_slots.clear();
  for (int s = first; s < last; ++s)  // demand fetch: only what the last forward routed here
    if (!demand || predicted[layer][g + s]) copy_slots.push_back(s);
  copy_experts(layer, page, copy_slots);
  dev.record(page_ready[h][page], StreamKind::H2D);
  step_done();
}

void PipelinedModel::Impl::copy_experts(int layer, int page_tag, std::span<const int> slots) {
  if (slots.empty()) return;
  const int h = layer_half[layer], g = n_pinned[layer];
  // Slots of DRAM-tier experts copy from the host store, those of SSD-tier experts from the staging half
  // their read filled (the last n_ssd experts of the layer).
  const int first_ssd = c.n_expert - n_ssd[layer];
  const bool has_ssd = g + slots.back() >= first_ssd;  // slots ascend
  if (has_ssd) dev.wait(StreamKind::H2D, ssd_ready[h]);
  std::array<CopySegment, kMaxCopySegments> seg;
  int n = 0, page = 0;
  bool from_ssd = false;
  auto flush = [&] {
    if (n == 0) return;
    dev.copy(StreamKind::H2D, tag_of(TaskKind::ExpertPage, layer, page_tag), ring_page[h][page],
             from_ssd ? ssd_staging[h] : store_buf, std::span<const CopySegment>(seg.data(), n));
    n = 0;
  };
  for (int s : slots) {
    const int e = g + s;
    int p = page;  // the ring page holding slot s (slots ascend, pages are ascending slot ranges)
    while (p + 1 < n_pages && ring_page_first[h][p + 1] <= s) ++p;
    if (n > 0 && ((e >= first_ssd) != from_ssd || p != page)) flush();  // one source and one page per copy
    from_ssd = e >= first_ssd;
    page = p;
    const void* src = from_ssd ? static_cast<const void*>(typed<std::byte>(dev, ssd_staging[h]) +
                                                          static_cast<size_t>(e - first_ssd) * image.bytes)
                               : static_cast<const void*>(stored[layer][e].gate.data.data() - image.offset[0]);
    seg[n++] = {ring[h][s].gate.data.data() - image.offset[0], src, image.bytes};
    stats.streamed_bytes += image.bytes;
    if (demand) present[h][s] = 1;
    if (n == kMaxCopySegments) flush();
  }
  flush();
  if (has_ssd) dev.record(ssd_free[h], StreamKind::H2D);
}

void PipelinedModel::Impl::load_ids(Micro& m) {
  // The ids ride on the compute stream: on the H2D link they would queue behind expert pages.
  const size_t ids_bytes = host_attention ? m.ids_offset(2) : m.ids_offset(4) + sizeof(int32_t) * m.cap * max_blocks;
  dev.copy(StreamKind::Compute, tag_of(TaskKind::Upload, -1, m.j), m.ids_dev, m.ids_pin, dev.data(m.ids_dev),
           dev.data(m.ids_pin), ids_bytes);
}

void PipelinedModel::Impl::embed(Micro& m) {
  load_ids(m);
  const BufferAccess acc[] = {{m.ids_dev, Access::Read}, {m.hidden, Access::Write}};
  dev.launch(StreamKind::Compute, tag_of(TaskKind::Embed, -1, m.j), acc, [m = &m](const StreamContext& ctx) {
    Impl& s = *m->self;
    s.ops.embed(ctx, s.dw, typed<int32_t>(s.dev, m->ids_dev), m->n_tok, typed<float>(s.dev, m->hidden));
  });
  step_done();
}

void PipelinedModel::Impl::pre_attention(int layer, Micro& m) {
  const BufferAccess pre[] = {{m.hidden, Access::Read}, {m.ids_dev, Access::Read}, {m.qkv_dev, Access::Write}};
  dev.launch(StreamKind::Compute, tag_of(TaskKind::PreAttention, layer, m.j), pre,
             [m = &m, layer](const StreamContext& ctx) {
               Impl& s = *m->self;
               const int32_t* positions = typed<int32_t>(s.dev, m->ids_dev) + m->cap;
               s.ops.attention_input(ctx, s.dw.layers[layer], typed<float>(s.dev, m->hidden), m->n_tok, positions,
                                     s.attn_scratch, s.qkv(m->qkv_dev, m->n_tok));
             });
  step_done();
  const TaskTag attn_tag = tag_of(TaskKind::Attention, layer, m.j);
  if (!host_attention) {  // attention on the device, over the KV cache in device memory
    const BufferAccess acc[] = {{m.qkv_dev, Access::Read}, {m.ids_dev, Access::Read}, {m.attn_dev, Access::Write}};
    dev.launch(StreamKind::Compute, attn_tag, acc, [m = &m, layer](const StreamContext& ctx) {
      Impl& s = *m->self;
      const int32_t* ids = typed<int32_t>(s.dev, m->ids_dev);
      const int32_t* slots = ids + 2 * m->cap;
      const int32_t* tables = ids + 4 * m->cap;
      const QkvRows q = s.qkv(m->qkv_dev, m->n_tok);
      float* out = typed<float>(s.dev, m->attn_dev);
      if (m->prefill)
        s.ops.attention_prefill(ctx, s.kv->layer(layer), q, m->n_tok, slots, tables, m->n_past, out);
      else
        s.ops.attention_decode(ctx, s.kv->layer(layer), q, m->n_tok, slots, tables, s.max_blocks, ids + 3 * m->cap,
                               out);
    });
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
  dev.launch(StreamKind::Host, attn_tag, acc, [m = &m, layer] {  // host code, on the host's copies of the ids
    Impl& s = *m->self;
    const QkvRows q = s.qkv_at(typed<float>(s.dev, m->qkv_pin), m->n_tok);
    float* out = typed<float>(s.dev, m->attn_pin);
    if (m->prefill)
      exec::host_attention_prefill(s.c, s.kv->layer(layer), q, m->n_tok, m->slots, m->tables, m->n_past, out);
    else
      exec::host_attention_decode(s.c, s.kv->layer(layer), q, m->n_tok, m->slots, m->tables, s.max_blocks,
                                  m->n_ctx, out);
  });
  dev.record(m.attn_done, StreamKind::Host);
  step_done();
}

void PipelinedModel::Impl::load_hidden(int layer, Micro& m) {
  // The host waits for the CPU attention before it enqueues the load: the H2D FIFO then never holds a
  // copy that waits for the CPU, so expert pages queued behind it are never blocked (head-of-line).
  // In decode the attention was enqueued two micro-batches ago (CGOPipe's lookahead): this rarely waits.
  dev.synchronize(m.attn_done);
  dev.copy(StreamKind::H2D, tag_of(TaskKind::LoadHidden, layer, m.j), m.attn_dev, m.attn_pin, dev.data(m.attn_dev),
           dev.data(m.attn_pin), sizeof(float) * m.n_tok * c.q_dim());
  dev.record(m.attn_loaded, StreamKind::H2D);
  step_done();
}

void PipelinedModel::Impl::post_attention(int layer, int h, Micro& m) {
  post_attention_head(layer, m);
  post_attention_tail(layer, h, m);
}

// The router (ffn_input) and the experts that need no copy: resident (pinned) ones, the shared expert.
void PipelinedModel::Impl::launch_ffn_start(int layer, Micro& m, bool with_o_proj, bool with_experts) {
  const BufferAccess acc[] = {{m.attn_dev, Access::Read}, {m.hidden, Access::Write}, {m.routing_dev, Access::Write}};
  dev.launch(StreamKind::Compute, tag_of(TaskKind::PostAttention, layer, m.j), acc,
             [m = &m, layer, with_o_proj, with_experts](const StreamContext& ctx) {
               Impl& s = *m->self;
               const LayerWeights& L = s.dw.layers[layer];
               float* hidden = typed<float>(s.dev, m->hidden);
               if (with_o_proj)
                 s.ops.attention_output(ctx, L, typed<float>(s.dev, m->attn_dev), m->n_tok, s.attn_scratch, hidden);
               FfnBuffers b = s.ffn;  // the routing goes to the micro-batch's log, copied back with the logits
               b.topk_idx = typed<int32_t>(s.dev, m->routing_dev) +
                            static_cast<size_t>(layer) * m->cap * std::max(s.c.n_expert_used, 1);
               b.expert_position = s.expert_positions(layer);
               s.ops.ffn_input(ctx, L, hidden, m->n_tok, b);
               if (!with_experts) return;
               if (L.is_moe && s.n_pinned[layer] > 0)  // resident experts: either half's table has them
                 s.ops.routed_experts(ctx, s.table[0][layer], 0, s.n_pinned[layer], m->n_tok, b);
               s.ops.shared_outputs(ctx, L, m->n_tok, b);
             });
  step_done();
}

void PipelinedModel::Impl::post_attention_head(int layer, Micro& m) {
  if (host_attention) dev.wait(StreamKind::Compute, m.attn_loaded);
  const bool fetch_after = demand && dw.layers[layer].is_moe;
  // O-proj, router; then the experts already resident (pinned) and the shared expert, while pages land.
  // With demand fetch the experts wait for the tail: the FFN scratch is one set, and every micro-batch's
  // router runs before any tail (the tail runs the router again: the same inputs, the same routing).
  launch_ffn_start(layer, m, true, !fetch_after);
  if (!fetch_after) return;
  // demand fetch: the layer's routing back to the host, which decides what to fetch
  const size_t K = std::max(c.n_expert_used, 1);
  const size_t offset = sizeof(int32_t) * static_cast<size_t>(layer) * m.cap * K;
  dev.record(m.routing_ready, StreamKind::Compute);
  dev.wait(StreamKind::D2H, m.routing_ready);
  dev.copy(StreamKind::D2H, tag_of(TaskKind::Logits, layer, m.j), m.routing_pin, m.routing_dev,
           typed<std::byte>(dev, m.routing_pin) + offset, typed<std::byte>(dev, m.routing_dev) + offset,
           sizeof(int32_t) * m.n_tok * K);
  dev.record(m.routing_on_host, StreamKind::D2H);
  step_done();
}

void PipelinedModel::Impl::launch_streamed_experts(int layer, int h, Micro& m, int first, int last) {
  // one task per ring page the slots [first, last) lie in: each reads its page
  for (int p = 0; p < n_pages; ++p) {
    const int pf = std::max(first, ring_page_first[h][p]);
    const int pl = std::min(last, p + 1 < n_pages ? ring_page_first[h][p + 1] : n_slot);
    if (pf >= pl) continue;
    const BufferAccess pacc[] = {{ring_page[h][p], Access::Read}};
    dev.launch(StreamKind::Compute, tag_of(TaskKind::Experts, layer, m.j), pacc,
               [m = &m, layer, h, pf, pl](const StreamContext& ctx) {
                 Impl& s = *m->self;
                 FfnBuffers b = s.ffn;
                 b.topk_idx = typed<int32_t>(s.dev, m->routing_dev) +
                              static_cast<size_t>(layer) * m->cap * std::max(s.c.n_expert_used, 1);
                 const int g = s.n_pinned[layer];
                 s.ops.routed_experts(ctx, s.table[h][layer], g + pf, g + pl, m->n_tok, b);
               });
  }
}

void PipelinedModel::Impl::post_attention_tail(int layer, int h, Micro& m) {
  const bool moe = dw.layers[layer].is_moe;
  if (moe && !demand) {
    // the streamed pages, in the order they were issued (cache-state order)
    for (int p = 0; p < n_pages; ++p) {
      // (named ints, not a structured binding: clang 14, which the fuzz build uses, cannot capture those)
      const std::pair<int, int> slots = page_slots(layer, p);
      if (slots.first >= slots.second) continue;
      dev.wait(StreamKind::Compute, page_ready[h][p]);
      launch_streamed_experts(layer, h, m, slots.first, slots.second);
      dev.record(page_free[h][p], StreamKind::Compute);
      step_done();
    }
  } else if (moe) {
    launch_ffn_start(layer, m, false, true);
    // Cache-state order, a ring page at a time (a copy orders against a page, not a slot): first the pages
    // whose experts all came ahead of time, then, once the fetched misses have landed, the pages they went to.
    const int n_stream = c.n_expert - n_pinned[layer];
    for (int late = 0; late < 2; ++late) {
      if (late)
        dev.wait(StreamKind::Compute, misses_done[h]);
      else
        for (int p = 0; p < n_pages; ++p) dev.wait(StreamKind::Compute, page_ready[h][p]);
      for (int p = 0; p < n_pages; ++p) {
        const int pf = ring_page_first[h][p];
        const int pl = std::min(n_stream, p + 1 < n_pages ? ring_page_first[h][p + 1] : n_slot);
        bool page_late = false;
        for (int s = pf; s < pl; ++s) page_late = page_late || fetched_late[s];
        if (page_late != static_cast<bool>(late)) continue;
        for (int s = pf; s < pl;) {  // runs of present slots (routed experts are all present now)
          if (!present[h][s]) {
            ++s;
            continue;
          }
          int e = s;
          while (e < pl && present[h][e]) ++e;
          launch_streamed_experts(layer, h, m, s, e);
          step_done();
          s = e;
        }
      }
    }
    for (int p = 0; p < n_pages; ++p) dev.record(page_free[h][p], StreamKind::Compute);
  }
  const BufferAccess cacc[] = {{m.hidden, Access::Write}, {m.routing_dev, Access::Read}};
  dev.launch(StreamKind::Compute, tag_of(TaskKind::Experts, layer, m.j), cacc,
             [m = &m, layer](const StreamContext& ctx) {
               Impl& s = *m->self;
               FfnBuffers b = s.ffn;
               b.topk_idx = typed<int32_t>(s.dev, m->routing_dev) +
                            static_cast<size_t>(layer) * m->cap * std::max(s.c.n_expert_used, 1);
               s.ops.ffn_output(ctx, s.dw.layers[layer], m->n_tok, b, typed<float>(s.dev, m->hidden));
             });
  step_done();
  if (layer == c.n_layer - 1) lm_head(m);
}

void PipelinedModel::Impl::fetch_misses(int layer, int h, std::span<Micro* const> micro) {
  if (!demand || !dw.layers[layer].is_moe) return;
  const int g = n_pinned[layer], n_stream = c.n_expert - g;
  const int K = std::max(c.n_expert_used, 1);
  std::fill(routed.begin(), routed.end(), uint8_t{0});
  const auto t0 = std::chrono::steady_clock::now();
  for (Micro* m : micro) {
    dev.synchronize(m->routing_on_host);
    const int32_t* idx = typed<int32_t>(dev, m->routing_pin) + static_cast<size_t>(layer) * m->cap * K;
    for (int i = 0; i < m->n_tok * K; ++i) routed[position[layer][idx[i]]] = 1;
  }
  stats.routing_wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::copy(routed.begin(), routed.end(), predicted[layer].begin());  // the next forward's prediction
  copy_slots.clear();
  int came = 0;
  for (int s = 0; s < n_stream; ++s) {
    fetched_late[s] = 0;
    came += present[h][s];
    stats.experts_prefetched_unused += present[h][s] && !routed[g + s];
    if (routed[g + s] && !present[h][s]) {
      copy_slots.push_back(s);
      fetched_late[s] = 1;
    }
  }
  stats.experts_prefetched += came;
  stats.experts_fetched_late += static_cast<int64_t>(copy_slots.size());
  const int64_t not_moved = n_stream - came - static_cast<int64_t>(copy_slots.size());
  stats.experts_not_moved += not_moved;
  stats.bytes_not_moved += static_cast<uint64_t>(not_moved) * image.bytes;
  if (!copy_slots.empty())
    for (int p = 0; p < n_pages; ++p) dev.wait(StreamKind::H2D, page_free[h][p]);
  copy_experts(layer, -1, copy_slots);
  dev.record(misses_done[h], StreamKind::H2D);
  step_done();
}

void PipelinedModel::Impl::lm_head(Micro& m) {
  if (m.n_logit > 0) {
    const BufferAccess lacc[] = {{m.hidden, Access::Read}, {m.logits_dev, Access::Write}};
    dev.launch(StreamKind::Compute, tag_of(TaskKind::LmHead, c.n_layer - 1, m.j), lacc,
               [m = &m](const StreamContext& ctx) {
                 Impl& s = *m->self;
                 const float* rows = typed<float>(s.dev, m->hidden) + static_cast<size_t>(m->logit_row0) * s.c.d_model;
                 s.ops.final_logits(ctx, s.dw, rows, m->n_logit, s.attn_scratch.x, typed<float>(s.dev, m->logits_dev));
               });
  }
  dev.record(m.logits_ready, StreamKind::Compute);
  dev.wait(StreamKind::D2H, m.logits_ready);
  if (m.n_logit > 0)
    dev.copy(StreamKind::D2H, tag_of(TaskKind::Logits, c.n_layer - 1, m.j), m.logits_pin, m.logits_dev,
             dev.data(m.logits_pin), dev.data(m.logits_dev), sizeof(float) * m.n_logit * c.n_vocab);
  dev.copy(StreamKind::D2H, tag_of(TaskKind::Logits, c.n_layer - 1, m.j), m.routing_pin, m.routing_dev,
           dev.data(m.routing_pin), dev.data(m.routing_dev),
           sizeof(int32_t) * c.n_layer * m.cap * std::max(c.n_expert_used, 1));
  dev.record(m.logits_done, StreamKind::D2H);
  step_done();
}

void PipelinedModel::Impl::count_expert_use(const Micro& m) {
  const int K = std::max(c.n_expert_used, 1);
  const int32_t* routing = typed<int32_t>(dev, m.routing_pin);
  for (int l = 0; l < c.n_layer; ++l) {
    if (!dw.layers[l].is_moe) continue;
    const int32_t* idx = routing + static_cast<size_t>(l) * m.cap * K;
    const std::vector<int32_t>& pos = position[l];
    for (int i = 0; i < m.n_tok * K; ++i) ++(pos[idx[i]] < n_pinned[l] ? stats.expert_hits : stats.expert_misses);
    if (adaptive)
      for (int i = 0; i < m.n_tok * K; ++i) heat[l][idx[i]] += 1.0f;
  }
  tokens_since_rerank += m.n_tok;
}

}  // namespace ferry
