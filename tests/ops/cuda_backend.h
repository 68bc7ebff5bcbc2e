// The harness's CUDA backend: the op cases call the CUDA kernels through these forwards to the host-array
// op API of kernels/ (kernels/cuda_op_api.h, namespace ferry::cuda_api), so no case needs #if. Built
// without CUDA (FERRY_HAVE_CUDA unset), available() says so and the harness never calls the others.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "ferry/ops/expert_ffn.h"
#include "ferry/ops/packed_matrix.h"
#include "ferry/ops/rope.h"
#include "ferry/ops/router.h"

namespace ferry::ops_test::cuda_backend {

// Whether the CUDA ops can run here; otherwise why not ("built without CUDA", "no CUDA GPU: ...").
bool available(std::string* why);

// Host arrays in and out, the shapes of the cpu ops of the same name.
void matmul(const cpu::PackedMatrix& w, const float* x, float* y, int m, const float* bias);
void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps);
void layer_norm(const float* x, const float* w, const float* b, float* y, int rows, int n, float eps);
void rope(float* x, int n_tok, const int32_t* positions, const cpu::RopeParams& p);
void router(const cpu::RouterParams& p, const float* logits, int n_tok, int32_t* topk_idx, float* topk_weight);
void group_by_expert(const int32_t* topk_idx, int n_tok, int top_k, int n_expert, int32_t* offsets,
                     int32_t* assign_token, int32_t* assign_slot);
// Adds into y, as cpu::moe_experts.
void moe_experts(const float* x, int n_tok, const int32_t* topk_idx, const float* topk_weight, int top_k,
                 std::span<const cpu::ExpertWeights> experts, float* y);

}  // namespace ferry::ops_test::cuda_backend
