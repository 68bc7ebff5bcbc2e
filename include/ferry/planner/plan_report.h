// Human-readable output of `ferry plan`: the chosen policy, predicted throughput, time per layer on every
// resource with the binding roof, the memory plan, the HRM turning points, and (--explain) the
// alternatives and why they lose. Also the one-line summary used by benchmarks and docs.
#pragma once
#include <string>

#include "ferry/planner/planner.h"

namespace ferry::planner {

struct ReportContext {
  const ModelShape& shape;
  const HardwareProfile& hw;
  const Workload& workload;
  const CostModel& cost;
  std::string precision_note;  // why the search used the precisions it did (empty: nothing to say)
};

std::string format_bytes(double bytes);  // "20.15 GiB"
std::string describe_policy(const Policy& p, const ModelShape& m);
std::string plan_report(const ReportContext& ctx, const PlanResult& result, bool explain);
// Why a plan was impossible: what is short, by how much, and the closest policy's memory plan.
std::string infeasible_report(const ReportContext& ctx, const PlanResult& result);
// One line: "N=2752 μ=192 attn=cpu ffn=gpu gpu-experts/layer=1 -> 520.1 tok/s (decode 558.2, prefill 4152)".
std::string summary_line(const Candidate& c);

}  // namespace ferry::planner
