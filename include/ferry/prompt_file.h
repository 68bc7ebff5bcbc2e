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
  std::optional<int> max_tokens;   // per-prompt override (JSONL)
};

// Reads the file; JSONL when the extension is .jsonl or the first non-blank line starts with '{'.
// Throws ferry::Error "FILE:LINE: what is wrong" for malformed lines.
std::vector<PromptRecord> read_prompt_file(const std::filesystem::path& path);

}  // namespace ferry
