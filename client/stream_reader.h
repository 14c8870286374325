// Reading a completion response as it arrives: SseParser splits "data: ...\n\n" events out of
// body bytes; ResponseReader turns events (or a whole JSON body) into a RequestRecord: chunk
// times and token counts, usage, generated text, SSE error events, a missing [DONE].
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "client/record.h"

namespace kvmesh::load {

// Server-sent events: fields per line ("data: x"), events end at a blank line; \n, \r\n and \r
// all end lines; ':' lines are comments. Only `data` matters here (lines joined with "\n").
class SseParser {
 public:
  // The data of every event completed by `bytes`.
  std::vector<std::string> feed(std::string_view bytes);
  bool idle() const { return line_.empty() && data_.empty() && !has_data_; }

 private:
  void end_line(std::vector<std::string>& events);

  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool last_cr_ = false;
};

class ResponseReader {
 public:
  ResponseReader(bool streamed, bool chat) : streamed_(streamed), chat_(chat) {}

  // Body bytes that arrived at `at_s`.
  void feed(std::string_view bytes, double at_s, RequestRecord& record);
  // The response ended cleanly (HTTP status in record.http_status): sets outcome and errors.
  void finish(double at_s, RequestRecord& record);
  bool done_seen() const { return done_seen_; }

 private:
  void on_event(const std::string& data, double at_s, RequestRecord& record);
  void on_chunk(const nlohmann::json& chunk, double at_s, RequestRecord& record);
  void take_usage(const nlohmann::json& usage, RequestRecord& record);
  void on_whole_body(RequestRecord& record);
  void fail(RequestRecord& record, std::string kind, std::string message);

  bool streamed_;
  bool chat_;
  SseParser sse_;
  std::string body_;  // non-streamed, or an error reply
  bool done_seen_ = false;
  bool sse_error_ = false;
  std::string sse_error_message_;
  int64_t chunk_token_sum_ = 0;
};

}  // namespace kvmesh::load
