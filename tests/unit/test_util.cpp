#include "test_util.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace ferry::test {

std::vector<std::string> oracle_fixtures() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir() / "oracles", ec))
    if (std::filesystem::exists(entry.path() / "reference.safetensors")) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

static std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CommandResult run_ferry(const std::string& args) {
  char tmpl[] = "/tmp/ferry-cli-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (!dir) throw std::runtime_error("mkdtemp failed");
  const std::filesystem::path d(dir);
  const std::string cmd = std::string("'") + FERRY_BINARY + "' " + args + " >'" + (d / "out").string() + "' 2>'" +
                          (d / "err").string() + "' </dev/null";
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(d / "out");
  r.err = slurp(d / "err");
  std::filesystem::remove_all(d);
  return r;
}

}  // namespace ferry::test
