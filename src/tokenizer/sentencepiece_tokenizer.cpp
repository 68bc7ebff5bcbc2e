// SentencePiece models (tokenizer.model) through libsentencepiece. Encoding and whole-sequence decoding
// are the library's; per-token decoding for streaming follows the library's rules: control pieces are
// empty, the first text piece loses its dummy-prefix space, <0xNN> pieces are bytes.
#include <sentencepiece_processor.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/loaders.h"
#include "tokenizer/utf8.h"

namespace ferry {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // '▁'

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::filesystem::path& model_file, const std::filesystem::path& tokenizer_json)
      : source_(model_file.string()) {
    const auto status = processor_.Load(model_file.string());
    if (!status.ok()) throw Error(source_ + ": cannot load the SentencePiece model: " + status.ToString());
    n_pieces_ = processor_.GetPieceSize();
    vocab_size_ = static_cast<size_t>(n_pieces_);
    if (!tokenizer_json.empty()) read_added_tokens(tokenizer_json);

    // How the library decodes, learnt from the library itself.
    if (processor_.unk_id() >= 0) unk_surface_ = processor_.DecodeIds({processor_.unk_id()});
    for (int id = 0; id < n_pieces_; ++id) {
      const std::string& piece = processor_.IdToPiece(id);
      if (is_plain(id) && piece.starts_with(kSpaceSymbol)) {
        // Each '▁' decodes to one space: one byte shorter than the piece per '▁', or three when stripped.
        size_t n_spaces = 0;
        for (size_t pos = 0; (pos = piece.find(kSpaceSymbol, pos)) != std::string::npos;
             pos += kSpaceSymbol.size())
          ++n_spaces;
        strips_dummy_prefix_ = processor_.DecodeIds({id}).size() + 2 * n_spaces < piece.size();
        break;
      }
    }

    SpecialTokenIds special;
    if (processor_.bos_id() >= 0) special.bos = processor_.bos_id();
    if (processor_.eos_id() >= 0) special.eos = {processor_.eos_id()};
    special.add_bos = true;  // SentencePiece LLMs (Llama, Mistral) start every sequence with BOS
    for (int id = 0; id < n_pieces_; ++id)
      if (processor_.IsControl(id) || processor_.IsUnknown(id)) special.special.push_back(id);
    for (const AddedToken& t : added_.tokens())
      if (t.special) special.special.push_back(t.id);
    set_special_tokens(std::move(special));
  }

  std::vector<TokenId> encode(std::string_view text, bool add_special) const override {
    if (const size_t bad = utf8::first_invalid(text); bad != text.size()) {
      throw Error("cannot tokenize: the text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
    }
    std::vector<TokenId> ids;
    if (add_special && special_.add_bos && special_.bos) ids.push_back(*special_.bos);
    std::vector<TextSegment> segments;
    added_.split(text, segments);
    std::vector<int> piece_ids;
    for (const TextSegment& segment : segments) {
      if (segment.added_id) {
        ids.push_back(*segment.added_id);
        continue;
      }
      const auto status = processor_.Encode(segment.text, &piece_ids);
      if (!status.ok()) throw Error(source_ + ": SentencePiece failed to encode: " + status.ToString());
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
    if (add_special && special_.add_eos && !special_.eos.empty()) ids.push_back(special_.eos.front());
    return ids;
  }

  std::string decode(std::span<const TokenId> ids, bool skip_special) const override {
    const bool only_model_pieces = std::all_of(ids.begin(), ids.end(), [&](TokenId id) {
      check_id(id);
      return id < n_pieces_;
    });
    if (!only_model_pieces) return Tokenizer::decode(ids, skip_special);
    std::string text;
    const auto status = processor_.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    if (!status.ok()) throw Error(source_ + ": SentencePiece failed to decode: " + status.ToString());
    return text;
  }

  std::string token_bytes(TokenId id, DecodeState& state, bool skip_special) const override {
    check_id(id);
    if (id >= n_pieces_ || added_.find_by_id(id)) {
      const AddedToken* t = added_.find_by_id(id);
      if (!t || (skip_special && t->special)) return {};
      state.at_text_start = false;
      return t->content;
    }
    if (processor_.IsControl(id)) return {};  // <s>, </s>: no text, and the next piece is still first
    const bool first = state.at_text_start;
    state.at_text_start = false;
    if (processor_.IsUnknown(id)) return unk_surface_;
    const std::string& piece = processor_.IdToPiece(id);
    if (processor_.IsByte(id))
      return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
    std::string_view rest = piece;
    if (first && strips_dummy_prefix_ && rest.starts_with(kSpaceSymbol))
      rest.remove_prefix(kSpaceSymbol.size());
    std::string out;
    out.reserve(rest.size());
    for (size_t pos = 0; pos < rest.size();) {
      if (rest.substr(pos).starts_with(kSpaceSymbol)) {
        out.push_back(' ');
        pos += kSpaceSymbol.size();
      } else {
        out.push_back(rest[pos++]);
      }
    }
    return out;
  }

  Utf8Repair utf8_repair() const override { return Utf8Repair::kPerByte; }

  std::string id_to_piece(TokenId id) const override {
    check_id(id);
    if (const AddedToken* t = added_.find_by_id(id)) return t->content;
    if (id >= n_pieces_)
      throw Error("token id " + std::to_string(id) + " is not in the vocabulary of " + source_);
    return processor_.IdToPiece(id);
  }

  std::optional<TokenId> piece_to_id(std::string_view piece) const override {
    if (auto id = added_.find_by_content(piece)) return id;
    const int id = processor_.PieceToId(std::string(piece));
    if (id < 0 || (id == processor_.unk_id() && processor_.IdToPiece(id) != piece)) return std::nullopt;
    return id;
  }

  size_t vocab_size() const override { return vocab_size_; }
  std::string_view kind() const override { return "sentencepiece"; }

 private:
  bool is_plain(int id) const {
    return !processor_.IsControl(id) && !processor_.IsUnknown(id) && !processor_.IsByte(id) &&
           !processor_.IsUnused(id);
  }

  void check_id(TokenId id) const {
    if (id < 0 || static_cast<size_t>(id) >= vocab_size_ || (id >= n_pieces_ && !added_.find_by_id(id))) {
      throw Error("cannot decode token id " + std::to_string(id) + ": it is not in the vocabulary of " +
                  source_ + " (" + std::to_string(vocab_size_) + " ids)");
    }
  }

  // Added tokens of a tokenizer.json beside the model are split out of the text before SentencePiece
  // runs, except those the model already has as control/unknown pieces (<s>, </s>, <unk>): the
  // library never produces those from text, and neither does ferry ("<s>" in a prompt stays text).
  void read_added_tokens(const std::filesystem::path& path) {
    const std::string where = path.string();
    nlohmann::json root;
    try {
      root = nlohmann::json::parse(read_text_file(path));
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for too large a number
      throw Error(where + ": not valid JSON: " + e.what());
    }
    if (!root.is_object()) throw Error(where + ": expected a JSON object");
    std::vector<AddedToken> kept;
    for (AddedToken& t :
         parse_added_tokens(root.value("added_tokens", nlohmann::json()), where + ": added_tokens")) {
      const int model_id = processor_.PieceToId(t.content);
      const bool model_has_it = model_id >= 0 && processor_.IdToPiece(model_id) == t.content;
      if (model_has_it && (processor_.IsControl(model_id) || processor_.IsUnknown(model_id))) continue;
      if (model_has_it && model_id != t.id) {
        throw Error(where + ": added token \"" + t.content + "\" has id " + std::to_string(t.id) +
                    " but tokenizer.model gives it id " + std::to_string(model_id));
      }
      vocab_size_ = std::max(vocab_size_, static_cast<size_t>(t.id) + 1);
      t.normalized = false;  // SentencePiece normalizes inside Encode(); match tokens as written
      kept.push_back(std::move(t));
    }
    added_ = AddedVocabulary(std::move(kept), nullptr);
  }

  std::string source_;
  sentencepiece::SentencePieceProcessor processor_;
  int n_pieces_ = 0;
  size_t vocab_size_ = 0;
  AddedVocabulary added_;
  std::string unk_surface_;
  bool strips_dummy_prefix_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& model_file,
                                                        const std::filesystem::path& tokenizer_json) {
  return std::make_unique<SentencePieceTokenizer>(model_file, tokenizer_json);
}

}  // namespace ferry
