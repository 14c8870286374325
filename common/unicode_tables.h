// Unicode character classes for the GPT-2 pre-tokenizer (letters, numbers, White_Space) and small
// UTF-8 helpers (a forgiving decoder, an encoder). The tables live in the generated unicode_tables.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvmesh {

enum class CharClass : uint8_t { other = 0, letter, number, space };

// Class of one code point: letter (L*), number (N*), space (White_Space) or other. Binary search.
CharClass unicode_char_class(uint32_t cp);

inline constexpr uint32_t k_invalid_code_point = 0xFFFFFFFFu;

// For a byte that starts a multi-byte sequence: its length (2..4) and the range allowed for the
// second byte (which rules out overlong forms, surrogates and code points past U+10FFFF).
// Returns 0 for ASCII, continuation bytes and bytes that never start well-formed UTF-8.
inline size_t utf8_lead_info(unsigned char b0, unsigned char* lo, unsigned char* hi) {
  *lo = 0x80, *hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) return 2;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (b0 == 0xE0) *lo = 0xA0;
    if (b0 == 0xED) *hi = 0x9F;
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (b0 == 0xF0) *lo = 0x90;
    if (b0 == 0xF4) *hi = 0x8F;
    return 4;
  }
  return 0;
}

// Decodes the character at s[pos] (pos < s.size()) into *cp and returns its length in bytes.
// Anything that is not well-formed UTF-8 (stray continuation byte, overlong form, surrogate,
// past U+10FFFF, truncated sequence) is one byte long with *cp = k_invalid_code_point.
inline size_t utf8_decode(std::string_view s, size_t pos, uint32_t* cp) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + pos;
  *cp = k_invalid_code_point;
  if (p[0] < 0x80) {
    *cp = p[0];
    return 1;
  }
  unsigned char lo = 0, hi = 0;
  const size_t len = utf8_lead_info(p[0], &lo, &hi);
  if (len == 0 || s.size() - pos < len || p[1] < lo || p[1] > hi) return 1;
  uint32_t value = p[0] & (0x7F >> len);
  for (size_t i = 1; i < len; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 1;
    value = (value << 6) | (p[i] & 0x3F);
  }
  *cp = value;
  return len;
}

// Appends the UTF-8 form of a code point (cp <= U+10FFFF).
inline void utf8_append(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace kvmesh
