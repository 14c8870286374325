// kvmesh-load's pure logic: percentiles and statistics, arrivals and ramps, flag and SLO parsing,
// SSE and chunk reading, per-request numbers, goodput, workload determinism and length fitting,
// request bodies, seeded subsets, Prometheus deltas.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "client/arrivals.h"
#include "client/load_config.h"
#include "client/metrics_math.h"
#include "client/prom_metrics.h"
#include "client/stream_reader.h"
#include "client/workloads.h"

namespace kvmesh::load {
namespace {

using nlohmann::json;

TEST(LoadPercentile, MatchesNumpyLinear) {
  std::vector<double> v = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 50), 5.5);
  EXPECT_NEAR(percentile_sorted(v, 90), 9.1, 1e-12);
  EXPECT_NEAR(percentile_sorted(v, 99), 9.91, 1e-12);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 100), 10);
  EXPECT_DOUBLE_EQ(percentile_sorted({7.0}, 99), 7.0);
  EXPECT_DOUBLE_EQ(percentile_sorted({}, 50), 0.0);
}

TEST(LoadPercentile, StatsOfUnsortedValues) {
  Stats s = compute_stats({4, 1, 3, 2});
  EXPECT_EQ(s.n, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.p50, 2.5);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 4);
  EXPECT_NEAR(s.std, std::sqrt(1.25), 1e-12);  // population std, as numpy
}

TEST(LoadArrivals, SameSeedSameSchedule) {
  ArrivalSpec spec{20.0, 1.0, 0.0, 7};
  EXPECT_EQ(arrival_offsets(spec, 100), arrival_offsets(spec, 100));
  spec.seed = 8;
  EXPECT_NE(arrival_offsets(ArrivalSpec{20.0, 1.0, 0.0, 7}, 100), arrival_offsets(spec, 100));
}

// Mean rate holds for every burstiness; the gaps' coefficient of variation is 1/sqrt(shape).
TEST(LoadArrivals, RateAndBurstiness) {
  for (double b : {0.25, 1.0, 4.0}) {
    const auto t = arrival_offsets(ArrivalSpec{10.0, b, 0.0, 3}, 40000);
    ASSERT_EQ(t.size(), 40000u);
    EXPECT_NEAR(t.back() / 40000.0, 0.1, 0.1 * 0.05) << "burstiness " << b;
    std::vector<double> gaps;
    for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
    Stats s = compute_stats(gaps);
    EXPECT_NEAR(s.std / s.mean, 1.0 / std::sqrt(b), 0.08 / std::sqrt(b)) << "burstiness " << b;
    EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  }
}

TEST(LoadArrivals, RampAndDuration) {
  // Linear ramp over 10 s to 100/s: 500 arrivals expected in the ramp, a quarter in its first half.
  const auto t = arrival_offsets(ArrivalSpec{100.0, 1.0, 10.0, 5}, 100000, 20.0);
  const auto in_ramp = std::count_if(t.begin(), t.end(), [](double x) { return x < 10.0; });
  const auto first_half = std::count_if(t.begin(), t.end(), [](double x) { return x < 5.0; });
  EXPECT_NEAR(static_cast<double>(in_ramp), 500.0, 70.0);
  EXPECT_NEAR(static_cast<double>(first_half), 125.0, 35.0);
  EXPECT_NEAR(static_cast<double>(t.size()), 1500.0, 120.0);
  EXPECT_LT(t.back(), 20.0);
  EXPECT_DOUBLE_EQ(ramp_inverse(250.0, 100.0, 10.0), std::sqrt(50.0));  // inside the ramp: sqrt(2 S u / R)
  EXPECT_DOUBLE_EQ(ramp_inverse(600.0, 100.0, 10.0), 11.0);
}

TEST(LoadArrivals, ConcurrencyRamp) {
  EXPECT_EQ(concurrency_at(0.0, 10, 10.0), 1);
  EXPECT_EQ(concurrency_at(5.0, 10, 10.0), 5);
  EXPECT_EQ(concurrency_at(10.0, 10, 10.0), 10);
  EXPECT_EQ(concurrency_at(3.0, 10, 0.0), 10);
  EXPECT_GT(concurrency_at(0.0, 0, 10.0), 1000000);
}

TEST(LoadFlags, ValueParsers) {
  std::string e;
  auto r = parse_len_range("100:200", e);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->lo, 100);
  EXPECT_EQ(r->hi, 200);
  EXPECT_TRUE(parse_len_range("64", e)->fixed());
  EXPECT_FALSE(parse_len_range("200:100", e));
  EXPECT_FALSE(parse_len_range("12x", e));
  auto slo = parse_slo("ttft:500,tpot:50,e2e:10000", e);
  ASSERT_TRUE(slo);
  EXPECT_EQ(*slo->ttft_ms, 500);
  EXPECT_EQ(*slo->tpot_ms, 50);
  EXPECT_EQ(*slo->e2e_ms, 10000);
  EXPECT_TRUE(parse_slo("e2el:3", e)->e2e_ms);
  EXPECT_FALSE(parse_slo("ttft:-1", e));
  EXPECT_FALSE(parse_slo("latency:5", e));
  EXPECT_FALSE(parse_slo("ttft", e));
  EXPECT_EQ(*parse_sweep("1,2,8", e), (std::vector<int32_t>{1, 2, 8}));
  EXPECT_FALSE(parse_sweep("1,,2", e));
  std::string host, port;
  EXPECT_TRUE(parse_base_url("http://localhost:8123/", host, port, e));
  EXPECT_EQ(host, "localhost");
  EXPECT_EQ(port, "8123");
  EXPECT_FALSE(parse_base_url("https://x:1", host, port, e));
}

TEST(LoadFlags, ParseAndValidate) {
  const char* ok[] = {"kvmesh-load", "--rate", "5", "--concurrency", "3", "--slo", "ttft:100", "--endpoint", "chat"};
  auto out = parse_load_flags(9, ok);
  ASSERT_EQ(out.exit_code, -1) << out.message;
  EXPECT_TRUE(out.config.open_loop());
  EXPECT_TRUE(out.config.chat());
  EXPECT_EQ(out.config.num_requests, 100);
  EXPECT_EQ(out.config.path(), "/v1/chat/completions");
  const char* bad[] = {"kvmesh-load", "--slo", "ttft:abc"};
  EXPECT_EQ(parse_load_flags(3, bad).exit_code, 2);
  const char* mixed[] = {"kvmesh-load", "--dataset", "replay:x.jsonl", "--rate", "3"};
  EXPECT_EQ(parse_load_flags(5, mixed).exit_code, 2);
  const char* extra[] = {"kvmesh-load", "--extra-body", R"({"top_k": 40, "seed": 3})"};
  auto with_extra = parse_load_flags(3, extra);
  ASSERT_EQ(with_extra.exit_code, -1) << with_extra.message;
  EXPECT_EQ(json::parse(with_extra.config.extra_body), json({{"top_k", 40}, {"seed", 3}}));
  // Not an object, or a field kvmesh-load sets itself: exit 2 naming the flag (and the field).
  for (const char* text : {"[1]", "{\"top_k\": ", "{\"stream\": false}", "{\"max_tokens\": 5}", "{\"prompt\": \"x\"}"}) {
    const char* argv[] = {"kvmesh-load", "--extra-body", text};
    auto refused = parse_load_flags(3, argv);
    EXPECT_EQ(refused.exit_code, 2) << text;
    EXPECT_NE(refused.message.find("--extra-body"), std::string::npos) << refused.message;
  }
  const char* own[] = {"kvmesh-load", "--extra-body", R"({"temperature": 1})"};
  EXPECT_NE(parse_load_flags(3, own).message.find("'temperature' is set by kvmesh-load"), std::string::npos);
  const char* help[] = {"kvmesh-load", "--help"};
  auto h = parse_load_flags(2, help);
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_NE(h.message.find("--min-goodput-fraction"), std::string::npos);
  EXPECT_NE(h.message.find("3 SLO breached"), std::string::npos);
}

// vLLM benchmark_serving's flag names mean kvmesh-load's own.
TEST(LoadFlags, VllmAliases) {
  const char* argv[] = {"kvmesh-load", "--num-prompts", "7", "--max-concurrency", "3", "--request-rate", "2.5",
                        "--result-filename", "x.json", "--random-input-len", "12", "--random-output-len", "9"};
  auto out = parse_load_flags(13, argv);
  ASSERT_EQ(out.exit_code, -1) << out.message;
  EXPECT_EQ(out.config.num_requests, 7);
  EXPECT_EQ(out.config.concurrency, 3);
  EXPECT_EQ(out.config.rate, 2.5);
  EXPECT_EQ(out.config.result_json, "x.json");
  EXPECT_EQ(out.config.input_len.lo, 12);
  EXPECT_EQ(out.config.output_len.hi, 9);
  const char* inf[] = {"kvmesh-load", "--request-rate", "inf", "--save-result"};
  out = parse_load_flags(4, inf);
  ASSERT_EQ(out.exit_code, -1) << out.message;
  EXPECT_FALSE(out.config.open_loop());
  EXPECT_EQ(out.config.result_json.rfind("kvmesh-load-", 0), 0u) << out.config.result_json;
  const char* named[] = {"kvmesh-load", "--save-result", "--result-filename", "y.json"};
  EXPECT_EQ(parse_load_flags(4, named).config.result_json, "y.json");
}

// An unknown flag is named, with the nearest known one; --help shows a default for every option.
TEST(LoadFlags, UnknownFlagAndHelpDefaults) {
  const char* typo[] = {"kvmesh-load", "--num-prompt", "5"};
  auto out = parse_load_flags(3, typo);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_EQ(out.message, "kvmesh-load: error: unknown flag --num-prompt (did you mean --num-prompts?) (see --help)");
  const char* far[] = {"kvmesh-load", "--concurency=4"};
  EXPECT_NE(parse_load_flags(2, far).message.find("unknown flag --concurency (did you mean --concurrency?)"),
            std::string::npos);
  const char* help[] = {"kvmesh-load", "--help"};
  const std::string text = parse_load_flags(2, help).message;
  // Each option's entry: its first line and the indented lines after it. One with a value type
  // (not a plain on/off flag) shows "=DEFAULT" or says "default:" in its description.
  std::vector<std::string> entries;
  std::istringstream lines(text.substr(0, text.find("\n\n", text.find("Options:"))));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("  -", 0) == 0) entries.push_back(line);
    else if (!entries.empty() && line.rfind("     ", 0) == 0) entries.back() += line;
  }
  ASSERT_GT(entries.size(), 40u) << text;
  for (const std::string& e : entries) {
    const bool typed = e.find(" TEXT") != std::string::npos || e.find(" INT") != std::string::npos ||
                       e.find(" UINT") != std::string::npos || e.find(" FLOAT") != std::string::npos;
    if (!typed) continue;
    const std::string head = e.substr(0, e.find("  ", 2));
    EXPECT_TRUE(head.find('=') != std::string::npos || e.find("default: ") != std::string::npos) << e;
  }
}

TEST(LoadSse, SplitsEventsAcrossReads) {
  SseParser p;
  EXPECT_TRUE(p.feed("data: {\"a\"").empty());
  auto e = p.feed(":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n\nda");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], "{\"a\":1}");
  EXPECT_EQ(e[1], "x\ny");
  e = p.feed("ta:[DONE]\n\n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "[DONE]");
}

std::string completion_chunk(const std::string& text, int n_ids) {
  json c = {{"index", 0}, {"text", text}, {"token_ids", std::vector<int>(static_cast<size_t>(n_ids), 5)}};
  return "data: " + json{{"choices", json::array({c})}}.dump() + "\n\n";
}

TEST(LoadReader, StreamedCompletion) {
  RequestRecord r;
  r.http_status = 200;
  r.sent_s = 1.0;
  ResponseReader reader(true, false);
  reader.feed(completion_chunk(" a", 1), 1.1, r);
  reader.feed(completion_chunk(" b c", 2), 1.3, r);
  reader.feed(completion_chunk("", 0), 1.3, r);  // finish chunk: no tokens
  reader.feed("data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 9, \"completion_tokens\": 3, "
              "\"prompt_tokens_details\": {\"cached_tokens\": 4}}}\n\ndata: [DONE]\n\n",
              1.3, r);
  reader.finish(1.5, r);
  EXPECT_EQ(r.outcome, Outcome::ok);
  EXPECT_EQ(r.text, " a b c");
  EXPECT_EQ(r.completion_tokens, 3);
  EXPECT_EQ(r.prompt_tokens, 9);
  EXPECT_EQ(r.cached_tokens, 4);
  EXPECT_NEAR(r.ttft_ms(), 100.0, 1e-9);
  EXPECT_NEAR(r.e2el_ms(), 500.0, 1e-9);
  EXPECT_NEAR(r.tpot_ms(), 200.0, 1e-9);  // (500 - 100) / (3 - 1)
  auto itl = r.itls_ms();
  ASSERT_EQ(itl.size(), 2u);  // one gap of 200 ms over a chunk of two tokens
  EXPECT_NEAR(itl[0], 100.0, 1e-9);
  EXPECT_NEAR(itl[1], 100.0, 1e-9);
}

TEST(LoadReader, ChatChunksAndErrors) {
  RequestRecord r;
  r.http_status = 200;
  ResponseReader chat(true, true);
  chat.feed("data: {\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"hi\"}}]}\n\n", 0.2, r);
  chat.feed("data: {\"error\": {\"message\": \"boom\"}}\n\ndata: [DONE]\n\n", 0.3, r);
  chat.finish(0.3, r);
  EXPECT_EQ(r.outcome, Outcome::failed);
  EXPECT_EQ(r.error_kind, "sse_error");
  EXPECT_EQ(r.error_message, "boom");
  EXPECT_EQ(r.text, "hi");

  RequestRecord cut;
  cut.http_status = 200;
  ResponseReader reader(true, false);
  reader.feed(completion_chunk("x", 1), 0.1, cut);
  reader.finish(0.2, cut);
  EXPECT_EQ(cut.error_kind, "incomplete");

  RequestRecord refused;
  refused.http_status = 429;
  ResponseReader r429(true, false);
  r429.feed("{\"error\": {\"message\": \"queue full\"}}", 0.1, refused);
  r429.finish(0.1, refused);
  EXPECT_EQ(refused.error_kind, "http_429");
  EXPECT_EQ(refused.error_message, "queue full");
}

TEST(LoadReader, WholeBody) {
  RequestRecord r;
  r.http_status = 200;
  r.streamed = false;
  ResponseReader reader(false, true);
  reader.feed("{\"choices\": [{\"message\": {\"content\": \"ok\"}}], \"usage\": {\"completion_tokens\": 2,", 0.1, r);
  reader.feed("\"prompt_tokens\": 5}}", 0.2, r);
  reader.finish(0.2, r);
  EXPECT_EQ(r.outcome, Outcome::ok);
  EXPECT_EQ(r.text, "ok");
  EXPECT_EQ(r.completion_tokens, 2);
  EXPECT_FALSE(r.has_ttft());
}

RequestRecord done_request(double ttft_ms, double e2e_ms, int64_t tokens) {
  RequestRecord r;
  r.outcome = Outcome::ok;
  r.sent_s = r.scheduled_s = 0.0;
  r.first_token_s = ttft_ms / 1e3;
  r.done_s = e2e_ms / 1e3;
  r.completion_tokens = tokens;
  r.prompt_tokens = 10;
  r.chunk_s = {r.first_token_s, r.done_s};
  r.chunk_tokens = {1, static_cast<int32_t>(tokens - 1)};
  return r;
}

TEST(LoadSummary, CountsGoodputAndBreach) {
  std::vector<RequestRecord> rs = {done_request(50, 500, 10), done_request(300, 900, 10), done_request(80, 400, 10)};
  RequestRecord failed;
  failed.outcome = Outcome::failed;
  failed.error_kind = "timeout";
  RequestRecord dropped;
  dropped.outcome = Outcome::disconnected;
  rs.push_back(failed);
  rs.push_back(dropped);
  rs[2].scheduled_s = -1.0;  // waited a second for a slot: E2E from the schedule is 1400 ms
  SloSpec slo;
  slo.ttft_ms = 100;
  slo.e2e_ms = 1000;
  EXPECT_TRUE(meets_slo(rs[0], slo));
  EXPECT_FALSE(meets_slo(rs[1], slo));
  EXPECT_FALSE(meets_slo(rs[2], slo));
  RunSummary s = summarize_run(SummaryInputs{&rs, nullptr, 2.0, 0, 3, slo, 0.5});
  EXPECT_EQ(s.sent, 5);
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.disconnected, 1);
  EXPECT_EQ(s.errors.at("timeout"), 1);
  EXPECT_EQ(s.total_output_tokens, 30);
  EXPECT_DOUBLE_EQ(s.output_throughput, 15.0);
  EXPECT_EQ(s.good, 1);
  EXPECT_DOUBLE_EQ(s.goodput_fraction, 0.25);  // of completed + failed
  EXPECT_TRUE(s.slo_breached);
  EXPECT_EQ(s.ttft.n, 3);
  EXPECT_EQ(s.itl.n, 27);
  EXPECT_EQ(s.max_concurrent_requests, 3);
  EXPECT_FALSE(summarize_run(SummaryInputs{&rs, nullptr, 2.0, 0, 3, SloSpec{}, 0.5}).slo_breached);
}

// Counts " word" as one token, except words in `split` (two tokens); chat adds 3.
class FakeTokens : public TokenService {
 public:
  std::set<std::string> split;
  int64_t calls = 0;
  std::vector<int64_t> count(const std::vector<std::string>& texts) override {
    ++calls;
    std::vector<int64_t> out;
    for (const std::string& t : texts) {
      int64_t n = 0;
      size_t pos = 0;
      while (pos < t.size()) {
        const size_t end = std::min(t.find(' ', pos + 1), t.size());
        n += split.count(t.substr(pos + 1, end - pos - 1)) ? 2 : 1;
        pos = end;
      }
      out.push_back(n);
    }
    return out;
  }
  std::vector<int64_t> count_chat(const std::vector<std::string>& texts) override {
    auto out = count(texts);
    for (auto& n : out) n += 3;
    return out;
  }
};

TEST(LoadWorkload, RandomIsDeterministicAndExact) {
  LoadConfig c;
  c.input_len = {20, 40};
  c.output_len = {8, 8};
  FakeTokens tokens;
  Workload a, b, other;
  std::string e;
  ASSERT_TRUE(build_random(WorkloadInputs{&c, &tokens, 30, 11, 1024}, a, e)) << e;
  ASSERT_TRUE(build_random(WorkloadInputs{&c, &tokens, 30, 11, 1024}, b, e)) << e;
  ASSERT_TRUE(build_random(WorkloadInputs{&c, &tokens, 30, 12, 1024}, other, e)) << e;
  ASSERT_EQ(a.sessions.size(), 30u);
  std::set<int64_t> lengths;
  for (size_t i = 0; i < a.sessions.size(); ++i) {
    const TurnSpec& t = a.sessions[i].turns[0];
    EXPECT_EQ(t.text, b.sessions[i].turns[0].text);
    EXPECT_EQ(tokens.count({t.text})[0], t.input_tokens);
    EXPECT_GE(t.input_tokens, 20);
    EXPECT_LE(t.input_tokens, 40);
    EXPECT_EQ(t.max_tokens, 8);
    lengths.insert(t.input_tokens);
  }
  EXPECT_GT(lengths.size(), 5u);
  EXPECT_NE(a.sessions[0].turns[0].text, other.sessions[0].turns[0].text);
  c.input_len = {1020, 1020};  // + 8 output tokens > 1024
  EXPECT_FALSE(build_random(WorkloadInputs{&c, &tokens, 1, 1, 1024}, a, e));
}

TEST(LoadWorkload, FitsChatTemplateAndSplitWords) {
  LoadConfig c;
  c.endpoint = Endpoint::chat;
  c.input_len = {32, 32};
  FakeTokens tokens;
  tokens.split = {"the", "of", "and"};  // dropped from the words, yet fitting copes with any text
  Workload w;
  std::string e;
  ASSERT_TRUE(build_random(WorkloadInputs{&c, &tokens, 10, 3, 0}, w, e)) << e;
  for (const SessionSpec& s : w.sessions) EXPECT_EQ(tokens.count_chat({s.turns[0].text})[0], 32);
  std::vector<std::string> texts = {" the the the", " of"};
  std::vector<std::string> words = {"cat", "dog"};
  EXPECT_EQ(fit_lengths(tokens, false, words, texts, {4, 5}, 1), 0);
  EXPECT_EQ(tokens.count(texts), (std::vector<int64_t>{4, 5}));
}

TEST(LoadWorkload, MultiturnBodiesCarryHistory) {
  LoadConfig c;
  c.workload = WorkloadKind::multiturn;
  c.endpoint = Endpoint::chat;
  c.sessions = 4;
  c.turns = 3;
  c.system_prompt_len = 16;
  c.num_system_prompts = 2;
  c.input_len = {5, 5};
  c.output_len = {7, 7};
  FakeTokens tokens;
  Workload w;
  std::string e;
  ASSERT_TRUE(build_multiturn(WorkloadInputs{&c, &tokens, 4, 9, 0}, w, e)) << e;
  ASSERT_EQ(w.system_prompts.size(), 2u);
  EXPECT_EQ(w.n_requests(), 12);
  EXPECT_EQ(w.sessions[2].system_index, 0);
  BodyOptions o{"m", true, true, true, true, 0.0, 0};
  json body = json::parse(request_body(o, w, w.sessions[1], 2, {" r0", " r1"}));
  const json& m = body["messages"];
  ASSERT_EQ(m.size(), 6u);  // system, (user, assistant) x 2, user
  EXPECT_EQ(m[0]["role"], "system");
  EXPECT_EQ(m[0]["content"], w.system_prompts[1]);
  EXPECT_EQ(m[4]["content"], " r1");
  EXPECT_EQ(m[5]["content"], w.sessions[1].turns[2].text);
  EXPECT_EQ(body["max_tokens"], 7);
  EXPECT_EQ(body["min_tokens"], 7);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["return_token_ids"], true);
  o.chat = false;
  o.stream = false;
  o.pin_output = false;
  json plain = json::parse(request_body(o, w, w.sessions[1], 1, {" r0"}));
  EXPECT_EQ(plain["prompt"], w.system_prompts[1] + w.sessions[1].turns[0].text + " r0" + w.sessions[1].turns[1].text);
  EXPECT_FALSE(plain.contains("stream_options"));
  EXPECT_FALSE(plain.contains("ignore_eos"));
  o.extra_body = json::parse(R"({"top_p":0.9,"logit_bias":{"50256":-100}})");
  json extra = json::parse(request_body(o, w, w.sessions[1], 1, {" r0"}));
  EXPECT_EQ(extra["top_p"], 0.9);
  EXPECT_EQ(extra["logit_bias"]["50256"], -100);
  EXPECT_EQ(extra["prompt"], plain["prompt"]);
}

TEST(LoadWorkload, SeededSubset) {
  auto a = choose_subset(100, 30, 5);
  EXPECT_EQ(a, choose_subset(100, 30, 5));
  EXPECT_NE(a, choose_subset(100, 30, 6));
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 30u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(choose_subset(5, 9, 1), (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(LoadProm, DeltasOfCountersAndHistograms) {
  const char* before =
      "# TYPE kvmesh_prefix_cache_hits_total counter\nkvmesh_prefix_cache_hits_total 10\n"
      "# TYPE kvmesh_kv_pages_used gauge\nkvmesh_kv_pages_used 7\n"
      "# TYPE kvmesh_ttft_seconds histogram\nkvmesh_ttft_seconds_bucket{le=\"+Inf\"} 2\n"
      "kvmesh_ttft_seconds_sum 0.5\nkvmesh_ttft_seconds_count 2\n"
      "# TYPE kvmesh_http_requests_total counter\nkvmesh_http_requests_total{code=\"200\"} 3\n"
      "other_total 5\n";
  const char* after =
      "# TYPE kvmesh_prefix_cache_hits_total counter\nkvmesh_prefix_cache_hits_total 25\n"
      "# TYPE kvmesh_kv_pages_used gauge\nkvmesh_kv_pages_used 0\n"
      "# TYPE kvmesh_ttft_seconds histogram\nkvmesh_ttft_seconds_bucket{le=\"+Inf\"} 6\n"
      "kvmesh_ttft_seconds_sum 1.3\nkvmesh_ttft_seconds_count 6\n"
      "# TYPE kvmesh_http_requests_total counter\nkvmesh_http_requests_total{code=\"200\"} 9\n"
      "other_total 50\n";
  ServerDelta d = diff_metrics(parse_prometheus(before), parse_prometheus(after));
  ASSERT_TRUE(d.ok);
  std::map<std::string, double> counters(d.counters.begin(), d.counters.end());
  EXPECT_EQ(counters.size(), 2u);
  EXPECT_DOUBLE_EQ(counters["kvmesh_prefix_cache_hits_total"], 15);
  EXPECT_DOUBLE_EQ(counters["kvmesh_http_requests_total{code=\"200\"}"], 6);
  ASSERT_EQ(d.histogram_means.size(), 1u);
  EXPECT_NEAR(d.histogram_means[0].second, 0.2, 1e-12);
  ASSERT_EQ(d.gauges_after.size(), 1u);
  EXPECT_EQ(d.gauges_after[0].second, 0);
}

}  // namespace
}  // namespace kvmesh::load
