// OpenAI-compatible API, shared pieces: errors and their body, JSON dumping, request ids, per-choice
// engine requests, and how a token is shown in log-probs.
#include "coordinator/api_json.h"


#include <cstdio>
#include <random>

#include "common/tokenizer.h"

namespace kvmesh {

ApiError bad_request(std::string message, std::string param) {
  ApiError error;
  error.http_status = 400;
  error.message = std::move(message);
  error.param = std::move(param);
  return error;
}

ApiError model_not_found(const std::string& model) {
  ApiError error;
  error.http_status = 404;
  error.message = "The model `" + model + "` does not exist.";
  error.type = "not_found_error";
  error.param = "model";
  error.code = "model_not_found";
  return error;
}

ApiError server_error(std::string message) {
  ApiError error;
  error.http_status = 500;
  error.message = std::move(message);
  error.type = "server_error";
  return error;
}

ApiError service_unavailable(std::string message) {
  ApiError error;
  error.http_status = 503;
  error.message = std::move(message);
  error.type = "service_unavailable";
  error.code = "engine_unavailable";
  return error;
}

Json error_body(const ApiError& error) {
  Json body = Json::object();
  body["message"] = error.message;
  body["type"] = error.type;
  body["param"] = error.param.empty() ? Json(nullptr) : Json(error.param);
  body["code"] = error.code.empty() ? Json(nullptr) : Json(error.code);
  return Json{{"error", std::move(body)}};
}

std::string dump_json(const Json& value, int indent) {
  return value.dump(indent, ' ', false, Json::error_handler_t::replace);
}

std::string sse_event(std::string_view payload) {
  std::string event = "data: ";
  event.append(payload);
  event += "\n\n";
  return event;
}

namespace {

std::mt19937_64& thread_rng() {
  thread_local std::mt19937_64 rng{(static_cast<uint64_t>(std::random_device{}()) << 32) ^
                                   std::random_device{}()};
  return rng;
}

}  // namespace

std::string make_request_id(const std::string& prefix) {
  static const char* kHex = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 2; ++i) {
    uint64_t r = thread_rng()();
    for (int j = 0; j < 16; ++j, r >>= 4) id += kHex[r & 15];
  }
  return id;
}

uint64_t random_seed() { return thread_rng()(); }

GenerationRequest CompletionRequest::prompt_request(int32_t p) const {
  KVMESH_CHECK(p >= 0 && p < static_cast<int32_t>(prompts.size()));
  GenerationRequest request = params;
  request.request_id = id + "-" + std::to_string(p);
  request.prompt_ids = prompts[static_cast<size_t>(p)];
  request.max_tokens = max_tokens[static_cast<size_t>(p)];
  request.n = n;
  return request;
}

bool is_valid_utf8(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > bytes.size()) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(bytes[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

std::string token_display(const Tokenizer& tokenizer, int32_t token) {
  std::string bytes = tokenizer.token_bytes(token);
  if (is_valid_utf8(bytes)) return bytes;
  std::string shown = "bytes:";
  char buf[8];
  for (unsigned char c : bytes) {
    std::snprintf(buf, sizeof buf, "\\x%02x", c);
    shown += buf;
  }
  return shown;
}

}  // namespace kvmesh
