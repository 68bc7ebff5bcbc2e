// HardwareProfile <-> JSON, command-line overrides, and the GEMM-curve lookup.
#include "ferry/planner/hardware_profile.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/validate.h"
#include "planner/json_fields.h"

namespace ferry::planner {
namespace {

constexpr const char* kFormat = "ferry-hardware";
constexpr int kVersion = 1;
constexpr double kGB = 1e9;
// Upper bounds of a profile's figures: far above any machine, low enough that every time and byte count
// the cost model derives from them stays finite.
constexpr double kMaxBytes = 1e16;   // 10 PB
constexpr double kMaxGBps = 1e6;
constexpr double kMaxTflops = 1e6;
constexpr int64_t kMaxCores = 1 << 16;

std::string field(const JsonFields& f, std::string_view key) { return f.field_name(key); }

nlohmann::json curve_to_json(const std::vector<GemmPoint>& curve) {
  nlohmann::json j = nlohmann::json::array();
  for (const GemmPoint& p : curve) j.push_back({{"rows", p.rows}, {"gflops", p.gflops}});
  return j;
}

// The curve under `key` (absent: empty), sorted by rows.
std::vector<GemmPoint> curve_from_json(const JsonFields& f, const std::string& key) {
  std::vector<GemmPoint> out;
  const nlohmann::json* curve = f.find(key);
  if (!curve) return out;
  if (!curve->is_array()) f.fail(key, "expected an array of {rows, gflops}");
  for (size_t i = 0; i < curve->size(); ++i) {
    JsonFields p((*curve)[i], f.source(), f.path(key + "[" + std::to_string(i) + "]"));
    double rows = require_in_range(p.req_number("rows", 1), {1, 1e12}, field(p, "rows"));
    double gflops = require_positive(p.req_number("gflops", 0), field(p, "gflops"), "GFLOPS", kMaxTflops * 1e3);
    out.push_back({rows, gflops});
  }
  std::sort(out.begin(), out.end(), [](const GemmPoint& a, const GemmPoint& b) { return a.rows < b.rows; });
  return out;
}

// A curve's rate at `rows`, FLOP/s: log-linear between points, flat past the last, and below the first
// falling in proportion to the rows (weight streaming dominates there).
double curve_flops(const std::vector<GemmPoint>& curve, double rows) {
  if (rows <= curve.front().rows) return curve.front().gflops * 1e9 * std::max(rows, 1e-9) / curve.front().rows;
  if (rows >= curve.back().rows) return curve.back().gflops * 1e9;
  size_t i = 1;
  while (curve[i].rows < rows) ++i;
  const GemmPoint& a = curve[i - 1];
  const GemmPoint& b = curve[i];
  double t = std::log(rows / a.rows) / std::log(b.rows / a.rows);
  return (a.gflops + t * (b.gflops - a.gflops)) * 1e9;
}

nlohmann::json level_to_json(const MemoryLevel& m, bool with_compute) {
  nlohmann::json j;
  j["name"] = m.name;
  j["capacity_bytes"] = m.capacity_bytes;
  j["bandwidth_gbps"] = m.bandwidth_gbps;
  if (with_compute) {
    j["peak"] = {{"bf16_tflops", m.peak.bf16_tflops},
                 {"fp32_tflops", m.peak.fp32_tflops},
                 {"int8_tops", m.peak.int8_tops}};
    if (m.cores > 0) j["cores"] = m.cores;
    if (!m.gemm_curve.empty()) j["gemm_curve"] = curve_to_json(m.gemm_curve);
    if (m.attention_gbps > 0) j["attention_gbps"] = m.attention_gbps;
    const KernelCurves& k = m.kernels;
    nlohmann::json kernels = nlohmann::json::object();
    if (!k.bf16_exact.empty()) kernels["bf16_f32_activations"] = curve_to_json(k.bf16_exact);
    if (!k.int8.empty()) kernels["int8"] = curve_to_json(k.int8);
    if (!k.int4.empty()) kernels["int4"] = curve_to_json(k.int4);
    if (!k.prefill_attention.empty()) kernels["prefill_attention_by_prompt_len"] = curve_to_json(k.prefill_attention);
    if (k.kv_store_gbps > 0) kernels["kv_store_gbps"] = k.kv_store_gbps;
    if (!k.expert_ffn.empty()) kernels["expert_ffn_f32_activations"] = curve_to_json(k.expert_ffn);
    if (!kernels.empty()) j["kernels"] = kernels;
  }
  j["usable_fraction"] = m.usable_fraction;
  j["source"] = m.source;
  return j;
}

MemoryLevel level_from_json(const JsonFields& f, bool with_compute, double default_usable) {
  MemoryLevel m;
  m.name = f.opt_string("name", "");
  m.capacity_bytes = require_non_negative(f.req_number("capacity_bytes", 0), field(f, "capacity_bytes"),
                                          "bytes", kMaxBytes);
  m.bandwidth_gbps = require_non_negative(f.req_number("bandwidth_gbps", 0), field(f, "bandwidth_gbps"),
                                          "GB/s", kMaxGBps);
  m.usable_fraction = require_positive(f.opt_number("usable_fraction", default_usable, 0),
                                       field(f, "usable_fraction"), "the share of the capacity a plan may fill", 1);
  m.source = f.opt_string("source", "");
  if (with_compute) {
    JsonFields peak = f.req_object("peak");
    m.peak.bf16_tflops =
        require_non_negative(peak.req_number("bf16_tflops", 0), field(peak, "bf16_tflops"), "TFLOPS", kMaxTflops);
    m.peak.fp32_tflops = require_non_negative(peak.opt_number("fp32_tflops", m.peak.bf16_tflops / 2, 0),
                                              field(peak, "fp32_tflops"), "TFLOPS", kMaxTflops);
    m.peak.int8_tops = require_non_negative(peak.opt_number("int8_tops", m.peak.bf16_tflops * 2, 0),
                                            field(peak, "int8_tops"), "TOPS", 2 * kMaxTflops);
    // Absent means unknown (0); a written count must be a real one.
    if (f.has("cores"))
      m.cores = static_cast<int>(require_count(f.opt_int("cores", 0, 0), 1, kMaxCores, field(f, "cores"),
                                               "leave the key out when unknown"));
    m.attention_gbps = require_non_negative(f.opt_number("attention_gbps", 0, 0), field(f, "attention_gbps"),
                                            "GB/s; 0: the memory bandwidth", kMaxGBps);
    m.gemm_curve = curve_from_json(f, "gemm_curve");
    if (f.has("kernels")) {
      JsonFields k = f.req_object("kernels");
      m.kernels.bf16_exact = curve_from_json(k, "bf16_f32_activations");
      m.kernels.int8 = curve_from_json(k, "int8");
      m.kernels.int4 = curve_from_json(k, "int4");
      m.kernels.prefill_attention = curve_from_json(k, "prefill_attention_by_prompt_len");
      m.kernels.expert_ffn = curve_from_json(k, "expert_ffn_f32_activations");
      m.kernels.kv_store_gbps = require_non_negative(k.opt_number("kv_store_gbps", 0, 0), field(k, "kv_store_gbps"),
                                                     "GB/s; 0: not charged", kMaxGBps);
    }
  }
  return m;
}

}  // namespace

double KernelCurves::prefill_attention_flops(double prompt_len) const {
  return prefill_attention.empty() ? 0 : curve_flops(prefill_attention, prompt_len);
}

double MemoryLevel::expert_ffn_flops(double rows, CpuKernel kernel) const {
  const double matmul = gemm_flops(rows, kernel);
  if (kernels.expert_ffn.empty()) return matmul;
  const double ffn = curve_flops(kernels.expert_ffn, rows);
  if (kernel == CpuKernel::Bf16Exact) return ffn;
  const double exact = gemm_flops(rows, CpuKernel::Bf16Exact);
  return exact > 0 ? matmul * std::min(1.0, ffn / exact) : matmul;
}

double MemoryLevel::gemm_flops(double rows, CpuKernel kernel) const {
  const std::vector<GemmPoint>* own = kernel == CpuKernel::Bf16Exact ? &kernels.bf16_exact
                                      : kernel == CpuKernel::Int8    ? &kernels.int8
                                      : kernel == CpuKernel::Int4    ? &kernels.int4
                                                                     : nullptr;
  if (own && !own->empty()) return curve_flops(*own, rows);  // a measured kernel: its own figure
  double peak_flops = peak.bf16_tflops * 1e12;
  if (gemm_curve.empty()) return peak_flops;
  double measured = curve_flops(gemm_curve, rows);
  return peak_flops > 0 ? std::min(measured, peak_flops) : measured;
}

nlohmann::json HardwareProfile::to_json() const {
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["name"] = name;
  j["description"] = description;
  j["gpu"] = has_gpu() ? level_to_json(*gpu, true) : nlohmann::json(nullptr);
  j["cpu"] = level_to_json(cpu, true);
  j["ssd"] = ssd ? level_to_json(*ssd, false) : nlohmann::json(nullptr);
  j["links"] = {{"h2d_gbps", links.h2d_gbps},
                {"d2h_gbps", links.d2h_gbps},
                {"ssd_read_gbps", links.ssd_read_gbps},
                {"source", links.source}};
  return j;
}

HardwareProfile HardwareProfile::from_json(const nlohmann::json& j, const std::string& source) {
  JsonFields f(j, source);
  std::string format = f.req_string("format");
  if (format != kFormat) f.fail("format", "is '" + format + "'; expected '" + kFormat + "'");
  int64_t version = f.req_int("version", 1);
  if (version != kVersion)
    f.fail("version", "is " + std::to_string(version) + "; this ferry reads version 1");
  HardwareProfile hw;
  hw.name = f.opt_string("name", std::filesystem::path(source).stem().string());
  hw.description = f.opt_string("description", "");
  if (auto g = f.opt_object("gpu")) hw.gpu = level_from_json(*g, true, 0.9);
  hw.cpu = level_from_json(f.req_object("cpu"), true, 0.8);
  if (hw.cpu.capacity_bytes <= 0) f.fail("cpu.capacity_bytes", "must be > 0");
  if (hw.cpu.bandwidth_gbps <= 0) f.fail("cpu.bandwidth_gbps", "must be > 0");
  if (hw.cpu.peak.bf16_tflops <= 0) f.fail("cpu.peak.bf16_tflops", "must be > 0");
  if (auto s = f.opt_object("ssd")) hw.ssd = level_from_json(*s, false, 0.9);
  JsonFields l = f.req_object("links");
  hw.links.h2d_gbps = require_non_negative(l.opt_number("h2d_gbps", 0, 0), field(l, "h2d_gbps"), "GB/s", kMaxGBps);
  hw.links.d2h_gbps =
      require_non_negative(l.opt_number("d2h_gbps", hw.links.h2d_gbps, 0), field(l, "d2h_gbps"), "GB/s", kMaxGBps);
  hw.links.ssd_read_gbps =
      require_non_negative(l.opt_number("ssd_read_gbps", 0, 0), field(l, "ssd_read_gbps"), "GB/s", kMaxGBps);
  hw.links.source = l.opt_string("source", "");
  if (hw.has_gpu()) {
    if (hw.gpu->bandwidth_gbps <= 0) f.fail("gpu.bandwidth_gbps", "must be > 0 when a GPU is present");
    if (hw.gpu->peak.bf16_tflops <= 0) f.fail("gpu.peak.bf16_tflops", "must be > 0 when a GPU is present");
    if (hw.links.h2d_gbps <= 0) l.fail("h2d_gbps", "must be > 0 when a GPU is present");
    if (hw.links.d2h_gbps <= 0) l.fail("d2h_gbps", "must be > 0 when a GPU is present");
  }
  return hw;
}

HardwareProfile HardwareProfile::load(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open hardware profile '" + path.string() + "'");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (a number like 1e999)
    throw Error(path.string() + ": not valid JSON: " + e.what());
  }
  return from_json(j, path.string());
}

void HardwareProfile::save(const std::filesystem::path& path) const {
  std::ofstream out(path);
  if (!out) throw Error("cannot write hardware profile '" + path.string() + "'");
  out << to_json().dump(2) << "\n";
  if (!out) throw Error("error writing hardware profile '" + path.string() + "'");
}

void apply_overrides(HardwareProfile& hw, const HardwareOverrides& o) {
  auto mark = [](std::string& source, const char* what) {
    source += (source.empty() ? "" : "; ") + std::string(what) + " from flag";
  };
  // Every figure is checked before any is applied; a flag that would be ignored is refused.
  if (o.host_cores) require_count(*o.host_cores, 1, kMaxCores, "--host-cores");
  if (o.host_dram_gb) require_positive(*o.host_dram_gb, "--host-dram-gb", "GB", kMaxBytes / kGB);
  if (o.host_dram_gbps) require_positive(*o.host_dram_gbps, "--host-dram-gbps", "GB/s", kMaxGBps);
  if (o.host_cpu_tflops) require_positive(*o.host_cpu_tflops, "--host-cpu-tflops", "TFLOPS", kMaxTflops);
  if (o.ssd_gbps) require_non_negative(*o.ssd_gbps, "--ssd-gbps", "GB/s; 0: no SSD tier", kMaxGBps);
  if (o.ssd_gb) require_positive(*o.ssd_gb, "--ssd-gb", "GB", kMaxBytes / kGB);
  if (o.pcie_gbps) require_positive(*o.pcie_gbps, "--pcie-gbps", "GB/s", kMaxGBps);
  if (o.gpu_memory_gb) require_positive(*o.gpu_memory_gb, "--gpu-mem-gb", "GB", kMaxBytes / kGB);
  for (auto [given, flag] : {std::pair{o.gpu_memory_gb.has_value(), "--gpu-mem-gb"},
                             std::pair{o.pcie_gbps.has_value(), "--pcie-gbps"}})
    if (given && !hw.has_gpu())
      throw Error(std::string(flag) + ": the hardware profile '" + hw.name +
                  "' has no GPU, so it would be ignored; pick a GPU preset (ferry plan --list) or leave it out");
  const bool ssd_after = o.ssd_gbps ? *o.ssd_gbps > 0 : hw.has_ssd();
  if (o.ssd_gb && !ssd_after)
    throw Error("--ssd-gb: the hardware profile '" + hw.name +
                "' has no SSD tier, so it would be ignored; give its read bandwidth too (--ssd-gbps) or leave "
                "it out");
  if (o.host_cores) {
    hw.cpu.cores = *o.host_cores;
    mark(hw.cpu.source, "cores");
  }
  if (o.host_dram_gb) {
    hw.cpu.capacity_bytes = *o.host_dram_gb * kGB;
    mark(hw.cpu.source, "capacity");
  }
  if (o.host_dram_gbps) {
    hw.cpu.bandwidth_gbps = *o.host_dram_gbps;
    hw.cpu.attention_gbps = 0;  // a measured rate no longer describes this memory
    mark(hw.cpu.source, "bandwidth");
  }
  if (o.host_cpu_tflops) {
    hw.cpu.peak = {*o.host_cpu_tflops, *o.host_cpu_tflops / 2, *o.host_cpu_tflops * 2};
    hw.cpu.gemm_curve.clear();
    hw.cpu.kernels = {};
    mark(hw.cpu.source, "peak");
  }
  if (o.ssd_gbps) {
    hw.links.ssd_read_gbps = *o.ssd_gbps;
    if (*o.ssd_gbps > 0 && !hw.ssd) hw.ssd = MemoryLevel{"SSD", 2e12, *o.ssd_gbps, {}, 0, 0.9, {}, 0, ""};
    if (hw.ssd) {
      hw.ssd->bandwidth_gbps = *o.ssd_gbps;
      mark(hw.ssd->source, "read bandwidth");
    }
    mark(hw.links.source, "SSD read");
  }
  if (o.ssd_gb && hw.ssd) {
    hw.ssd->capacity_bytes = *o.ssd_gb * kGB;
    mark(hw.ssd->source, "capacity");
  }
  if (o.pcie_gbps) {
    hw.links.h2d_gbps = hw.links.d2h_gbps = *o.pcie_gbps;
    mark(hw.links.source, "PCIe");
  }
  if (o.gpu_memory_gb && hw.gpu) {
    hw.gpu->capacity_bytes = *o.gpu_memory_gb * kGB;
    mark(hw.gpu->source, "capacity");
  }
}

HardwareProfile resolve_hardware(const std::string& name_or_path) {
  std::filesystem::path p(name_or_path);
  bool looks_like_file = p.extension() == ".json" || name_or_path.find('/') != std::string::npos;
  if (looks_like_file || std::filesystem::is_regular_file(p)) {
    if (!std::filesystem::is_regular_file(p))
      throw Error("hardware profile '" + name_or_path +
                  "' does not exist (give a preset name or a profile JSON)");
    return HardwareProfile::load(p);
  }
  return hardware_preset(name_or_path);
}

}  // namespace ferry::planner
