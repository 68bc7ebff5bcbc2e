// The executor's memory, planned once at construction: the dense weights and the pinned experts are
// uploaded into device buffers, the streamed experts copied into one pinned host store, and every relay
// and scratch buffer carved, so a policy that does not fit fails before the first token, naming the
// buffer, and the hot path allocates nothing. The packed host weights are dropped once uploaded.
#include <algorithm>
#include <iterator>
#include <cstdio>
#include <cstring>
#include <string>

#include "exec/pipeline/pipeline_impl.h"
#include "ferry/cpu_model.h"
#include "ferry/error.h"
#include "ferry/exec/pipeline_buffers.h"
#include "ferry/router_math.h"

namespace ferry {

namespace {

constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string shortest(double v) {  // 0.5, not 0.500000
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

CpuModelOptions packing_options(const planner::Policy& p, const PipelineOptions& o) {
  CpuModelOptions c;
  c.expert_dtype = precision_dtype(p.gpu_expert_precision);
  c.group_size = p.group_size;
  return c;
}

// Metadata only: the shape of a routed expert (every expert of a model has the same).
MlpWeights shape_of(const MlpWeights& e) {
  MlpWeights proto;
  proto.gate = cpu::packed_view(e.gate, nullptr, nullptr, nullptr);
  proto.up = cpu::packed_view(e.up, nullptr, nullptr, nullptr);
  proto.down = cpu::packed_view(e.down, nullptr, nullptr, nullptr);
  return proto;
}

// Places arrays one after another in one device buffer: a first pass (placing false) only measures,
// the second uploads and returns the arrays' device addresses.
class Placer {
 public:
  Placer(Device& dev) : dev_(dev) {}
  void start(BufferId buf) {
    buf_ = buf;
    base_ = static_cast<std::byte*>(dev_.data(buf));
    top_ = 0;
    placing_ = true;
  }
  size_t bytes() const { return top_; }

  template <class T>
  const T* array(const std::vector<T>& v) {
    return static_cast<const T*>(put(v.data(), v.size() * sizeof(T)));
  }
  cpu::PackedMatrix matrix(const cpu::PackedMatrix& m) {
    if (m.rows == 0) return {};
    void* d = put(m.data.data(), m.data.size());
    void* s = put(m.scales.data(), m.scales.size());
    void* z = put(m.zeros.data(), m.zeros.size());
    return cpu::packed_view(m, d, s, z);
  }
  MlpWeights mlp(const MlpWeights& m) {
    if (m.empty()) return {};
    MlpWeights v;
    v.gate = matrix(m.gate);
    v.up = matrix(m.up);
    v.down = matrix(m.down);
    return v;
  }

 private:
  void* put(const void* src, size_t bytes) {
    if (!src || bytes == 0) return nullptr;
    const size_t at = top_;
    top_ += align_up(bytes);
    if (!placing_) return nullptr;
    dev_.upload(buf_, at, src, bytes);
    return base_ + at;
  }
  Device& dev_;
  BufferId buf_;
  std::byte* base_ = nullptr;
  size_t top_ = 0;
  bool placing_ = false;
};

}  // namespace

PipelinedModel::Impl::Impl(const WeightSource& weights, Device& device, const planner::Policy& p,
                           const PipelineOptions& o)
    : c(weights.config()), dev(device), ops(device.ops()), policy(p), opt(o) {
  if (c.n_expert_used > kMaxExpertsUsed)
    throw Error("models with more than " + std::to_string(kMaxExpertsUsed) +
                " active experts per token are not supported");
  if (policy.kv_precision != planner::Precision::Bf16)
    throw Error("policy: the pipelined executor keeps the KV cache in bf16; set kv_precision to bf16");
  if (policy.gpu_expert_precision != policy.dram_expert_precision)
    throw Error("policy: the pipelined executor streams experts at the precision they are pinned at; set "
                "gpu_expert_precision and dram_expert_precision to the same value");
  policy.validate_for(c, "policy");
  reject_what_cannot_run();
  rope = rope_frequencies(c.rope, c.max_position, c.max_position);
  mu = static_cast<int>(std::max<int64_t>(1, policy.micro_batch));
  n_batch = static_cast<int>(std::max<int64_t>(mu, policy.batch_size));
  n_pages = (n_batch + mu - 1) / mu;
  host_attention = policy.attention_device == planner::Device::Cpu;
  if (!host_attention && !ops.has_device_attention())
    throw Error("policy: attention_device is gpu, but device " + dev.info().name +
                " has no attention kernel yet; set attention_device to cpu");
  prefill_cap = pipeline_prefill_tokens(policy);
  cap = std::max(prefill_cap, mu);
  plan_memory(weights);
}

// The policy fields this executor runs only one way: any other value is an error naming the field (as the
// policy file spells it), the value and what runs, never a silent substitution.
void PipelinedModel::Impl::reject_what_cannot_run() const {
  auto device = [](planner::Device d) { return std::string(planner::device_name(d)); };
  auto on_device_only = [&](const char* key, planner::Device d, const char* what) {
    if (d != planner::Device::Gpu)
      throw Error(std::string("policy: ") + key + " is " + device(d) + ", but the pipelined executor runs " + what +
                  " on the device: set it to gpu (or run every layer on the CPU with --target cpu)");
  };
  on_device_only("devices.ffn", policy.ffn_device, "every routed expert");
  on_device_only("devices.dense", policy.dense_device, "the projections, router, shared experts and lm_head");
  on_device_only("devices.prefill", policy.prefill_device, "prefill");
  const bool host = policy.attention_device == planner::Device::Cpu;
  const double share = host ? 0.0 : 1.0;
  if (policy.kv_gpu_share != share)
    throw Error("policy: kv.gpu_share is " + shortest(policy.kv_gpu_share) +
                ", but the pipelined executor keeps the whole KV cache where attention runs: with devices.attention " +
                device(policy.attention_device) + " set kv.gpu_share to " + (host ? "0" : "1"));
  if (policy.prefetch_depth != 1)
    throw Error("policy: prefetch_depth is " + std::to_string(policy.prefetch_depth) +
                ", but the pipelined executor loads one layer ahead (double-buffered ring): set it to 1");
}

void PipelinedModel::Impl::plan_memory(const WeightSource& weights) {
  cpu_target::CpuWeights w = cpu_target::load_cpu_weights(weights, packing_options(policy, opt));
  c = w.config;
  // The buffer list from the weights as packed (the planner prices the same list from the shapes).
  PipelineWeightBytes bytes;
  bytes.dense = static_cast<int64_t>(dense_layout(w).second);
  for (const auto& layer : w.layers)
    if (layer.is_moe && !layer.experts.empty()) {
      proto = shape_of(layer.experts[0]);
      image = image_layout(proto);
      bytes.expert_image = static_cast<int64_t>(image.bytes);
      break;
    }
  buffers = pipeline_buffers(c, policy, bytes, pipeline_kv_tokens(c, policy));
  allocated.assign(buffers.buffers.size(), false);
  check_cache_bytes();
  ops.bind_model(c, rope, cap);
  upload_dense(w);
  plan_experts(w, weights);
  plan_kv_cache();
  plan_relays();
  for (size_t i = 0; i < buffers.buffers.size(); ++i)
    FERRY_ASSERT_MSG(allocated[i], "the executor's buffer list names a buffer it did not allocate");
}

// cache_bytes are budgets: a field above 0 that is smaller than what its buffers take is an error naming
// the field (0, or an absent field, lets the executor size it). The KV cache's field sets its capacity.
void PipelinedModel::Impl::check_cache_bytes() const {
  using planner::BufferLevel;
  const planner::CacheSizes need = buffers.cache_sizes();
  auto check = [&](const char* field, int64_t budget, int64_t needed) {
    if (budget > 0 && needed > budget)
      throw Error(std::string("policy: cache_bytes.") + field + " is " + std::to_string(budget) +
                  " bytes, but this run's buffers take " + std::to_string(needed) +
                  " bytes there: plan the policy for this model again (ferry plan --json), or set the field to 0 "
                  "to let the executor size it");
  };
  const planner::CacheSizes& have = policy.cache;
  check("gpu_dense_weights", have.gpu_dense_weights, need.gpu_dense_weights);
  check("gpu_expert_cache", have.gpu_expert_cache, need.gpu_expert_cache);
  check("gpu_stream_buffer", have.gpu_stream_buffer, need.gpu_stream_buffer);
  check("gpu_kv_cache", have.gpu_kv_cache, need.gpu_kv_cache);
  check("gpu_activations", have.gpu_activations, need.gpu_activations);
  check("dram_expert_cache", have.dram_expert_cache, need.dram_expert_cache);
  check("dram_kv_cache", have.dram_kv_cache, need.dram_kv_cache);
  check("dram_pinned_staging", have.dram_pinned_staging, need.dram_pinned_staging);
  check("dram_other", have.dram_other, need.dram_other);
}

const planner::PlannedBuffer& PipelinedModel::Impl::planned(const std::string& name, planner::BufferLevel level) {
  const planner::PlannedBuffer* b = buffers.find(name);
  FERRY_ASSERT_MSG(b && b->level == level, "the executor allocates a buffer its buffer list does not name");
  const size_t i = static_cast<size_t>(b - buffers.buffers.data());
  FERRY_ASSERT_MSG(!allocated[i], "the executor allocates a listed buffer twice");
  allocated[i] = true;
  return *b;
}

BufferId PipelinedModel::Impl::alloc(const std::string& name) {
  return dev.alloc(name, static_cast<size_t>(planned(name, planner::BufferLevel::Device).bytes));
}

BufferId PipelinedModel::Impl::alloc_host(const std::string& name) {
  return dev.alloc_host(name, static_cast<size_t>(planned(name, planner::BufferLevel::Host).bytes));
}

std::pair<ModelWeights, size_t> PipelinedModel::Impl::dense_layout(const cpu_target::CpuWeights& w,
                                                                    BufferId* upload_to) {
  // Attention, norms, router, shared experts, dense MLPs, embeddings and lm_head: one device buffer. Without
  // `upload_to` this only measures.
  Placer place(dev);
  if (upload_to) place.start(*upload_to);
  ModelWeights v;
  if (!w.embed_bf16.empty()) {
    v.embed = place.array(w.embed_bf16);
    v.embed_dtype = DType::BF16;
  } else {
    v.embed = place.array(w.embed_f32);
    v.embed_dtype = DType::F32;
  }
  for (const cpu_target::CpuLayerWeights& L : w.layers) {
    LayerWeights d;
    d.attn_norm = place.array(L.attn_norm);
    d.attn_norm_bias = place.array(L.attn_norm_bias);
    d.ffn_norm = place.array(L.ffn_norm);
    d.ffn_norm_bias = place.array(L.ffn_norm_bias);
    d.wqkv = place.matrix(L.wqkv);
    d.bqkv = place.array(L.bqkv);
    d.wo = place.matrix(L.wo);
    d.bo = place.array(L.bo);
    d.q_norm = place.array(L.q_norm);
    d.k_norm = place.array(L.k_norm);
    d.is_moe = L.is_moe;
    d.router = place.matrix(L.router);
    d.shared = place.mlp(L.shared);
    d.shared_gate = place.matrix(L.shared_gate);
    d.dense = place.mlp(L.dense);
    v.layers.push_back(std::move(d));
  }
  v.final_norm = place.array(w.final_norm);
  v.final_norm_bias = place.array(w.final_norm_bias);
  v.lm_head = place.matrix(w.lm_head);
  v.lm_head_bias = place.array(w.lm_head_bias);
  return {std::move(v), place.bytes()};
}

void PipelinedModel::Impl::upload_dense(const cpu_target::CpuWeights& w) {
  BufferId buf = alloc("dense weights");
  dw = dense_layout(w, &buf).first;
}

std::pair<int, int> PipelinedModel::Impl::page_slots(int layer, int page) const {
  const int n_stream = c.n_expert - n_pinned[layer];
  return {std::min(page * n_slot / n_pages, n_stream), std::min((page + 1) * n_slot / n_pages, n_stream)};
}

void PipelinedModel::Impl::plan_experts(cpu_target::CpuWeights& w, const WeightSource& weights) {
  const int L = c.n_layer, E = c.n_expert;
  n_pinned.assign(L, 0);
  resident.clear();
  resident.resize(L);
  stored.clear();
  stored.resize(L);
  layer_half.assign(L, 0);
  resident_buf.assign(L, BufferId{});
  for (int h = 0; h < 2; ++h) table[h].assign(L, -1);
  position.assign(L, std::vector<int32_t>(E));
  for (auto& p : position)
    for (int e = 0; e < E; ++e) p[e] = e;
  expert_at = position;
  if (image.bytes == 0) return;  // no MoE layer

  // Experts on the GPU tier (policy.gpu_experts_per_layer) stay resident; the DRAM tier is streamed from
  // the pinned host store, the SSD tier (policy.ssd_experts_per_layer, the layer's last experts) from the
  // packed store's file through a staging half.
  plan_ssd_tier(weights);
  size_t n_stored = 0;
  for (int l = 0; l < L; ++l)
    if (w.layers[l].is_moe) {
      n_pinned[l] = std::clamp(policy.gpu_experts_per_layer[l], 0, E - n_ssd[l]);
      n_slot = std::max(n_slot, E - n_pinned[l]);
      n_stored += E - n_pinned[l] - n_ssd[l];
    }
  if (n_stored) store_buf = alloc_host("expert store");
  std::byte* store = n_stored ? typed<std::byte>(dev, store_buf) : nullptr;
  for (int l = 0; l < L; ++l) {
    if (!w.layers[l].is_moe) continue;
    std::vector<MlpWeights>& experts = w.layers[l].experts;
    if (n_pinned[l] > 0) {
      const BufferId buf = resident_buf[l] = alloc("pinned experts layer " + std::to_string(l));
      std::vector<std::byte> host(image.bytes);
      for (int e = 0; e < n_pinned[l]; ++e) {
        write_image(experts[e], image, host.data());
        dev.upload(buf, e * image.bytes, host.data(), image.bytes);
        resident[l].push_back(image_view(proto, image, typed<std::byte>(dev, buf) + e * image.bytes));
        experts[e] = MlpWeights{};  // uploaded: drop the host copy
      }
    }
    stored[l].resize(E);
    for (int e = n_pinned[l]; e < E - n_ssd[l]; ++e) {
      write_image(experts[e], image, store);
      stored[l][e] = image_view(proto, image, store);
      store += image.bytes;
      experts[e] = MlpWeights{};
    }
    for (int e = E - n_ssd[l]; e < E; ++e) experts[e] = MlpWeights{};  // read from the store as needed
  }
  if (n_ssd_slot > 0) {
    const ExpertImage& stored_image = ssd->image();
    if (stored_image.bytes != image.bytes || !std::equal(std::begin(image.offset), std::end(image.offset),
                                                         std::begin(stored_image.offset)))
      throw Error("policy: ssd_experts_per_layer: the store's expert chunks are not laid out as this executor "
                  "streams them (convert the model again with this version of ferry)");
    for (int h = 0; h < 2; ++h) {
      ssd_staging[h] = alloc_host("ssd staging " + std::to_string(h));
      ssd_ready[h] = dev.create_event();
      ssd_free[h] = dev.create_event();
    }
  }
  // Frequency residency where the buffer list has its buffers (some layer has resident and DRAM-tier experts
  // to trade, and the policy asks for it: pipeline_buffers decides).
  adaptive = buffers.find("expert positions") != nullptr;
  if (adaptive) {
    positions_buf = alloc("expert positions");
    for (int l = 0; l < L; ++l)
      dev.upload(positions_buf, sizeof(int32_t) * l * E, position[l].data(), sizeof(int32_t) * E);
    swap_buf = alloc_host("expert swap staging");
    swap_read = dev.create_event();
    heat.assign(L, std::vector<float>(E, 0.0f));
    cold.reserve(E);
    hot.reserve(E);
  }
  // Demand fetch: the first forward prefetches every streamed expert (nothing routed yet to predict from).
  demand = policy.expert_fetch == planner::ExpertFetch::Demand && n_slot > 0;
  if (demand) {
    predicted.assign(L, std::vector<uint8_t>(E, 1));
    for (int h = 0; h < 2; ++h) {
      present[h].assign(n_slot, 0);
      misses_done[h] = dev.create_event();
    }
    routed.assign(E, 0);
    fetched_late.assign(n_slot, 0);
  }
  copy_slots.reserve(n_slot);
  if (n_slot > 0)
    for (int h = 0; h < 2; ++h)
      for (int p = 0; p < n_pages; ++p) {
        const int first = p * n_slot / n_pages, last = (p + 1) * n_slot / n_pages;
        const BufferId page = alloc("expert ring " + std::to_string(h) + " page " + std::to_string(p));
        ring_page[h].push_back(page);
        ring_page_first[h].push_back(first);
        for (int s = first; s < last; ++s)
          ring[h].push_back(image_view(proto, image, typed<std::byte>(dev, page) + (s - first) * image.bytes));
        page_ready[h].push_back(dev.create_event());
        page_free[h].push_back(dev.create_event());
      }
  // One expert table per (ring half, layer): resident experts, then the layer's streamed experts in the
  // slots of that half.
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < L; ++l) {
      if (!w.layers[l].is_moe) continue;
      std::vector<const MlpWeights*> t(E);
      for (int e = 0; e < E; ++e) t[e] = e < n_pinned[l] ? &resident[l][e] : &ring[h][e - n_pinned[l]];
      table[h][l] = ops.add_expert_table(t);
    }
}

void PipelinedModel::Impl::plan_ssd_tier(const WeightSource& weights) {
  const int L = c.n_layer, E = c.n_expert;
  n_ssd.assign(L, 0);
  n_ssd_slot = 0;
  for (int l = 0; l < L; ++l)
    if (c.layer_is_moe[l] && l < static_cast<int>(policy.ssd_experts_per_layer.size()))
      n_ssd[l] = std::clamp(policy.ssd_experts_per_layer[l], 0, E);
  n_ssd_slot = *std::max_element(n_ssd.begin(), n_ssd.end());
  if (n_ssd_slot == 0) return;
  const experts::StoreManifest* store = weights.packed_store();
  if (!store)
    throw Error("policy: ssd_experts_per_layer puts experts on the SSD tier, which streams them from a packed "
                "store: convert the model (ferry convert --model DIR --out STORE) and pass --model STORE");
  if (policy.ssd_expert_precision != policy.gpu_expert_precision)
    throw Error("policy: ssd_expert_precision " + std::string(planner::precision_name(policy.ssd_expert_precision)) +
                ": the pipelined executor streams every expert at gpu_expert_precision (" +
                std::string(planner::precision_name(policy.gpu_expert_precision)) + "); set them equal");
  const DType dtype = precision_dtype(policy.gpu_expert_precision);
  const experts::ExpertTierFile* file =
      &store->require_expert_file(dtype, policy.group_size, "policy: ssd_experts_per_layer: ");
  experts::TieredExpertsOptions to;
  // One layer's SSD experts at a time: the DRAM tier is the host store, this cache only lands the reads.
  to.dram_budget_bytes = static_cast<size_t>(n_ssd_slot) * ((file->image.bytes + experts::kChunkAlign - 1) /
                                                            experts::kChunkAlign * experts::kChunkAlign);
  to.reader = experts::parse_reader_kind(opt.ssd_reader);
  ssd = std::make_unique<experts::TieredExperts>(*store, *file, std::move(to));
  ssd_table.assign(E, nullptr);
  ssd_ids.reserve(E);
}

void PipelinedModel::Impl::plan_kv_cache() {
  // bf16, paged: host DRAM for host attention, a device buffer when attention runs on the device
  const int64_t kv_tokens = pipeline_kv_tokens(c, policy);
  void* memory = nullptr;
  if (host_attention)
    planned("kv cache", planner::BufferLevel::Host);  // the cache maps its own host memory
  else
    memory = dev.data(alloc("kv cache"));
  kv = std::make_unique<KvCache>(c, DType::BF16, kPipelineKvBlock, kv_tokens, memory);
  max_blocks = kv->max_blocks_per_sequence();
}

size_t PipelinedModel::Impl::Micro::ids_offset(int part) const {
  return sizeof(int32_t) * static_cast<size_t>(cap) * std::min(part, 4);
}

void PipelinedModel::Impl::plan_micro(Micro& m, int j, int capacity, const char* prefix) {
  auto named = [&](const char* what) {  // "hidden 3" (appended, not prefixed: GCC 12 -Wrestrict)
    std::string n(prefix);
    n += what;
    n += ' ';
    n += std::to_string(j);
    return n;
  };
  m.self = this;
  m.j = j;
  m.cap = capacity;
  const size_t P = capacity;
  m.ids_dev = alloc(named("ids"));
  m.ids_pin = alloc_host(named("pinned ids"));
  int32_t* ids = typed<int32_t>(dev, m.ids_pin);
  m.tokens = ids;
  m.positions = ids + P;
  m.slots = ids + 2 * P;
  m.n_ctx = ids + 3 * P;
  m.tables = ids + 4 * P;
  m.hidden = alloc(named("hidden"));
  m.qkv_dev = alloc(named("qkv"));
  m.attn_dev = alloc(named("attention out"));
  m.logits_dev = alloc(named("logits"));
  m.routing_dev = alloc(named("routing"));
  if (host_attention) {
    m.qkv_pin = alloc_host(named("pinned qkv"));
    m.attn_pin = alloc_host(named("pinned attention out"));
  }
  m.logits_pin = alloc_host(named("pinned logits"));
  m.routing_pin = alloc_host(named("pinned routing"));
  for (EventId* e : {&m.qkv_ready, &m.qkv_on_host, &m.attn_done, &m.attn_loaded, &m.logits_ready, &m.logits_done,
                     &m.routing_ready, &m.routing_on_host})
    *e = dev.create_event();
  m.item.assign(P, 0);
}

void PipelinedModel::Impl::plan_relays() {
  mb.resize(n_pages);
  for (int j = 0; j < n_pages; ++j) plan_micro(mb[j], j, mu, "");
  plan_micro(pf, 0, prefill_cap, "prefill ");
  // compute scratch, sized for the largest op call
  const size_t attn_bytes = attention_scratch_bytes(c, cap);
  scratch_buf = alloc("compute scratch");
  auto* base = typed<std::byte>(dev, scratch_buf);
  attn_scratch = carve_attention_scratch(c, cap, base);
  ffn = carve_ffn_buffers(c, cap, base + attn_bytes);
  planned("logits out", planner::BufferLevel::Host);
  micro_ptrs.reserve(n_pages);
  order.reserve(n_batch);
  out.reserve(static_cast<size_t>(n_batch) * c.n_vocab);
  out_row.reserve(n_batch);
}

}  // namespace ferry
