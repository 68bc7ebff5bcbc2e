#include "tests/ops/cuda_backend.h"

#include "ferry/error.h"

#if FERRY_HAVE_CUDA
#include <vector>

#include "ferry/exec/model_weights.h"
#include "ferry/model_config.h"
#include "kernels/cuda_op_api.h"
#endif

namespace ferry::ops_test::cuda_backend {

#if FERRY_HAVE_CUDA

bool available(std::string* why) {
  std::string reason;
  if (cuda_api::available(&reason)) return true;
  if (why) *why = "no CUDA GPU: " + reason;
  return false;
}

void matmul(const cpu::PackedMatrix& w, const float* x, float* y, int m, const float* bias) {
  cuda_api::matmul(w, x, y, m, bias);
}

void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps) {
  cuda_api::rms_norm(x, w, y, rows, n, eps);
}

void layer_norm(const float* x, const float* w, const float* b, float* y, int rows, int n, float eps) {
  cuda_api::layer_norm(x, w, b, y, rows, n, eps);
}

void rope(float* x, int n_tok, const int32_t* positions, const cpu::RopeParams& p) {
  cuda_api::rope(x, n_tok, positions, p);
}

void router(const cpu::RouterParams& p, const float* logits, int n_tok, int32_t* topk_idx, float* topk_weight) {
  ModelConfig c;  // the router fields only: the inverse of cpu_router_params
  c.router = p.kind;
  c.n_expert = p.n_expert;
  c.n_expert_used = p.top_k;
  c.norm_topk_prob = p.norm_topk_prob;
  c.router_pnorm = p.pnorm;
  c.router_jitter_eps = p.jitter_eps;
  c.routed_scaling_factor = p.routed_scaling;
  cuda_api::router(c, logits, n_tok, topk_idx, topk_weight);
}

void group_by_expert(const int32_t* topk_idx, int n_tok, int top_k, int n_expert, int32_t* offsets,
                     int32_t* assign_token, int32_t* assign_slot) {
  cuda_api::group_by_expert(topk_idx, n_tok, top_k, n_expert, offsets, assign_token, assign_slot);
}

void moe_experts(const float* x, int n_tok, const int32_t* topk_idx, const float* topk_weight, int top_k,
                 std::span<const cpu::ExpertWeights> experts, float* y) {
  std::vector<MlpWeights> mlps;  // views of the same host bytes
  for (const cpu::ExpertWeights& e : experts)
    mlps.push_back({cpu::packed_view(*e.gate), cpu::packed_view(*e.up), cpu::packed_view(*e.down)});
  std::vector<const MlpWeights*> table;
  for (const MlpWeights& m : mlps) table.push_back(&m);
  const size_t n = static_cast<size_t>(n_tok) * experts[0].gate->cols;  // [T, D]
  std::vector<float> out(n);
  cuda_api::moe_experts(table, x, n_tok, topk_idx, topk_weight, top_k, out.data());
  for (size_t i = 0; i < n; ++i) y[i] += out[i];
}

#else

namespace {
[[noreturn]] void not_built() {
  FERRY_ASSERT_MSG(false, "ferry_ops was built without CUDA: check available() first");
  __builtin_unreachable();
}
}  // namespace

bool available(std::string* why) {
  if (why) *why = "built without CUDA";
  return false;
}
void matmul(const cpu::PackedMatrix&, const float*, float*, int, const float*) { not_built(); }
void rms_norm(const float*, const float*, float*, int, int, float) { not_built(); }
void layer_norm(const float*, const float*, const float*, float*, int, int, float) { not_built(); }
void rope(float*, int, const int32_t*, const cpu::RopeParams&) { not_built(); }
void router(const cpu::RouterParams&, const float*, int, int32_t*, float*) { not_built(); }
void group_by_expert(const int32_t*, int, int, int, int32_t*, int32_t*, int32_t*) { not_built(); }
void moe_experts(const float*, int, const int32_t*, const float*, int, std::span<const cpu::ExpertWeights>, float*) {
  not_built();
}

#endif

}  // namespace ferry::ops_test::cuda_backend
