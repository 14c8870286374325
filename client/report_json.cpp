// The result JSON (vLLM's bench serve key names, plus kvmesh-load's extras) and the per-request
// JSONL.
#include <ctime>

#include <nlohmann/json.hpp>

#include "client/report.h"

namespace kvmesh::load {
namespace {

using json = nlohmann::ordered_json;

// Null when nothing was measured (TTFT, TPOT and ITL of --no-stream runs), never 0.
void put_stats(json& j, const std::string& name, const Stats& s) {
  const auto v = [&](double x) { return s.n > 0 ? json(x) : json(nullptr); };
  j["mean_" + name + "_ms"] = v(s.mean);
  j["median_" + name + "_ms"] = v(s.p50);
  j["std_" + name + "_ms"] = v(s.std);
  j["min_" + name + "_ms"] = v(s.min);
  j["max_" + name + "_ms"] = v(s.max);
  j["p50_" + name + "_ms"] = v(s.p50);
  j["p90_" + name + "_ms"] = v(s.p90);
  j["p95_" + name + "_ms"] = v(s.p95);
  j["p99_" + name + "_ms"] = v(s.p99);
}

json slo_json(const SloSpec& slo) {
  json j = json::object();
  if (slo.ttft_ms) j["ttft"] = *slo.ttft_ms;
  if (slo.tpot_ms) j["tpot"] = *slo.tpot_ms;
  if (slo.e2e_ms) j["e2el"] = *slo.e2e_ms;
  return j;
}

json server_json(const ServerDelta& d) {
  json j = json::object();
  if (!d.ok) return j;
  json counters = json::object(), means = json::object(), gauges = json::object();
  for (const auto& [k, v] : d.counters) counters[k] = v;
  for (const auto& [k, v] : d.histogram_means) means[k] = v;
  for (const auto& [k, v] : d.gauges_after) gauges[k] = v;
  j["counters"] = std::move(counters);
  j["histogram_means"] = std::move(means);
  j["gauges_after"] = std::move(gauges);
  return j;
}

json run_json(const RunReport& run, const LoadConfig& c) {
  const RunSummary& s = run.summary;
  json j;
  j["date"] = local_time_stamp();
  j["backend"] = "openai";
  j["label"] = run.label;
  j["model_id"] = run.model;
  j["endpoint"] = c.path();
  j["workload"] = run.workload;
  j["num_prompts"] = s.sent;
  j["request_rate"] = s.rate > 0.0 ? json(s.rate) : json("inf");
  j["burstiness"] = s.burstiness;
  j["max_concurrency"] = s.concurrency > 0 ? json(s.concurrency) : json(nullptr);
  j["duration"] = s.duration_s;
  j["completed"] = s.completed;
  j["failed"] = s.failed;
  j["disconnected"] = s.disconnected;
  j["not_sent"] = s.not_sent;
  j["errors_by_kind"] = s.errors;
  const bool inputs_unknown = s.completed > 0 && s.prompt_tokens_unknown == s.completed;
  j["total_input_tokens"] = inputs_unknown ? json(nullptr) : json(s.total_input_tokens);
  j["total_output_tokens"] = s.total_output_tokens;
  j["total_cached_tokens"] = s.total_cached_tokens;
  j["request_throughput"] = s.request_throughput;
  j["request_goodput"] = s.slo_set ? json(s.request_goodput) : json(nullptr);
  j["output_throughput"] = s.output_throughput;
  j["total_token_throughput"] = s.total_token_throughput;
  j["max_output_tokens_per_s"] = s.max_output_tokens_per_s;
  j["max_output_tokens_per_s_bin_s"] = s.peak_bin_s;
  j["max_concurrent_requests"] = s.max_concurrent_requests;
  j["slo"] = slo_json(c.slo);
  j["goodput_fraction"] = s.goodput_fraction;
  j["slo_breached"] = s.slo_breached;
  j["output_len_mismatches"] = s.output_len_mismatches;
  j["usage_missing"] = s.usage_missing;
  j["prompt_tokens_unknown"] = s.prompt_tokens_unknown;
  put_stats(j, "ttft", s.ttft);
  put_stats(j, "tpot", s.tpot);
  put_stats(j, "itl", s.itl);
  put_stats(j, "e2el", s.e2el);
  put_stats(j, "sched_e2el", s.sched_e2el);
  json input_lens = json::array(), output_lens = json::array(), ttfts = json::array();
  for (const RequestRecord& r : run.output.records) {
    if (!r.ok()) continue;
    input_lens.push_back(r.prompt_tokens >= 0 ? json(r.prompt_tokens) : json(nullptr));
    output_lens.push_back(r.completion_tokens);
    ttfts.push_back(r.has_ttft() ? json(r.ttft_ms() / 1e3) : json(nullptr));
  }
  j["input_lens"] = std::move(input_lens);
  j["output_lens"] = std::move(output_lens);
  j["ttfts"] = std::move(ttfts);
  j["server_metrics"] = server_json(run.server);
  return j;
}

}  // namespace

std::string result_json(const std::vector<RunReport>& runs, const LoadConfig& config, bool breached) {
  if (runs.size() == 1) return run_json(runs[0], config).dump(2) + "\n";
  json sweep = json::array();
  for (const RunReport& r : runs) sweep.push_back(run_json(r, config));
  json j = {{"sweep", std::move(sweep)}, {"slo_breached", breached}};
  return j.dump(2) + "\n";
}

std::string requests_jsonl(const std::vector<RunReport>& runs, const LoadConfig& config) {
  std::string out;
  for (const RunReport& run : runs) {
    for (const RequestRecord& r : run.output.records) {
      json j = {{"run", run.label},
                {"id", r.id},
                {"session", r.session},
                {"turn", r.turn},
                {"response_id", r.response_id},
                {"outcome", outcome_name(r.outcome)},
                {"http_status", r.http_status},
                {"scheduled_ms", r.scheduled_s * 1e3},
                {"sent_ms", r.sent_s * 1e3},
                {"e2el_ms", r.e2el_ms()},
                {"sched_e2el_ms", r.sched_e2el_ms()},
                {"ttft_ms", r.has_ttft() ? json(r.ttft_ms()) : json(nullptr)},
                {"tpot_ms", r.has_tpot() ? json(r.tpot_ms()) : json(nullptr)},
                {"itl_ms", r.itls_ms()},
                {"prompt_tokens", r.prompt_tokens >= 0 ? json(r.prompt_tokens) : json(nullptr)},
                {"completion_tokens", r.completion_tokens},
                {"cached_tokens", r.cached_tokens},
                {"expected_input_tokens", r.expected_input_tokens},
                {"expected_output_tokens", r.expected_output_tokens},
                {"disconnect_planned", r.disconnect_planned},
                {"meets_slo", config.slo.any() ? json(meets_slo(r, config.slo)) : json(nullptr)}};
      if (!r.error_kind.empty()) {
        j["error_kind"] = r.error_kind;
        j["error"] = r.error_message;
      }
      out += j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    }
  }
  return out;
}

}  // namespace kvmesh::load
