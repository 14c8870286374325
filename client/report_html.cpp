// The self-contained HTML report: summary tables and inline SVG line charts (latency CDFs,
// output tokens/s and requests in flight over time, and the throughput-latency curve of a sweep).
// No scripts, no external files.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "client/report.h"

namespace kvmesh::load {
namespace {

constexpr double kW = 560, kH = 310, kLeft = 64, kRight = 40, kTop = 44, kBottom = 44;
const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct Series {
  explicit Series(std::string name_, bool markers_ = false, std::vector<std::pair<double, double>> points_ = {})
      : name(std::move(name_)), points(std::move(points_)), markers(markers_) {}
  std::string name;
  std::vector<std::pair<double, double>> points;
  bool markers = false;
  std::vector<std::string> point_labels;  // written beside the markers
};

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

double nice_step(double span) {
  const double raw = span / 5.0;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

std::string axes(double x0, double x1, double y0, double y1, const std::string& xlabel, const std::string& ylabel) {
  const double pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  std::string s = "<rect x='" + num(kLeft) + "' y='" + num(kTop) + "' width='" + num(pw) + "' height='" + num(ph) +
                  "' fill='none' stroke='#999'/>";
  for (int axis = 0; axis < 2; ++axis) {
    const double lo = axis == 0 ? x0 : y0, hi = axis == 0 ? x1 : y1;
    const double step = nice_step(hi - lo);
    for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      const double f = (v - lo) / (hi - lo);
      if (axis == 0) {
        const double x = kLeft + f * pw;
        s += "<line x1='" + num(x) + "' y1='" + num(kTop) + "' x2='" + num(x) + "' y2='" + num(kTop + ph) +
             "' stroke='#eee'/><text x='" + num(x) + "' y='" + num(kTop + ph + 14) + "' text-anchor='middle'>" +
             num(v) + "</text>";
      } else {
        const double y = kTop + ph - f * ph;
        s += "<line x1='" + num(kLeft) + "' y1='" + num(y) + "' x2='" + num(kLeft + pw) + "' y2='" + num(y) +
             "' stroke='#eee'/><text x='" + num(kLeft - 4) + "' y='" + num(y + 4) + "' text-anchor='end'>" +
             num(v) + "</text>";
      }
    }
  }
  s += "<text x='" + num(kLeft + pw / 2) + "' y='" + num(kH - 8) + "' text-anchor='middle'>" + esc(xlabel) + "</text>";
  s += "<text transform='translate(14," + num(kTop + ph / 2) + ") rotate(-90)' text-anchor='middle'>" + esc(ylabel) +
       "</text>";
  return s;
}

std::string line_chart(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                       const std::vector<Series>& series, bool x_from_zero = false) {
  double x0 = x_from_zero ? 0.0 : INFINITY, x1 = -INFINITY, y0 = 0.0, y1 = -INFINITY;
  for (const Series& s : series)
    for (const auto& [x, y] : s.points) x0 = std::min(x0, x), x1 = std::max(x1, x), y1 = std::max(y1, y);
  if (!(x1 > x0)) x0 = std::isfinite(x0) ? x0 - 1 : 0, x1 = x0 + 2;
  if (!(y1 > y0)) y1 = y0 + 1;
  y1 *= 1.05;
  const double pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  std::string svg = "<svg xmlns='http://www.w3.org/2000/svg' width='" + num(kW) + "' height='" + num(kH) +
                    "' font-family='sans-serif' font-size='11'><text x='" + num(kW / 2) +
                    "' y='16' text-anchor='middle' font-size='13' font-weight='bold'>" + esc(title) + "</text>";
  svg += axes(x0, x1, y0, y1, xlabel, ylabel);
  std::string legend;  // one row under the title
  double legend_x = kLeft;
  for (size_t i = 0; i < series.size(); ++i) {
    const std::string color = kColors[i % std::size(kColors)];
    std::string pts;
    for (size_t k = 0; k < series[i].points.size(); ++k) {
      const auto [x, y] = series[i].points[k];
      const double px = kLeft + (x - x0) / (x1 - x0) * pw, py = kTop + ph - (y - y0) / (y1 - y0) * ph;
      pts += num(px) + "," + num(py) + " ";
      if (series[i].markers) svg += "<circle cx='" + num(px) + "' cy='" + num(py) + "' r='3' fill='" + color + "'/>";
      if (k < series[i].point_labels.size()) {
        svg += "<text x='" + num(px + 5) + "' y='" + num(py - 5) + "' fill='" + color + "'>" +
               esc(series[i].point_labels[k]) + "</text>";
      }
    }
    svg += "<polyline fill='none' stroke-width='1.5' stroke='" + color + "' points='" + pts + "'/>";
    legend += "<text x='" + num(legend_x) + "' y='32' fill='" + color + "'>&#9632; " + esc(series[i].name) + "</text>";
    legend_x += 24.0 + 6.5 * static_cast<double>(series[i].name.size());
  }
  return svg + legend + "</svg>\n";
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

std::string cdf_charts(const std::vector<RunReport>& runs) {
  struct Metric {
    const char* title;
    std::vector<double> (*values)(const RequestRecord&);
  };
  const Metric metrics[] = {
      {"TTFT", [](const RequestRecord& r) { return r.has_ttft() ? std::vector<double>{r.ttft_ms()} : std::vector<double>{}; }},
      {"TPOT", [](const RequestRecord& r) { return r.has_tpot() ? std::vector<double>{r.tpot_ms()} : std::vector<double>{}; }},
      {"ITL", [](const RequestRecord& r) { return r.itls_ms(); }},
      {"E2E latency", [](const RequestRecord& r) { return std::vector<double>{r.e2el_ms()}; }},
  };
  std::string out = "<h2>Latency distributions</h2>\n<div class='charts'>\n";
  for (const Metric& m : metrics) {
    std::vector<Series> series;
    for (const RunReport& run : runs) {
      std::vector<double> v;
      for (const RequestRecord& r : run.output.records) {
        if (!r.ok()) continue;
        const auto add = m.values(r);
        v.insert(v.end(), add.begin(), add.end());
      }
      if (!v.empty()) series.push_back(Series(run.label, false, cdf(std::move(v))));
    }
    if (!series.empty()) out += line_chart(std::string(m.title) + " CDF", "milliseconds", "fraction of requests", series);
  }
  return out + "</div>\n";
}

std::string timeline_charts(const std::vector<RunReport>& runs) {
  std::vector<Series> tput, inflight;
  for (const RunReport& run : runs) {
    Series t(run.label), f(run.label);
    const double bucket = std::max(0.1, run.output.duration_s / 60.0);  // about 60 points a run
    const auto rate = tokens_per_second(run.output.records, run.output.duration_s, bucket);
    for (size_t i = 0; i < rate.size(); ++i) t.points.emplace_back((static_cast<double>(i) + 0.5) * bucket, rate[i]);
    for (const TimelineSample& s : run.output.timeline) f.points.emplace_back(s.t_s, static_cast<double>(s.in_flight));
    tput.push_back(std::move(t));
    inflight.push_back(std::move(f));
  }
  return "<h2>Over time</h2>\n<div class='charts'>\n" +
         line_chart("Output tokens per second", "seconds since the start", "tokens/s", tput, true) +
         line_chart("Requests in flight", "seconds since the start", "requests", inflight, true) + "</div>\n";
}

std::string sweep_charts(const std::vector<RunReport>& runs) {
  Series ttft50("TTFT p50", true), ttft99("TTFT p99", true), tpot50("TPOT p50", true), tpot99("TPOT p99", true),
      e2e99("E2E p99", true);
  for (const RunReport& r : runs) {
    ttft99.point_labels.push_back(r.label);
    tpot99.point_labels.push_back(r.label);
    e2e99.point_labels.push_back(r.label);
    const double x = r.summary.output_throughput;
    ttft50.points.emplace_back(x, r.summary.ttft.p50);
    ttft99.points.emplace_back(x, r.summary.ttft.p99);
    tpot50.points.emplace_back(x, r.summary.tpot.p50);
    tpot99.points.emplace_back(x, r.summary.tpot.p99);
    e2e99.points.emplace_back(x, r.summary.e2el.p99);
  }
  return "<h2>Throughput and latency across the sweep</h2>\n<div class='charts'>\n" +
         line_chart("TTFT vs throughput", "output tokens/s", "milliseconds", {ttft50, ttft99}) +
         line_chart("TPOT vs throughput", "output tokens/s", "milliseconds", {tpot50, tpot99}) +
         line_chart("E2E p99 vs throughput", "output tokens/s", "milliseconds", {e2e99}) + "</div>\n";
}

std::string summary_html(const std::vector<RunReport>& runs) {
  std::string out = "<h2>Summary</h2>\n<table><tr><th>run</th><th>completed</th><th>failed</th><th>dropped</th>"
                    "<th>req/s</th><th>output tok/s</th><th>TTFT p50 / p99 ms</th><th>TPOT p50 / p99 ms</th>"
                    "<th>ITL p50 / p99 ms</th><th>E2E p50 / p99 ms</th><th>goodput</th></tr>\n";
  for (const RunReport& r : runs) {
    const RunSummary& s = r.summary;
    auto pair = [](const Stats& st) { return st.n ? num(st.p50) + " / " + num(st.p99) : std::string("-"); };
    out += "<tr><td>" + esc(r.label) + "</td><td>" + std::to_string(s.completed) + "</td><td>" +
           std::to_string(s.failed) + "</td><td>" + std::to_string(s.disconnected) + "</td><td>" +
           num(s.request_throughput) + "</td><td>" + num(s.output_throughput) + "</td><td>" + pair(s.ttft) +
           "</td><td>" + pair(s.tpot) + "</td><td>" + pair(s.itl) + "</td><td>" + pair(s.e2el) + "</td><td>" +
           (s.slo_set ? num(100.0 * s.goodput_fraction) + "%" + (s.slo_breached ? " (breached)" : "") : "-") +
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
           " (at least " + num(100.0 * config.min_goodput_fraction) + "% of requests must meet every SLO).</p>\n";
  }
  out += summary_html(runs);
  if (runs.size() > 1) out += sweep_charts(runs);
  out += cdf_charts(runs);
  out += timeline_charts(runs);
  out += "<h2>Summary tables</h2>\n";
  for (const RunReport& r : runs) out += "<pre>" + esc(summary_table(r, config)) + "</pre>\n";
  out += "</body></html>\n";
  return out;
}

}  // namespace kvmesh::load
