// The __host__ __device__ pieces of the MoE layer the CUDA kernels run, checked on the CPU:
//   router_route (ferry/router_math.h) called as the CUDA router kernel calls it (scratch [3E] per token,
//   int32 outputs) equals the cpu router op (cpu::router_topk, what route_token and the cpu target run),
//   bit for bit, for every router kind;
//   moe_ascending_slots (ferry/ops/moe_math.h), the order in which ffn_output sums a token's routed
//   outputs, equals a sort of its slots by expert index;
//   moe_offsets_from_counts + moe_chunk_rank, run in chunks as the CUDA grouping kernel runs them, give the
//   cpu group_by_expert's offsets and assignments;
//   moe_combine_value, as the CUDA combine kernel runs it, gives ffn_output's y and h bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "exec/cpu/layer_blocks.h"
#include "ferry/ops/expert_ffn.h"
#include "ferry/ops/moe_math.h"
#include "ferry/ops/router.h"
#include "ferry/route_token.h"
#include "ferry/router_math.h"

namespace ferry {
namespace {

cpu::RouterParams params(RouterKind kind, int n_expert, int k, bool norm_topk) {
  cpu::RouterParams p;
  p.kind = kind;
  p.n_expert = n_expert;
  p.top_k = kind == RouterKind::SparseMixer ? 2 : k;
  p.norm_topk_prob = norm_topk;
  p.jitter_eps = 0.01f;
  return p;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

// As the kernel: token t reads logits + t*E, uses scratch + t*3E, writes idx/weight + t*K.
void expect_kernel_routing_matches_cpu(const cpu::RouterParams& p, uint32_t seed, float spread) {
  const int T = 64, E = p.n_expert, K = p.top_k;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, spread);
  std::vector<float> logits(static_cast<size_t>(T) * E);
  for (float& l : logits) l = dist(rng);
  for (int t = 0; t < T; t += 7) logits[t * E + t % E] = logits[t * E + (t + 1) % E];  // ties
  std::vector<int32_t> want_idx(T * K), got_idx(T * K);
  std::vector<float> want_w(T * K), got_w(T * K), scratch(static_cast<size_t>(T) * 3 * E);
  cpu::router_topk(logits.data(), T, p, want_idx.data(), want_w.data());
  for (int t = 0; t < T; ++t)
    router_route(logits.data() + t * E, p, scratch.data() + t * 3 * E, got_idx.data() + t * K,
                 got_w.data() + t * K);
  for (int i = 0; i < T * K; ++i) {
    EXPECT_EQ(got_idx[i], want_idx[i]) << "token " << i / K << " slot " << i % K;
    EXPECT_TRUE(same_bits(got_w[i], want_w[i])) << "token " << i / K << " slot " << i % K << ": " << got_w[i]
                                                << " vs " << want_w[i];
  }
}

TEST(RouteMath, SoftmaxTopKAsTheKernelRunsIt) {
  for (bool renorm : {false, true})
    for (auto [e, k] : {std::pair{8, 2}, {60, 4}, {64, 8}, {128, 8}, {160, 6}}) {
      cpu::RouterParams p = params(RouterKind::SoftmaxTopK, e, k, renorm);
      expect_kernel_routing_matches_cpu(p, 3u + e + k, 1.0f);
      p.routed_scaling = 16.0f;  // DeepSeek-V2-Lite style scaling
      expect_kernel_routing_matches_cpu(p, 5u + e, 2.0f);
    }
}

TEST(RouteMath, PNormAsTheKernelRunsIt) {
  for (float pn : {1.0f, 2.0f}) {
    cpu::RouterParams p = params(RouterKind::SoftmaxTopKPNorm, 16, 4, false);
    p.pnorm = pn;
    expect_kernel_routing_matches_cpu(p, 11u, 1.5f);
  }
}

TEST(RouteMath, SparseMixerAsTheKernelRunsIt) {
  for (float spread : {0.01f, 0.5f, 3.0f}) expect_kernel_routing_matches_cpu(params(RouterKind::SparseMixer, 16, 2, false), 13u, spread);
}

TEST(MoeMath, AscendingSlotsSortByExpert) {
  std::mt19937 rng(9);
  for (int k = 1; k <= kMaxExpertsUsed; ++k) {
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<int32_t> experts(128);
      std::iota(experts.begin(), experts.end(), 0);
      std::shuffle(experts.begin(), experts.end(), rng);
      experts.resize(k);
      int order[kMaxExpertsUsed];
      moe_ascending_slots(experts.data(), k, order);
      std::vector<int> want(k);
      std::iota(want.begin(), want.end(), 0);
      std::sort(want.begin(), want.end(), [&](int a, int b) { return experts[a] < experts[b]; });
      for (int j = 0; j < k; ++j) EXPECT_EQ(order[j], want[j]);
    }
  }
}

// The grouping kernel's three phases (kernels/group_by_expert.cu) with `chunk` lanes, sequentially.
void group_as_the_kernel(const std::vector<int32_t>& idx, int k, int n_expert, int chunk, std::vector<int32_t>& offsets,
                         std::vector<int32_t>& token, std::vector<int32_t>& slot) {
  const int n = static_cast<int>(idx.size());
  std::vector<int32_t> cursor(n_expert, 0), chunk_expert(chunk);
  for (int i = 0; i < n; ++i)
    if (idx[i] >= 0 && idx[i] < n_expert) ++cursor[idx[i]];
  offsets.assign(n_expert + 1, -1);
  moe_offsets_from_counts(cursor.data(), n_expert, offsets.data());
  token.assign(n, -1);
  slot.assign(n, -1);
  for (int base = 0; base < n; base += chunk) {
    for (int lane = 0; lane < chunk; ++lane) {
      const int i = base + lane;
      const int e = i < n ? idx[i] : -1;
      chunk_expert[lane] = e < 0 || e >= n_expert ? -1 : e;
    }
    for (int lane = 0; lane < chunk; ++lane) {  // every lane reads the cursors before any advances
      const int e = chunk_expert[lane];
      if (e < 0) continue;
      const int at = cursor[e] + moe_chunk_rank(chunk_expert.data(), lane, e);
      token[at] = (base + lane) / k;
      slot[at] = base + lane;
    }
    for (int lane = 0; lane < chunk; ++lane)
      if (chunk_expert[lane] >= 0) ++cursor[chunk_expert[lane]];
  }
}

TEST(MoeMath, GroupingInChunksEqualsTheCpuGrouping) {
  std::mt19937 rng(21);
  for (auto [n_tok, k, n_expert] : {std::tuple{0, 2, 8}, {1, 1, 4}, {1, 8, 64}, {37, 2, 8}, {300, 8, 64}, {130, 6, 160}})
    for (int chunk : {256, 7, 1}) {
      std::vector<int32_t> idx(static_cast<size_t>(n_tok) * k);
      for (int t = 0; t < n_tok; ++t) {  // k distinct experts per token, as a router picks them
        std::vector<int32_t> e(n_expert);
        std::iota(e.begin(), e.end(), 0);
        std::shuffle(e.begin(), e.end(), rng);
        std::copy(e.begin(), e.begin() + k, idx.begin() + static_cast<size_t>(t) * k);
      }
      std::vector<int32_t> want_off(n_expert + 1), want_tok(idx.size()), want_slot(idx.size());
      cpu::group_by_expert(idx.data(), n_tok, k, n_expert, want_off.data(), want_tok.data(), want_slot.data());
      std::vector<int32_t> off, tok, slot;
      group_as_the_kernel(idx, k, n_expert, chunk, off, tok, slot);
      EXPECT_EQ(off, want_off) << n_tok << " tokens, chunk " << chunk;
      EXPECT_EQ(tok, want_tok) << n_tok << " tokens, chunk " << chunk;
      EXPECT_EQ(slot, want_slot) << n_tok << " tokens, chunk " << chunk;
    }
}

// ffn_output of the cpu layer blocks against the combine kernel's per-element math, bit for bit: MoE layers
// with and without a (gated) shared expert, and a dense layer (k = 0 in the kernel).
TEST(MoeMath, CombineValueEqualsFfnOutput) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int T = 5, D = 33, E = 16;
  for (int K : {1, 2, 8})
    for (int variant = 0; variant < 4; ++variant) {  // 0 moe, 1 moe + shared, 2 moe + gated shared, 3 dense
      const bool moe = variant < 3, shared = variant >= 1, gated = variant == 2;
      ModelConfig c;
      c.d_model = D;
      c.n_expert = E;
      c.n_expert_used = K;
      LayerWeights L;
      L.is_moe = moe;
      (moe ? L.shared : L.dense).gate.rows = shared ? 1 : 0;  // only its presence matters to ffn_output
      L.shared_gate.rows = gated ? 1 : 0;
      std::vector<int32_t> idx(T * K);
      std::vector<float> w(T * K), expert_out(static_cast<size_t>(T) * K * D), shared_out(T * D), gate(T),
          h0(T * D), y(T * D);
      for (int t = 0; t < T; ++t) {
        std::vector<int32_t> e(E);
        std::iota(e.begin(), e.end(), 0);
        std::shuffle(e.begin(), e.end(), rng);
        std::copy(e.begin(), e.begin() + K, idx.begin() + t * K);
      }
      for (float& v : w) v = std::abs(dist(rng));
      for (float& v : expert_out) v = dist(rng) * 3.0f;
      for (float& v : shared_out) v = dist(rng);
      for (float& v : gate) v = 1.0f / (1.0f + std::exp(-dist(rng)));
      for (float& v : h0) v = dist(rng) * 10.0f;
      FfnBuffers b;
      b.y = y.data();
      b.topk_idx = idx.data();
      b.topk_weight = w.data();
      b.expert_out = expert_out.data();
      b.shared_out = shared_out.data();
      b.shared_gate = gate.data();
      std::vector<float> h = h0;
      cpu_target::ffn_output(c, L, T, b, h.data());
      // as combine_kernel (kernels/moe_combine.cu) with CudaOps::ffn_output's arguments
      const int k = moe ? K : 0;
      int mismatches = 0;
      for (int t = 0; t < T; ++t) {
        int order[kMaxExpertsUsed];
        if (k > 0) moe_ascending_slots(idx.data() + t * k, k, order);
        for (int col = 0; col < D; ++col) {
          const float acc = moe_combine_value(expert_out.data(), w.data(), order, k, t, D, col,
                                              shared ? shared_out.data() : nullptr, gated ? gate[t] : 1.0f);
          const float hv = moe_add(h0[t * D + col], acc);
          if (!same_bits(acc, y[t * D + col]) || !same_bits(hv, h[t * D + col])) ++mismatches;
        }
      }
      EXPECT_EQ(mismatches, 0) << "K " << K << " variant " << variant;
    }
}

}  // namespace
}  // namespace ferry
