// A small HTTP/1.1 client over raw sockets for the e2e tests (127.0.0.1 only): whole responses
// with Content-Length, chunked or read-until-close bodies; SSE events read one at a time; raw
// bytes and mid-stream closes for the misbehaving-client tests. Every wait has a deadline.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvmesh::testing {

struct HttpResponse {
  int status = 0;                              // 0: no response (error says why)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string error;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

using Headers = std::vector<std::pair<std::string, std::string>>;

class HttpConnection {
 public:
  using Clock = std::chrono::steady_clock;

  static std::unique_ptr<HttpConnection> connect(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return nullptr;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd);
      return nullptr;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return std::unique_ptr<HttpConnection>(new HttpConnection(fd));
  }
  ~HttpConnection() { close(); }

  bool send_raw(std::string_view bytes) {
    while (!bytes.empty() && fd_ >= 0) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return fd_ >= 0;
  }

  bool send_request(const std::string& method, const std::string& path, const std::string& body = "",
                    const Headers& headers = {}) {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    bool has_type = false;
    for (const auto& [k, v] : headers) {
      req += k + ": " + v + "\r\n";
      if (k == "Content-Type") has_type = true;
    }
    if (!body.empty() || method == "POST") {
      if (!has_type) req += "Content-Type: application/json\r\n";
      req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    req += "\r\n" + body;
    return send_raw(req);
  }

  // Status line and headers; the body is then read with read_body() or next_event().
  bool read_head(HttpResponse* out, int timeout_ms = 30000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    size_t end;
    while ((end = raw_.find("\r\n\r\n")) == std::string::npos) {
      if (!read_some(deadline)) {
        out->error = "no response head (" + why_ + ")";
        return false;
      }
    }
    const std::string head = raw_.substr(0, end);
    raw_.erase(0, end + 4);
    if (head.rfind("HTTP/1.", 0) != 0 || head.size() < 12) {
      out->error = "bad status line";
      return false;
    }
    out->status = std::atoi(head.c_str() + 9);
    size_t pos = head.find("\r\n");
    while (pos != std::string::npos) {
      const size_t next = head.find("\r\n", pos + 2);
      const std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        out->headers[name] = line.substr(v);
      }
      pos = next;
    }
    chunked_ = out->header("transfer-encoding").find("chunked") != std::string::npos;
    const std::string length = out->header("content-length");
    remaining_ = length.empty() ? -1 : std::atoll(length.c_str());
    if (out->status == 204 || out->status == 304) remaining_ = 0;  // never a body (RFC 9110)
    chunk_left_ = -1;
    body_done_ = !chunked_ && remaining_ == 0;
    return true;
  }

  // The rest of the body (to its end, or until the server closes when it has no length).
  bool read_body(std::string* body, int timeout_ms = 30000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      decode();
      if (body_done_) break;
      if (!read_some(deadline)) {
        if (!chunked_ && remaining_ < 0 && eof_) break;  // delimited by close
        return false;
      }
    }
    *body += decoded_;
    decoded_.clear();
    return true;
  }

  // The data of the next SSE event ("data: X\n\n" -> X); nullopt at the end of the body, on a
  // timeout or an error.
  std::optional<std::string> next_event(int timeout_ms = 30000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      decode();
      const size_t end = decoded_.find("\n\n");
      if (end != std::string::npos) {
        std::string event = decoded_.substr(0, end);
        decoded_.erase(0, end + 2);
        if (event.rfind("data: ", 0) == 0) event.erase(0, 6);
        return event;
      }
      if (body_done_ || !read_some(deadline)) return std::nullopt;
    }
  }

  // Waits until the server closes the connection; false on timeout.
  bool wait_closed(int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (read_some(deadline)) {
    }
    return eof_;
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }

 private:
  explicit HttpConnection(int fd) : fd_(fd) {}

  bool read_some(Clock::time_point deadline) {
    if (fd_ < 0 || eof_) {
      why_ = "closed";
      return false;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      why_ = "timeout";
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r <= 0) {
      why_ = r == 0 ? "timeout" : "poll failed";
      return false;
    }
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      eof_ = true;
      why_ = n == 0 ? "closed by server" : "connection reset";
      return false;
    }
    raw_.append(buf, static_cast<size_t>(n));
    return true;
  }

  // Moves body bytes from raw_ to decoded_ (de-chunking); sets body_done_ at the end.
  void decode() {
    if (body_done_) return;
    if (!chunked_) {
      size_t take = raw_.size();
      if (remaining_ >= 0) take = std::min<size_t>(take, static_cast<size_t>(remaining_));
      decoded_.append(raw_, 0, take);
      raw_.erase(0, take);
      if (remaining_ >= 0) {
        remaining_ -= static_cast<int64_t>(take);
        body_done_ = remaining_ == 0;
      }
      return;
    }
    for (;;) {
      if (chunk_left_ == -1) {  // the size line
        const size_t eol = raw_.find("\r\n");
        if (eol == std::string::npos) return;
        const int64_t size = std::strtoll(raw_.substr(0, eol).c_str(), nullptr, 16);
        raw_.erase(0, eol + 2);
        if (size <= 0) {  // the last chunk (trailers are not used by the server)
          body_done_ = true;
          return;
        }
        chunk_left_ = size;
      }
      if (chunk_left_ > 0) {
        const size_t take = std::min<size_t>(raw_.size(), static_cast<size_t>(chunk_left_));
        decoded_.append(raw_, 0, take);
        raw_.erase(0, take);
        chunk_left_ -= static_cast<int64_t>(take);
        if (chunk_left_ > 0) return;
        chunk_left_ = -2;
      }
      if (raw_.size() < 2) return;  // the CRLF after the data
      raw_.erase(0, 2);
      chunk_left_ = -1;
    }
  }

  int fd_ = -1;
  std::string raw_;
  std::string decoded_;
  std::string why_;
  bool eof_ = false;
  bool chunked_ = false;
  bool body_done_ = false;
  int64_t remaining_ = -1;
  int64_t chunk_left_ = -1;  // -1: size line next; -2: CRLF after data next
};

// One request on a fresh connection, the whole response.
inline HttpResponse http_request(int port, const std::string& method, const std::string& path,
                                 const std::string& body = "", const Headers& headers = {},
                                 int timeout_ms = 60000) {
  HttpResponse response;
  auto conn = HttpConnection::connect(port);
  if (!conn) {
    response.error = "connect failed";
    return response;
  }
  if (!conn->send_request(method, path, body, headers)) {
    response.error = "send failed";
    return response;
  }
  if (!conn->read_head(&response, timeout_ms)) return response;
  if (!conn->read_body(&response.body, timeout_ms)) response.error = "body incomplete";
  return response;
}

inline HttpResponse post_json(int port, const std::string& path, const std::string& body,
                              const Headers& headers = {}) {
  return http_request(port, "POST", path, body, headers);
}

// The value of an unlabelled sample line "name value" in Prometheus text; NaN when absent.
inline double metric_value(const std::string& text, const std::string& name) {
  size_t pos = 0;
  while ((pos = text.find(name + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') return std::strtod(text.c_str() + pos + name.size() + 1, nullptr);
    pos += name.size();
  }
  return std::numeric_limits<double>::quiet_NaN();
}

}  // namespace kvmesh::testing
