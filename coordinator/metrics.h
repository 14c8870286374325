// Metrics: the server's counters, gauges and latency histograms, rendered in the Prometheus text
// format for GET /metrics. Lock-free (atomics): the engine thread writes, HTTP threads read.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/request.h"

namespace kvmesh {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // "# HELP", "# TYPE", cumulative _bucket lines, _sum and _count.
  void render(std::string& out, const char* name, const char* help) const;

 private:
  std::vector<double> bounds_;
  std::vector<std::atomic<uint64_t>> counts_;  // per bucket, the last one is +Inf (not cumulative)
  std::atomic<double> sum_{0.0};
};

// What the engine loop publishes after every step.
struct EngineGauges {
  int32_t n_running = 0;      // sequences
  int32_t n_waiting = 0;      // sequences, queued in the engine or not yet taken
  int32_t n_pages_used = 0;   // KV pages of the device tier
  int32_t n_pages_free = 0;
  int64_t n_preemptions = 0;
  int64_t n_steps = 0;
};

// The KV tiers as the engine loop publishes them after every step. Each entry is one Prometheus
// sample: kKvStatNames gives its name and labels.
enum KvStat : int {
  kv_pages_device, kv_pages_host, kv_pages_disk,        // cached or used pages per tier
  kv_bytes_device, kv_bytes_host, kv_bytes_disk,
  kv_hits_device, kv_hits_host, kv_hits_disk,           // prefix pages reused, by tier
  kv_moved_device_host, kv_moved_host_disk, kv_moved_host_device, kv_moved_disk_host,
  kv_dropped, kv_checksum_failures, kv_disk_write_failures, kv_cached_tokens,
  kv_swap_in_s_host, kv_swap_in_s_disk, kv_recompute_s_page, kv_page_bytes,
  kv_shared_pages, kv_cow_copies,                       // sequence groups' page sharing
  kv_stat_count
};

class Metrics {
 public:
  void set_kv_stats(const std::array<double, kv_stat_count>& stats);
  Metrics();

  // Engine thread.
  void set_engine_gauges(const EngineGauges& g);
  void add_prompt_tokens(int64_t n) { prompt_tokens_ += n; }
  void add_generation_tokens(int64_t n) { generation_tokens_ += n; }
  void observe_ttft(double seconds) { ttft_.observe(seconds); }
  void observe_inter_token(double seconds) { inter_token_.observe(seconds); }
  void observe_e2e(double seconds) { e2e_.observe(seconds); }
  void count_finish(FinishReason reason);

  // HTTP threads.
  void count_response(int http_status);
  EngineGauges gauges() const;
  std::string render() const;

 private:
  std::atomic<int32_t> n_running_{0}, n_waiting_{0}, n_pages_used_{0}, n_pages_free_{0};
  std::atomic<int64_t> n_preemptions_{0}, n_steps_{0};
  std::atomic<int64_t> prompt_tokens_{0}, generation_tokens_{0};
  std::array<std::atomic<int64_t>, 5> finished_{};  // by FinishReason
  std::array<std::atomic<int64_t>, 600> responses_{};  // by HTTP status
  Histogram ttft_, inter_token_, e2e_;
  std::array<std::atomic<double>, kv_stat_count> kv_{};
};

}  // namespace kvmesh
