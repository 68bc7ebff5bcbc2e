// ferry generate: one prompt, text streamed to stdout as it is produced.
#include <cstdio>
#include <memory>

#include "command.h"
#include "ferry/checkpoint.h"
#include "ferry/error.h"
#include "ferry/generator.h"
#include "ferry/tokenizer.h"
#include "generation_options.h"

namespace ferry::cli {
namespace {

struct GenerateArgs {
  GenerationOptions gen;
  std::string prompt;
  bool quiet = false;
};

int run_generate(const GenerateArgs& a) {
  validate(a.gen.sampling);
  auto ckpt = Checkpoint::open(a.gen.model_dir);
  auto tokenizer = load_tokenizer(a.gen.model_dir);
  auto model = create_model(*ckpt, a.gen.target);

  GenerationRequest req;
  req.id = "prompt";
  req.prompt = tokenizer->encode(a.prompt, /*add_special=*/!a.gen.no_bos);
  req.sampling = a.gen.sampling;
  req.max_tokens = a.gen.max_tokens;
  req.stop = a.gen.stop;
  req.ignore_eos = a.gen.ignore_eos;
  if (req.prompt.size() >= static_cast<size_t>(ckpt->config().max_position))
    throw Error("the prompt has " + std::to_string(req.prompt.size()) + " tokens but the model's context is " +
                std::to_string(ckpt->config().max_position) + " tokens (" + ckpt->config().source +
                "); shorten the prompt");

  Generator generator(*model, *tokenizer, {.max_sequences = 1});
  std::string error;
  GenerationStats stats = generator.run(
      std::span<const GenerationRequest>(&req, 1),
      [](size_t, std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      },
      [&](GenerationOutput&& out) {
        if (out.finish == FinishReason::Error) error = out.error;
      });
  if (!error.empty()) throw Error(error);
  std::fputc('\n', stdout);
  if (!a.quiet)
    std::fprintf(stderr, "ferry: %lld prompt tokens, %lld generated in %.2f s (prefill %.1f tok/s, decode %.1f tok/s)\n",
                 static_cast<long long>(stats.prompt_tokens), static_cast<long long>(stats.generated_tokens),
                 stats.wall_seconds, stats.prefill_seconds > 0 ? stats.prompt_tokens / stats.prefill_seconds : 0.0,
                 stats.decode_tokens_per_second());
  return 0;
}

static RegisterCommand reg{{"generate", "Generate text for one prompt, streamed as it is produced",
                            [](CLI::App& app) -> std::function<int()> {
                              auto a = std::make_shared<GenerateArgs>();
                              app.add_option("-m,--model", a->gen.model_dir, "Model directory (config.json, *.safetensors, tokenizer)")
                                  ->required();
                              app.add_option("-p,--prompt", a->prompt, "Prompt text")->required();
                              add_generation_options(app, a->gen);
                              app.add_flag("-q,--quiet", a->quiet, "Do not print timing to stderr");
                              return [a] { return run_generate(*a); };
                            },
                            10}};

}  // namespace
}  // namespace ferry::cli
