// `ferry probe`: measures this machine and writes a hardware profile for `ferry plan --hw FILE`.
#include <cstdio>

#include "command.h"
#include "ferry/error.h"
#include "ferry/planner/plan_report.h"
#include "ferry/planner/probe.h"
#include "flag_checks.h"

namespace ferry::cli {
namespace {

using namespace ferry::planner;

struct ProbeArgs {
  std::string out = "probe.json";
  std::string ssd_path;
  double ssd_gb = 1.0;
  bool quick = false;
};

int run_probe(const ProbeArgs& a) {
  ProbeOptions o;
  o.ssd_path = a.ssd_path;
  o.ssd_bytes = static_cast<int64_t>(a.ssd_gb * 1e9);
  o.quick = a.quick;
  o.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  HardwareProfile hw = probe_machine(o);
  hw.save(a.out);
  std::printf("profile %s written to %s\n", hw.name.c_str(), a.out.c_str());
  std::printf("  CPU %s: %d cores, %s DRAM, %.1f GB/s read, %.2f TFLOPS bf16 peak, attention %.1f GB/s\n",
              hw.cpu.name.c_str(), hw.cpu.cores, format_bytes(hw.cpu.capacity_bytes).c_str(),
              hw.cpu.bandwidth_gbps, hw.cpu.peak.bf16_tflops, hw.cpu.attention_gbps);
  if (hw.has_ssd())
    std::printf("  SSD %s free, %.2f GB/s O_DIRECT read\n", format_bytes(hw.ssd->capacity_bytes).c_str(),
                hw.links.ssd_read_gbps);
  if (hw.has_gpu())
    std::printf("  GPU %s: %s, %.0f GB/s, %.1f TFLOPS; PCIe %.1f / %.1f GB/s\n", hw.gpu->name.c_str(),
                format_bytes(hw.gpu->capacity_bytes).c_str(), hw.gpu->bandwidth_gbps,
                hw.gpu->peak.bf16_tflops, hw.links.h2d_gbps, hw.links.d2h_gbps);
  else
    std::printf("  no GPU\n");
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<ProbeArgs>();
  app.add_option("--out", a->out, "profile JSON to write")->check(non_empty_text("a file name"))->capture_default_str();
  app.add_option("--ssd-path", a->ssd_path,
                 "directory on the SSD to measure (O_DIRECT reads of a temporary file)");
  // 1e5 GB keeps the byte count (ssd_gb x 1e9) far inside int64.
  app.add_option("--ssd-gb", a->ssd_gb, "size of that temporary file, GB")
      ->check(positive_number("GB", 1e5))
      ->capture_default_str();
  app.add_flag("--quick", a->quick, "smaller buffers and fewer repeats (seconds instead of a minute)");
  return [a] { return run_probe(*a); };
}

RegisterCommand reg{
    {"probe", "measure this machine and write a hardware profile for `ferry plan --hw`", setup, 41}};

}  // namespace
}  // namespace ferry::cli
