// EventLoop and HttpClient on Boost.Asio / Beast (the only Beast translation unit of kvmesh-load):
// one Exchange per request (connect or reuse, write, read_some until the parser is done), a pool
// of idle keep-alive connections, one absolute deadline per request, abort by closing the socket.
#include "client/http_client.h"

#include <deque>
#include <optional>
#include <unordered_map>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace kvmesh::load {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

// ---- EventLoop ---------------------------------------------------------------------------------

struct EventLoop::Impl {
  net::io_context io{1};
  std::optional<net::signal_set> signals;
  std::function<void()> on_interrupt;

  void wait_signal() {
    signals->async_wait([this](const error_code& ec, int) {
      if (ec) return;
      if (on_interrupt) on_interrupt();
      wait_signal();
    });
  }
};

EventLoop::EventLoop() : impl_(std::make_unique<Impl>()) {}
EventLoop::~EventLoop() = default;

void EventLoop::call_at(Clock::time_point when, std::function<void()> fn) {
  auto timer = std::make_shared<net::steady_timer>(impl_->io, when);
  timer->async_wait([timer, fn = std::move(fn)](const error_code& ec) {
    if (!ec) fn();
  });
}

void EventLoop::post(std::function<void()> fn) { net::post(impl_->io, std::move(fn)); }

void EventLoop::on_interrupt(std::function<void()> fn) {
  impl_->on_interrupt = std::move(fn);
  if (!impl_->signals) {
    impl_->signals.emplace(impl_->io, SIGINT, SIGTERM);
    impl_->wait_signal();
  }
}

void EventLoop::run() {
  impl_->io.restart();
  impl_->io.run();
  if (impl_->signals) {
    error_code ec;
    impl_->signals->cancel(ec);
  }
}

void EventLoop::stop() { impl_->io.stop(); }

// ---- HttpClient --------------------------------------------------------------------------------

namespace {

constexpr uint64_t kBodyLimit = 1ull << 30;
constexpr size_t kMaxIdle = 65536;

std::string_view as_view(beast::string_view s) { return {s.data(), s.size()}; }

std::string classify(const error_code& ec, bool connecting) {
  if (ec == beast::error::timeout) return "timeout";
  if (connecting) return "connect";
  if (ec == net::error::operation_aborted) return "aborted";
  if (ec.category() == http::make_error_code(http::error::need_more).category() && ec != http::error::end_of_stream &&
      ec != http::error::partial_message) {
    return "protocol";
  }
  return "reset";  // eof, connection reset, broken pipe, partial message, ...
}

}  // namespace

struct HttpClient::Impl : std::enable_shared_from_this<HttpClient::Impl> {
  struct Exchange;

  net::io_context& io;
  HttpTarget target;
  bool keep_alive;
  tcp::resolver::results_type endpoints;
  std::string resolve_error;
  std::vector<std::unique_ptr<beast::tcp_stream>> idle;
  std::unordered_map<uint64_t, std::shared_ptr<Exchange>> active;
  uint64_t next_id = 1;

  Impl(net::io_context& io_, HttpTarget target_, bool keep_alive_)
      : io(io_), target(std::move(target_)), keep_alive(keep_alive_) {
    tcp::resolver resolver(io);
    error_code ec;
    endpoints = resolver.resolve(target.host, target.port, ec);
    if (ec) resolve_error = "cannot resolve " + target.host + ":" + target.port + ": " + ec.message();
  }

  void give_back(std::unique_ptr<beast::tcp_stream> stream) {
    if (!keep_alive || idle.size() >= kMaxIdle) return;
    stream->expires_never();
    idle.push_back(std::move(stream));
  }
};

struct HttpClient::Impl::Exchange : std::enable_shared_from_this<Exchange> {
  std::weak_ptr<Impl> client;
  uint64_t id = 0;
  HttpEvents events;
  http::request<http::string_body> message;
  Clock::time_point deadline;
  std::unique_ptr<beast::tcp_stream> stream;
  std::optional<http::response_parser<http::string_body>> parser;
  beast::flat_buffer buffer;
  std::function<size_t(uint64_t, beast::string_view, error_code&)> chunk_cb;
  Clock::time_point read_at;
  size_t body_seen = 0;
  bool reused = false;
  bool retried = false;
  bool got_bytes = false;
  bool status_sent = false;
  bool aborted = false;
  bool done = false;

  void begin(Impl& c) {
    parser.emplace();
    parser->body_limit(kBodyLimit);
    chunk_cb = [this](uint64_t, beast::string_view body, error_code&) {
      if (events.on_body && !body.empty()) events.on_body(as_view(body), read_at);
      return body.size();
    };
    parser->on_chunk_body(chunk_cb);
    buffer.clear();
    body_seen = 0;
    if (!c.idle.empty() && !retried) {
      stream = std::move(c.idle.back());
      c.idle.pop_back();
      reused = true;
      stream->expires_at(deadline);
      return write();
    }
    reused = false;
    stream = std::make_unique<beast::tcp_stream>(c.io);
    stream->expires_at(deadline);
    stream->async_connect(c.endpoints, [self = shared_from_this()](const error_code& ec, const tcp::endpoint&) {
      if (ec) return self->finish(ec, true);
      error_code ignored;
      self->stream->socket().set_option(tcp::no_delay(true), ignored);
      self->write();
    });
  }

  void write() {
    http::async_write(*stream, message, [self = shared_from_this()](const error_code& ec, size_t) {
      if (ec) return self->fail_or_retry(ec);
      self->read();
    });
  }

  void read() {
    http::async_read_some(*stream, buffer, *parser, [self = shared_from_this()](const error_code& ec, size_t n) {
      self->read_at = Clock::now();
      if (n > 0) self->got_bytes = true;
      if (ec) return self->fail_or_retry(ec);
      self->deliver();
      if (self->done) return;
      if (self->parser->is_done()) return self->complete();
      self->read();
    });
  }

  // Body bytes of responses that are not chunked (chunked ones go through chunk_cb).
  void deliver() {
    if (parser->is_header_done() && !status_sent) {
      status_sent = true;
      if (events.on_status) events.on_status(static_cast<int>(parser->get().result_int()));
    }
    const std::string& body = parser->get().body();
    if (body.size() > body_seen && events.on_body) {
      events.on_body(std::string_view(body).substr(body_seen), read_at);
    }
    body_seen = body.size();
  }

  void fail_or_retry(const error_code& ec) {
    // A pooled connection the server closed while idle: try once more on a fresh one.
    auto c = client.lock();
    if (c && reused && !retried && !got_bytes && !aborted && ec != beast::error::timeout &&
        Clock::now() < deadline) {
      retried = true;
      stream.reset();
      return begin(*c);
    }
    finish(ec, false);
  }

  void complete() {
    auto c = client.lock();
    const bool reusable = parser->keep_alive() && !aborted;
    if (c && reusable) c->give_back(std::move(stream));
    finish({}, false);
  }

  void finish(const error_code& ec, bool connecting) {
    if (done) return;
    done = true;
    HttpError error;
    if (ec) {
      error.kind = aborted ? "aborted" : classify(ec, connecting);
      error.message = ec.message();
    }
    if (stream && ec) {
      error_code ignored;
      stream->socket().close(ignored);
    }
    stream.reset();
    auto c = client.lock();
    if (c) c->active.erase(id);
    auto on_done = std::move(events.on_done);
    events = {};
    if (on_done) on_done(error, Clock::now());
  }
};

HttpClient::HttpClient(EventLoop& loop, HttpTarget target, bool keep_alive)
    : impl_(std::make_shared<Impl>(loop.impl_->io, std::move(target), keep_alive)) {}

HttpClient::~HttpClient() {
  auto active = std::move(impl_->active);
  for (auto& [id, ex] : active) {
    ex->events = {};
    if (ex->stream) {
      error_code ignored;
      ex->stream->socket().close(ignored);
    }
  }
}

uint64_t HttpClient::start(HttpRequest request, HttpEvents events) {
  auto ex = std::make_shared<Impl::Exchange>();
  ex->client = impl_;
  ex->id = impl_->next_id++;
  ex->events = std::move(events);
  ex->deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(request.timeout_s));
  auto& m = ex->message;
  m.method(request.method == "GET" ? http::verb::get : http::verb::post);
  m.target(request.path);
  m.version(11);
  m.set(http::field::host, impl_->target.host + ":" + impl_->target.port);
  m.set(http::field::user_agent, "kvmesh-load");
  if (!impl_->target.api_key.empty()) m.set(http::field::authorization, "Bearer " + impl_->target.api_key);
  if (!request.body.empty() || m.method() == http::verb::post) {
    m.set(http::field::content_type, "application/json");
    m.body() = std::move(request.body);
  }
  m.keep_alive(impl_->keep_alive);
  m.prepare_payload();
  impl_->active.emplace(ex->id, ex);
  if (!impl_->resolve_error.empty()) {
    const uint64_t id = ex->id;
    net::post(impl_->io, [ex, message = impl_->resolve_error] {
      ex->done = true;
      if (auto c = ex->client.lock()) c->active.erase(ex->id);
      if (ex->events.on_done) ex->events.on_done(HttpError{"connect", message}, Clock::now());
    });
    return id;
  }
  ex->begin(*impl_);
  return ex->id;
}

void HttpClient::abort(uint64_t id) {
  auto it = impl_->active.find(id);
  if (it == impl_->active.end()) return;
  auto ex = it->second;
  ex->aborted = true;
  if (ex->stream) {
    error_code ignored;
    ex->stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
    ex->stream->socket().close(ignored);
  }
}

int64_t HttpClient::n_active() const { return static_cast<int64_t>(impl_->active.size()); }

// ---- blocking helpers --------------------------------------------------------------------------

std::vector<HttpReply> http_fetch_all(const HttpTarget& target, const std::vector<HttpRequest>& requests,
                                      int32_t concurrency) {
  std::vector<HttpReply> replies(requests.size());
  EventLoop loop;
  HttpClient client(loop, target, true);
  size_t next = 0;
  std::function<void()> launch = [&] {
    if (next >= requests.size()) return;
    const size_t i = next++;
    HttpEvents ev;
    ev.on_status = [&replies, i](int status) { replies[i].status = status; };
    ev.on_body = [&replies, i](std::string_view bytes, Clock::time_point) { replies[i].body.append(bytes); };
    ev.on_done = [&replies, &launch, i](const HttpError& error, Clock::time_point) {
      replies[i].error = error;
      launch();
    };
    client.start(requests[i], std::move(ev));
  };
  for (int32_t k = 0; k < std::max(concurrency, 1); ++k) launch();
  loop.run();
  return replies;
}

HttpReply http_fetch(const HttpTarget& target, const HttpRequest& request) {
  return http_fetch_all(target, {request}, 1).front();
}

}  // namespace kvmesh::load
