// matmul cases: every weight type (f32, bf16, int8, int4), f32 and bf16 activations, shapes that pad
// rows and columns, group sizes and scale types; oneDNN's matmul at the same shapes for comparison.
#include <algorithm>
#include <cstring>
#include <memory>

#include "ferry/ops/matmul.h"
#include "ferry/ops/onednn_matmul.h"
#include "tests/ops/cuda_backend.h"
#include "tests/ops/harness.h"

namespace ferry::ops_test {
namespace {

using cpu::PackedMatrix;
using cpu::QuantOptions;

double matmul_tolerance(DType w) {
  switch (w) {
    case DType::F32: return 1e-9;
    case DType::BF16: return 1e-4;  // activations rounded to bf16 at the AVX-512 level
    default: return 5e-4;           // activations quantised per group to int8 at the AVX-512 level
  }
}

Peak matmul_peak(DType w) {
  switch (w) {
    case DType::F32: return Peak::F32;
    case DType::BF16: return Peak::Bf16;
    default: return Peak::Int8;
  }
}

struct MatmulShape {
  DType w;
  int m, n, k;
  bool x_bf16 = false;
  QuantOptions q = {};
  bool bias = false;
  Target target = {};
  bool exact = false;  // BF16 weights, f32 activations, exact products: the cpu target's matmul
};

class MatmulCase : public OpCase {
 public:
  explicit MatmulCase(MatmulShape s) : s_(s) {}
  std::string op() const override { return s_.exact ? "matmul_exact" : "matmul"; }
  std::string params() const override {
    std::string p = "w=" + std::string(dtype_name(s_.w)) + (s_.x_bf16 ? " x=bf16" : "") + " m=" + std::to_string(s_.m) +
                    " n=" + std::to_string(s_.n) + " k=" + std::to_string(s_.k);
    if (s_.w == DType::I8 || s_.w == DType::I4)
      p += " g=" + std::to_string(s_.q.group_size) + (s_.q.scale_dtype == DType::F16 ? " s=f16" : "");
    if (s_.bias) p += " bias";
    return p;
  }
  double flops() const override { return 2.0 * s_.m * s_.n * s_.k; }
  double bytes() const override {
    return static_cast<double>(w_.weight_bytes()) + s_.m * (s_.k * (s_.x_bf16 ? 2.0 : 4.0) + 4.0 * s_.n);
  }
  double max_nmse() const override {
    return s_.exact ? matmul_tolerance(DType::F32) : matmul_tolerance(s_.w);  // exact: f32 products
  }
  Peak peak() const override { return matmul_peak(s_.w); }
  Target target() const override { return s_.target; }
  std::string comparison_key() const override {
    return s_.w == DType::BF16 && !s_.x_bf16 && !s_.exact && s_.k >= 4096 ? "bf16 " + params().substr(7) : "";
  }

  void init(std::mt19937& rng, bool with_reference) override {
    {
      const std::vector<float> w = random_normal(rng, static_cast<size_t>(s_.n) * s_.k, 0.02f);
      w_ = cpu::pack_matrix(w.data(), s_.n, s_.k, s_.w, s_.q);
    }
    if (!with_reference)
      for (int c = 1; c < cold_copies(w_.weight_bytes()); ++c) copies_.push_back(clone_packed(w_));
    x_ = random_normal(rng, static_cast<size_t>(s_.m) * s_.k);
    if (s_.x_bf16) {
      x_ = round_bf16(x_);
      xb_ = to_bf16(x_);
    }
    if (s_.bias) bias_ = random_normal(rng, s_.n);
    y_ = Guarded<float>(static_cast<size_t>(s_.m) * s_.n);
    if (with_reference) {
      ref_.resize(y_.size());
      cpu::matmul_ref(w_, x_.data(), ref_.data(), s_.m, s_.bias ? bias_.data() : nullptr);
    }
  }
  void reset_outputs() override { y_.fill(kNaN); }
  void run_fast() override {
    const float* bias = s_.bias ? bias_.data() : nullptr;
    const PackedMatrix& w = next_ == 0 ? w_ : copies_[next_ - 1];
    next_ = (next_ + 1) % (copies_.size() + 1);
    if (s_.exact) cpu::matmul_f32_activations(w, x_.data(), y_.data(), s_.m, bias);
    else if (s_.x_bf16) cpu::matmul_xbf16(w, xb_.data(), y_.data(), s_.m, bias);
    else cpu::matmul(w, x_.data(), y_.data(), s_.m, bias);
  }
  // CUDA: the same weights and f32 activations (bf16-rounded ones for x=bf16) through cuda_api::matmul.
  bool run_backend(Backend b) override {
    if (b == Backend::Cpu) run_fast();
    else cuda_backend::matmul(w_, x_.data(), y_.data(), s_.m, s_.bias ? bias_.data() : nullptr);
    return true;
  }
  double max_nmse_on(Backend b) const override { return b == Backend::Cpu ? max_nmse() : matmul_tolerance(s_.w); }
  std::vector<OutputCheck> outputs() override {
    return {{"y", y_.data(), ref_.data(), nullptr, nullptr, y_.size(), y_.intact()}};
  }

 private:
  MatmulShape s_;
  PackedMatrix w_;
  std::vector<PackedMatrix> copies_;  // perf mode: more weights than the cache holds
  size_t next_ = 0;
  std::vector<float> x_, bias_, ref_;
  std::vector<uint16_t> xb_;
  Guarded<float> y_;
};

// oneDNN's matmul on the same weights (bf16 or f32), for comparison and to check the wrapper.
class OnednnCase : public OpCase {
 public:
  OnednnCase(DType w, int m, int n, int k) : w_type_(w), m_(m), n_(n), k_(k) {}
  std::string op() const override { return "matmul_onednn"; }
  std::string params() const override {
    return "w=" + std::string(dtype_name(w_type_)) + " m=" + std::to_string(m_) + " n=" + std::to_string(n_) +
           " k=" + std::to_string(k_);
  }
  double flops() const override { return 2.0 * m_ * n_ * k_; }
  double bytes() const override { return static_cast<double>(n_) * k_ * dtype_size(w_type_) + m_ * (k_ * 4.0 + n_ * 4.0); }
  double max_nmse() const override { return matmul_tolerance(w_type_); }
  Peak peak() const override { return matmul_peak(w_type_); }
  std::string comparison_key() const override {
    return w_type_ == DType::BF16 && k_ >= 4096 ? "bf16 " + params().substr(7) : "";
  }
  std::string impl() const override { return "onednn"; }

  void init(std::mt19937& rng, bool with_reference) override {
    cpu::PackedMatrix w;
    {
      const std::vector<float> wf = random_normal(rng, static_cast<size_t>(n_) * k_, 0.02f);
      w = cpu::pack_matrix(wf.data(), n_, k_, w_type_);
    }
    mm_.push_back(std::make_unique<cpu::OnednnMatmul>(w, w_type_));
    if (!with_reference)
      for (int c = 1; c < cold_copies(static_cast<size_t>(n_) * k_ * dtype_size(w_type_)); ++c)
        mm_.push_back(std::make_unique<cpu::OnednnMatmul>(w, w_type_));
    x_ = random_normal(rng, static_cast<size_t>(m_) * k_);
    y_ = Guarded<float>(static_cast<size_t>(m_) * n_);
    if (with_reference) {
      ref_.resize(y_.size());
      cpu::matmul_ref(w, x_.data(), ref_.data(), m_);
    }
  }
  void reset_outputs() override { y_.fill(kNaN); }
  void run_fast() override {
    mm_[next_]->run(x_.data(), y_.data(), m_);
    next_ = (next_ + 1) % mm_.size();
  }
  std::vector<OutputCheck> outputs() override {
    return {{"y", y_.data(), ref_.data(), nullptr, nullptr, y_.size(), y_.intact()}};
  }

 private:
  DType w_type_;
  int m_, n_, k_;
  std::vector<std::unique_ptr<cpu::OnednnMatmul>> mm_;  // perf mode: more weights than the cache holds
  size_t next_ = 0;
  std::vector<float> x_, ref_;
  Guarded<float> y_;
};

}  // namespace

void add_matmul_cases(CaseList& cases, bool perf) {
  auto add = [&](MatmulShape s) { cases.push_back(std::make_unique<MatmulCase>(s)); };
  const DType all[] = {DType::F32, DType::BF16, DType::I8, DType::I4};
  if (!perf) {
    const int shapes[][2] = {{64, 256}, {100, 200}, {33, 67}};
    for (DType w : all)
      for (auto [n, k] : shapes)
        for (int m : {1, 3, 8, 13}) add({w, m, n, k});
    for (DType w : all)
      for (int m : {1, 13}) add({w, m, 100, 200, /*x_bf16=*/true});
    add({DType::I4, 2, 64, 256, false, {32, DType::F16}});
    add({DType::I4, 9, 48, 384, false, {128, DType::BF16}});
    add({DType::I8, 2, 64, 256, false, {128, DType::F16}});
    add({DType::I8, 5, 40, 96, false, {32, DType::BF16}});
    add({DType::BF16, 3, 70, 130, false, {}, /*bias=*/true});
    add({DType::I4, 1, 70, 130, false, {}, /*bias=*/true});
    for (DType w : all)  // big enough for the threaded path
      for (int m : {1, 40}) add({w, m, 512, 1024});
    // BF16 from M = 4 on runs on AMX tiles at the amx level: row blocks of 16 in pairs and alone, panel
    // pairs and a last single panel, k not a multiple of 32 (a partial last k block), bias, bf16 input,
    // and K split in chunks (many row blocks x long K).
    for (auto [n, k] : shapes)
      for (int m : {16, 37, 80}) add({DType::BF16, m, n, k});
    add({DType::BF16, 37, 100, 200, /*x_bf16=*/true});
    add({DType::BF16, 37, 70, 130, false, {}, /*bias=*/true});
    add({DType::BF16, 200, 48, 2100});
    add({DType::BF16, 200, 48, 2100, /*x_bf16=*/true});
    // The cpu target's exact matmul (f32 activations; three bf16 terms per activation on AMX tiles).
    for (auto [n, k] : shapes)
      for (int m : {1, 5, 6, 13, 37}) add({DType::BF16, m, n, k, false, {}, false, {}, /*exact=*/true});
    add({DType::BF16, 11, 70, 130, false, {}, /*bias=*/true, {}, /*exact=*/true});
    add({DType::BF16, 40, 512, 1024, false, {}, false, {}, /*exact=*/true});
    add({DType::BF16, 200, 48, 2100, false, {}, false, {}, /*exact=*/true});
    cases.push_back(std::make_unique<OnednnCase>(DType::F32, 5, 96, 160));
    cases.push_back(std::make_unique<OnednnCase>(DType::BF16, 17, 96, 160));
    return;
  }
  // Mixtral-sized: D = 4096, F = 14336. gate/up [F, D], down [D, F].
  const int d = 4096, f = 14336;
  add({DType::BF16, 1, f, d, false, {}, false, {"GEMV bf16", 0.80, true}});
  add({DType::I8, 1, f, d, false, {}, false, {"GEMV int8", 0.70, true}});
  add({DType::I4, 1, f, d, false, {}, false, {"GEMV int4", 0.70, true}});
  add({DType::F32, 1, f, d});
  add({DType::BF16, 1, d, f, false, {}, false, {"GEMV bf16 (down)", 0.80, true}});
  add({DType::I8, 1, d, f, false, {}, false, {"GEMV int8 (down)", 0.70, true}});
  add({DType::I4, 1, d, f, false, {}, false, {"GEMV int4 (down)", 0.70, true}});
  add({DType::I4, 1, f, d, false, {32, DType::F16}});
  add({DType::I4, 1, f, d, false, {128, DType::BF16}});
  for (int m : {8, 64, 512}) add({DType::BF16, m, f, d});
  // The cpu target's bf16 matmul (f32 activations, exact products): AMX tiles where present.
  for (int m : {1, 8, 64, 512}) add({DType::BF16, m, f, d, false, {}, false, {}, /*exact=*/true});
  for (int m : {8, 64}) {
    add({DType::I8, m, f, d});
    add({DType::I4, m, f, d});
  }
  for (int m : {1, 8, 64, 512}) cases.push_back(std::make_unique<OnednnCase>(DType::BF16, m, f, d));
}

}  // namespace ferry::ops_test
