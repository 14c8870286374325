// Status and Result<T>: expected failures carried as values; KVMESH_CHECK for broken invariants.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace kvmesh {

enum class StatusCode {
  ok = 0,
  invalid_argument,    // bad input from a user, a file or a peer
  not_found,           // missing file, tensor, model, route
  out_of_range,        // index or length outside its bounds
  data_loss,           // corrupt bytes (checksum, truncated file)
  io_error,            // read/write/mmap failure
  resource_exhausted,  // no free page, queue full
  unavailable,         // not ready, draining, a rank lost
  cancelled,           // client went away
  internal,            // should not happen, but is not worth aborting the process
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }

  bool is_ok() const { return code_ == StatusCode::ok; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: message"
  std::string to_string() const;
  // Returns a copy whose message is "context: message".
  Status with_context(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::ok;
  std::string message_;
};

inline Status invalid_argument(std::string m) { return {StatusCode::invalid_argument, std::move(m)}; }
inline Status not_found(std::string m) { return {StatusCode::not_found, std::move(m)}; }
inline Status out_of_range(std::string m) { return {StatusCode::out_of_range, std::move(m)}; }
inline Status data_loss(std::string m) { return {StatusCode::data_loss, std::move(m)}; }
inline Status io_error(std::string m) { return {StatusCode::io_error, std::move(m)}; }
inline Status resource_exhausted(std::string m) { return {StatusCode::resource_exhausted, std::move(m)}; }
inline Status unavailable(std::string m) { return {StatusCode::unavailable, std::move(m)}; }
inline Status cancelled(std::string m) { return {StatusCode::cancelled, std::move(m)}; }
inline Status internal_error(std::string m) { return {StatusCode::internal, std::move(m)}; }

// Either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).is_ok()) v_ = Status(StatusCode::internal, "Result built from ok Status");
  }

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status ok_status;
    return is_ok() ? ok_status : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &std::get<T>(v_); }
  const T* operator->() const { return &std::get<T>(v_); }
  T& operator*() & { return std::get<T>(v_); }
  const T& operator*() const& { return std::get<T>(v_); }

 private:
  std::variant<T, Status> v_;
};

[[noreturn]] void check_failed(const char* file, int line, const char* expr, const std::string& message);

}  // namespace kvmesh

// Broken invariant: print file:line and abort. Never for input a user or peer can control.
#define KVMESH_CHECK(cond)                                                     \
  do {                                                                         \
    if (!(cond)) ::kvmesh::check_failed(__FILE__, __LINE__, #cond, "");        \
  } while (0)
#define KVMESH_CHECK_MSG(cond, msg)                                            \
  do {                                                                         \
    if (!(cond)) ::kvmesh::check_failed(__FILE__, __LINE__, #cond, (msg));     \
  } while (0)

// Propagate a non-ok Status from an expression returning Status.
#define KVMESH_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::kvmesh::Status kvmesh_status_ = (expr);        \
    if (!kvmesh_status_.is_ok()) return kvmesh_status_; \
  } while (0)

#define KVMESH_CONCAT_INNER(a, b) a##b
#define KVMESH_CONCAT(a, b) KVMESH_CONCAT_INNER(a, b)
// KVMESH_ASSIGN_OR_RETURN(auto x, expr_returning_Result);
#define KVMESH_ASSIGN_OR_RETURN(lhs, expr)                                      \
  auto KVMESH_CONCAT(kvmesh_result_, __LINE__) = (expr);                        \
  if (!KVMESH_CONCAT(kvmesh_result_, __LINE__).is_ok())                         \
    return KVMESH_CONCAT(kvmesh_result_, __LINE__).status();                    \
  lhs = std::move(KVMESH_CONCAT(kvmesh_result_, __LINE__)).value()
