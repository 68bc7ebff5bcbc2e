// Policy <-> JSON with validation that names the file and the key.
#include "ferry/planner/policy.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/model_config.h"
#include "ferry/validate.h"
#include "planner/json_fields.h"

namespace ferry::planner {
namespace {

constexpr const char* kFormat = "ferry-policy";
constexpr int kVersion = 1;

const std::vector<std::string> kDevices = {"cpu", "gpu"};
const std::vector<std::string> kPrecisions = {"bf16", "int8", "int4"};

// Bounds a policy's figures must keep (the planner's own choices are far inside them): sizes stay in int
// and every product of them in int64.
constexpr int64_t kMaxBatch = int64_t{1} << 24;
constexpr int64_t kMaxTokens = int64_t{1} << 30;
constexpr int64_t kMaxExpertsPerLayer = 1 << 16;
constexpr int64_t kMaxBytes = int64_t{1} << 54;  // 16 PB
constexpr int64_t kMaxPrefetchDepth = 1024;

}  // namespace

std::string_view device_name(Device d) {
  return d == Device::Cpu ? "cpu" : "gpu";
}

std::string_view expert_fetch_name(ExpertFetch f) { return f == ExpertFetch::Demand ? "demand" : "prefetch"; }
std::string_view expert_residency_name(ExpertResidency r) {
  return r == ExpertResidency::Index ? "index" : "frequency";
}

bool valid_group_size(int g) { return g >= 32 && g <= 128 && g % 16 == 0; }

double bytes_per_element(Precision p, int group_size) {
  const double g = group_size;
  // The CPU kernels' packed formats (ferry/ops/packed_matrix.h): a bf16 scale per group, and for int4 a
  // one-byte zero point too.
  switch (p) {
    case Precision::Bf16:
      return 2.0;
    case Precision::Int8:
      return 1.0 + 2.0 / g;
    case Precision::Int4:
      return 0.5 + 3.0 / g;
  }
  return 2.0;
}

Device parse_device(std::string_view s, const std::string& where) {
  if (s == "cpu") return Device::Cpu;
  if (s == "gpu") return Device::Gpu;
  throw Error(where + ": '" + std::string(s) + "' is not a device; expected cpu or gpu");
}

nlohmann::json Policy::to_json() const {
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["model"] = model;
  j["hardware"] = hardware;
  j["batch_size"] = batch_size;
  j["micro_batch"] = micro_batch;
  j["prefill_chunk_tokens"] = prefill_chunk_tokens;
  j["devices"] = {{"attention", device_name(attention_device)},
                  {"ffn", device_name(ffn_device)},
                  {"dense", device_name(dense_device)},
                  {"prefill", device_name(prefill_device)}};
  j["experts"] = {{"gpu_per_layer", gpu_experts_per_layer},
                  {"dram_per_layer", dram_experts_per_layer},
                  {"ssd_per_layer", ssd_experts_per_layer},
                  {"precision",
                   {{"gpu", precision_name(gpu_expert_precision)},
                    {"dram", precision_name(dram_expert_precision)},
                    {"ssd", precision_name(ssd_expert_precision)}}},
                  {"group_size", group_size},
                  {"fetch", expert_fetch_name(expert_fetch)},
                  {"residency", expert_residency_name(expert_residency)}};
  j["kv"] = {{"precision", precision_name(kv_precision)}, {"gpu_share", kv_gpu_share}};
  j["cache_bytes"] = {{"gpu_dense_weights", cache.gpu_dense_weights},
                      {"gpu_expert_cache", cache.gpu_expert_cache},
                      {"gpu_stream_buffer", cache.gpu_stream_buffer},
                      {"gpu_kv_cache", cache.gpu_kv_cache},
                      {"gpu_activations", cache.gpu_activations},
                      {"dram_expert_cache", cache.dram_expert_cache},
                      {"dram_kv_cache", cache.dram_kv_cache},
                      {"dram_pinned_staging", cache.dram_pinned_staging},
                      {"dram_other", cache.dram_other},
                      {"ssd_expert_store", cache.ssd_expert_store}};
  j["prefetch_depth"] = prefetch_depth;
  j["overlap"] = overlap;
  return j;
}

Policy Policy::from_json(const nlohmann::json& j, const std::string& source) {
  JsonFields f(j, source);
  std::string format = f.req_string("format");
  if (format != kFormat) f.fail("format", "is '" + format + "'; expected '" + kFormat + "'");
  int64_t version = f.req_int("version", 1);
  if (version != kVersion)
    f.fail("version", "is " + std::to_string(version) + "; this ferry reads version 1");

  Policy p;
  p.model = f.opt_string("model", "");
  p.hardware = f.opt_string("hardware", "");
  p.batch_size = require_count(f.req_int("batch_size", 1), 1, kMaxBatch, f.field_name("batch_size"));
  p.micro_batch = require_count(f.req_int("micro_batch", 1), 1, kMaxBatch, f.field_name("micro_batch"));
  if (p.micro_batch > p.batch_size)
    f.fail("micro_batch", "is " + std::to_string(p.micro_batch) + ", larger than batch_size " +
                              std::to_string(p.batch_size));
  p.prefill_chunk_tokens = require_count(f.req_int("prefill_chunk_tokens", 1), 1, kMaxTokens,
                                         f.field_name("prefill_chunk_tokens"), "tokens");

  JsonFields dev = f.req_object("devices");
  p.attention_device = parse_device(dev.req_choice("attention", kDevices), source);
  p.ffn_device = parse_device(dev.req_choice("ffn", kDevices), source);
  p.dense_device = parse_device(dev.req_choice("dense", kDevices), source);
  p.prefill_device = parse_device(dev.req_choice("prefill", kDevices), source);

  JsonFields ex = f.req_object("experts");
  // Counts of experts per layer; validate_for checks them against the model's E.
  auto to_ints = [&ex](std::string_view key) {
    std::vector<int64_t> v = ex.req_int_array(key, 0);
    std::vector<int> out;
    for (size_t i = 0; i < v.size(); ++i)
      out.push_back(static_cast<int>(require_count(
          v[i], 0, kMaxExpertsPerLayer, ex.field_name(std::string(key) + "[" + std::to_string(i) + "]"))));
    return out;
  };
  p.gpu_experts_per_layer = to_ints("gpu_per_layer");
  p.dram_experts_per_layer = to_ints("dram_per_layer");
  p.ssd_experts_per_layer = to_ints("ssd_per_layer");
  size_t n_layer = p.gpu_experts_per_layer.size();
  if (p.dram_experts_per_layer.size() != n_layer)
    ex.fail("dram_per_layer", "has " + std::to_string(p.dram_experts_per_layer.size()) +
                                  " entries; gpu_per_layer has " + std::to_string(n_layer));
  if (p.ssd_experts_per_layer.size() != n_layer)
    ex.fail("ssd_per_layer", "has " + std::to_string(p.ssd_experts_per_layer.size()) +
                                 " entries; gpu_per_layer has " + std::to_string(n_layer));
  JsonFields prec = ex.req_object("precision");
  p.gpu_expert_precision = parse_precision(prec.req_choice("gpu", kPrecisions), source);
  p.dram_expert_precision = parse_precision(prec.req_choice("dram", kPrecisions), source);
  p.ssd_expert_precision = parse_precision(prec.req_choice("ssd", kPrecisions), source);
  // Optional (policies written before it was a field use the default group).
  const int64_t group = ex.opt_int("group_size", kQuantGroup, 1);
  if (!valid_group_size(static_cast<int>(std::min<int64_t>(group, 1 << 20))))
    ex.fail("group_size", "is " + std::to_string(group) + "; the int8/int4 kernels take 32 to 128, a multiple of 16");
  p.group_size = static_cast<int>(group);
  const std::string fetch = ex.opt_choice("fetch", {"prefetch", "demand"}, "prefetch");
  p.expert_fetch = fetch == "demand" ? ExpertFetch::Demand : ExpertFetch::Prefetch;
  const std::string residency = ex.opt_choice("residency", {"frequency", "index"}, "frequency");
  p.expert_residency = residency == "index" ? ExpertResidency::Index : ExpertResidency::Frequency;

  JsonFields kv = f.req_object("kv");
  p.kv_precision = parse_precision(kv.req_choice("precision", kPrecisions), source);
  p.kv_gpu_share = kv.req_number("gpu_share", 0);
  if (p.kv_gpu_share > 1) kv.fail("gpu_share", "must be between 0 and 1");
  if (p.kv_gpu_share > 0 && p.attention_device == Device::Cpu)
    kv.fail("gpu_share",
            "is above 0 but devices.attention is cpu (CPU attention reads the KV cache from DRAM)");

  if (auto c = f.opt_object("cache_bytes")) {
    auto bytes = [&c](std::string_view key) {
      return require_count(c->opt_int(key, 0, 0), 0, kMaxBytes, c->field_name(key), "bytes");
    };
    p.cache.gpu_dense_weights = bytes("gpu_dense_weights");
    p.cache.gpu_expert_cache = bytes("gpu_expert_cache");
    p.cache.gpu_stream_buffer = bytes("gpu_stream_buffer");
    p.cache.gpu_kv_cache = bytes("gpu_kv_cache");
    p.cache.gpu_activations = bytes("gpu_activations");
    p.cache.dram_expert_cache = bytes("dram_expert_cache");
    p.cache.dram_kv_cache = bytes("dram_kv_cache");
    p.cache.dram_pinned_staging = bytes("dram_pinned_staging");
    p.cache.dram_other = bytes("dram_other");
    p.cache.ssd_expert_store = bytes("ssd_expert_store");
  }
  p.prefetch_depth = static_cast<int>(
      require_count(f.opt_int("prefetch_depth", 1, 0), 0, kMaxPrefetchDepth, f.field_name("prefetch_depth")));
  p.overlap = f.opt_bool("overlap", true);
  return p;
}

Policy Policy::load(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open policy file '" + path.string() + "'");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (a number like 1e999)
    throw Error(path.string() + ": not valid JSON: " + e.what());
  }
  return from_json(j, path.string());
}

void Policy::save(const std::filesystem::path& path) const {
  std::ofstream out(path);
  if (!out) throw Error("cannot write policy file '" + path.string() + "'");
  out << to_json().dump(2) << "\n";
  if (!out) throw Error("error writing policy file '" + path.string() + "'");
}

void Policy::validate_for(const ModelConfig& m, const std::string& source) const {
  auto n_layer = static_cast<size_t>(m.n_layer);
  if (gpu_experts_per_layer.size() != n_layer)
    throw Error(source + ": key 'experts.gpu_per_layer': has " +
                std::to_string(gpu_experts_per_layer.size()) + " entries but the model (" + m.source +
                ") has " + std::to_string(n_layer) + " layers");
  for (size_t l = 0; l < n_layer; ++l) {
    bool moe = l < m.layer_is_moe.size() ? m.layer_is_moe[l] : m.n_expert > 0;
    int want = moe ? m.n_expert : 0;
    for (auto [key, counts] : {std::pair{"gpu_per_layer", &gpu_experts_per_layer},
                               std::pair{"dram_per_layer", &dram_experts_per_layer},
                               std::pair{"ssd_per_layer", &ssd_experts_per_layer}})
      require_count((*counts)[l], 0, want,
                    source + ": key 'experts." + key + "[" + std::to_string(l) + "]'",
                    moe ? "the model has " + std::to_string(want) + " routed experts in layer " + std::to_string(l)
                        : "layer " + std::to_string(l) + " is dense");
    int have = gpu_experts_per_layer[l] + dram_experts_per_layer[l] + ssd_experts_per_layer[l];
    if (have != want)
      throw Error(source + ": key 'experts' layer " + std::to_string(l) +
                  ": gpu + dram + ssd = " + std::to_string(have) + " experts, but the model has " +
                  std::to_string(want) + (moe ? " routed experts in that layer" : " (a dense layer)"));
  }
}

}  // namespace ferry::planner
