// What all tokenizers share: special-token queries, decode() from per-token bytes, streaming.
#include <algorithm>

#include "ferry/error.h"
#include "ferry/tokenizer.h"
#include "tokenizer/utf8.h"

namespace ferry {

bool Tokenizer::is_special(TokenId id) const {
  return std::binary_search(special_.special.begin(), special_.special.end(), id);
}

bool Tokenizer::is_eos(TokenId id) const {
  return std::find(special_.eos.begin(), special_.eos.end(), id) != special_.eos.end();
}

void Tokenizer::set_special_tokens(SpecialTokenIds special) {
  std::sort(special.special.begin(), special.special.end());
  special.special.erase(std::unique(special.special.begin(), special.special.end()), special.special.end());
  special_ = std::move(special);
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special) const {
  DecodeState state;
  std::string bytes;
  for (TokenId id : ids) bytes.append(token_bytes(id, state, skip_special));
  return utf8::repaired(bytes, utf8_repair());
}

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

std::string StreamingDecoder::push(TokenId id) {
  pending_.append(tokenizer_->token_bytes(id, state_, skip_special_));
  std::string text;
  const size_t consumed = utf8::append_repaired(text, pending_, tokenizer_->utf8_repair(), /*at_end=*/false);
  pending_.erase(0, consumed);
  return text;
}

std::string StreamingDecoder::finish() {
  std::string text = utf8::repaired(pending_, tokenizer_->utf8_repair());
  pending_.clear();
  return text;
}

void StreamingDecoder::reset() {
  state_ = DecodeState{};
  pending_.clear();
}

}  // namespace ferry
