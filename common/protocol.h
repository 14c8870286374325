// The step protocol between coordinator and workers: StepPlan (+ CacheOps) and StepResult.
// Plain structs; serialization with a version tag and bounds-checked decoding lives in protocol.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kvmesh {

constexpr int kMaxLogprobs = 20;         // top log-probs a client may ask for
constexpr int kMaxBeamWidth = 16;
// Top log-probs a worker may be asked for: beam search needs 2 x width candidates per beam.
constexpr int kMaxTopLogprobs = 2 * kMaxBeamWidth;

// OpenAI's logit_bias: `bias` is added to the logit of `token` before sampling.
struct TokenBias {
  int32_t token = 0;
  float bias = 0.0f;  // [-100, 100]
};
constexpr float kMaxLogitBias = 100.0f;

// How a sequence picks its next token. Stateless: the draw at position p uses (seed, p).
struct SamplingParams {
  float temperature = 1.0f;  // 0 means greedy
  float top_p = 1.0f;        // (0, 1]
  int32_t top_k = 0;         // 0 means off
  float min_p = 0.0f;        // [0, 1]
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
  int32_t n_logprobs = -1;   // top-N log-probs of each generated token; -1 none, 0 chosen only
  std::vector<TokenBias> logit_bias;  // distinct tokens

  bool greedy() const { return temperature <= 0.0f || top_k == 1; }
  bool has_penalties() const {
    return presence_penalty != 0.0f || frequency_penalty != 0.0f || repetition_penalty != 1.0f;
  }
  // The logits are changed before the draw: penalties or a logit bias.
  bool edits_logits() const { return has_penalties() || !logit_bias.empty(); }
};

// Page moves a worker performs before the step's compute. Ids are global page ids per tier.
enum class CacheOpKind : uint8_t {
  copy = 0,        // device page src -> device page dst (copy-on-write)
  swap_out = 1,    // device page src -> host slot dst
  swap_in = 2,     // host slot src -> device page dst
  disk_store = 3,  // host slot src -> disk slot dst
  disk_load = 4,   // disk slot src -> host slot dst
};

struct CacheOp {
  CacheOpKind kind = CacheOpKind::copy;
  int32_t src = 0;
  int32_t dst = 0;
  uint64_t page_hash = 0;  // identifies the page's tokens (checked on disk loads)
  int32_t n_tokens = 0;    // tokens held by the page
};

// One sequence's work in a step: a prefill chunk (many tokens) or a decode step (one token).
struct SeqWork {
  uint64_t seq_id = 0;
  int32_t n_past = 0;                  // tokens already in the KV cache; token i sits at n_past + i
  std::vector<int32_t> token_ids;      // tokens computed this step
  std::vector<int32_t> block_table;    // device pages holding positions [0, n_past + n_tokens)
  bool sample = false;                 // sample a token after the last of token_ids
  int32_t prompt_logprobs = -1;        // >= 0: log-prob (+ top-N) of each next prompt token
  int32_t next_prompt_token = -1;      // the prompt token after this chunk, or -1
  SamplingParams sampling;
  std::vector<int32_t> history_ids;    // prompt + output tokens, sent only when penalties are on
  int32_t n_history_prompt = 0;        // how many of history_ids are prompt tokens
  std::vector<int32_t> banned_token_ids;  // never sampled this step (stop tokens before min_tokens)

  int32_t n_tokens() const { return static_cast<int32_t>(token_ids.size()); }
};

struct StepPlan {
  uint64_t step_id = 0;
  bool shutdown = false;               // workers leave their loop
  std::vector<CacheOp> cache_ops;
  std::vector<SeqWork> seqs;

  int32_t n_tokens() const {
    int32_t n = 0;
    for (const auto& s : seqs) n += s.n_tokens();
    return n;
  }
};

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

// Log-prob of one known token (a prompt token or the sampled one) and the top-N at its position.
struct PositionLogprobs {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;
};

struct SeqResult {
  uint64_t seq_id = 0;
  int32_t token = -1;                        // sampled token, -1 when the step did not sample
  PositionLogprobs token_logprobs;           // filled when sampling.n_logprobs >= 0
  std::vector<PositionLogprobs> prompt_logprobs;  // one per known next prompt token in the chunk
};

// Seconds the workers spent per CacheOpKind in a step (index = kind), and on the forward.
struct StepTimings {
  float cache_op_seconds[5] = {0, 0, 0, 0, 0};
  float forward_seconds = 0;
};

struct StepResult {
  uint64_t step_id = 0;
  std::vector<SeqResult> seqs;             // in the order of StepPlan::seqs
  // Indices into StepPlan::cache_ops that failed on any rank: a disk page whose header or checksum
  // did not match, or a disk read/write error (ENOSPC included). The page is gone: a failed
  // disk_load leaves its host slot empty, a failed disk_store drops the page.
  std::vector<int32_t> failed_cache_ops;
  StepTimings timings;                     // measured on the sampling rank
  // A step that failed on the sampling rank comes back at once as its status (no seqs), so rank 0
  // ends the step's requests with it instead of waiting out the step timeout.
  StatusCode error_code = StatusCode::ok;
  std::string error;
};

// Wire format: magic, version, then the fields. Decoding checks every length, count and enum
// value and fails with invalid_argument on anything malformed; it never reads out of bounds.
constexpr uint32_t kProtocolMagic = 0x4b564d50;  // "KVMP"
constexpr uint16_t kProtocolVersion = 3;

std::string encode_step_plan(const StepPlan& plan);
Result<StepPlan> decode_step_plan(std::string_view bytes);
std::string encode_step_result(const StepResult& result);
Result<StepResult> decode_step_result(std::string_view bytes);

}  // namespace kvmesh
