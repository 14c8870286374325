// LoadConfig: every kvmesh-load flag as a plain struct, parsed and validated once (CLI11), plus
// the small value parsers the flags need (token-length ranges, SLOs, sweep lists, base URLs).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvmesh::load {

// A token length: exactly `lo` when lo == hi, otherwise uniform in [lo, hi].
struct LenRange {
  int32_t lo = 0;
  int32_t hi = 0;
  bool fixed() const { return lo == hi; }
};

// Service-level objectives in milliseconds; unset ones are not checked.
struct SloSpec {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::optional<double> e2e_ms;  // checked against E2E from the scheduled send time
  bool any() const { return ttft_ms || tpot_ms || e2e_ms; }
};

enum class Endpoint { completions, chat };
enum class WorkloadKind { random, sharegpt, replay, multiturn };

struct LoadConfig {
  // Target
  std::string host = "127.0.0.1";
  std::string port = "8000";
  std::string api_key;
  std::string model;  // "" = the first of GET /v1/models
  Endpoint endpoint = Endpoint::completions;
  bool stream = true;
  bool keep_alive = true;
  bool token_ids = true;  // ask for return_token_ids to count tokens per chunk
  double timeout_s = 300.0;
  double ready_timeout_s = 60.0;

  // Load shape
  int32_t concurrency = 0;  // 0 = no cap
  double rate = 0.0;        // requests/s; 0 = closed loop (send as soon as a slot is free)
  double burstiness = 1.0;  // gamma shape; 1 = Poisson
  double ramp_up_s = 0.0;
  int64_t num_requests = 0;  // 0 = from --duration (or the default of 100)
  double duration_s = 0.0;   // 0 = no limit
  int32_t warmup = 0;
  std::vector<int32_t> sweep;  // concurrency values

  // Workload
  WorkloadKind workload = WorkloadKind::random;
  std::string dataset_path;
  LenRange input_len{128, 128};
  LenRange output_len{128, 128};
  bool output_len_given = false;
  bool pin_output = true;  // ignore_eos + min_tokens = max_tokens
  double temperature = 0.0;
  uint64_t seed = 0;
  std::string extra_body;  // a JSON object merged into every request body ("" = none)
  int32_t sessions = 8;
  int32_t turns = 4;
  int32_t system_prompt_len = 256;
  int32_t num_system_prompts = 1;
  double think_time_ms = 0.0;
  double replay_speed = 1.0;
  int64_t pool_size = 500;  // distinct prompts cycled in closed-loop --duration runs

  // Measurement and output
  SloSpec slo;
  double min_goodput_fraction = 0.9;
  double disconnect_fraction = 0.0;
  double disconnect_after_ms = 100.0;
  std::string result_json;
  std::string requests_jsonl;
  std::string html;
  std::string label;
  bool quiet = false;

  bool open_loop() const { return rate > 0.0; }
  bool chat() const { return endpoint == Endpoint::chat; }
  std::string path() const { return chat() ? "/v1/chat/completions" : "/v1/completions"; }
};

struct LoadFlagsOutcome {
  LoadConfig config;
  int exit_code = -1;  // >= 0: exit now with this code and print `message` (0: help, 2: bad flags)
  std::string message;
};

LoadFlagsOutcome parse_load_flags(int argc, const char* const* argv);

// The local time as YYYYMMDD-HHMMSS: the result JSON's date and default file names.
std::string local_time_stamp();

// "128" or "100:200". Error text in `error` when it returns nothing.
std::optional<LenRange> parse_len_range(const std::string& text, std::string& error);
// --extra-body: a JSON object (compacted) that sets none of the fields kvmesh-load sets itself.
std::optional<std::string> check_extra_body(const std::string& text, std::string& error);
// "ttft:500,tpot:50,e2e:10000" (also e2el). Error text in `error` when it returns nothing.
std::optional<SloSpec> parse_slo(const std::string& text, std::string& error);
// "1,2,4,8": positive integers.
std::optional<std::vector<int32_t>> parse_sweep(const std::string& text, std::string& error);
// "http://HOST:PORT[/]" into host and port (default port 80). Only plain http.
bool parse_base_url(const std::string& url, std::string& host, std::string& port, std::string& error);

}  // namespace kvmesh::load
