// make_model: writes a random Mixtral-family Hugging Face checkpoint that ferry can load, for
// benchmarks and device checks at sizes the bundled oracle models do not reach.
//   make_model --out DIR [--layers 4] [--hidden 1024] [--heads 16] [--kv-heads 4] [--experts 8]
//              [--top-k 2] [--expert-width 3584] [--vocab 32000] [--context 4096] [--seed 1]
//              [--tokenizer FILE]
// DIR gets config.json (model_type mixtral), model.safetensors (BF16, HF Mixtral tensor names, weights
// normal(0, 0.02), norm weights 1.0) and tokenizer.model (by default the real Mixtral-8x7B SentencePiece
// tokenizer of tests/data/oracles/mixtral_spm, 32000 pieces). The same arguments give the same bytes.
//
// ferry::write_safetensors takes every tensor at once, so the whole model is held in memory while it
// is written: the defaults make ~0.85 GB. Sizes go to stdout before anything is generated.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/dtype.h"
#include "ferry/error.h"
#include "ferry/safetensors.h"

using namespace ferry;
namespace fs = std::filesystem;

namespace {

constexpr const char* kUsage =
    "usage: make_model --out DIR [--layers 4] [--hidden 1024] [--heads 16] [--kv-heads 4] [--experts 8]\n"
    "                  [--top-k 2] [--expert-width 3584] [--vocab 32000] [--context 4096] [--seed 1]\n"
    "                  [--tokenizer FILE]\n"
    "Writes a random Mixtral-family checkpoint (config.json, model.safetensors in BF16, tokenizer.model).\n"
    "--vocab must cover the tokenizer's ids (the default tokenizer, Mixtral-8x7B's, has 32000).\n";

constexpr float kInitStd = 0.02f;

struct Args {
  fs::path out;
  int64_t n_layer = 4;       // L
  int64_t n_embd = 1024;     // D
  int64_t n_head = 16;       // H
  int64_t n_head_kv = 4;     // Hkv
  int64_t n_expert = 8;      // E
  int64_t n_expert_used = 2; // K
  int64_t n_ff = 3584;       // F
  int64_t n_vocab = 32000;   // V
  int64_t n_ctx = 4096;
  uint64_t seed = 1;
  fs::path tokenizer = fs::path(FERRY_SOURCE_DIR) / "tests/data/oracles/mixtral_spm/tokenizer.model";
};

int64_t parse_int(std::string_view flag, const std::string& value, int64_t min, int64_t max) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size())
    throw Error(std::string(flag) + " " + value + ": not an integer");
  if (v < min || v > max)
    throw Error(std::string(flag) + " " + value + ": must be between " + std::to_string(min) + " and " +
                std::to_string(max));
  return v;
}

Args parse_args(int argc, char** argv) {
  Args a;
  bool have_out = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) throw Error(flag + ": missing value (see --help)");
    const std::string v = argv[++i];
    if (flag == "--out") {
      a.out = v;
      have_out = true;
    } else if (flag == "--layers") {
      a.n_layer = parse_int(flag, v, 1, 1024);
    } else if (flag == "--hidden") {
      a.n_embd = parse_int(flag, v, 2, 1 << 16);
    } else if (flag == "--heads") {
      a.n_head = parse_int(flag, v, 1, 1024);
    } else if (flag == "--kv-heads") {
      a.n_head_kv = parse_int(flag, v, 1, 1024);
    } else if (flag == "--experts") {
      a.n_expert = parse_int(flag, v, 1, 1024);
    } else if (flag == "--top-k") {
      a.n_expert_used = parse_int(flag, v, 1, 1024);
    } else if (flag == "--expert-width") {
      a.n_ff = parse_int(flag, v, 1, 1 << 18);
    } else if (flag == "--vocab") {
      a.n_vocab = parse_int(flag, v, 1, 1 << 22);
    } else if (flag == "--context") {
      a.n_ctx = parse_int(flag, v, 1, 1 << 24);
    } else if (flag == "--seed") {
      a.seed = static_cast<uint64_t>(parse_int(flag, v, 0, INT64_MAX));
    } else if (flag == "--tokenizer") {
      a.tokenizer = v;
    } else {
      throw Error("unknown argument '" + flag + "' (see --help)");
    }
  }
  if (!have_out || a.out.empty()) throw Error("--out DIR is required (see --help)");
  if (a.n_embd % a.n_head != 0)
    throw Error("--hidden " + std::to_string(a.n_embd) + " is not a multiple of --heads " + std::to_string(a.n_head));
  if ((a.n_embd / a.n_head) % 2 != 0)
    throw Error("head dim --hidden/--heads = " + std::to_string(a.n_embd / a.n_head) + " must be even (RoPE pairs)");
  if (a.n_head % a.n_head_kv != 0)
    throw Error("--heads " + std::to_string(a.n_head) + " is not a multiple of --kv-heads " +
                std::to_string(a.n_head_kv));
  if (a.n_expert_used > a.n_expert)
    throw Error("--top-k " + std::to_string(a.n_expert_used) + " is larger than --experts " +
                std::to_string(a.n_expert));
  if (!fs::is_regular_file(a.tokenizer))
    throw Error("tokenizer " + a.tokenizer.string() + " not found; pass --tokenizer FILE (a SentencePiece tokenizer.model)");
  return a;
}

// splitmix64: seeds and hashes.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_name(std::string_view s, uint64_t seed) {
  uint64_t h = mix(seed);
  for (unsigned char c : s) h = mix(h ^ c);
  return h;
}

// One tensor's BF16 bytes. Filled in chunks, each from its own generator seeded by (tensor, chunk), so the
// values do not depend on the thread count.
struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<uint16_t> bf16;
};

void fill_normal(Tensor& t, uint64_t seed) {
  constexpr size_t kChunk = size_t{1} << 16;
  const size_t n = t.bf16.size();
  const int64_t n_chunks = static_cast<int64_t>((n + kChunk - 1) / kChunk);
  const uint64_t base = hash_name(t.name, seed);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n_chunks; ++c) {
    uint64_t state = mix(base ^ static_cast<uint64_t>(c));
    const size_t begin = static_cast<size_t>(c) * kChunk, end = std::min(n, begin + kChunk);
    for (size_t i = begin; i < end; i += 2) {
      // Box-Muller: two normals from two uniforms in (0, 1].
      state = mix(state);
      const double u1 = (static_cast<double>(state >> 11) + 1.0) * 0x1.0p-53;
      state = mix(state);
      const double u2 = static_cast<double>(state >> 11) * 0x1.0p-53;
      const double r = std::sqrt(-2.0 * std::log(u1)) * kInitStd, phi = 2.0 * M_PI * u2;
      t.bf16[i] = f32_to_bf16(static_cast<float>(r * std::cos(phi)));
      if (i + 1 < end) t.bf16[i + 1] = f32_to_bf16(static_cast<float>(r * std::sin(phi)));
    }
  }
}

Tensor make_random(std::string name, std::vector<int64_t> shape, uint64_t seed) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  Tensor t{std::move(name), std::move(shape), std::vector<uint16_t>(static_cast<size_t>(numel))};
  fill_normal(t, seed);
  return t;
}

Tensor make_ones(std::string name, int64_t n) {
  return Tensor{std::move(name), {n}, std::vector<uint16_t>(static_cast<size_t>(n), f32_to_bf16(1.0f))};
}

nlohmann::ordered_json config_json(const Args& a) {
  return {{"architectures", {"MixtralForCausalLM"}},
          {"model_type", "mixtral"},
          {"hidden_act", "silu"},
          {"hidden_size", a.n_embd},
          {"intermediate_size", a.n_ff},
          {"num_hidden_layers", a.n_layer},
          {"num_attention_heads", a.n_head},
          {"num_key_value_heads", a.n_head_kv},
          {"num_local_experts", a.n_expert},
          {"num_experts_per_tok", a.n_expert_used},
          {"vocab_size", a.n_vocab},
          {"max_position_embeddings", a.n_ctx},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 1e6},
          {"sliding_window", nullptr},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"torch_dtype", "bfloat16"},
          {"tie_word_embeddings", false},
          {"initializer_range", kInitStd}};
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw Error(path.string() + ": cannot write");
}

int run(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  const int64_t D = a.n_embd, F = a.n_ff, E = a.n_expert, V = a.n_vocab, L = a.n_layer;
  const int64_t Dh = D / a.n_head, Hq = a.n_head * Dh, Hkv = a.n_head_kv * Dh;

  const int64_t expert_params = L * E * 3 * F * D;
  const int64_t dense_params = 2 * V * D + D + L * (2 * D + Hq * D + 2 * Hkv * D + D * Hq + E * D);
  std::printf("make_model: %lld layers, D=%lld, H=%lld, Hkv=%lld, E=%lld, K=%lld, F=%lld, V=%lld\n"
              "make_model: %.1f M parameters: experts %.1f MB, dense %.1f MB (bf16); one expert %.2f MB\n",
              static_cast<long long>(L), static_cast<long long>(D), static_cast<long long>(a.n_head),
              static_cast<long long>(a.n_head_kv), static_cast<long long>(E), static_cast<long long>(a.n_expert_used),
              static_cast<long long>(F), static_cast<long long>(V), (expert_params + dense_params) / 1e6,
              2.0 * expert_params / 1e6, 2.0 * dense_params / 1e6, 2.0 * 3 * F * D / 1e6);
  std::fflush(stdout);

  std::error_code ec;
  fs::create_directories(a.out, ec);
  if (ec) throw Error(a.out.string() + ": cannot create directory: " + ec.message());

  // Shapes as in the checkpoints: W [out, in], y = W·x.
  std::vector<Tensor> tensors;
  tensors.push_back(make_random("model.embed_tokens.weight", {V, D}, a.seed));  // [V, D]
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.push_back(make_ones(p + "input_layernorm.weight", D));                     // [D]
    tensors.push_back(make_random(p + "self_attn.q_proj.weight", {Hq, D}, a.seed));    // [H·Dh, D]
    tensors.push_back(make_random(p + "self_attn.k_proj.weight", {Hkv, D}, a.seed));   // [Hkv·Dh, D]
    tensors.push_back(make_random(p + "self_attn.v_proj.weight", {Hkv, D}, a.seed));   // [Hkv·Dh, D]
    tensors.push_back(make_random(p + "self_attn.o_proj.weight", {D, Hq}, a.seed));    // [D, H·Dh]
    tensors.push_back(make_ones(p + "post_attention_layernorm.weight", D));            // [D]
    tensors.push_back(make_random(p + "block_sparse_moe.gate.weight", {E, D}, a.seed));  // [E, D] router
    for (int64_t e = 0; e < E; ++e) {
      const std::string q = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
      tensors.push_back(make_random(q + "w1.weight", {F, D}, a.seed));  // [F, D] gate
      tensors.push_back(make_random(q + "w2.weight", {D, F}, a.seed));  // [D, F] down
      tensors.push_back(make_random(q + "w3.weight", {F, D}, a.seed));  // [F, D] up
    }
  }
  tensors.push_back(make_ones("model.norm.weight", D));                  // [D]
  tensors.push_back(make_random("lm_head.weight", {V, D}, a.seed));      // [V, D]

  std::vector<SafetensorsWriteTensor> out;
  out.reserve(tensors.size());
  for (const Tensor& t : tensors)
    out.push_back({t.name, DType::BF16, t.shape,
                   std::span<const std::byte>(reinterpret_cast<const std::byte*>(t.bf16.data()), t.bf16.size() * 2)});
  write_safetensors(a.out / "model.safetensors", out, {{"format", "pt"}});
  write_text(a.out / "config.json", config_json(a).dump(2) + "\n");
  fs::copy_file(a.tokenizer, a.out / "tokenizer.model", fs::copy_options::overwrite_existing, ec);
  if (ec) throw Error("cannot copy " + a.tokenizer.string() + " to " + (a.out / "tokenizer.model").string() + ": " +
                      ec.message());
  std::printf("make_model: wrote %s (%.1f MB)\n", a.out.string().c_str(),
              static_cast<double>(fs::file_size(a.out / "model.safetensors")) / 1e6);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "make_model: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_model: %s\n", e.what());
    return 1;
  }
}
