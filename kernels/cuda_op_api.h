// The CUDA ops over host arrays, for the op harness (tests/ops, the `cuda` backend): each call copies its
// inputs into temporary device memory, runs the op on its own stream, copies the outputs back and frees
// everything before it returns. Slow (allocations, copies, a synchronize per call): for conformance checks,
// never for serving. Every call throws ferry::Error when there is no usable GPU (available() says why) or a
// CUDA call fails.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "ferry/exec/model_weights.h"
#include "ferry/model_config.h"
#include "ferry/ops/packed_matrix.h"
#include "ferry/ops/rope.h"

namespace ferry::cuda_api {

// Whether a GPU is usable; when not, why (the CUDA call and its result, or a build without CUDA).
bool available(std::string* why = nullptr);

// y [m, w.rows] = x [m, w.cols] · Wᵀ + bias (bias [w.rows] or null). W is a host PackedMatrix (any dtype);
// m < 16 takes the packed-panel kernels, larger m unpack + cuBLAS f32 (kernels/dense_matmul.h).
void matmul(const cpu::PackedMatrix& w, const float* x, float* y, int m, const float* bias);

// y [rows, n] = RMSNorm(x) * w.
void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps);
// y [rows, n] = LayerNorm(x) * w + b (b may be null).
void layer_norm(const float* x, const float* w, const float* b, float* y, int rows, int n, float eps);

// RoPE in place on x [T, p.n_head, p.head_dim] at positions [T], as cpu::rope (p.inv_freq on the host).
void rope(float* x, int n_tok, const int32_t* positions, const cpu::RopeParams& p);

// The model's router over logits [T, E]: topk_idx, topk_weight [T, K] as route_token computes them.
void router(const ModelConfig& c, const float* logits, int n_tok, int32_t* topk_idx, float* topk_weight);

// The assignments of topk_idx [T, K] grouped by expert: offsets [E + 1], assign_token, assign_slot [T*K]
// (exactly as the cpu layer blocks' group_by_expert).
void group_by_expert(const int32_t* topk_idx, int n_tok, int k, int n_expert, int32_t* offsets,
                     int32_t* assign_token, int32_t* assign_slot);

// The routed experts of an MoE layer: y [T, D] = Σ_k topk_weight[t, k] · expert_{topk_idx[t, k]}(x[t]),
// summed in ascending expert index per token. x [T, D]; topk_idx, topk_weight [T, k]; experts[e] the
// host weights of expert e (SwiGLU: down(silu(gate·x) ⊙ up·x)), all of one shape, D = experts[0]->gate.cols.
// The experts run grouped (group_by_expert, expert_gate_up, expert_down, moe_combine: the executor's path).
void moe_experts(std::span<const MlpWeights* const> experts, const float* x, int n_tok, const int32_t* topk_idx,
                 const float* topk_weight, int k, float* y);

}  // namespace ferry::cuda_api
