// Readiness (with fallbacks for servers that are not kvmesh-serve), the model, and /tokenize.
#include "client/server_probe.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvmesh::load {
namespace {

using nlohmann::json;

constexpr int32_t kTokenizeConcurrency = 8;
constexpr const char* kReadyPaths[] = {"/ready", "/health", "/v1/models"};

// /tokenize as a TokenService.
class HttpTokens : public TokenService {
 public:
  explicit HttpTokens(HttpTarget target) : target_(std::move(target)) {}
  std::vector<int64_t> count(const std::vector<std::string>& texts) override { return run(texts, false); }
  std::vector<int64_t> count_chat(const std::vector<std::string>& texts) override { return run(texts, true); }

 private:
  std::vector<int64_t> run(const std::vector<std::string>& texts, bool chat) {
    std::vector<HttpRequest> requests;
    for (const std::string& t : texts) {
      json body = chat ? json{{"messages", json::array({{{"role", "user"}, {"content", t}}})},
                              {"add_generation_prompt", true}}
                       : json{{"prompt", t}};
      requests.push_back(HttpRequest{"POST", "/tokenize", body.dump(-1, ' ', false, json::error_handler_t::replace), 60.0});
    }
    std::vector<int64_t> out;
    for (const HttpReply& r : http_fetch_all(target_, requests, kTokenizeConcurrency)) {
      json j = r.ok() ? json::parse(r.body, nullptr, false) : json();
      out.push_back(j.is_object() && j.contains("count") && j["count"].is_number_integer() ? j["count"].get<int64_t>()
                                                                                          : -1);
    }
    return out;
  }
  HttpTarget target_;
};

// A server without /tokenize: nothing is counted before the run.
class NoTokens : public TokenService {
 public:
  bool can_count() const override { return false; }
  std::vector<int64_t> count(const std::vector<std::string>& texts) override { return std::vector<int64_t>(texts.size(), -1); }
  std::vector<int64_t> count_chat(const std::vector<std::string>& texts) override { return count(texts); }
};

// "connection refused", "HTTP 503", "timeout: ...".
std::string describe(const HttpReply& r) {
  if (r.error.ok()) return "HTTP " + std::to_string(r.status);
  std::string message = r.error.message;
  if (!message.empty()) message[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(message[0])));
  if (r.error.kind == "connect" || r.error.kind == "reset") return message;
  return r.error.kind + ": " + message;
}

bool not_there(const HttpReply& r) { return r.error.ok() && (r.status == 404 || r.status == 405); }

}  // namespace

double ready_report_interval(double timeout_s) { return std::clamp(std::floor(timeout_s / 4.0), 1.0, 5.0); }

bool wait_ready(const HttpTarget& target, double timeout_s, double report_every_s, std::FILE* log) {
  const auto start = Clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  const std::string base = "http://" + target.host + ":" + target.port;
  size_t k = 0;  // the path asked now: a 404 moves on to the next
  std::string last = "no answer";
  double next_report = report_every_s;
  for (int attempt = 0; attempt < 10000000; ++attempt) {
    const double probe_s = std::clamp(timeout_s - elapsed(), 0.5, 5.0);
    const HttpReply r = http_fetch(target, HttpRequest{"GET", kReadyPaths[k], "", probe_s});
    if (r.ok()) return true;
    if (not_there(r) && k + 1 < std::size(kReadyPaths)) {
      ++k;
      continue;
    }
    last = not_there(r) ? "HTTP " + std::to_string(r.status) + " on /ready, /health and /v1/models" : describe(r);
    const std::string path = not_there(r) ? "" : kReadyPaths[k];
    if (not_there(r)) k = 0;
    const double t = elapsed();
    if (t >= timeout_s) break;
    if (t >= next_report) {
      std::fprintf(log, "kvmesh-load: waiting for %s%s: %s (%.0f s of %.0f s)\n", base.c_str(), path.c_str(),
                   last.c_str(), t, timeout_s);
      std::fflush(log);
      while (next_report <= t) next_report += report_every_s;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::fprintf(log, "kvmesh-load: error: %s%s did not answer 200 within %.0f s (%s)\n", base.c_str(),
               kReadyPaths[k], timeout_s, last.c_str());
  return false;
}

void learn_model(const HttpTarget& target, std::string& model, int64_t& max_model_len) {
  HttpReply r = http_fetch(target, HttpRequest{"GET", "/v1/models", "", 10.0});
  json j = r.ok() ? json::parse(r.body, nullptr, false) : json();
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty()) return;
  const json& first = j["data"][0];
  if (model.empty() && first.contains("id") && first["id"].is_string()) model = first["id"].get<std::string>();
  if (first.contains("max_model_len") && first["max_model_len"].is_number_integer()) {
    max_model_len = first["max_model_len"].get<int64_t>();
  }
}

std::unique_ptr<TokenService> token_service(const HttpTarget& target) {
  auto tokens = std::make_unique<HttpTokens>(target);
  const std::vector<int64_t> probe = tokens->count({" the river"});
  if (!probe.empty() && probe[0] >= 1) return tokens;
  return std::make_unique<NoTokens>();
}

}  // namespace kvmesh::load
