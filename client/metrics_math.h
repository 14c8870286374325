// The numbers of a run: percentiles (numpy's linear interpolation, as vLLM), per-metric
// statistics, SLO checks and goodput, throughput, errors by kind; from the request records and
// the timeline the runner sampled.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "client/load_config.h"
#include "client/record.h"

namespace kvmesh::load {

// The p-th percentile (0..100) of sorted values, linear between closest ranks (numpy's default).
double percentile_sorted(const std::vector<double>& sorted, double p);

struct Stats {
  int64_t n = 0;
  double mean = 0.0, std = 0.0, min = 0.0, max = 0.0;
  double p50 = 0.0, p90 = 0.0, p95 = 0.0, p99 = 0.0;
};
Stats compute_stats(std::vector<double> values);

// What the runner saw every sampling tick.
struct TimelineSample {
  double t_s = 0.0;
  int64_t in_flight = 0;
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t output_tokens = 0;  // tokens received so far (from the chunks)
};

// A completed request meets the SLOs when each given one holds: TTFT (E2E when not streamed),
// TPOT (only with two tokens or more), E2E from the scheduled send time.
bool meets_slo(const RequestRecord& r, const SloSpec& slo);

struct RunSummary {
  std::string label;
  int32_t concurrency = 0;  // 0 = no cap
  double rate = 0.0;        // 0 = closed loop
  double burstiness = 1.0;
  int64_t sent = 0, completed = 0, failed = 0, disconnected = 0, not_sent = 0;
  std::map<std::string, int64_t> errors;  // by kind
  int64_t total_input_tokens = 0, total_output_tokens = 0, total_cached_tokens = 0;
  int64_t output_len_mismatches = 0;  // pinned length differs from usage.completion_tokens
  int64_t usage_missing = 0;          // counted from chunks instead
  int64_t prompt_tokens_unknown = 0;  // completed, and the server's usage gave no prompt_tokens
  double duration_s = 0.0;
  double request_throughput = 0.0, output_throughput = 0.0, total_token_throughput = 0.0;
  double request_goodput = 0.0;  // good requests per second
  int64_t good = 0;
  double goodput_fraction = 1.0;  // good / (completed + failed)
  bool slo_set = false;
  bool slo_breached = false;
  double max_output_tokens_per_s = 0.0;  // the peak of output_throughput_series
  double peak_bin_s = 1.0;               // its bin width
  int64_t max_concurrent_requests = 0;
  Stats ttft, tpot, itl, e2el, sched_e2el;
};

struct SummaryInputs {
  const std::vector<RequestRecord>* records = nullptr;
  const std::vector<TimelineSample>* timeline = nullptr;
  double duration_s = 0.0;
  int64_t not_sent = 0;
  int64_t peak_in_flight = 0;
  SloSpec slo;
  double min_goodput_fraction = 0.9;
};
RunSummary summarize_run(const SummaryInputs& in);

// Output tokens per second in each `bucket_s` slice of the run (from chunk arrival times).
std::vector<double> tokens_per_second(const std::vector<RequestRecord>& records, double duration_s,
                                      double bucket_s = 1.0);

// The bin width for a run's output throughput over time: about 60 bins, a round width of at least
// 0.25 s (1 s for a one-minute run, as vLLM's peak).
double throughput_bin_s(double duration_s);

// Output tokens per second over the run in bins of throughput_bin_s: the summary's peak and the
// report's plot both come from here.
struct ThroughputSeries {
  double bin_s = 1.0;
  std::vector<double> tokens_per_s;  // bin i covers [i * bin_s, (i + 1) * bin_s)
  double peak() const;
};
ThroughputSeries output_throughput_series(const std::vector<RequestRecord>& records, double duration_s);

}  // namespace kvmesh::load
