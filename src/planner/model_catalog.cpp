#include "ferry/planner/model_catalog.h"

#include <algorithm>
#include <cstdlib>

#include "ferry/error.h"

namespace ferry::planner {

std::filesystem::path model_configs_dir() {
  if (const char* env = std::getenv("FERRY_MODELS_DIR"); env && *env) return env;
  return std::filesystem::path(FERRY_SOURCE_DIR) / "models" / "configs";
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(model_configs_dir(), ec))
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

ResolvedModel resolve_model(const std::string& name_or_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path path(name_or_path);
  if (fs::exists(path, ec)) {
    ResolvedModel m;
    fs::path dir = fs::is_directory(path, ec) ? path : path.parent_path();
    std::string dir_name = fs::absolute(dir, ec).lexically_normal().filename().string();
    m.name = dir_name.empty() ? path.stem().string() : dir_name;
    m.config = load_model_config(path);
    return m;
  }
  fs::path spec = model_configs_dir() / (name_or_path + ".json");
  if (fs::is_regular_file(spec, ec)) return {name_or_path, load_model_config(spec)};
  std::string list;
  for (const auto& n : model_names()) list += (list.empty() ? "" : ", ") + n;
  throw Error("unknown model '" + name_or_path + "': not a file or directory, and not one of the specs in " +
              model_configs_dir().string() + " (" + list + ")");
}

}  // namespace ferry::planner
