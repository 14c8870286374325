// Metrics: atomics and histograms, rendered as Prometheus text (version 0.0.4).
#include "coordinator/metrics.h"

#include <cstdio>

namespace kvmesh {
namespace {

std::string format_double(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void render_value(std::string& out, const char* name, const char* type, const char* help, double value) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  out += std::string(name) + " " + format_double(value) + "\n";
}

const std::vector<double> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                            0.3,   0.4,    0.5,   0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0,
                                            40.0,  80.0};
const std::vector<double> kInterTokenBounds = {0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
                                               0.075, 0.1,    0.15,  0.2,  0.3,   0.4,  0.5,   0.75, 1.0,  2.5};

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1) {}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

void Histogram::render(std::string& out, const char* name, const char* help) const {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    const std::string le = i < bounds_.size() ? format_double(bounds_[i]) : "+Inf";
    out += std::string(name) + "_bucket{le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += std::string(name) + "_sum " + format_double(sum_.load(std::memory_order_relaxed)) + "\n";
  out += std::string(name) + "_count " + std::to_string(cumulative) + "\n";
}

Metrics::Metrics() : ttft_(kLatencyBounds), inter_token_(kInterTokenBounds), e2e_(kLatencyBounds) {}

void Metrics::set_engine_gauges(const EngineGauges& g) {
  n_running_ = g.n_running;
  n_waiting_ = g.n_waiting;
  n_pages_used_ = g.n_pages_used;
  n_pages_free_ = g.n_pages_free;
  n_preemptions_ = g.n_preemptions;
  n_steps_ = g.n_steps;
}

EngineGauges Metrics::gauges() const {
  EngineGauges g;
  g.n_running = n_running_;
  g.n_waiting = n_waiting_;
  g.n_pages_used = n_pages_used_;
  g.n_pages_free = n_pages_free_;
  g.n_preemptions = n_preemptions_;
  g.n_steps = n_steps_;
  return g;
}

namespace {

struct KvStatInfo {
  const char* name;    // metric name
  const char* labels;  // "" or {tier="..."}
  const char* type;
  const char* help;
};

constexpr KvStatInfo kKvStats[kv_stat_count] = {
    {"kvmesh_kv_tier_pages", "{tier=\"device\"}", "gauge", "KV pages held per tier (used or cached)."},
    {"kvmesh_kv_tier_pages", "{tier=\"host\"}", "gauge", ""},
    {"kvmesh_kv_tier_pages", "{tier=\"disk\"}", "gauge", ""},
    {"kvmesh_kv_tier_bytes", "{tier=\"device\"}", "gauge", "Bytes of those pages per tier (rank 0's share)."},
    {"kvmesh_kv_tier_bytes", "{tier=\"host\"}", "gauge", ""},
    {"kvmesh_kv_tier_bytes", "{tier=\"disk\"}", "gauge", ""},
    {"kvmesh_kv_prefix_hits_total", "{tier=\"device\"}", "counter", "Prefix pages reused, by the tier they were in."},
    {"kvmesh_kv_prefix_hits_total", "{tier=\"host\"}", "counter", ""},
    {"kvmesh_kv_prefix_hits_total", "{tier=\"disk\"}", "counter", ""},
    {"kvmesh_kv_pages_moved_total", "{from=\"device\",to=\"host\"}", "counter", "Pages moved between tiers."},
    {"kvmesh_kv_pages_moved_total", "{from=\"host\",to=\"disk\"}", "counter", ""},
    {"kvmesh_kv_pages_moved_total", "{from=\"host\",to=\"device\"}", "counter", ""},
    {"kvmesh_kv_pages_moved_total", "{from=\"disk\",to=\"host\"}", "counter", ""},
    {"kvmesh_kv_pages_dropped_total", "", "counter", "Cached pages evicted from the last tier or lost to a failed write."},
    {"kvmesh_kv_disk_checksum_failures_total", "", "counter", "Disk pages whose header or checksum did not match (recomputed)."},
    {"kvmesh_kv_disk_write_failures_total", "", "counter", "Disk writes that failed (ENOSPC, I/O); the page was dropped."},
    {"kvmesh_prefix_cache_hits_total", "", "counter", "Prompt tokens served from the prefix cache."},
    {"kvmesh_kv_swap_in_seconds_per_page", "{tier=\"host\"}", "gauge", "Measured time to bring one page back to the device."},
    {"kvmesh_kv_swap_in_seconds_per_page", "{tier=\"disk\"}", "gauge", ""},
    {"kvmesh_kv_recompute_seconds_per_page", "", "gauge", "Measured prefill time of one page of tokens."},
    {"kvmesh_kv_page_bytes", "", "gauge", "Bytes of one KV page on rank 0 (follows --kv-dtype)."},
    {"kvmesh_kv_shared_pages", "", "gauge", "Device pages held by more than one sequence (prompt pages of n > 1 and beams, shared prefixes)."},
    {"kvmesh_kv_cow_copies_total", "", "counter", "Shared, partly filled pages copied when one sequence of a group wrote into them."},
};

}  // namespace

void Metrics::set_kv_stats(const std::array<double, kv_stat_count>& stats) {
  for (int i = 0; i < kv_stat_count; ++i) kv_[i] = stats[i];
}

void Metrics::count_finish(FinishReason reason) {
  const auto i = static_cast<size_t>(reason);
  if (i < finished_.size()) ++finished_[i];
}

void Metrics::count_response(int http_status) {
  if (http_status >= 100 && http_status < static_cast<int>(responses_.size())) ++responses_[http_status];
}

std::string Metrics::render() const {
  std::string out;
  out.reserve(8192);
  render_value(out, "kvmesh_num_requests_running", "gauge", "Sequences in the running batch.", n_running_);
  render_value(out, "kvmesh_num_requests_waiting", "gauge", "Sequences waiting to run.", n_waiting_);
  render_value(out, "kvmesh_kv_pages_used", "gauge", "KV cache pages in use (device tier).", n_pages_used_);
  render_value(out, "kvmesh_kv_pages_free", "gauge", "KV cache pages free (device tier).", n_pages_free_);
  render_value(out, "kvmesh_num_preemptions_total", "counter", "Sequences preempted for lack of pages.",
               static_cast<double>(n_preemptions_));
  render_value(out, "kvmesh_engine_steps_total", "counter", "Engine steps that ran work.", static_cast<double>(n_steps_));
  render_value(out, "kvmesh_prompt_tokens_total", "counter", "Prompt tokens processed.",
               static_cast<double>(prompt_tokens_));
  render_value(out, "kvmesh_generation_tokens_total", "counter", "Tokens generated.",
               static_cast<double>(generation_tokens_));
  for (int i = 0; i < kv_stat_count; ++i) {
    const KvStatInfo& k = kKvStats[i];
    if (k.help[0] != '\0') out += std::string("# HELP ") + k.name + " " + k.help + "\n# TYPE " + k.name + " " + k.type + "\n";
    char value[64];
    std::snprintf(value, sizeof value, " %.9g\n", kv_[i].load());
    out += std::string(k.name) + k.labels + value;
  }
  ttft_.render(out, "kvmesh_time_to_first_token_seconds", "Time from arrival to the first generated token.");
  inter_token_.render(out, "kvmesh_inter_token_latency_seconds", "Time between generated tokens of a sequence.");
  e2e_.render(out, "kvmesh_e2e_request_latency_seconds", "Time from arrival to the last token of a request.");
  out += "# HELP kvmesh_request_success_total Sequences finished, by reason.\n"
         "# TYPE kvmesh_request_success_total counter\n";
  for (auto reason : {FinishReason::stop, FinishReason::length, FinishReason::cancelled, FinishReason::error}) {
    out += std::string("kvmesh_request_success_total{finished_reason=\"") + finish_reason_name(reason) + "\"} " +
           std::to_string(finished_[static_cast<size_t>(reason)].load()) + "\n";
  }
  out += "# HELP kvmesh_http_requests_total HTTP responses, by status code.\n"
         "# TYPE kvmesh_http_requests_total counter\n";
  for (size_t code = 100; code < responses_.size(); ++code) {
    const int64_t n = responses_[code].load();
    if (n > 0) out += "kvmesh_http_requests_total{code=\"" + std::to_string(code) + "\"} " + std::to_string(n) + "\n";
  }
  return out;
}

}  // namespace kvmesh
