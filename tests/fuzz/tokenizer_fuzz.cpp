// Fuzzes the shipped GPT-2 tokenizer. Input: a mode byte, then text (even: its ids are in the
// vocabulary and decode to it byte for byte) or little-endian int32 ids (odd, any value: decode is
// each id's bytes joined, nothing for an unknown id, and encoding that text decodes back to it).
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/tokenizer.h"
#include "fuzz_check.h"
#include "shipped_tokenizer.h"

namespace kvmesh {
namespace {

const Tokenizer& tokenizer() {
  static const auto tok = testing::gpt2_tokenizer();
  FUZZ_CHECK(tok != nullptr);
  return *tok;
}

void check_text(const Tokenizer& tok, std::string_view text) {
  const std::vector<int32_t> ids = tok.encode(text);
  for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
  FUZZ_CHECK(ids.size() <= text.size());
  FUZZ_CHECK(tok.decode(ids) == text);
  const size_t complete = utf8_complete_prefix(text);
  FUZZ_CHECK(complete <= text.size() && text.size() - complete < 4);
  // What is held back starts with the lead byte of a multi-byte character.
  FUZZ_CHECK(complete == text.size() || static_cast<unsigned char>(text[complete]) >= 0xC0);
}

void check_ids(const Tokenizer& tok, const uint8_t* data, size_t size) {
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  std::string joined;
  for (int32_t id : ids) {
    const std::string bytes = tok.token_bytes(id);
    FUZZ_CHECK((id >= 0 && id < tok.vocab_size()) || bytes.empty());
    joined += bytes;
  }
  const std::string text = tok.decode(ids);
  FUZZ_CHECK(text == joined);
  FUZZ_CHECK(tok.decode(tok.encode(text)) == text);
}

}  // namespace
}  // namespace kvmesh

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const kvmesh::Tokenizer& tok = kvmesh::tokenizer();
  if ((data[0] & 1) == 0) {
    kvmesh::check_text(tok, std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  } else {
    kvmesh::check_ids(tok, data + 1, size - 1);
  }
  return 0;
}
