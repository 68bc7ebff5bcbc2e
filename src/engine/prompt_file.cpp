#include "ferry/prompt_file.h"

#include <climits>
#include <cstdio>
#include <fstream>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "tokenizer/utf8.h"

namespace ferry {

namespace {

std::string unescape_text_line(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    if (c == 'n') out += '\n';
    else if (c == 't') out += '\t';
    else if (c == '\\') out += '\\';
    else {
      out += '\\';
      out += c;
    }
  }
  return out;
}

// The per-prompt token limit: an integer in [1, INT_MAX] (a larger one would wrap when narrowed).
int max_tokens_field(const nlohmann::json& v, const std::string& where) {
  const std::string what = where + ": field \"max_tokens\" must be an integer from 1 to " +
                           std::to_string(INT_MAX) + ", found " + v.dump();
  if (v.is_number_unsigned()) {
    const auto n = v.get<uint64_t>();
    if (n < 1 || n > static_cast<uint64_t>(INT_MAX)) throw Error(what);
    return static_cast<int>(n);
  }
  if (v.is_number_integer()) {
    const auto n = v.get<int64_t>();
    if (n < 1 || n > INT_MAX) throw Error(what);
    return static_cast<int>(n);
  }
  throw Error(what);
}

}  // namespace

std::vector<PromptRecord> read_prompt_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open prompt file " + path.string() + ": check the path");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  bool jsonl = path.extension() == ".jsonl";
  for (const std::string& l : lines)
    if (l.find_first_not_of(" \t") != std::string::npos) {
      jsonl = jsonl || l[l.find_first_not_of(" \t")] == '{';
      break;
    }
  std::vector<PromptRecord> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    const std::string where = path.string() + ":" + std::to_string(i + 1);
    if (l.find_first_not_of(" \t") == std::string::npos) continue;
    PromptRecord r;
    r.line = static_cast<int>(i + 1);
    r.id = std::to_string(i + 1);
    if (!jsonl) {
      if (const size_t bad = utf8::first_invalid(l); bad != l.size()) {
        char byte[8];
        std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(l[bad]));
        throw Error(where + ": not valid UTF-8 (byte " + byte + " at column " + std::to_string(bad + 1) +
                    "); prompt files must be UTF-8 text");
      }
      r.text = unescape_text_line(l);
    } else {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(l);
      } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number too large
        throw Error(where + ": not valid JSON (" + e.what() + "); each line must be one JSON object");
      }
      if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string())
        throw Error(where + ": expected an object with a string \"prompt\" field");
      r.text = j["prompt"].get<std::string>();
      if (j.contains("id")) {
        r.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
        if (r.id.empty() || r.id.find_first_not_of(" \t") == std::string::npos)
          throw Error(where + ": \"id\" is empty; give each prompt a non-empty id, or leave \"id\" out to use "
                      "the line number");
      }
      if (j.contains("max_tokens")) r.max_tokens = max_tokens_field(j["max_tokens"], where);
    }
    out.push_back(std::move(r));
  }
  if (out.empty()) throw Error("prompt file " + path.string() + " holds no prompts");
  // Results are matched to prompts by id (--resume, the results file): two prompts with one id would share a
  // result. A prompt without "id" takes its line number, so an explicit id may not equal another's line.
  std::unordered_map<std::string, int> first_line;
  for (const PromptRecord& r : out) {
    auto [it, fresh] = first_line.emplace(r.id, r.line);
    if (!fresh)
      throw Error(path.string() + ":" + std::to_string(r.line) + ": id \"" + r.id + "\" is also the id of line " +
                  std::to_string(it->second) +
                  " (a prompt without \"id\" takes its line number); ids must be unique in the file");
  }
  return out;
}

}  // namespace ferry
