// Built-in hardware profiles. GPU figures are vendor datasheet values (dense tensor-core peaks, no
// sparsity) and are labelled as such; the host side of a GPU preset is an assumed server that the
// --host-* flags replace. The *-ml presets are the MoE-Lightning evaluation machines with the constants
// its policy optimizer uses (fastmoe/backend/utils.py HardwareConfig), so ferry's predictions can be set
// beside the paper's measurements.
#include <map>

#include "ferry/error.h"
#include "ferry/planner/hardware_profile.h"

namespace ferry::planner {
namespace {

constexpr double kGB = 1e9;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct GpuSheet {
  const char* name;
  double memory_bytes;
  double bandwidth_gbps;
  double bf16_tflops, fp32_tflops, int8_tops;
  double pcie_gbps;  // typical pinned-copy rate of the slot generation
  const char* note;
};

// PCIe x16 rates: the typical pinned cudaMemcpy rate, about 80% of the theoretical link rate
// (gen3 15.75, gen4 31.5, gen5 63 GB/s per direction).
constexpr double kPcie3 = 12.5, kPcie4 = 25.0, kPcie5 = 50.0;

const std::map<std::string, GpuSheet>& gpu_sheets() {
  static const std::map<std::string, GpuSheet> sheets = {
      {"t4",
       {"NVIDIA T4", 16 * kGiB, 320, 65, 8.1, 130, kPcie3,
        "T4 datasheet: 16 GB GDDR6 320 GB/s, 65 TFLOPS fp16 tensor"}},
      {"l4",
       {"NVIDIA L4", 24 * kGiB, 300, 121, 30.3, 242, kPcie4,
        "L4 datasheet: 24 GB GDDR6 300 GB/s, 121 TFLOPS bf16 dense (242 with sparsity)"}},
      {"a10g",
       {"NVIDIA A10G", 24 * kGiB, 600, 70, 31.2, 140, kPcie4,
        "A10G: no NVIDIA datasheet (AWS part); A10 memory figures, about half the A10's 125 TFLOPS tensor "
        "peak"}},
      {"rtx3090",
       {"NVIDIA GeForce RTX 3090", 24 * kGiB, 936, 71, 35.6, 284, kPcie4,
        "RTX 3090 datasheet: 24 GB GDDR6X 936 GB/s, 71 TFLOPS fp16 tensor with fp32 accumulate"}},
      {"rtx4090",
       {"NVIDIA GeForce RTX 4090", 24 * kGiB, 1008, 165, 82.6, 660, kPcie4,
        "RTX 4090 datasheet: 24 GB GDDR6X 1008 GB/s, 165 TFLOPS fp16 tensor with fp32 accumulate"}},
      {"a100-40gb",
       {"NVIDIA A100 40GB", 40 * kGiB, 1555, 312, 19.5, 624, kPcie4,
        "A100 40GB datasheet: HBM2 1555 GB/s, 312 TFLOPS bf16 tensor"}},
      {"a100-80gb",
       {"NVIDIA A100 80GB", 80 * kGiB, 1935, 312, 19.5, 624, kPcie4,
        "A100 80GB PCIe datasheet: HBM2e 1935 GB/s, 312 TFLOPS bf16 tensor"}},
      {"h100-pcie",
       {"NVIDIA H100 PCIe", 80 * kGiB, 2000, 756, 51, 1513, kPcie5,
        "H100 PCIe datasheet: 80 GB HBM2e 2.0 TB/s, 756 TFLOPS bf16 tensor dense"}},
  };
  return sheets;
}

// The host a GPU preset assumes until --host-* says otherwise: a mid-range server.
MemoryLevel assumed_host() {
  MemoryLevel cpu;
  cpu.name = "host CPU + DRAM";
  cpu.cores = 16;
  cpu.capacity_bytes = 128 * kGB;
  cpu.bandwidth_gbps = 80;
  cpu.peak = {1.0, 0.5, 2.0};
  cpu.usable_fraction = 0.8;
  cpu.source = "assumed host (16 cores, 128 GB, 80 GB/s, 1 TFLOPS bf16); set with --host-*";
  return cpu;
}

MemoryLevel assumed_ssd() {
  return MemoryLevel{
      "NVMe SSD", 2e12, 3.0, {}, 0, 0.9, {}, 0, "assumed NVMe (2 TB, 3 GB/s); set with --ssd-gbps"};
}

HardwareProfile from_sheet(const std::string& key, const GpuSheet& s) {
  HardwareProfile hw;
  hw.name = key;
  hw.description = std::string(s.name) + " with an assumed host";
  MemoryLevel gpu;
  gpu.name = s.name;
  gpu.capacity_bytes = s.memory_bytes;
  gpu.bandwidth_gbps = s.bandwidth_gbps;
  gpu.peak = {s.bf16_tflops, s.fp32_tflops, s.int8_tops};
  gpu.usable_fraction = 0.9;
  gpu.source = std::string("datasheet: ") + s.note;
  hw.gpu = gpu;
  hw.cpu = assumed_host();
  hw.ssd = assumed_ssd();
  hw.links = {s.pcie_gbps, s.pcie_gbps, 3.0,
              "typical pinned PCIe rate for the slot generation (~80% of theoretical)"};
  return hw;
}

// MoE-Lightning's machines: GCP g2 (L4) and n1 (T4) with a 24-core Xeon, 192 GB DRAM at 100 GB/s and
// 16 GB/s CPU->GPU, the figures its optimizer is given. Capacities are GiB, as GCP sizes machines and
// as PyTorch reports devices. It does not use disk, so neither does this.
HardwareProfile moe_lightning_box(const std::string& key, const char* gpu_name, double gpu_gb,
                                  double gpu_gbps, double gpu_tflops, double cpu_tflops) {
  HardwareProfile hw;
  hw.name = key;
  hw.description = std::string("MoE-Lightning evaluation machine: ") + gpu_name +
                   ", 24-core Xeon, 192 GB DRAM (constants of its policy optimizer)";
  MemoryLevel gpu;
  gpu.name = gpu_name;
  gpu.capacity_bytes = gpu_gb * kGiB;
  gpu.bandwidth_gbps = gpu_gbps;
  gpu.peak = {gpu_tflops, gpu_tflops / 4, gpu_tflops * 2};
  gpu.usable_fraction = 0.86;  // the optimizer's GPU memory cap
  gpu.source = "MoE-Lightning optimizer constants (fastmoe/backend/utils.py)";
  hw.gpu = gpu;
  MemoryLevel cpu;
  cpu.name = "24-core Intel Xeon + 192 GB DRAM";
  cpu.cores = 24;
  cpu.capacity_bytes = 192 * kGiB;
  cpu.bandwidth_gbps = 100;
  cpu.peak = {cpu_tflops, cpu_tflops, cpu_tflops * 2};
  cpu.usable_fraction = 0.8;  // the optimizer's CPU memory cap
  cpu.source = "MoE-Lightning optimizer constants (--cpu-mem-bdw 100)";
  hw.cpu = cpu;
  hw.links = {16, 16, 0, "MoE-Lightning optimizer constant (16 GB/s CPU->GPU)"};
  return hw;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& [key, sheet] : gpu_sheets()) names.push_back(key);
  names.push_back("l4-ml");
  names.push_back("t4-ml");
  names.push_back("cpu-server");
  return names;
}

HardwareProfile hardware_preset(const std::string& name) {
  auto it = gpu_sheets().find(name);
  if (it != gpu_sheets().end()) return from_sheet(it->first, it->second);
  if (name == "l4-ml") return moe_lightning_box(name, "NVIDIA L4", 24, 285, 104, 1.6);
  if (name == "t4-ml") return moe_lightning_box(name, "NVIDIA T4", 15, 300, 65, 0.8);
  if (name == "cpu-server") {
    HardwareProfile hw;
    hw.name = name;
    hw.description = "CPU-only server with an NVMe SSD (assumed figures; set with --host-* / --ssd-gbps)";
    hw.cpu = assumed_host();
    hw.ssd = assumed_ssd();
    hw.links = {0, 0, 3.0, "assumed NVMe read rate"};
    return hw;
  }
  std::string list;
  for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
  throw Error("unknown hardware preset '" + name + "'; presets: " + list +
              " (or give a profile JSON written by `ferry probe`)");
}

}  // namespace ferry::planner
