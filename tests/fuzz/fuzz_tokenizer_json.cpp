// libFuzzer target: any byte string given as a tokenizer.json either loads or is a ferry::Error, never a
// crash, a hang or another exception. A tokenizer that loads must encode and decode sample texts into
// ids inside its vocabulary, valid UTF-8, and the same text whether decoded at once or token by token.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/error.h"
#include "ferry/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

void check_round(const ferry::Tokenizer& tokenizer, std::string_view text) {
  std::vector<ferry::TokenId> ids;
  try {
    ids = tokenizer.encode(text, /*add_special=*/true);
  } catch (const ferry::Error&) {
    return;  // e.g. a pattern from the file hit the backtracking limit
  }
  for (ferry::TokenId id : ids)
    if (id < 0 || static_cast<size_t>(id) >= tokenizer.vocab_size()) std::abort();
  std::string decoded;
  try {
    decoded = tokenizer.decode(ids);
  } catch (const ferry::Error&) {
    // Only possible when the file's BOS/EOS or added-token ids name no token; encode() produced them.
    return;
  }
  if (!ferry::utf8::is_valid(decoded)) std::abort();
  ferry::StreamingDecoder stream(tokenizer);
  std::string streamed;
  for (ferry::TokenId id : ids) streamed += stream.push(id);
  streamed += stream.finish();
  if (streamed != decoded) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json_text(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<ferry::Tokenizer> tokenizer;
  try {
    tokenizer = ferry::load_hf_tokenizer_from_json_string(json_text, "fuzz/tokenizer.json");
  } catch (const ferry::Error&) {
    return 0;
  }
  static const char* const kTexts[] = {
      "",
      " ",
      "Hello world, it's 2024!  Two  spaces\tand\ttabs\r\n",
      "caf\xC3\xA9 cafe\xCC\x81 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
      "<|endoftext|><|im_start|>user\n<s>hi</s><unk>",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  };
  for (const char* text : kTexts) check_round(*tokenizer, text);
  return 0;
}
