// Attention cases: decode over many sequences of different lengths with scattered cache blocks (the
// unused cache is filled with NaN so any read past a sequence shows), GQA groups from 1 to 12, sliding
// window; causal prefill with and without a cached prefix; the KV store/load round trip.
#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>

#include "cpu/attention_kernels.h"
#include "ferry/ops/attention.h"
#include "ferry/ops/packed_matrix.h"
#include "tests/ops/harness.h"

namespace ferry::ops_test {
namespace {

using cpu::AttentionParams;
using cpu::KvCacheLayer;

double attention_tolerance(DType kv) { return kv == DType::BF16 ? 1e-4 : 1e-9; }

using Bf16Kernel = cpu::Bf16AttentionKernel;

struct AttnShape {
  DType kv = DType::BF16;
  int n_head = 8, n_head_kv = 2, head_dim = 64, block_size = 16;
  int window = 0;
  // bf16 cache at the Avx512 level without AMX: which kernel (Auto: the one this CPU prefers). The
  // explicit cases check the other one too, whatever the CPU.
  Bf16Kernel kernel = Bf16Kernel::Auto;
};

std::string kernel_label(const AttnShape& s) {
  switch (s.kernel) {
    case Bf16Kernel::Dpbf16: return " kernel=dpbf16";
    case Bf16Kernel::Fma: return " kernel=fma";
    default: return "";
  }
}

// Forces the shape's bf16 kernel while it lives.
class KernelScope {
 public:
  explicit KernelScope(Bf16Kernel k) : previous_(cpu::bf16_attention_kernel()) { cpu::set_bf16_attention_kernel(k); }
  ~KernelScope() { cpu::set_bf16_attention_kernel(previous_); }

 private:
  Bf16Kernel previous_;
};

// A paged cache with the sequences' blocks scattered over the arena (block tables shuffled).
class PagedCache {
 public:
  void build(std::mt19937& rng, const AttnShape& s, const std::vector<int>& lengths) {
    kv_.dtype = s.kv;
    kv_.block_size = s.block_size;
    kv_.n_head_kv = s.n_head_kv;
    kv_.head_dim = s.head_dim;
    stride_ = 0;
    int n_block = 0;
    for (int len : lengths) {
      const int nb = (len + s.block_size - 1) / s.block_size;
      stride_ = std::max(stride_, nb);
      n_block += nb;
    }
    n_block += 3;  // spare blocks nobody uses
    kv_.n_block = n_block;
    // 16-bit units; AlignedBytes asks for huge pages as a KV arena should.
    const size_t elems = static_cast<size_t>(n_block) * kv_.block_elems() * (s.kv == DType::F32 ? 2 : 1);
    k_ = cpu::AlignedBytes(elems * 2);
    v_ = cpu::AlignedBytes(elems * 2);
    // NaN everywhere first: a kernel that reads an unwritten slot and lets it through fails the check.
    uint16_t* k16 = reinterpret_cast<uint16_t*>(k_.data());
    uint16_t* v16 = reinterpret_cast<uint16_t*>(v_.data());
    if (s.kv == DType::F32) {
      std::fill(reinterpret_cast<float*>(k16), reinterpret_cast<float*>(k16) + elems / 2, kNaN);
      std::fill(reinterpret_cast<float*>(v16), reinterpret_cast<float*>(v16) + elems / 2, kNaN);
    } else {
      const uint16_t nan16 = s.kv == DType::BF16 ? 0x7fc0 : 0x7e00;
      std::fill(k16, k16 + elems, nan16);
      std::fill(v16, v16 + elems, nan16);
    }
    kv_.k = k_.data();
    kv_.v = v_.data();
    std::vector<int32_t> ids(n_block);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    tables_.assign(static_cast<size_t>(lengths.size()) * stride_, -1);
    int next = 0;
    for (size_t seq = 0; seq < lengths.size(); ++seq) {
      const int nb = (lengths[seq] + s.block_size - 1) / s.block_size;
      for (int b = 0; b < nb; ++b) tables_[seq * stride_ + b] = ids[next++];
      const size_t row = static_cast<size_t>(s.n_head_kv) * s.head_dim;
      const std::vector<float> k = random_normal(rng, lengths[seq] * row);
      const std::vector<float> v = random_normal(rng, lengths[seq] * row);
      std::vector<int32_t> slots(lengths[seq]);
      for (int pos = 0; pos < lengths[seq]; ++pos) slots[pos] = cpu::kv_slot(&tables_[seq * stride_], pos, s.block_size);
      cpu::kv_cache_store(kv_, slots.data(), lengths[seq], k.data(), v.data());
    }
  }
  // Same blocks, tables and contents in a separate arena (perf mode: several caches, read in turn).
  void copy_from(const PagedCache& o) {
    kv_ = o.kv_;
    k_ = cpu::AlignedBytes(o.k_.size());
    v_ = cpu::AlignedBytes(o.v_.size());
    std::memcpy(k_.data(), o.k_.data(), k_.size());
    std::memcpy(v_.data(), o.v_.data(), v_.size());
    kv_.k = k_.data();
    kv_.v = v_.data();
    tables_ = o.tables_;
    stride_ = o.stride_;
  }
  size_t arena_bytes() const { return k_.size() + v_.size(); }
  const KvCacheLayer& kv() const { return kv_; }
  const int32_t* table(int seq) const { return &tables_[static_cast<size_t>(seq) * stride_]; }
  int stride() const { return stride_; }

 private:
  KvCacheLayer kv_;
  cpu::AlignedBytes k_, v_;
  std::vector<int32_t> tables_;
  int stride_ = 0;
};

class DecodeCase : public OpCase {
 public:
  DecodeCase(AttnShape s, std::vector<int> lengths, Target t = {}) : s_(s), lengths_(std::move(lengths)), target_(t) {}
  std::string op() const override { return "attn_decode"; }
  std::string params() const override {
    int mn = *std::min_element(lengths_.begin(), lengths_.end()), mx = *std::max_element(lengths_.begin(), lengths_.end());
    return "kv=" + std::string(dtype_name(s_.kv)) + " seqs=" + std::to_string(lengths_.size()) + " ctx=" +
           std::to_string(mn) + (mn == mx ? "" : ".." + std::to_string(mx)) + " h=" + std::to_string(s_.n_head) + "/" +
           std::to_string(s_.n_head_kv) + " dh=" + std::to_string(s_.head_dim) + " bs=" + std::to_string(s_.block_size) +
           (s_.window ? " win=" + std::to_string(s_.window) : "") + kernel_label(s_);
  }
  double total_ctx() const { return std::accumulate(lengths_.begin(), lengths_.end(), 0.0); }
  double flops() const override { return 4.0 * total_ctx() * s_.n_head * s_.head_dim; }
  double bytes() const override { return 2.0 * total_ctx() * s_.n_head_kv * s_.head_dim * dtype_size(s_.kv); }
  double max_nmse() const override { return attention_tolerance(s_.kv); }
  Peak peak() const override { return s_.kv == DType::BF16 ? Peak::Bf16 : Peak::F32; }
  Target target() const override { return target_; }

  void init(std::mt19937& rng, bool with_reference) override {
    cache_.build(rng, s_, lengths_);
    if (!with_reference) {
      // Perf mode: as many copies of the cache as keep every call's reads cold (a decode step reads each
      // sequence's KV once per layer; the other layers' caches and the weights pass through in between).
      copies_.resize(cold_copies(cache_.arena_bytes()) - 1);
      for (PagedCache& c : copies_) c.copy_from(cache_);
    }
    p_.n_head = s_.n_head;
    p_.sliding_window = s_.window;
    const size_t n = lengths_.size() * static_cast<size_t>(s_.n_head) * s_.head_dim;
    q_ = random_normal(rng, n);
    out_ = Guarded<float>(n);
    if (with_reference) {
      ref_.resize(n);
      cpu::attention_decode_ref(q_.data(), cache_.kv(), cache_.table(0), cache_.stride(), lengths_.data(),
                                static_cast<int>(lengths_.size()), p_, ref_.data());
    }
  }
  void reset_outputs() override { out_.fill(kNaN); }
  void run_fast() override {
    const PagedCache& c = next_ == 0 ? cache_ : copies_[next_ - 1];
    next_ = (next_ + 1) % (copies_.size() + 1);
    KernelScope scope(s_.kernel);
    cpu::attention_decode(q_.data(), c.kv(), c.table(0), c.stride(), lengths_.data(),
                          static_cast<int>(lengths_.size()), p_, out_.data());
  }
  std::vector<OutputCheck> outputs() override {
    return {{"out", out_.data(), ref_.data(), nullptr, nullptr, out_.size(), out_.intact()}};
  }

 private:
  AttnShape s_;
  std::vector<int> lengths_;
  Target target_;
  PagedCache cache_;
  std::vector<PagedCache> copies_;  // perf mode: more KV than the last-level cache holds
  size_t next_ = 0;
  AttentionParams p_;
  std::vector<float> q_, ref_;
  Guarded<float> out_;
};

class PrefillCase : public OpCase {
 public:
  PrefillCase(AttnShape s, int n_past, int n_tok) : s_(s), n_past_(n_past), n_tok_(n_tok) {}
  std::string op() const override { return "attn_prefill"; }
  std::string params() const override {
    return "kv=" + std::string(dtype_name(s_.kv)) + " past=" + std::to_string(n_past_) + " tok=" + std::to_string(n_tok_) +
           " h=" + std::to_string(s_.n_head) + "/" + std::to_string(s_.n_head_kv) + " dh=" + std::to_string(s_.head_dim) +
           " bs=" + std::to_string(s_.block_size) + (s_.window ? " win=" + std::to_string(s_.window) : "") +
           kernel_label(s_);
  }
  double flops() const override {
    return 4.0 * s_.n_head * s_.head_dim * (static_cast<double>(n_tok_) * n_past_ + 0.5 * n_tok_ * (n_tok_ + 1));
  }
  double bytes() const override {
    return 2.0 * (n_past_ + n_tok_) * s_.n_head_kv * s_.head_dim * dtype_size(s_.kv) + 8.0 * n_tok_ * s_.n_head * s_.head_dim;
  }
  double max_nmse() const override { return attention_tolerance(s_.kv); }
  Peak peak() const override { return s_.kv == DType::BF16 ? Peak::Bf16 : Peak::F32; }

  void init(std::mt19937& rng, bool with_reference) override {
    const std::vector<int> lengths{n_past_ + n_tok_};
    cache_.build(rng, s_, lengths);
    p_.n_head = s_.n_head;
    p_.sliding_window = s_.window;
    const size_t n = static_cast<size_t>(n_tok_) * s_.n_head * s_.head_dim;
    q_ = random_normal(rng, n);
    out_ = Guarded<float>(n);
    if (with_reference) {
      ref_.resize(n);
      cpu::attention_prefill_ref(q_.data(), cache_.kv(), cache_.table(0), n_past_, n_tok_, p_, ref_.data());
    }
  }
  void reset_outputs() override { out_.fill(kNaN); }
  void run_fast() override {
    KernelScope scope(s_.kernel);
    cpu::attention_prefill(q_.data(), cache_.kv(), cache_.table(0), n_past_, n_tok_, p_, out_.data());
  }
  std::vector<OutputCheck> outputs() override {
    return {{"out", out_.data(), ref_.data(), nullptr, nullptr, out_.size(), out_.intact()}};
  }

 private:
  AttnShape s_;
  int n_past_, n_tok_;
  PagedCache cache_;
  AttentionParams p_;
  std::vector<float> q_, ref_;
  Guarded<float> out_;
};

// kv_cache_store then kv_cache_load returns the values rounded to the cache dtype.
class KvRoundTripCase : public OpCase {
 public:
  explicit KvRoundTripCase(DType kv) : kv_type_(kv) {}
  std::string op() const override { return "kv_cache"; }
  std::string params() const override { return "kv=" + std::string(dtype_name(kv_type_)) + " store+load"; }
  double flops() const override { return 0; }
  double bytes() const override { return 0; }
  double max_nmse() const override { return 0.0; }
  void init(std::mt19937& rng, bool) override {
    kv_.dtype = kv_type_;
    kv_.n_block = 4;
    kv_.block_size = 16;
    kv_.n_head_kv = 3;
    kv_.head_dim = 10;
    k_.assign(kv_.n_block * kv_.block_elems() * 2, 0);
    v_.assign(k_.size(), 0);
    kv_.k = k_.data();
    kv_.v = v_.data();
    slots_ = {0, 17, 63, 5, 40, 41};
    const size_t row = 30;
    kin_ = random_normal(rng, slots_.size() * row);
    vin_ = random_normal(rng, slots_.size() * row);
    ref_.clear();
    for (const auto* in : {&kin_, &vin_})
      for (float x : *in)
        ref_.push_back(kv_type_ == DType::BF16 ? bf16_to_f32(f32_to_bf16(x))
                       : kv_type_ == DType::F16 ? f16_to_f32(f32_to_f16(x))
                                                : x);
    out_ = Guarded<float>(ref_.size());
  }
  void run_fast() override {
    cpu::kv_cache_store(kv_, slots_.data(), static_cast<int>(slots_.size()), kin_.data(), vin_.data());
    const size_t row = 30, half = kin_.size();
    for (size_t i = 0; i < slots_.size(); ++i)
      cpu::kv_cache_load(kv_, slots_[i], out_.data() + i * row, out_.data() + half + i * row);
  }
  std::vector<OutputCheck> outputs() override {
    return {{"kv", out_.data(), ref_.data(), nullptr, nullptr, out_.size(), out_.intact()}};
  }

 private:
  DType kv_type_;
  KvCacheLayer kv_;
  std::vector<float> k_, v_;
  std::vector<int32_t> slots_;
  std::vector<float> kin_, vin_, ref_;
  Guarded<float> out_;
};

std::vector<int> random_lengths(int n, int lo, int hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<int> v(n);
  for (int& x : v) x = u(rng);
  return v;
}

}  // namespace

void add_attention_cases(CaseList& cases, bool perf) {
  if (!perf) {
    for (DType kv : {DType::BF16, DType::F16, DType::F32}) {
      cases.push_back(std::make_unique<KvRoundTripCase>(kv));
      cases.push_back(std::make_unique<DecodeCase>(AttnShape{kv, 8, 2, 64, 16}, random_lengths(7, 1, 300, 1)));
      cases.push_back(std::make_unique<DecodeCase>(AttnShape{kv, 4, 4, 128, 32}, random_lengths(5, 1, 200, 2)));
      cases.push_back(std::make_unique<PrefillCase>(AttnShape{kv, 8, 2, 64, 16}, 0, 40));
      cases.push_back(std::make_unique<PrefillCase>(AttnShape{kv, 8, 1, 64, 16}, 37, 19));
    }
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 24, 2, 64, 16}, random_lengths(3, 5, 90, 3)));
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 12, 2, 128, 16}, random_lengths(4, 1, 150, 4)));
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 32, 8, 128, 16}, std::vector<int>{1, 16, 17, 33}));
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 8, 2, 80, 16}, random_lengths(3, 1, 70, 5)));
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 8, 2, 64, 16, 50}, random_lengths(4, 1, 200, 6)));
    cases.push_back(std::make_unique<PrefillCase>(AttnShape{DType::BF16, 8, 2, 64, 16, 24}, 30, 33));
    cases.push_back(std::make_unique<PrefillCase>(AttnShape{DType::BF16, 16, 16, 64, 32}, 5, 1));
    cases.push_back(std::make_unique<PrefillCase>(AttnShape{DType::BF16, 32, 8, 128, 16}, 100, 70));
    cases.push_back(std::make_unique<PrefillCase>(AttnShape{DType::BF16, 8, 2, 128, 32}, 41, 30));
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 8, 2, 128, 32}, random_lengths(6, 1, 250, 8)));
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 4, 1, 64, 64, 70}, random_lengths(5, 1, 300, 9)));
    // Blocks of 48 keys (steps straddle blocks), a head dim of 96, one query row per unit.
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 8, 2, 96, 48}, random_lengths(5, 1, 260, 10)));
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 4, 4, 64, 32, 45}, random_lengths(4, 1, 200, 11)));
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::F16, 8, 2, 96, 48}, random_lengths(5, 1, 260, 10)));
    // Both bf16 kernels of the Avx512 level, whichever this CPU prefers.
    for (Bf16Kernel k : {Bf16Kernel::Dpbf16, Bf16Kernel::Fma}) {
      cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 8, 2, 64, 16, 0, k}, random_lengths(7, 1, 300, 1)));
      cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 12, 2, 80, 32, 0, k}, random_lengths(4, 1, 150, 4)));
      cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 8, 2, 64, 16, 50, k}, random_lengths(4, 1, 200, 6)));
      cases.push_back(std::make_unique<PrefillCase>(AttnShape{DType::BF16, 32, 8, 128, 16, 0, k}, 100, 70));
      cases.push_back(std::make_unique<PrefillCase>(AttnShape{DType::BF16, 8, 2, 64, 16, 24, k}, 30, 33));
    }
    return;
  }
  // Mixtral attention: H = 32, Hkv = 8, Dh = 128.
  cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 32, 8, 128, 32}, std::vector<int>(64, 2048),
                                               Target{"decode attn 64x2048 bf16", 0.70, true}));
  cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 32, 8, 128, 16}, std::vector<int>(64, 2048)));
  cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 32, 8, 128, 64}, std::vector<int>(64, 2048)));
  cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 32, 8, 128, 32}, random_lengths(64, 64, 4032, 7)));
  cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::F16, 32, 8, 128, 32}, std::vector<int>(64, 2048)));
  // The two kernels of the Avx512 level (run with FERRY_ISA=avx512 on a CPU with AMX to time them).
  for (Bf16Kernel k : {Bf16Kernel::Dpbf16, Bf16Kernel::Fma})
    cases.push_back(std::make_unique<DecodeCase>(AttnShape{DType::BF16, 32, 8, 128, 32, 0, k}, std::vector<int>(64, 2048)));
  cases.push_back(std::make_unique<PrefillCase>(AttnShape{DType::BF16, 32, 8, 128, 32}, 0, 512));
}

}  // namespace ferry::ops_test
