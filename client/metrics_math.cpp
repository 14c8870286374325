// Percentiles, statistics, SLO checks, goodput and throughput of a run.
#include "client/metrics_math.h"

#include <algorithm>
#include <cmath>
#include <iterator>

namespace kvmesh::load {

double percentile_sorted(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Stats compute_stats(std::vector<double> values) {
  Stats s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.n = static_cast<int64_t>(values.size());
  double sum = 0.0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(s.n);
  double sq = 0.0;
  for (double v : values) sq += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(sq / static_cast<double>(s.n));  // population, as numpy.std
  s.min = values.front();
  s.max = values.back();
  s.p50 = percentile_sorted(values, 50.0);
  s.p90 = percentile_sorted(values, 90.0);
  s.p95 = percentile_sorted(values, 95.0);
  s.p99 = percentile_sorted(values, 99.0);
  return s;
}

bool meets_slo(const RequestRecord& r, const SloSpec& slo) {
  if (!r.ok()) return false;
  if (slo.ttft_ms) {
    const double ttft = r.has_ttft() ? r.ttft_ms() : r.e2el_ms();
    if (ttft > *slo.ttft_ms) return false;
  }
  if (slo.tpot_ms && r.has_tpot() && r.tpot_ms() > *slo.tpot_ms) return false;
  if (slo.e2e_ms && r.sched_e2el_ms() > *slo.e2e_ms) return false;
  return true;
}

std::vector<double> tokens_per_second(const std::vector<RequestRecord>& records, double duration_s,
                                      double bucket_s) {
  const auto n_buckets = static_cast<size_t>(std::max(1.0, std::ceil(duration_s / bucket_s)));
  std::vector<double> buckets(std::min<size_t>(n_buckets, 10'000'000), 0.0);
  for (const RequestRecord& r : records) {
    if (r.outcome != Outcome::ok) continue;
    for (size_t i = 0; i < r.chunk_s.size() && i < r.chunk_tokens.size(); ++i) {
      const auto b = static_cast<size_t>(std::max(0.0, r.chunk_s[i] / bucket_s));
      if (b < buckets.size()) buckets[b] += r.chunk_tokens[i] / bucket_s;
    }
  }
  return buckets;
}

double throughput_bin_s(double duration_s) {
  constexpr double kWidths[] = {0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600};
  for (double w : kWidths)
    if (w >= duration_s / 60.0) return w;
  return kWidths[std::size(kWidths) - 1];
}

double ThroughputSeries::peak() const {
  double best = 0.0;
  for (double v : tokens_per_s) best = std::max(best, v);
  return best;
}

ThroughputSeries output_throughput_series(const std::vector<RequestRecord>& records, double duration_s) {
  ThroughputSeries s;
  s.bin_s = throughput_bin_s(duration_s);
  s.tokens_per_s = tokens_per_second(records, duration_s, s.bin_s);
  return s;
}

namespace {

void count_outcomes(const std::vector<RequestRecord>& records, RunSummary& s) {
  for (const RequestRecord& r : records) {
    ++s.sent;
    if (r.outcome == Outcome::disconnected) {
      ++s.disconnected;
      continue;
    }
    if (r.outcome != Outcome::ok) {
      ++s.failed;
      ++s.errors[r.error_kind.empty() ? "unknown" : r.error_kind];
      continue;
    }
    ++s.completed;
    s.total_input_tokens += std::max<int64_t>(r.prompt_tokens, 0);
    s.total_output_tokens += std::max<int64_t>(r.completion_tokens, 0);
    s.total_cached_tokens += std::max<int64_t>(r.cached_tokens, 0);
    if (!r.usage_seen) ++s.usage_missing;
    if (r.prompt_tokens < 0) ++s.prompt_tokens_unknown;
    if (r.expected_output_tokens >= 0 && r.completion_tokens != r.expected_output_tokens) ++s.output_len_mismatches;
  }
}

void latency_stats(const std::vector<RequestRecord>& records, RunSummary& s) {
  std::vector<double> ttft, tpot, itl, e2el, sched;
  for (const RequestRecord& r : records) {
    if (!r.ok()) continue;
    if (r.has_ttft()) ttft.push_back(r.ttft_ms());
    if (r.has_tpot()) tpot.push_back(r.tpot_ms());
    const auto gaps = r.itls_ms();
    itl.insert(itl.end(), gaps.begin(), gaps.end());
    e2el.push_back(r.e2el_ms());
    sched.push_back(r.sched_e2el_ms());
  }
  s.ttft = compute_stats(std::move(ttft));
  s.tpot = compute_stats(std::move(tpot));
  s.itl = compute_stats(std::move(itl));
  s.e2el = compute_stats(std::move(e2el));
  s.sched_e2el = compute_stats(std::move(sched));
}

}  // namespace

RunSummary summarize_run(const SummaryInputs& in) {
  RunSummary s;
  const auto& records = *in.records;
  s.not_sent = in.not_sent;
  s.duration_s = in.duration_s;
  count_outcomes(records, s);
  latency_stats(records, s);
  const double d = in.duration_s > 0.0 ? in.duration_s : 1.0;
  s.request_throughput = static_cast<double>(s.completed) / d;
  s.output_throughput = static_cast<double>(s.total_output_tokens) / d;
  s.total_token_throughput = static_cast<double>(s.total_input_tokens + s.total_output_tokens) / d;
  s.slo_set = in.slo.any();
  for (const RequestRecord& r : records) s.good += meets_slo(r, in.slo) ? 1 : 0;
  const int64_t judged = s.completed + s.failed;
  s.goodput_fraction = judged > 0 ? static_cast<double>(s.good) / static_cast<double>(judged) : 0.0;
  s.request_goodput = static_cast<double>(s.good) / d;
  s.slo_breached = s.slo_set && s.goodput_fraction < in.min_goodput_fraction;
  const ThroughputSeries series = output_throughput_series(records, in.duration_s);
  s.max_output_tokens_per_s = series.peak();
  s.peak_bin_s = series.bin_s;
  s.max_concurrent_requests = in.peak_in_flight;
  if (in.timeline) {
    for (const TimelineSample& t : *in.timeline) s.max_concurrent_requests = std::max(s.max_concurrent_requests, t.in_flight);
  }
  return s;
}

}  // namespace kvmesh::load
