// HardwareProfile: presets, JSON round trip, validation messages, command-line overrides, GEMM curve.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ferry/error.h"
#include "ferry/planner/hardware_profile.h"

namespace ferry::planner {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HardwareProfile, EveryPresetHasTheLevelsTheModelNeeds) {
  for (const std::string& name : preset_names()) {
    SCOPED_TRACE(name);
    HardwareProfile hw = hardware_preset(name);
    EXPECT_EQ(hw.name, name);
    EXPECT_GT(hw.cpu.capacity_bytes, 0);
    EXPECT_GT(hw.cpu.bandwidth_gbps, 0);
    EXPECT_GT(hw.cpu.peak.bf16_tflops, 0);
    EXPECT_FALSE(hw.cpu.source.empty());
    if (name != "cpu-server") {
      ASSERT_TRUE(hw.has_gpu());
      EXPECT_GT(hw.gpu->bandwidth_gbps, hw.cpu.bandwidth_gbps);
      EXPECT_GT(hw.gpu->peak.bf16_tflops, hw.cpu.peak.bf16_tflops);
      EXPECT_GT(hw.links.h2d_gbps, 0);
      EXPECT_LT(hw.links.h2d_gbps, hw.cpu.bandwidth_gbps);  // HRM's assumption: the link is the slowest
      EXPECT_FALSE(hw.gpu->source.empty());
    } else {
      EXPECT_FALSE(hw.has_gpu());
    }
  }
}

TEST(HardwareProfile, DatasheetPresetsSayTheyAreDatasheetFigures) {
  for (const char* name : {"t4", "l4", "a10g", "rtx3090", "rtx4090", "a100-40gb", "a100-80gb", "h100-pcie"}) {
    HardwareProfile hw = hardware_preset(name);
    EXPECT_NE(hw.gpu->source.find("datasheet"), std::string::npos) << name;
    EXPECT_NE(hw.cpu.source.find("--host"), std::string::npos) << name;  // the host side is settable
  }
}

TEST(HardwareProfile, MoeLightningBoxesUseTheirOptimizerConstants) {
  HardwareProfile l4 = hardware_preset("l4-ml");
  EXPECT_EQ(l4.cpu.cores, 24);
  EXPECT_DOUBLE_EQ(l4.cpu.bandwidth_gbps, 100);
  EXPECT_DOUBLE_EQ(l4.links.h2d_gbps, 16);
  EXPECT_DOUBLE_EQ(l4.cpu.peak.bf16_tflops, 1.6);
  EXPECT_DOUBLE_EQ(l4.gpu->peak.bf16_tflops, 104);
  EXPECT_DOUBLE_EQ(l4.cpu.capacity_bytes, 192.0 * (1 << 30));
  EXPECT_FALSE(l4.has_ssd());  // MoE-Lightning does not offload to disk
  HardwareProfile t4 = hardware_preset("t4-ml");
  EXPECT_DOUBLE_EQ(t4.gpu->capacity_bytes, 15.0 * (1 << 30));
  EXPECT_DOUBLE_EQ(t4.gpu->peak.bf16_tflops, 65);
}

TEST(HardwareProfile, UnknownPresetListsTheNames) {
  std::string msg = error_of([] { hardware_preset("v100"); });
  EXPECT_NE(msg.find("v100"), std::string::npos);
  EXPECT_NE(msg.find("l4-ml"), std::string::npos);
}

TEST(HardwareProfile, JsonRoundTripKeepsEveryField) {
  HardwareProfile hw = hardware_preset("l4");
  hw.cpu.gemm_curve = {{1, 22}, {128, 416}};
  hw.cpu.attention_gbps = 17.5;
  hw.cpu.kernels.bf16_exact = {{1, 21}, {64, 300}};
  hw.cpu.kernels.int8 = {{1, 40}};
  hw.cpu.kernels.int4 = {{1, 70}, {16, 500}};
  hw.cpu.kernels.prefill_attention = {{32, 100}, {512, 290}};
  hw.cpu.kernels.kv_store_gbps = 3.5;
  hw.cpu.kernels.expert_ffn = {{1, 19}, {256, 280}};
  HardwareProfile back = HardwareProfile::from_json(hw.to_json(), "mem.json");
  EXPECT_EQ(back.to_json(), hw.to_json());
  EXPECT_EQ(back.cpu.gemm_curve.size(), 2u);
  EXPECT_DOUBLE_EQ(back.cpu.attention_gbps, 17.5);
  EXPECT_EQ(back.cpu.kernels.int4.size(), 2u);
  EXPECT_DOUBLE_EQ(back.cpu.kernels.prefill_attention.back().gflops, 290);
  EXPECT_DOUBLE_EQ(back.cpu.kernels.kv_store_gbps, 3.5);

  auto path = std::filesystem::temp_directory_path() / "ferry_hw_roundtrip.json";
  hw.save(path);
  HardwareProfile loaded = resolve_hardware(path.string());  // a path, not a preset name
  EXPECT_EQ(loaded.to_json(), hw.to_json());
  std::filesystem::remove(path);

  HardwareProfile cpu_only = hardware_preset("cpu-server");
  HardwareProfile cpu_back = HardwareProfile::from_json(cpu_only.to_json(), "cpu.json");
  EXPECT_FALSE(cpu_back.has_gpu());
  EXPECT_TRUE(cpu_back.has_ssd());
}

TEST(HardwareProfile, BadFieldsNameTheFileAndTheKey) {
  nlohmann::json j = hardware_preset("l4").to_json();
  j["cpu"]["bandwidth_gbps"] = "fast";
  std::string msg = error_of([&] { HardwareProfile::from_json(j, "box.json"); });
  EXPECT_NE(msg.find("box.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cpu.bandwidth_gbps"), std::string::npos) << msg;

  j = hardware_preset("l4").to_json();
  j["gpu"]["peak"].erase("bf16_tflops");
  msg = error_of([&] { HardwareProfile::from_json(j, "box.json"); });
  EXPECT_NE(msg.find("gpu.peak.bf16_tflops"), std::string::npos) << msg;

  j = hardware_preset("l4").to_json();
  j["format"] = "something-else";
  msg = error_of([&] { HardwareProfile::from_json(j, "box.json"); });
  EXPECT_NE(msg.find("format"), std::string::npos) << msg;

  j = hardware_preset("l4").to_json();
  j["links"]["h2d_gbps"] = 0;
  msg = error_of([&] { HardwareProfile::from_json(j, "box.json"); });
  EXPECT_NE(msg.find("links.h2d_gbps"), std::string::npos) << msg;

  msg = error_of([] { resolve_hardware("/nonexistent/profile.json"); });
  EXPECT_NE(msg.find("/nonexistent/profile.json"), std::string::npos);
}

TEST(HardwareProfile, OverridesReplaceTheHostAndSayWhere) {
  HardwareProfile hw = hardware_preset("l4");
  HardwareOverrides o;
  o.host_cores = 48;
  o.host_dram_gb = 512;
  o.host_dram_gbps = 200;
  o.host_cpu_tflops = 3;
  o.ssd_gbps = 7;
  o.pcie_gbps = 20;
  o.gpu_memory_gb = 48;
  apply_overrides(hw, o);
  EXPECT_EQ(hw.cpu.cores, 48);
  EXPECT_DOUBLE_EQ(hw.cpu.capacity_bytes, 512e9);
  EXPECT_DOUBLE_EQ(hw.cpu.bandwidth_gbps, 200);
  EXPECT_DOUBLE_EQ(hw.cpu.peak.bf16_tflops, 3);
  EXPECT_DOUBLE_EQ(hw.links.ssd_read_gbps, 7);
  EXPECT_DOUBLE_EQ(hw.links.h2d_gbps, 20);
  EXPECT_DOUBLE_EQ(hw.links.d2h_gbps, 20);
  EXPECT_DOUBLE_EQ(hw.gpu->capacity_bytes, 48e9);
  EXPECT_NE(hw.cpu.source.find("flag"), std::string::npos);

  HardwareOverrides no_ssd;
  no_ssd.ssd_gbps = 0;
  apply_overrides(hw, no_ssd);
  EXPECT_FALSE(hw.has_ssd());
}

TEST(HardwareProfile, GemmCurveInterpolatesInLogRowsAndIsCappedByThePeak) {
  MemoryLevel cpu;
  cpu.peak.bf16_tflops = 0.5;
  EXPECT_DOUBLE_EQ(cpu.gemm_flops(7), 0.5e12);  // no curve: the roofline peak
  cpu.gemm_curve = {{1, 20}, {16, 200}, {256, 800}};
  EXPECT_DOUBLE_EQ(cpu.gemm_flops(16), 200e9);
  EXPECT_DOUBLE_EQ(cpu.gemm_flops(4), 110e9);     // halfway between 1 and 16 in log2(rows)
  EXPECT_DOUBLE_EQ(cpu.gemm_flops(0.5), 10e9);    // below the first point: proportional to rows
  EXPECT_DOUBLE_EQ(cpu.gemm_flops(4096), 500e9);  // measured 800 but the peak is 500
}

TEST(HardwareProfile, EachCpuKernelHasItsOwnCurveAndFallsBackToTheBf16One) {
  MemoryLevel cpu;
  cpu.peak.bf16_tflops = 0.5;
  cpu.gemm_curve = {{1, 20}, {16, 200}, {256, 800}};
  cpu.kernels.bf16_exact = {{1, 18}, {16, 100}};
  cpu.kernels.prefill_attention = {{32, 100}, {512, 300}};
  EXPECT_DOUBLE_EQ(cpu.gemm_flops(16, CpuKernel::Bf16Exact), 100e9);
  EXPECT_DOUBLE_EQ(cpu.gemm_flops(4096, CpuKernel::Bf16Exact), 100e9);  // flat past its last point
  EXPECT_DOUBLE_EQ(cpu.gemm_flops(16, CpuKernel::Int8), 200e9);         // unmeasured: the bf16 curve
  EXPECT_DOUBLE_EQ(cpu.gemm_flops(4096, CpuKernel::Int4), 500e9);       // ... capped by the peak
  EXPECT_DOUBLE_EQ(cpu.kernels.prefill_attention_flops(128), 200e9);    // halfway in log(length)
  EXPECT_DOUBLE_EQ(cpu.kernels.prefill_attention_flops(16), 50e9);
  MemoryLevel bare;
  EXPECT_DOUBLE_EQ(bare.kernels.prefill_attention_flops(128), 0);  // unmeasured: the caller's fallback

  // The expert FFN: its own curve on the exact path; the other kernels scaled by its efficiency there.
  EXPECT_DOUBLE_EQ(cpu.expert_ffn_flops(16, CpuKernel::Int8), 200e9);  // no FFN curve: the matmul's
  cpu.kernels.expert_ffn = {{1, 9}, {16, 80}};
  EXPECT_DOUBLE_EQ(cpu.expert_ffn_flops(16, CpuKernel::Bf16Exact), 80e9);
  EXPECT_DOUBLE_EQ(cpu.expert_ffn_flops(16, CpuKernel::Int8), 200e9 * 0.8);  // 80 of the exact 100
}

TEST(HardwareProfile, AKernelCurveWithABadPointNamesIt) {
  nlohmann::json j = hardware_preset("cpu-server").to_json();
  j["cpu"]["kernels"]["int8"] = nlohmann::json::array({{{"rows", 1}, {"gflops", -3}}});
  std::string msg = error_of([&] { HardwareProfile::from_json(j, "bad.json"); });
  EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("int8[0]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gflops"), std::string::npos) << msg;
}

}  // namespace
}  // namespace ferry::planner
