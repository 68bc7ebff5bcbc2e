// CudaOps: LayerOps (ferry/exec/layer_ops.h) on a CUDA device, mirroring the host ops (the cpu target's
// layer blocks, src/exec/cpu/layer_blocks.cpp) step for step with the kernels of kernels/*.cu:
//   embed            embed_gather
//   attention_input  rms_norm | layer_norm, dense matmul (wqkv, bias), q/k/v split (cudaMemcpy2DAsync),
//                    q/k norm, clamp, rope
//   attention_output dense matmul (wo, bias), residual_add
//   ffn_input        norm; MoE: dense matmul (f32 router), route_tokens, group_by_expert
//   routed_experts   expert_gate_up then expert_down over the expert table, scattering rows into
//                    expert_out[assign_slot]; expert counts stay on the device
//   shared_outputs   dense matmuls gate, up, silu_mul, down (+ shared gate: matmul, sigmoid)
//   ffn_output       moe_combine (ascending expert order, shared term, residual)
//   final_logits     norm, dense matmul (lm_head, bias)
// Dense matmuls: the packed-panel kernels for few rows, unpack + cuBLAS for many (dense_matmul.h; the
// cuBLAS mode is CudaOpsOptions::gemm, f32 by default). One cuBLAS handle, bound to the op's stream.
// Device attention is not implemented: has_device_attention() is false and the executor attends on the
// host.
//
// Memory (all Device::alloc, named "cuda ops ...", at bind_model / add_expert_table): the RoPE table, the
// router's scratch [T, 3E], the experts' gate·up activations [T*K, F] (one row per assignment, so all
// experts of a call run in one launch), the unpacked-weight chunk of the cuBLAS path, cuBLAS's workspace,
// and each expert table's descriptors.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <vector>

#include "ferry/device.h"
#include "ferry/exec/layer_ops.h"
#include "ferry/model_config.h"
#include "ferry/ops/router.h"
#include "ferry/rope_frequencies.h"
#include "kernels/dense_matmul.h"
#include "kernels/packed_matmul.h"

namespace ferry::cuda {

struct CudaOpsOptions {
  GemmMode gemm = GemmMode::F32;  // the cuBLAS path's arithmetic (dense_matmul.h)
};

class CudaOps final : public LayerOps {
 public:
  // `device` is the CUDA device whose memory the ops allocate from (the ops are owned by it).
  explicit CudaOps(Device& device, CudaOpsOptions options = {});
  ~CudaOps() override;
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  void bind_model(const ModelConfig& c, const RopeFrequencies& rope, int max_tokens) override;
  // Copies the experts' descriptors (pointers and shapes of gate, up, down) into device memory. The
  // MlpWeights must be views of device memory and must not change afterwards (their bytes may: that is
  // how pages of experts stream in); gate and up of an expert must have the same dtype and shape.
  int add_expert_table(std::span<const MlpWeights* const> experts) override;

  void embed(const StreamContext& ctx, const ModelWeights& w, const int32_t* tokens, int n_tok, float* h) override;
  void attention_input(const StreamContext& ctx, const LayerWeights& L, const float* h, int n_tok,
                       const int32_t* positions, const AttentionScratch& s, QkvRows out) override;
  void attention_output(const StreamContext& ctx, const LayerWeights& L, const float* attn, int n_tok,
                        const AttentionScratch& s, float* h) override;
  void ffn_input(const StreamContext& ctx, const LayerWeights& L, const float* h, int n_tok,
                 const FfnBuffers& b) override;
  void routed_experts(const StreamContext& ctx, int table, int first, int last, int n_tok,
                      const FfnBuffers& b) override;
  void shared_outputs(const StreamContext& ctx, const LayerWeights& L, int n_tok, const FfnBuffers& b) override;
  void ffn_output(const StreamContext& ctx, const LayerWeights& L, int n_tok, const FfnBuffers& b,
                  float* h) override;
  void final_logits(const StreamContext& ctx, const ModelWeights& w, const float* h, int n_rows, float* x,
                    float* logits) override;

  bool has_device_attention() const override { return false; }
  // Throw ferry::Error: the policy must put attention on the host for the cuda device.
  void attention_decode(const StreamContext& ctx, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                        const int32_t* slots, const int32_t* tables, int table_stride, const int32_t* n_ctx,
                        float* out) override;
  void attention_prefill(const StreamContext& ctx, const cpu::KvCacheLayer& kv, QkvRows qkv, int n_tok,
                         const int32_t* slots, const int32_t* table, int n_past, float* out) override;

 private:
  struct Table {
    ExpertLayout* device = nullptr;  // [E] in device memory
    int n_expert = 0;
    int f = 0;                       // widest gate/up output (rows), = down's input width
    int d = 0;                       // widest down output (rows)
  };

  cudaStream_t stream_of(const StreamContext& ctx) const;
  void* alloc(const std::string& name, size_t bytes);
  void norm(const float* w, const float* b, const float* x, float* y, int rows, cudaStream_t s) const;
  void matmul(const cpu::PackedMatrix& w, const float* x, float* y, int m, const float* bias, cudaStream_t s) const;
  void check_bound(int n_tok) const;

  Device& device_;
  CudaOpsOptions options_;
  cublasHandle_t cublas_ = nullptr;
  bool bound_ = false;
  ModelConfig c_;
  int max_tokens_ = 0;
  cpu::RouterParams router_;
  float* inv_freq_ = nullptr;      // [rotary_dim / 2]
  float attention_factor_ = 1.0f;
  float* router_scratch_ = nullptr;  // [T, 3E]
  float* expert_act_ = nullptr;      // [T*K, F]
  size_t expert_act_rows_ = 0;
  int expert_act_width_ = 0;
  GemmContext gemm_;
  std::vector<Table> tables_;
};

}  // namespace ferry::cuda
