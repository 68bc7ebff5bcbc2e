#include "ferry/generator.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>

#include "ferry/error.h"

namespace ferry {

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Eos: return "eos";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Error: return "error";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;

// One request in flight: its sequence in the model, sampler, detokenizer and stop-string state.
struct Active {
  size_t index = 0;
  const GenerationRequest* req = nullptr;
  int seq = -1;
  int max_tokens = 0;              // clamped to the context
  int64_t kv_blocks = 0;           // KV blocks reserved for it: its prompt and every token it may generate
  std::vector<TokenId> history;    // prompt + generated (repetition penalty)
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamingDecoder> decoder;
  GenerationOutput out;
  size_t emitted = 0;              // bytes of out.text already streamed
  TokenId next = -1;               // sampled, not yet fed to the model
  bool done = false;
};

// Length of the longest suffix of `text` that is a proper prefix of some stop string: that much
// text must be held back from streaming until the next token decides it.
size_t held_back(std::string_view text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops)
    for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
      if (text.substr(text.size() - n) == std::string_view(s).substr(0, n)) {
        hold = n;
        break;
      }
  return hold;
}

}  // namespace

std::vector<TokenId> undecodable_ids(const Tokenizer& tokenizer, int n_vocab, std::span<const TokenId> keep) {
  std::vector<TokenId> ids;
  const auto known = static_cast<TokenId>(std::min<size_t>(tokenizer.vocab_size(), static_cast<size_t>(std::max(0, n_vocab))));
  for (TokenId id = 0; id < n_vocab; ++id) {
    if (std::find(keep.begin(), keep.end(), id) != keep.end()) continue;
    if (id < known) {
      try {
        DecodeState state;
        (void)tokenizer.token_bytes(id, state, /*skip_special=*/true);
        continue;
      } catch (const std::exception&) {
        // a gap in the vocabulary (e.g. between the model's pieces and the added tokens)
      }
    }
    ids.push_back(id);
  }
  return ids;
}

Generator::Generator(Model& model, const Tokenizer& tokenizer, GeneratorOptions options)
    : model_(model), tokenizer_(tokenizer), options_(options) {
  if (options_.max_sequences < 1) throw Error("the batch size must be at least 1");
  const ModelConfig& cfg = model_.config();
  std::vector<TokenId> keep = cfg.eos_token_ids;
  keep.insert(keep.end(), tokenizer_.eos_ids().begin(), tokenizer_.eos_ids().end());
  masked_ids_ = undecodable_ids(tokenizer_, cfg.n_vocab, keep);
  // A tokenizer that can decode nothing the model produces is not a tokenizer for this model; then
  // nothing is masked and the requests fail one by one, each with the decoder's message.
  if (static_cast<int64_t>(masked_ids_.size()) >= cfg.n_vocab) masked_ids_.clear();
}

GenerationStats Generator::run(std::span<const GenerationRequest> requests, const TextCallback& on_text,
                               const DoneCallback& on_done) {
  const ModelConfig& cfg = model_.config();
  const int V = cfg.n_vocab;
  const auto t_start = Clock::now();
  auto seconds_since_start = [&] { return std::chrono::duration<double>(Clock::now() - t_start).count(); };
  GenerationStats stats;
  stats.requests = static_cast<int64_t>(requests.size());

  std::deque<size_t> queue;
  const int64_t kv_total = model_.kv_blocks();  // 0: unbounded
  const int kv_block = std::max(1, model_.kv_block_tokens());
  int64_t kv_committed = 0;
  for (size_t i = 0; i < requests.size(); ++i) queue.push_back(i);
  std::vector<std::unique_ptr<Active>> active;

  auto is_eos = [&](TokenId t) {
    return tokenizer_.is_eos(t) ||
           std::find(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end(), t) != cfg.eos_token_ids.end();
  };
  auto finish = [&](Active& a, FinishReason why) {
    a.done = true;
    a.out.finish = why;
    a.out.finish_seconds = seconds_since_start();
    if (why != FinishReason::Stop) a.out.text += a.decoder->finish();
    if (on_text && a.out.text.size() > a.emitted) on_text(a.index, std::string_view(a.out.text).substr(a.emitted));
    a.emitted = a.out.text.size();
  };
  // A failure of this request alone: it finishes with its error; the others go on.
  auto fail = [&](Active& a, const std::string& why) {
    a.out.error = why;
    a.done = true;
    a.out.finish = FinishReason::Error;
    a.out.finish_seconds = seconds_since_start();
  };
  // Takes the sampled token: appends it, streams text, and decides whether the request is done.
  auto accept = [&](Active& a, TokenId t) {
    if (a.out.tokens.empty()) a.out.first_token_seconds = seconds_since_start();
    if (is_eos(t) && !a.req->ignore_eos) return finish(a, FinishReason::Eos);
    a.out.tokens.push_back(t);
    a.history.push_back(t);
    stats.generated_tokens++;
    // An id the tokenizer cannot decode (a padded embedding row) renders as no text.
    if (!std::binary_search(masked_ids_.begin(), masked_ids_.end(), t)) {
      try {
        a.out.text += a.decoder->push(t);
      } catch (const std::exception& e) {
        return fail(a, "cannot decode token id " + std::to_string(t) + ": " + e.what());
      }
    }
    const auto& stops = a.req->stop;
    if (!stops.empty()) {
      // Search only where a new match can start: the held-back tail plus the new text.
      size_t from = a.emitted, cut = std::string::npos;
      for (const std::string& s : stops) {
        size_t p = a.out.text.find(s, from);
        if (p != std::string::npos) cut = std::min(cut, p);
      }
      if (cut != std::string::npos) {
        a.out.text.resize(cut);
        return finish(a, FinishReason::Stop);
      }
    }
    if (static_cast<int>(a.out.tokens.size()) >= a.max_tokens) return finish(a, FinishReason::Length);
    const size_t ready = a.out.text.size() - held_back(a.out.text, stops);
    if (on_text && ready > a.emitted) on_text(a.index, std::string_view(a.out.text).substr(a.emitted, ready - a.emitted));
    a.emitted = std::max(a.emitted, ready);
    a.next = t;
  };
  // Samples and accepts the next token of `a` from its row of logits.
  auto step = [&](Active& a, const float* logits) {
    TokenId t = -1;
    try {
      t = a.sampler->sample(std::span<const float>(logits, V), a.history);
    } catch (const std::exception& e) {
      return fail(a, std::string("sampling failed: ") + e.what());
    }
    accept(a, t);
  };
  auto retire_done = [&] {
    for (auto& a : active)
      if (a->done) {
        model_.free_sequence(a->seq);
        if (on_done) on_done(std::move(a->out));
        kv_committed -= a->kv_blocks;
        a.reset();
      }
    active.erase(std::remove(active.begin(), active.end(), nullptr), active.end());
  };

  while (!queue.empty() || !active.empty()) {
    // ---- admit and prefill new requests while there is room (sequence slots and KV blocks) ----
    std::vector<Active*> admitted;
    int prefill_tokens = 0;
    while (!queue.empty() && static_cast<int>(active.size()) < options_.max_sequences) {
      const size_t i = queue.front();
      const GenerationRequest& r = requests[i];
      const int n = static_cast<int>(r.prompt.size());
      if (!admitted.empty() && prefill_tokens + n > options_.max_prefill_tokens) break;
      // A request is admitted with KV room for all it may reach, so no running sequence ever finds the cache
      // full; one that cannot fit even an empty cache fails alone.
      const int reach = n + std::max(0, std::min(r.max_tokens, cfg.max_position - n));
      const int64_t need = kv_total > 0 ? (reach + kv_block - 1) / kv_block : 0;
      if (kv_total > 0 && need <= kv_total && kv_committed + need > kv_total) break;  // wait for room
      queue.pop_front();
      stats.prompt_tokens += n;
      GenerationOutput failed;
      failed.index = i;
      failed.prompt_tokens = n;
      failed.finish = FinishReason::Error;
      if (n == 0) failed.error = "the prompt is empty";
      else if (n >= cfg.max_position)
        failed.error = "the prompt has " + std::to_string(n) + " tokens but the model's context is " +
                       std::to_string(cfg.max_position) + " tokens; shorten the prompt";
      else if (r.max_tokens < 1) failed.error = "max tokens must be at least 1";
      else if (kv_total > 0 && need > kv_total)
        failed.error = "the prompt and its " + std::to_string(reach - n) + " generated tokens need " +
                       std::to_string(need * kv_block) + " KV positions but the KV cache holds " +
                       std::to_string(kv_total * kv_block) + "; raise --kv-tokens or lower --max-tokens";
      else if (auto bad = std::find_if(r.prompt.begin(), r.prompt.end(), [&](TokenId t) { return t < 0 || t >= V; });
               bad != r.prompt.end())
        failed.error = "prompt token id " + std::to_string(*bad) + " is outside the vocabulary of " + std::to_string(V);
      if (!failed.error.empty()) {
        if (on_done) on_done(std::move(failed));
        continue;
      }
      auto a = std::make_unique<Active>();
      a->index = i;
      a->req = &r;
      a->seq = model_.add_sequence();
      a->max_tokens = std::min(r.max_tokens, cfg.max_position - n);
      a->kv_blocks = need;
      kv_committed += need;
      a->history = r.prompt;
      a->sampler = std::make_unique<Sampler>(r.sampling, V, masked_ids_);
      a->decoder = std::make_unique<StreamingDecoder>(tokenizer_, /*skip_special=*/true);
      a->out.index = i;
      a->out.prompt_tokens = n;
      prefill_tokens += n;
      admitted.push_back(a.get());
      active.push_back(std::move(a));
    }
    if (!admitted.empty()) {
      std::vector<ForwardItem> items;
      for (Active* a : admitted) items.push_back({a->seq, a->req->prompt, false});
      const auto t0 = Clock::now();
      const std::span<const float> logits = model_.forward_view(items);
      stats.prefill_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      for (size_t j = 0; j < admitted.size(); ++j) step(*admitted[j], logits.data() + j * V);
      retire_done();
      continue;  // fill any room the prefill freed before decoding
    }
    if (active.empty()) continue;
    // ---- one decode step for every active sequence ----
    std::vector<ForwardItem> items;
    for (auto& a : active) items.push_back({a->seq, std::span<const TokenId>(&a->next, 1), false});
    const auto t0 = Clock::now();
    const std::span<const float> logits = model_.forward_view(items);
    stats.decode_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    for (size_t j = 0; j < active.size(); ++j) step(*active[j], logits.data() + j * V);
    retire_done();
  }
  stats.wall_seconds = seconds_since_start();
  return stats;
}

}  // namespace ferry
