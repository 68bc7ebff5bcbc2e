#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>

#include "ferry/error.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/utf8.h"

namespace ferry {
namespace {

// Backtracking limits keep a pathological pattern from a tokenizer file from hanging a run.
constexpr uint32_t kMatchLimit = 50'000'000;
constexpr uint32_t kDepthLimit = 100'000;

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

// Match data, match context and JIT stack are per thread: encode() may run on several threads at once.
struct ThreadMatchState {
  pcre2_match_data* match_data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);

  ThreadMatchState() {
    FERRY_ASSERT(match_data && context);
    pcre2_set_match_limit(context, kMatchLimit);
    pcre2_set_depth_limit(context, kDepthLimit);
    if (jit_stack) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~ThreadMatchState() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(match_data);
  }
};

ThreadMatchState& thread_state() {
  thread_local ThreadMatchState state;
  return state;
}

}  // namespace

Regex::Regex(std::string_view pattern, bool literal, std::string where) : where_(std::move(where)) {
  if (!utf8::is_valid(pattern)) throw Error(where_ + ": the pattern is not valid UTF-8");
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);  // LITERAL rejects UCP
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                                   &error_code, &error_offset, nullptr);
  if (!code) {
    throw Error(where_ + ": the regular expression does not compile (" + pcre2_message(error_code) +
                " at offset " + std::to_string(error_offset) + "): " + std::string(pattern));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  code_ = code;
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const {
  auto* code = static_cast<pcre2_code*>(code_);
  ThreadMatchState& state = thread_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t search_from = 0;
  size_t last_match_end = std::string_view::npos;
  while (search_from <= text.size()) {
    const int rc = pcre2_match(code, subject, text.size(), search_from, PCRE2_NO_UTF_CHECK, state.match_data,
                               state.context);
    if (rc == PCRE2_ERROR_NOMATCH) return;
    if (rc < 0) {
      throw Error(where_ + ": matching the regular expression failed (" + pcre2_message(rc) +
                  ") on a text of " + std::to_string(text.size()) + " bytes");
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.match_data);
    const size_t start = ovector[0], end = ovector[1];
    if (start == end && end == last_match_end) {
      // Skip the empty match and move on by one character.
      if (end >= text.size()) return;
      search_from = end + utf8::char_length(text.substr(end));
      continue;
    }
    matches.emplace_back(start, end);
    last_match_end = end;
    if (start == end) {
      if (end >= text.size()) return;
      search_from = end + utf8::char_length(text.substr(end));
    } else {
      search_from = end;
    }
  }
}

std::unique_ptr<Regex> regex_from_pattern_field(const nlohmann::json& pattern, const std::string& where) {
  using namespace json_fields;
  require_object(pattern, where);
  if (const json* literal = find(pattern, "String")) {
    if (!literal->is_string()) fail(where + ".String", "expected a string, found " + type_name(*literal));
    return std::make_unique<Regex>(literal->get<std::string>(), /*literal=*/true, where);
  }
  if (const json* regex = find(pattern, "Regex")) {
    if (!regex->is_string()) fail(where + ".Regex", "expected a string, found " + type_name(*regex));
    return std::make_unique<Regex>(regex->get<std::string>(), /*literal=*/false, where);
  }
  fail(where, "expected {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace ferry
