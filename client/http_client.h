// The kvmesh-load HTTP layer, Beast-free to include: EventLoop (one io_context, timers, Ctrl-C)
// and HttpClient (async HTTP/1.1 requests with a keep-alive pool; body bytes are handed over as
// they arrive, so one thread drives thousands of concurrent SSE streams). http_client.cpp is the
// only file that includes Boost.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvmesh::load {

using Clock = std::chrono::steady_clock;

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs `fn` on the loop thread at `when` (a past time: as soon as possible).
  void call_at(Clock::time_point when, std::function<void()> fn);
  void post(std::function<void()> fn);
  // `fn` runs on the loop thread at each SIGINT / SIGTERM that arrives while run() runs.
  void on_interrupt(std::function<void()> fn);
  // Until stop(), or until nothing is left to wait for.
  void run();
  void stop();

 private:
  friend class HttpClient;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct HttpTarget {
  std::string host = "127.0.0.1";
  std::string port = "8000";
  std::string api_key;  // sent as Authorization: Bearer when not empty
};

struct HttpRequest {
  std::string method = "POST";
  std::string path;
  std::string body;  // JSON; empty for GET
  double timeout_s = 300.0;
};

// How a request ended. kind: "" (a whole response arrived), connect, timeout, reset, protocol,
// aborted.
struct HttpError {
  std::string kind;
  std::string message;
  bool ok() const { return kind.empty(); }
};

struct HttpEvents {
  std::function<void(int status)> on_status;                             // the head arrived
  std::function<void(std::string_view bytes, Clock::time_point at)> on_body;  // body bytes (de-chunked)
  std::function<void(const HttpError& error, Clock::time_point at)> on_done;  // exactly once
};

class HttpClient {
 public:
  HttpClient(EventLoop& loop, HttpTarget target, bool keep_alive);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a request (on the loop thread); returns its id for abort().
  uint64_t start(HttpRequest request, HttpEvents events);
  // Closes the request's connection: on_done gets "aborted". No-op once it is done.
  void abort(uint64_t id);
  // Requests started and not done.
  int64_t n_active() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

struct HttpReply {
  int status = 0;
  std::string body;
  HttpError error;
  bool ok() const { return error.ok() && status == 200; }
};

// Blocking helpers for setup and scraping: each runs its own loop. fetch_all keeps up to
// `concurrency` requests in flight and returns the replies in request order.
HttpReply http_fetch(const HttpTarget& target, const HttpRequest& request);
std::vector<HttpReply> http_fetch_all(const HttpTarget& target, const std::vector<HttpRequest>& requests,
                                      int32_t concurrency);

}  // namespace kvmesh::load
