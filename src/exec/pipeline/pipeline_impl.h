// Internal to the pipelined executor: its state (weights, device buffers planned once, the expert
// ring, the paged KV cache, the micro-batch relays) and its steps. pipeline_memory.cpp plans the
// buffers, pipeline_steps.cpp enqueues the tasks of one step of the schedule, pipeline_schedule.cpp
// holds the decode loop and prefill, pipelined_model.cpp the Model interface.
//
// The layer math is the cpu target's (exec/cpu/layer_blocks.h) on the same packed weights, so the
// executor and the `cpu` target at the same expert precision compute bit-identical logits.
#pragma once
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "exec/cpu/cpu_weights.h"
#include "exec/cpu/expert_mlp.h"
#include "exec/cpu/layer_blocks.h"
#include "ferry/device.h"
#include "ferry/exec/pipelined_model.h"
#include "ferry/ops/attention.h"
#include "ferry/rope_frequencies.h"
#include "ferry/router_math.h"

namespace ferry {

template <class T>
T* typed(Device& d, BufferId b) {
  return static_cast<T*>(d.data(b));
}

struct PipelinedModel::Impl {
  // ---- fixed at construction ----
  cpu_target::CpuWeights w;
  const ModelConfig& c;
  Device& dev;
  planner::Policy policy;
  PipelineOptions opt;
  RopeFrequencies rope;
  cpu_target::MatmulFn matmul = nullptr;  // bf16 weights take f32 activations, as on the cpu target
  int mu = 1, n_batch = 1, n_pages = 1, max_blocks = 0, prefill_cap = 0;
  bool host_attention = true;

  // ---- experts: pinned ones stay resident; streamed ones go through a double-buffered ring ----
  std::vector<int> n_pinned;  // [L]: experts 0 .. n_pinned-1 of a layer are resident
  int n_slot = 0;             // streamed experts per ring half (max over layers)
  std::vector<cpu_target::PackedMlp> ring[2];               // [half][slot]
  std::vector<BufferId> ring_page[2];                       // [half][page]: slots of one page
  std::vector<EventId> page_ready[2], page_free[2];         // [half][page]
  std::vector<std::vector<const cpu_target::PackedMlp*>> expert_of[2];  // [half][L][E]: resident or ring slot
  // The ring half each layer's streamed experts were last issued to. Halves alternate per layer load,
  // so any layer count works and the next step's layer 0 can load during the last layer.
  std::vector<int> layer_half;
  int next_half = 0;
  bool layer0_prefetched = false;

  // ---- KV cache: one arena of blocks per layer, a free list, block tables per sequence slot ----
  std::vector<cpu::KvCacheLayer> kv;  // [L]
  std::vector<uint16_t> kv_host;      // the arena when attention runs on the host
  std::vector<int32_t> free_blocks;
  std::vector<int32_t> block_tables;  // [max_sequences][max_blocks]
  struct Seq {
    bool live = false;
    int n_past = 0;
    int n_blocks = 0;
  };
  std::vector<Seq> seqs;

  // ---- per micro-batch relays (device) and pinned staging (host) ----
  struct Micro {
    Impl* self = nullptr;
    int j = 0, n_tok = 0;
    BufferId hidden, qkv_dev, attn_dev, logits_dev;  // device: [μ, D], [μ, q+2kv], [μ, H*Dh], [μ, V]
    BufferId qkv_pin, attn_pin, logits_pin;          // host
    EventId qkv_ready, qkv_on_host, attn_done, attn_loaded, logits_ready, logits_done;
    std::vector<int32_t> tokens, positions, slots, n_ctx, item;  // [μ]
    std::vector<int32_t> tables;                                  // [μ][max_blocks]
  };
  std::vector<Micro> mb;

  // ---- compute scratch (device): one set, the compute stream runs one task at a time ----
  BufferId scratch_buf, mlp_buf;
  float* attn_x = nullptr;     // [P, D] normalised attention input
  float* qkv_rows = nullptr;   // [P, q+2kv] stacked QKV
  float* attn_y = nullptr;     // [P, D] O-proj output
  cpu_target::FfnBuffers ffn;  // [P] tokens
  cpu_target::MlpScratch mlp;  // [P] rows (adopted by the device)
  // prefill relays
  BufferId pf_hidden, pf_qkv, pf_attn, pf_logits, pf_logits_pin;
  EventId pf_logits_ready;
  std::vector<int32_t> pf_tokens, pf_positions, pf_slots;
  int pf_n_tok = 0, pf_seq = 0, pf_n_past = 0, pf_first_logit = 0;

  std::vector<int32_t> order;   // decode item order (sorted by context)
  std::vector<float> out;       // logits [rows, V]
  std::vector<size_t> out_row;  // per item: first row
  PipelineStats stats;

  Impl(const WeightSource& weights, Device& device, const planner::Policy& p, const PipelineOptions& o);
  void plan_memory();       // pipeline_memory.cpp
  void plan_experts();
  void plan_kv_cache();
  void plan_relays();
  int alloc_block();
  void reserve_positions(int seq, int n_tok, int32_t* slots_out);
  cpu_target::QkvRows qkv(BufferId b, int n_tok) {
    float* q = typed<float>(dev, b);
    float* k = q + static_cast<size_t>(n_tok) * c.q_dim();
    return {q, k, k + static_cast<size_t>(n_tok) * c.kv_dim()};
  }
  // With policy.overlap off every step waits for the previous one: the same loop, run serially.
  void step_done() {
    if (!policy.overlap) dev.synchronize();
  }
  // Page range [first, last) of the streamed experts (slots) of `layer` in page p.
  std::pair<int, int> page_slots(int layer, int page) const;

  // ---- steps (pipeline_steps.cpp) ----
  void begin_layer_load(int layer);
  void issue_page(int layer, int page);  // streamed experts of one page -> the layer's ring half
  void embed(Micro& m);
  void pre_attention(int layer, Micro& m);  // norm, QKV, RoPE; QKV -> host; attention (host or device)
  void load_hidden(int layer, Micro& m);    // host attention output -> device
  // O-proj, router, experts in cache-state order (ring half h), combine
  void post_attention(int layer, int h, Micro& m);
  void lm_head(Micro& m);
  void count_expert_use(int layer, int n_tok);  // hits: tokens routed to pinned experts

  // ---- schedule (pipeline_schedule.cpp) ----
  void decode(std::span<const ForwardItem> items, std::span<const int32_t> idx);
  void prefill(const ForwardItem& item, size_t first_row);
};

}  // namespace ferry
