// Draws the hierarchical roofline on log-log axes: operational intensity (FLOP/byte) against attainable
// FLOP/s. Hand-written SVG: no plotting dependency.
#include "ferry/planner/roofline_svg.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>

namespace ferry::planner {
namespace {

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buf[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  return buf;
}

constexpr double kWidth = 960, kHeight = 640;
constexpr double kLeft = 90, kRight = 250, kTop = 60, kBottom = 70;

class Axes {
 public:
  Axes(double x_lo, double x_hi, double y_lo, double y_hi)
      : lx0_(std::log10(x_lo)), lx1_(std::log10(x_hi)), ly0_(std::log10(y_lo)), ly1_(std::log10(y_hi)) {}
  double x(double v) const {
    return kLeft + (std::log10(v) - lx0_) / (lx1_ - lx0_) * (kWidth - kLeft - kRight);
  }
  double y(double v) const {
    return kHeight - kBottom - (std::log10(v) - ly0_) / (ly1_ - ly0_) * (kHeight - kTop - kBottom);
  }
  double x_lo() const { return std::pow(10, lx0_); }
  double x_hi() const { return std::pow(10, lx1_); }
  double y_lo() const { return std::pow(10, ly0_); }
  double y_hi() const { return std::pow(10, ly1_); }
  int x_decade_lo() const { return static_cast<int>(std::ceil(lx0_ - 1e-9)); }
  int x_decade_hi() const { return static_cast<int>(std::floor(lx1_ + 1e-9)); }
  int y_decade_lo() const { return static_cast<int>(std::ceil(ly0_ - 1e-9)); }
  int y_decade_hi() const { return static_cast<int>(std::floor(ly1_ + 1e-9)); }

 private:
  double lx0_, lx1_, ly0_, ly1_;
};

std::string flops_label(double v) {
  if (v >= 1e15) return fmt("%g PFLOP/s", v / 1e15);
  if (v >= 1e12) return fmt("%g TFLOP/s", v / 1e12);
  if (v >= 1e9) return fmt("%g GFLOP/s", v / 1e9);
  return fmt("%g MFLOP/s", v / 1e6);
}

// A roof: the bandwidth line up to the ridge, then the compute ceiling, clipped to the axes.
std::string roof_path(const Axes& a, double bandwidth, double peak, const char* color, const char* dash) {
  std::string pts;
  double x0 = a.x_lo();
  double x_ridge = peak > 0 ? peak / bandwidth : a.x_hi();
  double y0 = bandwidth * x0;
  if (y0 < a.y_lo()) {
    x0 = a.y_lo() / bandwidth;
    y0 = a.y_lo();
  }
  pts += fmt("%.1f,%.1f ", a.x(x0), a.y(y0));
  if (x_ridge < a.x_hi()) {
    pts += fmt("%.1f,%.1f ", a.x(x_ridge), a.y(peak));
    pts += fmt("%.1f,%.1f", a.x(a.x_hi()), a.y(peak));
  } else {
    double x1 = std::min(a.x_hi(), a.y_hi() / bandwidth);
    pts += fmt("%.1f,%.1f", a.x(x1), a.y(bandwidth * x1));
  }
  return fmt("<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\"%s/>\n", pts.c_str(),
             color, dash[0] ? fmt(" stroke-dasharray=\"%s\"", dash).c_str() : "");
}

}  // namespace

std::string roofline_svg(const ModelShape& m, const HardwareProfile& hw, const Policy& p) {
  HrmRoofs r = HrmRoofs::from(hw);
  const double n = static_cast<double>(p.batch_size);
  const double mu = static_cast<double>(std::min(p.micro_batch, p.batch_size));
  const Precision ep = p.dram_expert_precision;

  const double i_att = decode_attention_intensity(m, p.kv_precision);
  const double i_ffn_gpu = moe_ffn(m, mu, ep, p.group_size).intensity();
  const double i_ffn_link = moe_ffn_link_intensity(m, n, ep, p.group_size);
  const double i_ffn_cpu = moe_ffn(m, mu, ep, p.group_size).intensity();
  const double p1 = r.has_gpu ? turning_point_p1(r) : 0;
  const double p2 = r.has_gpu ? turning_point_p2(r, i_ffn_gpu) : 0;

  double peak = std::max(r.cpu.peak_flops, r.has_gpu ? r.gpu.peak_flops : 0);
  double y_hi = std::pow(10, std::ceil(std::log10(peak * 3)));
  double low_bw = r.has_gpu ? std::min(r.h2d, r.cpu.bandwidth) : r.cpu.bandwidth;
  if (r.ssd > 0) low_bw = std::min(low_bw, r.ssd);
  double y_lo = std::pow(10, std::floor(std::log10(low_bw * 0.1)));
  double x_hi = std::max({1e4, i_ffn_link * 3, p2 * 3});
  x_hi = std::pow(10, std::ceil(std::log10(x_hi)));
  Axes a(0.1, x_hi, y_lo, y_hi);

  std::string s;
  s += fmt(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
      "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"13\">\n",
      kWidth, kHeight, kWidth, kHeight);
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s +=
      fmt("<text x=\"%.0f\" y=\"26\" font-size=\"17\" font-weight=\"bold\">Hierarchical roofline: %s on "
          "%s</text>\n",
          kLeft, m.name.c_str(), hw.name.c_str());
  s +=
      fmt("<text x=\"%.0f\" y=\"46\" fill=\"#444\">decode, N = %.0f sequences, micro-batch μ = %.0f, experts "
          "%s, KV %s</text>\n",
          kLeft, n, mu, std::string(precision_name(ep)).c_str(),
          std::string(precision_name(p.kv_precision)).c_str());

  // Grid and axes.
  const double x0 = kLeft, x1 = kWidth - kRight, y0 = kTop, y1 = kHeight - kBottom;
  for (int d = a.x_decade_lo(); d <= a.x_decade_hi(); ++d) {
    double v = std::pow(10, d);
    s += fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", a.x(v), y0,
             a.x(v), y1);
    s += fmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", a.x(v), y1 + 18, v);
  }
  for (int d = a.y_decade_lo(); d <= a.y_decade_hi(); ++d) {
    double v = std::pow(10, d);
    s += fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", x0, a.y(v), x1,
             a.y(v));
    s += fmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", x0 - 6, a.y(v) + 4,
             flops_label(v).c_str());
  }
  s += fmt("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", x0,
           y0, x1 - x0, y1 - y0);
  s +=
      fmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">operational intensity (FLOP per byte "
          "read)</text>\n",
          (x0 + x1) / 2, y1 + 42);
  s += "<defs><clipPath id=\"plot\">" +
       fmt("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>", x0, y0, x1 - x0, y1 - y0) +
       "</clipPath></defs>\n<g clip-path=\"url(#plot)\">\n";

  // Roofs.
  struct Legend {
    std::string color, dash, text;
  };
  std::vector<Legend> legend;
  if (r.has_gpu) {
    s += roof_path(a, r.gpu.bandwidth, r.gpu.peak_flops, "#1f5fbf", "");
    legend.push_back(
        {"#1f5fbf", "", fmt("GPU: %.0f GB/s, %.0f TFLOP/s", r.gpu.bandwidth / 1e9, r.gpu.peak_flops / 1e12)});
  }
  s += roof_path(a, r.cpu.bandwidth, r.cpu.peak_flops, "#2a9d3a", "");
  legend.push_back(
      {"#2a9d3a", "", fmt("CPU: %.0f GB/s, %.2g TFLOP/s", r.cpu.bandwidth / 1e9, r.cpu.peak_flops / 1e12)});
  if (r.has_gpu) {
    s += roof_path(a, r.h2d, 0, "#e07b00", "8,5");
    legend.push_back({"#e07b00", "8,5", fmt("PCIe CPU->GPU: %.0f GB/s", r.h2d / 1e9)});
  }
  if (r.ssd > 0) {
    s += roof_path(a, r.ssd, 0, "#888888", "3,4");
    legend.push_back({"#888888", "3,4", fmt("SSD read: %.1f GB/s", r.ssd / 1e9)});
  }

  // Turning points.
  auto vline = [&](double x, const char* label, const char* color) {
    if (!(x > a.x_lo() && x < a.x_hi())) return;
    s +=
        fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.5\" "
            "stroke-dasharray=\"2,3\"/>\n",
            a.x(x), y0, a.x(x), y1, color);
    s += fmt("<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\" font-weight=\"bold\">%s = %.0f</text>\n", a.x(x) + 4,
             y0 + 16, color, label, x);
  };
  if (r.has_gpu) {
    vline(p1, "P1", "#7a3db8");
    vline(p2, "P2", "#b8323d");
  }
  s += "</g>\n";

  // Where the work sits.
  auto point = [&](double x, double y, const char* color, const std::string& label, double dy) {
    if (!(x > a.x_lo() && x < a.x_hi())) return;
    s += fmt("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\" stroke=\"black\"/>\n", a.x(x), a.y(y),
             color);
    s +=
        fmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" stroke=\"white\" stroke-width=\"4\" "
            "paint-order=\"stroke\">%s</text>\n",
            a.x(x) + 9, a.y(y) + dy, label.c_str());
  };
  bool att_cpu = p.attention_device == Device::Cpu || !r.has_gpu;
  double att_y = att_cpu ? r.cpu.attainable(i_att) : std::min(r.gpu.attainable(i_att), r.h2d * i_att);
  point(i_att, att_y, "#2a9d3a", fmt("attention (%s): %.1f FLOP/B", att_cpu ? "CPU" : "GPU", i_att), -8);
  if (r.has_gpu && p.ffn_device == Device::Gpu) {
    point(i_ffn_gpu, r.gpu.attainable(i_ffn_gpu), "#1f5fbf",
          fmt("FFN kernel, μ=%.0f: %.0f FLOP/B", mu, i_ffn_gpu), 16);
    double link_y = std::min(r.h2d * i_ffn_link, r.gpu.attainable(i_ffn_gpu));
    point(i_ffn_link, link_y, "#e07b00", fmt("FFN streamed, N=%.0f: %.0f FLOP/B", n, i_ffn_link), 16);
  } else {
    point(i_ffn_cpu, r.cpu.attainable(i_ffn_cpu), "#2a9d3a",
          fmt("FFN on CPU, μ=%.0f: %.0f FLOP/B", mu, i_ffn_cpu), 16);
  }

  // Legend.
  double lx = x1 + 18, ly = y0 + 10;
  for (const Legend& l : legend) {
    s += fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2.5\"%s/>\n",
             lx, ly, lx + 26, ly, l.color.c_str(),
             l.dash.empty() ? "" : fmt(" stroke-dasharray=\"%s\"", l.dash.c_str()).c_str());
    s += fmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n", lx + 32, ly + 4, l.text.c_str());
    ly += 22;
  }
  if (r.has_gpu) {
    ly += 8;
    const char* notes[] = {"P1: below it, compute where", "the data is (CPU)", "P2: below it, the FFN is",
                           "bound by PCIe; above, by", "the GPU kernel at μ"};
    for (const char* t : notes) {
      s += fmt("<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#444\">%s</text>\n", lx, ly, t);
      ly += 16;
    }
  }
  s += "</svg>\n";
  return s;
}

}  // namespace ferry::planner
