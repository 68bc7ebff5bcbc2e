// The cpu target's forward: the structure of the reference forward (reference_model.cpp), batched over
// all tokens of a call and run on the CPU ops. Shapes use the legend of model_config.h.
#include "ferry/cpu_model.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>

#include "exec/cpu/cpu_weights.h"
#include "ferry/ops/matmul.h"
#include "exec/kv_cache.h"
#include "exec/cpu/layer_blocks.h"
#include "ferry/error.h"
#include "ferry/experts/routing_trace.h"
#include "ferry/experts/tiered_experts.h"
#include "ferry/ops/cpu_ops.h"
#include "ferry/rope_frequencies.h"
#include "ferry/router_math.h"

namespace ferry {

using cpu_target::CpuLayerWeights;
using cpu_target::CpuWeights;
using cpu_target::MatmulFn;

namespace {

constexpr size_t kKvAutoMaxBytes = size_t{4} << 30;

// Activation buffers are sized for the next multiple of 256 tokens: prefills of similar size then grow them
// (a fresh allocation, its pages faulted in) once, not at every slightly larger batch.
int reserved_tokens(int n_tok) { return (n_tok + 255) / 256 * 256; }

// Grows v to at least n elements; never shrinks, so a buffer allocates only when a forward is larger
// than every earlier one.
template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

struct Sequence {  // beside the KV cache's own state of the sequence
  bool live = false;
  int n_past = 0;
  uint64_t stamp = 0;           // the forward call that last used it (catches a sequence given twice)
};

// Splits a forward's time into its parts: lap(part) charges the time since the last lap to that part.
class PartClock {
 public:
  void start() { last_ = Clock::now(); }
  void lap(double& part) {
    const Clock::time_point now = Clock::now();
    part += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point last_;
};

struct ItemPlan {
  int seq = 0;
  int t0 = 0;  // first row of the item's tokens in the flattened batch
  int n_tok = 0;
  int n_past = 0;
  bool all_logits = false;
};

// Activation buffers of one forward, T tokens, S items, R logit rows.
struct Workspace {
  std::vector<ItemPlan> items;              // [S]
  std::vector<int32_t> token, pos;          // [T]
  std::vector<int32_t> slot;                // [T] KV cache slot of each new token
  std::vector<float> h;                     // [T, D] residual stream
  std::vector<float> x;                     // [T, D] normalised input of attention
  std::vector<float> y;                     // [T, D] output of attention
  std::vector<float> qkv;                   // [T, H*Dh + 2*Hkv*Dh]
  std::vector<float> q, attn;               // [T, H*Dh]
  std::vector<float> k, v;                  // [T, Hkv*Dh]
  std::vector<int32_t> decode_items;        // [S] items of one token, attended together
  std::vector<float> decode_q, decode_out;  // [S, H*Dh] when decode rows are not contiguous
  std::vector<int32_t> block_tables;        // [S, max blocks]
  std::vector<int32_t> n_ctx;               // [S]
  std::vector<float> final_x;               // [R, D]
  std::vector<float> logits;                // [R, V]
  // The FFN buffers (ferry/exec/layer_ops.h), carved into ffn. Huge pages: at a 4096-token prefill the
  // arena is about a GB, and faulting it in 4 KiB pages takes seconds on a VM.
  cpu::AlignedBytes ffn_arena;
  int ffn_tokens = 0;                       // tokens ffn is carved for
  FfnBuffers ffn;
};

}  // namespace

int64_t kv_cache_tokens_auto(const ModelConfig& c, const CpuModelOptions& o) {
  const size_t per_token = 2 * static_cast<size_t>(c.n_layer) * c.kv_dim() * dtype_size(o.kv_dtype);
  const int64_t wanted = static_cast<int64_t>(std::max(1, o.max_sequences)) * c.max_position;
  const int64_t cap = static_cast<int64_t>(kKvAutoMaxBytes / std::max<size_t>(per_token, 1));
  return std::max<int64_t>(o.kv_block_size, std::min(wanted, cap));
}

struct CpuModel::Impl {
  CpuModelOptions options;
  CpuWeights w;
  ModelWeights wv;  // views of w, as the layer code reads them
  RopeFrequencies rope;
  KvCache kv;
  std::vector<Sequence> seqs;  // by id
  int max_blocks_per_seq = 0;
  uint64_t n_forward = 0;
  size_t last_weight_bytes = 0;  // packed weights read by the last forward
  Workspace ws;
  // Matmuls of bf16 weights: f32 activations (exact products) unless options.bf16_activations.
  MatmulFn bf16_matmul = nullptr;
  std::vector<std::vector<const MlpWeights*>> expert_of;  // [L][E] for routed_expert_outputs
  // Experts streamed from a packed store's SSD file under a DRAM budget (null: all resident).
  std::unique_ptr<experts::TieredExperts> tier;
  std::vector<const MlpWeights*> tier_table;   // [E] views handed out by tier->acquire
  std::vector<std::vector<int>> routed_last;   // [L] experts each layer used in the last forward (prefetch)
  std::vector<int> routed_now;  // the routed experts of the layer being run that go through the tiers
  SubstitutionStats substitution;
  std::vector<std::vector<const MlpWeights*>> substitute_of;  // [L][E] views of w.substitutes
  std::unique_ptr<experts::RoutingTraceWriter> routing_trace;  // --record-routing
  CpuForwardTimes times;
  CpuPartSeconds* part = nullptr;  // the phase the running forward is charged to
  PartClock clock;

  Impl(CpuWeights weights, const CpuModelOptions& o, const experts::StoreManifest* store)
      : options(o),
        w(std::move(weights)),
        wv(cpu_target::view_of(w)),
        rope(rope_frequencies(w.config.rope, w.config.max_position, w.config.max_position)),
        kv(w.config, o.kv_dtype, o.kv_block_size,
           o.kv_cache_tokens > 0 ? o.kv_cache_tokens : kv_cache_tokens_auto(w.config, o)) {
    const ModelConfig& c = w.config;
    if (c.n_expert_used > kMaxExpertsUsed)
      throw Error("models with more than " + std::to_string(kMaxExpertsUsed) +
                  " active experts per token are not supported");
    bf16_matmul = o.bf16_activations ? MatmulFn(&cpu::matmul) : MatmulFn(&cpu::matmul_f32_activations);
    max_blocks_per_seq = (c.max_position + o.kv_block_size - 1) / o.kv_block_size;
    expert_of.resize(c.n_layer);
    for (int l = 0; l < c.n_layer; ++l)
      for (const MlpWeights& e : w.layers[l].experts) expert_of[l].push_back(&e);
    if (c.n_moe_layers() > 0 && w.layers[first_moe_layer()].experts.empty()) open_tiers(store);
    if (!o.record_routing.empty()) routing_trace = std::make_unique<experts::RoutingTraceWriter>(o.record_routing);
    seqs.reserve(std::max(1, o.max_sequences));
    const int n_seq = std::max(1, std::min(o.max_sequences, std::max(1, o.max_batch_tokens)));
    reserve(reserved_tokens(std::max(1, o.max_batch_tokens)), n_seq, n_seq);
  }

  const ModelConfig& config() const { return w.config; }

  int first_moe_layer() const {
    for (int l = 0; l < w.config.n_layer; ++l)
      if (w.config.layer_is_moe[l]) return l;
    return -1;
  }
  // The MoE layer after l (wrapping to the first: the next forward's), for prefetch.
  int next_moe_layer(int l) const {
    const int L = w.config.n_layer;
    for (int i = 1; i <= L; ++i)
      if (w.config.layer_is_moe[(l + i) % L]) return (l + i) % L;
    return -1;
  }

  void open_tiers(const experts::StoreManifest* store) {
    FERRY_ASSERT(store);  // load_from_store leaves the experts out only for a store under a budget
    const experts::ExpertTierFile* file = store->expert_file(options.expert_dtype, options.group_size);
    FERRY_ASSERT(file);
    experts::TieredExpertsOptions to;
    to.dram_budget_bytes = options.dram_expert_budget;
    to.eviction = experts::parse_eviction_policy(options.eviction);
    to.reader = experts::parse_reader_kind(options.reader);
    tier = std::make_unique<experts::TieredExperts>(*store, *file, std::move(to));
    tier_table.assign(w.config.n_expert, nullptr);
    routed_last.assign(w.config.n_layer, {});
    routed_now.reserve(w.config.n_expert);
    substitute_of.resize(w.config.n_layer);
    for (int l = 0; l < static_cast<int>(w.substitutes.size()); ++l)
      for (const MlpWeights& e : w.substitutes[l]) substitute_of[l].push_back(&e);
  }

  // The routed experts of layer l through the tiers: acquired (read from SSD on a miss) in groups that fit
  // the budget, the next MoE layer's experts of the last forward prefetched while this layer computes.
  size_t tiered_routed_outputs(int l) {
    const ModelConfig& c = w.config;
    const FfnBuffers& b = ws.ffn;
    routed_now.clear();
    size_t bytes = 0;
    for (int e = 0; e < c.n_expert; ++e) {
      if (b.offsets[e + 1] == b.offsets[e]) continue;
      if (substitutable(l, e)) {  // a miss every token of which weighs it lightly: the resident copy serves
        bytes += cpu_target::routed_expert_outputs(substitute_of[l].data(), e, e + 1, bf16_matmul, c.d_model, b);
        ++substitution.experts;
        substitution.assignments += b.offsets[e + 1] - b.offsets[e];
        substitution.bytes_not_read += tier->image().bytes;
        continue;
      }
      routed_now.push_back(e);
    }
    const int group = tier->max_pinned();
    for (size_t g = 0; g < routed_now.size(); g += group) {
      const std::span<const int> ids(routed_now.data() + g, std::min<size_t>(group, routed_now.size() - g));
      tier->acquire(l, ids, tier_table.data());
      if (g == 0) {
        const int next = next_moe_layer(l);
        if (next >= 0) tier->prefetch(next, routed_last[next]);
      }
      for (int e : ids) bytes += cpu_target::routed_expert_outputs(tier_table.data(), e, e + 1, bf16_matmul, c.d_model, b);
      tier->release();
    }
    // The next forward's prefetch: the experts this one read. Substituted ones are left out: a light weight
    // now predicts a light weight next time, and reading them ahead would spend the bytes substitution saves.
    routed_last[l] = routed_now;
    return bytes;
  }

  // Expert e of layer l (routed this forward) is not in DRAM and none of its tokens weighs it at or above
  // the substitution threshold.
  bool substitutable(int l, int e) const {
    if (w.substitutes.empty() || tier->holds(l, e)) return false;
    const FfnBuffers& b = ws.ffn;
    for (int i = b.offsets[e]; i < b.offsets[e + 1]; ++i)
      if (b.topk_weight[b.assign_slot[i]] >= options.substitute_below) return false;
    return true;
  }

  void reserve(int n_tok, int n_item, int n_rows) {
    const ModelConfig& c = w.config;
    const size_t T = n_tok, D = c.d_model, q_dim = c.q_dim(), kv_dim = c.kv_dim();
    grow(ws.items, n_item);
    grow(ws.token, T);
    grow(ws.pos, T);
    grow(ws.slot, T);
    grow(ws.h, T * D);
    grow(ws.x, T * D);
    grow(ws.y, T * D);
    grow(ws.qkv, T * (q_dim + 2 * kv_dim));
    grow(ws.q, T * q_dim);
    grow(ws.attn, T * q_dim);
    grow(ws.k, T * kv_dim);
    grow(ws.v, T * kv_dim);
    grow(ws.decode_items, n_item);
    grow(ws.decode_q, static_cast<size_t>(n_item) * q_dim);
    grow(ws.decode_out, static_cast<size_t>(n_item) * q_dim);
    grow(ws.block_tables, static_cast<size_t>(n_item) * max_blocks_per_seq);
    grow(ws.n_ctx, n_item);
    grow(ws.final_x, static_cast<size_t>(n_rows) * D);
    grow(ws.logits, static_cast<size_t>(n_rows) * c.n_vocab);
    if (n_tok > ws.ffn_tokens) {
      ws.ffn_arena = {};  // the old arena goes before the new one is faulted in
      ws.ffn_arena = cpu::AlignedBytes(ffn_buffer_bytes(c, n_tok));
      ws.ffn = carve_ffn_buffers(c, n_tok, ws.ffn_arena.data());
      ws.ffn_tokens = n_tok;
    }
  }

  Sequence& sequence(int seq) {
    FERRY_ASSERT(seq >= 0 && seq < static_cast<int>(seqs.size()) && seqs[seq].live);
    return seqs[seq];
  }
  const Sequence& sequence(int seq) const { return const_cast<Impl*>(this)->sequence(seq); }

  int add_sequence() {
    const int id = kv.add_sequence();  // the cache picks the id; this table follows it
    if (id >= static_cast<int>(seqs.size())) seqs.resize(id + 1);
    seqs[id].live = true;
    seqs[id].n_past = 0;
    return id;
  }

  void free_sequence(int seq) {
    Sequence& s = sequence(seq);
    kv.free_sequence(seq);
    s.live = false;
    s.n_past = 0;
  }

  // Checks every item before anything changes; returns the number of rows of logits.
  int validate(std::span<const ForwardItem> items) {
    const ModelConfig& c = w.config;
    ++n_forward;
    int n_rows = 0;
    int64_t blocks_needed = 0;
    for (const ForwardItem& it : items) {
      Sequence& s = sequence(it.seq);
      FERRY_ASSERT_MSG(s.stamp != n_forward, "a sequence appears twice in one forward");
      FERRY_ASSERT_MSG(!it.tokens.empty(), "a forward item without tokens");
      s.stamp = n_forward;
      const int n = static_cast<int>(it.tokens.size());
      if (s.n_past + n > c.max_position)
        throw Error("sequence of " + std::to_string(s.n_past + n) +
                    " tokens exceeds the model's context of " + std::to_string(c.max_position) +
                    " (max_position_embeddings in " + c.source + "); shorten the prompt or lower -n");
      for (int32_t t : it.tokens)
        if (t < 0 || t >= c.n_vocab)
          throw Error("token id " + std::to_string(t) + " is outside the vocabulary of " +
                      std::to_string(c.n_vocab));
      blocks_needed += kv.blocks_needed(it.seq, n);
      n_rows += it.all_logits ? n : 1;
    }
    if (blocks_needed > kv.blocks_free())
      throw Error("the KV cache is full: this step needs " + std::to_string(blocks_needed) +
                  " more blocks of " + std::to_string(kv.block_size()) + " tokens but " +
                  std::to_string(kv.blocks_free()) + " of " + std::to_string(kv.blocks_total()) +
                  " are free; raise --kv-tokens or lower --batch");
    return n_rows;
  }

  std::span<const float> forward(std::span<const ForwardItem> items) {
    const ModelConfig& c = w.config;
    const auto t_start = std::chrono::steady_clock::now();
    clock.start();
    const int n_rows = validate(items);
    int n_tok = 0;
    for (const ForwardItem& it : items) n_tok += static_cast<int>(it.tokens.size());
    reserve(reserved_tokens(n_tok), static_cast<int>(items.size()), n_rows);

    // Plan: flatten the tokens, give each sequence the KV blocks its new tokens need.
    int t = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const ForwardItem& it = items[i];
      Sequence& s = seqs[it.seq];
      const int n = static_cast<int>(it.tokens.size());
      kv.reserve(it.seq, n, ws.slot.data() + t);
      ws.items[i] = {it.seq, t, n, s.n_past, it.all_logits};
      for (int j = 0; j < n; ++j, ++t) {
        ws.token[t] = it.tokens[j];
        ws.pos[t] = s.n_past + j;
      }
    }
    const std::span<const ItemPlan> plan(ws.items.data(), items.size());
    last_weight_bytes = w.dense_bytes();
    part = n_tok == static_cast<int>(items.size()) ? &times.decode : &times.prefill;
    clock.lap(part->setup);

    cpu_target::embed_tokens(c, wv, ws.token.data(), n_tok, ws.h.data());
    clock.lap(part->dense);

    for (int l = 0; l < c.n_layer; ++l) {
      attention_block(l, plan, n_tok);
      ffn_block(l, n_tok);
    }
    if (routing_trace) routing_trace->end_forward(n_tok);

    // Final norm and lm_head for the rows the caller wants.
    const size_t D = c.d_model;
    int r = 0;
    for (const ItemPlan& it : plan)
      for (int j = it.all_logits ? 0 : it.n_tok - 1; j < it.n_tok; ++j, ++r)
        std::memcpy(ws.final_x.data() + r * D, ws.h.data() + (it.t0 + j) * D, D * sizeof(float));
    cpu_target::final_logits(c, wv, bf16_matmul, ws.final_x.data(), n_rows, ws.final_x.data(), ws.logits.data());
    clock.lap(part->head);
    part->total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    ++part->forwards;
    part->tokens += n_tok;

    for (const ItemPlan& it : plan) {
      seqs[it.seq].n_past += it.n_tok;
      kv.advance(it.seq, it.n_tok);
    }
    return {ws.logits.data(), static_cast<size_t>(n_rows) * c.n_vocab};
  }

  // Norm, QKV, q/k norm, clip, RoPE, KV store, attention, output projection, residual.
  void attention_block(int l, std::span<const ItemPlan> plan, int n_tok) {
    const ModelConfig& c = w.config;
    const LayerWeights& L = wv.layers[l];
    const int H = c.n_head;
    const size_t q_dim = c.q_dim();
    float *q = ws.q.data(), *k = ws.k.data(), *v = ws.v.data(), *attn = ws.attn.data();
    cpu_target::attention_input(c, L, rope, bf16_matmul, ws.h.data(), n_tok, ws.pos.data(), ws.x.data(),
                                ws.qkv.data(), {q, k, v});
    clock.lap(part->dense);

    const cpu::KvCacheLayer& cache = kv.layer(l);
    cpu::kv_cache_store(cache, ws.slot.data(), n_tok, k, v);

    cpu::AttentionParams ap;
    ap.n_head = H;
    ap.sliding_window = c.sliding_window;
    // Prompts attend causally one sequence at a time; single tokens (decode) attend all together.
    int n_decode = 0, stride = 1;
    for (size_t i = 0; i < plan.size(); ++i) {
      const ItemPlan& it = plan[i];
      if (it.n_tok > 1) {
        cpu::attention_prefill(q + it.t0 * q_dim, cache, kv.block_table(it.seq), it.n_past, it.n_tok, ap,
                               attn + it.t0 * q_dim);
      } else {
        ws.decode_items[n_decode++] = static_cast<int32_t>(i);
        stride = std::max(stride, kv.n_blocks(it.seq));
      }
    }
    if (n_decode > 0) {
      bool contiguous = true;  // decode rows are 0..n_decode-1 when every item is one token
      for (int d = 0; d < n_decode; ++d) {
        const ItemPlan& it = plan[ws.decode_items[d]];
        contiguous = contiguous && it.t0 == d;
        std::copy(kv.block_table(it.seq), kv.block_table(it.seq) + kv.n_blocks(it.seq),
                  ws.block_tables.begin() + static_cast<size_t>(d) * stride);
        ws.n_ctx[d] = it.n_past + 1;
      }
      const float* dq = q;
      float* dout = attn;
      if (!contiguous) {
        for (int d = 0; d < n_decode; ++d)
          std::memcpy(ws.decode_q.data() + d * q_dim, q + plan[ws.decode_items[d]].t0 * q_dim,
                      q_dim * sizeof(float));
        dq = ws.decode_q.data();
        dout = ws.decode_out.data();
      }
      cpu::attention_decode(dq, cache, ws.block_tables.data(), stride, ws.n_ctx.data(), n_decode, ap, dout);
      if (!contiguous)
        for (int d = 0; d < n_decode; ++d)
          std::memcpy(attn + plan[ws.decode_items[d]].t0 * q_dim, dout + d * q_dim, q_dim * sizeof(float));
    }
    clock.lap(part->attention);

    cpu_target::attention_output(c, L, bf16_matmul, attn, n_tok, ws.y.data(), ws.h.data());
    clock.lap(part->dense);
  }

  // Norm, routed experts (+ sigmoid-gated shared expert) or the dense MLP, residual.
  void ffn_block(int l, int n_tok) {
    const ModelConfig& c = w.config;
    const LayerWeights& L = wv.layers[l];
    cpu_target::ffn_input(c, L, ws.h.data(), n_tok, ws.ffn);
    clock.lap(part->dense);
    if (L.is_moe && routing_trace) routing_trace->layer(l, std::span<const int>(ws.ffn.offsets, c.n_expert + 1));
    if (L.is_moe && tier)
      last_weight_bytes += tiered_routed_outputs(l);
    else if (L.is_moe)
      last_weight_bytes +=
          cpu_target::routed_expert_outputs(expert_of[l].data(), 0, c.n_expert, bf16_matmul, c.d_model, ws.ffn);
    clock.lap(part->experts);
    cpu_target::shared_outputs(c, L, bf16_matmul, n_tok, ws.ffn);
    cpu_target::ffn_output(c, L, n_tok, ws.ffn, ws.h.data());
    clock.lap(part->dense);
  }
};

CpuModel::CpuModel(const WeightSource& weights, const CpuModelOptions& options) {
  if (options.threads > 0) omp_set_num_threads(options.threads);
  if (options.dram_expert_budget > 0) {
    const experts::StoreManifest* store = weights.packed_store();
    if (!store)
      throw Error("a DRAM expert budget streams experts from a packed store; convert the model first: "
                  "ferry convert --model DIR --out STORE, then pass --model STORE");
    store->require_expert_file(options.expert_dtype, options.group_size, "");
  }
  if (options.substitute_below > 0) {
    if (options.dram_expert_budget == 0)
      throw Error("substitution on a miss needs misses: give a DRAM budget for the experts (--dram-budget) "
                  "smaller than they are");
    if (!(options.substitute_below <= 1))
      throw Error("the substitution threshold is a gate weight, in (0, 1]; got " +
                  std::to_string(options.substitute_below));
    if (options.substitute_dtype != DType::I8 && options.substitute_dtype != DType::I4)
      throw Error("experts are substituted by int8 or int4 copies, not " +
                  std::string(dtype_name(options.substitute_dtype)));
    if (options.substitute_dtype == options.expert_dtype)
      throw Error("the substitute copies are the experts' own precision (" +
                  std::string(dtype_name(options.expert_dtype)) + "); substitute a lower one");
  }
  impl_ = std::make_unique<Impl>(cpu_target::load_cpu_weights(weights, options), options, weights.packed_store());
}

CpuModel::CpuModel(const Checkpoint& checkpoint, const CpuModelOptions& options)
    : CpuModel(*checkpoint_weight_source(checkpoint), options) {}

CpuModel::~CpuModel() = default;

const ModelConfig& CpuModel::config() const {
  return impl_->config();
}
const CpuModelOptions& CpuModel::options() const {
  return impl_->options;
}
int64_t CpuModel::kv_blocks() const { return impl_->kv.blocks_total(); }
int CpuModel::kv_block_tokens() const { return impl_->kv.block_size(); }
int CpuModel::add_sequence() {
  return impl_->add_sequence();
}
void CpuModel::free_sequence(int seq) {
  impl_->free_sequence(seq);
}
int CpuModel::sequence_length(int seq) const {
  return impl_->sequence(seq).n_past;
}

std::span<const float> CpuModel::forward_view(std::span<const ForwardItem> items) {
  return impl_->forward(items);
}

std::vector<float> CpuModel::forward(std::span<const ForwardItem> items) {
  const std::span<const float> logits = impl_->forward(items);
  return {logits.begin(), logits.end()};
}

CpuModel::KvStats CpuModel::kv_stats() const {
  return {impl_->kv.block_size(), impl_->kv.blocks_total(), impl_->kv.blocks_free(), impl_->kv.bytes()};
}

size_t CpuModel::weight_bytes() const {
  return impl_->w.bytes();
}
size_t CpuModel::expert_weight_bytes() const {
  return impl_->w.expert_bytes();
}
size_t CpuModel::last_forward_weight_bytes() const {
  return impl_->last_weight_bytes;
}
const experts::TieredExpertsStats* CpuModel::expert_tier_stats() const {
  return impl_->tier ? &impl_->tier->stats() : nullptr;
}
const CpuForwardTimes& CpuModel::forward_times() const {
  return impl_->times;
}
const SubstitutionStats& CpuModel::substitution_stats() const {
  return impl_->substitution;
}
void CpuModel::finish_routing_trace() {
  if (impl_->routing_trace) impl_->routing_trace->close();
}

}  // namespace ferry
