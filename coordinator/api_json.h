// OpenAI-compatible API, shared pieces: ApiError (and its JSON body), ApiResult, the served model,
// and the parsed form of /v1/completions and /v1/chat/completions requests.
// Parsing lives in api_request.h, response and stream-chunk building in api_response.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "coordinator/request.h"

namespace kvmesh {

class Tokenizer;

// Responses keep their keys in insertion order ("id" first, top log-probs by rank).
using Json = nlohmann::ordered_json;

constexpr int32_t kMaxChoices = 16;      // most `n` per prompt
constexpr int32_t kMaxStopStrings = 16;  // most `stop` strings
constexpr const char* kDoneMarker = "[DONE]";  // payload of the last SSE event of a stream

// A request the API refuses, as OpenAI shapes it: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // offending parameter; "" is written as null
  std::string code;   // machine-readable code; "" is written as null
};

ApiError bad_request(std::string message, std::string param = "");       // 400
ApiError model_not_found(const std::string& model);                      // 404 model_not_found
ApiError server_error(std::string message);                              // 500
ApiError service_unavailable(std::string message);                       // 503 (the engine was lost)
Json error_body(const ApiError& error);

// Either a value or an ApiError.
template <typename T>
class [[nodiscard]] ApiResult {
 public:
  ApiResult(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  ApiResult(ApiError error) : v_(std::move(error)) {}   // NOLINT
  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const ApiError& error() const { return std::get<ApiError>(v_); }

 private:
  std::variant<T, ApiError> v_;
};

// What the server serves; requests are validated against it.
struct ServedModel {
  std::string name;          // the only accepted `model`
  int32_t n_positions = 0;   // context length: prompt + completion tokens
  int32_t vocab_size = 0;    // valid token ids are [0, vocab_size)
  int64_t created = 0;       // unix time the model was loaded (GET /v1/models)
  std::string fingerprint;   // system_fingerprint: changes when the weights, layout or dtypes do
};

enum class ApiKind { completion, chat };

struct ChatMessage {
  std::string role;     // "system", "user" or "assistant"
  std::string content;  // text parts joined
};

// A validated /v1/completions or /v1/chat/completions request. Choice c of the response belongs to
// prompt c / n and is that prompt's sequence c % n (a sample, or the (c % n)-th best beam).
struct CompletionRequest {
  ApiKind kind = ApiKind::completion;
  std::string id;                            // "cmpl-<hex>" or "chatcmpl-<hex>"
  int64_t created = 0;                       // unix time of the request
  std::string model;                         // the served model's name
  std::string system_fingerprint;            // the served model's fingerprint ("" -> null)
  std::vector<std::vector<int32_t>> prompts; // token ids, each non-empty
  std::vector<ChatMessage> messages;         // chat: the conversation that made prompts[0]
  std::vector<int32_t> max_tokens;           // per prompt, resolved (null -> what fits the context)
  int32_t n = 1;
  bool stream = false;
  bool include_usage = false;                // stream_options.include_usage
  bool echo = false;                         // completions: prompt text (+ log-probs) in front
  bool return_token_ids = false;
  int32_t logprobs = -1;                     // top-N log-probs per token; -1 when not asked
  std::string user;
  GenerationRequest params;                  // sampling, stops, ... shared by every choice

  int32_t n_choices() const { return static_cast<int32_t>(prompts.size()) * n; }
  // The engine request of prompt `p` (one sequence group with n returned sequences): prompt ids,
  // max_tokens and a request id. Its delta index i is choice p * n + i.
  GenerationRequest prompt_request(int32_t p) const;
};

// Serializes a response; invalid UTF-8 (a prompt of raw token ids) becomes U+FFFD, never a throw.
std::string dump_json(const Json& value, int indent = -1);
// One server-sent event carrying `payload`: "data: <payload>\n\n"; sse_event(kDoneMarker) ends a stream.
std::string sse_event(std::string_view payload);

// prefix + 32 random hex digits ("cmpl-...", "chatcmpl-...").
std::string make_request_id(const std::string& prefix);
// A fresh random seed, for requests that give none.
uint64_t random_seed();

// How a token shows in log-probs: its text when its bytes are valid UTF-8 on their own, otherwise
// "bytes:\xe6\x97" (each byte as a literal \x escape), like OpenAI.
std::string token_display(const Tokenizer& tokenizer, int32_t token);
bool is_valid_utf8(std::string_view bytes);

}  // namespace kvmesh
