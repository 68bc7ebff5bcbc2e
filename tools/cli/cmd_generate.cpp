// ferry generate: one prompt, text streamed to stdout as it is produced; or, with --prompts FILE, every
// prompt of the file decoded together (continuous batching), each result printed when all are done.
// On a pipeline target the run's metrics follow on stderr (unless -q).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "command.h"
#include "ferry/checkpoint.h"
#include "ferry/error.h"
#include "ferry/generator.h"
#include "ferry/prompt_file.h"
#include "ferry/tokenizer.h"
#include "generation_options.h"
#include "model_session.h"

namespace ferry::cli {
namespace {

struct GenerateArgs {
  GenerationOptions gen;
  std::string prompt;
  std::string prompts_file;
  bool quiet = false;
};

// A prompt too long for the context is refused at once for --prompt; with --prompts it is that prompt's
// error (the generator reports it) and the others go on.
GenerationRequest make_request(const GenerateArgs& a, const Tokenizer& tokenizer, const ModelConfig& config,
                               std::string id, const std::string& text, std::optional<int> max_tokens) {
  GenerationRequest req;
  req.id = std::move(id);
  req.prompt = tokenizer.encode(text, /*add_special=*/!a.gen.no_bos);
  req.sampling = a.gen.sampling;
  req.max_tokens = max_tokens.value_or(a.gen.max_tokens);
  req.stop = a.gen.stop;
  req.ignore_eos = a.gen.ignore_eos;
  if (a.prompts_file.empty() && req.prompt.size() >= static_cast<size_t>(config.max_position))
    throw Error(req.id + ": the prompt has " + std::to_string(req.prompt.size()) +
                " tokens but the model's context is " + std::to_string(config.max_position) + " tokens (" +
                config.source + "); shorten the prompt");
  return req;
}

int run_generate(const GenerateArgs& a) {
  validate(a.gen.sampling);
  if (a.prompt.empty() == a.prompts_file.empty()) throw Error("give either --prompt TEXT or --prompts FILE");
  auto ckpt = Checkpoint::open(a.gen.model_dir);
  auto tokenizer = load_tokenizer(a.gen.model_dir);
  std::vector<GenerationRequest> requests;
  if (!a.prompt.empty()) {
    requests.push_back(make_request(a, *tokenizer, ckpt->config(), "prompt", a.prompt, std::nullopt));
  } else {
    for (const PromptRecord& r : read_prompt_file(a.prompts_file)) {
      requests.push_back(make_request(a, *tokenizer, ckpt->config(), r.id, r.text, r.max_tokens));
      requests.back().sampling.seed = a.gen.sampling.seed + static_cast<uint64_t>(r.line);  // as ferry run
    }
    if (requests.empty()) throw Error(a.prompts_file + " holds no prompts");
  }
  ModelSession session = open_model(*ckpt, a.gen, requests);
  const bool streaming = requests.size() == 1;

  Generator generator(*session.model, *tokenizer, {.max_sequences = streaming ? 1 : session.max_sequences});
  std::vector<GenerationOutput> outputs(requests.size());
  std::string error;
  GenerationStats stats = generator.run(
      requests,
      [&](size_t, std::string_view text) {
        if (!streaming) return;
        if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
          throw Error(std::string("cannot write the generated text to standard output: ") + std::strerror(errno));
      },
      [&](GenerationOutput&& out) {
        if (out.finish == FinishReason::Error && error.empty()) error = requests[out.index].id + ": " + out.error;
        outputs[out.index] = std::move(out);
      });
  if (streaming) {
    if (!error.empty()) throw Error(error);
    std::fputc('\n', stdout);
  } else {
    for (size_t i = 0; i < outputs.size(); ++i)
      std::printf("[%s] %s\n", requests[i].id.c_str(),
                  outputs[i].finish == FinishReason::Error ? ("error: " + outputs[i].error).c_str()
                                                           : outputs[i].text.c_str());
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    throw Error(std::string("cannot write the generated text to standard output: ") + std::strerror(errno));
  if (!a.quiet)
    std::fprintf(stderr, "ferry: %lld prompt tokens, %lld generated in %.2f s (prefill %.1f tok/s, decode %.1f tok/s)\n",
                 static_cast<long long>(stats.prompt_tokens), static_cast<long long>(stats.generated_tokens),
                 stats.wall_seconds, stats.prefill_seconds > 0 ? stats.prompt_tokens / stats.prefill_seconds : 0.0,
                 stats.decode_tokens_per_second());
  finish_session(session, a.gen, stats, a.quiet ? nullptr : stderr);
  return error.empty() ? 0 : 2;
}

static RegisterCommand reg{{"generate", "Generate text for one prompt (streamed) or every prompt of a file",
                            [](CLI::App& app) -> std::function<int()> {
                              auto a = std::make_shared<GenerateArgs>();
                              app.add_option("-m,--model", a->gen.model_dir, "Model directory (config.json, *.safetensors, tokenizer)")
                                  ->required();
                              app.add_option("-p,--prompt", a->prompt, "Prompt text");
                              app.add_option("--prompts", a->prompts_file,
                                             "Prompt file (one prompt per line, or JSONL with \"prompt\"): every "
                                             "prompt decoded together, results printed as [id] text");
                              add_generation_options(app, a->gen);
                              app.add_flag("-q,--quiet", a->quiet, "Do not print timing and metrics to stderr");
                              return [a] { return run_generate(*a); };
                            },
                            10}};

}  // namespace
}  // namespace ferry::cli
