// The CUDA ops over host arrays (cuda_op_api.h): temporary device memory per call, one stream, synchronous.
#include "kernels/cuda_op_api.h"

#include <algorithm>
#include <vector>

#include "ferry/error.h"
#include "ferry/ops/packed_layout.h"
#include "ferry/route_token.h"
#include "ferry/router_math.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_runtime_info.h"
#include "kernels/dense_matmul.h"
#include "kernels/group_by_expert.h"
#include "kernels/layer_norm.h"
#include "kernels/moe_combine.h"
#include "kernels/packed_matmul.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/router.h"

namespace ferry::cuda_api {

namespace {

void require_gpu() {
  std::string why;
  if (!available(&why)) throw Error("cuda: no usable GPU: " + why);
}

// Device memory freed at scope exit (errors at exit are ignored).
class DeviceMem {
 public:
  explicit DeviceMem(size_t bytes) {
    if (bytes) FERRY_CUDA_CHECK(cudaMalloc(&p_, bytes));
  }
  ~DeviceMem() {
    if (p_) cudaFree(p_);
  }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
  DeviceMem(DeviceMem&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

template <typename T>
DeviceMem to_device(const T* host, size_t n) {
  DeviceMem d(n * sizeof(T));
  if (n && host) {
    FERRY_CUDA_CHECK(cudaMemcpy(d.get(), host, n * sizeof(T), cudaMemcpyHostToDevice));
    // From pageable memory cudaMemcpy may return before its DMA (on the legacy stream) lands, and the ops
    // run on a non-blocking stream that does not wait for the legacy one: wait for it here.
    FERRY_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
  }
  return d;
}

template <typename T>
void to_host(T* host, const DeviceMem& d, size_t n) {
  if (n) FERRY_CUDA_CHECK(cudaMemcpy(host, d.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
}

class Stream {
 public:
  Stream() { FERRY_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  operator cudaStream_t() const { return s_; }  // NOLINT
  void sync() const { FERRY_CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

// A host PackedMatrix's arrays in device memory, and its layout there.
struct DevicePacked {
  DeviceMem data, scales, zeros;
  PackedLayout layout;
  explicit DevicePacked(const cpu::PackedMatrix& w)
      : data(to_device(w.data.data(), w.data.size())),
        scales(to_device(w.scales.data(), w.scales.size())),
        zeros(to_device(w.zeros.data(), w.zeros.size())) {
    layout = packed_layout(w);
    layout.data = data.get<uint8_t>();
    layout.scales = w.scales.size() ? scales.get<uint8_t>() : nullptr;
    layout.zeros = w.zeros.size() ? zeros.get<uint8_t>() : nullptr;
  }
};

class Cublas {
 public:
  Cublas() {
    FERRY_CUBLAS_CHECK(cublasCreate(&h_));
    FERRY_CUBLAS_CHECK(cublasSetMathMode(h_, CUBLAS_DEFAULT_MATH));
  }
  ~Cublas() {
    if (h_) cublasDestroy(h_);
  }
  Cublas(const Cublas&) = delete;
  Cublas& operator=(const Cublas&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

}  // namespace

bool available(std::string* why) { return cuda::device_count(why) > 0; }

void matmul(const cpu::PackedMatrix& w, const float* x, float* y, int m, const float* bias) {
  require_gpu();
  if (m <= 0) return;
  const size_t n_x = static_cast<size_t>(m) * w.cols, n_y = static_cast<size_t>(m) * w.rows;
  const DevicePacked dw(w);
  const DeviceMem dx = to_device(x, n_x), db = to_device(bias, bias ? static_cast<size_t>(w.rows) : 0);
  DeviceMem dy(n_y * sizeof(float));
  const Stream s;
  const Cublas blas;
  cuda::GemmContext g;
  g.handle = blas.get();
  g.chunk_bytes = std::max<size_t>(size_t{32} << 20, sizeof(float) * kPackedPanelRows * w.cols);
  const DeviceMem chunk(g.chunk_bytes);
  g.chunk = chunk.get();
  cuda::dense_matmul(g, dw.layout, dx.get<float>(), dy.get<float>(), m, bias ? db.get<float>() : nullptr, s);
  s.sync();
  to_host(y, dy, n_y);
}

void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps) {
  require_gpu();
  const size_t total = static_cast<size_t>(rows) * n;
  const DeviceMem dx = to_device(x, total), dw = to_device(w, n);
  DeviceMem dy(total * sizeof(float));
  const Stream s;
  cuda::rms_norm(dx.get<float>(), dw.get<float>(), dy.get<float>(), rows, n, eps, s);
  s.sync();
  to_host(y, dy, total);
}

void layer_norm(const float* x, const float* w, const float* b, float* y, int rows, int n, float eps) {
  require_gpu();
  const size_t total = static_cast<size_t>(rows) * n;
  const DeviceMem dx = to_device(x, total), dw = to_device(w, n), db = to_device(b, b ? n : 0);
  DeviceMem dy(total * sizeof(float));
  const Stream s;
  cuda::layer_norm(dx.get<float>(), dw.get<float>(), b ? db.get<float>() : nullptr, dy.get<float>(), rows, n, eps, s);
  s.sync();
  to_host(y, dy, total);
}

void rope(float* x, int n_tok, const int32_t* positions, const cpu::RopeParams& p) {
  require_gpu();
  const int rot = p.rotary_dim ? p.rotary_dim : p.head_dim;
  const size_t total = static_cast<size_t>(n_tok) * p.n_head * p.head_dim;
  const DeviceMem dx = to_device(x, total), dpos = to_device(positions, n_tok), dfreq = to_device(p.inv_freq, rot / 2);
  const Stream s;
  cuda::rope(dx.get<float>(), n_tok, dpos.get<int32_t>(), p.n_head, p.head_dim, p.rotary_dim,
             p.pairing == RopePairing::Interleaved, dfreq.get<float>(), p.attention_factor, s);
  s.sync();
  to_host(x, dx, total);
}

void router(const ModelConfig& c, const float* logits, int n_tok, int32_t* topk_idx, float* topk_weight) {
  require_gpu();
  const cpu::RouterParams p = cpu_router_params(c);  // throws for more than kMaxExpertsUsed
  const size_t n_logits = static_cast<size_t>(n_tok) * c.n_expert, n_out = static_cast<size_t>(n_tok) * p.top_k;
  const DeviceMem dl = to_device(logits, n_logits);
  DeviceMem scratch(sizeof(float) * static_cast<size_t>(n_tok) * 3 * c.n_expert);
  DeviceMem di(sizeof(int32_t) * n_out), dw(sizeof(float) * n_out);
  const Stream s;
  cuda::route_tokens(p, dl.get<float>(), n_tok, scratch.get<float>(), di.get<int32_t>(), dw.get<float>(), s);
  s.sync();
  to_host(topk_idx, di, n_out);
  to_host(topk_weight, dw, n_out);
}

void group_by_expert(const int32_t* topk_idx, int n_tok, int k, int n_expert, int32_t* offsets,
                     int32_t* assign_token, int32_t* assign_slot) {
  require_gpu();
  const size_t n_assign = static_cast<size_t>(n_tok) * k;
  const DeviceMem di = to_device(topk_idx, n_assign);
  DeviceMem doff(sizeof(int32_t) * (n_expert + 1)), dtok(sizeof(int32_t) * std::max<size_t>(n_assign, 1)),
      dslot(sizeof(int32_t) * std::max<size_t>(n_assign, 1));
  const Stream s;
  cuda::group_by_expert(di.get<int32_t>(), n_tok, k, n_expert, doff.get<int32_t>(), dtok.get<int32_t>(),
                        dslot.get<int32_t>(), s);
  s.sync();
  to_host(offsets, doff, n_expert + 1);
  to_host(assign_token, dtok, n_assign);
  to_host(assign_slot, dslot, n_assign);
}

void moe_experts(std::span<const MlpWeights* const> experts, const float* x, int n_tok, const int32_t* topk_idx,
                 const float* topk_weight, int k, float* y) {
  require_gpu();
  if (experts.empty()) throw Error("cuda moe_experts: no experts");
  if (k <= 0 || k > kMaxExpertsUsed) throw Error("cuda moe_experts: k = " + std::to_string(k) + " is not supported");
  const int E = static_cast<int>(experts.size());
  const int D = experts[0]->gate.cols, F = experts[0]->gate.rows;
  // the experts' weights in device memory, and their table
  std::vector<DevicePacked> packed;
  packed.reserve(3 * experts.size());
  std::vector<cuda::ExpertLayout> table(experts.size());
  for (int e = 0; e < E; ++e) {
    const MlpWeights& m = *experts[e];
    if (m.gate.cols != D || m.gate.rows != F || m.up.rows != F || m.up.cols != D || m.down.rows != D ||
        m.down.cols != F)
      throw Error("cuda moe_experts: expert " + std::to_string(e) + " has another shape than expert 0");
    packed.emplace_back(m.gate);
    packed.emplace_back(m.up);
    packed.emplace_back(m.down);
    table[e] = {packed[3 * e].layout, packed[3 * e + 1].layout, packed[3 * e + 2].layout};
  }
  const DeviceMem dtable = to_device(table.data(), table.size());
  const size_t T = n_tok, n_assign = T * k;
  const DeviceMem dx = to_device(x, T * D), didx = to_device(topk_idx, n_assign), dw = to_device(topk_weight, n_assign);
  DeviceMem offsets(sizeof(int32_t) * (E + 1)), tok(sizeof(int32_t) * std::max<size_t>(n_assign, 1)),
      slot(sizeof(int32_t) * std::max<size_t>(n_assign, 1));
  DeviceMem act(sizeof(float) * std::max<size_t>(n_assign * F, 1)), out(sizeof(float) * std::max<size_t>(n_assign * D, 1));
  DeviceMem dy(sizeof(float) * std::max<size_t>(T * D, 1)), h(sizeof(float) * std::max<size_t>(T * D, 1));
  const Stream s;
  FERRY_CUDA_CHECK(cudaMemsetAsync(h.get(), 0, sizeof(float) * T * D, s));
  cuda::group_by_expert(didx.get<int32_t>(), n_tok, k, E, offsets.get<int32_t>(), tok.get<int32_t>(),
                        slot.get<int32_t>(), s);
  cuda::RowMap rows;
  rows.offsets = offsets.get<int32_t>();
  rows.first_expert = 0;
  rows.n_experts = E;
  rows.in_rows = tok.get<int32_t>();
  const auto* dt = dtable.get<cuda::ExpertLayout>();
  cuda::expert_gate_up(dt, F, dx.get<float>(), D, act.get<float>(), F, rows, n_tok, s);
  rows.in_rows = nullptr;
  rows.out_rows = slot.get<int32_t>();
  cuda::expert_down(dt, D, act.get<float>(), F, out.get<float>(), D, rows, n_tok, s);
  cuda::moe_combine(out.get<float>(), didx.get<int32_t>(), dw.get<float>(), k, nullptr, nullptr, dy.get<float>(),
                    h.get<float>(), n_tok, D, s);
  s.sync();
  to_host(y, dy, T * D);
}

}  // namespace ferry::cuda_api
