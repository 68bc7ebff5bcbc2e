#include "ferry/exec/expert_image.h"

#include <cstring>

namespace ferry {

namespace {

size_t align_up(size_t n) { return (n + kExpertImageAlign - 1) / kExpertImageAlign * kExpertImageAlign; }

const cpu::PackedMatrix& matrix_of(const MlpWeights& m, int i) { return i == 0 ? m.gate : i == 1 ? m.up : m.down; }

}  // namespace

ExpertImage image_layout(const MlpWeights& proto) {
  ExpertImage img;
  for (int i = 0; i < 3; ++i) {
    const cpu::PackedMatrix& m = matrix_of(proto, i);
    const size_t sizes[3] = {m.data.size(), m.scales.size(), m.zeros.size()};
    for (int a = 0; a < 3; ++a) {
      img.offset[i * 3 + a] = img.bytes;
      img.bytes += align_up(sizes[a]);
    }
  }
  return img;
}

MlpWeights image_view(const MlpWeights& proto, const ExpertImage& img, std::byte* base) {
  auto at = [&](int i, int a, size_t size) -> void* { return size ? base + img.offset[i * 3 + a] : nullptr; };
  MlpWeights v;
  cpu::PackedMatrix* out[3] = {&v.gate, &v.up, &v.down};
  for (int i = 0; i < 3; ++i) {
    const cpu::PackedMatrix& m = matrix_of(proto, i);
    *out[i] = cpu::packed_view(m, at(i, 0, m.data.size()), at(i, 1, m.scales.size()), at(i, 2, m.zeros.size()));
  }
  return v;
}

void write_image(const MlpWeights& m, const ExpertImage& img, std::byte* dst) {
  for (int i = 0; i < 3; ++i) {
    const cpu::PackedMatrix& p = matrix_of(m, i);
    const cpu::AlignedBytes* arrays[3] = {&p.data, &p.scales, &p.zeros};
    for (int a = 0; a < 3; ++a)
      if (arrays[a]->size()) std::memcpy(dst + img.offset[i * 3 + a], arrays[a]->data(), arrays[a]->size());
  }
}

}  // namespace ferry
