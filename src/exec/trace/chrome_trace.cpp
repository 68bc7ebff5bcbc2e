// Chrome / Perfetto trace JSON: one "thread" per resource, one complete event ("X") per task.
#include <fstream>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/exec/trace.h"

namespace ferry {

void write_chrome_trace(const Trace& trace, const std::filesystem::path& path) {
  nlohmann::json events = nlohmann::json::array();
  for (int s = 0; s < kStreamCount; ++s) {
    events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 1}, {"tid", s},
                      {"args", {{"name", resource_label(static_cast<StreamKind>(s))}}}});
    for (const TraceEvent& e : trace.events(static_cast<StreamKind>(s))) {
      nlohmann::json args = {{"layer", e.tag.layer}, {"micro_batch", e.tag.micro_batch}};
      if (e.bytes) args["bytes"] = e.bytes;
      std::string name = task_kind_name(e.tag.kind);
      if (e.tag.layer >= 0) name += " L" + std::to_string(e.tag.layer);
      if (e.tag.micro_batch >= 0) name += "." + std::to_string(e.tag.micro_batch);
      events.push_back({{"name", name}, {"cat", task_kind_name(e.tag.kind)}, {"ph", "X"}, {"pid", 1}, {"tid", s},
                        {"ts", e.start_us}, {"dur", e.end_us - e.start_us}, {"args", args}});
    }
  }
  std::ofstream out(path);
  if (!out) throw Error("cannot write trace file " + path.string());
  out << nlohmann::json{{"traceEvents", events}, {"displayTimeUnit", "ms"}}.dump() << '\n';
  if (!out) throw Error("error writing trace file " + path.string());
}

}  // namespace ferry
