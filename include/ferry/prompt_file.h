// Prompt files for offline jobs: plain text (one prompt per line; blank lines skipped; "\n" and
// "\\" escapes allowed) or JSON Lines ({"prompt": "...", "id": "...", "max_tokens": N} per line).
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ferry {

struct PromptRecord {
  std::string id;                  // "id" field, else the line number
  std::string text;
  int line = 0;                    // 1-based line in the file
  std::optional<int> max_tokens;   // per-prompt override (JSONL), >= 1
};

// Reads the file; JSONL when the extension is .jsonl or the first non-blank line starts with '{'.
// Throws ferry::Error "FILE:LINE: what is wrong" for malformed lines: text that is not UTF-8, a JSONL
// line that is not an object with a string "prompt", a "max_tokens" that is not an integer in
// [1, 2^31 - 1] (named as the field).
std::vector<PromptRecord> read_prompt_file(const std::filesystem::path& path);

}  // namespace ferry
