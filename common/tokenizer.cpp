// GPT-2 byte-level BPE: loads vocab.json + merges.txt or tokenizer.json, runs the GPT-2
// pre-tokenizer regex by hand, applies merges by rank, and decodes ids back to bytes.
#include "common/tokenizer.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <shared_mutex>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "common/file_read.h"
#include "common/unicode_tables.h"

namespace kvmesh {
namespace {

using json = nlohmann::json;

constexpr int64_t k_max_token_id = (int64_t{1} << 24) - 1;  // guards the id -> bytes table size
constexpr size_t k_max_cached_piece = 64;                   // bytes; longer pieces skip the cache
constexpr size_t k_max_cache_entries = 1 << 16;             // the cache is cleared when full
constexpr int32_t k_dead_symbol = INT32_MIN;
const char* const k_eos_text = "<|endoftext|>";

// ---- GPT-2's byte <-> printable code point mapping ----

struct ByteMap {
  std::array<uint32_t, 256> byte_to_cp{};
  std::array<int16_t, 512> cp_to_byte{};  // -1 where a code point is no byte's image
};

const ByteMap& byte_map() {
  static const ByteMap map = [] {
    ByteMap m;
    m.cp_to_byte.fill(-1);
    uint32_t next_extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      m.byte_to_cp[b] = printable ? b : next_extra++;
      m.cp_to_byte[m.byte_to_cp[b]] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return map;
}

// A vocabulary string (bytes shown as printable code points) back to raw bytes. A character that
// is no byte's image is kept as its own UTF-8, so odd vocabularies load instead of failing.
std::string unmap_token(std::string_view token) {
  const ByteMap& map = byte_map();
  std::string bytes;
  for (size_t pos = 0; pos < token.size();) {
    uint32_t cp = 0;
    const size_t len = utf8_decode(token, pos, &cp);
    if (cp < map.cp_to_byte.size() && map.cp_to_byte[cp] >= 0) {
      bytes += static_cast<char>(map.cp_to_byte[cp]);
    } else {
      bytes.append(token.substr(pos, len));
    }
    pos += len;
  }
  return bytes;
}

// ---- the GPT-2 pre-tokenizer ----
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

struct CharInfo {
  CharClass cls;
  size_t len;
};

constexpr std::array<CharClass, 128> k_ascii_classes = [] {
  std::array<CharClass, 128> t{};
  for (int c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) t[c] = CharClass::letter;
    else if (c >= '0' && c <= '9') t[c] = CharClass::number;
    else if (c == ' ' || (c >= 0x09 && c <= 0x0D)) t[c] = CharClass::space;
    else t[c] = CharClass::other;
  }
  return t;
}();

// Invalid UTF-8 bytes are one-byte "other" characters.
inline CharInfo char_at(std::string_view s, size_t pos) {
  const auto b = static_cast<unsigned char>(s[pos]);
  if (b < 0x80) return {k_ascii_classes[b], 1};
  uint32_t cp = 0;
  const size_t len = utf8_decode(s, pos, &cp);
  if (cp == k_invalid_code_point) return {CharClass::other, 1};
  return {unicode_char_class(cp), len};
}

size_t run_end(std::string_view s, size_t pos, CharClass cls) {
  while (pos < s.size()) {
    const CharInfo c = char_at(s, pos);
    if (c.cls != cls) break;
    pos += c.len;
  }
  return pos;
}

size_t contraction_length(std::string_view s, size_t pos) {
  if (s[pos] != '\'') return 0;
  const std::string_view rest = s.substr(pos + 1);
  for (std::string_view suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
    if (rest.starts_with(suffix)) return 1 + suffix.size();
  }
  return 0;
}

// End of the pre-token that starts at pos (pos < s.size()), as the regex would match it.
size_t next_pretoken(std::string_view s, size_t pos) {
  if (const size_t n = contraction_length(s, pos)) return pos + n;
  const CharInfo first = char_at(s, pos);
  if (first.cls != CharClass::space) return run_end(s, pos + first.len, first.cls);
  if (s[pos] == ' ' && pos + 1 < s.size()) {  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
    const CharInfo next = char_at(s, pos + 1);
    if (next.cls != CharClass::space) return run_end(s, pos + 1 + next.len, next.cls);
  }
  // '\s+(?!\S)': a run that ends before a non-space gives up its last character; then '\s+'.
  size_t last = pos, end = pos;
  while (end < s.size()) {
    const CharInfo c = char_at(s, end);
    if (c.cls != CharClass::space) break;
    last = end;
    end += c.len;
  }
  return (end == s.size() || last == pos) ? end : last;
}

// ---- loading ----

struct MergeRule {
  int32_t rank;
  int32_t merged_id;
};

inline uint64_t pair_key(int32_t left, int32_t right) {
  return (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// What the file formats have in common, before it becomes lookup tables.
struct LoadedVocab {
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> vocab;  // mapped -> id
  std::vector<std::pair<std::string, std::string>> merges;                      // rank order
  std::vector<std::pair<std::string, int32_t>> added;                          // raw text -> id
};

// Tokenizer files are a few MB (tokenizer.json of a large vocabulary: tens of MB).
constexpr uint64_t kMaxTokenizerFileBytes = 512ull << 20;

Result<std::string> read_text_file(const std::string& path) { return read_regular_file(path, kMaxTokenizerFileBytes); }

Result<json> parse_json_file(const std::string& path) {
  KVMESH_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    try {
      [[maybe_unused]] const json again = json::parse(text);  // only for the parser's message
    } catch (const json::exception& e) {
      return invalid_argument(path + ": malformed JSON: " + e.what());
    }
    return invalid_argument(path + ": malformed JSON");
  }
  return j;
}

Result<int32_t> parse_token_id(const json& value, const std::string& what) {
  if (!value.is_number_integer()) return invalid_argument(what + " has a non-integer id");
  const bool in_range = value.is_number_unsigned() ? value.get<uint64_t>() <= k_max_token_id
                                                   : value.get<int64_t>() >= 0 &&
                                                         value.get<int64_t>() <= k_max_token_id;
  if (!in_range) return invalid_argument(what + " has an id outside [0, 2^24)");
  return static_cast<int32_t>(value.get<int64_t>());
}

// {"token": id, ...} as in vocab.json and tokenizer.json's model.vocab.
Status parse_vocab_object(const json& j, const std::string& where, LoadedVocab* out) {
  if (!j.is_object()) return invalid_argument(where + ": expected an object of token -> id");
  for (const auto& [token, value] : j.items()) {
    KVMESH_ASSIGN_OR_RETURN(int32_t id, parse_token_id(value, where + ": token \"" + token + "\""));
    out->vocab.emplace(token, id);
  }
  return Status::ok();
}

Status load_merges_txt(const std::string& path, LoadedVocab* out) {
  KVMESH_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  std::istringstream lines(text);
  std::string line;
  for (int line_no = 1; std::getline(lines, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos) {
      return invalid_argument(path + ":" + std::to_string(line_no) +
                              ": expected two tokens separated by one space");
    }
    out->merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return Status::ok();
}

// tokenizer.json's model.merges: "a b" strings or ["a", "b"] arrays.
Status parse_merges_array(const json& merges, const std::string& where, LoadedVocab* out) {
  if (!merges.is_array()) return invalid_argument(where + ": model.merges is not an array");
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    const std::string bad = where + ": model.merges[" + std::to_string(i) + "] ";
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return invalid_argument(bad + "is not two tokens separated by one space");
      }
      out->merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      out->merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return invalid_argument(bad + "is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  return Status::ok();
}

Status parse_added_tokens(const json& root, const std::string& where, LoadedVocab* out) {
  const auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return Status::ok();
  if (!it->is_array()) return invalid_argument(where + ": added_tokens is not an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& t = (*it)[i];
    const std::string what = where + ": added_tokens[" + std::to_string(i) + "]";
    if (!t.is_object() || !t.contains("id") || !t.contains("content") || !t["content"].is_string()) {
      return invalid_argument(what + " needs an integer id and a string content");
    }
    KVMESH_ASSIGN_OR_RETURN(int32_t id, parse_token_id(t["id"], what));
    out->added.emplace_back(t["content"].get<std::string>(), id);
  }
  return Status::ok();
}

Status load_tokenizer_json(const std::string& path, LoadedVocab* out) {
  KVMESH_ASSIGN_OR_RETURN(json root, parse_json_file(path));
  if (!root.is_object()) return invalid_argument(path + ": expected a JSON object");
  const auto model = root.find("model");
  if (model == root.end() || !model->is_object()) return invalid_argument(path + ": no model object");
  const auto type = model->find("type");
  if (type != model->end() && !(type->is_string() && type->get<std::string>() == "BPE")) {
    return invalid_argument(path + ": model.type is " + type->dump() + ", only BPE is supported");
  }
  const auto vocab = model->find("vocab");
  if (vocab == model->end()) return invalid_argument(path + ": no model.vocab");
  KVMESH_RETURN_IF_ERROR(parse_vocab_object(*vocab, path + ": model.vocab", out));
  const auto merges = model->find("merges");
  if (merges == model->end()) return invalid_argument(path + ": no model.merges");
  KVMESH_RETURN_IF_ERROR(parse_merges_array(*merges, path, out));
  return parse_added_tokens(root, path, out);
}

}  // namespace

// ---- the tokenizer proper ----

struct Tokenizer::Impl {
  std::vector<std::string> id_to_bytes_;           // [vocab_size]
  std::array<int32_t, 256> byte_ids_{};            // id of each one-byte token, or -1
  std::unordered_map<uint64_t, MergeRule> merges_;  // pair_key(left, right) -> rule
  int32_t eos_id_ = -1;
  int32_t prompt_bos_ = -1;  // put before every prompt (encode_prompt); -1: none

  // Pre-token bytes -> ids. encode() is const and may run on many threads at once.
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;

  Status build(const std::string& source, const LoadedVocab& loaded);
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
};

Status Tokenizer::Impl::build(const std::string& source, const LoadedVocab& loaded) {
  if (loaded.vocab.empty()) return invalid_argument(source + ": empty vocabulary");
  int32_t max_id = 0;
  for (const auto& [token, id] : loaded.vocab) max_id = std::max(max_id, id);
  for (const auto& [content, id] : loaded.added) max_id = std::max(max_id, id);
  id_to_bytes_.assign(static_cast<size_t>(max_id) + 1, std::string());
  for (const auto& [token, id] : loaded.vocab) id_to_bytes_[id] = unmap_token(token);
  for (const auto& [content, id] : loaded.added) id_to_bytes_[id] = content;  // raw text

  auto find_id = [&](std::string_view token) {
    const auto it = loaded.vocab.find(token);
    return it == loaded.vocab.end() ? -1 : it->second;
  };
  const ByteMap& map = byte_map();
  for (int b = 0; b < 256; ++b) {
    std::string mapped;
    utf8_append(map.byte_to_cp[b], mapped);
    byte_ids_[b] = find_id(mapped);
  }
  merges_.reserve(loaded.merges.size());
  for (size_t rank = 0; rank < loaded.merges.size(); ++rank) {
    const auto& [left, right] = loaded.merges[rank];
    const int32_t left_id = find_id(left), right_id = find_id(right);
    const int32_t merged_id = find_id(left + right);
    if (left_id < 0 || right_id < 0 || merged_id < 0) continue;  // unknown tokens: ignored
    merges_.emplace(pair_key(left_id, right_id), MergeRule{static_cast<int32_t>(rank), merged_id});
  }
  eos_id_ = find_id(k_eos_text);
  for (const auto& [content, id] : loaded.added) {
    if (eos_id_ < 0 && content == k_eos_text) eos_id_ = id;
  }
  return Status::ok();
}

// Byte-pair merging of one pre-token: always the lowest-ranked adjacent pair first (leftmost on a
// tie), with a heap over a linked list of symbols so that long pieces stay O(n log n).
void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;  // -1 at either end
  };
  struct Candidate {
    int32_t rank, left, left_id, right_id, merged_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  const auto n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push_pair = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const int32_t left_id = symbols[left].id, right_id = symbols[symbols[left].next].id;
    const auto it = merges_.find(pair_key(left_id, right_id));
    if (it != merges_.end()) heap.push({it->second.rank, left, left_id, right_id, it->second.merged_id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = symbols[c.left];
    if (left.id != c.left_id || left.next < 0) continue;  // stale: the pair changed since
    Symbol& right = symbols[left.next];
    if (right.id != c.right_id) continue;
    left.id = c.merged_id;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = k_dead_symbol;
    push_pair(left.prev);
    push_pair(c.left);
  }
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) out.push_back(symbols[i].id);  // a byte missing from the vocab drops
  }
}

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {
    const int32_t id = byte_ids_[static_cast<unsigned char>(piece[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  const bool cacheable = piece.size() <= k_max_cached_piece;
  if (cacheable) {
    std::shared_lock lock(cache_mutex_);
    const auto it = cache_.find(piece);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  bpe(piece, out);
  if (cacheable) {
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() >= k_max_cache_entries) cache_.clear();
    cache_.emplace(std::string(piece), std::vector<int32_t>(out.begin() + start, out.end()));
  }
}

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_vocab_merges(const std::string& vocab_path,
                                                                const std::string& merges_path) {
  LoadedVocab loaded;
  KVMESH_ASSIGN_OR_RETURN(json vocab, parse_json_file(vocab_path));
  KVMESH_RETURN_IF_ERROR(parse_vocab_object(vocab, vocab_path, &loaded));
  KVMESH_RETURN_IF_ERROR(load_merges_txt(merges_path, &loaded));
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  KVMESH_RETURN_IF_ERROR(tokenizer->impl_->build(vocab_path, loaded));
  return Result<std::unique_ptr<Tokenizer>>(std::move(tokenizer));
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_tokenizer_json(const std::string& path) {
  LoadedVocab loaded;
  KVMESH_RETURN_IF_ERROR(load_tokenizer_json(path, &loaded));
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  KVMESH_RETURN_IF_ERROR(tokenizer->impl_->build(path, loaded));
  return Result<std::unique_ptr<Tokenizer>>(std::move(tokenizer));
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_model_dir(const std::string& model_dir,
                                                             const std::string& fallback_dir) {
  // Anything at the path, even a dangling link or a FIFO: used, so that a tokenizer file that is
  // there but unusable is an error instead of a silent fall back to another tokenizer.
  auto present = [](const std::string& path) {
    std::error_code ec;
    return std::filesystem::symlink_status(path, ec).type() != std::filesystem::file_type::not_found;
  };
  if (!model_dir.empty()) {
    const std::string tokenizer_json = model_dir + "/tokenizer.json";
    if (present(tokenizer_json)) return from_tokenizer_json(tokenizer_json);
    const std::string vocab = model_dir + "/vocab.json", merges = model_dir + "/merges.txt";
    if (present(vocab) || present(merges)) return from_vocab_merges(vocab, merges);
  }
  return from_vocab_merges(fallback_dir + "/vocab.json", fallback_dir + "/merges.txt");
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = next_pretoken(text, pos);
    impl_->encode_piece(text.substr(pos, end - pos), ids);
    pos = end;
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (const int32_t id : ids) {
    if (id >= 0 && static_cast<size_t>(id) < impl_->id_to_bytes_.size()) text += impl_->id_to_bytes_[id];
  }
  return text;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_to_bytes_.size()) return std::string();
  return impl_->id_to_bytes_[id];
}

Status check_tokenizer_decodes(const Tokenizer& tokenizer, int32_t model_vocab_size, const std::string& where,
                               bool padded_tail) {
  int64_t missing = 0;
  int32_t first = -1;
  const int32_t checked = padded_tail ? std::min(model_vocab_size, tokenizer.vocab_size()) : model_vocab_size;
  for (int32_t id = 0; id < checked; ++id) {
    if (!tokenizer.token_bytes(id).empty()) continue;
    if (first < 0) first = id;
    ++missing;
  }
  if (missing == 0) return Status::ok();
  return invalid_argument(where + ": the tokenizer cannot decode " + std::to_string(missing) + " of the model's " +
                          std::to_string(model_vocab_size) + " token ids (the first is " + std::to_string(first) +
                          "; the tokenizer knows " + std::to_string(tokenizer.vocab_size()) +
                          " ids): the tokenizer files do not belong to this model");
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_bytes_.size()); }

int32_t Tokenizer::eos_token_id() const { return impl_->eos_id_; }

std::vector<int32_t> Tokenizer::encode_prompt(std::string_view text) const {
  std::vector<int32_t> ids = encode(text);
  if (impl_->prompt_bos_ >= 0) ids.insert(ids.begin(), impl_->prompt_bos_);
  return ids;
}

void Tokenizer::set_prompt_bos(int32_t id) { impl_->prompt_bos_ = id; }
int32_t Tokenizer::prompt_bos() const { return impl_->prompt_bos_; }

size_t utf8_complete_prefix(std::string_view bytes) {
  const size_t n = bytes.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto b = static_cast<unsigned char>(bytes[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // a continuation byte: look further back for its lead
    unsigned char lo = 0, hi = 0;
    const size_t len = utf8_lead_info(b, &lo, &hi);
    if (len <= back) return n;  // ASCII, an invalid byte, or a sequence that is long enough
    if (back >= 2) {            // a bad second byte makes these invalid bytes, not a partial char
      const auto second = static_cast<unsigned char>(bytes[n - back + 1]);
      if (second < lo || second > hi) return n;
    }
    return n - back;
  }
  return n;
}

}  // namespace kvmesh
