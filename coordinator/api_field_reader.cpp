// FieldReader and parse_body: typed, range-checked reads of a JSON request body's fields.
#include "coordinator/api_field_reader.h"

#include <cmath>
#include <cstdio>

namespace kvmesh {
namespace {

// The JSON parser recurses, so a body of a million '[' is refused before it is parsed.
bool nesting_within(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

std::string format_number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

}  // namespace

ApiResult<JsonIn> parse_body(std::string_view body) {
  if (!nesting_within(body, kMaxJsonDepth)) {
    return bad_request("Invalid JSON: nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  JsonIn json;
  try {
    json = JsonIn::parse(body.begin(), body.end());
  } catch (const JsonIn::exception& e) {
    std::string what = e.what();  // "[json.exception.parse_error.101] parse error at line 1, ..."
    const size_t tag_end = what.find("] ");
    if (tag_end != std::string::npos) what.erase(0, tag_end + 2);
    return bad_request("Invalid JSON: " + what);
  }
  if (!json.is_object()) return bad_request("The request body must be a JSON object");
  return json;
}

std::string shown(const JsonIn& value) {
  std::string text = value.dump(-1, ' ', false, JsonIn::error_handler_t::replace);
  if (text.size() > 64) text = text.substr(0, 61) + "...";
  return text;
}

bool as_int64(const JsonIn& value, int64_t* out) {
  if (value.is_number_unsigned()) {
    const auto u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (value.is_number_integer()) {
    *out = value.get<int64_t>();
    return true;
  }
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (std::floor(d) != d || std::fabs(d) > 9.0e18) return false;
    *out = static_cast<int64_t>(d);
    return true;
  }
  return false;
}

void FieldReader::fail_expected(const std::string& name, const std::string& expected, const JsonIn& got) {
  fail("`" + name + "` must be " + expected + ", got " + shown(got), name.substr(0, name.find('.')));
}

std::optional<bool> FieldReader::boolean(const char* name) {
  const JsonIn* v = find(name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) return fail_expected(name, "a boolean", *v), std::nullopt;
  return v->get<bool>();
}

std::optional<int64_t> FieldReader::integer(const char* name, int64_t lo, int64_t hi) {
  const JsonIn* v = find(name);
  if (!v) return std::nullopt;
  int64_t x = 0;
  if (!as_int64(*v, &x) || x < lo || x > hi) {
    const std::string range = hi >= kInt32Max ? " >= " + std::to_string(lo)
                                              : " in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    return fail_expected(name, "an integer" + range, *v), std::nullopt;
  }
  return x;
}

std::optional<double> FieldReader::number(const char* name, double lo, double hi, bool lo_open) {
  const JsonIn* v = find(name);
  if (!v) return std::nullopt;
  const double x = v->is_number() ? v->get<double>() : NAN;
  if (!(lo_open ? x > lo : x >= lo) || !(x <= hi)) {
    const std::string range = (lo_open ? "(" : "[") + format_number(lo) + ", " + format_number(hi) + "]";
    return fail_expected(name, "a number in " + range, *v), std::nullopt;
  }
  return x;
}

std::optional<std::string> FieldReader::string(const char* name, bool non_empty) {
  const JsonIn* v = find(name);
  if (!v) return std::nullopt;
  if (!v->is_string() || (non_empty && v->get_ref<const std::string&>().empty())) {
    return fail_expected(name, non_empty ? "a non-empty string" : "a string", *v), std::nullopt;
  }
  return v->get<std::string>();
}

}  // namespace kvmesh
