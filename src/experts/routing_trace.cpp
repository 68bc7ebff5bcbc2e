#include "ferry/experts/routing_trace.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ferry/error.h"

namespace ferry::experts {

namespace {
[[noreturn]] void write_failed(const std::filesystem::path& p, int err) {
  throw Error("cannot write the routing trace " + p.string() + ": " + std::strerror(err) +
              " (check the disk space and the path given to --record-routing)");
}
}  // namespace

RoutingTraceWriter::RoutingTraceWriter(const std::filesystem::path& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "w");
  if (!f_) write_failed(path_, errno);
}

RoutingTraceWriter::~RoutingTraceWriter() {
  if (f_) std::fclose(f_);  // an unreported close: close() is where errors surface
}

void RoutingTraceWriter::layer(int layer, std::span<const int> offsets) {
  line_ += first_layer_ ? "[" : ",[";
  line_ += std::to_string(layer) + ",[";
  bool first = true;
  for (size_t e = 0; e + 1 < offsets.size(); ++e) {
    const int n = offsets[e + 1] - offsets[e];
    if (n <= 0) continue;
    line_ += first ? "[" : ",[";
    line_ += std::to_string(e) + "," + std::to_string(n) + "]";
    first = false;
  }
  line_ += "]]";
  first_layer_ = false;
}

void RoutingTraceWriter::end_forward(int tokens) {
  const std::string out = "{\"tokens\":" + std::to_string(tokens) + ",\"routing\":[" + line_ + "]}\n";
  line_.clear();
  first_layer_ = true;
  if (!f_) write_failed(path_, EBADF);
  if (std::fwrite(out.data(), 1, out.size(), f_) != out.size()) write_failed(path_, errno);
}

void RoutingTraceWriter::close() {
  if (!f_) return;
  std::FILE* f = f_;
  f_ = nullptr;
  const bool flushed = std::fflush(f) == 0 && !std::ferror(f);
  const int err = errno;
  if (std::fclose(f) != 0 || !flushed) write_failed(path_, flushed ? errno : err);
}

std::vector<ForwardRouting> read_routing_trace(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open the routing trace " + path.string() + ": " + std::strerror(errno));
  std::vector<ForwardRouting> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    const auto bad = [&](const std::string& why) {
      return Error(path.string() + ":" + std::to_string(n) + ": " + why +
                   " (a routing trace line is {\"tokens\": T, \"routing\": [[layer, [[expert, n], ...]], ...]})");
    };
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      ForwardRouting f;
      f.tokens = j.at("tokens").get<int>();
      for (const auto& l : j.at("routing")) {
        LayerRouting r;
        r.layer = l.at(0).get<int>();
        for (const auto& e : l.at(1)) {
          const int expert = e.at(0).get<int>(), count = e.at(1).get<int>();
          if (expert < 0 || count <= 0 || r.layer < 0) throw bad("negative layer or expert, or a count below 1");
          r.experts.emplace_back(expert, count);
        }
        f.layers.push_back(std::move(r));
      }
      out.push_back(std::move(f));
    } catch (const nlohmann::json::exception& e) {
      throw bad(e.what());
    }
  }
  return out;
}

}  // namespace ferry::experts
