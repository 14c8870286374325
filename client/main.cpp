// kvmesh-load: parse flags -> wait until the server is ready -> learn its model and /tokenize ->
// warm up -> for each sweep point: build the workload, scrape /metrics, run, scrape again ->
// print and write the reports -> exit 0, 1 (server unusable), 2 (bad flags) or 3 (SLO breached).
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "client/arrivals.h"
#include "client/http_client.h"
#include "client/load_config.h"
#include "client/report.h"
#include "client/runner.h"
#include "client/server_probe.h"
#include "client/workloads.h"

namespace {

using namespace kvmesh::load;
using nlohmann::json;

void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

PromSnapshot scrape(const HttpTarget& target) {
  HttpReply r = http_fetch(target, HttpRequest{"GET", "/metrics", "", 10.0});
  return r.ok() ? parse_prometheus(r.body) : PromSnapshot{};
}

// After a run: the server publishes its gauges and counters a moment after the last token, so
// wait (up to a second) until it shows no request running or waiting.
PromSnapshot scrape_settled(const HttpTarget& target) {
  PromSnapshot snap = scrape(target);
  for (int i = 0; i < 20 && snap.ok; ++i) {
    const double busy = prom_value(snap, "kvmesh_num_requests_running", 0.0) +
                        prom_value(snap, "kvmesh_num_requests_waiting", 0.0);
    if (busy <= 0.0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    snap = scrape(target);
  }
  return snap;
}

RunOptions base_options(const LoadConfig& c, const HttpTarget& target, const std::string& model) {
  RunOptions o;
  o.target = target;
  o.keep_alive = c.keep_alive;
  o.path = c.path();
  o.body = BodyOptions{model, c.chat(), c.stream, c.token_ids, c.pin_output, c.temperature, c.seed};
  if (!c.extra_body.empty()) o.body.extra_body = nlohmann::json::parse(c.extra_body);  // checked with the flags
  o.rate = c.rate;
  o.burstiness = c.burstiness;
  o.ramp_up_s = c.ramp_up_s;
  o.duration_s = c.duration_s;
  o.timeout_s = c.timeout_s;
  o.think_time_ms = c.think_time_ms;
  o.disconnect_fraction = c.disconnect_fraction;
  o.disconnect_after_ms = c.disconnect_after_ms;
  o.seed = c.seed;
  o.progress = !c.quiet;
  o.progress_tty = isatty(STDERR_FILENO) != 0;
  return o;
}

// Sessions to build for a point: the requests asked for, the arrivals before --duration, or a
// pool to cycle through.
int64_t sessions_for(const LoadConfig& c, bool& cycle) {
  cycle = false;
  if (c.workload == WorkloadKind::multiturn) return c.sessions;
  if (c.num_requests > 0 || c.workload == WorkloadKind::replay) return c.num_requests;
  if (c.open_loop()) {
    return static_cast<int64_t>(arrival_offsets(ArrivalSpec{c.rate, c.burstiness, c.ramp_up_s, c.seed},
                                                static_cast<int64_t>(c.rate * c.duration_s * 4 + 1000), c.duration_s)
                                    .size());
  }
  cycle = true;
  return c.pool_size;
}

// What every run needs to know about the server.
struct ServerInfo {
  HttpTarget target;
  std::string model;
  int64_t max_model_len = 0;
  std::unique_ptr<TokenService> tokens;
};

void warm_up(const LoadConfig& c, const ServerInfo& server) {
  const HttpTarget& target = server.target;
  const std::string& model = server.model;
  const int64_t max_model_len = server.max_model_len;
  LoadConfig wc = c;
  wc.workload = WorkloadKind::random;
  Workload w;
  std::string error;
  if (!build_random(WorkloadInputs{&wc, server.tokens.get(), c.warmup, c.seed ^ 0x3a7d9e11ULL, max_model_len}, w, error)) {
    std::fprintf(stderr, "kvmesh-load: warm-up skipped: %s\n", error.c_str());
    return;
  }
  RunOptions o = base_options(c, target, model);
  o.rate = 0.0;
  o.duration_s = 0.0;
  o.ramp_up_s = 0.0;
  o.disconnect_fraction = 0.0;
  o.concurrency = c.concurrency > 0 ? std::min(c.concurrency, c.warmup) : c.warmup;
  o.progress_label = "warm-up";
  run_load(w, o);
}

std::string point_label(const LoadConfig& c, int32_t concurrency, bool sweep) {
  if (!sweep && !c.label.empty()) return c.label;
  std::string label = c.open_loop() ? "rate=" + json(c.rate).dump() + "/s" : "";
  if (concurrency > 0) label += (label.empty() ? "" : " ") + std::string("c=") + std::to_string(concurrency);
  if (label.empty()) label = c.workload == WorkloadKind::replay ? "replay" : "c=unbounded";
  return label;
}

bool run_point(const LoadConfig& c, const ServerInfo& server, int32_t concurrency, size_t k, RunReport& report) {
  const HttpTarget& target = server.target;
  const std::string& model = server.model;
  const int64_t max_model_len = server.max_model_len;
  const bool sweep = !c.sweep.empty();
  bool cycle = false;
  const int64_t n = sessions_for(c, cycle);
  Workload w;
  std::string error;
  const uint64_t seed = c.seed + k;  // each sweep point its own prompts: no prefix hits across points
  if (!build_workload(WorkloadInputs{&c, server.tokens.get(), n, seed, max_model_len}, w, error)) {
    std::fprintf(stderr, "kvmesh-load: error: %s\n", error.c_str());
    return false;
  }
  RunOptions o = base_options(c, target, model);
  o.concurrency = concurrency;
  o.cycle = cycle;
  o.seed = seed;
  o.progress_label = point_label(c, concurrency, sweep);
  const PromSnapshot before = scrape(target);
  report.output = run_load(w, o);
  const PromSnapshot after = scrape_settled(target);
  report.label = o.progress_label;
  report.model = model.empty() ? "(server default)" : model;
  report.workload = w.summary;
  report.server = diff_metrics(before, after);
  report.summary = summarize_run(SummaryInputs{&report.output.records, &report.output.timeline,
                                               report.output.duration_s, report.output.not_sent,
                                               report.output.peak_in_flight, c.slo, c.min_goodput_fraction});
  report.summary.label = report.label;
  report.summary.concurrency = concurrency;
  report.summary.rate = c.rate;
  report.summary.burstiness = c.burstiness;
  return true;
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) std::fprintf(stderr, "kvmesh-load: error: cannot write %s\n", path.c_str());
  return static_cast<bool>(f);
}

int report_all(const LoadConfig& c, const std::vector<RunReport>& runs) {
  bool breached = false, unusable = false;
  for (const RunReport& r : runs) {
    std::fputs(summary_table(r, c).c_str(), stdout);
    breached = breached || r.summary.slo_breached;
    unusable = unusable || (r.summary.completed == 0 && r.summary.failed > 0);
  }
  if (runs.size() > 1) std::fputs(sweep_table(runs).c_str(), stdout);
  std::fflush(stdout);
  bool written = true;
  if (!c.result_json.empty()) written = write_file(c.result_json, result_json(runs, c, breached)) && written;
  if (!c.requests_jsonl.empty()) written = write_file(c.requests_jsonl, requests_jsonl(runs, c)) && written;
  if (!c.html.empty()) written = write_file(c.html, html_report(runs, c, breached)) && written;
  if (breached) {
    std::fprintf(stderr, "kvmesh-load: SLO breached: fewer than %.1f%% of requests met every SLO\n",
                 100.0 * c.min_goodput_fraction);
    return 3;
  }
  if (unusable) {
    std::fprintf(stderr, "kvmesh-load: error: no request completed\n");
    return 1;
  }
  return written ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  LoadFlagsOutcome flags = parse_load_flags(argc, argv);
  if (flags.exit_code >= 0) {
    std::fprintf(flags.exit_code == 0 ? stdout : stderr, "%s\n", flags.message.c_str());
    return flags.exit_code;
  }
  const LoadConfig& c = flags.config;
  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();
  ServerInfo server;
  server.target = HttpTarget{c.host, c.port, c.api_key};
  if (!wait_ready(server.target, c.ready_timeout_s, ready_report_interval(c.ready_timeout_s), stderr)) return 1;
  server.model = c.model;
  learn_model(server.target, server.model, server.max_model_len);
  server.tokens = token_service(server.target);
  if (c.warmup > 0) warm_up(c, server);
  std::vector<int32_t> points = c.sweep.empty() ? std::vector<int32_t>{c.concurrency} : c.sweep;
  std::vector<RunReport> runs;
  for (size_t k = 0; k < points.size(); ++k) {
    RunReport report;
    if (!run_point(c, server, points[k], k, report)) return 1;
    const bool interrupted = report.output.interrupted;
    runs.push_back(std::move(report));
    if (interrupted) break;
  }
  return report_all(c, runs);
}
