// Status names, formatting and the abort path of KVMESH_CHECK.
#include "common/status.h"

namespace kvmesh {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::ok: return "ok";
    case StatusCode::invalid_argument: return "invalid_argument";
    case StatusCode::not_found: return "not_found";
    case StatusCode::out_of_range: return "out_of_range";
    case StatusCode::data_loss: return "data_loss";
    case StatusCode::io_error: return "io_error";
    case StatusCode::resource_exhausted: return "resource_exhausted";
    case StatusCode::unavailable: return "unavailable";
    case StatusCode::cancelled: return "cancelled";
    case StatusCode::internal: return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(status_code_name(code_)) + ": " + message_;
}

Status Status::with_context(const std::string& context) const {
  if (is_ok()) return *this;
  return Status(code_, context + ": " + message_);
}

void check_failed(const char* file, int line, const char* expr, const std::string& message) {
  std::fprintf(stderr, "kvmesh: invariant failed at %s:%d: %s%s%s\n", file, line, expr,
               message.empty() ? "" : " -- ", message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace kvmesh
