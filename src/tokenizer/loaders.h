// Internal: the pieces load_tokenizer() puts together.
#pragma once
#include <filesystem>
#include <memory>
#include <string>

#include "ferry/tokenizer.h"

namespace ferry {

// tokenizer.model via libsentencepiece; `tokenizer_json` (may be empty) contributes added tokens
// that the SentencePiece model does not already have as control pieces.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& model_file,
                                                        const std::filesystem::path& tokenizer_json);

// BOS/EOS from tokenizer_config.json, falling back to config.json, on top of `defaults`.
SpecialTokenIds read_special_token_config(const Tokenizer& tokenizer, const std::filesystem::path& model_dir,
                                          SpecialTokenIds defaults);

// The whole file; throws ferry::Error naming it when it cannot be read.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace ferry
