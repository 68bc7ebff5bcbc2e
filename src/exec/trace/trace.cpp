#include "ferry/exec/trace.h"

#include <algorithm>

namespace ferry {

const char* resource_label(StreamKind s) {
  switch (s) {
    case StreamKind::Compute: return "device compute";
    case StreamKind::H2D: return "H2D link";
    case StreamKind::D2H: return "D2H link";
    case StreamKind::Host: return "CPU attention";
  }
  return "?";
}

Trace::Trace(size_t events_per_resource) {
  for (auto& v : events_) v.reserve(events_per_resource);
  restart();
}

void Trace::restart() {
  for (auto& v : events_) v.clear();
  dropped_ = 0;
  origin_ = std::chrono::steady_clock::now();
}

double Trace::now_us() const {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - origin_).count();
}

void Trace::add(StreamKind resource, TaskTag tag, double start_us, double end_us, uint64_t bytes) {
  auto& v = events_[static_cast<int>(resource)];
  if (v.size() == v.capacity()) {  // never reallocate on the hot path
    dropped_.fetch_add(1);
    return;
  }
  v.push_back(TraceEvent{tag, start_us, end_us, bytes});
}

TraceMetrics trace_metrics(const Trace& trace) {
  TraceMetrics m;
  double first = 1e300, last = -1e300;
  for (int s = 0; s < kStreamCount; ++s) {
    std::vector<std::pair<double, double>> spans;
    for (const TraceEvent& e : trace.events(static_cast<StreamKind>(s))) {
      spans.emplace_back(e.start_us, e.end_us);
      m.bytes[s] += e.bytes;
      first = std::min(first, e.start_us);
      last = std::max(last, e.end_us);
    }
    std::sort(spans.begin(), spans.end());
    double busy = 0, cur_start = 0, cur_end = -1e300;
    for (auto [a, b] : spans) {  // union of intervals
      if (a > cur_end) {
        if (cur_end > cur_start) busy += cur_end - cur_start;
        cur_start = a;
        cur_end = b;
      } else {
        cur_end = std::max(cur_end, b);
      }
    }
    if (cur_end > cur_start) busy += cur_end - cur_start;
    m.busy_seconds[s] = busy * 1e-6;
  }
  if (last > first) m.wall_seconds = (last - first) * 1e-6;
  for (int s = 0; s < kStreamCount; ++s)
    if (m.busy_seconds[s] > m.busy_seconds[static_cast<int>(m.busiest)]) m.busiest = static_cast<StreamKind>(s);
  if (m.wall_seconds > 0) m.overlap_efficiency = m.busy_seconds[static_cast<int>(m.busiest)] / m.wall_seconds;
  return m;
}

}  // namespace ferry
