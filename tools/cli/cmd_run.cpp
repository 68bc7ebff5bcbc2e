// ferry run: an offline throughput job over a prompt file. Results are appended to a JSONL file
// as each request finishes (written at once, so a crash loses nothing finished; a failed write stops
// the job with the file and the reason); --resume skips the ids already there, after cutting off a
// last line an interrupted run left unfinished. A request that fails (a prompt too long for the
// context, one that cannot be tokenized) gets an error record and the job goes on (exit 2).
// Progress goes to stderr; tokens/s at the end, and on a pipeline target the run's metrics beside the
// planner's prediction.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "command.h"
#include "ferry/checkpoint.h"
#include "ferry/error.h"
#include "ferry/generator.h"
#include "ferry/prompt_file.h"
#include "ferry/tokenizer.h"
#include "generation_options.h"
#include "model_session.h"
#include "output_file.h"

namespace ferry::cli {
namespace {

struct RunArgs {
  GenerationOptions gen;
  std::string prompts;
  std::string out = "results.jsonl";
  std::string metrics;
  bool resume = false;
  bool progress = true;
  int show = 0;  // print this many results (the first prompts of the file) after the summary
};

// One line of a result to show: its prompt and text on one line each, cut at `width` characters.
std::string one_line(std::string s, size_t width) {
  for (char& ch : s)
    if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
  if (s.size() > width) {
    size_t cut = width;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
    s = s.substr(0, cut) + "...";
  }
  return s;
}

std::set<std::string> finished_ids(const std::string& path) {
  std::set<std::string> ids;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    try {
      auto j = nlohmann::json::parse(line);
      if (j.contains("id") && j["id"].is_string()) ids.insert(j["id"].get<std::string>());
    } catch (const nlohmann::json::exception&) {
      // not a result line: that request runs again
    }
  }
  return ids;
}

nlohmann::json result_record(const PromptRecord& r, int prompt_tokens, size_t tokens, FinishReason finish,
                             const std::string& text, const std::string& error) {
  nlohmann::json j = {{"id", r.id},
                      {"line", r.line},
                      {"prompt_tokens", prompt_tokens},
                      {"tokens", tokens},
                      {"finish_reason", finish_reason_name(finish)},
                      {"text", text}};
  if (finish == FinishReason::Error) j["error"] = error;
  return j;
}

int run_job(RunArgs a) {
  if (a.gen.model_dir.empty()) a.gen.model_dir = bundled_model_dir();
  if (a.prompts.empty()) a.prompts = bundled_prompts_file();
  validate(a.gen.sampling);
  const auto records = read_prompt_file(a.prompts);
  // The output files before anything heavy: an unwritable path is reported before the model loads.
  OutputFile out(a.out, "results");
  std::optional<OutputFile> metrics;
  if (!a.metrics.empty()) metrics.emplace(a.metrics, "metrics");
  if (a.resume) {
    // A line cut short by a crash or a full disk: removed, so the rerun's result starts on a line of its
    // own; its prompt runs again.
    if (const size_t cut = out.cut_torn_last_line())
      std::fprintf(stderr, "ferry: %s: removed an unfinished last line (%zu bytes) left by an interrupted run\n",
                   a.out.c_str(), cut);
  }
  auto ckpt = Checkpoint::open(a.gen.model_dir);
  auto tokenizer = load_tokenizer(a.gen.model_dir);

  std::set<std::string> done = a.resume && out.regular() ? finished_ids(a.out) : std::set<std::string>{};
  std::vector<GenerationRequest> requests;
  std::vector<const PromptRecord*> record_of;
  std::vector<std::pair<const PromptRecord*, std::string>> unencodable;  // failed before generation
  for (const PromptRecord& r : records) {
    if (done.count(r.id)) continue;
    GenerationRequest q;
    q.id = r.id;
    try {
      q.prompt = tokenizer->encode(r.text, !a.gen.no_bos);
    } catch (const std::exception& e) {
      unencodable.emplace_back(&r, std::string("cannot tokenize the prompt: ") + e.what());
      continue;
    }
    q.sampling = a.gen.sampling;
    q.sampling.seed = a.gen.sampling.seed + static_cast<uint64_t>(r.line);  // per request, reproducible
    q.max_tokens = r.max_tokens.value_or(a.gen.max_tokens);
    q.stop = a.gen.stop;
    q.ignore_eos = a.gen.ignore_eos;
    requests.push_back(std::move(q));
    record_of.push_back(&r);
  }
  const size_t total = requests.size() + unencodable.size();
  ModelSession session = open_model(*ckpt, a.gen, requests);
  if (!a.resume) out.truncate();
  std::fprintf(stderr, "ferry: %zu prompts from %s (%zu already done), model %s, target %s, batch %d\n", total,
               a.prompts.c_str(), done.size(), a.gen.model_dir.c_str(), a.gen.target.target.c_str(),
               session.max_sequences);

  // Counted only once its line is in the file: a failed write stops the job at once, and what the
  // job reports as done is what the file holds.
  size_t finished = 0, failed = 0;
  int64_t generated = 0;
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  const bool tty = isatty(fileno(stderr));
  bool progress_line_open = false;
  auto write_result = [&](const nlohmann::json& j, const PromptRecord& r, const std::string& error, size_t tokens) {
    const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    try {
      out.append(line);
    } catch (const Error& e) {
      if (progress_line_open) std::fputc('\n', stderr);
      throw Error(std::string(e.what()) + "; the job stopped with " + std::to_string(finished) + " of " +
                  std::to_string(total) + " results written (run again with --resume for the rest)");
    }
    ++finished;
    generated += static_cast<int64_t>(tokens);
    if (!error.empty()) {
      ++failed;
      if (progress_line_open) std::fputc('\n', stderr);
      progress_line_open = false;
      std::fprintf(stderr, "ferry: %s:%d: %s\n", a.prompts.c_str(), r.line, error.c_str());
    }
    const auto now = std::chrono::steady_clock::now();
    if (a.progress && (now - last_report > std::chrono::seconds(1) || finished == total)) {
      const double s = std::chrono::duration<double>(now - start).count();
      // On a terminal the line updates in place; in a log each report is its own line.
      std::fprintf(stderr, "%sferry: [%zu/%zu] %lld tokens generated, %.1f tok/s%s", tty ? "\r" : "", finished, total,
                   static_cast<long long>(generated), s > 0 ? generated / s : 0.0, tty ? "   " : "\n");
      progress_line_open = tty;
      last_report = now;
    }
  };
  for (const auto& [r, error] : unencodable)
    write_result(result_record(*r, 0, 0, FinishReason::Error, "", error), *r, error, 0);

  std::vector<std::pair<const PromptRecord*, std::string>> shown;  // the first --show results, by request
  Generator generator(*session.model, *tokenizer, {.max_sequences = session.max_sequences});
  GenerationStats stats = generator.run(requests, nullptr, [&](GenerationOutput&& o) {
    const PromptRecord& r = *record_of[o.index];
    if (o.index < static_cast<size_t>(std::max(a.show, 0)) && o.finish != FinishReason::Error)
      shown.emplace_back(&r, o.text);
    const std::string error = o.finish == FinishReason::Error ? o.error : std::string();
    write_result(result_record(r, o.prompt_tokens, o.tokens.size(), o.finish, o.text, error), r, error, o.tokens.size());
  });
  out.close();
  out.keep();
  if (progress_line_open) std::fputc('\n', stderr);
  stats.requests += static_cast<int64_t>(unencodable.size());
  std::printf("requests: %lld (%zu failed)\nprompt tokens: %lld\ngenerated tokens: %lld\nwall time: %.2f s\n"
              "prefill: %.1f tok/s\ndecode: %.1f tok/s\nthroughput: %.1f generated tok/s\nresults: %s\n",
              static_cast<long long>(stats.requests), failed, static_cast<long long>(stats.prompt_tokens),
              static_cast<long long>(stats.generated_tokens), stats.wall_seconds,
              stats.prefill_seconds > 0 ? stats.prompt_tokens / stats.prefill_seconds : 0.0,
              stats.decode_tokens_per_second(), stats.tokens_per_second(), a.out.c_str());
  if (!shown.empty()) {
    std::sort(shown.begin(), shown.end(), [](const auto& x, const auto& y) { return x.first->line < y.first->line; });
    std::printf("first results:\n");
    for (const auto& [r, text] : shown)
      std::printf("  %s\n    -> %s\n", one_line(r->text, 100).c_str(), one_line(text, 300).c_str());
  }
  const nlohmann::json pipeline = finish_session(session, a.gen, stats, stdout);
  if (metrics) {
    nlohmann::json m = {{"requests", stats.requests},          {"failed", failed},
                        {"prompt_tokens", stats.prompt_tokens}, {"generated_tokens", stats.generated_tokens},
                        {"wall_seconds", stats.wall_seconds},   {"prefill_seconds", stats.prefill_seconds},
                        {"decode_seconds", stats.decode_seconds}, {"tokens_per_second", stats.tokens_per_second()},
                        {"target", a.gen.target.target},        {"batch", session.max_sequences}};
    if (!pipeline.is_null() && session.pipeline) m["pipeline"] = pipeline;
    else if (!pipeline.is_null()) m.update(pipeline);  // the cpu target's expert tiers
    metrics->truncate();
    metrics->append(m.dump(2) + "\n");
    metrics->close();
    metrics->keep();
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    throw Error(std::string("cannot write the summary to standard output: ") + std::strerror(errno) +
                " (the results are in " + a.out + ")");
  return failed == 0 ? 0 : 2;
}

static RegisterCommand reg{{"run", "Offline job: generate for every prompt in a file, write JSONL results, report tokens/s",
                            [](CLI::App& app) -> std::function<int()> {
                              auto a = std::make_shared<RunArgs>();
                              app.add_option("-m,--model", a->gen.model_dir,
                                             "Model directory (default: the bundled tiny Mixtral-family model)");
                              app.add_option("--prompts", a->prompts,
                                             "Prompt file: one prompt per line, or JSONL with a \"prompt\" field "
                                             "(default: the bundled prompts)");
                              app.add_option("-o,--out", a->out, "Results file (JSONL)")->capture_default_str();
                              app.add_option("--metrics", a->metrics, "Also write run metrics as JSON here");
                              app.add_flag("--resume", a->resume, "Skip prompts whose id is already in the results file");
                              app.add_flag("!--no-progress", a->progress, "Do not print progress");
                              app.add_option("--show", a->show,
                                             "After the summary, print the first N results (prompt and text)")
                                  ->check(CLI::NonNegativeNumber);
                              add_generation_options(app, a->gen);
                              return [a] { return run_job(*a); };
                            },
                            5}};

}  // namespace
}  // namespace ferry::cli
