// Trace: every task on every resource (device compute, H2D, D2H, CPU attention) with its start and
// end, kind, layer and micro-batch, and the metrics derived from it. Storage is reserved up front
// and each resource is written by one thread only, so recording allocates nothing and takes no lock.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ferry/device.h"

namespace ferry {

struct TraceEvent {
  TaskTag tag;
  double start_us = 0;  // since the trace's origin
  double end_us = 0;
  uint64_t bytes = 0;   // copies
};

class Trace {
 public:
  explicit Trace(size_t events_per_resource = 1 << 16);
  // Sets the time origin and clears the events.
  void restart();
  double now_us() const;
  void add(StreamKind resource, TaskTag tag, double start_us, double end_us, uint64_t bytes);

  const std::vector<TraceEvent>& events(StreamKind resource) const { return events_[static_cast<int>(resource)]; }
  size_t dropped() const { return dropped_.load(); }

 private:
  std::chrono::steady_clock::time_point origin_;
  std::array<std::vector<TraceEvent>, kStreamCount> events_;
  std::atomic<size_t> dropped_{0};
};

// A label for each resource lane ("device compute", "H2D", "D2H", "CPU attention").
const char* resource_label(StreamKind s);

struct TraceMetrics {
  double wall_seconds = 0;                          // first start to last end over all resources
  std::array<double, kStreamCount> busy_seconds{};  // union of task intervals per resource
  std::array<uint64_t, kStreamCount> bytes{};       // bytes moved per link (H2D, D2H)
  // Busiest resource's busy time / wall time: 1 when the bottleneck never idles.
  double overlap_efficiency = 0;
  StreamKind busiest = StreamKind::Compute;
};
TraceMetrics trace_metrics(const Trace& trace);

// Chrome / Perfetto trace JSON ("traceEvents", one thread per resource, complete events "X").
void write_chrome_trace(const Trace& trace, const std::filesystem::path& path);
// An SVG picture of the same trace: one lane per resource, tasks coloured by kind, labelled
// "L<layer>.<micro-batch>" where they are wide enough, a time axis and a legend.
void write_timeline_svg(const Trace& trace, const std::filesystem::path& path, const std::string& title = "");

}  // namespace ferry
