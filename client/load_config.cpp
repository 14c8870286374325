// kvmesh-load flags (CLI11) and the value parsers behind them; validation happens here, once.
#include "client/load_config.h"

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/cli_parse.h"
#include "common/flag_suggest.h"

namespace kvmesh::load {

using nlohmann::json;
namespace {

constexpr const char* kFooter = R"(Load shapes:
  closed loop            --concurrency N              (a new request as soon as one finishes)
  open loop              --rate R [--burstiness B]    (Poisson at B=1, gamma otherwise)
  both                   --rate R --concurrency N     (arrivals wait for a free slot)
  ramp-up                --ramp-up-seconds S          (rate, or concurrency, grows linearly)
Workloads: random prompts of exact token lengths (default), --dataset sharegpt:PATH,
  --dataset replay:PATH (JSONL: timestamp_ms, prompt, max_tokens), --workload multiturn.
Measurements follow vLLM's bench serve: TTFT to the first chunk with tokens; ITL every gap
  between chunks divided by the tokens in the chunk; TPOT = (E2E - TTFT) / (tokens - 1); E2E
  from the send, and also from the scheduled send time (no coordinated omission); token counts
  from the server's usage. Warm-up requests are not measured.
SLOs and exit status: --slo ttft:MS,tpot:MS,e2e:MS marks a request good when it completed and
  met every given SLO (e2e is checked from the scheduled send time; failed requests are not
  good; injected disconnects are left out). The run breaches when the good share of requests
  is below --min-goodput-fraction (default 0.9).
Exit status: 0 done, 1 the server could not be used (not ready, refused, nothing completed),
  2 bad flags, 3 SLO breached (any sweep point).)";

struct RawFlags {
  std::string base_url;
  std::string endpoint = "completions";
  std::string workload = "random";
  std::string dataset;
  std::string input_len = "128";
  std::string output_len;
  std::string slo;
  std::string sweep;
  std::string extra_body;
  bool no_stream = false;
  bool no_keep_alive = false;
  bool no_pin = false;
  bool no_token_ids = false;
  bool save_result = false;
};

// vLLM's --request-rate inf (send at once) is kvmesh-load's closed loop, rate 0.
std::string rate_inf_is_zero(std::string text) { return text == "inf" || text == "INF" ? "0" : text; }

// --save-result without a file name: kvmesh-load-YYYYMMDD-HHMMSS.json here.
std::string default_result_name() { return "kvmesh-load-" + local_time_stamp() + ".json"; }

void add_target_flags(CLI::App& app, LoadConfig& c, RawFlags& raw) {
  app.add_option("--base-url", raw.base_url, "Server URL, http://HOST:PORT (default: from --host and --port)");
  app.add_option("--host", c.host, "Server host")->capture_default_str();
  app.add_option("--port", c.port, "Server port")->capture_default_str();
  app.add_option("--api-key", c.api_key, "Bearer key (also $KVMESH_API_KEY; default: none)")->envname("KVMESH_API_KEY");
  app.add_option("--model", c.model, "Model name in requests (default: the first of the server's /v1/models)");
  app.add_option("--endpoint", raw.endpoint, "completions (/v1/completions) or chat (/v1/chat/completions)")
      ->capture_default_str();
  app.add_flag("--no-stream", raw.no_stream, "Whole responses instead of SSE (TTFT, ITL, TPOT not measured)");
  app.add_flag("--no-keep-alive", raw.no_keep_alive, "A new connection for every request");
  app.add_flag("--no-token-ids", raw.no_token_ids,
               "Do not ask for return_token_ids (for servers without it; a chunk then counts as one token)");
  app.add_option("--timeout", c.timeout_s, "Seconds one request may take")->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();
  app.add_option("--ready-timeout", c.ready_timeout_s,
                 "Seconds to wait for GET /ready to answer 200 (/health, then /v1/models, where /ready is 404)")
      ->check(CLI::Range(0.0, 86400.0))->capture_default_str();
}

void add_shape_flags(CLI::App& app, LoadConfig& c, RawFlags& raw) {
  app.add_option("--concurrency,--max-concurrency", c.concurrency, "Most requests in flight (0 = no cap)")
      ->check(CLI::Range(0, 1000000))->capture_default_str();
  app.add_option("--rate,--request-rate", c.rate, "Open loop: request arrivals per second (0 or inf = closed loop)")
      ->transform(rate_inf_is_zero)->check(CLI::Range(0.0, 1e7))->capture_default_str();
  app.add_option("--burstiness", c.burstiness, "Gamma shape of the gaps between arrivals (1 = Poisson)")
      ->check(CLI::Range(1e-3, 1e3))->capture_default_str();
  app.add_option("--ramp-up-seconds", c.ramp_up_s, "Grow the rate (or the concurrency) linearly over this long")
      ->check(CLI::Range(0.0, 86400.0))->capture_default_str();
  app.add_option("--num-requests,--num-prompts", c.num_requests,
                 "Requests to measure (default: 100, or no limit with --duration)")
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  app.add_option("--duration", c.duration_s, "Stop sending after this many seconds (0 = no limit)")
      ->check(CLI::Range(0.0, 1e6))->capture_default_str();
  app.add_option("--warmup", c.warmup, "Requests sent (and not measured) before the run")
      ->check(CLI::Range(0, 1000000))->capture_default_str();
  app.add_option("--sweep", raw.sweep, "Concurrency values to run one after another: 1,2,4,8 (default: one run)");
}

void add_workload_flags(CLI::App& app, LoadConfig& c, RawFlags& raw) {
  app.add_option("--workload", raw.workload, "random or multiturn")->capture_default_str();
  app.add_option("--dataset", raw.dataset,
                 "sharegpt:PATH (ShareGPT JSON) or replay:PATH (JSONL with timestamps) (default: random prompts)");
  app.add_option("--input-len,--random-input-len", raw.input_len, "Prompt tokens: N or MIN:MAX")->capture_default_str();
  app.add_option("--output-len,--random-output-len", raw.output_len,
                 "Output tokens: N or MIN:MAX (default: 128; sharegpt: each reply's length)");
  app.add_flag("--no-pin-output", raw.no_pin, "Let requests stop at end-of-text (no ignore_eos / min_tokens)");
  app.add_option("--temperature", c.temperature, "Sampling temperature")->check(CLI::Range(0.0, 2.0))
      ->capture_default_str();
  app.add_option("--extra-body", raw.extra_body,
                 "JSON object merged into every request body, e.g. '{\"top_p\": 0.9, \"logit_bias\": {\"50256\": -100}}' "
                 "(default: none)");
  app.add_option("--seed", c.seed, "Seed for prompts, arrivals and disconnects (same seed, same run)")
      ->capture_default_str();
  app.add_option("--sessions", c.sessions, "multiturn: conversations")->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--turns", c.turns, "multiturn: user turns per conversation")->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--system-prompt-len", c.system_prompt_len, "multiturn: tokens of the shared system prompt")
      ->check(CLI::Range(0, 1000000))->capture_default_str();
  app.add_option("--num-system-prompts", c.num_system_prompts, "multiturn: distinct system prompts shared")
      ->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--think-time-ms", c.think_time_ms, "multiturn: pause between a reply and the next turn")
      ->check(CLI::Range(0.0, 3.6e6))->capture_default_str();
  app.add_option("--replay-speed", c.replay_speed, "replay: timestamps divided by this")
      ->check(CLI::Range(1e-3, 1e6))->capture_default_str();
  app.add_option("--pool-size", c.pool_size, "Distinct prompts cycled by closed-loop --duration runs")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}))->capture_default_str();
}

void add_output_flags(CLI::App& app, LoadConfig& c, RawFlags& raw) {
  app.add_option("--slo", raw.slo, "ttft:MS,tpot:MS,e2e:MS (any subset; default: none)");
  app.add_option("--min-goodput-fraction", c.min_goodput_fraction,
                 "Exit 3 when fewer requests than this share meet every SLO")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--disconnect-fraction", c.disconnect_fraction,
                 "Fault injection: drop this share of requests mid-flight (chosen by --seed)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--disconnect-after", c.disconnect_after_ms, "Milliseconds after the send to drop them")
      ->check(CLI::Range(0.0, 3.6e6))->capture_default_str();
  app.add_option("--result-json,--result-filename", c.result_json,
                 "Write the results (vLLM's key names) to this file (default: none)");
  app.add_flag("--save-result", raw.save_result,
               "Write the results to --result-json, or to kvmesh-load-YYYYMMDD-HHMMSS.json without one");
  app.add_option("--requests-jsonl", c.requests_jsonl, "Write one JSON line per request to this file (default: none)");
  app.add_option("--html", c.html, "Write a self-contained HTML report (inline SVG plots) (default: none)");
  app.add_option("--label", c.label, "Name of this run in the reports (default: from the load shape)");
  app.add_flag("--quiet", c.quiet, "No progress line");
}

std::optional<std::string> apply_raw(const RawFlags& raw, LoadConfig& c) {
  std::string error;
  if (!raw.base_url.empty() && !parse_base_url(raw.base_url, c.host, c.port, error)) return "--base-url: " + error;
  if (raw.endpoint == "completions" || raw.endpoint == "/v1/completions") c.endpoint = Endpoint::completions;
  else if (raw.endpoint == "chat" || raw.endpoint == "/v1/chat/completions") c.endpoint = Endpoint::chat;
  else return "--endpoint: use completions or chat, not '" + raw.endpoint + "'";
  if (raw.workload == "random") c.workload = WorkloadKind::random;
  else if (raw.workload == "multiturn") c.workload = WorkloadKind::multiturn;
  else return "--workload: use random or multiturn, not '" + raw.workload + "'";
  if (!raw.dataset.empty()) {
    if (c.workload == WorkloadKind::multiturn) return "--dataset and --workload multiturn do not mix";
    const size_t colon = raw.dataset.find(':');
    const std::string kind = colon == std::string::npos ? "" : raw.dataset.substr(0, colon);
    if (kind == "sharegpt") c.workload = WorkloadKind::sharegpt;
    else if (kind == "replay") c.workload = WorkloadKind::replay;
    else return "--dataset: use sharegpt:PATH or replay:PATH";
    c.dataset_path = raw.dataset.substr(colon + 1);
    if (c.dataset_path.empty()) return "--dataset: the path is empty";
  }
  auto in = parse_len_range(raw.input_len, error);
  if (!in) return "--input-len: " + error;
  c.input_len = *in;
  if (!raw.output_len.empty()) {
    auto out = parse_len_range(raw.output_len, error);
    if (!out) return "--output-len: " + error;
    c.output_len = *out;
    c.output_len_given = true;
  }
  if (!raw.slo.empty()) {
    auto slo = parse_slo(raw.slo, error);
    if (!slo) return "--slo: " + error;
    c.slo = *slo;
  }
  if (!raw.sweep.empty()) {
    auto sweep = parse_sweep(raw.sweep, error);
    if (!sweep) return "--sweep: " + error;
    c.sweep = *sweep;
  }
  if (!raw.extra_body.empty()) {
    auto extra = check_extra_body(raw.extra_body, error);
    if (!extra) return "--extra-body: " + error;
    c.extra_body = *extra;
  }
  c.stream = !raw.no_stream;
  c.keep_alive = !raw.no_keep_alive;
  c.pin_output = !raw.no_pin;
  c.token_ids = !raw.no_token_ids;
  if (raw.save_result && c.result_json.empty()) c.result_json = default_result_name();
  return std::nullopt;
}

std::optional<std::string> check_combinations(LoadConfig& c) {
  if (c.input_len.lo < 1) return "--input-len: must be at least 1";
  if (c.output_len.lo < 1) return "--output-len: must be at least 1";
  if (c.workload == WorkloadKind::replay && c.rate > 0.0) return "--rate and replay datasets do not mix";
  if (c.workload == WorkloadKind::replay && !c.sweep.empty()) return "--sweep and replay datasets do not mix";
  const bool whole_file = c.workload == WorkloadKind::multiturn || c.workload == WorkloadKind::replay;
  if (c.num_requests == 0 && c.duration_s <= 0.0 && !whole_file) c.num_requests = 100;
  if (c.num_requests == 0 && c.duration_s > 0.0 && c.open_loop()) {
    const double expected = c.rate * c.duration_s;
    if (expected > 1e8) return "--rate * --duration asks for more than 1e8 requests";
  }
  if (c.disconnect_fraction > 0.0 && !c.stream) return "--disconnect-fraction needs streaming";
  return std::nullopt;
}

}  // namespace

std::optional<std::string> check_extra_body(const std::string& text, std::string& error) {
  const json extra = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (extra.is_discarded() || !extra.is_object()) {
    error = "'" + text.substr(0, 200) + "' is not a JSON object";
    return std::nullopt;
  }
  // What the workload and the measurement set themselves.
  for (const char* own : {"prompt", "messages", "max_tokens", "max_completion_tokens", "min_tokens", "ignore_eos",
                          "stream", "stream_options", "return_token_ids", "model", "temperature"}) {
    if (extra.contains(own)) {
      error = std::string("'") + own + "' is set by kvmesh-load itself (its own flags choose it)";
      return std::nullopt;
    }
  }
  return extra.dump();
}

std::optional<LenRange> parse_len_range(const std::string& text, std::string& error) {
  const size_t colon = text.find(':');
  try {
    size_t used = 0;
    LenRange r;
    const std::string a = text.substr(0, colon);
    r.lo = std::stoi(a, &used);
    if (used != a.size()) throw std::invalid_argument(a);
    r.hi = r.lo;
    if (colon != std::string::npos) {
      const std::string b = text.substr(colon + 1);
      r.hi = std::stoi(b, &used);
      if (used != b.size()) throw std::invalid_argument(b);
    }
    if (r.lo < 0 || r.hi < r.lo || r.hi > 10000000) {
      error = "'" + text + "' must be N or MIN:MAX with 0 <= MIN <= MAX";
      return std::nullopt;
    }
    return r;
  } catch (const std::exception&) {
    error = "'" + text + "' is not N or MIN:MAX";
    return std::nullopt;
  }
}

std::optional<SloSpec> parse_slo(const std::string& text, std::string& error) {
  SloSpec slo;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const size_t colon = item.find(':');
    if (colon == std::string::npos) {
      error = "'" + item + "' is not NAME:MS";
      return std::nullopt;
    }
    const std::string name = item.substr(0, colon);
    char* end = nullptr;
    const std::string number = item.substr(colon + 1);
    const double ms = std::strtod(number.c_str(), &end);
    if (number.empty() || *end != '\0' || !(ms > 0.0) || !std::isfinite(ms)) {
      error = "'" + number + "' is not a positive number of milliseconds";
      return std::nullopt;
    }
    if (name == "ttft") slo.ttft_ms = ms;
    else if (name == "tpot") slo.tpot_ms = ms;
    else if (name == "e2e" || name == "e2el") slo.e2e_ms = ms;
    else {
      error = "unknown SLO '" + name + "' (use ttft, tpot, e2e)";
      return std::nullopt;
    }
    start = comma + 1;
  }
  return slo;
}

std::optional<std::vector<int32_t>> parse_sweep(const std::string& text, std::string& error) {
  std::vector<int32_t> values;
  size_t start = 0;
  while (start <= text.size() && values.size() < 1000) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1 || v > 1000000) {
      error = "'" + item + "' is not a concurrency (1..1000000)";
      return std::nullopt;
    }
    values.push_back(static_cast<int32_t>(v));
    start = comma + 1;
  }
  return values;
}

bool parse_base_url(const std::string& url, std::string& host, std::string& port, std::string& error) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    error = "'" + url + "' must start with http:// (https is not supported)";
    return false;
  }
  std::string rest = url.substr(scheme.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.find('/') != std::string::npos) {
    error = "'" + url + "' must be http://HOST[:PORT] (the API paths are fixed)";
    return false;
  }
  const size_t colon = rest.rfind(':');
  const bool bracketed = rest.front() == '[';
  if (colon != std::string::npos && (!bracketed || colon > rest.find(']'))) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  } else {
    host = rest;
    port = "80";
  }
  if (bracketed && host.size() >= 2) host = host.substr(1, host.size() - 2);
  if (host.empty() || port.empty()) {
    error = "'" + url + "' has no host or port";
    return false;
  }
  return true;
}

std::string local_time_stamp() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

LoadFlagsOutcome parse_load_flags(int argc, const char* const* argv) {
  LoadFlagsOutcome out;
  CLI::App app{"kvmesh-load: load generator and benchmark for OpenAI-compatible servers", "kvmesh-load"};
  app.footer(kFooter);
  RawFlags raw;
  add_target_flags(app, out.config, raw);
  add_shape_flags(app, out.config, raw);
  add_workload_flags(app, out.config, raw);
  add_output_flags(app, out.config, raw);
  const CliOutcome parsed = parse_cli(app, argc, argv, "kvmesh-load");
  if (parsed.exit_code >= 0) {
    out.exit_code = parsed.exit_code;
    out.message = parsed.message;
    return out;
  }
  auto problem = apply_raw(raw, out.config);
  if (!problem) problem = check_combinations(out.config);
  if (problem) {
    out.exit_code = 2;
    out.message = "kvmesh-load: error: " + *problem + " (see --help)";
  }
  return out;
}

}  // namespace kvmesh::load
