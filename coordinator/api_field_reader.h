// FieldReader: reads one JSON request body's fields with their types and ranges checked, keeping
// the first problem as an OpenAI-style ApiError that names the parameter; and parse_body, which
// refuses bodies nested too deep before parsing them.
#pragma once

#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "coordinator/api_json.h"

namespace kvmesh {

using JsonIn = nlohmann::json;
constexpr int kMaxJsonDepth = 64;
constexpr int64_t kInt32Max = INT32_MAX;

// The body as a JSON object, or a 400 (invalid JSON, too deep, not an object).
ApiResult<JsonIn> parse_body(std::string_view body);
// A value as it appears in messages, cut short.
std::string shown(const JsonIn& value);
// An integral JSON number (5, or 5.0) as int64; false for anything else.
bool as_int64(const JsonIn& value, int64_t* out);

// Reads the fields of one JSON object. null counts as absent (the default) everywhere. The first
// problem is kept; reads after it are harmless.
class FieldReader {
 public:
  explicit FieldReader(const JsonIn& object) : object_(object) {}

  // The key is there, even as null.
  bool present(const char* name) const { return object_.contains(name); }
  const JsonIn* find(const char* name) const {
    auto it = object_.find(name);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  void fail(std::string message, const std::string& param) { fail(bad_request(std::move(message), param)); }
  void fail(ApiError error) {
    if (!error_) error_ = std::move(error);
  }
  // "`name` must be <expected>, got <value>"
  void fail_expected(const std::string& name, const std::string& expected, const JsonIn& got);
  bool failed() const { return error_.has_value(); }
  const ApiError& error() const { return *error_; }

  std::optional<bool> boolean(const char* name);
  std::optional<int64_t> integer(const char* name, int64_t lo, int64_t hi);
  // In [lo, hi], or (lo, hi] when lo_open.
  std::optional<double> number(const char* name, double lo, double hi, bool lo_open);
  std::optional<std::string> string(const char* name, bool non_empty);

 private:
  const JsonIn& object_;
  std::optional<ApiError> error_;
};

}  // namespace kvmesh
