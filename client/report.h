// RunReport: one run (a sweep point) as every reporter sees it, and the reporters: the summary
// table (text), the result JSON with vLLM's key names, the per-request JSONL, the HTML page.
#pragma once

#include <string>
#include <vector>

#include "client/load_config.h"
#include "client/metrics_math.h"
#include "client/prom_metrics.h"
#include "client/runner.h"

namespace kvmesh::load {

struct RunReport {
  std::string label;     // "c=8", "rate=20/s", ...
  std::string model;
  std::string workload;  // Workload::summary
  RunSummary summary;
  RunOutput output;
  ServerDelta server;
};

// report_text.cpp
std::string summary_table(const RunReport& run, const LoadConfig& config);
std::string sweep_table(const std::vector<RunReport>& runs);

// report_json.cpp
std::string result_json(const std::vector<RunReport>& runs, const LoadConfig& config, bool breached);
std::string requests_jsonl(const std::vector<RunReport>& runs, const LoadConfig& config);

// report_html.cpp
std::string html_report(const std::vector<RunReport>& runs, const LoadConfig& config, bool breached);

}  // namespace kvmesh::load
