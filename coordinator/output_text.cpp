// OutputText: turns a sequence's generated tokens into streamed UTF-8 text and finds stop strings.
#include "coordinator/output_text.h"

#include <algorithm>

#include "common/tokenizer.h"

namespace kvmesh {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when invalid or incomplete.
size_t utf8_sequence_length(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) n = 3;
  else if (c >= 0xf0 && c <= 0xf4) n = 4;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  const auto c1 = static_cast<unsigned char>(s[i + 1]);
  if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
      (c == 0xf4 && c1 > 0x8f))
    return 0;
  return n;
}

}  // namespace

std::string sanitize_utf8(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const size_t n = utf8_sequence_length(bytes, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(bytes, i, n);
      i += n;
    }
  }
  return out;
}

OutputText::OutputText(const Tokenizer* tokenizer, std::vector<std::string> stop)
    : tokenizer_(tokenizer), stop_(std::move(stop)) {
  for (const auto& s : stop_) max_stop_len_ = std::max(max_stop_len_, s.size());
}

bool OutputText::append(int32_t token, bool check_stop) {
  if (stopped_) return true;
  const size_t old_size = bytes_.size();
  bytes_ += tokenizer_->token_bytes(token);
  if (stop_.empty() || !check_stop) return false;
  // A new match must end inside the new bytes; search from where it could start.
  const size_t from = old_size >= max_stop_len_ ? old_size - max_stop_len_ + 1 : 0;
  size_t best = std::string::npos;
  for (const auto& s : stop_) {
    const size_t at = bytes_.find(s, from);
    if (at != std::string::npos && at < best) {
      best = at;
      matched_stop_ = s;
    }
  }
  if (best == std::string::npos) return false;
  bytes_.resize(best);
  stopped_ = true;
  return true;
}

std::string OutputText::take_ready() {
  size_t ready = sent_ + utf8_complete_prefix(std::string_view(bytes_).substr(sent_));
  if (!stopped_ && max_stop_len_ > 1) {
    // Hold back a tail that could still grow into a stop string.
    size_t hold = 0;
    for (const auto& s : stop_) {
      for (size_t len = std::min(s.size() - 1, ready - sent_); len > hold; --len) {
        if (bytes_.compare(ready - len, len, s, 0, len) == 0) {
          hold = len;
          break;
        }
      }
    }
    ready -= hold;
    // Do not split a character when cutting the held tail.
    while (ready > sent_ && ready < bytes_.size() && (static_cast<unsigned char>(bytes_[ready]) & 0xc0) == 0x80) --ready;
  }
  if (ready <= sent_) return "";
  std::string out = bytes_.substr(sent_, ready - sent_);
  sent_ = ready;
  return sanitize_utf8(out);
}

std::string OutputText::take_rest() {
  std::string out = sanitize_utf8(bytes_.substr(sent_));
  sent_ = bytes_.size();
  return out;
}

}  // namespace kvmesh
