// HttpServer: the Boost.Beast listener and its sessions (HTTP/1.1 keep-alive, read/write timeouts,
// header and body limits, SSE streaming with backpressure, client-disconnect detection). The only
// translation unit that includes Beast; requests are answered by Routes.
#pragma once

#include <cstdint>
#include <memory>

#include "common/status.h"
#include "coordinator/server_config.h"

namespace kvmesh {

class Routes;

class HttpServer {
 public:
  // Binds config.host:config.port (0 picks a free port) and starts config.http_threads I/O threads.
  // Fails with a one-line message when the address cannot be used.
  static Result<std::unique_ptr<HttpServer>> start(const ServerConfig& config, Routes& routes);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const;
  // Generation requests whose response has not been fully written yet.
  int64_t n_in_flight() const;
  // Closes the listener and every connection, and joins the I/O threads.
  void stop();

 private:
  HttpServer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvmesh
