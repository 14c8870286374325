// FakeOpenAiServer: the smallest OpenAI-compatible server, for kvmesh-load's tests against servers
// that are not kvmesh-serve (127.0.0.1, a free port): GET /health, GET /v1/models, POST
// /v1/completions (SSE or whole JSON, with or without usage; a prompt's tokens are its words), 404 for
// anything else. It closes every connection after one response, saying so or not.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvmesh::testing {

class FakeOpenAiServer {
 public:
  struct Options {
    bool say_close = true;   // "Connection: close"; false: close anyway (keep-alive implied by HTTP/1.1)
    int health_not_ready = 0;  // /health answers 503 this many times first
    bool usage = true;         // report usage (streamed: when stream_options.include_usage asks)
  };

  explicit FakeOpenAiServer(Options options) : options_(options) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd_, 64) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return;
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~FakeOpenAiServer() {
    stop_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    for (std::thread& t : handlers_) t.join();
    if (fd_ >= 0) ::close(fd_);
  }
  FakeOpenAiServer(const FakeOpenAiServer&) = delete;
  FakeOpenAiServer& operator=(const FakeOpenAiServer&) = delete;

  int port() const { return port_; }  // 0: could not listen
  // "GET /health", "POST /v1/completions", ... in the order they arrived.
  std::vector<std::string> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }
  int count(const std::string& request) const {
    int n = 0;
    for (const std::string& r : requests()) n += r == request ? 1 : 0;
    return n;
  }
  int connections() const { return connections_; }

 private:
  static constexpr int kMaxConnections = 10000;

  void accept_loop() {
    while (!stop_ && connections_ < kMaxConnections) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept(fd_, nullptr, nullptr);
      if (client < 0) continue;
      ++connections_;
      handlers_.emplace_back([this, client] {
        handle(client);
        ::close(client);
      });
    }
  }

  // Reads one request (5 s at most), answers it, and returns (the caller closes).
  void handle(int fd) {
    std::string in;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    size_t head_end = std::string::npos, body_len = 0;
    while (std::chrono::steady_clock::now() < deadline && !stop_) {
      if (head_end != std::string::npos && in.size() >= head_end + 4 + body_len) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
      if (head_end == std::string::npos && (head_end = in.find("\r\n\r\n")) != std::string::npos) {
        std::string head = in.substr(0, head_end);
        for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const size_t cl = head.find("content-length:");
        if (cl != std::string::npos) body_len = std::strtoul(head.c_str() + cl + 15, nullptr, 10);
      }
    }
    if (head_end == std::string::npos) return;
    const size_t sp1 = in.find(' '), sp2 = in.find(' ', sp1 + 1);
    const std::string request = in.substr(0, sp2);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(request);
    }
    send_all(fd, answer(request, in.substr(head_end + 4, body_len)));
  }

  std::string answer(const std::string& request, const std::string& body) {
    using nlohmann::json;
    if (request == "GET /health") {
      return health_answers_++ < options_.health_not_ready ? reply(503, "application/json", "{}")
                                                           : reply(200, "application/json", "{}");
    }
    if (request == "GET /v1/models") {
      return reply(200, "application/json",
                   json{{"object", "list"}, {"data", {{{"id", "fake-model"}, {"object", "model"}}}}}.dump());
    }
    if (request != "POST /v1/completions") return reply(404, "application/json", "{\"detail\":\"Not Found\"}");
    const json req = json::parse(body, nullptr, false);
    if (!req.is_object() || !req.contains("prompt") || !req["prompt"].is_string()) {
      return reply(400, "application/json", "{\"error\":{\"message\":\"no prompt\"}}");
    }
    const std::string prompt = req["prompt"].get<std::string>();
    int64_t words = 0;
    for (size_t i = 0; i < prompt.size(); ++i) words += prompt[i] != ' ' && (i == 0 || prompt[i - 1] == ' ') ? 1 : 0;
    const int64_t n_out = req.value("max_tokens", 16);
    const json usage = {{"prompt_tokens", words}, {"completion_tokens", n_out}, {"total_tokens", words + n_out}};
    if (!req.value("stream", false)) {
      json whole = {{"id", "cmpl-fake"}, {"object", "text_completion"}, {"model", "fake-model"},
                          {"choices", {{{"index", 0}, {"text", std::string(static_cast<size_t>(n_out), 'x')},
                                        {"finish_reason", "length"}}}},
                          {"usage", usage}};
      if (!options_.usage) whole.erase("usage");
      return reply(200, "application/json", whole.dump());
    }
    std::string sse;
    for (int64_t i = 0; i < n_out; ++i) {
      const json chunk = {{"id", "cmpl-fake"}, {"object", "text_completion"},
                          {"choices", {{{"index", 0}, {"text", "x"}, {"finish_reason", nullptr}}}}};
      sse += "data: " + chunk.dump() + "\n\n";
    }
    if (options_.usage && req.contains("stream_options") && req["stream_options"].value("include_usage", false)) {
      sse += "data: " + json{{"id", "cmpl-fake"}, {"choices", json::array()}, {"usage", usage}}.dump() + "\n\n";
    }
    return reply(200, "text/event-stream", sse + "data: [DONE]\n\n");
  }

  std::string reply(int status, const std::string& type, const std::string& body) const {
    return "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Error") + "\r\nContent-Type: " + type +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
           (options_.say_close ? "Connection: close\r\n" : "") + "\r\n" + body;
  }

  static void send_all(int fd, const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }

  Options options_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> health_answers_{0};
  std::thread acceptor_;
  std::vector<std::thread> handlers_;  // only the acceptor adds, only the destructor joins
  mutable std::mutex mutex_;
  std::vector<std::string> requests_;
};

}  // namespace kvmesh::testing
