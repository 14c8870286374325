// File workloads: ShareGPT conversations (vLLM's sampling and filters) and JSONL replay traces
// (timestamp_ms, prompt, max_tokens).
#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "client/rng.h"
#include "client/workloads.h"

namespace kvmesh::load {
namespace {

using nlohmann::json;

constexpr size_t kTokenizeBatch = 256;
constexpr int64_t kMaxPromptLen = 1024;  // vLLM's ShareGPT filters
constexpr int64_t kMaxTotalLen = 2048;

struct Pair {
  std::string prompt;
  std::string completion;
};

// The first human turn and the reply to it, of every conversation that has both.
bool read_sharegpt(const std::string& path, std::vector<Pair>& pairs, std::string& error) {
  std::ifstream file(path);
  if (!file) {
    error = "cannot open " + path;
    return false;
  }
  json data = json::parse(file, nullptr, false);
  if (data.is_discarded() || !data.is_array()) {
    error = path + ": not a ShareGPT JSON list";
    return false;
  }
  for (const json& item : data) {
    if (!item.is_object()) continue;
    auto conv = item.find("conversations");
    if (conv == item.end()) conv = item.find("conversation");
    if (conv == item.end() || !conv->is_array() || conv->size() < 2) continue;
    auto text = [](const json& turn) -> std::string {
      if (!turn.is_object()) return "";
      for (const char* key : {"value", "content"})
        if (turn.contains(key) && turn[key].is_string()) return turn[key].get<std::string>();
      return "";
    };
    Pair p{text((*conv)[0]), text((*conv)[1])};
    if (!p.prompt.empty()) pairs.push_back(std::move(p));
  }
  return true;
}

void shuffle(std::vector<Pair>& pairs, uint64_t seed) {
  Rng rng(seed ^ 0x54a3e69);
  for (size_t i = pairs.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(i) - 1));
    std::swap(pairs[i - 1], pairs[j]);
  }
}

// Without /tokenize: about 4 characters a token (English text and GPT-style tokenizers).
std::vector<int64_t> estimated_tokens(const std::vector<std::string>& texts) {
  std::vector<int64_t> out;
  for (const std::string& t : texts) out.push_back(static_cast<int64_t>((t.size() + 3) / 4));
  return out;
}

}  // namespace

bool build_sharegpt(const WorkloadInputs& in, Workload& out, std::string& error) {
  const LoadConfig& c = *in.config;
  const bool exact = in.tokens->can_count();
  std::vector<Pair> pairs;
  if (!read_sharegpt(c.dataset_path, pairs, error)) return false;
  shuffle(pairs, in.seed);
  const int64_t max_total = in.max_model_len > 0 ? std::min(kMaxTotalLen, in.max_model_len) : kMaxTotalLen;
  out.sessions.clear();
  for (size_t start = 0; start < pairs.size() && static_cast<int64_t>(out.sessions.size()) < in.n_sessions;
       start += kTokenizeBatch) {
    const size_t end = std::min(pairs.size(), start + kTokenizeBatch);
    std::vector<std::string> texts;
    for (size_t i = start; i < end; ++i) {
      texts.push_back(pairs[i].prompt);
      texts.push_back(pairs[i].completion);
    }
    const auto counts = exact ? in.tokens->count(texts) : estimated_tokens(texts);
    for (size_t i = start; i < end && static_cast<int64_t>(out.sessions.size()) < in.n_sessions; ++i) {
      const int64_t n_prompt = counts[2 * (i - start)];
      const int64_t n_out = c.output_len_given ? c.output_len.hi : counts[2 * (i - start) + 1];
      if (n_prompt < 4 || n_out < 4 || n_prompt > kMaxPromptLen || n_prompt + n_out > max_total) continue;
      SessionSpec s;
      s.turns.push_back(TurnSpec{pairs[i].prompt, c.chat() || !exact ? -1 : n_prompt, static_cast<int32_t>(n_out)});
      out.sessions.push_back(std::move(s));
    }
  }
  if (out.sessions.empty()) {
    error = c.dataset_path + ": no conversation passes the length filters";
    return false;
  }
  out.summary = "sharegpt: " + std::to_string(out.sessions.size()) + " conversations from " + c.dataset_path;
  if (static_cast<int64_t>(out.sessions.size()) < in.n_sessions) {
    out.summary += " (asked for " + std::to_string(in.n_sessions) + ")";
  }
  if (!exact) out.summary += " (lengths estimated at 4 characters a token: the server has no /tokenize)";
  return true;
}

bool build_replay(const WorkloadInputs& in, Workload& out, std::string& error) {
  const LoadConfig& c = *in.config;
  std::ifstream file(c.dataset_path);
  if (!file) {
    error = "cannot open " + c.dataset_path;
    return false;
  }
  out.sessions.clear();
  out.timed = true;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(file, line) && (in.n_sessions <= 0 || static_cast<int64_t>(out.sessions.size()) < in.n_sessions)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json item = json::parse(line, nullptr, false);
    const bool ok = !item.is_discarded() && item.is_object() && item.contains("timestamp_ms") &&
                    item["timestamp_ms"].is_number() && item.contains("prompt") && item["prompt"].is_string() &&
                    item.contains("max_tokens") && item["max_tokens"].is_number_integer() &&
                    item["max_tokens"].get<int64_t>() >= 1;
    if (!ok) {
      error = c.dataset_path + ":" + std::to_string(line_no) +
              ": expected {\"timestamp_ms\": number, \"prompt\": string, \"max_tokens\": integer >= 1}";
      return false;
    }
    SessionSpec s;
    s.start_s = item["timestamp_ms"].get<double>() / 1000.0;
    s.turns.push_back(TurnSpec{item["prompt"].get<std::string>(), -1,
                               static_cast<int32_t>(std::min<int64_t>(item["max_tokens"].get<int64_t>(), 1 << 30))});
    out.sessions.push_back(std::move(s));
  }
  if (out.sessions.empty()) {
    error = c.dataset_path + ": no requests";
    return false;
  }
  std::stable_sort(out.sessions.begin(), out.sessions.end(),
                   [](const SessionSpec& a, const SessionSpec& b) { return a.start_s < b.start_s; });
  const double t0 = out.sessions.front().start_s;
  for (SessionSpec& s : out.sessions) s.start_s = (s.start_s - t0) / c.replay_speed;
  std::ostringstream summary;
  summary << "replay: " << out.sessions.size() << " requests over " << out.sessions.back().start_s << " s from "
          << c.dataset_path;
  if (c.replay_speed != 1.0) summary << " at " << c.replay_speed << "x";
  out.summary = summary.str();
  return true;
}

}  // namespace kvmesh::load
