// RequestRecord: everything kvmesh-load measured about one request (times are seconds from the
// start of the run's clock), and the derived numbers every report uses (TTFT, TPOT, ITL, E2E).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvmesh::load {

enum class Outcome { pending, ok, failed, disconnected };

const char* outcome_name(Outcome outcome);

struct RequestRecord {
  int64_t id = 0;          // order in the plan
  int32_t session = 0;     // multiturn conversation (= id for single-turn workloads)
  int32_t turn = 0;
  bool disconnect_planned = false;
  bool streamed = true;
  double scheduled_s = 0.0;    // when the plan wanted it sent (= sent_s in a closed loop)
  double sent_s = 0.0;         // when it was handed to the HTTP client
  double first_token_s = -1.0; // first chunk with tokens; < 0 none
  double done_s = 0.0;
  std::vector<double> chunk_s;        // arrival of each chunk with tokens
  std::vector<int32_t> chunk_tokens;  // tokens in that chunk
  int64_t expected_input_tokens = -1;
  int64_t expected_output_tokens = -1;  // pinned length; < 0 not pinned
  int64_t prompt_tokens = -1;      // from usage
  int64_t completion_tokens = -1;  // from usage (or the chunks when the server sent none)
  int64_t cached_tokens = -1;      // usage.prompt_tokens_details.cached_tokens
  bool usage_seen = false;
  Outcome outcome = Outcome::pending;
  int http_status = 0;
  std::string error_kind;  // http_<status>, timeout, reset, connect, sse_error, incomplete, bad_response
  std::string error_message;
  std::string text;         // generated text (multiturn history)
  std::string response_id;  // the server's "id" of the completion (joins with its request log)

  bool ok() const { return outcome == Outcome::ok; }
  double e2el_ms() const { return (done_s - sent_s) * 1e3; }
  double sched_e2el_ms() const { return (done_s - scheduled_s) * 1e3; }
  bool has_ttft() const { return streamed && first_token_s >= 0.0; }
  double ttft_ms() const { return (first_token_s - sent_s) * 1e3; }
  // (E2E - TTFT) / (tokens - 1); false when not streamed or fewer than two tokens.
  bool has_tpot() const { return has_ttft() && completion_tokens > 1; }
  double tpot_ms() const;
  // Each gap between chunks divided by the chunk's tokens, once per token.
  std::vector<double> itls_ms() const;
};

}  // namespace kvmesh::load
