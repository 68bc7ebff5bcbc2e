#include "tokenizer/token_decoder.h"

#include <algorithm>

#include "tokenizer/byte_level.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"

namespace ferry {
namespace {

using namespace json_fields;

constexpr int kMaxNesting = 16;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xNN>" -> the byte, else -1.
int byte_token_value(std::string_view t) {
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
  const int hi = hex_value(t[3]), lo = hex_value(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Removes up to n leading and trailing copies of `c` (one UTF-8 character).
void strip_chars(std::string& s, std::string_view c, int n_start, int n_stop) {
  if (c.empty()) return;
  size_t begin = 0, end = s.size();
  for (int i = 0; i < n_start && end - begin >= c.size() && s.compare(begin, c.size(), c) == 0; ++i)
    begin += c.size();
  for (int i = 0; i < n_stop && end - begin >= c.size() && s.compare(end - c.size(), c.size(), c) == 0; ++i)
    end -= c.size();
  s = s.substr(begin, end - begin);
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  if (pos == 0) return;
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

}  // namespace

TokenDecoder::TokenDecoder(const json& j, const std::string& where) {
  if (j.is_null()) {
    join_with_spaces_ = true;
    return;
  }
  parse(j, where, 0);
}

TokenDecoder::~TokenDecoder() = default;

void TokenDecoder::parse(const json& j, const std::string& where, int depth) {
  if (depth > kMaxNesting) fail(where, "decoders nested too deeply");
  require_object(j, where);
  const std::string type = get_string(j, "type", where);
  Step step{};
  if (type == "Sequence") {
    const json& list = require(j, "decoders", where);
    if (!list.is_array()) fail(where + ".decoders", "expected an array, found " + type_name(list));
    for (size_t i = 0; i < list.size(); ++i)
      parse(list[i], where + ".decoders[" + std::to_string(i) + "]", depth + 1);
    return;
  } else if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
  } else if (type == "ByteFallback") {
    step.kind = Kind::kByteFallback;
    has_byte_fallback_ = true;
  } else if (type == "Fuse") {
    step.kind = Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Kind::kStrip;
    step.content = get_string(j, "content", where);
    step.strip_start = static_cast<int>(std::clamp<int64_t>(get_int_or(j, "start", 0, where), 0, 1 << 20));
    step.strip_stop = static_cast<int>(std::clamp<int64_t>(get_int_or(j, "stop", 0, where), 0, 1 << 20));
  } else if (type == "Replace") {
    step.kind = Kind::kReplace;
    step.pattern = regex_from_pattern_field(require(j, "pattern", where), where + ".pattern");
    step.content = get_string(j, "content", where);
  } else if (type == "Metaspace") {
    step.kind = Kind::kMetaspace;
    step.content = get_string_or(j, "replacement", "\xE2\x96\x81", where);
    step.metaspace_prepends = get_bool_or(j, "add_prefix_space", true, where);
    if (find(j, "prepend_scheme"))
      step.metaspace_prepends = get_string(j, "prepend_scheme", where) != "never";
  } else {
    fail(where,
         "decoder type \"" + type +
             "\" is not supported (supported: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, "
             "Sequence)");
  }
  steps_.push_back(std::move(step));
}

void TokenDecoder::decode_token(std::string_view token, DecodeState& state, std::string& out) const {
  const bool first_token = state.at_text_start;
  state.at_text_start = false;
  if (join_with_spaces_) {
    if (!first_token) out.push_back(' ');
    out.append(token);
    return;
  }
  std::string text(token);
  bool fused = false;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kByteLevel: {
        std::string bytes;
        if (byte_level::append_decoded(bytes, text)) text = std::move(bytes);
        break;
      }
      case Kind::kByteFallback:
        if (const int b = byte_token_value(text); b >= 0) text.assign(1, static_cast<char>(b));
        break;
      case Kind::kFuse:
        fused = true;
        break;
      case Kind::kStrip:
        if (!fused) {
          strip_chars(text, step.content, step.strip_start, step.strip_stop);
        } else {
          // After Fuse the strip applies to the start of the whole text, i.e. across the first tokens.
          // (A strip at the end of the whole text cannot be streamed and is not applied.)
          if (state.leading_strip_left < 0) state.leading_strip_left = step.strip_start;
          const size_t before = text.size();
          strip_chars(text, step.content, state.leading_strip_left, 0);
          state.leading_strip_left -=
              static_cast<int>((before - text.size()) / std::max<size_t>(1, step.content.size()));
          if (!text.empty()) state.leading_strip_left = 0;
        }
        break;
      case Kind::kReplace: {
        std::vector<std::pair<size_t, size_t>> matches;
        step.pattern->find_all(text, matches);
        if (matches.empty()) break;
        std::string replaced;
        size_t pos = 0;
        for (auto [start, end] : matches) {
          replaced.append(text, pos, start - pos);
          replaced.append(step.content);
          pos = end;
        }
        replaced.append(text, pos, std::string::npos);
        text = std::move(replaced);
        break;
      }
      case Kind::kMetaspace:
        // tokenizers drops every replacement character of the first token and turns the others into spaces.
        replace_all(text, step.content, first_token && step.metaspace_prepends ? "" : " ");
        break;
    }
  }
  out.append(text);
}

}  // namespace ferry
