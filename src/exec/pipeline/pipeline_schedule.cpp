// The schedule: decode as CGOPipe's loop over (layer, micro-batch); prefill as the same steps over one
// chunk of a sequence's prompt, a layer at a time, the next layer's experts loading meanwhile.
#include <algorithm>
#include <cstring>

#include "exec/pipeline/pipeline_impl.h"
#include "ferry/exec/pipeline_buffers.h"

namespace ferry {

namespace {
constexpr int kLookahead = 2;  // pre-attention and CPU attention run two micro-batches ahead (CGOPipe)
}  // namespace

void PipelinedModel::Impl::prefetch_layer0() {
  if (!layer0_prefetched) {
    begin_layer_load(0);
    for (int p = 0; p < n_pages; ++p) issue_page(0, p);
  }
  layer0_prefetched = false;
}

void PipelinedModel::Impl::decode(std::span<const ForwardItem> items, std::span<const int32_t> idx) {
  const int n = static_cast<int>(idx.size()), L = c.n_layer, V = c.n_vocab;
  const int n_ub = (n + mu - 1) / mu;
  for (int j = 0; j < n_ub; ++j) {
    Micro& m = mb[j];
    m.prefill = false;
    m.n_tok = std::min(mu, n - j * mu);
    m.logit_row0 = 0;
    m.n_logit = m.n_tok;
    for (int t = 0; t < m.n_tok; ++t) {
      const int it = idx[j * mu + t];
      const int seq = items[it].seq;
      m.item[t] = it;
      m.tokens[t] = items[it].tokens[0];
      m.positions[t] = kv->length(seq);
      kv->reserve(seq, 1, &m.slots[t]);
      m.n_ctx[t] = kv->length(seq) + 1;
      std::memcpy(m.tables + static_cast<size_t>(t) * max_blocks, kv->block_table(seq), sizeof(int32_t) * max_blocks);
    }
  }
  const int ahead = std::min(kLookahead, n_ub);
  const int n_flat = L * n_ub;
  auto pre = [&](int f) { pre_attention(f / n_ub, mb[f % n_ub]); };  // flat index f = layer * n_ub + j

  // prologue: layer 0's streamed experts (unless the last step prefetched them), embeddings, the
  // attention of the first micro-batches
  prefetch_layer0();
  for (int j = 0; j < n_ub; ++j) embed(mb[j]);
  for (int f = 0; f < ahead; ++f) pre(f);

  // CGOPipe: the device runs (i, j) while the host attends (i, j+2) and the link carries layer i+1
  // (during the last layer: the next step's layer 0)
  micro_ptrs.clear();
  for (int j = 0; j < n_ub; ++j) micro_ptrs.push_back(&mb[j]);
  for (int i = 0; i < L; ++i) {
    const int next = i + 1 < L ? i + 1 : 0;
    const int half = layer_half[i];  // before the next load takes the entry (L = 1: the same layer)
    begin_layer_load(next);
    if (!demand || !dw.layers[i].is_moe) {
      for (int j = 0; j < n_ub; ++j) {
        Micro& m = mb[j];
        if (host_attention) load_hidden(i, m);
        for (int p = j; p < n_pages; p += n_ub) issue_page(next, p);  // page j of the next layer
        post_attention(i, half, m);
        if (i * n_ub + j + ahead < n_flat) pre(i * n_ub + j + ahead);
      }
      continue;
    }
    // Demand fetch: every micro-batch's router first (the look-ahead within this layer with them), then the
    // routed experts that did not come ahead are fetched, then the streamed experts and the look-ahead
    // into the next layer.
    for (int j = 0; j < n_ub; ++j) {
      Micro& m = mb[j];
      if (host_attention) load_hidden(i, m);
      for (int p = j; p < n_pages; p += n_ub) issue_page(next, p);
      post_attention_head(i, m);
      const int f = i * n_ub + j + ahead;
      if (f < n_flat && f / n_ub == i) pre(f);
    }
    fetch_misses(i, half, micro_ptrs);
    for (int j = 0; j < n_ub; ++j) {
      post_attention_tail(i, half, mb[j]);
      const int f = i * n_ub + j + ahead;
      if (f < n_flat && f / n_ub != i) pre(f);
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
      kv->advance(items[m.item[t]].seq, 1);
    }
    count_expert_use(m);
  }
  stats.decode_tokens += n;
}

void PipelinedModel::Impl::prefill(const ForwardItem& item, size_t first_row) {
  const int total = static_cast<int>(item.tokens.size()), L = c.n_layer, V = c.n_vocab;
  Micro& m = pf;
  size_t row = first_row;
  // A prompt that wants every position's logits runs in chunks the logits relay holds.
  const int chunk = item.all_logits ? std::min(prefill_cap, kPrefillLogitRows) : prefill_cap;
  for (int start = 0; start < total; start += chunk) {
    const int n_tok = std::min(chunk, total - start);
    const bool last_chunk = start + n_tok == total;
    m.prefill = true;
    m.n_tok = n_tok;
    m.seq = item.seq;
    m.n_past = kv->length(item.seq);
    m.logit_row0 = item.all_logits ? 0 : (last_chunk ? n_tok - 1 : n_tok);
    m.n_logit = n_tok - m.logit_row0;
    for (int t = 0; t < n_tok; ++t) {
      m.tokens[t] = item.tokens[start + t];
      m.positions[t] = m.n_past + t;
    }
    kv->reserve(item.seq, n_tok, m.slots);
    std::memcpy(m.tables, kv->block_table(item.seq), sizeof(int32_t) * max_blocks);

    prefetch_layer0();
    embed(m);
    for (int i = 0; i < L; ++i) {
      const int next = i + 1 < L ? i + 1 : 0;
      const int half = layer_half[i];
      begin_layer_load(next);
      for (int p = 0; p < n_pages; ++p) issue_page(next, p);  // the next layer loads during this one
      pre_attention(i, m);
      if (host_attention) load_hidden(i, m);
      post_attention_head(i, m);
      Micro* one[] = {&m};
      fetch_misses(i, half, one);  // demand fetch only
      post_attention_tail(i, half, m);
    }
    layer0_prefetched = true;
    dev.synchronize(m.logits_done);
    if (m.n_logit > 0) {
      std::memcpy(out.data() + row * V, dev.data(m.logits_pin), sizeof(float) * m.n_logit * V);
      row += m.n_logit;
    }
    count_expert_use(m);
    kv->advance(item.seq, n_tok);
    stats.prefill_tokens += n_tok;
  }
}

}  // namespace ferry
