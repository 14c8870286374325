// CorsPolicy: --allowed-origins parsing, origin matching and the CORS header sets.
#include "coordinator/cors.h"

#include <algorithm>
#include <cctype>

namespace kvmesh {
namespace {

constexpr std::string_view kPreflightMaxAgeS = "600";

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// scheme://host[:port] and nothing after it (a trailing "/" is dropped).
bool looks_like_origin(std::string_view origin) {
  const size_t sep = origin.find("://");
  if (sep == std::string_view::npos || sep == 0) return false;
  const std::string_view rest = origin.substr(sep + 3);
  return !rest.empty() && rest.find_first_of("/?# ") == std::string_view::npos;
}

}  // namespace

Result<CorsPolicy> CorsPolicy::parse(std::string_view flag) {
  CorsPolicy policy;
  flag = trimmed(flag);
  if (flag.empty()) return policy;
  if (flag == "*") {
    policy.any_ = true;
    return policy;
  }
  for (;;) {  // every comma-separated item, an empty last one included
    const size_t comma = flag.find(',');
    std::string_view item = trimmed(flag.substr(0, comma));
    if (!item.empty() && item.back() == '/') item.remove_suffix(1);
    if (!looks_like_origin(item)) {
      return invalid_argument("--allowed-origins: \"" + std::string(item) +
                              "\" is not an origin (scheme://host[:port], or * for any)");
    }
    policy.origins_.push_back(lower(item));
    if (comma == std::string_view::npos) return policy;
    flag.remove_prefix(comma + 1);
  }
}

bool CorsPolicy::allows(std::string_view origin) const {
  if (origin.empty() || !enabled()) return false;
  if (any_) return true;
  const std::string want = lower(origin);
  return std::find(origins_.begin(), origins_.end(), want) != origins_.end();
}

HeaderList CorsPolicy::reply_headers(std::string_view origin) const {
  if (!allows(origin)) return {};
  HeaderList headers;
  headers.emplace_back("Access-Control-Allow-Origin", any_ ? std::string("*") : std::string(origin));
  if (!any_) headers.emplace_back("Vary", "Origin");
  headers.emplace_back("Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
  return headers;
}

HeaderList CorsPolicy::preflight_headers(std::string_view origin, std::string_view methods,
                                         std::string_view requested_headers) const {
  HeaderList headers = reply_headers(origin);
  if (headers.empty()) return headers;
  headers.emplace_back("Access-Control-Allow-Methods", std::string(methods));
  requested_headers = trimmed(requested_headers);
  headers.emplace_back("Access-Control-Allow-Headers",
                       requested_headers.empty() ? std::string("Authorization, Content-Type")
                                                 : std::string(requested_headers));
  headers.emplace_back("Access-Control-Max-Age", std::string(kPreflightMaxAgeS));
  return headers;
}

}  // namespace kvmesh
