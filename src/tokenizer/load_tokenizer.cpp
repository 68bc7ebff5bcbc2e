// Chooses the tokenizer implementation from the files in a model directory and applies the BOS/EOS
// settings of tokenizer_config.json / config.json.
#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/tokenizer.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/loaders.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using namespace json_fields;

std::optional<json> read_json_if_present(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  try {
    return json::parse(read_text_file(path));
  } catch (const json::exception& e) {  // parse_error, or out_of_range for too large a number
    throw Error(path.string() + ": not valid JSON: " + e.what());
  }
}

// "bos_token": "<s>" or {"content": "<s>", ...}; nullopt when absent or null.
std::optional<std::string> token_content(const json& config, const char* key, const std::string& where) {
  const json* j = find(config, key);
  if (!j) return std::nullopt;
  if (j->is_string()) return j->get<std::string>();
  if (j->is_object()) {
    const json* content = find(*j, "content");
    if (content && content->is_string()) return content->get<std::string>();
  }
  fail(where + "." + key,
       "expected a string or an object with \"content\", found " + j->dump().substr(0, 80));
}

// "eos_token_id": 2 or [2, 32000]; empty when absent or null.
std::vector<TokenId> token_ids(const json& config, const char* key, const std::string& where) {
  std::vector<TokenId> ids;
  const json* j = find(config, key);
  if (!j) return ids;
  auto add = [&](const json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      fail(where + "." + key, "expected a token id or a list of token ids, found " + j->dump().substr(0, 80));
    ids.push_back(static_cast<TokenId>(v.get<int64_t>()));
  };
  if (j->is_array()) {
    for (const json& v : *j) add(v);
  } else {
    add(*j);
  }
  return ids;
}

}  // namespace

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open the file");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error(path.string() + ": cannot read the file");
  return std::move(buffer).str();
}

SpecialTokenIds read_special_token_config(const Tokenizer& tokenizer, const fs::path& model_dir,
                                          SpecialTokenIds special) {
  const fs::path tokenizer_config_path = model_dir / "tokenizer_config.json";
  const fs::path config_path = model_dir / "config.json";
  const std::optional<json> tokenizer_config = read_json_if_present(tokenizer_config_path);
  const std::optional<json> config = read_json_if_present(config_path);

  auto check_id = [&](TokenId id, const std::string& where) {
    if (static_cast<size_t>(id) >= tokenizer.vocab_size()) {
      throw Error(where + ": token id " + std::to_string(id) + " is outside the tokenizer's vocabulary (" +
                  std::to_string(tokenizer.vocab_size()) + " ids)");
    }
  };
  auto resolve = [&](const std::string& content, const std::string& where) {
    auto id = tokenizer.piece_to_id(content);
    if (!id) throw Error(where + ": \"" + content + "\" is not a token of this tokenizer");
    return *id;
  };

  std::optional<TokenId> bos;
  std::vector<TokenId> eos;
  if (tokenizer_config) {
    const std::string where = tokenizer_config_path.string();
    require_object(*tokenizer_config, where);
    if (auto content = token_content(*tokenizer_config, "bos_token", where))
      bos = resolve(*content, where + ".bos_token");
    if (auto content = token_content(*tokenizer_config, "eos_token", where))
      eos.push_back(resolve(*content, where + ".eos_token"));
    if (auto add = get_optional_bool(*tokenizer_config, "add_bos_token", where)) special.add_bos = *add;
    if (auto add = get_optional_bool(*tokenizer_config, "add_eos_token", where)) special.add_eos = *add;
  }
  if (config) {
    const std::string where = config_path.string();
    require_object(*config, where);
    if (!bos) {
      const std::vector<TokenId> ids = token_ids(*config, "bos_token_id", where);
      if (!ids.empty()) {
        check_id(ids.front(), where + ".bos_token_id");
        bos = ids.front();
      }
    }
    // Every EOS id the model config lists ends generation too.
    for (TokenId id : token_ids(*config, "eos_token_id", where)) {
      check_id(id, where + ".eos_token_id");
      if (std::find(eos.begin(), eos.end(), id) == eos.end()) eos.push_back(id);
    }
  }
  if (bos) special.bos = bos;
  if (!eos.empty()) special.eos = eos;
  if (special.bos) special.special.push_back(*special.bos);
  special.special.insert(special.special.end(), special.eos.begin(), special.eos.end());
  return special;
}

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& model_dir) {
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) {
    throw Error(model_dir.string() +
                ": not a directory (expected a model directory with tokenizer.model or "
                "tokenizer.json)");
  }
  const fs::path spm_path = model_dir / "tokenizer.model";
  const fs::path json_path = model_dir / "tokenizer.json";
  const bool has_spm = fs::is_regular_file(spm_path, ec);
  const bool has_json = fs::is_regular_file(json_path, ec);
  std::unique_ptr<Tokenizer> tokenizer;
  if (has_spm) {
    tokenizer = load_sentencepiece_tokenizer(spm_path, has_json ? json_path : fs::path());
  } else if (has_json) {
    tokenizer = load_hf_tokenizer_from_json_string(read_text_file(json_path), json_path.string());
  } else {
    throw Error(model_dir.string() +
                ": no tokenizer found (expected tokenizer.model or tokenizer.json in this "
                "directory)");
  }
  tokenizer->set_special_tokens(
      read_special_token_config(*tokenizer, model_dir, tokenizer->special_tokens()));
  return tokenizer;
}

}  // namespace ferry
