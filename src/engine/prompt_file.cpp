#include "ferry/prompt_file.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "ferry/error.h"

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
      r.text = unescape_text_line(l);
    } else {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(l);
      } catch (const nlohmann::json::parse_error& e) {
        throw Error(where + ": not valid JSON (" + e.what() + "); each line must be one JSON object");
      }
      if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string())
        throw Error(where + ": expected an object with a string \"prompt\" field");
      r.text = j["prompt"].get<std::string>();
      if (j.contains("id")) r.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
      if (j.contains("max_tokens")) {
        if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() < 1)
          throw Error(where + ": \"max_tokens\" must be a positive integer");
        r.max_tokens = j["max_tokens"].get<int>();
      }
    }
    out.push_back(std::move(r));
  }
  if (out.empty()) throw Error("prompt file " + path.string() + " holds no prompts");
  return out;
}

}  // namespace ferry
