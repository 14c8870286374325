// OutputText: turns a sequence's generated tokens into streamed UTF-8 text and finds stop strings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvmesh {

class Tokenizer;

class OutputText {
 public:
  OutputText(const Tokenizer* tokenizer, std::vector<std::string> stop);

  // Appends a token's bytes. With check_stop, returns true when a stop string now ends in the
  // new bytes; the text is then cut before it.
  bool append(int32_t token, bool check_stop);
  // Text that is safe to send now: valid UTF-8 and not possibly the start of a stop string.
  // Advances the sent position.
  std::string take_ready();
  // Everything not sent yet (at the end of the sequence); partial characters become U+FFFD.
  std::string take_rest();
  const std::string& matched_stop() const { return matched_stop_; }

 private:
  const Tokenizer* tokenizer_;
  std::vector<std::string> stop_;
  size_t max_stop_len_ = 0;
  std::string bytes_;   // all emitted-token bytes so far (cut at a matched stop string)
  size_t sent_ = 0;     // bytes of bytes_ already handed out
  bool stopped_ = false;
  std::string matched_stop_;
};

// Replaces invalid UTF-8 sequences with U+FFFD.
std::string sanitize_utf8(const std::string& bytes);

}  // namespace kvmesh
