// The self-contained HTML report: summary table and inline SVG charts (latency CDFs with the SLO
// thresholds, each run's output tokens/s and requests in flight on its own time axis, and the
// throughput-latency curves of a sweep). No scripts, no external files.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "client/report.h"
#include "client/svg_chart.h"

namespace kvmesh::load {
namespace {

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

// Empirical CDF of `values`, at most ~400 points.
std::vector<std::pair<double, double>> cdf(std::vector<double> values) {
  std::vector<std::pair<double, double>> pts;
  if (values.empty()) return pts;
  std::sort(values.begin(), values.end());
  const size_t n = values.size(), step = std::max<size_t>(1, n / 400);
  for (size_t i = 0; i < n; i += step) pts.emplace_back(values[i], static_cast<double>(i + 1) / static_cast<double>(n));
  pts.emplace_back(values.back(), 1.0);
  return pts;
}

std::vector<RefLine> slo_line(const std::optional<double>& slo_ms, bool vertical) {
  if (!slo_ms) return {};
  return {RefLine{*slo_ms, vertical, "SLO " + fixed(*slo_ms, 2) + " ms"}};
}

std::string cdf_charts(const std::vector<RunReport>& runs, const SloSpec& slo) {
  struct Metric {
    const char* title;
    std::vector<double> (*values)(const RequestRecord&);
    const std::optional<double>* slo;
  };
  const Metric metrics[] = {
      {"TTFT", [](const RequestRecord& r) { return r.has_ttft() ? std::vector<double>{r.ttft_ms()} : std::vector<double>{}; },
       &slo.ttft_ms},
      {"TPOT", [](const RequestRecord& r) { return r.has_tpot() ? std::vector<double>{r.tpot_ms()} : std::vector<double>{}; },
       &slo.tpot_ms},
      {"ITL", [](const RequestRecord& r) { return r.itls_ms(); }, nullptr},
      {"E2E latency (from the scheduled send)", [](const RequestRecord& r) { return std::vector<double>{r.sched_e2el_ms()}; },
       &slo.e2e_ms},
  };
  std::string out = "<h2>Latency distributions</h2>\n";
  if (slo.any()) out += "<p>Dashed lines: the SLO thresholds.</p>\n";
  out += "<div class='charts'>\n";
  for (const Metric& m : metrics) {
    Chart chart(std::string(m.title) + " CDF", "milliseconds", "fraction of requests");
    for (const RunReport& run : runs) {
      std::vector<double> v;
      for (const RequestRecord& r : run.output.records) {
        if (!r.ok()) continue;
        const auto add = m.values(r);
        v.insert(v.end(), add.begin(), add.end());
      }
      if (!v.empty()) chart.series.push_back(ChartSeries(run.label, cdf(std::move(v))));
    }
    if (chart.series.empty()) continue;
    if (m.slo) chart.refs = slo_line(*m.slo, true);
    out += svg_chart(chart);
  }
  return out + "</div>\n";
}

// One row per run, each on its own time axis: output tokens/s (the bins the summary's peak comes
// from, the peak dashed) and requests in flight.
std::string timeline_charts(const std::vector<RunReport>& runs) {
  std::string out = "<h2>Over time</h2>\n<p>Output tokens per second in bins of the width in each title; the "
                    "dashed line is the highest bin, the summary's peak. Each run has its own time axis.</p>\n";
  for (const RunReport& run : runs) {
    const ThroughputSeries tput = output_throughput_series(run.output.records, run.output.duration_s);
    ChartSeries t(run.label), f(run.label);
    for (size_t i = 0; i < tput.tokens_per_s.size(); ++i) {
      t.points.emplace_back((static_cast<double>(i) + 0.5) * tput.bin_s, tput.tokens_per_s[i]);
    }
    for (const TimelineSample& s : run.output.timeline) f.points.emplace_back(s.t_s, static_cast<double>(s.in_flight));
    Chart tokens(run.label + ": output tokens/s (" + seconds(tput.bin_s) + " bins)", "seconds since the start",
                 "tokens/s", {std::move(t)}, {RefLine{tput.peak(), false, "peak " + fixed(tput.peak(), 2) + " tok/s"}});
    tokens.x_from_zero = true;
    Chart inflight(run.label + ": requests in flight", "seconds since the start", "requests", {std::move(f)});
    inflight.x_from_zero = true;
    out += "<div class='charts'>\n" + svg_chart(tokens) + svg_chart(inflight) + "</div>\n";
  }
  return out;
}

std::string sweep_charts(const std::vector<RunReport>& runs, const SloSpec& slo) {
  ChartSeries ttft50("TTFT p50"), ttft99("TTFT p99"), tpot50("TPOT p50"), tpot99("TPOT p99"), e2e99("E2E p99");
  for (ChartSeries* s : {&ttft50, &ttft99, &tpot50, &tpot99, &e2e99}) s->markers = true;
  const auto add = [](ChartSeries& s, const RunReport& r, const Stats& st, double v) {
    if (st.n == 0) return;
    s.points.emplace_back(r.summary.output_throughput, v);
    s.point_labels.push_back(r.label);
  };
  for (const RunReport& r : runs) {
    add(ttft50, r, r.summary.ttft, r.summary.ttft.p50);
    add(ttft99, r, r.summary.ttft, r.summary.ttft.p99);
    add(tpot50, r, r.summary.tpot, r.summary.tpot.p50);
    add(tpot99, r, r.summary.tpot, r.summary.tpot.p99);
    add(e2e99, r, r.summary.sched_e2el, r.summary.sched_e2el.p99);
  }
  const auto chart = [](const std::string& title, std::vector<ChartSeries> series, std::vector<RefLine> refs) {
    bool any = false;  // nothing measured (TTFT and TPOT of --no-stream runs): no chart
    for (const ChartSeries& s : series) any = any || !s.points.empty();
    if (!any) return std::string();
    Chart c(title, "output tokens/s", "milliseconds", std::move(series), std::move(refs));
    c.pad_x = true;
    return svg_chart(c);
  };
  return "<h2>Throughput and latency across the sweep</h2>\n<div class='charts'>\n" +
         chart("TTFT vs throughput", {ttft50, ttft99}, slo_line(slo.ttft_ms, false)) +
         chart("TPOT vs throughput", {tpot50, tpot99}, slo_line(slo.tpot_ms, false)) +
         chart("E2E p99 (from the scheduled send) vs throughput", {e2e99}, slo_line(slo.e2e_ms, false)) +
         "</div>\n";
}

std::string summary_html(const std::vector<RunReport>& runs) {
  bool one_bin = true;  // every run's peak from bins of the same width: say it once, in the header
  for (const RunReport& r : runs) one_bin = one_bin && r.summary.peak_bin_s == runs.front().summary.peak_bin_s;
  const std::string bins = one_bin && !runs.empty() ? " (" + seconds(runs.front().summary.peak_bin_s) + " bins)" : "";
  std::string out = "<h2>Summary</h2>\n<table><tr><th>run</th><th>completed</th><th>failed</th><th>dropped</th>"
                    "<th>req/s</th><th>output tok/s</th><th>peak output tok/s" + bins + "</th><th>TTFT p50 / p99 ms</th>"
                    "<th>TPOT p50 / p99 ms</th><th>ITL p50 / p99 ms</th><th>E2E p50 / p99 ms</th><th>goodput</th></tr>\n";
  for (const RunReport& r : runs) {
    const RunSummary& s = r.summary;
    auto pair = [](const Stats& st) { return st.n ? fixed(st.p50, 2) + " / " + fixed(st.p99, 2) : std::string("-"); };
    out += "<tr><td>" + esc(r.label) + "</td><td>" + std::to_string(s.completed) + "</td><td>" +
           std::to_string(s.failed) + "</td><td>" + std::to_string(s.disconnected) + "</td><td>" +
           fixed(s.request_throughput, 2) + "</td><td>" + fixed(s.output_throughput, 2) + "</td><td>" +
           fixed(s.max_output_tokens_per_s, 2) + (one_bin ? "" : " (" + seconds(s.peak_bin_s) + " bins)") + "</td><td>" +
           pair(s.ttft) +
           "</td><td>" + pair(s.tpot) + "</td><td>" + pair(s.itl) + "</td><td>" + pair(s.e2el) + "</td><td>" +
           (s.slo_set ? fixed(100.0 * s.goodput_fraction, 2) + "%" + (s.slo_breached ? " (breached)" : "") : "-") +
           "</td></tr>\n";
  }
  return out + "</table>\n";
}

}  // namespace

std::string html_report(const std::vector<RunReport>& runs, const LoadConfig& config, bool breached) {
  std::string title = "kvmesh-load report" + (config.label.empty() ? "" : ": " + config.label);
  std::string out = "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>" + esc(title) +
                    "</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222}"
                    "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;"
                    "text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}"
                    ".charts svg{margin:6px;border:1px solid #eee}pre{background:#f8f8f8;padding:8px;"
                    "overflow-x:auto}.bad{color:#b00}</style></head><body>\n";
  out += "<h1>" + esc(title) + "</h1>\n";
  if (!runs.empty()) {
    out += "<p>Model <b>" + esc(runs[0].model) + "</b>, " + esc(config.path()) +
           (config.stream ? " (streaming)" : " (not streamed)") + ". Workload: " + esc(runs[0].workload) + ".</p>\n";
  }
  if (config.slo.any()) {
    out += std::string("<p class='") + (breached ? "bad" : "") + "'>SLO " + (breached ? "breached" : "met") +
           " (at least " + fixed(100.0 * config.min_goodput_fraction, 2) + "% of requests must meet every SLO).</p>\n";
  }
  out += summary_html(runs);
  if (runs.size() > 1) out += sweep_charts(runs, config.slo);
  out += cdf_charts(runs, config.slo);
  out += timeline_charts(runs);
  out += "<h2>Summary tables</h2>\n";
  for (const RunReport& r : runs) out += "<pre>" + esc(summary_table(r, config)) + "</pre>\n";
  out += "</body></html>\n";
  return out;
}

}  // namespace kvmesh::load
