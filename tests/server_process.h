// ServerProcess: runs kvmesh-serve for an e2e test on 127.0.0.1 and a free port (--port 0; the
// port is read from its "listening on" line), waits until /health answers, and kills it at the
// end. Its stderr (the request log) goes to a temporary file the test can read.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_test_client.h"

namespace kvmesh::testing {

inline std::string server_binary() { return KVMESH_BIN_DIR "/coordinator/kvmesh-serve"; }
inline std::string hf_model_dir() { return KVMESH_TEST_DATA_DIR "/hf-gpt2-4l32d"; }

class ServerProcess {
 public:
  using Clock = std::chrono::steady_clock;

  // Starts the server with `args` (plus --host 127.0.0.1 --port 0 --threads 1 unless given). Returns null and
  // sets *error when it does not come up within timeout_ms.
  static std::unique_ptr<ServerProcess> start(const std::vector<std::string>& args, std::string* error,
                                              int timeout_ms = 60000) {
    auto server = std::unique_ptr<ServerProcess>(new ServerProcess());
    if (!server->spawn(args, error)) return nullptr;
    if (!server->wait_listening(timeout_ms, error) || !server->wait_healthy(timeout_ms, error)) {
      *error += "\nserver stderr:\n" + server->stderr_text();
      return nullptr;
    }
    return server;
  }

  // Starts the server as n_ranks MPI ranks under mpirun (rank 0 serves HTTP).
  static std::unique_ptr<ServerProcess> start_mpi(int n_ranks, const std::vector<std::string>& args,
                                                  std::string* error, int timeout_ms = 90000) {
    auto server = std::unique_ptr<ServerProcess>(new ServerProcess());
    server->launcher_ = {"mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                         "-np", std::to_string(n_ranks)};
    if (!server->spawn(args, error)) return nullptr;
    if (!server->wait_listening(timeout_ms, error) || !server->wait_healthy(timeout_ms, error)) {
      *error += "\nserver stderr:\n" + server->stderr_text();
      return nullptr;
    }
    return server;
  }

  // Only spawns (for tests of start-up failures: wait_exit, stderr_text).
  static std::unique_ptr<ServerProcess> launch(const std::vector<std::string>& args, std::string* error) {
    auto server = std::unique_ptr<ServerProcess>(new ServerProcess());
    if (!server->spawn(args, error)) return nullptr;
    return server;
  }

  ~ServerProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    if (!log_path_.empty()) std::remove(log_path_.c_str());
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  void send_signal(int sig) { ::kill(pid_, sig); }

  // The exit code once the process ends (128 + signal when killed), or nullopt after timeout_ms.
  std::optional<int> wait_exit(int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
  }

  std::string stderr_text() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string metrics() const { return http_request(port_, "GET", "/metrics").body; }
  double metric(const std::string& name) const { return metric_value(metrics(), name); }

 private:
  ServerProcess() = default;
  std::vector<std::string> launcher_;  // e.g. mpirun and its flags; empty: run the server directly

  bool spawn(const std::vector<std::string>& args, std::string* error) {
    char log_template[] = "/tmp/kvmesh-e2e-log-XXXXXX";
    const int log_fd = ::mkstemp(log_template);
    if (log_fd < 0) return *error = "mkstemp failed", false;
    log_path_ = log_template;
    int out[2];
    if (::pipe(out) != 0) return *error = "pipe failed", false;
    std::vector<std::string> argv_s = launcher_;
    argv_s.push_back(server_binary());
    for (const char* flag : {"--host", "--port", "--threads"}) {  // defaults the args do not override
      if (std::find(args.begin(), args.end(), flag) != args.end()) continue;
      argv_s.push_back(flag);
      argv_s.push_back(std::string(flag) == "--host" ? "127.0.0.1" : std::string(flag) == "--port" ? "0" : "1");
    }
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) return *error = "fork failed", false;
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(log_fd, 2);
      ::close(out[0]);
      ::close(out[1]);
      ::execvp(argv[0], argv.data());
      std::_Exit(127);
    }
    ::close(out[1]);
    ::close(log_fd);
    out_fd_ = out[0];
    return true;
  }

  bool wait_listening(int timeout_ms, std::string* error) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    std::string text;
    const std::string marker = "listening on http://127.0.0.1:";
    while (Clock::now() < deadline) {
      const size_t at = text.find(marker);
      if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
        port_ = std::atoi(text.c_str() + at + marker.size());
        return port_ > 0;
      }
      pollfd p{out_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[512];
      const ssize_t n = ::read(out_fd_, buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    *error = "kvmesh-serve did not print its port; stdout: " + text;
    return false;
  }

  bool wait_healthy(int timeout_ms, std::string* error) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      if (http_request(port_, "GET", "/health", "", {}, 2000).status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    *error = "/health did not answer";
    return false;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int port_ = 0;
  bool exited_ = false;
  std::string log_path_;
};

}  // namespace kvmesh::testing

// ---- helpers shared by the e2e tests -----------------------------------------------------------

namespace kvmesh::testing {

// A streamed completion reassembled per choice.
struct StreamedResult {
  int status = 0;
  std::string error;                      // transport problem
  std::vector<std::string> text;          // per choice index
  std::vector<std::vector<int>> token_ids;
  std::vector<std::string> finish_reason;
  nlohmann::json usage;                   // the include_usage chunk's usage, or null
  std::vector<nlohmann::json> error_events;
  int n_events = 0;
  bool done = false;                      // saw data: [DONE]
};

// Sends `body` (which should have "stream": true) and reads the SSE stream to its end.
inline StreamedResult stream_completion(int port, const std::string& path, const nlohmann::json& body,
                                        const Headers& headers = {}, int timeout_ms = 60000) {
  StreamedResult r;
  auto conn = HttpConnection::connect(port);
  if (!conn || !conn->send_request("POST", path, body.dump(), headers)) return r.error = "connect/send failed", r;
  HttpResponse head;
  if (!conn->read_head(&head, timeout_ms)) return r.error = head.error, r;
  r.status = head.status;
  if (head.status != 200) return r;
  for (int guard = 0; guard < 100000; ++guard) {
    auto event = conn->next_event(timeout_ms);
    if (!event) break;
    ++r.n_events;
    if (*event == "[DONE]") {
      r.done = true;
      continue;
    }
    auto chunk = nlohmann::json::parse(*event, nullptr, false);
    if (chunk.is_discarded()) return r.error = "bad chunk: " + *event, r;
    if (chunk.contains("error")) r.error_events.push_back(chunk);
    if (chunk.contains("usage") && !chunk["usage"].is_null()) r.usage = chunk["usage"];
    if (!chunk.contains("choices")) continue;
    for (const auto& c : chunk["choices"]) {
      const size_t i = c["index"].get<size_t>();
      if (r.text.size() <= i) {
        r.text.resize(i + 1);
        r.token_ids.resize(i + 1);
        r.finish_reason.resize(i + 1);
      }
      if (c.contains("text")) r.text[i] += c["text"].get<std::string>();
      if (c.contains("delta") && c["delta"].contains("content")) r.text[i] += c["delta"]["content"].get<std::string>();
      if (c.contains("token_ids")) {
        for (const auto& t : c["token_ids"]) r.token_ids[i].push_back(t.get<int>());
      }
      if (!c["finish_reason"].is_null()) r.finish_reason[i] = c["finish_reason"].get<std::string>();
    }
  }
  return r;
}

// POSTs a JSON body; the parsed reply (null when it is not JSON) and the status.
inline std::pair<int, nlohmann::json> post_for_json(int port, const std::string& path, const nlohmann::json& body,
                                                    const Headers& headers = {}) {
  HttpResponse res = post_json(port, path, body.dump(), headers);
  return {res.status, nlohmann::json::parse(res.body, nullptr, false)};
}

// Polls `probe` every 20 ms until it returns true or timeout_ms passes.
template <typename Probe>
bool eventually(Probe probe, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (probe()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return probe();
}

}  // namespace kvmesh::testing
