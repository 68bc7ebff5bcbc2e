// Continuous-batching generation over any Model: requests are admitted while there is room,
// prefilled together, decoded one token per step together, and a finished request's slot is
// refilled at once from the queue. Stops on EOS, stop strings or max tokens.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/model.h"
#include "ferry/sampler.h"
#include "ferry/tokenizer.h"

namespace ferry {

enum class FinishReason { Eos, Stop, Length, Error };
std::string_view finish_reason_name(FinishReason r);

struct GenerationRequest {
  std::string id;                 // caller's name for the request (e.g. "line 12")
  std::vector<TokenId> prompt;    // already tokenized, BOS included if the model wants it
  SamplingParams sampling;
  int max_tokens = 128;
  std::vector<std::string> stop;  // generation ends before the first occurrence of any of these
  bool ignore_eos = false;
};

struct GenerationOutput {
  size_t index = 0;               // position in the request list
  std::vector<TokenId> tokens;    // generated tokens (EOS excluded)
  std::string text;               // their text, cut before a stop string
  FinishReason finish = FinishReason::Length;
  std::string error;              // for FinishReason::Error
  int prompt_tokens = 0;
  double first_token_seconds = 0; // from the start of the run
  double finish_seconds = 0;
};

struct GeneratorOptions {
  int max_sequences = 16;         // sequences decoded together
  int max_prefill_tokens = 4096;  // prompt tokens per prefill step
};

struct GenerationStats {
  int64_t requests = 0, prompt_tokens = 0, generated_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0, wall_seconds = 0;
  double decode_tokens_per_second() const { return decode_seconds > 0 ? (generated_tokens - requests) / decode_seconds : 0; }
  double tokens_per_second() const { return wall_seconds > 0 ? generated_tokens / wall_seconds : 0; }
};

// Ids in [0, n_vocab) the tokenizer cannot decode, sorted: the rows of an embedding padded past the
// tokenizer's vocabulary (model vocabulary plus added tokens), and any gap inside it. The ids in
// `keep` (end-of-sequence ids, which end a request without being decoded) are left out.
std::vector<TokenId> undecodable_ids(const Tokenizer& tokenizer, int n_vocab, std::span<const TokenId> keep = {});

class Generator {
 public:
  using TextCallback = std::function<void(size_t index, std::string_view text)>;
  using DoneCallback = std::function<void(GenerationOutput&& output)>;

  Generator(Model& model, const Tokenizer& tokenizer, GeneratorOptions options = {});
  // Runs every request to completion. on_text streams each request's text as it is produced
  // (never a partial UTF-8 character, never text that may turn out to start a stop string);
  // on_done receives each finished request. A request that cannot run (prompt longer than the
  // context, empty prompt) or fails while it runs (sampling, decoding) finishes with
  // FinishReason::Error and a message; the others go on. Ids the tokenizer cannot decode are never
  // sampled (undecodable_ids); one met anyway renders as no text. Exceptions thrown by the callbacks
  // and by the model's forward pass stop the run and reach the caller.
  GenerationStats run(std::span<const GenerationRequest> requests, const TextCallback& on_text,
                      const DoneCallback& on_done);

 private:
  Model& model_;
  const Tokenizer& tokenizer_;
  GeneratorOptions options_;
  std::vector<TokenId> masked_ids_;  // undecodable_ids(): never sampled, decoded as no text
};

}  // namespace ferry
