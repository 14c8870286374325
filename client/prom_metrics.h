// The server's GET /metrics (Prometheus text) before and after a run: every kvmesh_* counter's
// delta (prefix hits, pages moved, preemptions, tokens, ... whichever exist), the mean of each
// histogram over the run, and the gauges afterwards.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kvmesh::load {

struct PromSnapshot {
  bool ok = false;
  std::map<std::string, double> values;     // "name{labels}" -> value
  std::map<std::string, std::string> types; // family name -> counter, gauge, histogram, ...
};

PromSnapshot parse_prometheus(std::string_view text);

struct ServerDelta {
  bool ok = false;
  std::vector<std::pair<std::string, double>> counters;         // kvmesh_* counter deltas
  std::vector<std::pair<std::string, double>> histogram_means;  // family -> mean over the run (its unit)
  std::vector<std::pair<std::string, double>> gauges_after;     // kvmesh_* gauges at the end
};

ServerDelta diff_metrics(const PromSnapshot& before, const PromSnapshot& after);

// The value of `series` ("name" or "name{labels}"), or `fallback`.
double prom_value(const PromSnapshot& snapshot, const std::string& series, double fallback = -1.0);

}  // namespace kvmesh::load
