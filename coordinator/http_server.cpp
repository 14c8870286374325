// HttpServer: Beast listener and sessions. A session reads one request at a time (header, then
// body, under one read deadline), answers it through Routes, and for generation requests drives a
// GenerationJob: deltas wake the session through its strand, SSE chunks are written one batch at a
// time (what arrives during a write waits for it: backpressure), and a pending wait on the socket
// notices a client that goes away, which cancels the job.
#include "coordinator/http_server.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/clock.h"
#include "coordinator/routes.h"

namespace kvmesh {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

constexpr size_t kMaxPipelinedBytes = 64 << 10;   // bytes read ahead while a job runs
constexpr auto kLingerTime = std::chrono::seconds(2);  // reading leftovers before closing

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

struct ServerShared {
  ServerShared(const ServerConfig& c, Routes& r) : config(c), routes(r) {}
  ServerConfig config;
  Routes& routes;
  std::atomic<int64_t> n_in_flight{0};
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ServerShared& shared)
      : stream_(std::move(socket)), shared_(shared), read_deadline_(stream_.get_executor()) {}
  ~Session() {
    if (counted_) --shared_.n_in_flight;
  }
  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); });
  }

 private:
  void read_header();
  void arm_read_deadline();
  void on_header(beast::error_code ec);
  std::optional<HttpReply> unsupported_coding() const;
  void read_body();
  void on_body(beast::error_code ec);
  void on_read_error(beast::error_code ec);
  void handle_request();
  void send_reply(HttpReply reply, bool close);
  void on_reply_written(beast::error_code ec, bool close);
  void start_job(std::unique_ptr<GenerationJob> job);
  void pump();
  void pump_guarded();
  void write_stream(std::string bytes, bool last);
  void on_stream_written(beast::error_code ec, bool last);
  std::string stream_head() const;
  void watch_client();
  void on_client_readable(beast::error_code ec, uint64_t watch);
  void stop_watch();
  void client_gone();
  void finish_request();
  void next_or_close(bool close);
  void linger_close();
  void drain_leftovers();

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  ServerShared& shared_;
  net::steady_timer read_deadline_;       // --read-timeout for the whole request (header and body)
  bool read_timed_out_ = false;
  http::response<http::string_body> response_;
  std::string out_;                       // stream bytes being written
  std::vector<char> discard_;             // linger_close scratch
  // The current request.
  RequestLog log_;
  HeaderList cors_headers_;               // what every reply to this request's Origin carries
  Clock::time_point arrival_;
  bool keep_alive_ = false;
  bool chunked_ = true;
  bool head_only_ = false;
  std::unique_ptr<GenerationJob> job_;
  std::shared_ptr<Session> self_;         // keeps the session alive while a job runs
  bool counted_ = false;                  // in shared_.n_in_flight
  bool writing_ = false;
  bool head_sent_ = false;
  uint64_t watch_id_ = 0;
};

// ---- reading a request ---------------------------------------------------------------------

void Session::read_header() {
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(shared_.config.max_header_bytes));
  parser_->body_limit(static_cast<std::uint64_t>(shared_.config.max_body_bytes));
  log_ = RequestLog{};
  cors_headers_.clear();
  head_only_ = false;
  arrival_ = Clock::now();
  arm_read_deadline();
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
}

// The request must arrive within --read-timeout. Its own timer rather than the stream's expiry, which
// would close the socket: a client that sent part of a request gets a 408 before it closes.
void Session::arm_read_deadline() {
  read_timed_out_ = false;
  read_deadline_.expires_after(to_ms(shared_.config.read_timeout_s));
  read_deadline_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec) return;  // cancelled: the request arrived, or the read failed first
    self->read_timed_out_ = true;
    beast::error_code ignored;
    self->stream_.socket().cancel(ignored);
  });
}

// A body in a coding the server cannot read is refused before it is read: a transfer coding other
// than chunked (501, RFC 9112), a content coding other than identity (415).
std::optional<HttpReply> Session::unsupported_coding() const {
  const auto& req = parser_->get();
  const std::string_view transfer = req[http::field::transfer_encoding];
  if (!transfer.empty() && !beast::iequals(transfer, "chunked")) {
    return error_reply(501, "Transfer-Encoding '" + std::string(transfer.substr(0, 64)) +
                                "' is not supported: send the body as is (Content-Length) or chunked",
                       "invalid_request_error", "unsupported_transfer_encoding");
  }
  const std::string_view content = req[http::field::content_encoding];
  if (!content.empty() && !beast::iequals(content, "identity")) {
    return error_reply(415, "Content-Encoding '" + std::string(content.substr(0, 64)) +
                                "' is not supported: send the body uncompressed",
                       "invalid_request_error", "unsupported_content_encoding");
  }
  return std::nullopt;
}

void Session::on_header(beast::error_code ec) {
  if (ec) return on_read_error(ec);
  arrival_ = Clock::now();
  const auto& req = parser_->get();
  log_.method = std::string(req.method_string());
  log_.path = std::string(req.target().substr(0, req.target().find('?')));
  size_t n_fields = 0;
  for (auto it = req.begin(); it != req.end(); ++it) ++n_fields;
  if (n_fields > static_cast<size_t>(shared_.config.max_header_count)) {
    return send_reply(error_reply(431, "Too many header fields (limit " +
                                           std::to_string(shared_.config.max_header_count) + ")",
                                  "invalid_request_error", "request_header_fields_too_large"), true);
  }
  if (auto refusal = unsupported_coding()) {
    read_deadline_.cancel();
    return send_reply(std::move(*refusal), true);
  }
  if (beast::iequals(req[http::field::expect], "100-continue")) {
    static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    return net::async_write(stream_, net::buffer(kContinue),
                            [self = shared_from_this()](beast::error_code wec, size_t) {
                              if (wec) return self->on_read_error(wec);
                              self->read_body();
                            });
  }
  read_body();
}

void Session::read_body() {
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
}

void Session::on_body(beast::error_code ec) {
  if (ec) return on_read_error(ec);
  read_deadline_.cancel();
  handle_request();
}

void Session::on_read_error(beast::error_code ec) {
  read_deadline_.cancel();
  if (read_timed_out_ && (parser_->got_some() || buffer_.size() > 0)) {  // part of a request, then silence
    char limit[32];
    std::snprintf(limit, sizeof limit, "%g s", shared_.config.read_timeout_s);
    return send_reply(error_reply(408, std::string("The request did not arrive in full within ") + limit +
                                           " (--read-timeout)",
                                  "invalid_request_error", "request_timeout"), true);
  }
  if (ec == http::error::header_limit) {
    return send_reply(error_reply(431, "Request header too large (limit " +
                                           std::to_string(shared_.config.max_header_bytes) + " bytes)",
                                  "invalid_request_error", "request_header_fields_too_large"), true);
  }
  if (ec == http::error::body_limit) {
    return send_reply(error_reply(413, "Request body too large (limit " +
                                           std::to_string(shared_.config.max_body_bytes) + " bytes)",
                                  "invalid_request_error", "request_too_large"), true);
  }
  const bool malformed = ec != http::error::end_of_stream && ec != http::error::partial_message &&
                         ec.category() == http::make_error_code(http::error::end_of_stream).category();
  if (malformed) {  // a malformed request (bad request line, header or chunk)
    return send_reply(error_reply(400, "Malformed HTTP request: " + ec.message(), "invalid_request_error",
                                  "bad_http_request"), true);
  }
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.socket().close(ignored);
}

void Session::handle_request() {
  const auto& req = parser_->get();
  keep_alive_ = req.keep_alive();
  chunked_ = req.version() >= 11;
  head_only_ = req.method() == http::verb::head;  // answered as GET, without the body
  HttpRequestView view;
  view.method = head_only_ ? std::string_view("GET") : std::string_view(req.method_string());
  view.target = req.target();
  view.authorization = req[http::field::authorization];
  view.origin = req[http::field::origin];
  view.preflight_method = req[http::field::access_control_request_method];
  view.preflight_headers = req[http::field::access_control_request_headers];
  view.body = req.body();
  cors_headers_ = shared_.routes.cors_headers(view.origin);
  RouteResult result = shared_.routes.handle(view, arrival_);
  if (result.job) return start_job(std::move(result.job));
  send_reply(std::move(result.reply), !keep_alive_);
}

// ---- whole replies ---------------------------------------------------------------------------

void Session::send_reply(HttpReply reply, bool close) {
  if (shared_.routes.draining()) close = true;
  response_ = {};
  response_.version(11);
  response_.result(static_cast<unsigned>(reply.status));
  response_.set(http::field::server, "kvmesh");
  if (!reply.content_type.empty()) response_.set(http::field::content_type, reply.content_type);
  if (!log_.id.empty()) response_.set("X-Request-Id", log_.id);
  for (auto& [name, value] : reply.headers) response_.set(name, value);
  for (auto& [name, value] : cors_headers_) response_.set(name, value);
  response_.body() = std::move(reply.body);
  response_.keep_alive(!close);
  response_.prepare_payload();
  if (reply.status == 204) response_.erase(http::field::content_length);  // a 204 has no body to size
  if (head_only_) response_.body().clear();
  log_.status = reply.status;
  stream_.expires_after(to_ms(shared_.config.write_timeout_s));
  http::async_write(stream_, response_, [self = shared_from_this(), close](beast::error_code ec, size_t) {
    self->on_reply_written(ec, close);
  });
}

void Session::on_reply_written(beast::error_code ec, bool close) {
  stream_.expires_never();
  finish_request();
  if (ec) {
    beast::error_code ignored;
    stream_.socket().close(ignored);
    return;
  }
  next_or_close(close);
}

void Session::next_or_close(bool close) {
  if (close) return linger_close();
  read_header();
}

void Session::finish_request() {
  if (job_) job_->fill_log(log_);
  log_.total_ms = ms_since(arrival_);
  shared_.routes.log(log_);
  if (counted_) {
    --shared_.n_in_flight;
    counted_ = false;
  }
  job_.reset();
  head_sent_ = false;
  self_.reset();  // last: may release this session once the caller's handler returns
}

// Half-closes, then reads (and drops) what the client still sends for a while, so that it gets
// our reply before the connection goes (closing with unread bytes would reset it).
void Session::linger_close() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  discard_.resize(16 << 10);
  stream_.expires_after(kLingerTime);
  drain_leftovers();
}

void Session::drain_leftovers() {
  stream_.async_read_some(net::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t) {
    if (!ec) return self->drain_leftovers();
    beast::error_code ignored;
    self->stream_.socket().close(ignored);
  });
}

// ---- generation jobs -----------------------------------------------------------------------

void Session::start_job(std::unique_ptr<GenerationJob> job) {
  job_ = std::move(job);
  log_.id = job_->id();
  std::weak_ptr<Session> weak = weak_from_this();
  auto executor = stream_.get_executor();
  auto refusal = job_->start([weak, executor] {
    net::post(executor, [weak] {
      if (auto self = weak.lock()) self->pump_guarded();
    });
  });
  if (refusal) {
    job_.reset();
    return send_reply(std::move(*refusal), !keep_alive_);
  }
  self_ = shared_from_this();
  counted_ = true;
  ++shared_.n_in_flight;
  watch_client();
  if (job_->streaming()) pump_guarded();  // the response head goes out at once
}

std::string Session::stream_head() const {
  std::string head = "HTTP/1.1 200 OK\r\nServer: kvmesh\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                     "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nX-Request-Id: " + log_.id + "\r\n";
  for (const auto& [name, value] : cors_headers_) head += name + ": " + value + "\r\n";
  if (chunked_) head += "Transfer-Encoding: chunked\r\n";
  head += keep_alive_ && chunked_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return head;
}

// pump(), but a failure building the output (out of memory, a broken invariant that throws) ends
// this request and its connection instead of leaving the client waiting.
void Session::pump_guarded() {
  try {
    pump();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvmesh-serve: request %s failed: %s\n", log_.id.c_str(), e.what());
    if (!job_) return;
    job_->cancel();
    log_.status = 500;
    beast::error_code ignored;
    stream_.socket().close(ignored);
    finish_request();
  }
}

// Moves what the engine sent to the client; called on every wake-up and after every write.
void Session::pump() {
  if (!job_ || writing_) return;
  std::string data = job_->take();
  if (!job_->streaming()) {
    if (!job_->finished()) return;
    stop_watch();
    log_.status = 200;
    return send_reply(job_->reply(), !keep_alive_);
  }
  std::string out;
  if (!head_sent_) {
    out = stream_head();
    head_sent_ = true;
  }
  if (!data.empty()) {
    if (!chunked_) {
      out += data;
    } else {
      char size[20];
      std::snprintf(size, sizeof size, "%zx\r\n", data.size());
      out += size + data + "\r\n";
    }
  }
  const bool last = job_->finished();
  if (last && chunked_) out += "0\r\n\r\n";
  if (out.empty()) return;
  // The client may close as soon as it reads [DONE], which can be before this write's completion
  // runs: from here on only a failed write means it left early.
  if (last) stop_watch();
  write_stream(std::move(out), last);
}

void Session::write_stream(std::string bytes, bool last) {
  writing_ = true;
  out_ = std::move(bytes);
  stream_.expires_after(to_ms(shared_.config.write_timeout_s));
  net::async_write(stream_, net::buffer(out_), [self = shared_from_this(), last](beast::error_code ec, size_t) {
    self->on_stream_written(ec, last);
  });
}

void Session::on_stream_written(beast::error_code ec, bool last) {
  writing_ = false;
  stream_.expires_never();
  if (!job_) return;
  if (ec) return client_gone();
  if (!last) return pump_guarded();
  stop_watch();
  log_.status = 200;
  const bool close = !keep_alive_ || !chunked_ || shared_.routes.draining();
  finish_request();
  next_or_close(close);
}

// While a job runs nothing is read, so a pending wait on the socket is what notices the client
// leaving (EOF or reset); bytes of a pipelined request are moved into the read buffer.
void Session::watch_client() {
  const uint64_t watch = ++watch_id_;
  stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this(), watch](beast::error_code ec) {
    self->on_client_readable(ec, watch);
  });
}

void Session::on_client_readable(beast::error_code ec, uint64_t watch) {
  if (watch != watch_id_ || !job_) return;
  if (ec) return ec == net::error::operation_aborted ? void() : client_gone();
  char c = 0;
  const ssize_t n = ::recv(stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return client_gone();
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? watch_client() : client_gone();
  beast::error_code rec;
  const size_t available = stream_.socket().available(rec);
  if (rec) return client_gone();
  if (buffer_.size() + available > kMaxPipelinedBytes) return;  // stop watching; writes still notice
  const size_t got = stream_.socket().read_some(buffer_.prepare(available), rec);
  if (rec) return client_gone();
  buffer_.commit(got);
  watch_client();
}

void Session::stop_watch() {
  ++watch_id_;
  beast::error_code ignored;
  stream_.socket().cancel(ignored);
}

void Session::client_gone() {
  if (!job_) return;
  job_->cancel();
  log_.status = 499;  // client closed request
  beast::error_code ignored;
  stream_.socket().close(ignored);
  finish_request();
}

// ---- listener ------------------------------------------------------------------------------

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& ioc, tcp::acceptor acceptor, ServerShared& shared)
      : ioc_(ioc), acceptor_(std::move(acceptor)), retry_(ioc), shared_(shared) {}
  void accept() {
    acceptor_.async_accept(net::make_strand(ioc_), [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
      self->on_accept(ec, std::move(s));
    });
  }
  void close() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->acceptor_.close(ignored);
      self->retry_.cancel();
    });
  }

 private:
  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {  // out of file descriptors and the like: back off a little
      retry_.expires_after(std::chrono::milliseconds(50));
      retry_.async_wait([self = shared_from_this()](beast::error_code wec) {
        if (!wec) self->accept();
      });
      return;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::make_shared<Session>(std::move(socket), shared_)->start();
    accept();
  }

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_;
  ServerShared& shared_;
};

Result<tcp::acceptor> open_acceptor(net::io_context& ioc, const ServerConfig& config) {
  const std::string where = config.host + ":" + std::to_string(config.port);
  beast::error_code ec;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(config.host, std::to_string(config.port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) return invalid_argument("cannot resolve --host " + config.host + ": " + ec.message());
  const tcp::endpoint endpoint = results.begin()->endpoint();
  tcp::acceptor acceptor(ioc);
  if (acceptor.open(endpoint.protocol(), ec); ec) return unavailable("cannot listen on " + where + ": " + ec.message());
  acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (acceptor.bind(endpoint, ec); ec) return unavailable("cannot listen on " + where + ": " + ec.message());
  if (acceptor.listen(net::socket_base::max_listen_connections, ec); ec) {
    return unavailable("cannot listen on " + where + ": " + ec.message());
  }
  return acceptor;
}

}  // namespace

struct HttpServer::Impl {
  Impl(const ServerConfig& config, Routes& routes) : ioc(config.http_threads), shared(config, routes) {}
  net::io_context ioc;
  ServerShared shared;
  std::shared_ptr<Listener> listener;
  std::vector<std::thread> threads;
  int port = 0;
};

HttpServer::HttpServer() = default;

HttpServer::~HttpServer() { stop(); }

Result<std::unique_ptr<HttpServer>> HttpServer::start(const ServerConfig& config, Routes& routes) {
  auto server = std::unique_ptr<HttpServer>(new HttpServer());
  server->impl_ = std::make_unique<Impl>(config, routes);
  Impl& impl = *server->impl_;
  auto acceptor = open_acceptor(impl.ioc, config);
  if (!acceptor.is_ok()) return acceptor.status();
  impl.port = acceptor->local_endpoint().port();
  impl.listener = std::make_shared<Listener>(impl.ioc, std::move(acceptor).value(), impl.shared);
  impl.listener->accept();
  for (int i = 0; i < config.http_threads; ++i) {
    impl.threads.emplace_back([&impl] {
      for (;;) {
        try {
          impl.ioc.run();
          return;
        } catch (const std::exception& e) {  // a handler threw: log it and keep serving
          std::fprintf(stderr, "kvmesh-serve: http thread: %s\n", e.what());
        }
      }
    });
  }
  return server;
}

int HttpServer::port() const { return impl_->port; }

int64_t HttpServer::n_in_flight() const { return impl_->shared.n_in_flight.load(); }

void HttpServer::stop() {
  if (!impl_) return;
  if (impl_->listener) impl_->listener->close();
  impl_->ioc.stop();
  for (auto& t : impl_->threads)
    if (t.joinable()) t.join();
  impl_->threads.clear();
  impl_->listener.reset();
}

}  // namespace kvmesh
