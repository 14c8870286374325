// SSE framing and OpenAI completion chunks -> RequestRecord (also the derived per-request
// numbers of record.h).
#include "client/stream_reader.h"

#include <nlohmann/json.hpp>

namespace kvmesh::load {

using nlohmann::json;

const char* outcome_name(Outcome outcome) {
  switch (outcome) {
    case Outcome::pending: return "pending";
    case Outcome::ok: return "ok";
    case Outcome::failed: return "failed";
    case Outcome::disconnected: return "disconnected";
  }
  return "unknown";
}

double RequestRecord::tpot_ms() const {
  if (!has_tpot()) return 0.0;
  return (e2el_ms() - ttft_ms()) / static_cast<double>(completion_tokens - 1);
}

std::vector<double> RequestRecord::itls_ms() const {
  std::vector<double> out;
  for (size_t i = 1; i < chunk_s.size() && i < chunk_tokens.size(); ++i) {
    const int32_t n = chunk_tokens[i] > 0 ? chunk_tokens[i] : 1;
    const double per_token = (chunk_s[i] - chunk_s[i - 1]) * 1e3 / n;
    out.insert(out.end(), static_cast<size_t>(n), per_token);
  }
  return out;
}

// ---- SseParser ---------------------------------------------------------------------------------

std::vector<std::string> SseParser::feed(std::string_view bytes) {
  std::vector<std::string> events;
  for (char c : bytes) {
    if (c == '\n' && last_cr_) {  // the \n of \r\n: the line already ended
      last_cr_ = false;
      continue;
    }
    last_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      end_line(events);
      continue;
    }
    if (line_.size() < (64u << 20)) line_ += c;
  }
  return events;
}

void SseParser::end_line(std::vector<std::string>& events) {
  if (line_.empty()) {  // blank line: dispatch
    if (has_data_) events.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  const size_t colon = line_.find(':');
  const std::string_view field = std::string_view(line_).substr(0, colon);
  if (colon != 0 && field == "data") {
    std::string_view value = colon == std::string::npos ? std::string_view() : std::string_view(line_).substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  }
  line_.clear();
}

// ---- ResponseReader ----------------------------------------------------------------------------

void ResponseReader::feed(std::string_view bytes, double at_s, RequestRecord& record) {
  if (!streamed_ || record.http_status != 200) {
    if (body_.size() < (256u << 20)) body_.append(bytes);
    return;
  }
  for (const std::string& data : sse_.feed(bytes)) on_event(data, at_s, record);
}

void ResponseReader::on_event(const std::string& data, double at_s, RequestRecord& record) {
  if (data == "[DONE]") {
    done_seen_ = true;
    return;
  }
  json chunk = json::parse(data, nullptr, false);
  if (chunk.is_discarded() || !chunk.is_object()) {
    if (!sse_error_) sse_error_message_ = "unparsable SSE event: " + data.substr(0, 200);
    sse_error_ = true;
    return;
  }
  if (chunk.contains("error")) {
    sse_error_ = true;
    const json& e = chunk["error"];
    sse_error_message_ = e.is_object() && e.contains("message") && e["message"].is_string()
                             ? e["message"].get<std::string>()
                             : e.dump();
    return;
  }
  if (record.response_id.empty() && chunk.contains("id") && chunk["id"].is_string()) {
    record.response_id = chunk["id"].get<std::string>();
  }
  if (chunk.contains("usage") && chunk["usage"].is_object()) take_usage(chunk["usage"], record);
  on_chunk(chunk, at_s, record);
}

void ResponseReader::on_chunk(const json& chunk, double at_s, RequestRecord& record) {
  auto it = chunk.find("choices");
  if (it == chunk.end() || !it->is_array()) return;
  int32_t n_tokens = 0;
  bool content = false;
  for (const json& choice : *it) {
    if (!choice.is_object()) continue;
    const json* text = nullptr;
    if (chat_) {
      auto delta = choice.find("delta");
      if (delta != choice.end() && delta->is_object() && delta->contains("content")) text = &(*delta)["content"];
    } else if (choice.contains("text")) {
      text = &choice["text"];
    }
    if (text && text->is_string() && !text->get_ref<const std::string&>().empty()) {
      content = true;
      record.text += text->get_ref<const std::string&>();
    }
    auto ids = choice.find("token_ids");
    if (ids != choice.end() && ids->is_array()) n_tokens += static_cast<int32_t>(ids->size());
    else if (text && text->is_string() && !text->get_ref<const std::string&>().empty()) n_tokens += 1;
  }
  if (n_tokens == 0 && !content) return;
  if (n_tokens == 0) n_tokens = 1;
  if (record.first_token_s < 0.0) record.first_token_s = at_s;
  record.chunk_s.push_back(at_s);
  record.chunk_tokens.push_back(n_tokens);
  chunk_token_sum_ += n_tokens;
}

void ResponseReader::take_usage(const json& usage, RequestRecord& record) {
  auto number = [&](const json& object, const char* key) -> int64_t {
    auto it = object.find(key);
    return it != object.end() && it->is_number_integer() ? it->get<int64_t>() : -1;
  };
  record.prompt_tokens = number(usage, "prompt_tokens");
  record.completion_tokens = number(usage, "completion_tokens");
  auto details = usage.find("prompt_tokens_details");
  if (details != usage.end() && details->is_object()) record.cached_tokens = number(*details, "cached_tokens");
  record.usage_seen = record.completion_tokens >= 0;
}

void ResponseReader::on_whole_body(RequestRecord& record) {
  json body = json::parse(body_, nullptr, false);
  if (body.is_discarded() || !body.is_object()) return fail(record, "bad_response", "the reply is not JSON");
  if (body.contains("error")) return fail(record, "sse_error", body["error"].dump().substr(0, 500));
  if (body.contains("id") && body["id"].is_string()) record.response_id = body["id"].get<std::string>();
  if (body.contains("usage") && body["usage"].is_object()) take_usage(body["usage"], record);
  auto choices = body.find("choices");
  if (choices == body.end() || !choices->is_array()) return fail(record, "bad_response", "no choices in the reply");
  for (const json& choice : *choices) {
    if (!choice.is_object()) continue;
    if (chat_ && choice.contains("message") && choice["message"].is_object()) {
      const json& m = choice["message"];
      if (m.contains("content") && m["content"].is_string()) record.text += m["content"].get<std::string>();
    } else if (!chat_ && choice.contains("text") && choice["text"].is_string()) {
      record.text += choice["text"].get<std::string>();
    }
  }
  record.outcome = Outcome::ok;
}

void ResponseReader::fail(RequestRecord& record, std::string kind, std::string message) {
  record.outcome = Outcome::failed;
  record.error_kind = std::move(kind);
  record.error_message = std::move(message);
}

void ResponseReader::finish(double at_s, RequestRecord& record) {
  record.done_s = at_s;
  if (record.http_status != 200) {
    std::string message = body_.substr(0, 500);
    json body = json::parse(body_, nullptr, false);
    if (!body.is_discarded() && body.is_object() && body.contains("error") && body["error"].is_object() &&
        body["error"].contains("message") && body["error"]["message"].is_string()) {
      message = body["error"]["message"].get<std::string>();
    }
    return fail(record, "http_" + std::to_string(record.http_status), message);
  }
  if (!streamed_) return on_whole_body(record);
  if (sse_error_) return fail(record, "sse_error", sse_error_message_);
  if (!done_seen_) return fail(record, "incomplete", "the stream ended without data: [DONE]");
  if (!record.usage_seen) record.completion_tokens = chunk_token_sum_;
  record.outcome = Outcome::ok;
}

}  // namespace kvmesh::load
