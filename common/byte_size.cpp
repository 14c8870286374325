// parse_byte_size: a number and an optional unit, powers of 1024 or 1000.
#include "common/byte_size.h"

#include <cctype>
#include <cmath>
#include <exception>

namespace kvmesh {
namespace {

struct SizeUnit {
  const char* suffix;
  double factor;
};
constexpr SizeUnit kSizeUnits[] = {
    {"", 1.0},         {"b", 1.0},
    {"k", 1024.0},     {"kib", 1024.0},     {"kb", 1e3},
    {"m", 1048576.0},  {"mib", 1048576.0},  {"mb", 1e6},
    {"g", 1073741824.0}, {"gib", 1073741824.0}, {"gb", 1e9},
    {"t", 1099511627776.0}, {"tib", 1099511627776.0}, {"tb", 1e12},
};

}  // namespace

Result<int64_t> parse_byte_size(const std::string& text) {
  const std::string bad = "'" + text + "' is not a size (examples: 1048576, 256KiB, 64MiB, 8GiB, 1.5GB)";
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return invalid_argument(bad);
  double value = 0.0;
  try {
    size_t used = 0;
    value = std::stod(text.substr(0, i), &used);
    if (used != i) return invalid_argument(bad);
  } catch (const std::exception&) {
    return invalid_argument(bad);
  }
  std::string unit;
  for (size_t k = i; k < text.size(); ++k) {
    if (text[k] == ' ' && unit.empty()) continue;
    unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[k])));
  }
  for (const SizeUnit& u : kSizeUnits) {
    if (unit != u.suffix) continue;
    const double bytes = std::floor(value * u.factor);
    if (!(bytes >= 0.0) || bytes > 9.0e18) return invalid_argument("'" + text + "' is too large");
    return static_cast<int64_t>(bytes);
  }
  return invalid_argument(bad);
}

}  // namespace kvmesh
