// Internal to the pipelined executor: its state (weights uploaded into device buffers, the expert store
// and ring, the paged KV cache, the micro-batch relays) and its steps. pipeline_memory.cpp plans and
// uploads the buffers, pipeline_steps.cpp enqueues the tasks of one step of the schedule,
// pipeline_schedule.cpp holds the decode loop and prefill (the same steps), pipelined_model.cpp the
// Model interface.
//
// Every layer step goes through the device's op set (ferry/exec/layer_ops.h) on device buffers: the
// executor never dereferences device memory. What the host needs back (logits, the routing for the
// expert statistics) comes over D2H into pinned buffers.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "exec/cpu/cpu_weights.h"
#include "exec/kv_cache.h"
#include "ferry/device.h"
#include "ferry/exec/layer_ops.h"
#include "ferry/exec/expert_image.h"
#include "ferry/exec/model_weights.h"
#include "ferry/exec/pipelined_model.h"
#include "ferry/experts/tiered_experts.h"
#include "ferry/planner/buffer_model.h"
#include "ferry/rope_frequencies.h"

namespace ferry {

template <class T>
T* typed(Device& d, BufferId b) {
  return static_cast<T*>(d.data(b));
}

// Where each array of an expert lies inside its image (gate, up, down: data, scales, zeros), and the
// image's bytes. Every routed expert of a model has the same shape and precision, so one layout serves
// the store, the ring and the resident experts, and an expert moves as one contiguous copy.

struct PipelinedModel::Impl {
  // ---- fixed at construction ----
  planner::BufferList buffers;  // every allocation, as the planner prices it
  std::vector<bool> allocated;  // [buffer]
  ModelConfig c;
  Device& dev;
  LayerOps& ops;
  planner::Policy policy;
  PipelineOptions opt;
  RopeFrequencies rope;
  int mu = 1, n_batch = 1, n_pages = 1, prefill_cap = 0, cap = 0;  // cap: most tokens of one op call
  bool host_attention = true;
  ModelWeights dw;  // dense weights, views into device buffers

  // ---- experts: pinned ones resident on the device; streamed ones copied from the host store into a
  // double-buffered ring, one page of slots per micro-batch ----
  ExpertImage image;
  MlpWeights proto;                              // the shape of every routed expert (no data)
  std::vector<int> n_pinned;                     // [L]: experts 0 .. n_pinned-1 of a layer are resident
  std::vector<std::vector<MlpWeights>> resident; // [L][n_pinned] views into device memory
  std::vector<std::vector<MlpWeights>> stored;   // [L][E] views into the host store (pinned)
  int n_slot = 0;                                // streamed experts per ring half (max over layers)
  std::vector<MlpWeights> ring[2];               // [half][slot] views into device memory
  std::vector<BufferId> ring_page[2];            // [half][page]: the slots of one page
  std::vector<int> ring_page_first[2];           // [half][page]: its first slot
  BufferId store_buf;                            // host: every streamed expert's image
  std::vector<EventId> page_ready[2], page_free[2];  // [half][page]
  std::vector<int> table[2];                     // [half][L]: the ops' expert table of the layer in that half
  // The ring half each layer's streamed experts were last issued to. Halves alternate per layer load,
  // so any layer count works and the next step's layer 0 can load during the last layer.
  std::vector<int> layer_half;
  int next_half = 0;
  bool layer0_prefetched = false;

  // ---- where each expert sits: a layer's experts have positions, [0, g) resident on the device, [g, E - n_ssd)
  // the DRAM tier, the rest the SSD tier. The expert tables, the ring (slot s holds position g + s), the host
  // store and the demand-fetch flags go by position; the routing and the combine by expert id; ffn_input
  // maps one to the other (FfnBuffers::expert_position). With frequency residency (policy.expert_residency)
  // a DRAM-tier expert that runs hotter than a resident one trades places with it at the start of a
  // forward; otherwise the positions stay the identity. ----
  std::vector<std::vector<int32_t>> position;   // [L][E]: expert id -> position
  std::vector<std::vector<int32_t>> expert_at;  // [L][E]: position -> expert id
  bool adaptive = false;                        // positions change during the run
  BufferId positions_buf, swap_buf;             // device [L][E] positions; host, pinned: one expert image
  EventId swap_read;                            // the resident image is in swap_buf
  std::vector<BufferId> resident_buf;           // [L]: the layer's resident experts
  std::vector<std::vector<float>> heat;         // [L][E] by expert id: routed assignments, halved per re-rank
  int64_t tokens_since_rerank = 0;
  std::vector<int32_t> cold, hot;               // scratch of the re-rank: positions
  // The device copy of a layer's positions for ffn_input (null: the identity).
  const int32_t* expert_positions(int layer) {
    return adaptive ? typed<int32_t>(dev, positions_buf) + static_cast<size_t>(layer) * c.n_expert : nullptr;
  }

  // ---- the SSD tier: a MoE layer's last n_ssd experts stay in the packed store's expert file; each load of
  // the layer reads them (a Host-stream task, through the store's checksummed reader) into a pinned staging
  // half, from which the layer's pages copy them to the ring like the DRAM-tier ones ----
  std::vector<int> n_ssd;                        // [L]: experts E - n_ssd .. E-1 of a layer live on the SSD
  int n_ssd_slot = 0;                            // most SSD experts of any layer
  BufferId ssd_staging[2];                       // host, pinned: [half][n_ssd_slot] images
  EventId ssd_ready[2], ssd_free[2];             // [half]: staging filled / its last page copied out
  std::unique_ptr<experts::TieredExperts> ssd;   // used by Host-stream tasks only
  std::vector<const MlpWeights*> ssd_table;      // [E] scratch of the read task
  std::vector<int> ssd_ids;                      // scratch of the read task

  // ---- demand fetch (policy.expert_fetch demand): a layer's ring half gets ahead of time only the experts
  // the last forward routed at that layer; once the layer's router has run (its routing copied back) the
  // host fetches the routed ones that did not come. Experts no token routes to are not moved. ----
  bool demand = false;
  std::vector<std::vector<uint8_t>> predicted;  // [L][E]: routed at that layer in the last forward
  std::vector<uint8_t> present[2];              // [half][slot]: copied for the half's current layer
  std::vector<uint8_t> routed;                  // [E] scratch: routed by the batch at the current layer
  std::vector<int> copy_slots;                  // scratch: the slots one copy task moves
  std::vector<uint8_t> fetched_late;            // [slot]: fetched after the router at the current layer
  EventId misses_done[2];                       // [half]: the layer's fetched misses have landed

  // ---- KV cache: host memory for host attention, a device buffer for device attention ----
  std::unique_ptr<KvCache> kv;
  int max_blocks = 0;

  // ---- per micro-batch relays: device buffers and their pinned host twins ----
  struct Micro {
    Impl* self = nullptr;
    int j = 0, cap = 0, n_tok = 0;
    bool prefill = false;     // one sequence's chunk (prefill attention) or one token per sequence
    int seq = 0, n_past = 0;  // prefill: the sequence and its tokens before the chunk
    int logit_row0 = 0, n_logit = 0;  // rows of hidden whose logits are wanted
    // ids relay, int32 [tokens cap | positions cap | slots cap | n_ctx cap | tables cap x max_blocks]
    BufferId ids_dev, ids_pin;
    int32_t *tokens = nullptr, *positions = nullptr, *slots = nullptr, *n_ctx = nullptr, *tables = nullptr;
    BufferId hidden, qkv_dev, attn_dev, logits_dev, routing_dev;  // [cap, D], [cap, q+2kv], [cap, H*Dh], [cap, V], [L, cap, K]
    BufferId qkv_pin, attn_pin, logits_pin, routing_pin;
    EventId qkv_ready, qkv_on_host, attn_done, attn_loaded, logits_ready, logits_done;
    EventId routing_ready, routing_on_host;  // demand fetch: a layer's routing computed / copied back
    std::vector<int32_t> item;  // [cap] decode: the forward item of each row
    size_t ids_offset(int part) const;  // bytes into the ids relay of part 0..4
  };
  std::vector<Micro> mb;  // [n_pages] decode micro-batches
  std::vector<Micro*> micro_ptrs;  // scratch: the micro-batches of a step
  Micro pf;               // the prefill chunk

  // ---- compute scratch (device): one set, the compute stream runs one op at a time ----
  BufferId scratch_buf;
  AttentionScratch attn_scratch;
  FfnBuffers ffn;

  std::vector<int32_t> order;   // decode item order (sorted by context)
  std::vector<float> out;       // logits [rows, V]
  std::vector<size_t> out_row;  // per item: first row
  PipelineStats stats;

  Impl(const WeightSource& weights, Device& device, const planner::Policy& p, const PipelineOptions& o);
  // pipeline_memory.cpp
  void reject_what_cannot_run() const;  // policy fields with a value the executor does not run
  void plan_memory(const WeightSource& weights);
  void check_cache_bytes() const;       // the policy's cache_bytes against the buffer list
  // Every allocation goes through the buffer list (ferry/exec/pipeline_buffers.h), by name.
  const planner::PlannedBuffer& planned(const std::string& name, planner::BufferLevel level);
  BufferId alloc(const std::string& name);
  BufferId alloc_host(const std::string& name);
  // The dense weights' device layout, uploaded into *upload_to when given; and its bytes.
  std::pair<ModelWeights, size_t> dense_layout(const cpu_target::CpuWeights& w, BufferId* upload_to = nullptr);
  void upload_dense(const cpu_target::CpuWeights& w);
  void plan_experts(cpu_target::CpuWeights& w, const WeightSource& weights);
  void plan_ssd_tier(const WeightSource& weights);  // n_ssd from the policy, the store's reader, staging
  void plan_kv_cache();
  void plan_relays();
  void plan_micro(Micro& m, int j, int capacity, const char* prefix);
  // Page range [first, last) of the streamed experts (slots) of `layer` in page p.
  std::pair<int, int> page_slots(int layer, int page) const;
  // With policy.overlap off every step waits for the previous one: the same loop, run serially.
  void step_done() {
    if (!policy.overlap) dev.synchronize();
  }
  QkvRows qkv(BufferId b, int n_tok) {
    float* q = typed<float>(dev, b);
    float* k = q + static_cast<size_t>(n_tok) * c.q_dim();
    return {q, k, k + static_cast<size_t>(n_tok) * c.kv_dim()};
  }
  QkvRows qkv_at(float* base, int n_tok) const {
    float* k = base + static_cast<size_t>(n_tok) * c.q_dim();
    return {base, k, k + static_cast<size_t>(n_tok) * c.kv_dim()};
  }

  // ---- steps (pipeline_steps.cpp), each a few tasks guarded by events ----
  void begin_layer_load(int layer);
  void issue_page(int layer, int page);  // streamed experts of one page -> the layer's ring half
  // Copies the streamed experts in `slots` (ring slots of the layer's half) from the host store or the SSD
  // staging half; marks them present.
  void copy_experts(int layer, int page_tag, std::span<const int> slots);
  void read_ssd_experts(int layer, int half);  // Host-stream task body: the store -> ssd_staging[half]
  void load_ids(Micro& m);               // ids relay -> device, on the compute stream
  void embed(Micro& m);
  void pre_attention(int layer, Micro& m);  // norm, QKV, RoPE; QKV -> host; attention (host or device)
  void load_hidden(int layer, Micro& m);    // host attention output -> device
  // O-proj, router, experts in cache-state order (ring half h), combine; lm_head after the last layer
  void post_attention(int layer, int h, Micro& m);
  // The same in two parts: O-proj, router, pinned and shared experts (and, with demand fetch, the layer's
  // routing copied back); then the streamed experts, combine and lm_head.
  void post_attention_head(int layer, Micro& m);
  void post_attention_tail(int layer, int h, Micro& m);
  // Demand fetch, once every micro-batch's head of the layer is enqueued: waits for their routing, fetches
  // the routed experts not present, and remembers the routed set as the next forward's prediction.
  void fetch_misses(int layer, int h, std::span<Micro* const> micro);
  void launch_streamed_experts(int layer, int h, Micro& m, int first, int last);  // slots [first, last)
  void launch_ffn_start(int layer, Micro& m, bool with_o_proj, bool with_experts);
  void lm_head(Micro& m);
  void count_expert_use(const Micro& m);  // from the routing copied back: hits are resident experts; heat
  // Frequency residency, between forwards: where a DRAM-tier expert is clearly hotter than a resident one,
  // the two trade places (device and host copies swapped through swap_buf, positions re-uploaded).
  void rerank_experts();
  void swap_experts(int layer, int resident_pos, int dram_pos);

  // ---- schedule (pipeline_schedule.cpp) ----
  void prefetch_layer0();
  void decode(std::span<const ForwardItem> items, std::span<const int32_t> idx);
  void prefill(const ForwardItem& item, size_t first_row);
};

}  // namespace ferry
