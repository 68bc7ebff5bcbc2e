// libFuzzer target: any byte string given as a prompt file (`ferry run --prompts`, `ferry generate
// --prompts`) either reads into records that keep their documented invariants (one per non-blank line, in
// order, UTF-8 text, a unique non-empty id, max_tokens >= 1), or is a ferry::Error --
// never a crash, a hang, undefined behaviour or another exception. The first byte picks the file name
// (low bit set: prompts.jsonl, read as JSONL whatever the lines hold; clear: prompts.txt, JSONL only
// when the first non-blank line starts with '{'); the rest is the file's content.
//
// read_prompt_file reads a path, so each input is written to a file in a private temporary directory (on
// /dev/shm when it exists).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "ferry/error.h"
#include "ferry/prompt_file.h"
#include "scratch_file.h"
#include "tokenizer/utf8.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::filesystem::path path =
      ferry::fuzz::scratch().write((data[0] & 1) ? "prompts.jsonl" : "prompts.txt", data + 1, size - 1);
  std::vector<ferry::PromptRecord> records;
  try {
    records = ferry::read_prompt_file(path);
  } catch (const ferry::Error&) {
    return 0;
  }
  check(!records.empty());
  std::set<std::string> ids;  // each result is found by its id (--resume): ids are unique
  int previous_line = 0;
  for (const ferry::PromptRecord& r : records) {
    check(r.line > previous_line);  // one record per line, in file order
    previous_line = r.line;
    check(!r.id.empty() && ids.insert(r.id).second);
    check(ferry::utf8::is_valid(r.text));  // what the tokenizer accepts
    check(!r.max_tokens || *r.max_tokens >= 1);
  }
  return 0;
}
