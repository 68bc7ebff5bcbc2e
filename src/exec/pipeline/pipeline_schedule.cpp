// The schedule: decode as CGOPipe's loop over (layer, micro-batch), prefill per sequence chunk.
#include <algorithm>
#include <array>
#include <cstring>

#include "exec/pipeline/pipeline_impl.h"

namespace ferry {

namespace {
constexpr int kLookahead = 2;  // pre-attention and CPU attention run two micro-batches ahead (CGOPipe)
}  // namespace

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
  auto pre = [&](int f) { pre_attention(f / n_ub, mb[f % n_ub]); };  // flat index f = layer * n_ub + j

  // prologue: layer 0's streamed experts (unless the last step prefetched them), embeddings, the
  // attention of the first micro-batches
  if (!layer0_prefetched) {
    begin_layer_load(0);
    for (int p = 0; p < n_pages; ++p) issue_page(0, p);
  }
  layer0_prefetched = false;
  for (int j = 0; j < n_ub; ++j) embed(mb[j]);
  for (int f = 0; f < ahead; ++f) pre(f);

  // CGOPipe: the device runs (i, j) while the host attends (i, j+2) and the link carries layer i+1
  // (during the last layer: the next step's layer 0)
  for (int i = 0; i < L; ++i) {
    const int next = i + 1 < L ? i + 1 : 0;
    const int half = layer_half[i];  // before the next load takes the entry (L = 1: the same layer)
    begin_layer_load(next);
    for (int j = 0; j < n_ub; ++j) {
      Micro& m = mb[j];
      if (host_attention) load_hidden(i, m);
      for (int p = j; p < n_pages; p += n_ub) issue_page(next, p);  // page j of the next layer
      post_attention(i, half, m);
      if (i * n_ub + j + ahead < n_flat) pre(i * n_ub + j + ahead);
    }
  }
  layer0_prefetched = true;

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
      cpu_target::embed_tokens(s->w, s->pf_tokens.data(), s->pf_n_tok, typed<float>(s->dev, s->pf_hidden));
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
      const bool streamed = w.layers[i].is_moe && n_slot > 0;
      std::array<BufferAccess, 64> acc;
      int n_acc = 0;
      acc[n_acc++] = {pf_hidden, Access::Write};
      acc[n_acc++] = {pf_qkv, Access::Write};
      acc[n_acc++] = {pf_attn, Access::Write};
      for (int p = 0; streamed && p < n_pages; ++p) {
        dev.wait(StreamKind::Compute, page_ready[h][p]);
        if (n_acc < static_cast<int>(acc.size())) acc[n_acc++] = {ring_page[h][p], Access::Read};
      }
      // the whole layer on the device; the chunk's keys and values go to the KV cache (host or device)
      dev.launch(StreamKind::Compute, {TaskKind::Prefill, static_cast<int16_t>(i), -1},
                 std::span<const BufferAccess>(acc.data(), n_acc), [s = this, i, h] {
                   const int T = s->pf_n_tok;
                   const cpu_target::CpuLayerWeights& pl = s->w.layers[i];
                   float* hidden = typed<float>(s->dev, s->pf_hidden);
                   float* attn = typed<float>(s->dev, s->pf_attn);
                   const cpu_target::QkvRows q = s->qkv(s->pf_qkv, T);
                   cpu_target::attention_input(s->c, pl, s->rope, s->matmul, hidden, T, s->pf_positions.data(),
                                               s->attn_x, s->qkv_rows, q);
                   cpu::kv_cache_store(s->kv[i], s->pf_slots.data(), T, q.k, q.v);
                   cpu::AttentionParams ap;
                   ap.n_head = s->c.n_head;
                   ap.sliding_window = s->c.sliding_window;
                   cpu::attention_prefill(q.q, s->kv[i],
                                          s->block_tables.data() + static_cast<size_t>(s->pf_seq) * s->max_blocks,
                                          s->pf_n_past, T, ap, attn);
                   cpu_target::attention_output(s->c, pl, s->matmul, attn, T, s->attn_y, hidden);
                   cpu_target::ffn_input(s->c, pl, hidden, T, s->ffn);
                   if (pl.is_moe)
                     cpu_target::routed_expert_outputs(s->expert_of[h][i].data(), 0, s->c.n_expert, s->matmul,
                                                       s->c.d_model, s->ffn, s->mlp);
                   cpu_target::shared_outputs(s->c, pl, s->matmul, T, s->ffn, s->mlp);
                   cpu_target::ffn_output(s->c, pl, T, s->ffn, hidden);
                   s->count_expert_use(i, T);
                 });
      for (int p = 0; streamed && p < n_pages; ++p) dev.record(page_free[h][p], StreamKind::Compute);
      step_done();
    }
    const bool last_chunk = start + n_tok == total;
    const int first_logit = item.all_logits ? 0 : (last_chunk ? n_tok - 1 : n_tok);
    const int n_logit = n_tok - first_logit;
    if (n_logit > 0) {
      pf_first_logit = first_logit;
      const BufferAccess lacc[] = {{pf_hidden, Access::Read}, {pf_logits, Access::Write}};
      dev.launch(StreamKind::Compute, {TaskKind::LmHead, -1, -1}, lacc, [s = this, n_logit] {
        cpu_target::final_logits(
            s->w, s->matmul, typed<float>(s->dev, s->pf_hidden) + static_cast<size_t>(s->pf_first_logit) * s->c.d_model,
            n_logit, s->attn_x, typed<float>(s->dev, s->pf_logits));
      });
      dev.record(pf_logits_ready, StreamKind::Compute);
      dev.wait(StreamKind::D2H, pf_logits_ready);
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

}  // namespace ferry
