// The pipelined executor's buffers for a policy (ferry/exec/pipeline_buffers.h). pipeline_memory.cpp
// allocates from this list by name, and fails on a buffer it does not list, so the list is the allocation.
#include "ferry/exec/pipeline_buffers.h"

#include <algorithm>
#include <set>
#include <string>

#include "exec/kv_cache.h"
#include "ferry/exec/layer_ops.h"
#include "ferry/exec/pipelined_model.h"
#include "ferry/ops/packed_matrix.h"

namespace ferry {

namespace {

using planner::BufferLevel;
using planner::BufferRole;

constexpr int64_t kArrayAlign = 256;  // the executor places arrays 256-byte aligned (kExpertImageAlign too)
int64_t align_up(int64_t n) { return (n + kArrayAlign - 1) / kArrayAlign * kArrayAlign; }

// Bytes of a packed matrix placed array by array (data, scales, zeros), each aligned.
int64_t packed_bytes(const std::vector<int64_t>& shape, DType dtype, int group_size) {
  const int rows = static_cast<int>(shape.at(0)), cols = shape.size() > 1 ? static_cast<int>(shape[1]) : 1;
  cpu::QuantOptions q;
  q.group_size = group_size;
  const cpu::PackedSizes s = cpu::packed_sizes(cpu::packed_shape(rows, cols, dtype, q));
  auto placed = [](size_t n) { return n ? align_up(static_cast<int64_t>(n)) : 0; };
  return placed(s.data) + placed(s.scales) + placed(s.zeros);
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

int64_t pipeline_dense_bytes(const ModelConfig& c, const std::function<bool(const WeightId&)>& has,
                             DType embed_dtype) {
  // The arrays pipeline_memory.cpp's upload_dense places, in the cpu target's packing (cpu_weights.cpp).
  auto shape = [&](WeightKind k, int l) { return canonical_shape(c, {k, l, -1}); };
  auto f32_vec = [&](WeightKind k, int l) { return align_up(numel(shape(k, l)) * 4); };
  auto optional_vec = [&](WeightKind k, int l) { return has({k, l, -1}) ? f32_vec(k, l) : 0; };
  auto bf16_matrix = [&](WeightKind k, int l) { return packed_bytes(shape(k, l), DType::BF16, 0); };
  auto mlp = [&](WeightKind g, WeightKind u, WeightKind d, int l) {
    return bf16_matrix(g, l) + bf16_matrix(u, l) + bf16_matrix(d, l);
  };
  int64_t bytes = align_up(numel(shape(WeightKind::Embed, -1)) * dtype_size(embed_dtype));
  for (int l = 0; l < c.n_layer; ++l) {
    bytes += f32_vec(WeightKind::AttnNorm, l) + optional_vec(WeightKind::AttnNormBias, l);
    bytes += f32_vec(WeightKind::FfnNorm, l) + optional_vec(WeightKind::FfnNormBias, l);
    const int64_t qkv_rows = c.q_dim() + 2 * c.kv_dim();
    bytes += packed_bytes({qkv_rows, c.d_model}, DType::BF16, 0);
    if (has({WeightKind::Bq, l, -1}) || has({WeightKind::Bk, l, -1}) || has({WeightKind::Bv, l, -1}))
      bytes += align_up(qkv_rows * 4);
    bytes += bf16_matrix(WeightKind::Wo, l) + optional_vec(WeightKind::Bo, l);
    if (c.qk_norm != QkNorm::None) bytes += f32_vec(WeightKind::QNorm, l) + f32_vec(WeightKind::KNorm, l);
    if (c.layer_is_moe.at(l)) {
      bytes += packed_bytes(shape(WeightKind::Router, l), DType::F32, 0);
      if (c.d_shared > 0) {
        bytes += mlp(WeightKind::SharedGate, WeightKind::SharedUp, WeightKind::SharedDown, l);
        if (c.shared_expert_gated) bytes += packed_bytes(shape(WeightKind::SharedExpertGate, l), DType::F32, 0);
      }
    } else {
      bytes += mlp(WeightKind::DenseGate, WeightKind::DenseUp, WeightKind::DenseDown, l);
    }
  }
  bytes += f32_vec(WeightKind::FinalNorm, -1) + optional_vec(WeightKind::FinalNormBias, -1);
  bytes += bf16_matrix(WeightKind::LmHead, -1) + optional_vec(WeightKind::LmHeadBias, -1);
  return bytes;
}

int64_t pipeline_dense_bytes(const ModelConfig& c, const Checkpoint* checkpoint) {
  if (checkpoint) {
    const TensorView embed = checkpoint->view({WeightKind::Embed, -1, -1});
    // bf16 storage is exact in bf16; anything else is kept in f32 unless its values happen to be (then
    // the executor needs less than this)
    const DType embed_dtype = embed.dtype == DType::BF16 ? DType::BF16 : DType::F32;
    return pipeline_dense_bytes(c, [&](const WeightId& id) { return checkpoint->has(id); }, embed_dtype);
  }
  std::set<std::tuple<int, int, int>> declared;
  for (const WeightId& id : model_weight_ids(c)) declared.insert({static_cast<int>(id.kind), id.layer, id.expert});
  return pipeline_dense_bytes(
      c, [&](const WeightId& id) { return declared.count({static_cast<int>(id.kind), id.layer, id.expert}) > 0; },
      DType::BF16);
}

int64_t pipeline_expert_image_bytes(const ModelConfig& c, planner::Precision precision, int group_size) {
  const DType dtype = precision_dtype(precision);
  const int group = dtype == DType::BF16 ? 0 : group_size;
  return packed_bytes({c.d_expert, c.d_model}, dtype, group) * 2 + packed_bytes({c.d_model, c.d_expert}, dtype, group);
}

int64_t pipeline_kv_bytes(const ModelConfig& c, int64_t tokens) {
  return static_cast<int64_t>(KvCache::bytes_for(c, DType::BF16, kPipelineKvBlock, std::max<int64_t>(tokens, 1)));
}

int64_t pipeline_kv_tokens_in(const ModelConfig& c, int64_t bytes) {
  const int64_t block = pipeline_kv_bytes(c, kPipelineKvBlock);
  return block > 0 ? bytes / block * kPipelineKvBlock : 0;
}

int64_t pipeline_kv_tokens(const ModelConfig& c, const planner::Policy& p) {
  const int64_t bytes = p.attention_device == planner::Device::Gpu ? p.cache.gpu_kv_cache : p.cache.dram_kv_cache;
  if (bytes > 0) return pipeline_kv_tokens_in(c, bytes);
  return std::min<int64_t>(std::max<int64_t>(p.batch_size, 1) * c.max_position, 65536);
}

int pipeline_prefill_tokens(const planner::Policy& p) {
  return static_cast<int>(std::max<int64_t>({p.prefill_chunk_tokens, p.micro_batch, 1}));
}

planner::BufferList pipeline_buffers(const ModelConfig& c, const planner::Policy& p, const PipelineWeightBytes& w,
                                     int64_t kv_tokens) {
  planner::BufferList list;
  list.device_align = static_cast<int64_t>(kDeviceAlign);
  const int L = c.n_layer, E = c.n_expert;
  const int mu = static_cast<int>(std::max<int64_t>(1, p.micro_batch));
  const int n_batch = static_cast<int>(std::max<int64_t>(mu, p.batch_size));
  const int n_pages = (n_batch + mu - 1) / mu;
  const bool host_attention = p.attention_device == planner::Device::Cpu;
  const int prefill_cap = pipeline_prefill_tokens(p);
  const int cap = std::max(prefill_cap, mu);
  const int64_t image = w.expert_image;

  list.add("dense weights", BufferLevel::Device, BufferRole::DenseWeights, w.dense);

  // Experts: the GPU tier resident, the DRAM tier in one pinned host store, the SSD tier (each layer's last
  // experts) read through two staging halves; the streamed ones (DRAM and SSD) land in a double-buffered
  // ring of n_slot experts per half, cut in one page per micro-batch.
  int n_slot = 0, n_ssd_slot = 0;
  int64_t n_stored = 0;
  bool swappable = false;  // a layer with resident and DRAM-tier experts both: frequency residency swaps them
  for (int l = 0; l < L; ++l) {
    if (!c.layer_is_moe[l]) continue;
    const int ssd = l < static_cast<int>(p.ssd_experts_per_layer.size()) ? std::clamp(p.ssd_experts_per_layer[l], 0, E) : 0;
    const int pinned = std::clamp(p.gpu_experts_per_layer.at(l), 0, E - ssd);
    if (pinned > 0)
      list.add("pinned experts layer " + std::to_string(l), BufferLevel::Device, BufferRole::ResidentExperts,
               pinned * image);
    n_slot = std::max(n_slot, E - pinned);
    n_ssd_slot = std::max(n_ssd_slot, ssd);
    n_stored += E - pinned - ssd;
    swappable = swappable || (pinned > 0 && E - pinned - ssd > 0);
  }
  if (n_stored) list.add("expert store", BufferLevel::Host, BufferRole::ResidentExperts, n_stored * image);
  // Frequency residency: each layer's expert positions (the table order, resident first) on the device, and
  // one pinned image through which a resident expert and a DRAM-tier one trade places.
  if (swappable && p.expert_residency == planner::ExpertResidency::Frequency) {
    list.add("expert positions", BufferLevel::Device, BufferRole::ResidentExperts, int64_t{4} * L * E);
    list.add("expert swap staging", BufferLevel::Host, BufferRole::Staging, image);
  }
  if (n_ssd_slot > 0)
    for (int h = 0; h < 2; ++h)
      list.add("ssd staging " + std::to_string(h), BufferLevel::Host, BufferRole::Staging, n_ssd_slot * image);
  if (n_slot > 0)
    for (int h = 0; h < 2; ++h)
      for (int pg = 0; pg < n_pages; ++pg) {
        const int first = pg * n_slot / n_pages, last = (pg + 1) * n_slot / n_pages;
        list.add("expert ring " + std::to_string(h) + " page " + std::to_string(pg), BufferLevel::Device,
                 BufferRole::StreamBuffer, std::max(last - first, 1) * image);
      }

  // KV cache: device memory when attention runs on the device, else host memory.
  list.add("kv cache", host_attention ? BufferLevel::Host : BufferLevel::Device, BufferRole::KvCache,
           pipeline_kv_bytes(c, kv_tokens));

  // Relays, one set per decode micro-batch and one for the prefill chunk.
  const int max_blocks = (c.max_position + kPipelineKvBlock - 1) / kPipelineKvBlock;
  const int64_t D = c.d_model, V = c.n_vocab, qd = c.q_dim(), kd = c.kv_dim();
  const int64_t K = std::max(c.n_expert_used, 1);
  auto relays = [&](const std::string& prefix, int j, int64_t P, int64_t logit_rows) {
    auto named = [&](const char* what) { return prefix + what + " " + std::to_string(j); };
    const int64_t ids = 4 * (4 * P + P * max_blocks);
    auto dev = [&](const char* what, int64_t bytes) {
      list.add(named(what), BufferLevel::Device, BufferRole::Activations, bytes);
    };
    auto pin = [&](const char* what, int64_t bytes) {
      list.add(named(what), BufferLevel::Host, BufferRole::Staging, bytes);
    };
    dev("ids", ids);
    pin("pinned ids", ids);
    dev("hidden", 4 * P * D);
    dev("qkv", 4 * P * (qd + 2 * kd));
    dev("attention out", 4 * P * qd);
    dev("logits", 4 * logit_rows * V);
    dev("routing", 4 * L * P * K);
    if (host_attention) {
      pin("pinned qkv", 4 * P * (qd + 2 * kd));
      pin("pinned attention out", 4 * P * qd);
    }
    pin("pinned logits", 4 * logit_rows * V);
    pin("pinned routing", 4 * L * P * K);
  };
  for (int j = 0; j < n_pages; ++j) relays("", j, mu, mu);
  relays("prefill ", 0, prefill_cap, std::min(prefill_cap, kPrefillLogitRows));

  list.add("compute scratch", BufferLevel::Device, BufferRole::Activations,
           static_cast<int64_t>(attention_scratch_bytes(c, cap) + ffn_buffer_bytes(c, cap)));
  // the logits a forward returns: N rows (prefill rows beyond them grow it on demand)
  list.add("logits out", BufferLevel::Host, BufferRole::Other, 4 * n_batch * V);
  return list;
}

bool pipeline_runs(const planner::Policy& p) {
  using planner::Device;
  const bool host_attention = p.attention_device == Device::Cpu;
  bool ssd = false;
  for (int n : p.ssd_experts_per_layer) ssd = ssd || n > 0;
  return p.ffn_device == Device::Gpu && p.dense_device == Device::Gpu && p.prefill_device == Device::Gpu &&
         p.kv_gpu_share == (host_attention ? 0.0 : 1.0) && p.prefetch_depth == 1 &&
         p.kv_precision == planner::Precision::Bf16 && p.gpu_expert_precision == p.dram_expert_precision &&
         (!ssd || p.ssd_expert_precision == p.gpu_expert_precision);
}

void price_as_pipeline(planner::PlannerOptions& o, const ModelConfig& c, const Checkpoint* checkpoint,
                       int64_t kv_tokens) {
  o.buffers = std::make_shared<PipelineBufferModel>(c, checkpoint);
  if (kv_tokens > 0) o.kv_tokens = kv_tokens;
}

PipelineBufferModel::PipelineBufferModel(ModelConfig config, const Checkpoint* checkpoint)
    : c_(std::move(config)), gqa_(c_.attention == AttentionKind::Gqa) {
  if (gqa_) dense_bytes_ = pipeline_dense_bytes(c_, checkpoint);
}

planner::BufferList PipelineBufferModel::buffers(const planner::Policy& p, int64_t kv_tokens) const {
  const PipelineWeightBytes w{dense_bytes_, pipeline_expert_image_bytes(c_, p.gpu_expert_precision, p.group_size)};
  return pipeline_buffers(c_, p, w, kv_tokens);
}

}  // namespace ferry
