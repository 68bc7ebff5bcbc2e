// How a MoE router turns its logits into expert weights: a field of ModelConfig and of the router op's
// parameters (ops/router.h), so the ops need no ModelConfig.
#pragma once

namespace ferry {

enum class RouterKind {
  SoftmaxTopK,        // softmax over all E (fp32), top-k, renormalise iff norm_topk_prob
  SparseMixer,        // Phi-3.5-MoE
  SoftmaxTopKPNorm,   // DBRX: softmax, top-k, divide by the p-norm
};

}  // namespace ferry
