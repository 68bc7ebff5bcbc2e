// Frequency residency (policy.expert_residency frequency): the experts resident on the device are the ones
// the router has been choosing, not experts 0 .. g-1. Every forward adds the routing it ran to a per-expert
// heat (count_expert_use); at the start of a forward, once enough tokens have been routed since the last
// look, the coldest resident experts of each layer trade places with the hottest DRAM-tier ones where the
// difference is clear (a margin, so two experts of equal heat do not swap back and forth). The heat halves at
// each look: it follows the recent routing, a window of a few hundred tokens.
//
// A trade runs between forwards, with the device idle: the resident image goes to a pinned staging image,
// the DRAM-tier one takes its device slot, and the staged image takes the DRAM-tier one's place in the host
// store. The two experts swap positions; the layer's positions are uploaded for ffn_input. Numerics do not
// change: positions only order the groups of the assignments (FfnBuffers::expert_position).
#include <algorithm>
#include <cstring>

#include "exec/pipeline/pipeline_impl.h"

namespace ferry {

namespace {
constexpr int64_t kRerankTokens = 64;  // tokens routed between two looks
constexpr float kSwapMargin = 1.5f;    // a DRAM-tier expert must be this much hotter than the resident one
constexpr float kSwapFloor = 2.0f;     // ... and by at least this many assignments
}  // namespace

void PipelinedModel::Impl::rerank_experts() {
  if (!adaptive || tokens_since_rerank < kRerankTokens) return;
  tokens_since_rerank = 0;
  const int E = c.n_expert;
  bool idle = false;
  for (int l = 0; l < c.n_layer; ++l) {
    const int g = n_pinned[l], dram_end = E - n_ssd[l];
    if (!dw.layers[l].is_moe || g == 0 || dram_end <= g) continue;
    const std::vector<float>& h = heat[l];
    const std::vector<int32_t>& at = expert_at[l];
    cold.clear();
    hot.clear();
    for (int p = 0; p < g; ++p) cold.push_back(p);
    for (int p = g; p < dram_end; ++p) hot.push_back(p);
    // coldest resident first, hottest DRAM-tier first; ties by position, so the order is deterministic
    std::sort(cold.begin(), cold.end(), [&](int a, int b) { return h[at[a]] != h[at[b]] ? h[at[a]] < h[at[b]] : a < b; });
    std::sort(hot.begin(), hot.end(), [&](int a, int b) { return h[at[a]] != h[at[b]] ? h[at[a]] > h[at[b]] : a < b; });
    bool moved = false;
    for (size_t i = 0; i < std::min(cold.size(), hot.size()); ++i) {
      if (h[at[hot[i]]] <= kSwapMargin * h[at[cold[i]]] + kSwapFloor) break;  // the rest are closer still
      if (!idle) {
        dev.synchronize();  // the next step's layer 0 may be loading
        idle = true;
      }
      swap_experts(l, cold[i], hot[i]);
      moved = true;
    }
    // Setup-style upload (it waits), between forwards with the device idle.
    if (moved) dev.upload(positions_buf, sizeof(int32_t) * l * E, position[l].data(), sizeof(int32_t) * E);
  }
  for (std::vector<float>& h : heat)
    for (float& v : h) v *= 0.5f;
}

void PipelinedModel::Impl::swap_experts(int l, int r, int px) {
  const int g = n_pinned[l];
  const size_t bytes = image.bytes;
  const TaskTag tag{TaskKind::ExpertPage, static_cast<int16_t>(l), -1};
  uint8_t* slot = resident[l][r].gate.data.data() - image.offset[0];
  uint8_t* host = stored[l][px].gate.data.data() - image.offset[0];
  std::byte* staged = typed<std::byte>(dev, swap_buf);
  dev.copy(StreamKind::D2H, tag, swap_buf, resident_buf[l], staged, slot, bytes);
  dev.record(swap_read, StreamKind::D2H);
  dev.wait(StreamKind::H2D, swap_read);
  dev.copy(StreamKind::H2D, tag, resident_buf[l], store_buf, slot, host, bytes);
  dev.synchronize();
  std::memcpy(host, staged, bytes);
  // Layer 0's next load may already be in the ring: its slot for position px holds the expert leaving it.
  const int h = layer_half[0], s = px - g;
  if (l == 0 && layer0_prefetched && (!demand || present[h][s])) {
    int page = 0;
    while (page + 1 < n_pages && ring_page_first[h][page + 1] <= s) ++page;
    dev.copy(StreamKind::H2D, tag, ring_page[h][page], store_buf, ring[h][s].gate.data.data() - image.offset[0],
             host, bytes);
    stats.streamed_bytes += bytes;
    dev.synchronize();
  }
  const int y = expert_at[l][r], x = expert_at[l][px];
  std::swap(position[l][x], position[l][y]);
  std::swap(expert_at[l][r], expert_at[l][px]);
  if (demand) std::swap(predicted[l][r], predicted[l][px]);
  ++stats.expert_swaps;
  stats.expert_swap_bytes += 2 * bytes;
}

}  // namespace ferry
