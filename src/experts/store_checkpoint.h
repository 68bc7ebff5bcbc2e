// A packed store opened as a Checkpoint (Checkpoint::open does this for a directory holding
// ferry-store.json): the cpu target and the pipelined executor map its packed bytes directly
// (packed_store()); every other reader (the fp32 reference, a repack at another expert precision,
// ferry inspect) gets each canonical tensor dequantised from the packed one, so a store is bf16-exact:
// weights the source held in f32 come back rounded as the cpu target rounds them.
#pragma once
#include <filesystem>
#include <memory>

#include "ferry/checkpoint.h"

namespace ferry::experts {

std::unique_ptr<Checkpoint> open_store_checkpoint(const std::filesystem::path& dir);

}  // namespace ferry::experts
