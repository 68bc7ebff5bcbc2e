// CudaOps (cuda_ops.h): the layer ops as launches of the kernels of kernels/*.cu on the op's stream.
#include "kernels/cuda_ops.h"

#include <algorithm>
#include <string>

#include "ferry/error.h"
#include "ferry/ops/packed_layout.h"
#include "ferry/route_token.h"
#include "ferry/router_math.h"
#include "kernels/cuda_check.h"
#include "kernels/elementwise.h"
#include "kernels/embed.h"
#include "kernels/group_by_expert.h"
#include "kernels/layer_norm.h"
#include "kernels/moe_combine.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/router.h"

namespace ferry::cuda {

namespace {

constexpr size_t kGemmChunkBytes = size_t{32} << 20;  // unpacked weight rows of the cuBLAS path

size_t cublas_workspace_bytes(int compute_major) {
  // cuBLAS's own recommendation: 32 MiB on Hopper and later, 4 MiB before.
  return compute_major >= 9 ? size_t{32} << 20 : size_t{4} << 20;
}

}  // namespace

CudaOps::CudaOps(Device& device, CudaOpsOptions options) : device_(device), options_(options) {
  FERRY_CUBLAS_CHECK(cublasCreate(&cublas_));
  FERRY_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));  // no TF32 for Sgemm
  FERRY_CUBLAS_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
}

CudaOps::~CudaOps() {
  if (cublas_) cublasDestroy(cublas_);
}

void* CudaOps::alloc(const std::string& name, size_t bytes) {
  return device_.data(device_.alloc("cuda ops " + name, bytes));
}

void CudaOps::bind_model(const ModelConfig& c, const RopeFrequencies& rope, int max_tokens) {
  if (bound_) throw Error("cuda ops: bind_model called twice");
  if (max_tokens <= 0) throw Error("cuda ops: bind_model needs max_tokens > 0");
  const bool moe = c.n_moe_layers() > 0;
  if (moe && (c.n_expert_used > kMaxExpertsUsed || c.n_expert_used <= 0))
    throw Error("cuda ops: models with " + std::to_string(c.n_expert_used) + " active experts per token are not " +
                "supported (1.." + std::to_string(kMaxExpertsUsed) + ")");
  if (moe && c.router == RouterKind::SparseMixer && c.n_expert_used != 2)
    throw Error("cuda ops: the sparsemixer router picks 2 experts, the model says " +
                std::to_string(c.n_expert_used));
  c_ = c;
  max_tokens_ = max_tokens;
  const size_t T = static_cast<size_t>(max_tokens);

  if (!rope.inv_freq.empty()) {
    const BufferId b = device_.alloc("cuda ops rope inv_freq", rope.inv_freq.size() * sizeof(float));
    device_.upload(b, 0, rope.inv_freq.data(), rope.inv_freq.size() * sizeof(float));
    inv_freq_ = static_cast<float*>(device_.data(b));
  }
  attention_factor_ = rope.attention_factor;

  if (moe) {
    router_ = cpu_router_params(c);
    router_scratch_ = static_cast<float*>(alloc("router scratch", sizeof(float) * T * 3 * c.n_expert));
    expert_act_rows_ = T * c.n_expert_used;
    expert_act_width_ = std::max(c.d_expert, 1);
    expert_act_ = static_cast<float*>(alloc("expert activations", sizeof(float) * expert_act_rows_ * expert_act_width_));
  }

  // The cuBLAS path: a chunk of unpacked weight rows (at least 16 rows of the widest input), and in bf16
  // mode the activations rounded to bf16.
  const size_t widest_in = std::max({c.d_model, c.q_dim(), c.d_expert, c.d_shared, c.d_ff_dense, 1});
  const size_t elem = options_.gemm == GemmMode::Bf16 ? 2 : 4;
  gemm_.handle = cublas_;
  gemm_.mode = options_.gemm;
  gemm_.chunk_bytes = std::max(kGemmChunkBytes, kPackedPanelRows * widest_in * elem);
  gemm_.chunk = alloc("unpacked weight chunk", gemm_.chunk_bytes);
  if (options_.gemm == GemmMode::Bf16) {
    gemm_.x_bf16_elems = T * widest_in;
    gemm_.x_bf16 = static_cast<uint16_t*>(alloc("bf16 activations", sizeof(uint16_t) * gemm_.x_bf16_elems));
  }
  int dev = 0, major = 0;
  FERRY_CUDA_CHECK(cudaGetDevice(&dev));
  FERRY_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  gemm_.workspace_bytes = cublas_workspace_bytes(major);
  gemm_.workspace = alloc("cublas workspace", gemm_.workspace_bytes);  // bound per call (dense_matmul)
  bound_ = true;
}

int CudaOps::add_expert_table(std::span<const MlpWeights* const> experts) {
  if (experts.empty()) throw Error("cuda ops: an expert table needs at least one expert");
  std::vector<ExpertLayout> host(experts.size());
  Table t;
  t.n_expert = static_cast<int>(experts.size());
  for (size_t e = 0; e < experts.size(); ++e) {
    const MlpWeights& m = *experts[e];
    if (m.empty()) throw Error("cuda ops: expert " + std::to_string(e) + " of the table has no weights");
    if (m.gate.dtype != m.up.dtype || m.gate.rows != m.up.rows || m.gate.cols != m.up.cols ||
        m.gate.group_size != m.up.group_size || m.down.cols != m.gate.rows)
      throw Error("cuda ops: expert " + std::to_string(e) + "'s gate, up and down do not fit together");
    host[e] = ExpertLayout{packed_layout(m.gate), packed_layout(m.up), packed_layout(m.down)};
    t.f = std::max(t.f, m.gate.rows);
    t.d = std::max(t.d, m.down.rows);
  }
  const size_t bytes = sizeof(ExpertLayout) * host.size();
  const BufferId b = device_.alloc("cuda ops expert table " + std::to_string(tables_.size()), bytes);
  device_.upload(b, 0, host.data(), bytes);
  t.device = static_cast<ExpertLayout*>(device_.data(b));
  tables_.push_back(t);
  return static_cast<int>(tables_.size()) - 1;
}

cudaStream_t CudaOps::stream_of(const StreamContext& ctx) const {
  // Never the legacy default stream: a null handle means the op was called outside a device task.
  FERRY_ASSERT_MSG(ctx.native != nullptr, "cuda ops run inside a Compute task, on its stream");
  return static_cast<cudaStream_t>(ctx.native);
}

void CudaOps::check_bound(int n_tok) const {
  FERRY_ASSERT_MSG(bound_, "cuda ops: bind_model first");
  if (n_tok > max_tokens_)
    throw Error("cuda ops: " + std::to_string(n_tok) + " tokens in one op, bound for at most " +
                std::to_string(max_tokens_));
}

void CudaOps::norm(const float* w, const float* b, const float* x, float* y, int rows, cudaStream_t s) const {
  const float eps = static_cast<float>(c_.norm_eps);
  if (c_.norm == NormKind::RmsNorm)
    rms_norm(x, w, y, rows, c_.d_model, eps, s);
  else
    layer_norm(x, w, b, y, rows, c_.d_model, eps, s);
}

void CudaOps::matmul(const cpu::PackedMatrix& w, const float* x, float* y, int m, const float* bias,
                     cudaStream_t s) const {
  dense_matmul(gemm_, packed_layout(w), x, y, m, bias, s);
}

void CudaOps::embed(const StreamContext& ctx, const ModelWeights& w, const int32_t* tokens, int n_tok, float* h) {
  check_bound(n_tok);
  embed_gather(w.embed, w.embed_dtype, c_.n_vocab, c_.d_model, tokens, n_tok, h, stream_of(ctx));
}

void CudaOps::attention_input(const StreamContext& ctx, const LayerWeights& L, const float* h, int n_tok,
                              const int32_t* positions, const AttentionScratch& sc, QkvRows out) {
  check_bound(n_tok);
  if (n_tok <= 0) return;
  const cudaStream_t s = stream_of(ctx);
  const int H = c_.n_head, Hkv = c_.n_head_kv, Dh = c_.head_dim;
  const size_t q_dim = c_.q_dim(), kv_dim = c_.kv_dim(), qkv_dim = q_dim + 2 * kv_dim;
  const float eps = static_cast<float>(c_.norm_eps);
  norm(L.attn_norm, L.attn_norm_bias, h, sc.x, n_tok, s);
  matmul(L.wqkv, sc.x, sc.qkv_rows, n_tok, L.bqkv, s);
  // [T, q | k | v] -> q [T, H, Dh], k, v [T, Hkv, Dh]
  const size_t pitch = qkv_dim * sizeof(float);
  FERRY_CUDA_CHECK(cudaMemcpy2DAsync(out.q, q_dim * sizeof(float), sc.qkv_rows, pitch, q_dim * sizeof(float), n_tok,
                                     cudaMemcpyDeviceToDevice, s));
  FERRY_CUDA_CHECK(cudaMemcpy2DAsync(out.k, kv_dim * sizeof(float), sc.qkv_rows + q_dim, pitch,
                                     kv_dim * sizeof(float), n_tok, cudaMemcpyDeviceToDevice, s));
  FERRY_CUDA_CHECK(cudaMemcpy2DAsync(out.v, kv_dim * sizeof(float), sc.qkv_rows + q_dim + kv_dim, pitch,
                                     kv_dim * sizeof(float), n_tok, cudaMemcpyDeviceToDevice, s));
  if (c_.qk_norm == QkNorm::PerHead) {  // Qwen3: RMSNorm over Dh within each head
    rms_norm(out.q, L.q_norm, out.q, n_tok * H, Dh, eps, s);
    rms_norm(out.k, L.k_norm, out.k, n_tok * Hkv, Dh, eps, s);
  } else if (c_.qk_norm == QkNorm::Full) {  // OLMoE: one RMSNorm over the whole projection
    rms_norm(out.q, L.q_norm, out.q, n_tok, static_cast<int>(q_dim), eps, s);
    rms_norm(out.k, L.k_norm, out.k, n_tok, static_cast<int>(kv_dim), eps, s);
  }
  if (c_.clip_qkv > 0) {
    const float clip = static_cast<float>(c_.clip_qkv);
    clamp(out.q, static_cast<int64_t>(n_tok) * q_dim, clip, s);
    clamp(out.k, static_cast<int64_t>(n_tok) * kv_dim, clip, s);
    clamp(out.v, static_cast<int64_t>(n_tok) * kv_dim, clip, s);
  }
  const bool interleaved = c_.rope.pairing == RopePairing::Interleaved;
  rope(out.q, n_tok, positions, H, Dh, c_.rope.rotary_dim, interleaved, inv_freq_, attention_factor_, s);
  rope(out.k, n_tok, positions, Hkv, Dh, c_.rope.rotary_dim, interleaved, inv_freq_, attention_factor_, s);
}

void CudaOps::attention_output(const StreamContext& ctx, const LayerWeights& L, const float* attn, int n_tok,
                               const AttentionScratch& sc, float* h) {
  check_bound(n_tok);
  const cudaStream_t s = stream_of(ctx);
  matmul(L.wo, attn, sc.y, n_tok, L.bo, s);
  residual_add(h, sc.y, static_cast<int64_t>(n_tok) * c_.d_model, s);
}

void CudaOps::ffn_input(const StreamContext& ctx, const LayerWeights& L, const float* h, int n_tok,
                        const FfnBuffers& b) {
  check_bound(n_tok);
  const cudaStream_t s = stream_of(ctx);
  norm(L.ffn_norm, L.ffn_norm_bias, h, b.x, n_tok, s);
  if (!L.is_moe) return;
  matmul(L.router, b.x, b.router_logits, n_tok, nullptr, s);  // f32 weights and activations
  route_tokens(router_, b.router_logits, n_tok, router_scratch_, b.topk_idx, b.topk_weight, s);
  group_by_expert(b.topk_idx, n_tok, c_.n_expert_used, c_.n_expert, b.offsets, b.assign_token, b.assign_slot, s,
                  b.expert_position);
}

void CudaOps::routed_experts(const StreamContext& ctx, int table, int first, int last, int n_tok,
                             const FfnBuffers& b) {
  check_bound(n_tok);
  FERRY_ASSERT(table >= 0 && table < static_cast<int>(tables_.size()));
  const Table& t = tables_[table];
  FERRY_ASSERT(first >= 0 && last <= t.n_expert);
  if (first >= last || n_tok <= 0) return;
  if (t.f > expert_act_width_)
    throw Error("cuda ops: expert table " + std::to_string(table) + " has experts " + std::to_string(t.f) +
                " wide, the model's experts are " + std::to_string(expert_act_width_));
  const cudaStream_t s = stream_of(ctx);
  // gate·up: one activation row per assignment a (x row assign_token[a]); then down: expert_out row
  // assign_slot[a] of activation row a. Blocks of experts without assignments exit at once.
  RowMap rows;
  rows.offsets = b.offsets;
  rows.first_expert = first;
  rows.n_experts = last - first;
  rows.in_rows = b.assign_token;
  expert_gate_up(t.device, t.f, b.x, c_.d_model, expert_act_, expert_act_width_, rows, n_tok, s);
  rows.in_rows = nullptr;
  rows.out_rows = b.assign_slot;
  expert_down(t.device, t.d, expert_act_, expert_act_width_, b.expert_out, c_.d_model, rows, n_tok, s);
}

void CudaOps::shared_outputs(const StreamContext& ctx, const LayerWeights& L, int n_tok, const FfnBuffers& b) {
  check_bound(n_tok);
  const MlpWeights& mlp = L.is_moe ? L.shared : L.dense;
  if (mlp.empty() || n_tok <= 0) return;
  const cudaStream_t s = stream_of(ctx);
  matmul(mlp.gate, b.x, b.mlp_gate, n_tok, nullptr, s);  // [T, F]
  matmul(mlp.up, b.x, b.mlp_up, n_tok, nullptr, s);      // [T, F]
  silu_mul(b.mlp_gate, b.mlp_up, b.mlp_gate, static_cast<int64_t>(n_tok) * mlp.gate.rows, s);
  matmul(mlp.down, b.mlp_gate, b.shared_out, n_tok, nullptr, s);  // [T, D]
  if (L.is_moe && L.shared_gate.rows > 0) {
    matmul(L.shared_gate, b.x, b.shared_gate, n_tok, nullptr, s);  // [T, 1]
    sigmoid(b.shared_gate, n_tok, s);
  }
}

void CudaOps::ffn_output(const StreamContext& ctx, const LayerWeights& L, int n_tok, const FfnBuffers& b, float* h) {
  check_bound(n_tok);
  const MlpWeights& mlp = L.is_moe ? L.shared : L.dense;
  const bool gated = L.is_moe && L.shared_gate.rows > 0;
  moe_combine(b.expert_out, b.topk_idx, b.topk_weight, L.is_moe ? c_.n_expert_used : 0,
              mlp.empty() ? nullptr : b.shared_out, gated ? b.shared_gate : nullptr, b.y, h, n_tok, c_.d_model,
              stream_of(ctx));
}

void CudaOps::final_logits(const StreamContext& ctx, const ModelWeights& w, const float* h, int n_rows, float* x,
                           float* logits) {
  check_bound(n_rows);
  const cudaStream_t s = stream_of(ctx);
  norm(w.final_norm, w.final_norm_bias, h, x, n_rows, s);
  matmul(w.lm_head, x, logits, n_rows, w.lm_head_bias, s);
}

void CudaOps::attention_decode(const StreamContext&, const cpu::KvCacheLayer&, QkvRows, int, const int32_t*,
                               const int32_t*, int, const int32_t*, float*) {
  throw Error("cuda: device attention is not implemented yet; the policy must put attention on the CPU "
              "(--policy auto does)");
}

void CudaOps::attention_prefill(const StreamContext&, const cpu::KvCacheLayer&, QkvRows, int, const int32_t*,
                                const int32_t*, int, float*) {
  throw Error("cuda: device attention is not implemented yet; the policy must put attention on the CPU "
              "(--policy auto does)");
}

}  // namespace ferry::cuda
