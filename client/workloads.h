// Workloads: what kvmesh-load sends. Random prompts of exact token lengths (counted and adjusted
// through the server's /tokenize), ShareGPT conversations, JSONL replay with timestamps, and
// multi-turn chats with shared system prompts; plus the request body of one turn. The same seed
// gives the same prompts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/load_config.h"

namespace kvmesh::load {

// Counts tokens the way the server does. The HTTP one calls /tokenize; tests use a fake. A
// server without /tokenize gets one that counts nothing (can_count() false): prompts are then
// built from words without exact lengths and their token counts come from the server's usage.
class TokenService {
 public:
  virtual ~TokenService() = default;
  virtual bool can_count() const { return true; }
  // Tokens of each text as a completion prompt; -1 where it could not be counted.
  virtual std::vector<int64_t> count(const std::vector<std::string>& texts) = 0;
  // Tokens of [{"role": "user", "content": text}] after the chat template (with the assistant
  // prompt); -1 where it could not be counted.
  virtual std::vector<int64_t> count_chat(const std::vector<std::string>& texts) = 0;
};

struct TurnSpec {
  std::string text;            // the prompt (single turn) or the user message (multiturn)
  int64_t input_tokens = -1;   // expected prompt tokens; -1 unknown
  int32_t max_tokens = 16;
};

struct SessionSpec {
  std::vector<TurnSpec> turns;
  int32_t system_index = -1;  // into Workload::system_prompts; -1 none
  double start_s = -1.0;      // replay: seconds from the start; < 0 untimed
};

struct Workload {
  std::vector<std::string> system_prompts;
  std::vector<SessionSpec> sessions;
  bool timed = false;    // sessions carry start_s (replay)
  std::string summary;   // one line for the report
  int64_t n_requests() const;
};

// The words random prompts are made of: common English words that are one GPT-2 token each
// with a leading space, so a prompt of N words is N tokens.
const std::vector<std::string>& prompt_words();
// Words of `words` that the server counts as one token each (one /tokenize when all are; all of
// them when the server cannot count).
std::vector<std::string> single_token_words(TokenService& tokens, const std::vector<std::string>& words);
// `n_words` words drawn by `rng_seed`, each with a leading space.
std::string random_text(const std::vector<std::string>& words, int64_t n_words, uint64_t rng_seed);

struct WorkloadInputs {
  const LoadConfig* config = nullptr;
  TokenService* tokens = nullptr;
  int64_t n_sessions = 0;      // requests for single-turn workloads, conversations for multiturn
  uint64_t seed = 0;
  int64_t max_model_len = 0;   // 0 = unknown
};

// Builds the workload of config.workload; on failure returns false with `error` set.
bool build_workload(const WorkloadInputs& in, Workload& out, std::string& error);
bool build_random(const WorkloadInputs& in, Workload& out, std::string& error);
bool build_multiturn(const WorkloadInputs& in, Workload& out, std::string& error);
bool build_sharegpt(const WorkloadInputs& in, Workload& out, std::string& error);
bool build_replay(const WorkloadInputs& in, Workload& out, std::string& error);

// Texts whose token counts must equal `targets` (chat: after the template): each is grown or
// trimmed by whole words until /tokenize agrees (a few rounds at most). Returns the mismatches
// left.
int64_t fit_lengths(TokenService& tokens, bool chat, const std::vector<std::string>& words,
                    std::vector<std::string>& texts, const std::vector<int64_t>& targets, uint64_t seed);

struct BodyOptions {
  std::string model;
  bool chat = false;
  bool stream = true;
  bool token_ids = true;
  bool pin_output = true;
  double temperature = 0.0;
  uint64_t seed = 0;  // per-request sampling seed, sent when temperature > 0
  nlohmann::json extra_body = nlohmann::json::object();  // merged into every body last
};

// The JSON body of `turn` of `session`, given the replies to its earlier turns.
std::string request_body(const BodyOptions& options, const Workload& workload, const SessionSpec& session,
                         int32_t turn, const std::vector<std::string>& replies);

// `k` of the ids 0..n-1, chosen by `seed` (a partial Fisher-Yates shuffle); sorted.
std::vector<int64_t> choose_subset(int64_t n, int64_t k, uint64_t seed);

}  // namespace kvmesh::load
