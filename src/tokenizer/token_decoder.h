// tokenizer.json "decoder": how token strings become text (ByteLevel, Metaspace, ByteFallback, Fuse,
// Strip, Replace, Sequence). Applied one token at a time so that text can be streamed; the few
// effects that span tokens (Strip after Fuse, Metaspace's first token) are carried in DecodeState.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ferry/tokenizer.h"

namespace ferry {

class Regex;

class TokenDecoder {
 public:
  // Null json: no decoder (tokens are joined with spaces, as tokenizers does).
  TokenDecoder(const nlohmann::json& j, const std::string& where);
  ~TokenDecoder();

  // Appends the bytes of one token string.
  void decode_token(std::string_view token, DecodeState& state, std::string& out) const;
  // Byte-fallback decoders replace each byte of a broken character; byte-level ones, each maximal
  // ill-formed subpart (tokenizers uses String::from_utf8_lossy there).
  Utf8Repair utf8_repair() const {
    return has_byte_fallback_ ? Utf8Repair::kPerByte : Utf8Repair::kMaximalSubpart;
  }

 private:
  enum class Kind { kByteLevel, kByteFallback, kFuse, kStrip, kReplace, kMetaspace };
  struct Step {
    Kind kind;
    std::string content;  // Strip: character to strip; Replace: replacement; Metaspace: replacement char
    int strip_start = 0, strip_stop = 0;
    bool metaspace_prepends = true;
    std::shared_ptr<Regex> pattern;  // Replace
  };
  void parse(const nlohmann::json& j, const std::string& where, int depth);

  std::vector<Step> steps_;
  bool join_with_spaces_ = false;
  bool has_byte_fallback_ = false;
};

}  // namespace ferry
