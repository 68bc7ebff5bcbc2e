// `ferry convert --model HF_DIR --out STORE [--precision bf16,int8,int4] [--group-size G] [--zstd]`:
// packs a checkpoint once into a store (ferry/experts/packed_store.h) that later runs map instead of
// repacking, and whose experts can be streamed from SSD. Progress goes to stderr, one line per layer.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "command.h"
#include "ferry/checkpoint.h"
#include "ferry/error.h"
#include "ferry/experts/packed_store.h"

namespace ferry::cli {
namespace {

struct ConvertArgs {
  std::string model_dir, out;
  std::vector<std::string> precisions{"bf16"};
  int group_size = 64;
  bool zstd = false, quiet = false;
};

int run_convert(const ConvertArgs& a) {
  experts::ConvertOptions o;
  o.precisions.clear();
  for (const std::string& p : a.precisions) {
    const DType d = dtype_from_string(p);
    if (d != DType::BF16 && d != DType::I8 && d != DType::I4)
      throw Error("--precision: '" + p + "' is not an expert precision; use bf16, int8 or int4 (comma-separated)");
    o.precisions.push_back(d);
  }
  o.group_size = a.group_size;
  o.zstd = a.zstd;
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  if (!a.quiet)
    o.progress = [&](int done, int total, uint64_t bytes) {
      const double s = seconds();
      std::fprintf(stderr, "\rferry convert: layer %d/%d, %.0f MB written, %.0f MB/s", done, total, bytes / 1e6,
                   s > 0 ? bytes / 1e6 / s : 0.0);
      std::fflush(stderr);
    };
  const auto ckpt = Checkpoint::open(a.model_dir);
  if (ckpt->packed_store())
    throw Error(a.model_dir + " is already a packed store; convert the Hugging Face directory it came from");
  const experts::ConvertResult r = experts::convert_to_store(*ckpt, a.out, o);
  if (!a.quiet) std::fprintf(stderr, "\n");
  std::printf("ferry convert: %s -> %s in %.1f s: dense %.1f MB, experts %.1f MB (%llu chunks%s), source %.1f MB\n",
              a.model_dir.c_str(), a.out.c_str(), seconds(), r.dense_bytes / 1e6, r.expert_bytes / 1e6,
              static_cast<unsigned long long>(r.chunks),
              a.zstd ? (", " + std::to_string(r.zstd_chunks) + " zstd-compressed").c_str() : "",
              r.source_bytes / 1e6);
  return 0;
}

const RegisterCommand kRegister{{
    "convert",
    "Pack a model once into a store that loads by mapping files and streams experts from SSD",
    [](CLI::App& app) -> std::function<int()> {
      auto a = std::make_shared<ConvertArgs>();
      app.add_option("-m,--model", a->model_dir, "Hugging Face model directory (config.json, *.safetensors)")
          ->required();
      app.add_option("-o,--out", a->out, "Store directory to create (must not exist, or be empty)")->required();
      app.add_option("--precision", a->precisions,
                     "Expert precisions to store, comma-separated: bf16, int8, int4 (default bf16)")
          ->delimiter(',');
      app.add_option("--group-size", a->group_size, "int8/int4 quantisation group (32..128, a multiple of 16)")
          ->check(CLI::Range(32, 128));
      app.add_flag("--zstd", a->zstd, "Compress expert chunks with zstd where that saves space");
      app.add_flag("-q,--quiet", a->quiet, "No progress line");
      return [a] { return run_convert(*a); };
    },
    45,
}};

}  // namespace
}  // namespace ferry::cli
