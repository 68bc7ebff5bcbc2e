// The GPT-2 byte <-> character table used by byte-level BPE: every byte is shown as a printable
// character (printable Latin-1 maps to itself, the rest to U+0100 onwards: space is 'Ġ', '\n' is 'Ċ'),
// so a vocabulary of byte strings can be stored as text.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::byte_level {

// UTF-8 of the character that stands for byte b.
std::string_view char_of_byte(uint8_t b);

// The byte a character stands for, or -1 when it is not in the table.
int byte_of_char(char32_t cp);

// Appends the byte-level text of raw bytes.
void append_encoded(std::string& out, std::string_view bytes);

// Appends the bytes that a byte-level string stands for. Returns false (and appends nothing) if
// some character is not in the table.
bool append_decoded(std::string& out, std::string_view text);

}  // namespace ferry::byte_level
