// The trace as an SVG picture: one lane per resource, tasks coloured by kind, layer/micro-batch labels.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "ferry/error.h"
#include "ferry/exec/trace.h"

namespace ferry {

namespace {

constexpr double kMinTaskPx = 1.5;

const char* kind_colour(TaskKind k) {
  static const char* const kColours[kTaskKindCount] = {
      "#9e9e9e",  // embed
      "#42a5f5",  // pre-attention
      "#ef5350",  // attention
      "#1565c0",  // post-attention
      "#7e57c2",  // experts
      "#78909c",  // lm-head
      "#26a69a",  // prefill
      "#ffca28",  // load-hidden
      "#ff7043",  // offload-qkv
      "#66bb6a",  // expert-page
      "#8d6e63",  // logits
      "#bdbdbd",  // upload
      "#5d4037",  // ssd-read
  };
  return kColours[static_cast<int>(k)];
}

}  // namespace

void write_timeline_svg(const Trace& trace, const std::filesystem::path& path, const std::string& title) {
  double t0 = 1e300, t1 = -1e300;
  bool used[kTaskKindCount] = {};
  for (int s = 0; s < kStreamCount; ++s)
    for (const TraceEvent& e : trace.events(static_cast<StreamKind>(s))) {
      t0 = std::min(t0, e.start_us);
      t1 = std::max(t1, e.end_us);
      used[static_cast<int>(e.tag.kind)] = true;
    }
  if (t1 <= t0) t0 = 0, t1 = 1;
  const TraceMetrics m = trace_metrics(trace);
  const int left = 130, right = 20, top = 50, lane_h = 44, lane_gap = 10, width = 1400;
  const int plot_w = width - left - right;
  const int axis_y = top + kStreamCount * (lane_h + lane_gap);
  const int height = axis_y + 90;
  const double scale = plot_w / (t1 - t0);

  std::ofstream out(path);
  if (!out) throw Error("cannot write timeline file " + path.string());
  char buf[512];
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  std::snprintf(buf, sizeof buf, "%s  (wall %.1f ms, overlap efficiency %.2f, busiest: %s)", title.c_str(),
                m.wall_seconds * 1e3, m.overlap_efficiency, resource_label(m.busiest));
  out << "<text x=\"" << left << "\" y=\"22\" font-size=\"14\">" << buf << "</text>\n";
  for (int s = 0; s < kStreamCount; ++s) {
    const int y = top + s * (lane_h + lane_gap);
    const double busy_pct = m.wall_seconds > 0 ? 100.0 * m.busy_seconds[s] / m.wall_seconds : 0;
    out << "<rect x=\"" << left << "\" y=\"" << y << "\" width=\"" << plot_w << "\" height=\"" << lane_h
        << "\" fill=\"#f5f5f5\"/>\n";
    std::snprintf(buf, sizeof buf, "<text x=\"6\" y=\"%d\">%s</text><text x=\"6\" y=\"%d\" fill=\"#666\">busy %.0f%%</text>\n",
                  y + lane_h / 2, resource_label(static_cast<StreamKind>(s)), y + lane_h / 2 + 14, busy_pct);
    out << buf;
    for (const TraceEvent& e : trace.events(static_cast<StreamKind>(s))) {
      const double x = left + (e.start_us - t0) * scale;
      // Short tasks (a tiny model's kernels last microseconds) are drawn kMinTaskPx wide, without the
      // separating stroke, so they stay visible beside the copies; the tooltip has the exact times.
      const double w_true = (e.end_us - e.start_us) * scale, w = std::max(kMinTaskPx, w_true);
      std::snprintf(buf, sizeof buf,
                    "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\" stroke=\"white\" "
                    "stroke-width=\"%s\"><title>%s L%d.%d %.0f-%.0f us</title></rect>\n",
                    x, y + 2, w, lane_h - 4, kind_colour(e.tag.kind), w_true < 3 ? "0" : "0.3",
                    task_kind_name(e.tag.kind), e.tag.layer, e.tag.micro_batch, e.start_us - t0, e.end_us - t0);
      out << buf;
      if (w > 26 && e.tag.layer >= 0) {  // label only where it fits
        std::snprintf(buf, sizeof buf, "<text x=\"%.2f\" y=\"%d\" font-size=\"9\" fill=\"black\">L%d.%d</text>\n",
                      x + 2, y + lane_h / 2 + 3, e.tag.layer, std::max<int>(e.tag.micro_batch, 0));
        out << buf;
      }
    }
  }
  // time axis: ~10 ticks
  const double span_ms = (t1 - t0) * 1e-3;
  const double raw_step = std::max(span_ms / 10, 1e-6);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw_step)));
  const double ratio = raw_step / magnitude;
  const double step = magnitude * (ratio <= 1 ? 1 : ratio <= 2 ? 2 : ratio <= 5 ? 5 : 10);  // 1-2-5 ticks
  out << "<line x1=\"" << left << "\" y1=\"" << axis_y << "\" x2=\"" << left + plot_w << "\" y2=\"" << axis_y
      << "\" stroke=\"black\"/>\n";
  for (double t = 0; t <= span_ms + 1e-9; t += step) {
    const double x = left + t * 1e3 * scale;
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\"/><text x=\"%.1f\" y=\"%d\" "
                  "text-anchor=\"middle\">%g ms</text>\n",
                  x, axis_y, x, axis_y + 5, x, axis_y + 18, t);
    out << buf;
  }
  int lx = left;
  for (int k = 0; k < kTaskKindCount; ++k) {
    if (!used[k]) continue;
    std::snprintf(buf, sizeof buf,
                  "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                  lx, axis_y + 40, kind_colour(static_cast<TaskKind>(k)), lx + 16, axis_y + 50,
                  task_kind_name(static_cast<TaskKind>(k)));
    out << buf;
    lx += 120;
  }
  out << "</svg>\n";
  if (!out) throw Error("error writing timeline file " + path.string());
}

}  // namespace ferry
