// The one thin wrapper around oneDNN (2.6 API): weights reordered once into the layout the primitive
// prefers (format_tag::any), primitives cached by M. Every oneDNN exception becomes a ferry::Error here.
#include "ferry/ops/onednn_matmul.h"

#include <cstring>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "cpu/scratch.h"
#include "ferry/error.h"

namespace ferry::cpu {

using dnnl::memory;
using Dt = dnnl::memory::data_type;
using Tag = dnnl::memory::format_tag;

// Every oneDNN call goes through here: its exceptions become ferry::Error naming what failed.
template <typename Fn>
void dnnl_checked(const char* action, Fn&& fn) {
  try {
    fn();
  } catch (const dnnl::error& e) {
    throw Error(std::string("oneDNN: ") + action + " failed: " + e.what() + " (status " +
                std::to_string(static_cast<int>(e.status)) + ")");
  }
}

struct OnednnMatmul::Impl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  int n = 0, k = 0;
  Dt weight_dt = Dt::f32;
  std::vector<uint8_t> plain;                // W as [N, K] (oneDNN dims {K, N}, tag ba), until reordered
  struct Entry {
    dnnl::matmul prim;
    memory::desc src, dst;
    size_t weights = 0;                      // index into `weights`
  };
  std::map<int, Entry> by_m;
  std::vector<memory> weights;               // reordered copies, one per distinct layout asked for

  size_t weights_for(const memory::desc& want) {
    for (size_t i = 0; i < weights.size(); ++i)
      if (weights[i].get_desc() == want) return i;
    memory src({{k, n}, weight_dt, Tag::ba}, engine, plain.data());
    memory dst(want, engine);
    dnnl::reorder(src, dst).execute(stream, src, dst);
    stream.wait();
    weights.push_back(dst);
    return weights.size() - 1;
  }

  Entry& entry(int m) {
    auto it = by_m.find(m);
    if (it != by_m.end()) return it->second;
    const Dt src_dt = weight_dt == Dt::bf16 ? Dt::bf16 : Dt::f32;
    memory::desc src({m, k}, src_dt, Tag::ab);
    memory::desc wei({k, n}, weight_dt, Tag::any);
    memory::desc dst({m, n}, Dt::f32, Tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), engine);
    Entry e{dnnl::matmul(pd), src, dst, weights_for(pd.weights_desc())};
    return by_m.emplace(m, std::move(e)).first->second;
  }
};

OnednnMatmul::OnednnMatmul(const PackedMatrix& w, DType weight_dtype) : impl_(std::make_unique<Impl>()) {
  if (weight_dtype != DType::F32 && weight_dtype != DType::BF16)
    throw Error("OnednnMatmul: weights must be f32 or bf16, got " + std::string(dtype_name(weight_dtype)));
  Impl& s = *impl_;
  s.n = w.rows;
  s.k = w.cols;
  s.weight_dt = weight_dtype == DType::BF16 ? Dt::bf16 : Dt::f32;
  std::vector<float> wf(static_cast<size_t>(s.n) * s.k);
  dequantize(w, wf.data());
  if (weight_dtype == DType::F32) {
    s.plain.resize(wf.size() * 4);
    std::memcpy(s.plain.data(), wf.data(), s.plain.size());
  } else {
    s.plain.resize(wf.size() * 2);
    uint16_t* out = reinterpret_cast<uint16_t*>(s.plain.data());
    for (size_t i = 0; i < wf.size(); ++i) out[i] = f32_to_bf16(wf[i]);
  }
  dnnl_checked("preparing the weights", [&] { s.entry(1); });
}

OnednnMatmul::~OnednnMatmul() = default;

int OnednnMatmul::rows() const { return impl_->n; }
int OnednnMatmul::cols() const { return impl_->k; }

void OnednnMatmul::run(const float* x, float* y, int m) {
  if (m <= 0) return;
  Impl& s = *impl_;
  dnnl_checked("matmul", [&] {
    Impl::Entry& e = s.entry(m);
    void* src_ptr = const_cast<float*>(x);
    if (s.weight_dt == Dt::bf16) {
      uint16_t* xb = scratch_as<uint16_t>(ScratchSlot::MatmulInput, static_cast<size_t>(m) * s.k);
      for (size_t i = 0; i < static_cast<size_t>(m) * s.k; ++i) xb[i] = f32_to_bf16(x[i]);
      src_ptr = xb;
    }
    memory src(e.src, s.engine, src_ptr), dst(e.dst, s.engine, y);
    e.prim.execute(s.stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, s.weights[e.weights]}, {DNNL_ARG_DST, dst}});
    s.stream.wait();
  });
}

}  // namespace ferry::cpu
