#include "model_fixtures.h"

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <stdexcept>

#include "ferry/safetensors.h"

namespace ferry::test {

namespace fs = std::filesystem;

TempDir::TempDir() {
  char tmpl[] = "/tmp/ferry-model-test-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (!dir) throw std::runtime_error("mkdtemp failed");
  path_ = dir;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

uint32_t seed_of(const std::string& what) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : what) h = (h ^ c) * 16777619u;
  return h;
}

std::vector<float> pattern(uint32_t seed, int64_t numel) {
  std::vector<float> v(static_cast<size_t>(numel));
  uint32_t x = seed | 1u;
  for (auto& f : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    f = static_cast<float>(static_cast<int>(x % 97) - 48) / 64.0f;
  }
  return v;
}

FixtureTensor make_tensor(std::string name, std::vector<int64_t> shape, DType dtype) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  FixtureTensor t{std::move(name), std::move(shape), {}, dtype};
  t.values = pattern(seed_of(t.name), numel);
  return t;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

void write_config(const fs::path& dir, const nlohmann::json& config) {
  fs::create_directories(dir);
  write_text(dir / "config.json", config.dump(2));
}

namespace {

std::vector<std::byte> encode(const FixtureTensor& t) {
  const size_t n = t.values.size();
  std::vector<std::byte> bytes(n * static_cast<size_t>(dtype_size(t.dtype)));
  for (size_t i = 0; i < n; ++i) {
    const float f = t.values[i];
    switch (t.dtype) {
      case DType::F32:
        std::memcpy(bytes.data() + 4 * i, &f, 4);
        break;
      case DType::BF16: {
        uint16_t h = f32_to_bf16(f);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
        break;
      }
      case DType::F16: {
        uint16_t h = f32_to_f16(f);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
        break;
      }
      case DType::I32: {
        int32_t k = static_cast<int32_t>(f * 64);
        std::memcpy(bytes.data() + 4 * i, &k, 4);
        break;
      }
      default:
        throw std::runtime_error("fixture dtype not supported");
    }
  }
  return bytes;
}

void write_file(const fs::path& path, const std::vector<const FixtureTensor*>& tensors) {
  std::vector<std::vector<std::byte>> data;
  std::vector<SafetensorsWriteTensor> out;
  data.reserve(tensors.size());
  for (const FixtureTensor* t : tensors) {
    data.push_back(encode(*t));
    out.push_back({t->name, t->dtype, t->shape, data.back()});
  }
  write_safetensors(path, out, {{"format", "pt"}});
}

}  // namespace

void write_model_dir(const fs::path& dir, const nlohmann::json& config,
                     const std::vector<FixtureTensor>& tensors) {
  write_config(dir, config);
  std::vector<const FixtureTensor*> all;
  for (const auto& t : tensors) all.push_back(&t);
  write_file(dir / "model.safetensors", all);
}

void write_sharded_model_dir(const fs::path& dir, const nlohmann::json& config,
                             const std::vector<FixtureTensor>& tensors, int n_shards) {
  write_config(dir, config);
  std::vector<std::vector<const FixtureTensor*>> shards(static_cast<size_t>(n_shards));
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (size_t i = 0; i < tensors.size(); ++i) {
    const size_t s = i % static_cast<size_t>(n_shards);
    shards[s].push_back(&tensors[i]);
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05d.safetensors", s + 1, n_shards);
    index["weight_map"][tensors[i].name] = name;
  }
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05d.safetensors", s + 1, n_shards);
    write_file(dir / name, shards[s]);
  }
  write_text(dir / "model.safetensors.index.json", index.dump(2));
}

void write_raw_safetensors(const fs::path& path, const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  bytes += header;
  for (size_t i = 0; i < data_bytes; ++i) bytes += static_cast<char>(i % 251);
  write_text(path, bytes);
}

const FixtureTensor& find_fixture(const std::vector<FixtureTensor>& tensors, const std::string& name) {
  for (const auto& t : tensors)
    if (t.name == name) return t;
  throw std::runtime_error("no fixture tensor " + name);
}

// ---- tiny Mixtral ----------------------------------------------------------------------------------

namespace {
constexpr int64_t kV = 32, kD = 16, kF = 24, kE = 4, kL = 2;
constexpr int64_t kQ = 16, kKV = 8;  // H*Dh, Hkv*Dh with Dh = 4

void add_llama_attention(std::vector<FixtureTensor>& t, const std::string& p, int64_t q_rows,
                         int64_t kv_rows) {
  t.push_back(make_tensor(p + "input_layernorm.weight", {kD}));
  t.push_back(make_tensor(p + "post_attention_layernorm.weight", {kD}));
  t.push_back(make_tensor(p + "self_attn.q_proj.weight", {q_rows, kD}));
  t.push_back(make_tensor(p + "self_attn.k_proj.weight", {kv_rows, kD}));
  t.push_back(make_tensor(p + "self_attn.v_proj.weight", {kv_rows, kD}));
  t.push_back(make_tensor(p + "self_attn.o_proj.weight", {kD, q_rows}));
}

void add_embeddings(std::vector<FixtureTensor>& t) {
  t.push_back(make_tensor("model.embed_tokens.weight", {kV, kD}));
  t.push_back(make_tensor("model.norm.weight", {kD}));
  t.push_back(make_tensor("lm_head.weight", {kV, kD}));
}
}  // namespace

std::vector<float> tiny_expert_values(const std::string& proj, int layer, int expert, int64_t numel) {
  return pattern(seed_of(proj + " " + std::to_string(layer) + " " + std::to_string(expert)), numel);
}

nlohmann::json tiny_mixtral_config() {
  return {{"model_type", "mixtral"},
          {"architectures", {"MixtralForCausalLM"}},
          {"vocab_size", kV},
          {"hidden_size", kD},
          {"intermediate_size", kF},
          {"num_hidden_layers", kL},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"num_local_experts", kE},
          {"num_experts_per_tok", 2},
          {"max_position_embeddings", 128},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 1e6},
          {"sliding_window", nullptr},
          {"tie_word_embeddings", false},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"torch_dtype", "bfloat16"}};
}

std::vector<FixtureTensor> tiny_mixtral_tensors(bool fused) {
  std::vector<FixtureTensor> t;
  add_embeddings(t);
  for (int l = 0; l < kL; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add_llama_attention(t, p, kQ, kKV);
    if (!fused) {
      t.push_back(make_tensor(p + "block_sparse_moe.gate.weight", {kE, kD}));
      for (int e = 0; e < kE; ++e) {
        const std::string x = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
        t.push_back({x + "w1.weight", {kF, kD}, tiny_expert_values("gate", l, e, kF * kD)});
        t.push_back({x + "w3.weight", {kF, kD}, tiny_expert_values("up", l, e, kF * kD)});
        t.push_back({x + "w2.weight", {kD, kF}, tiny_expert_values("down", l, e, kD * kF)});
      }
      continue;
    }
    FixtureTensor router = make_tensor(p + "mlp.gate.weight", {kE, kD});
    router.values = find_fixture(tiny_mixtral_tensors(false), p + "block_sparse_moe.gate.weight").values;
    t.push_back(router);
    FixtureTensor gate_up{p + "mlp.experts.gate_up_proj", {kE, 2 * kF, kD}, {}};
    FixtureTensor down{p + "mlp.experts.down_proj", {kE, kD, kF}, {}};
    for (int e = 0; e < kE; ++e) {
      for (const char* proj : {"gate", "up"}) {
        auto v = tiny_expert_values(proj, l, e, kF * kD);
        gate_up.values.insert(gate_up.values.end(), v.begin(), v.end());
      }
      auto v = tiny_expert_values("down", l, e, kD * kF);
      down.values.insert(down.values.end(), v.begin(), v.end());
    }
    t.push_back(std::move(gate_up));
    t.push_back(std::move(down));
  }
  return t;
}

// ---- tiny Qwen2-MoE --------------------------------------------------------------------------------

nlohmann::json tiny_qwen2_moe_config() {
  return {{"model_type", "qwen2_moe"},
          {"vocab_size", kV},
          {"hidden_size", kD},
          {"intermediate_size", 20},
          {"moe_intermediate_size", 8},
          {"shared_expert_intermediate_size", 12},
          {"num_hidden_layers", 3},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"num_experts", kE},
          {"num_experts_per_tok", 2},
          {"norm_topk_prob", false},
          {"decoder_sparse_step", 1},
          {"mlp_only_layers", {1}},
          {"use_sliding_window", false},
          {"sliding_window", 64},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 1e6},
          {"max_position_embeddings", 128},
          {"tie_word_embeddings", false},
          {"eos_token_id", {2, 3}}};
}

std::vector<FixtureTensor> tiny_qwen2_moe_tensors() {
  std::vector<FixtureTensor> t;
  add_embeddings(t);
  for (int l = 0; l < 3; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add_llama_attention(t, p, kQ, kKV);
    t.push_back(make_tensor(p + "self_attn.q_proj.bias", {kQ}));
    t.push_back(make_tensor(p + "self_attn.k_proj.bias", {kKV}));
    t.push_back(make_tensor(p + "self_attn.v_proj.bias", {kKV}));
    if (l == 1) {
      t.push_back(make_tensor(p + "mlp.gate_proj.weight", {20, kD}));
      t.push_back(make_tensor(p + "mlp.up_proj.weight", {20, kD}));
      t.push_back(make_tensor(p + "mlp.down_proj.weight", {kD, 20}));
      continue;
    }
    t.push_back(make_tensor(p + "mlp.gate.weight", {kE, kD}));
    for (int e = 0; e < kE; ++e) {
      const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      t.push_back(make_tensor(x + "gate_proj.weight", {8, kD}));
      t.push_back(make_tensor(x + "up_proj.weight", {8, kD}));
      t.push_back(make_tensor(x + "down_proj.weight", {kD, 8}));
    }
    t.push_back(make_tensor(p + "mlp.shared_expert.gate_proj.weight", {12, kD}));
    t.push_back(make_tensor(p + "mlp.shared_expert.up_proj.weight", {12, kD}));
    t.push_back(make_tensor(p + "mlp.shared_expert.down_proj.weight", {kD, 12}));
    t.push_back(make_tensor(p + "mlp.shared_expert_gate.weight", {1, kD}));
  }
  return t;
}

// ---- tiny DBRX -------------------------------------------------------------------------------------

nlohmann::json tiny_dbrx_config() {
  return {{"model_type", "dbrx"},
          {"d_model", kD},
          {"n_heads", 4},
          {"n_layers", 1},
          {"max_seq_len", 128},
          {"vocab_size", kV},
          {"attn_config", {{"kv_n_heads", 2}, {"clip_qkv", 8}, {"rope_theta", 500000}}},
          {"ffn_config", {{"ffn_hidden_size", 8}, {"moe_num_experts", 3}, {"moe_top_k", 2}}}};
}

std::vector<FixtureTensor> tiny_dbrx_tensors() {
  const std::string b = "transformer.blocks.0.";
  return {make_tensor("transformer.wte.weight", {kV, kD}),
          make_tensor("transformer.norm_f.weight", {kD}),
          make_tensor("lm_head.weight", {kV, kD}),
          make_tensor(b + "norm_attn_norm.norm_1.weight", {kD}),
          make_tensor(b + "norm_attn_norm.norm_2.weight", {kD}),
          make_tensor(b + "norm_attn_norm.attn.Wqkv.weight", {kQ + 2 * kKV, kD}),
          make_tensor(b + "norm_attn_norm.attn.out_proj.weight", {kD, kQ}),
          make_tensor(b + "ffn.router.layer.weight", {3, kD}),
          make_tensor(b + "ffn.experts.mlp.w1", {3 * 8, kD}),
          make_tensor(b + "ffn.experts.mlp.v1", {3 * 8, kD}),
          make_tensor(b + "ffn.experts.mlp.w2", {3 * 8, kD})};
}

}  // namespace ferry::test
