// HardwareProfile: the machine as the hierarchical roofline model sees it. Three memory levels (GPU,
// CPU/DRAM, SSD), each with a capacity, a bandwidth and (GPU, CPU) peak compute; and the links between
// them (PCIe host-to-device and device-to-host, SSD reads into DRAM). Presets carry datasheet figures
// and say so in `source`; `ferry probe` writes a profile with measured figures instead.
//
// Units: bytes, GB/s (1e9 bytes per second), TFLOP/s (1e12 FLOP per second).
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ferry::planner {

// Peak compute of a processor, per element type of the arithmetic.
struct ComputePeaks {
  double bf16_tflops = 0;  // bf16/fp16 matrix units (dense, no sparsity)
  double fp32_tflops = 0;
  double int8_tops = 0;
};

// A measured point of a GEMM throughput curve: a [rows, K] x [K, N] product with weights larger than the
// caches. Small row counts (decode) are far below peak; the planner interpolates in log(rows).
struct GemmPoint {
  double rows = 0;
  double gflops = 0;
};

// The CPU matmul kernels ferry runs; each has its own measured curve (MemoryLevel::gemm_flops).
enum class CpuKernel {
  Bf16,       // bf16 weights, activations rounded to bf16 (--bf16-activations; MemoryLevel::gemm_curve)
  Bf16Exact,  // bf16 weights widened to f32 against f32 activations: the cpu target's and executor's default
  Int8,       // int8 experts (VNNI, activations quantised per group)
  Int4,       // int4 experts (unpacked to int8 in registers)
};

// Curves of the kernels other than Bf16, measured by `ferry probe` with ferry's own kernels. An empty
// curve falls back to the bf16 curve (and that one to the peak).
struct KernelCurves {
  std::vector<GemmPoint> bf16_exact, int8, int4;
  // Causal prompt attention (f32 arithmetic), GFLOP/s by prompt length (GemmPoint::rows holds the length);
  // empty: the fp32 peak.
  std::vector<GemmPoint> prefill_attention;
  double kv_store_gbps = 0;  // new keys and values written into the paged bf16 cache; 0: not charged
  // The routed expert's whole FFN (gather the rows, gate and up, SiLU, down) on the exact path, by rows
  // per expert: what its matmuls reach inside the op. Empty: the matmul curves alone.
  std::vector<GemmPoint> expert_ffn;
  double prefill_attention_flops(double prompt_len) const;  // FLOP/s; 0 when unmeasured
};

struct MemoryLevel {
  std::string name;  // "NVIDIA L4", "host DRAM", "NVMe"
  double capacity_bytes = 0;
  double bandwidth_gbps = 0;          // the level's own memory bandwidth (reads by its processor)
  ComputePeaks peak;                  // zero for SSD
  int cores = 0;                      // CPU only
  double usable_fraction = 0.9;       // share of the capacity a plan may fill (runtime, OS, fragmentation)
  std::vector<GemmPoint> gemm_curve;  // measured bf16 GEMM throughput by rows; empty: roofline only
  double attention_gbps = 0;          // measured decode-attention KV read rate; 0: use bandwidth_gbps
  std::string source;                 // where the figures come from: "datasheet ...", "probe", "flag", ...

  KernelCurves kernels;                // CPU only: the other kernels' measured curves

  double usable_bytes() const { return capacity_bytes * usable_fraction; }
  // GEMM rate of `kernel` at `rows` activation rows, FLOP/s: its measured curve if there is one, else the
  // bf16 curve (capped by the bf16 peak), else the bf16 peak.
  double gemm_flops(double rows, CpuKernel kernel = CpuKernel::Bf16) const;
  // A routed expert's FFN at `rows` rows with `kernel`'s weights, FLOP/s: the measured expert_ffn curve on
  // the exact path; for the other kernels their matmul curve times the FFN's efficiency against the exact
  // matmul at those rows; without an expert_ffn curve, gemm_flops.
  double expert_ffn_flops(double rows, CpuKernel kernel) const;
};

struct Links {
  double h2d_gbps = 0;       // pinned host -> device
  double d2h_gbps = 0;       // device -> pinned host
  double ssd_read_gbps = 0;  // SSD -> DRAM (O_DIRECT, large blocks)
  std::string source;
};

struct HardwareProfile {
  std::string name;  // preset name or file stem
  std::string description;
  std::optional<MemoryLevel> gpu;  // absent on a CPU-only machine
  MemoryLevel cpu;
  std::optional<MemoryLevel> ssd;  // absent: nothing may be placed on SSD
  Links links;

  bool has_gpu() const { return gpu.has_value() && gpu->capacity_bytes > 0; }
  bool has_ssd() const { return ssd.has_value() && ssd->capacity_bytes > 0 && links.ssd_read_gbps > 0; }

  nlohmann::json to_json() const;
  // Throws ferry::Error naming `source` and the key when a field is missing or invalid.
  static HardwareProfile from_json(const nlohmann::json& j, const std::string& source);
  static HardwareProfile load(const std::filesystem::path& path);
  void save(const std::filesystem::path& path) const;
};

// Host-side settings a user can give on the command line (`--host-cores` ...). Unset fields keep the
// profile's value. Anything set is labelled "flag" in the profile's sources.
struct HardwareOverrides {
  std::optional<int> host_cores;
  std::optional<double> host_dram_gb;  // capacity, GB (1e9 bytes)
  std::optional<double> host_dram_gbps;
  std::optional<double> host_cpu_tflops;  // bf16 peak; fp32 set to half, int8 to twice
  std::optional<double> ssd_gbps;         // 0 removes the SSD level
  std::optional<double> ssd_gb;
  std::optional<double> pcie_gbps;  // both directions
  std::optional<double> gpu_memory_gb;
};
void apply_overrides(HardwareProfile& hw, const HardwareOverrides& overrides);

// Built-in presets: datasheet GPUs with an assumed host, and the MoE-Lightning evaluation boxes.
std::vector<std::string> preset_names();
// Throws ferry::Error listing the preset names when `name` is unknown.
HardwareProfile hardware_preset(const std::string& name);
// A preset name, or a path to a profile JSON (as written by `ferry probe` or HardwareProfile::save).
HardwareProfile resolve_hardware(const std::string& name_or_path);

}  // namespace ferry::planner
