// Prometheus text parsing and before/after deltas of the server's kvmesh_* series.
#include "client/prom_metrics.h"

#include <cstdlib>

namespace kvmesh::load {
namespace {

std::string family_of(const std::string& series) {
  const size_t brace = series.find('{');
  return series.substr(0, brace);
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string strip_suffix(const std::string& s, std::string_view suffix) {
  return ends_with(s, suffix) ? s.substr(0, s.size() - suffix.size()) : s;
}

}  // namespace

PromSnapshot parse_prometheus(std::string_view text) {
  PromSnapshot snap;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string line(text.substr(pos, end - pos));
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string rest = line.substr(7);
      const size_t space = rest.find(' ');
      if (space != std::string::npos) snap.types[rest.substr(0, space)] = rest.substr(space + 1);
      continue;
    }
    if (line[0] == '#') continue;
    // The series ends at the last space outside braces; an optional timestamp follows the value.
    const size_t close = line.find('}');
    const size_t value_at = line.find(' ', close == std::string::npos ? 0 : close);
    if (value_at == std::string::npos) continue;
    const std::string series = line.substr(0, value_at);
    const std::string value = line.substr(value_at + 1);
    char* stop = nullptr;
    const double v = std::strtod(value.c_str(), &stop);
    if (stop == value.c_str()) continue;
    snap.values[series] = v;
  }
  snap.ok = !snap.values.empty();
  return snap;
}

double prom_value(const PromSnapshot& snapshot, const std::string& series, double fallback) {
  auto it = snapshot.values.find(series);
  return it == snapshot.values.end() ? fallback : it->second;
}

ServerDelta diff_metrics(const PromSnapshot& before, const PromSnapshot& after) {
  ServerDelta d;
  d.ok = before.ok && after.ok;
  if (!d.ok) return d;
  auto type_of = [&](const std::string& family) {
    auto it = after.types.find(family);
    return it == after.types.end() ? std::string() : it->second;
  };
  for (const auto& [series, value] : after.values) {
    const std::string family = family_of(series);
    if (family.rfind("kvmesh_", 0) != 0) continue;
    const double was = prom_value(before, series, 0.0);
    if (ends_with(family, "_bucket")) continue;
    if (ends_with(family, "_sum") || ends_with(family, "_count")) {
      const std::string base = strip_suffix(strip_suffix(family, "_sum"), "_count");
      if (type_of(base) == "histogram" || type_of(base) == "summary") {
        if (!ends_with(family, "_sum")) continue;
        const std::string count_series = base + "_count" + series.substr(family.size());
        const double n = prom_value(after, count_series, 0.0) - prom_value(before, count_series, 0.0);
        if (n > 0) d.histogram_means.emplace_back(base + series.substr(family.size()), (value - was) / n);
        continue;
      }
    }
    const std::string type = type_of(family);
    if (type == "counter" || (type.empty() && ends_with(family, "_total"))) d.counters.emplace_back(series, value - was);
    else if (type == "gauge") d.gauges_after.emplace_back(series, value);
  }
  return d;
}

}  // namespace kvmesh::load
