// Tokenizers: text <-> token ids for the supported checkpoints.
//
// load_tokenizer(dir) picks the implementation from the files in a model directory:
//   tokenizer.model  -> SentencePiece (libsentencepiece), with added tokens from tokenizer.json if present
//   tokenizer.json   -> ferry's own Hugging Face `tokenizers` reader (byte-level BPE and friends)
// BOS/EOS come from tokenizer_config.json (add_bos_token, add_eos_token, bos_token, eos_token),
// falling back to config.json (bos_token_id, eos_token_id).
//
// Text is UTF-8. encode() throws ferry::Error for input that is not valid UTF-8. decode() always
// returns valid UTF-8: byte sequences that do not form characters become U+FFFD.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ferry {

using TokenId = int32_t;

// Which special ids a tokenizer knows and whether encode() adds them.
struct SpecialTokenIds {
  std::optional<TokenId> bos;
  std::vector<TokenId> eos;      // first: the tokenizer's own eos_token; then config.json extras
  bool add_bos = false;          // encode(text, add_special=true) prepends bos
  bool add_eos = false;          // encode(text, add_special=true) appends eos[0]
  std::vector<TokenId> special;  // sorted: control / special tokens (BOS, EOS, <|im_start|>, ...)
};

// How bytes that are not valid UTF-8 are repaired when text is produced.
enum class Utf8Repair {
  kPerByte,         // each offending byte becomes U+FFFD (SentencePiece)
  kMaximalSubpart,  // each maximal ill-formed subpart becomes one U+FFFD (Rust from_utf8_lossy)
};

// Carried from token to token while decoding, so a sequence can be decoded one token at a time.
struct DecodeState {
  bool at_text_start = true;    // no token that produces text has been decoded yet
  int leading_strip_left = -1;  // characters still to strip from the start of the text (-1: not set)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids for `text`. With add_special, BOS/EOS are added as add_bos()/add_eos() say.
  // Special tokens written in the text (e.g. "<|im_start|>") become their ids.
  virtual std::vector<TokenId> encode(std::string_view text, bool add_special = true) const = 0;

  // Text for `ids`. Special tokens render as their content unless skip_special (SentencePiece control
  // tokens such as <s> always render as nothing, as libsentencepiece does).
  // Throws ferry::Error for an id outside [0, vocab_size()).
  virtual std::string decode(std::span<const TokenId> ids, bool skip_special = false) const;

  // The raw bytes one token contributes to the text, given what came before (state is updated).
  // May be a partial UTF-8 character (byte-level and byte-fallback tokens); StreamingDecoder turns
  // these into complete characters.
  virtual std::string token_bytes(TokenId id, DecodeState& state, bool skip_special = false) const = 0;
  virtual Utf8Repair utf8_repair() const = 0;

  // The vocabulary entry for an id as stored in the tokenizer file ("▁Hello", "Ġworld", "<0x0A>").
  virtual std::string id_to_piece(TokenId id) const = 0;
  virtual std::optional<TokenId> piece_to_id(std::string_view piece) const = 0;
  // One more than the largest id (model vocabulary plus added tokens).
  virtual size_t vocab_size() const = 0;
  // "sentencepiece" or "bpe" (what kind of tokenizer was loaded), for messages.
  virtual std::string_view kind() const = 0;

  const SpecialTokenIds& special_tokens() const { return special_; }
  std::optional<TokenId> bos_id() const { return special_.bos; }
  const std::vector<TokenId>& eos_ids() const { return special_.eos; }
  bool add_bos() const { return special_.add_bos; }
  bool add_eos() const { return special_.add_eos; }
  bool is_special(TokenId id) const;
  bool is_eos(TokenId id) const;

  // Replaces the BOS/EOS settings (load_tokenizer fills them from the config files).
  void set_special_tokens(SpecialTokenIds special);

 protected:
  SpecialTokenIds special_;
};

// Turns ids arriving one at a time into text, emitting only complete UTF-8 characters, so that the
// concatenation of everything push() and finish() return equals tokenizer.decode(all ids).
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  // Text completed by this token (possibly empty: an emoji arrives in up to four byte tokens).
  std::string push(TokenId id);
  // End of sequence: bytes still waiting for the rest of a character become U+FFFD.
  std::string finish();
  // Starts a new sequence.
  void reset();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  DecodeState state_;
  std::string pending_;  // bytes of an incomplete character
};

// Loads the tokenizer of the model in `model_dir` (see the top of this file).
// Throws ferry::Error naming the directory when it holds no tokenizer, or the file that is malformed.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir);

// Loads a Hugging Face tokenizer.json given as text; `source` names it in error messages.
// BOS/EOS are not set (there is no tokenizer_config.json): only the post-processor's template is used.
std::unique_ptr<Tokenizer> load_hf_tokenizer_from_json_string(std::string_view json_text,
                                                              const std::string& source = "tokenizer.json");

}  // namespace ferry
