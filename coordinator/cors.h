// CorsPolicy: which browser origins may call the API (--allowed-origins), and the CORS headers of
// the replies to them: the answer to a preflight (OPTIONS) and the headers every reply carries.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace kvmesh {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

class CorsPolicy {
 public:
  CorsPolicy() = default;  // no origin may call: replies carry no CORS headers
  // "" (none), "*" (any origin) or a comma-separated list of origins, each scheme://host[:port].
  static Result<CorsPolicy> parse(std::string_view flag);

  bool enabled() const { return any_ || !origins_.empty(); }
  // A request from `origin` ("" when it sent none) may read the reply.
  bool allows(std::string_view origin) const;
  // What every reply to a request from `origin` adds (nothing when it is not allowed).
  HeaderList reply_headers(std::string_view origin) const;
  // The headers of a successful preflight for `methods` ("POST, OPTIONS"), allowing the headers
  // the browser asked for (Access-Control-Request-Headers) or Authorization and Content-Type.
  HeaderList preflight_headers(std::string_view origin, std::string_view methods,
                               std::string_view requested_headers) const;

 private:
  bool any_ = false;
  std::vector<std::string> origins_;  // lower case, no trailing slash
};

}  // namespace kvmesh
