// The `cpu` target: the generic MoE decoder on ferry's fast CPU ops (ferry/ops/cpu_ops.h).
//
// Precisions. Attention projections, shared experts, dense MLPs and lm_head are packed bf16; routed
// experts in bf16, int8 or int4 (group-wise, CpuModelOptions::group_size); the router and the shared
// expert's sigmoid gate stay f32, so routing decisions see logits as close to the reference's as the
// hidden state allows. The embedding table is kept bf16 when that is exact (bf16 checkpoints), else f32.
// Norms, RoPE, softmax and the residual stream are f32.
//
// Memory is planned once: the KV cache is one arena of blocks of kv_block_size tokens, reserved at
// construction; a sequence takes blocks from a free list as it grows (its block table) and returns them
// when freed. Activation buffers are reserved for max_batch_tokens tokens per forward and grow only when
// a forward is larger. forward_view() allocates nothing once the buffers and the ops' scratch have
// reached their steady-state size; forward() (the Model interface) copies the logits into a new vector.
//
// Numerics. Every matmul of bf16 weights takes f32 activations with exact products (the weights are widened
// in registers; with AMX tiles each activation is split into three bf16 terms, cpu::matmul_exact_amx), so
// with an f32 KV cache the cpu target computes what the fp32 reference computes, up to f32 rounding:
// greedy tokens are identical on the oracle models. A bf16 KV cache (the default) rounds keys and values
// to 2^-9 relative; int8 / int4 experts add weight quantisation and the int8 activation quantisation of
// their VNNI kernels (per group of group_size, scale max|x|/127).
//
// The oracle models are tiny random models whose top-2 logit margins go down to 2e-4 of the logit range
// and whose routing margins go down to 6e-5 in probability: any bf16 rounding flips some tokens and
// some top-k expert choices there. A flipped expert choice moves that token's logits by up to ~0.3 of
// the range, so the bounds below are stated on the distribution of row errors, not on the worst alone.
//
// Row error: max over a row of logits of |cpu - reference|, divided by the range (max - min) of the
// reference's logits for that prompt; rows of a teacher-forced run over the oracle prompts (prompt
// logits, then 31 decode steps fed the oracle's greedy tokens). tests/unit/cpu_model_test.cpp checks
// each bound on every oracle model; the comments give the largest value measured over them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ferry/checkpoint.h"
#include "ferry/experts/tier_stats.h"
#include "ferry/dtype.h"
#include "ferry/model.h"
#include "ferry/model_config.h"
#include "ferry/ops/packed_matrix.h"
#include "ferry/reference_model.h"

namespace ferry {
namespace experts {
struct StoreManifest;
}

// Error bounds of the cpu target vs the fp32 reference (see "Numerics" above).
struct LogitErrorBound {
  double median = 0, p90 = 0, max = 0;
};

// bf16 experts, f32 KV cache, vs the fp32 reference: f32 rounding only (measured max 8.7e-7).
inline constexpr LogitErrorBound kCpuErrorExact{1e-5, 1e-5, 1e-5};
// bf16 experts, bf16 KV cache (the defaults), vs the fp32 reference (measured 1.8e-3 / 7.3e-3 / 8.7e-2).
inline constexpr LogitErrorBound kCpuErrorBf16Kv{5e-3, 2e-2, 0.2};
// bf16 experts with bf16_activations (bf16 KV) vs the fp32 reference (measured 3.3e-3 / 4.0e-2 / 0.30).
inline constexpr LogitErrorBound kCpuErrorBf16Activations{1e-2, 8e-2, 0.4};
// The int8 / int4 expert kernels alone: f32 KV cache, vs a reference whose experts hold the same quantised
// weights dequantised (apply_expert_quantisation). Measured int8 6.7e-3 / 1.2e-2 / 0.17, int4 5.7e-3 /
// 9.5e-3 / 0.15.
inline constexpr LogitErrorBound kCpuErrorI8Kernel{1.5e-2, 3e-2, 0.3};
inline constexpr LogitErrorBound kCpuErrorI4Kernel{1.5e-2, 3e-2, 0.3};
// int8 / int4 experts with the default bf16 KV cache vs the unquantised fp32 reference: kernels plus
// weight quantisation (kQuantNmseBoundI8 / kQuantNmseBoundI4 per matrix, ferry/ops/packed_matrix.h).
// Measured int8 8.4e-3 / 1.4e-2 / 0.20, int4 7.7e-2 / 0.14 / 0.31.
inline constexpr LogitErrorBound kCpuErrorI8{2e-2, 4e-2, 0.4};
inline constexpr LogitErrorBound kCpuErrorI4{0.15, 0.25, 0.5};

// One number per precision for callers that check a few rows at a time (the p90 bounds above: nine rows in
// ten are within them; a row hit by a flipped expert choice may not be).
inline constexpr double kCpuLogitTolBf16 = kCpuErrorBf16Kv.p90;
inline constexpr double kCpuLogitTolI8Kernel = kCpuErrorI8Kernel.p90;
inline constexpr double kCpuLogitTolI4Kernel = kCpuErrorI4Kernel.p90;
inline constexpr double kCpuLogitTolI8 = kCpuErrorI8.p90;
inline constexpr double kCpuLogitTolI4 = kCpuErrorI4.p90;

// Teacher-forced top-1 agreement with the reference (the share of decode positions where the cpu target's
// argmax is the reference's greedy token, both fed the same history), default bf16 KV cache. Measured
// minimum over the oracle models: bf16 experts 0.988, bf16_activations 0.950, int8 0.950, int4 0.644.
// (Agreement of free-running greedy decoding up to the first divergence is far lower on these models,
// 0.35-0.91 for int8: one near-tie early in a sequence ends it.)
inline constexpr double kCpuTop1AgreementBf16Kv = 0.95;
inline constexpr double kCpuTop1AgreementBf16Activations = 0.9;
inline constexpr double kCpuTop1AgreementI8 = 0.9;
inline constexpr double kCpuTop1AgreementI4 = 0.5;

struct CpuModelOptions {
  DType expert_dtype = DType::BF16;         // routed experts: BF16, I8 or I4
  int group_size = cpu::kDefaultGroupSize;  // I8/I4 quantisation group along the input dimension (32..128)
  DType kv_dtype = DType::BF16;             // KV cache: BF16, F16 or F32
  int kv_block_size = 16;                   // tokens per KV block (a multiple of 16)
  int64_t kv_cache_tokens = 0;  // KV capacity over all sequences; 0: auto (see kv_cache_tokens_auto)
  int max_batch_tokens = 256;   // activation buffers reserved for this many tokens per forward
  int max_sequences = 64;       // sequence slots reserved up front (more are added on demand)
  int threads = 0;              // OpenMP threads for the ops; 0: leave the process setting
  // Feed bf16 weights bf16-rounded activations (vdpbf16ps: twice the f32 FMA rate on Zen 4; AMX tiles at
  // a third of the exact path's cost; for compute-bound prefill) instead of f32 activations (exact
  // products; the default).
  bool bf16_activations = false;
  // Routed experts of a packed store (ferry convert) kept in DRAM under this budget and read from the
  // store's SSD file as the router asks for them (0: every expert resident, the store's file mapped).
  size_t dram_expert_budget = 0;
  std::string eviction = "lru";   // lru, lfu or score (ferry/experts/eviction_policy.h)
  std::string reader = "auto";    // auto, io_uring or pread
  // Packed stores: read every mapped page at load (MAP_POPULATE) instead of on first use, so the first
  // tokens do not wait on page faults.
  bool populate = false;
  // When set, each forward's routing is appended to this file (ferry/experts/routing_trace.h).
  std::string record_routing;
  // Substitution on a miss (HOBBIT), under a DRAM budget: a routed expert that is not in DRAM and whose
  // every token gives it a gate weight below substitute_below runs from a resident copy at
  // substitute_dtype (the store's file of that precision, mapped whole) instead of being read from the SSD.
  // 0: off. An expert any token weighs at or above the threshold is read as usual, and serves all its tokens.
  float substitute_below = 0;
  DType substitute_dtype = DType::I4;
};

// What substitution on a miss did over a run.
struct SubstitutionStats {
  uint64_t experts = 0;      // (forward, layer, expert) uses served by the substitute copy
  uint64_t assignments = 0;  // (token, expert) pairs among them
  uint64_t bytes_not_read = 0;  // full-precision bytes those experts would have read from the store
};

// The KV capacity used when kv_cache_tokens is 0: room for max_sequences sequences of the model's whole
// context, capped at 4 GiB of cache. The arena is reserved lazily (untouched blocks cost no memory).
int64_t kv_cache_tokens_auto(const ModelConfig& config, const CpuModelOptions& options);

// Where CpuModel reads its weights: one tensor at a time as f32 in the canonical shape (checkpoint.h),
// so that no f32 copy of the whole model is ever held.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const ModelConfig& config() const = 0;
  virtual bool has(const WeightId& id) const = 0;
  virtual std::vector<float> f32(const WeightId& id) const = 0;
  // The packed store behind this source, when it is one (the cpu target then maps it instead of packing).
  virtual const experts::StoreManifest* packed_store() const { return nullptr; }
};

// The weights of an open checkpoint (which must outlive the source).
std::unique_ptr<WeightSource> checkpoint_weight_source(const Checkpoint& checkpoint);

// Seconds the forwards spent in each part of the model, measured around each block (steady clock). A
// forward whose items are all one token is a decode step; any other is a prefill.
struct CpuPartSeconds {
  double dense = 0;      // embedding, norms, QKV/O projections, RoPE, router, shared expert or dense MLP, combine
  double attention = 0;  // KV store and the attention kernels
  double experts = 0;    // the routed experts' FFNs (and their reads from the store under a DRAM budget)
  double head = 0;       // final norm and lm_head
  double setup = 0;      // checks, KV blocks and growing the activation buffers (once per larger forward)
  double total = 0;      // the whole forward
  int64_t forwards = 0;
  int64_t tokens = 0;    // tokens the forwards took in
};
struct CpuForwardTimes {
  CpuPartSeconds prefill, decode;
};

class CpuModel : public Model {
 public:
  // Packs every weight. Throws ferry::Error for an unsupported model (multi-head latent attention),
  // an invalid option (dtype, group size, block size) or a missing tensor.
  CpuModel(const WeightSource& weights, const CpuModelOptions& options = {});
  CpuModel(const Checkpoint& checkpoint, const CpuModelOptions& options = {});
  ~CpuModel() override;
  CpuModel(const CpuModel&) = delete;
  CpuModel& operator=(const CpuModel&) = delete;

  const ModelConfig& config() const override;
  const CpuModelOptions& options() const;

  int add_sequence() override;
  // Returns the sequence's KV blocks to the free list at once.
  void free_sequence(int seq) override;
  int sequence_length(int seq) const override;
  int64_t kv_blocks() const override;
  int kv_block_tokens() const override;

  // Appends the items' tokens to their sequences; prompts (several tokens) and decode steps (one token)
  // may be mixed, every sequence at most once. Returns logits [rows, V] in item order. Throws
  // ferry::Error, before changing any sequence, when a sequence would exceed the model's context, a
  // token id is out of range or the KV cache has too few free blocks.
  std::vector<float> forward(std::span<const ForwardItem> items) override;
  // The same, returning a view of the model's logits buffer, valid until the next forward.
  std::span<const float> forward_view(std::span<const ForwardItem> items) override;

  struct KvStats {
    int block_size = 0;  // tokens per block
    int blocks_total = 0;
    int blocks_free = 0;
    size_t arena_bytes = 0;  // the whole arena, all layers, K and V
  };
  KvStats kv_stats() const;
  // Bytes of packed weights: all of them, and the routed experts alone.
  size_t weight_bytes() const;
  size_t expert_weight_bytes() const;
  // Bytes of packed weights the last forward read: every dense weight and the routed experts that had
  // tokens (for achieved-bandwidth figures).
  size_t last_forward_weight_bytes() const;
  // The SSD/DRAM expert tiers' counters when the experts stream under a DRAM budget, else null.
  const experts::TieredExpertsStats* expert_tier_stats() const;
  // Where the forwards spent their time, by part of the model and by phase: what the planner's time model
  // is checked against (ferry run --hw).
  const CpuForwardTimes& forward_times() const;
  const SubstitutionStats& substitution_stats() const;
  // Flushes and closes the routing trace (record_routing); throws ferry::Error when a write failed.
  void finish_routing_trace();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Replaces every routed expert matrix of `weights` by the matrix the cpu target computes with at this
// precision (quantised and dequantised; rounded to bf16 for BF16). A reference forward over the result
// has the cpu target's expert weights exactly, which isolates the kernels' error from the quantisation
// error.
void apply_expert_quantisation(WeightsF32& weights, DType expert_dtype,
                               int group_size = cpu::kDefaultGroupSize);

}  // namespace ferry
