// Decode throughput of the cpu target on a synthetic Mixtral-shaped layer stack
// (D=4096, H=32, Hkv=8, Dh=128, F=14336, 8 experts top-2; random weights, a
// small vocabulary so the figures are the layers'), for bf16, int8 and int4
// experts at batch 1, 8 and 64. Each sequence is prefilled with a short prompt,
// then decode steps are timed; the median step gives tokens/s and the weight
// bytes it read per second.
//
//   bench_cpu_decode [--layers N] [--steps N] [--context N] [--dtypes
//   bf16,int8,int4] [--batches 1,8,64]
//                    [--bf16-activations] [--kernels]
//
// --kernels also times one 14336x4096 bf16 matmul at M = 1, 8, 64, 512: the
// f32-activation kernel the cpu target uses against the ops' bf16-activation
// kernel.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "ferry/ops/matmul.h"
#include "ferry/cpu_model.h"
#include "ferry/error.h"
#include "ferry/ops/cpu_ops.h"

namespace {

using namespace ferry;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

ModelConfig mixtral_shape(int n_layer, int n_vocab) {
  ModelConfig c;
  c.family = Family::Mixtral;
  c.model_type = "mixtral";
  c.source = "synthetic Mixtral-shaped stack";
  c.n_layer = n_layer;
  c.d_model = 4096;
  c.n_head = 32;
  c.n_head_kv = 8;
  c.head_dim = 128;
  c.n_vocab = n_vocab;
  c.max_position = 4096;
  c.n_expert = 8;
  c.n_expert_used = 2;
  c.d_expert = 14336;
  c.norm_topk_prob = true;
  c.router = RouterKind::SoftmaxTopK;
  c.layer_is_moe.assign(n_layer, true);
  c.norm = NormKind::RmsNorm;
  c.norm_eps = 1e-5;
  c.rope.theta = 1e6;
  c.rope.rotary_dim = 128;
  return c;
}

// Uniform random weights with the standard deviation of a trained model's
// (0.02), norms at 1; no biases.
class SyntheticWeights : public WeightSource {
 public:
  explicit SyntheticWeights(ModelConfig c) : c_(std::move(c)) {}
  const ModelConfig& config() const override { return c_; }
  bool has(const WeightId& id) const override {
    switch (id.kind) {
      case WeightKind::Embed:
      case WeightKind::FinalNorm:
      case WeightKind::LmHead:
      case WeightKind::AttnNorm:
      case WeightKind::FfnNorm:
      case WeightKind::Wq:
      case WeightKind::Wk:
      case WeightKind::Wv:
      case WeightKind::Wo:
      case WeightKind::Router:
      case WeightKind::ExpertGate:
      case WeightKind::ExpertUp:
      case WeightKind::ExpertDown:
        return true;
      default:
        return false;
    }
  }
  std::vector<float> f32(const WeightId& id) const override {
    if (!has(id)) throw Error("synthetic model has no " + weight_id_string(id));
    size_t n = 1;
    for (int64_t d : canonical_shape(c_, id)) n *= static_cast<size_t>(d);
    const bool norm =
        id.kind == WeightKind::FinalNorm || id.kind == WeightKind::AttnNorm || id.kind == WeightKind::FfnNorm;
    std::vector<float> w(n, 1.0f);
    if (norm) return w;
    const uint64_t seed = (static_cast<uint64_t>(id.kind) << 40) ^
                          (static_cast<uint64_t>(id.layer + 1) << 20) ^ static_cast<uint64_t>(id.expert + 1);
    const float half_width = 0.02f * 1.7320508f;  // uniform on [-a, a] has std a / sqrt(3)
#pragma omp parallel for schedule(static)
    for (int64_t block = 0; block < static_cast<int64_t>((n + 4095) / 4096); ++block) {
      uint64_t s = (seed + static_cast<uint64_t>(block)) * 0x9E3779B97F4A7C15ull | 1;
      for (size_t i = block * 4096; i < std::min(n, static_cast<size_t>(block + 1) * 4096); ++i) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;  // xorshift64
        w[i] = (static_cast<float>(s >> 40) / 16777216.0f * 2.0f - 1.0f) * half_width;
      }
    }
    return w;
  }

 private:
  ModelConfig c_;
};

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

std::vector<std::string> parse_names(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

DType expert_dtype(const std::string& name) {
  if (name == "bf16") return DType::BF16;
  if (name == "int8") return DType::I8;
  if (name == "int4") return DType::I4;
  throw Error("unknown expert dtype '" + name + "' (bf16, int8, int4)");
}

struct Args {
  int layers = 2, steps = 8, context = 16, vocab = 256;
  std::vector<std::string> dtypes = {"bf16", "int8", "int4"};
  std::vector<int> batches = {1, 8, 64};
  bool bf16_activations = false, kernels = false;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(k + " needs a value");
      return argv[++i];
    };
    if (k == "--layers")
      a.layers = std::stoi(value());
    else if (k == "--steps")
      a.steps = std::stoi(value());
    else if (k == "--context")
      a.context = std::stoi(value());
    else if (k == "--dtypes")
      a.dtypes = value() == "none" ? std::vector<std::string>{} : parse_names(argv[i]);
    else if (k == "--batches")
      a.batches = parse_list(value());
    else if (k == "--bf16-activations")
      a.bf16_activations = true;
    else if (k == "--kernels")
      a.kernels = true;
    else
      throw Error("unknown option " + k + " (see the comment at the top of bench_cpu_decode.cpp)");
  }
  return a;
}

void bench_kernels() {
  const int n = 14336, k = 4096;
  std::vector<float> w(static_cast<size_t>(n) * k);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-5f - 5e-3f;
  const cpu::PackedMatrix packed = cpu::pack_matrix(w.data(), n, k, DType::BF16);
  std::printf("\nbf16 matmul %dx%d (%.0f MB of weights), median of 15:\n", n, k, packed.weight_bytes() / 1e6);
  std::printf("%6s %28s %28s\n", "M", "f32 activations (cpu target)", "bf16 activations (ops)");
  for (int m : {1, 8, 64, 512}) {
    std::vector<float> x(static_cast<size_t>(m) * k, 0.01f), y(static_cast<size_t>(m) * n);
    double t[2];
    for (int impl = 0; impl < 2; ++impl) {
      std::vector<double> times;
      for (int r = 0; r < 16; ++r) {
        const auto t0 = Clock::now();
        if (impl == 0)
          cpu::matmul_f32_activations(packed, x.data(), y.data(), m);
        else
          cpu::matmul(packed, x.data(), y.data(), m);
        if (r > 0) times.push_back(seconds_since(t0));
      }
      t[impl] = median(times);
    }
    auto show = [&](double s) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.2f ms %.1f GB/s %.0f GFLOP/s", s * 1e3,
                    packed.weight_bytes() / s / 1e9, 2.0 * m * n * k / s / 1e9);
      return std::string(buf);
    };
    std::printf("%6d %28s %28s\n", m, show(t[0]).c_str(), show(t[1]).c_str());
  }
}

void bench_decode(const Args& a) {
  const ModelConfig c = mixtral_shape(a.layers, a.vocab);
  const SyntheticWeights weights(c);
  std::printf(
      "synthetic Mixtral-shaped stack: %d layers, D=%d F=%d E=%d K=%d, "
      "V=%d; %d threads (%s); prompt %d tokens, "
      "median of %d decode steps; %s activations into bf16 matmuls\n",
      c.n_layer, c.d_model, c.d_expert, c.n_expert, c.n_expert_used, c.n_vocab, omp_get_max_threads(),
      cpu::isa_name(cpu::active_level()), a.context, a.steps, a.bf16_activations ? "bf16" : "f32");
  std::printf("%-6s %6s %12s %12s %14s %16s %12s\n", "expert", "batch", "ms/step", "tokens/s",
              "ms/layer/step", "weights GB/step", "GB/s");
  for (const std::string& name : a.dtypes) {
    CpuModelOptions o;
    o.expert_dtype = expert_dtype(name);
    o.bf16_activations = a.bf16_activations;
    const int max_batch = *std::max_element(a.batches.begin(), a.batches.end());
    o.max_batch_tokens = std::max(max_batch * a.context, 64);
    o.max_sequences = max_batch;
    const int blocks_per_seq = (a.context + a.steps + 2 + o.kv_block_size - 1) / o.kv_block_size;
    o.kv_cache_tokens = static_cast<int64_t>(max_batch) * blocks_per_seq * o.kv_block_size;
    const auto t_load = Clock::now();
    CpuModel model(weights, o);
    std::fprintf(stderr, "  %s: packed %.2f GB (experts %.2f GB) in %.1f s\n", name.c_str(),
                 model.weight_bytes() / 1e9, model.expert_weight_bytes() / 1e9, seconds_since(t_load));
    for (int batch : a.batches) {
      std::vector<int> seqs;
      std::vector<std::vector<int32_t>> prompts;
      for (int s = 0; s < batch; ++s) {
        seqs.push_back(model.add_sequence());
        std::vector<int32_t> p;
        for (int t = 0; t < a.context; ++t) p.push_back((s * 131 + t * 17 + 1) % c.n_vocab);
        prompts.push_back(std::move(p));
      }
      std::vector<ForwardItem> items;
      for (int s = 0; s < batch; ++s) items.push_back({seqs[s], prompts[s], false});
      std::span<const float> logits = model.forward_view(items);
      std::vector<int32_t> next(batch);
      std::vector<double> times, bytes;
      for (int step = 0; step <= a.steps; ++step) {  // step 0 warms the decode path up, untimed
        items.clear();
        for (int s = 0; s < batch; ++s) {
          const float* l = logits.data() + static_cast<size_t>(s) * c.n_vocab;
          next[s] = static_cast<int32_t>(std::max_element(l, l + c.n_vocab) - l);
          items.push_back({seqs[s], std::span<const int32_t>(&next[s], 1), false});
        }
        const auto t0 = Clock::now();
        logits = model.forward_view(items);
        if (step > 0) {
          times.push_back(seconds_since(t0));
          bytes.push_back(static_cast<double>(model.last_forward_weight_bytes()));
        }
      }
      const double t = median(times), b = median(bytes);
      std::printf("%-6s %6d %12.1f %12.1f %14.1f %16.2f %12.1f\n", name.c_str(), batch, t * 1e3, batch / t,
                  t * 1e3 / c.n_layer, b / 1e9, b / t / 1e9);
      std::fflush(stdout);
      for (int s : seqs) model.free_sequence(s);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse_args(argc, argv);
    if (!a.dtypes.empty()) bench_decode(a);
    if (a.kernels) bench_kernels();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu_decode: %s\n", e.what());
    return 1;
  }
  return 0;
}
