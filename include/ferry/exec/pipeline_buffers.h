// The pipelined executor's memory, as one list (ferry/planner/buffer_model.h): every device and host buffer
// it allocates for a policy, by name, with the policy field (cache_bytes) each counts against. The executor
// allocates exactly these buffers and nothing else; the planner, given a PipelineBufferModel, prices the
// same list, so an auto policy always fits the device it was planned for.
#pragma once
#include <cstdint>
#include <functional>

#include "ferry/checkpoint.h"
#include "ferry/device.h"
#include "ferry/dtype.h"
#include "ferry/model_config.h"
#include "ferry/planner/buffer_model.h"
#include "ferry/planner/planner.h"
#include "ferry/planner/policy.h"

namespace ferry {

// Tokens per KV block of the executor's paged cache.
inline constexpr int kPipelineKvBlock = 16;
// Rows of logits one prefill chunk computes at most: prompts that want every position's logits run in
// chunks of this many tokens, so the prefill logits relay stays small for large vocabularies.
inline constexpr int kPrefillLogitRows = 64;

// The weights' part of the plan: bytes of the dense weights as the executor uploads them (one device
// buffer) and of one routed expert's image at the policy's precision.
struct PipelineWeightBytes {
  int64_t dense = 0;
  int64_t expert_image = 0;
};

// From the model's shapes, without reading weights. The dense weights: `has` says which optional tensors
// (biases, norms) the checkpoint carries; `embed_dtype` is how the embeddings are kept (BF16 when the
// checkpoint's are exact in bf16, else F32).
int64_t pipeline_dense_bytes(const ModelConfig& c, const std::function<bool(const WeightId&)>& has,
                             DType embed_dtype);
// The same for a checkpoint (has() and the stored embedding dtype) or, with no checkpoint, for the tensors
// the config declares, embeddings in bf16.
int64_t pipeline_dense_bytes(const ModelConfig& c, const Checkpoint* checkpoint);
// One routed expert's image (ferry/exec/expert_image.h) at a precision and quantisation group.
int64_t pipeline_expert_image_bytes(const ModelConfig& c, planner::Precision precision, int group_size);

// KV cache bytes (bf16, paged, every layer) for `tokens` positions, and the positions `bytes` hold.
int64_t pipeline_kv_bytes(const ModelConfig& c, int64_t tokens);
int64_t pipeline_kv_tokens_in(const ModelConfig& c, int64_t bytes);
// The KV positions a run of `p` holds: what its cache_bytes field for the KV cache (gpu_kv_cache with
// device attention, dram_kv_cache with host attention) holds, or, when that is 0, room for N sequences of
// the model's context, at most 65536.
int64_t pipeline_kv_tokens(const ModelConfig& c, const planner::Policy& p);

// Most tokens of a prefill chunk of `p` (and of any op call: at least μ).
int pipeline_prefill_tokens(const planner::Policy& p);

// Every buffer of a run of `p` (validated for `c`), its KV cache holding `kv_tokens` positions.
planner::BufferList pipeline_buffers(const ModelConfig& c, const planner::Policy& p, const PipelineWeightBytes& w,
                                     int64_t kv_tokens);

// Whether the pipelined executor runs `p`: the fields PipelinedModel rejects otherwise (devices, KV share and
// precision, prefetch depth, one expert precision for every tier).
bool pipeline_runs(const planner::Policy& p);

// Prices the planner's policies as the pipelined executor allocates them: its buffer list, and a KV cache of
// `kv_tokens` positions, or (0) the cost model's kv_tokens(N) for the workload (the generator admits a
// request only with KV room for all it may generate, so a batch of longer prompts waits, never fails).
void price_as_pipeline(planner::PlannerOptions& o, const ModelConfig& c, const Checkpoint* checkpoint,
                       int64_t kv_tokens);

class PipelineBufferModel : public planner::BufferModel {
 public:
  // `checkpoint` may be null (planning from a config): see pipeline_weight_bytes.
  PipelineBufferModel(ModelConfig config, const Checkpoint* checkpoint);
  // The executor runs grouped-query attention only (multi-head latent attention is planned analytically).
  bool runs(const planner::Policy& p) const override { return gqa_ && pipeline_runs(p); }
  planner::BufferList buffers(const planner::Policy& p, int64_t kv_tokens) const override;

 private:
  ModelConfig c_;
  bool gqa_ = false;
  int64_t dense_bytes_ = 0;
};

}  // namespace ferry
