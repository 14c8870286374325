// The summary table printed after a run (vLLM's layout plus percentiles, errors by kind and the
// server's /metrics deltas) and the one-line-per-point sweep table.
#include <cstdio>
#include <string>

#include "client/report.h"

namespace kvmesh::load {
namespace {

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

void row(std::string& out, const std::string& name, const std::string& value) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-40s %s\n", name.c_str(), value.c_str());
  out += buf;
}

void latency_row(std::string& out, const char* name, const Stats& s) {
  char buf[256];
  if (s.n == 0) {
    std::snprintf(buf, sizeof buf, "%-16s %10s\n", name, "-");
  } else {
    std::snprintf(buf, sizeof buf, "%-16s %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f\n", name, s.mean, s.p50, s.p90,
                  s.p95, s.p99, s.max);
  }
  out += buf;
}

std::string slo_text(const SloSpec& slo) {
  std::string t;
  auto add = [&](const char* name, const std::optional<double>& v) {
    if (!v) return;
    if (!t.empty()) t += ", ";
    t += std::string(name) + " <= " + fmt("%g", *v) + " ms";
  };
  add("TTFT", slo.ttft_ms);
  add("TPOT", slo.tpot_ms);
  add("E2E", slo.e2e_ms);
  return t;
}

void server_section(std::string& out, const ServerDelta& d) {
  if (!d.ok) {
    out += "Server /metrics: not available\n";
    return;
  }
  out += "Server /metrics over the run (counter deltas, histogram means, gauges after):\n";
  for (const auto& [name, v] : d.counters) row(out, "  " + name, fmt("%.0f", v));
  for (const auto& [name, v] : d.histogram_means) {
    const bool seconds = name.find("_seconds") != std::string::npos;
    row(out, "  mean " + name, seconds ? fmt("%.2f ms", v * 1e3) : fmt("%.4g", v));
  }
  for (const auto& [name, v] : d.gauges_after) row(out, "  " + name, fmt("%.0f", v));
}

}  // namespace

std::string summary_table(const RunReport& run, const LoadConfig& config) {
  const RunSummary& s = run.summary;
  std::string out;
  out += "============ kvmesh-load: " + run.label + " ============\n";
  row(out, "Model:", run.model);
  row(out, "Workload:", run.workload);
  row(out, "Endpoint:", config.path() + (config.stream ? " (streaming)" : " (not streamed)"));
  row(out, "Successful requests:", std::to_string(s.completed));
  row(out, "Failed requests:", std::to_string(s.failed));
  if (s.disconnected > 0 || config.disconnect_fraction > 0.0) {
    row(out, "Dropped by --disconnect-fraction:", std::to_string(s.disconnected));
  }
  if (s.not_sent > 0) row(out, "Not sent (stopped early):", std::to_string(s.not_sent));
  for (const auto& [kind, n] : s.errors) row(out, "  errors: " + kind, std::to_string(n));
  row(out, "Benchmark duration (s):", fmt("%.2f", s.duration_s));
  if (s.completed > 0 && s.prompt_tokens_unknown == s.completed) {
    row(out, "Total input tokens:", "unknown (the server reported no prompt_tokens)");
  } else {
    row(out, "Total input tokens:", std::to_string(s.total_input_tokens) +
                                        (s.prompt_tokens_unknown > 0 ? " (" + std::to_string(s.prompt_tokens_unknown) +
                                                                           " requests not reported)"
                                                                     : ""));
  }
  row(out, "Total generated tokens:", std::to_string(s.total_output_tokens));
  if (s.total_cached_tokens > 0) row(out, "Prompt tokens from the prefix cache:", std::to_string(s.total_cached_tokens));
  row(out, "Request throughput (req/s):", fmt("%.2f", s.request_throughput));
  row(out, "Output token throughput (tok/s):", fmt("%.2f", s.output_throughput));
  row(out, "Peak output token throughput (tok/s):",
      fmt("%.2f", s.max_output_tokens_per_s) + " (" + fmt("%g", s.peak_bin_s) + " s bins)");
  row(out, "Peak concurrent requests:", std::to_string(s.max_concurrent_requests));
  row(out, "Total token throughput (tok/s):", fmt("%.2f", s.total_token_throughput));
  if (s.slo_set) {
    row(out, "SLO:", slo_text(config.slo));
    row(out, "Request goodput (req/s):", fmt("%.2f", s.request_goodput));
    row(out, "Requests meeting every SLO:",
        std::to_string(s.good) + " (" + fmt("%.1f", 100.0 * s.goodput_fraction) + "%, need " +
            fmt("%.1f", 100.0 * config.min_goodput_fraction) + "%)" + (s.slo_breached ? "  BREACHED" : "  met"));
  }
  if (s.output_len_mismatches > 0) row(out, "Output length != pinned length:", std::to_string(s.output_len_mismatches));
  if (s.usage_missing > 0) row(out, "No usage in reply (counted chunks):", std::to_string(s.usage_missing));
  out += "---------------------------------------------------------------------------------\n";
  char head[256];
  std::snprintf(head, sizeof head, "%-16s %10s %10s %10s %10s %10s %10s\n", "Latency (ms)", "mean", "p50", "p90", "p95",
                "p99", "max");
  out += head;
  latency_row(out, "TTFT", s.ttft);
  latency_row(out, "TPOT", s.tpot);
  latency_row(out, "ITL", s.itl);
  latency_row(out, "E2E", s.e2el);
  latency_row(out, "E2E (scheduled)", s.sched_e2el);
  out += "---------------------------------------------------------------------------------\n";
  server_section(out, run.server);
  out += "=================================================================================\n";
  return out;
}

std::string sweep_table(const std::vector<RunReport>& runs) {
  std::string out = "Sweep:\n";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-12s %10s %12s %10s %10s %10s %10s %8s\n", "point", "req/s", "out tok/s",
                "TTFT p50", "TTFT p99", "TPOT p50", "E2E p99", "failed");
  out += buf;
  for (const RunReport& r : runs) {
    const RunSummary& s = r.summary;
    const auto ms = [](const Stats& st, double v) { return st.n > 0 ? fmt("%.2f", v) : std::string("-"); };
    std::snprintf(buf, sizeof buf, "%-12s %10.2f %12.2f %10s %10s %10s %10s %8lld\n", r.label.c_str(),
                  s.request_throughput, s.output_throughput, ms(s.ttft, s.ttft.p50).c_str(),
                  ms(s.ttft, s.ttft.p99).c_str(), ms(s.tpot, s.tpot.p50).c_str(), ms(s.e2el, s.e2el.p99).c_str(),
                  static_cast<long long>(s.failed));
    out += buf;
  }
  return out;
}

}  // namespace kvmesh::load
