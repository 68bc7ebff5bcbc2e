// A Hugging Face tokenizer.json read by ferry itself: added tokens -> normalizer -> pre-tokenizer ->
// BPE model on encode; token strings -> decoder on decode.
#include <algorithm>
#include <memory>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/tokenizer.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/token_decoder.h"
#include "tokenizer/utf8.h"

namespace ferry {
namespace {

using namespace json_fields;

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(const json& root, const std::string& source)
      : source_(source),
        normalizer_(parse_normalizer(root.value("normalizer", json()), source + ": normalizer")),
        pre_tokenizer_(parse_pre_tokenizer(root.value("pre_tokenizer", json()), source + ": pre_tokenizer")),
        model_(require(root, "model", source), source + ": model"),
        added_(parse_added_tokens(root.value("added_tokens", json()), source + ": added_tokens"),
               normalizer_.get()),
        decoder_(root.value("decoder", json()), source + ": decoder") {
    vocab_size_ = model_.id_bound();
    SpecialTokenIds special;
    for (const AddedToken& t : added_.tokens()) {
      vocab_size_ = std::max(vocab_size_, static_cast<size_t>(t.id) + 1);
      if (t.special) special.special.push_back(t.id);
    }
    read_template(root.value("post_processor", json()), special);
    set_special_tokens(std::move(special));
  }

  std::vector<TokenId> encode(std::string_view text, bool add_special) const override {
    if (const size_t bad = utf8::first_invalid(text); bad != text.size()) {
      throw Error("cannot tokenize: the text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
    }
    std::vector<TokenId> ids;
    ids.reserve(text.size() / 3 + 2);
    if (add_special && special_.add_bos && special_.bos) ids.push_back(*special_.bos);
    std::vector<TextSegment> segments;
    added_.split(text, segments);
    std::vector<PreToken> words;
    for (TextSegment& segment : segments) {
      if (segment.added_id) {
        ids.push_back(*segment.added_id);
        continue;
      }
      words.clear();
      words.push_back({std::move(segment.text), segment.at_text_start});
      if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(words);
      for (const PreToken& word : words) model_.tokenize(word.text, ids);
    }
    if (add_special && special_.add_eos && !special_.eos.empty()) ids.push_back(special_.eos.front());
    return ids;
  }

  std::string token_bytes(TokenId id, DecodeState& state, bool skip_special) const override {
    std::string out;
    if (const AddedToken* t = added_.find_by_id(id)) {
      if (skip_special && t->special) return out;
      decoder_.decode_token(t->content, state, out);
      return out;
    }
    const std::string* token = model_.id_to_token(id);
    if (!token) {
      throw Error("cannot decode token id " + std::to_string(id) + ": it is not in the vocabulary of " +
                  source_ + " (" + std::to_string(vocab_size_) + " ids)");
    }
    decoder_.decode_token(*token, state, out);
    return out;
  }

  Utf8Repair utf8_repair() const override { return decoder_.utf8_repair(); }

  std::string id_to_piece(TokenId id) const override {
    if (const AddedToken* t = added_.find_by_id(id)) return t->content;
    if (const std::string* token = model_.id_to_token(id)) return *token;
    throw Error("token id " + std::to_string(id) + " is not in the vocabulary of " + source_);
  }

  std::optional<TokenId> piece_to_id(std::string_view piece) const override {
    if (auto id = added_.find_by_content(piece)) return id;
    return model_.token_to_id(piece);
  }

  size_t vocab_size() const override { return vocab_size_; }
  std::string_view kind() const override { return "bpe"; }

 private:
  // TemplateProcessing {"single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}, ...]}
  // tells whether encode(add_special_tokens=True) adds BOS/EOS. Used only as the default when no
  // tokenizer_config.json says otherwise; an unusual post-processor is ignored, not an error.
  void read_template(const json& post, SpecialTokenIds& special) const {
    if (!post.is_object()) return;
    const std::string type = post.value("type", "");
    if (type == "Sequence") {
      const json processors = post.value("processors", json());
      if (processors.is_array())
        for (const json& p : processors) read_template(p, special);
      return;
    }
    if (type != "TemplateProcessing") return;
    const json single = post.value("single", json());
    if (!single.is_array() || single.empty()) return;
    auto special_id = [&](const json& item) -> std::optional<TokenId> {
      if (!item.is_object() || !item.contains("SpecialToken")) return std::nullopt;
      const json& st = item["SpecialToken"];
      if (!st.is_object() || !st.contains("id") || !st["id"].is_string()) return std::nullopt;
      return piece_to_id(st["id"].get<std::string>());
    };
    if (auto bos = special_id(single.front())) {
      special.add_bos = true;
      special.bos = *bos;
    }
    if (single.size() > 1) {
      if (auto eos = special_id(single.back())) {
        special.add_eos = true;
        special.eos = {*eos};
      }
    }
  }

  std::string source_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  BpeModel model_;
  AddedVocabulary added_;
  TokenDecoder decoder_;
  size_t vocab_size_ = 0;
};

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer_from_json_string(std::string_view json_text,
                                                              const std::string& source) {
  json root;
  try {
    root = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {  // parse_error, or out_of_range for too large a number
    throw Error(source + ": not valid JSON: " + e.what());
  }
  require_object(root, source);
  try {
    return std::make_unique<HfTokenizer>(root, source);
  } catch (const json::exception& e) {
    throw Error(source + ": unexpected content: " + e.what());
  }
}

}  // namespace ferry
