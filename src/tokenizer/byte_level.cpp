#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace ferry::byte_level {
namespace {

struct Table {
  std::array<std::string, 256> char_of_byte;
  std::array<int16_t, 324> byte_of_char;  // code points used are < 256 + 68

  Table() {
    byte_of_char.fill(-1);
    int n_shifted = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n_shifted++);
      utf8::append_code_point(char_of_byte[b], cp);
      byte_of_char[cp] = static_cast<int16_t>(b);
    }
  }
};

const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

std::string_view char_of_byte(uint8_t b) {
  return table().char_of_byte[b];
}

int byte_of_char(char32_t cp) {
  const auto& t = table().byte_of_char;
  return cp < t.size() ? t[cp] : -1;
}

void append_encoded(std::string& out, std::string_view bytes) {
  const Table& t = table();
  for (char c : bytes) out.append(t.char_of_byte[static_cast<uint8_t>(c)]);
}

bool append_decoded(std::string& out, std::string_view text) {
  const size_t old_size = out.size();
  size_t pos = 0;
  while (pos < text.size()) {
    const int b =
        utf8::char_length(text.substr(pos)) == 0 ? -1 : byte_of_char(utf8::next_code_point(text, pos));
    if (b < 0) {
      out.resize(old_size);
      return false;
    }
    out.push_back(static_cast<char>(b));
  }
  return true;
}

}  // namespace ferry::byte_level
