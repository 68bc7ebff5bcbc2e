// Pipeline targets: the pipelined executor (ferry/exec/pipelined_model.h) on a device, with its policy
// and everything it runs on owned as one Model, for the generation engine and the CLI.
//
// Target names (--target):
//   sim:<profile>[,scale=X][,h2d=GBps][,d2h=GBps]  the executor on a host-emulated GPU (ferry/device.h)
//   pipeline:<device>                               the executor on any device: pipeline:cpu (the host
//                                                   itself, copies are memcpy), pipeline:sim:l4, ...
//   cuda[:N][,capacity=SIZE][,h2d=GBps][,d2h=GBps]  the executor on an NVIDIA GPU (also pipeline:cuda...)
// (`cpu` is the fast CPU engine, ferry/cpu_model.h, and `reference` the fp32 definition.)
//
// Policy: a file written by `ferry plan --json`, or `auto`: the planner (src/planner) searches the
// policy for the model, the workload and the hardware the device emulates (sim_hardware: the profile
// with the target's scale and link overrides), restricted to what the executor runs (expert FFN on the
// device, bf16 KV cache, one expert precision). On `pipeline:cpu` there is no GPU to plan for: auto
// keeps every expert resident and attends on the host. On `cuda` the planner plans for the real GPU
// (kernels/cuda_hardware.h: its capacity after capacity=, bandwidth and peaks from its properties, the
// PCIe rate measured or capped, the host from the planner's host description), with attention on the CPU
// while the CUDA ops have no device attention; its prediction is printed as for sim.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "ferry/checkpoint.h"
#include "ferry/device.h"
#include "ferry/exec/pipelined_model.h"
#include "ferry/model.h"
#include "ferry/planner/cost_model.h"
#include "ferry/planner/policy.h"

namespace ferry {

// The device a pipeline target runs on: sim:l4,scale=0.5 for both sim:l4,scale=0.5 and
// pipeline:sim:l4,scale=0.5, cpu for pipeline:cpu, cuda:1 for cuda:1; nullopt for any other target
// (reference, cpu: those run without the executor).
std::optional<DeviceTarget> pipeline_device(const std::string& target);
bool is_pipeline_target(const std::string& target);

struct PipelineTargetOptions {
  std::string target;                 // see above
  std::string policy = "auto";        // a policy JSON file, or "auto"
  planner::Workload workload;         // what the run will do: for planning and the prediction
  planner::Precision expert_precision = planner::Precision::Bf16;  // auto: the experts' precision
  int64_t batch = 0;                  // auto: pin N (0: the planner's choice, at most workload.requests)
  int group_size = 64;                // int8 / int4 quantisation group of auto policies
  bool group_size_given = false;      // the user set it: a policy file must agree
  int64_t kv_cache_tokens = 0;        // 0: the executor's default
  std::optional<planner::ExpertFetch> expert_fetch;  // set: the auto policy's; a policy file must agree
  std::optional<planner::ExpertResidency> expert_residency;  // the same
};

class PipelineTarget final : public Model {
 public:
  // Throws ferry::Error when the target, the policy file or the device is invalid, when the planner
  // finds no policy that fits (naming the largest device buffer and what to change), or when the
  // policy does not fit the device (naming the buffer).
  static std::unique_ptr<PipelineTarget> create(const Checkpoint& checkpoint, const PipelineTargetOptions& options);
  ~PipelineTarget() override;

  const ModelConfig& config() const override { return executor_->config(); }
  int add_sequence() override { return executor_->add_sequence(); }
  void free_sequence(int seq) override { executor_->free_sequence(seq); }
  int sequence_length(int seq) const override { return executor_->sequence_length(seq); }
  int64_t kv_blocks() const override { return executor_->kv_blocks(); }
  int kv_block_tokens() const override { return executor_->kv_block_tokens(); }
  std::vector<float> forward(std::span<const ForwardItem> items) override { return executor_->forward(items); }
  std::span<const float> forward_view(std::span<const ForwardItem> items) override {
    return executor_->forward_view(items);
  }

  PipelinedModel& executor() { return *executor_; }
  Device& device() { return *device_; }
  const planner::Policy& policy() const { return policy_; }
  // Where the policy came from: the file, or "auto (planned for <hardware>)".
  const std::string& policy_source() const { return policy_source_; }
  // The hardware profile the planner predicts for (what the sim device emulates, or the real GPU); empty on
  // the cpu device.
  const std::string& hardware() const { return hardware_; }
  // The planner's predicted tokens/s of this policy, workload and hardware: a prediction for the real
  // GPU, not for the emulation. Empty on the cpu device.
  std::optional<double> predicted_tokens_per_s() const { return predicted_; }

 private:
  PipelineTarget() = default;
  std::unique_ptr<Device> device_;
  planner::Policy policy_;
  std::string policy_source_, hardware_;
  std::optional<double> predicted_;
  std::unique_ptr<PipelinedModel> executor_;
};

}  // namespace ferry
