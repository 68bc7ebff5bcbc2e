// libFuzzer target: any byte string is either a valid safetensors file or a ferry::Error, never a
// crash, a hang, an out-of-bounds read or another exception type. Valid results must satisfy the
// invariants the rest of ferry relies on (offsets tile the data buffer, sizes agree with shapes).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "ferry/error.h"
#include "ferry/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  ferry::SafetensorsHeader header;
  try {
    header = ferry::parse_safetensors(bytes, "fuzz.safetensors");
  } catch (const ferry::Error&) {
    return 0;
  }
  if (header.data_offset() + header.data_bytes != size) std::abort();
  uint64_t covered = 0;
  for (const auto& t : header.tensors) {
    if (t.begin != covered || t.end < t.begin || t.end > header.data_bytes) std::abort();
    if (static_cast<uint64_t>(t.numel()) * static_cast<uint64_t>(t.element_size) != t.nbytes()) std::abort();
    if (header.find(t.name) != &t) std::abort();
    // Touch the tensor's bytes: ASan reports any read outside the input.
    volatile std::byte sink{};
    if (t.nbytes()) sink = bytes[header.data_offset() + t.end - 1];
    (void)sink;
    covered = t.end;
  }
  if (covered != header.data_bytes) std::abort();
  return 0;
}
