// An expert image: one routed expert's packed arrays (gate, up, down: data, scales, zeros) laid out one
// after another in one contiguous block, each array 256-byte aligned. It is the unit that moves between
// tiers: a chunk of the packed store on SSD, an entry of the DRAM expert cache, a page of the pipelined
// executor's device ring. The bytes are identical everywhere, so a move is one copy and a view of the
// block (image_view) is the expert as the ops read it.
#pragma once
#include <cstddef>

#include "ferry/exec/model_weights.h"

namespace ferry {

struct ExpertImage {
  size_t offset[9] = {};  // [matrix * 3 + array]: matrix 0 gate, 1 up, 2 down; array 0 data, 1 scales, 2 zeros
  size_t bytes = 0;       // the whole image
};

inline constexpr size_t kExpertImageAlign = 256;

// The layout of an expert shaped like `proto` (every expert of a model and precision has the same).
ExpertImage image_layout(const MlpWeights& proto);
// Views of the image at `base` (device or host memory), shaped like `proto`.
MlpWeights image_view(const MlpWeights& proto, const ExpertImage& img, std::byte* base);
// Copies m's arrays to their offsets at `dst` (img.bytes long; the gaps are left as they are).
void write_image(const MlpWeights& m, const ExpertImage& img, std::byte* dst);

}  // namespace ferry
