// `ferry tokenize --model DIR [--ids] [--no-bos] TEXT`: shows how a model's tokenizer splits a text,
// one `id -> 'piece'` line per token (as llama.cpp's llama-tokenize does), or just the id list.
#include <cstdio>
#include <string>

#include "command.h"
#include "ferry/tokenizer.h"

namespace ferry::cli {
namespace {

// Text of one token with control characters, quotes and bytes of partial characters escaped.
std::string escaped(const std::string& bytes) {
  std::string out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const auto c = static_cast<unsigned char>(bytes[pos]);
    size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    // Keep a multi-byte character only if it is complete and well-formed.
    if (n > 1 && pos + n <= bytes.size()) {
      for (size_t i = 1; i < n; ++i)
        if ((static_cast<unsigned char>(bytes[pos + i]) & 0xC0) != 0x80) n = 0;
    } else if (n > 1) {
      n = 0;
    }
    char buffer[8];
    if (n == 0) {
      std::snprintf(buffer, sizeof(buffer), "\\x%02x", c);
      out += buffer;
      ++pos;
      continue;
    }
    if (n == 1) {
      switch (c) {
        case '\n':
          out += "\\n";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\'':
          out += "\\'";
          break;
        default:
          if (c < 0x20 || c == 0x7F) {
            std::snprintf(buffer, sizeof(buffer), "\\x%02x", c);
            out += buffer;
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++pos;
      continue;
    }
    out.append(bytes, pos, n);
    pos += n;
  }
  return out;
}

struct TokenizeOptions {
  std::string model_dir;
  std::string text;
  bool ids_only = false;
  bool no_bos = false;
};

int run_tokenize(const TokenizeOptions& options) {
  const auto tokenizer = load_tokenizer(options.model_dir);
  std::vector<TokenId> ids;
  if (tokenizer->add_bos() && tokenizer->bos_id() && !options.no_bos) ids.push_back(*tokenizer->bos_id());
  for (TokenId id : tokenizer->encode(options.text, /*add_special=*/false)) ids.push_back(id);
  if (tokenizer->add_eos() && !tokenizer->eos_ids().empty()) ids.push_back(tokenizer->eos_ids().front());

  if (options.ids_only) {
    std::string line = "[";
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? ", " : "") + std::to_string(ids[i]);
    std::printf("%s]\n", line.c_str());
    return 0;
  }
  for (TokenId id : ids) {
    // A token's own text as it reads in the middle of a sequence (so SentencePiece pieces keep their
    // leading space); special tokens show their name, since some (<s>) decode to nothing.
    DecodeState mid_sequence;
    mid_sequence.at_text_start = false;
    const std::string text =
        tokenizer->is_special(id) ? tokenizer->id_to_piece(id) : tokenizer->token_bytes(id, mid_sequence);
    std::printf("%6d -> '%s'\n", id, escaped(text).c_str());
  }
  return 0;
}

const RegisterCommand kRegister{{
    "tokenize",
    "Show the tokens of a text for a model's tokenizer",
    [](CLI::App& app) -> std::function<int()> {
      auto options = std::make_shared<TokenizeOptions>();
      app.add_option("--model", options->model_dir, "Model directory (tokenizer.model or tokenizer.json)")
          ->required();
      app.add_flag("--ids", options->ids_only, "Print only the list of ids, e.g. [1, 22557, 1526]");
      app.add_flag("--no-bos", options->no_bos, "Do not add the BOS token even if the tokenizer adds one");
      app.add_option("text", options->text, "Text to tokenize")->required();
      return [options] { return run_tokenize(*options); };
    },
    60,
}};

}  // namespace
}  // namespace ferry::cli
