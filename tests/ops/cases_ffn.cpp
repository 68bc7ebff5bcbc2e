// Expert FFN and MoE layer cases: the unweighted expert FFN the runtime runs (expert_ffn_rows, over
// gathered or all rows, with the runtime's matmuls), one expert over a routed subset of rows (weighted
// scatter-add), the routed experts given a routing, and the whole layer with its router.
#include <algorithm>
#include <memory>
#include <numeric>

#include "ferry/ops/expert_ffn.h"
#include "ferry/ops/matmul.h"
#include "tests/ops/cuda_backend.h"
#include "tests/ops/harness.h"

namespace ferry::ops_test {
namespace {

using cpu::ExpertWeights;
using cpu::PackedMatrix;

double ffn_tolerance(DType w) {
  switch (w) {
    case DType::F32: return 1e-9;
    case DType::BF16: return 2e-4;
    default: return 1e-3;
  }
}

// The matmul an FFN case runs: the ops' matmul (bf16 / int8 activations at the AVX-512 level; the cpu
// target's bf16_activations option) or matmul_f32_activations (f32 activations, exact bf16 products:
// what the cpu target and the executor run by default).
enum class Mm { Ops, F32Act };

cpu::MatmulFn matmul_of(Mm mm) { return mm == Mm::Ops ? &cpu::matmul : &cpu::matmul_f32_activations; }
const char* matmul_name(Mm mm) { return mm == Mm::Ops ? "" : " mm=f32act"; }

// With f32 activations bf16 weights give products as exact as f32 weights.
double ffn_tolerance(DType w, Mm mm) { return ffn_tolerance(mm == Mm::F32Act && w == DType::BF16 ? DType::F32 : w); }

struct ExpertMats {
  PackedMatrix gate, up, down;
  ExpertWeights view() const { return {&gate, &up, &down}; }
  size_t bytes() const { return gate.weight_bytes() + up.weight_bytes() + down.weight_bytes(); }
  ExpertMats clone() const { return {clone_packed(gate), clone_packed(up), clone_packed(down)}; }
};

ExpertMats make_expert(std::mt19937& rng, DType w, int d, int f) {
  ExpertMats e;
  auto mat = [&](int rows, int cols) {
    const std::vector<float> v = random_normal(rng, static_cast<size_t>(rows) * cols, 0.02f);
    return cpu::pack_matrix(v.data(), rows, cols, w);
  };
  e.gate = mat(f, d);
  e.up = mat(f, d);
  e.down = mat(d, f);
  return e;
}

// The unweighted expert FFN the runtime runs for routed experts (gathered rows) and for the shared
// expert / dense MLP (all rows, rows = null), through the runtime's matmuls.
class ExpertFfnRowsCase : public OpCase {
 public:
  ExpertFfnRowsCase(DType w, Mm mm, int n_tok, int n_rows, bool gather, int d, int f)
      : w_(w), mm_(mm), n_tok_(n_tok), n_rows_(n_rows), gather_(gather), d_(d), f_(f) {}
  std::string op() const override { return "expert_ffn_rows"; }
  std::string params() const override {
    return "w=" + std::string(dtype_name(w_)) + matmul_name(mm_) + " rows=" +
           (gather_ ? std::to_string(n_rows_) + "/" + std::to_string(n_tok_) : "all " + std::to_string(n_rows_)) +
           " d=" + std::to_string(d_) + " f=" + std::to_string(f_);
  }
  double flops() const override { return 6.0 * n_rows_ * d_ * f_; }
  double bytes() const override { return static_cast<double>(e_.bytes()) + 8.0 * n_rows_ * d_; }
  double max_nmse() const override { return ffn_tolerance(w_, mm_); }
  Peak peak() const override { return w_ == DType::F32 || mm_ == Mm::F32Act ? Peak::F32 : Peak::Bf16; }

  void init(std::mt19937& rng, bool with_reference) override {
    e_ = make_expert(rng, w_, d_, f_);
    x_ = random_normal(rng, static_cast<size_t>(gather_ ? n_tok_ : n_rows_) * d_);
    if (gather_) {
      std::vector<int32_t> all(n_tok_);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      rows_.assign(all.begin(), all.begin() + n_rows_);
      std::sort(rows_.begin(), rows_.end());  // as group_by_expert lists them
    }
    out_ = Guarded<float>(static_cast<size_t>(n_rows_) * d_);
    x_rows_ = Guarded<float>(static_cast<size_t>(n_rows_) * d_);
    gate_ = Guarded<float>(static_cast<size_t>(n_rows_) * f_);
    up_ = Guarded<float>(static_cast<size_t>(n_rows_) * f_);
    if (with_reference) {
      ref_.resize(out_.size());
      cpu::expert_ffn_rows_ref(e_.view(), x_.data(), rows(), n_rows_, ref_.data());
    }
  }
  void reset_outputs() override { out_.fill(kNaN); }
  void run_fast() override {
    cpu::expert_ffn_rows(e_.view(), matmul_of(mm_), x_.data(), rows(), n_rows_, out_.data(),
                         gather_ ? x_rows_.data() : nullptr, gate_.data(), up_.data());
  }
  std::vector<OutputCheck> outputs() override {
    const bool scratch_intact = x_rows_.intact() && gate_.intact() && up_.intact();
    return {{"out", out_.data(), ref_.data(), nullptr, nullptr, out_.size(), out_.intact() && scratch_intact}};
  }

 private:
  const int32_t* rows() const { return gather_ ? rows_.data() : nullptr; }
  DType w_;
  Mm mm_;
  int n_tok_, n_rows_;
  bool gather_;
  int d_, f_;
  ExpertMats e_;
  std::vector<float> x_, ref_;
  std::vector<int32_t> rows_;
  Guarded<float> out_, x_rows_, gate_, up_;
};

class ExpertFfnCase : public OpCase {
 public:
  ExpertFfnCase(DType w, int n_tok, int n_rows, int d, int f, Target t = {})
      : w_(w), n_tok_(n_tok), n_rows_(n_rows), d_(d), f_(f), target_(t) {}
  std::string op() const override { return "expert_ffn"; }
  std::string params() const override {
    return "w=" + std::string(dtype_name(w_)) + " rows=" + std::to_string(n_rows_) + "/" + std::to_string(n_tok_) +
           " d=" + std::to_string(d_) + " f=" + std::to_string(f_);
  }
  double flops() const override { return 6.0 * n_rows_ * d_ * f_; }
  double bytes() const override { return static_cast<double>(e_.bytes()) + 8.0 * n_rows_ * d_; }
  double max_nmse() const override { return ffn_tolerance(w_); }
  Peak peak() const override { return w_ == DType::F32 ? Peak::F32 : Peak::Bf16; }
  Target target() const override { return target_; }

  void init(std::mt19937& rng, bool with_reference) override {
    e_ = make_expert(rng, w_, d_, f_);
    if (!with_reference)
      for (int c = 1; c < cold_copies(e_.bytes()); ++c) copies_.push_back(e_.clone());
    x_ = random_normal(rng, static_cast<size_t>(n_tok_) * d_);
    y0_ = random_normal(rng, x_.size());
    std::vector<int32_t> all(n_tok_);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    rows_.assign(all.begin(), all.begin() + n_rows_);
    std::uniform_real_distribution<float> u(0.05f, 1.0f);
    for (int i = 0; i < n_rows_; ++i) weight_.push_back(u(rng));
    y_ = Guarded<float>(x_.size());
    if (with_reference) {
      ref_ = y0_;
      cpu::expert_ffn_ref(e_.view(), x_.data(), rows_.data(), weight_.data(), n_rows_, ref_.data());
    }
  }
  void reset_outputs() override { y_.assign(y0_); }
  void run_fast() override {
    const ExpertMats& e = next_ == 0 ? e_ : copies_[next_ - 1];
    next_ = (next_ + 1) % (copies_.size() + 1);
    cpu::expert_ffn(e.view(), x_.data(), rows_.data(), weight_.data(), n_rows_, y_.data());
  }
  std::vector<OutputCheck> outputs() override {
    return {{"y", y_.data(), ref_.data(), nullptr, nullptr, y_.size(), y_.intact()}};
  }

 private:
  DType w_;
  int n_tok_, n_rows_, d_, f_;
  Target target_;
  ExpertMats e_;
  std::vector<ExpertMats> copies_;  // perf mode: more weights than the last-level cache holds
  size_t next_ = 0;
  std::vector<float> x_, y0_, ref_, weight_;
  std::vector<int32_t> rows_;
  Guarded<float> y_;
};

// The whole MoE layer (router + routed experts). With `distinct_experts` false (perf mode) the experts
// share as few distinct sets of matrices as keep the weights read by one call beyond the last-level
// cache (cold_copies), so the weights still stream from DRAM.
class MoeLayerCase : public OpCase {
 public:
  MoeLayerCase(DType w, int n_tok, int n_expert, int top_k, bool norm, int d, int f, bool distinct = true,
               Mm mm = Mm::Ops, RouterKind kind = RouterKind::SoftmaxTopK)
      : w_(w), n_tok_(n_tok), d_(d), f_(f), distinct_(distinct), mm_(mm) {
    p_.kind = kind;
    p_.n_expert = n_expert;
    p_.top_k = top_k;
    p_.norm_topk_prob = norm;
    if (kind == RouterKind::SoftmaxTopKPNorm) p_.pnorm = 2.0f;
    if (kind == RouterKind::SparseMixer) p_.jitter_eps = 0.1f;
  }
  std::string op() const override { return "moe_layer"; }
  std::string params() const override {
    const char* kind = p_.kind == RouterKind::SparseMixer ? " sparsemixer"
                       : p_.kind == RouterKind::SoftmaxTopKPNorm ? " pnorm" : "";
    return "w=" + std::string(dtype_name(w_)) + matmul_name(mm_) + " t=" + std::to_string(n_tok_) +
           " e=" + std::to_string(p_.n_expert) + " k=" + std::to_string(p_.top_k) + (p_.norm_topk_prob ? " norm" : "") +
           kind + " d=" + std::to_string(d_) + " f=" + std::to_string(f_);
  }
  double flops() const override { return 6.0 * n_tok_ * p_.top_k * d_ * f_ + 2.0 * n_tok_ * d_ * p_.n_expert; }
  double bytes() const override {
    // Weights of the experts actually used (all of them once the batch is large enough).
    const double used = std::min<double>(p_.n_expert, static_cast<double>(n_tok_) * p_.top_k);
    return used * experts_[0].bytes() + 8.0 * n_tok_ * d_;
  }
  double max_nmse() const override { return ffn_tolerance(w_, mm_); }
  Peak peak() const override { return w_ == DType::F32 ? Peak::F32 : Peak::Bf16; }

  void init(std::mt19937& rng, bool with_reference) override {
    experts_.push_back(make_expert(rng, w_, d_, f_));
    const int n_mats = distinct_ ? p_.n_expert : std::min(p_.n_expert, cold_copies(experts_[0].bytes()));
    for (int e = 1; e < n_mats; ++e) experts_.push_back(distinct_ ? make_expert(rng, w_, d_, f_) : experts_[0].clone());
    for (int e = 0; e < p_.n_expert; ++e) views_.push_back(experts_[e % n_mats].view());
    // An f32 router, scaled so the routing is decisive: no near-ties that rounding could flip.
    const std::vector<float> r = random_normal(rng, static_cast<size_t>(p_.n_expert) * d_, 0.1f);
    router_ = cpu::pack_matrix(r.data(), p_.n_expert, d_, DType::F32);
    x_ = random_normal(rng, static_cast<size_t>(n_tok_) * d_);
    y0_ = random_normal(rng, x_.size());
    y_ = Guarded<float>(x_.size());
    idx_ = Guarded<int32_t>(static_cast<size_t>(n_tok_) * p_.top_k);
    wt_ = Guarded<float>(idx_.size());
    if (with_reference) {
      ref_ = y0_;
      cpu::moe_layer_ref(x_.data(), n_tok_, router_, p_, views_, ref_.data());
    }
  }
  void reset_outputs() override { y_.assign(y0_); }
  void run_fast() override {
    cpu::moe_layer(x_.data(), n_tok_, router_, p_, views_, y_.data(), idx_.data(), wt_.data(), matmul_of(mm_));
  }
  std::vector<OutputCheck> outputs() override {
    return {{"y", y_.data(), ref_.data(), nullptr, nullptr, y_.size(), y_.intact() && idx_.intact() && wt_.intact()}};
  }

 private:
  DType w_;
  int n_tok_, d_, f_;
  bool distinct_;
  Mm mm_;
  cpu::RouterParams p_;
  std::vector<ExpertMats> experts_;
  std::vector<ExpertWeights> views_;
  PackedMatrix router_;
  std::vector<float> x_, y0_, ref_;
  Guarded<float> y_, wt_;
  Guarded<int32_t> idx_;
};

// The routed experts with a given routing (including a token routed twice to... distinct experts, and
// experts that receive no token).
class MoeExpertsCase : public OpCase {
 public:
  MoeExpertsCase(DType w, int n_tok, int n_expert, int top_k, int d, int f)
      : w_(w), n_tok_(n_tok), n_expert_(n_expert), top_k_(top_k), d_(d), f_(f) {}
  std::string op() const override { return "moe_experts"; }
  std::string params() const override {
    return "w=" + std::string(dtype_name(w_)) + " t=" + std::to_string(n_tok_) + " e=" + std::to_string(n_expert_) +
           " k=" + std::to_string(top_k_) + " d=" + std::to_string(d_) + " f=" + std::to_string(f_);
  }
  double flops() const override { return 6.0 * n_tok_ * top_k_ * d_ * f_; }
  double bytes() const override { return n_expert_ * static_cast<double>(experts_.empty() ? 0 : experts_[0].bytes()); }
  double max_nmse() const override { return ffn_tolerance(w_); }

  void init(std::mt19937& rng, bool with_reference) override {
    for (int e = 0; e < n_expert_; ++e) experts_.push_back(make_expert(rng, w_, d_, f_));
    for (auto& e : experts_) views_.push_back(e.view());
    x_ = random_normal(rng, static_cast<size_t>(n_tok_) * d_);
    y0_ = random_normal(rng, x_.size());
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    // Experts 0..n_expert-2 only: the last expert gets no token.
    for (int t = 0; t < n_tok_; ++t) {
      std::vector<int32_t> e(n_expert_ - 1);
      std::iota(e.begin(), e.end(), 0);
      std::shuffle(e.begin(), e.end(), rng);
      for (int j = 0; j < top_k_; ++j) {
        idx_.push_back(e[j]);
        wt_.push_back(u(rng));
      }
    }
    y_ = Guarded<float>(x_.size());
    if (with_reference) {
      ref_ = y0_;
      cpu::moe_experts_ref(x_.data(), n_tok_, idx_.data(), wt_.data(), top_k_, views_, ref_.data());
    }
  }
  void reset_outputs() override { y_.assign(y0_); }
  void run_fast() override { cpu::moe_experts(x_.data(), n_tok_, idx_.data(), wt_.data(), top_k_, views_, y_.data()); }
  bool run_backend(Backend b) override {
    if (b == Backend::Cpu) run_fast();
    else cuda_backend::moe_experts(x_.data(), n_tok_, idx_.data(), wt_.data(), top_k_, views_, y_.data());
    return true;
  }
  std::vector<OutputCheck> outputs() override {
    return {{"y", y_.data(), ref_.data(), nullptr, nullptr, y_.size(), y_.intact()}};
  }

 private:
  DType w_;
  int n_tok_, n_expert_, top_k_, d_, f_;
  std::vector<ExpertMats> experts_;
  std::vector<ExpertWeights> views_;
  std::vector<float> x_, y0_, ref_, wt_;
  std::vector<int32_t> idx_;
  Guarded<float> y_;
};

}  // namespace

void add_ffn_cases(CaseList& cases, bool perf) {
  const DType all[] = {DType::F32, DType::BF16, DType::I8, DType::I4};
  if (!perf) {
    for (DType w : all)
      for (Mm mm : {Mm::F32Act, Mm::Ops}) {
        cases.push_back(std::make_unique<ExpertFfnRowsCase>(w, mm, 20, 1, true, 128, 96));
        cases.push_back(std::make_unique<ExpertFfnRowsCase>(w, mm, 20, 13, true, 128, 96));
        cases.push_back(std::make_unique<ExpertFfnRowsCase>(w, mm, 70, 70, false, 64, 200));
        cases.push_back(std::make_unique<ExpertFfnRowsCase>(w, mm, 3, 3, false, 256, 512));
        // The cpu target's routed experts, f32 activations: the layer as the runtime computes it.
        if (mm == Mm::F32Act) {
          cases.push_back(std::make_unique<MoeLayerCase>(w, 13, 8, 2, true, 128, 96, true, mm));
          cases.push_back(std::make_unique<MoeLayerCase>(w, 9, 16, 4, false, 64, 80, true, mm));
        }
      }
    // Every router kind in the layer.
    cases.push_back(std::make_unique<MoeLayerCase>(DType::BF16, 11, 16, 4, false, 64, 80, true, Mm::F32Act,
                                                   RouterKind::SoftmaxTopKPNorm));
    cases.push_back(std::make_unique<MoeLayerCase>(DType::BF16, 11, 16, 2, false, 64, 80, true, Mm::F32Act,
                                                   RouterKind::SparseMixer));
    for (DType w : all) {
      cases.push_back(std::make_unique<ExpertFfnCase>(w, 20, 1, 128, 96));
      cases.push_back(std::make_unique<ExpertFfnCase>(w, 20, 13, 128, 96));
      cases.push_back(std::make_unique<ExpertFfnCase>(w, 70, 70, 64, 200));
      cases.push_back(std::make_unique<MoeExpertsCase>(w, 11, 6, 2, 64, 48));
      cases.push_back(std::make_unique<MoeLayerCase>(w, 13, 8, 2, true, 128, 96));
      cases.push_back(std::make_unique<MoeLayerCase>(w, 9, 16, 4, false, 64, 80));
    }
    return;
  }
  const int d = 4096, f = 14336;
  cases.push_back(std::make_unique<ExpertFfnCase>(DType::BF16, 64, 64, d, f, Target{"expert FFN 64 tok bf16", 0.65, false}));
  cases.push_back(std::make_unique<ExpertFfnCase>(DType::I8, 64, 64, d, f, Target{"expert FFN 64 tok int8", 0.50, false}));
  cases.push_back(std::make_unique<ExpertFfnCase>(DType::I4, 64, 64, d, f, Target{"expert FFN 64 tok int4", 0.50, false}));
  for (DType w : {DType::BF16, DType::I4}) cases.push_back(std::make_unique<ExpertFfnCase>(w, 1, 1, d, f));
  // The runtime's form (f32 activations), a decode batch of one expert.
  for (DType w : {DType::BF16, DType::I4})
    for (int n : {1, 64}) cases.push_back(std::make_unique<ExpertFfnRowsCase>(w, Mm::F32Act, n, n, true, d, f));
  // Mixtral layer, 8 experts top-2: a decode batch of 64 tokens (~16 per expert).
  cases.push_back(std::make_unique<MoeLayerCase>(DType::I4, 64, 8, 2, true, d, f, false));
  cases.push_back(std::make_unique<MoeLayerCase>(DType::BF16, 64, 8, 2, true, d, f, false));
}

}  // namespace ferry::ops_test
