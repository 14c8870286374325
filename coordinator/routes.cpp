// Routes: endpoint table, authentication, handlers, GenerationJob (engine deltas -> SSE or JSON),
// OpenAI-shaped error replies and the JSON request log.
#include "coordinator/routes.h"

#include <chrono>
#include <cstdio>
#include <exception>

#include "common/clock.h"
#include "common/tokenizer.h"
#include "coordinator/api_request.h"
#include "coordinator/engine_loop.h"
#include "coordinator/metrics.h"

namespace kvmesh {
namespace {

struct RouteEntry {
  std::string_view path;
  std::string_view method;
  bool is_public;
};
constexpr RouteEntry kRoutes[] = {
    {"/health", "GET", true},          {"/ready", "GET", true},
    {"/metrics", "GET", false},        {"/v1/models", "GET", false},
    {"/v1/completions", "POST", false}, {"/v1/chat/completions", "POST", false},
    {"/tokenize", "POST", false},      {"/detokenize", "POST", false},
};
constexpr std::string_view kModelPrefix = "/v1/models/";

HttpReply json_reply(const Json& body, int status = 200) {
  HttpReply reply;
  reply.status = status;
  reply.body = dump_json(body);
  return reply;
}

std::string_view path_of(std::string_view target) {
  const size_t q = target.find_first_of("?#");
  return q == std::string_view::npos ? target : target.substr(0, q);
}

}  // namespace

bool constant_time_equal(std::string_view given, std::string_view expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const char g = i < given.size() ? given[i] : 0;
    diff = static_cast<unsigned char>(diff | (g ^ expected[i]));
  }
  return diff == 0;
}

HttpReply error_reply(const ApiError& error) {
  HttpReply reply = json_reply(error_body(error), error.http_status);
  if (error.http_status == 429) reply.headers.emplace_back("Retry-After", "1");
  if (error.http_status == 401) reply.headers.emplace_back("WWW-Authenticate", "Bearer");
  return reply;
}

HttpReply error_reply(int status, std::string message, std::string type, std::string code) {
  ApiError error;
  error.http_status = status;
  error.message = std::move(message);
  error.type = std::move(type);
  error.code = std::move(code);
  return error_reply(error);
}

// ---- GenerationJob ---------------------------------------------------------------------------

GenerationJob::GenerationJob(CompletionRequest request, const Tokenizer& tokenizer, RequestQueue& queue,
                             Clock::time_point arrival)
    : request_(std::move(request)), tokenizer_(tokenizer), queue_(queue), arrival_(arrival),
      outputs_(static_cast<size_t>(request_.n_choices())) {
  if (request_.stream) stream_ = std::make_unique<StreamBuilder>(request_, tokenizer_);
}

GenerationJob::~GenerationJob() {
  if (ticket_ && !finished()) queue_.cancel(*ticket_);
}

std::optional<HttpReply> GenerationJob::start(std::function<void()> notify) {
  channel_ = std::make_shared<DeltaChannel>(std::move(notify));
  std::vector<GenerationRequest> prompts;
  prompts.reserve(request_.prompts.size());
  for (size_t p = 0; p < request_.prompts.size(); ++p) prompts.push_back(request_.prompt_request(static_cast<int32_t>(p)));
  auto ticket = queue_.submit(std::move(prompts), channel_, arrival_);
  if (ticket.is_ok()) {
    ticket_ = *ticket;
    return std::nullopt;
  }
  if (ticket.status().code() == StatusCode::resource_exhausted) {
    return error_reply(429, ticket.status().message(), "rate_limit_error", "rate_limit_exceeded");
  }
  return error_reply(503, ticket.status().message(), "service_unavailable", "server_shutting_down");
}

void GenerationJob::cancel() {
  if (ticket_ && !finished()) queue_.cancel(*ticket_);
  ticket_.reset();
}

std::string GenerationJob::take() {
  std::string sse;
  if (!channel_) return sse;
  for (ChoiceEvent& event : channel_->take()) on_event(event, sse);
  if (stream_ && finished() && !done_sent_) {
    if (auto usage = stream_->usage_chunk()) sse += sse_event(dump_json(*usage));
    sse += sse_event(kDoneMarker);
    done_sent_ = true;
  }
  return sse;
}

void GenerationJob::on_event(ChoiceEvent& event, std::string& sse) {
  if (event.index < 0 || event.index >= request_.n_choices()) return;
  GenerationOutput& out = outputs_[static_cast<size_t>(event.index)];
  if (out.finished()) return;
  if (ttft_ms_ < 0 && !event.delta.token_ids.empty()) ttft_ms_ = ms_since(arrival_, event.at);
  if (stream_) sse += sse_event(dump_json(stream_->chunk(event.index, event.delta)));
  out.append(event.delta);
  if (out.finished()) ++n_finished_;
}

HttpReply GenerationJob::reply() {
  auto body = build_response(request_, outputs_, tokenizer_);
  if (!body.is_ok()) return error_reply(body.error());
  return json_reply(body.value());
}

void GenerationJob::fill_log(RequestLog& log) const {
  log.id = request_.id;
  log.stream = request_.stream;
  log.prompt_tokens = 0;
  for (const auto& p : request_.prompts) log.prompt_tokens += static_cast<int64_t>(p.size());
  log.completion_tokens = 0;
  FinishReason reason = FinishReason::none;
  for (const GenerationOutput& out : outputs_) {
    log.completion_tokens += static_cast<int64_t>(out.token_ids.size());
    if (reason == FinishReason::none || out.finish == FinishReason::error) reason = out.finish;
  }
  log.finish_reason = finish_reason_name(reason);
  log.ttft_ms = ttft_ms_;
}

// ---- Routes ----------------------------------------------------------------------------------

RouteResult Routes::handle(const HttpRequestView& request, Clock::time_point arrival) {
  try {
    return dispatch(request, path_of(request.target), arrival);
  } catch (const std::exception& e) {
    return {error_reply(server_error(std::string("internal error: ") + e.what())), nullptr};
  } catch (...) {
    return {error_reply(server_error("internal error")), nullptr};
  }
}

RouteResult Routes::dispatch(const HttpRequestView& request, std::string_view path, Clock::time_point arrival) {
  const RouteEntry* route = nullptr;
  for (const RouteEntry& r : kRoutes)
    if (r.path == path) route = &r;
  const bool model_path = route == nullptr && path.substr(0, kModelPrefix.size()) == kModelPrefix;
  if (route == nullptr && !model_path) {
    return {error_reply(404, "Invalid URL (" + std::string(request.method) + " " + std::string(path) + ")",
                        "invalid_request_error", "unknown_url"), nullptr};
  }
  const std::string_view allowed = route ? route->method : "GET";
  // Before the key check: a browser's preflight carries no credentials.
  if (request.method == "OPTIONS") return {options(request, path, allowed), nullptr};
  if (request.method != allowed) {
    HttpReply reply = error_reply(405, "Method " + std::string(request.method) + " is not allowed for " +
                                           std::string(path) + " (use " + std::string(allowed) + ")",
                                  "invalid_request_error", "method_not_allowed");
    reply.headers.emplace_back("Allow", std::string(allowed));
    return {std::move(reply), nullptr};
  }
  const bool is_public = route && (route->is_public || (path == "/metrics" && !ctx_.metrics_need_key));
  if (!is_public && !authorized(request.authorization)) {
    return {error_reply(401, "Invalid or missing API key. Send it as `Authorization: Bearer <key>`.",
                        "invalid_request_error", "invalid_api_key"), nullptr};
  }
  if (model_path) {
    const std::string name(path.substr(kModelPrefix.size()));
    if (name != ctx_.served.name) return {error_reply(model_not_found(name)), nullptr};
    return {json_reply(build_models_response(ctx_.served)["data"][0]), nullptr};
  }
  if (path == "/health") return {json_reply(Json{{"status", "ok"}}), nullptr};
  if (path == "/ready") return {ready(), nullptr};
  if (path == "/metrics") {
    HttpReply reply;
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply.body = ctx_.metrics->render();
    return {std::move(reply), nullptr};
  }
  if (path == "/v1/models") return {json_reply(build_models_response(ctx_.served)), nullptr};
  if (path == "/tokenize") return {tokenize(request.body), nullptr};
  if (path == "/detokenize") return {detokenize(request.body), nullptr};
  return generation(path == "/v1/completions" ? ApiKind::completion : ApiKind::chat, request.body, arrival);
}

bool Routes::draining() const { return ctx_.queue->draining(); }

// OPTIONS: a CORS preflight (with Origin and Access-Control-Request-Method) is answered for the
// allowed origins and refused with a 403 naming the flag for the others; a plain OPTIONS lists
// the route's methods.
HttpReply Routes::options(const HttpRequestView& request, std::string_view path, std::string_view allowed) const {
  const std::string methods = std::string(allowed) + ", OPTIONS";
  HttpReply reply;
  reply.status = 204;
  reply.content_type.clear();
  if (request.origin.empty() || request.preflight_method.empty()) {
    reply.headers.emplace_back("Allow", methods);
    return reply;
  }
  if (!ctx_.cors.allows(request.origin)) {
    return error_reply(403, "Origin " + std::string(request.origin).substr(0, 256) + " may not call " +
                                std::string(path) + ": start kvmesh-serve with --allowed-origins to let browsers in",
                       "invalid_request_error", "cors_origin_not_allowed");
  }
  reply.headers = ctx_.cors.preflight_headers(request.origin, methods, request.preflight_headers);
  return reply;
}

HttpReply Routes::ready() const {
  if (draining()) return error_reply(503, "The server is draining", "service_unavailable", "draining");
  if (!ctx_.engine->ready()) return error_reply(503, "The engine is not running", "service_unavailable", "not_ready");
  return json_reply(Json{{"status", "ready"}, {"model", ctx_.served.name}});
}

bool Routes::authorized(std::string_view authorization) const {
  if (ctx_.api_key.empty()) return true;
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c) != kScheme[i]) return false;
  }
  std::string_view key = authorization.substr(kScheme.size());
  while (!key.empty() && (key.front() == ' ' || key.front() == '\t')) key.remove_prefix(1);
  while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.remove_suffix(1);
  return constant_time_equal(key, ctx_.api_key);
}

// What the engine would refuse is refused here, before the queue, with Admission's message.
std::optional<ApiError> Routes::admit(const CompletionRequest& request) const {
  const Admission admission(ctx_.limits);
  for (int32_t p = 0; p < static_cast<int32_t>(request.prompts.size()); ++p) {
    if (auto refusal = admission.group(request.prompt_request(p))) return bad_request(refusal->message, refusal->param);
  }
  const int64_t n_sequences = static_cast<int64_t>(request.prompts.size()) * request.params.group_size();
  if (auto refusal = admission.queue(n_sequences, request.prompts.size() > 1))
    return bad_request(refusal->message, refusal->param);
  return std::nullopt;
}

RouteResult Routes::generation(ApiKind kind, std::string_view body, Clock::time_point arrival) {
  if (draining()) {
    return {error_reply(503, "The server is shutting down", "service_unavailable", "server_shutting_down"), nullptr};
  }
  const Tokenizer& tok = *ctx_.tokenizer;
  auto parsed = kind == ApiKind::completion ? parse_completion_request(body, ctx_.served, tok)
                                            : parse_chat_request(body, ctx_.served, tok);
  if (!parsed.is_ok()) return {error_reply(parsed.error()), nullptr};
  if (auto error = admit(parsed.value())) return {error_reply(*error), nullptr};
  return {HttpReply{}, std::make_unique<GenerationJob>(std::move(parsed).value(), tok, *ctx_.queue, arrival)};
}

HttpReply Routes::tokenize(std::string_view body) const {
  auto ids = parse_tokenize_request(body, ctx_.served, *ctx_.tokenizer);
  if (!ids.is_ok()) return error_reply(ids.error());
  return json_reply(build_tokenize_response(ids.value(), ctx_.served));
}

HttpReply Routes::detokenize(std::string_view body) const {
  auto ids = parse_detokenize_request(body, ctx_.served);
  if (!ids.is_ok()) return error_reply(ids.error());
  return json_reply(build_detokenize_response(ids.value(), *ctx_.tokenizer));
}

void Routes::log(const RequestLog& e) const {
  ctx_.metrics->count_response(e.status);
  if (!ctx_.log_requests) return;
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  Json line = {{"ts", now}, {"id", e.id}, {"method", e.method}, {"path", e.path.substr(0, 256)},
               {"status", e.status}};
  if (!e.finish_reason.empty() || e.prompt_tokens > 0) {
    line["stream"] = e.stream;
    line["prompt_tokens"] = e.prompt_tokens;
    line["completion_tokens"] = e.completion_tokens;
    line["ttft_ms"] = e.ttft_ms >= 0 ? Json(e.ttft_ms) : Json(nullptr);
    line["finish_reason"] = e.finish_reason.empty() ? Json(nullptr) : Json(e.finish_reason);
  }
  line["total_ms"] = e.total_ms;
  const std::string text = dump_json(line) + "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
}

}  // namespace kvmesh
