// tokenizer.json "normalizer": rewrites text before pre-tokenization (Unicode normal forms, Replace,
// Prepend, Lowercase, Strip, and Sequences of these).
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace ferry {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

// Null json -> nullptr (no normalizer). Throws ferry::Error naming `where` for unknown or malformed ones.
std::unique_ptr<Normalizer> parse_normalizer(const nlohmann::json& j, const std::string& where,
                                             int depth = 0);

}  // namespace ferry
