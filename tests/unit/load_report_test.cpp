// kvmesh-load's HTML report: the peak output throughput of the summary is the highest bin of the
// plotted series (bin width stated), each run on its own time axis, SLO thresholds drawn, point
// labels inside their frames and on every sweep point, numbers in one format.
#include <gtest/gtest.h>

#include <regex>

#include "client/report.h"
#include "client/svg_chart.h"

namespace kvmesh::load {
namespace {

// A request streamed from `start` s: one token every `gap` s, `n` tokens.
RequestRecord streamed(double start, double gap, int n) {
  RequestRecord r;
  r.outcome = Outcome::ok;
  r.scheduled_s = r.sent_s = start;
  for (int i = 0; i < n; ++i) {
    r.chunk_s.push_back(start + 0.01 + gap * i);
    r.chunk_tokens.push_back(1);
  }
  r.first_token_s = r.chunk_s.front();
  r.done_s = r.chunk_s.back();
  r.prompt_tokens = 8;
  r.completion_tokens = n;
  r.usage_seen = true;
  return r;
}

RunReport run_of(const std::string& label, std::vector<RequestRecord> records, double duration_s, const SloSpec& slo) {
  RunReport run;
  run.label = label;
  run.output.records = std::move(records);
  run.output.duration_s = duration_s;
  run.output.timeline = {TimelineSample{0.0, 1, 0, 0, 0}, TimelineSample{duration_s, 0, 1, 0, 10}};
  run.summary = summarize_run(SummaryInputs{&run.output.records, &run.output.timeline, duration_s, 0, 1, slo, 0.9});
  return run;
}

TEST(LoadReport, BinWidths) {
  EXPECT_EQ(throughput_bin_s(4.0), 0.25);
  EXPECT_EQ(throughput_bin_s(19.0), 0.5);
  EXPECT_EQ(throughput_bin_s(60.0), 1.0);
  EXPECT_EQ(throughput_bin_s(1000.0), 30.0);
  EXPECT_EQ(throughput_bin_s(0.0), 0.25);
}

// A burst of 50 tokens inside 0.1 s of a 4 s run: 200 tok/s in its 0.25 s bin (50 with 1 s bins).
TEST(LoadReport, PeakOfSummaryIsThePlottedPeak) {
  std::vector<RequestRecord> records = {streamed(1.0, 0.002, 50), streamed(2.0, 0.1, 10)};
  const RunReport run = run_of("c=1", records, 4.0, {});
  const ThroughputSeries series = output_throughput_series(run.output.records, 4.0);
  EXPECT_EQ(series.bin_s, 0.25);
  EXPECT_DOUBLE_EQ(series.peak(), 200.0);
  EXPECT_DOUBLE_EQ(run.summary.max_output_tokens_per_s, series.peak());
  EXPECT_EQ(run.summary.peak_bin_s, series.bin_s);
  const std::string html = html_report({run}, LoadConfig{}, false);
  EXPECT_NE(html.find("<th>peak output tok/s (0.25 s bins)</th>"), std::string::npos);
  EXPECT_NE(html.find("<td>200.00</td>"), std::string::npos);          // the summary's peak
  EXPECT_NE(html.find(">peak 200.00 tok/s</text>"), std::string::npos);  // the plot's dashed peak
  EXPECT_NE(html.find("c=1: output tokens/s (0.25 s bins)"), std::string::npos);
  EXPECT_NE(summary_table(run, LoadConfig{}).find("200.00 (0.25 s bins)"), std::string::npos);
}

// A sweep: each run its own time axis and bins; labels on every point, inside the frames; SLO lines.
TEST(LoadReport, SweepAxesLabelsAndSloLines) {
  SloSpec slo;
  slo.ttft_ms = 50.0;
  slo.e2e_ms = 2000.0;
  const RunReport short_run = run_of("c=1", {streamed(0.0, 0.05, 20), streamed(1.0, 0.05, 20)}, 4.0, slo);
  const RunReport long_run = run_of("c=4", {streamed(0.0, 1.0, 30), streamed(5.0, 1.0, 30)}, 40.0, slo);
  LoadConfig config;
  config.slo = slo;
  const std::string html = html_report({short_run, long_run}, config, false);
  EXPECT_NE(html.find("c=1: output tokens/s (0.25 s bins)"), std::string::npos);
  EXPECT_NE(html.find("c=4: output tokens/s (1 s bins)"), std::string::npos);
  EXPECT_NE(html.find(">SLO 50.00 ms</text>"), std::string::npos);
  EXPECT_NE(html.find(">SLO 2000.00 ms</text>"), std::string::npos);
  EXPECT_EQ(html.find(">SLO 0"), std::string::npos);  // no TPOT SLO given, none drawn
  // Every sweep point labelled on every curve: TTFT p50, p99, TPOT p50, p99, E2E p99.
  const std::regex label("<text class='pt' x='([-0-9.]+)' y='([-0-9.]+)'[^>]*>([^<]*)</text>");
  int c1 = 0, c4 = 0;
  const Frame f = chart_frame();
  for (auto it = std::sregex_iterator(html.begin(), html.end(), label); it != std::sregex_iterator(); ++it) {
    const double x = std::stod((*it)[1]), y = std::stod((*it)[2]);
    const bool end = it->str().find("text-anchor='end'") != std::string::npos;
    const double w = 6.2 * static_cast<double>((*it)[3].length());
    EXPECT_GE(end ? x - w : x, f.left) << it->str();
    EXPECT_LE(end ? x : x + w, f.right) << it->str();
    EXPECT_GE(y - 10, f.top) << it->str();
    EXPECT_LE(y, f.bottom) << it->str();
    c1 += (*it)[3] == "c=1" ? 1 : 0;
    c4 += (*it)[3] == "c=4" ? 1 : 0;
  }
  EXPECT_EQ(c1, 5);
  EXPECT_EQ(c4, 5);
}

// --no-stream: no TTFT or TPOT measured, so no chart of them (E2E still).
TEST(LoadReport, NoChartOfWhatWasNotMeasured) {
  RequestRecord whole = streamed(0.0, 0.1, 5);
  whole.streamed = false;
  const RunReport a = run_of("c=1", {whole}, 1.0, {}), b = run_of("c=2", {whole}, 1.0, {});
  const std::string html = html_report({a, b}, LoadConfig{}, false);
  EXPECT_EQ(html.find("TTFT vs throughput"), std::string::npos);
  EXPECT_EQ(html.find("TPOT vs throughput"), std::string::npos);
  EXPECT_EQ(html.find("TTFT CDF"), std::string::npos);
  EXPECT_NE(html.find("E2E p99 (from the scheduled send) vs throughput"), std::string::npos);
}

TEST(LoadReport, LabelsStayInTheFrame) {
  const Frame f = chart_frame();
  const LabelPlace right = place_label(f.right, (f.top + f.bottom) / 2, 5, f);
  EXPECT_TRUE(right.anchor_end);
  EXPECT_LE(right.x, f.right);
  const LabelPlace top = place_label(f.left, f.top, 5, f);
  EXPECT_FALSE(top.anchor_end);
  EXPECT_GT(top.y - 10, f.top);
}

// The summary table's numbers: counts, or two decimals (percent, "p50 / p99" pairs).
TEST(LoadReport, OneNumberFormat) {
  const RunReport run = run_of("c=2", {streamed(0.0, 0.013, 17), streamed(0.5, 0.021, 9)}, 3.0, {});
  const std::string html = html_report({run}, LoadConfig{}, false);
  const size_t table = html.find("<table>"), end = html.find("</table>");
  ASSERT_NE(table, std::string::npos);
  const std::string cells = html.substr(table, end - table);
  const std::regex cell("<td>([^<]*)</td>");
  const std::regex ok("(-|[0-9]+|[0-9]+\\.[0-9]{2}|[0-9]+\\.[0-9]{2} / [0-9]+\\.[0-9]{2}|[0-9]+\\.[0-9]{2}%.*)");
  int checked = 0;
  for (auto it = std::sregex_iterator(cells.begin(), cells.end(), cell); it != std::sregex_iterator(); ++it) {
    const std::string text = (*it)[1];
    if (text == "c=2") continue;
    EXPECT_TRUE(std::regex_match(text, ok)) << text;
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

}  // namespace
}  // namespace kvmesh::load
