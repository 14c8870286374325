// Routes: the HTTP API's handlers, from a parsed request to a whole reply or a GenerationJob (a
// request handed to the engine, whose deltas become an SSE stream or one JSON body). No sockets:
// http_server.cpp moves the bytes. Also the OpenAI-shaped error replies and the request log line.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "coordinator/admission.h"
#include "coordinator/api_json.h"
#include "coordinator/api_response.h"
#include "coordinator/cors.h"
#include "coordinator/request_queue.h"

namespace kvmesh {

class EngineLoop;
class Metrics;
class Tokenizer;

struct HttpRequestView {
  std::string_view method;
  std::string_view target;         // path and query
  std::string_view authorization;  // the Authorization header, "" when absent
  std::string_view origin;         // the Origin header (browsers), "" when absent
  std::string_view preflight_method;   // Access-Control-Request-Method (a CORS preflight)
  std::string_view preflight_headers;  // Access-Control-Request-Headers
  std::string_view body;
};

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";  // "" for none (204)
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra: Retry-After, Allow, ...
};

// One line of the request log (JSON on stderr). Never holds a prompt or a key.
struct RequestLog {
  std::string id;
  std::string method;
  std::string path;
  int status = 0;
  bool stream = false;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double ttft_ms = -1.0;  // < 0: no token
  double total_ms = 0.0;
  std::string finish_reason;
};

// OpenAI-shaped error replies: {"error": {"message", "type", "param", "code"}}.
HttpReply error_reply(const ApiError& error);
HttpReply error_reply(int status, std::string message, std::string type, std::string code = "");

// A completion request in flight: submitted to the engine, fed by its channel, turned into SSE
// bytes (stream) or one reply. Lives on its session's executor; cancels itself if dropped early.
class GenerationJob {
 public:
  GenerationJob(CompletionRequest request, const Tokenizer& tokenizer, RequestQueue& queue,
                Clock::time_point arrival);
  ~GenerationJob();
  GenerationJob(const GenerationJob&) = delete;
  GenerationJob& operator=(const GenerationJob&) = delete;

  // Submits to the engine; `notify` runs (on the engine thread) whenever deltas are ready. Returns
  // the refusal (429 queue full, 503 draining) or nothing when submitted.
  std::optional<HttpReply> start(std::function<void()> notify);
  bool streaming() const { return request_.stream; }
  const std::string& id() const { return request_.id; }
  // Takes what the engine has sent. For streams, the SSE bytes to send next ("" when none); the
  // last call (once every choice finished) ends with the usage chunk and "data: [DONE]".
  std::string take();
  bool finished() const { return n_finished_ == request_.n_choices(); }
  // The whole reply of a non-streamed request, once finished().
  HttpReply reply();
  // The client went away: the engine stops its sequences at the next step.
  void cancel();
  void fill_log(RequestLog& log) const;

 private:
  void on_event(ChoiceEvent& event, std::string& sse);

  CompletionRequest request_;
  const Tokenizer& tokenizer_;
  RequestQueue& queue_;
  Clock::time_point arrival_;
  std::shared_ptr<DeltaChannel> channel_;
  std::optional<uint64_t> ticket_;
  std::unique_ptr<StreamBuilder> stream_;
  std::vector<GenerationOutput> outputs_;  // per choice
  int32_t n_finished_ = 0;
  bool done_sent_ = false;
  double ttft_ms_ = -1.0;
};

struct RoutesContext {
  ServedModel served;
  std::shared_ptr<const Tokenizer> tokenizer;
  RequestQueue* queue = nullptr;
  const EngineLoop* engine = nullptr;
  Metrics* metrics = nullptr;
  std::string api_key;     // "" = open
  bool metrics_need_key = false;  // /metrics is public unless this is set (like /health, /ready)
  AdmissionLimits limits;  // what the engine admits (context, step width, KV pages, queue)
  CorsPolicy cors;         // browser origins that may call (none by default)
  bool log_requests = true;  // the JSON request log on stderr
};

// What a handler produced: a whole reply, or (job set) a generation to drive.
struct RouteResult {
  HttpReply reply;
  std::unique_ptr<GenerationJob> job;
};

class Routes {
 public:
  explicit Routes(RoutesContext context) : ctx_(std::move(context)) {}

  // Never throws: anything unexpected becomes a 500 reply.
  RouteResult handle(const HttpRequestView& request, Clock::time_point arrival);
  // The CORS headers every reply to a request from `origin` carries (none for other origins).
  HeaderList cors_headers(std::string_view origin) const { return ctx_.cors.reply_headers(origin); }
  // Counts the status in the metrics and writes the log line (unless the log is off).
  void log(const RequestLog& entry) const;
  bool draining() const;

 private:
  RouteResult dispatch(const HttpRequestView& request, std::string_view path, Clock::time_point arrival);
  RouteResult generation(ApiKind kind, std::string_view body, Clock::time_point arrival);
  HttpReply options(const HttpRequestView& request, std::string_view path, std::string_view allowed) const;
  HttpReply ready() const;
  HttpReply tokenize(std::string_view body) const;
  HttpReply detokenize(std::string_view body) const;
  bool authorized(std::string_view authorization) const;
  std::optional<ApiError> admit(const CompletionRequest& request) const;

  RoutesContext ctx_;
};

// Equal strings in time that depends only on the length of `expected`.
bool constant_time_equal(std::string_view given, std::string_view expected);

}  // namespace kvmesh
