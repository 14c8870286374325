// Continuous batching through HTTP: 32 concurrent clients (streaming and not, completions and
// chat, greedy and seeded sampling, short and long prompts) get exactly what each request gets
// when sent alone, with a roomy KV cache and with one so small that sequences get preempted.
#include <gtest/gtest.h>

#include <thread>

#include "server_process.h"

namespace kvmesh::testing {
namespace {

using nlohmann::json;

struct Outcome {
  int status = 0;
  std::string error;
  std::vector<std::string> text;
  std::vector<std::vector<int>> token_ids;
};

std::string words(int n, int salt) {
  static const char* kWords[] = {"the", "river", "quiet", "engine", "paper", "seven", "blue", "morning",
                                 "station", "light", "window", "garden", "north", "stone", "music"};
  std::string s;
  for (int i = 0; i < n; ++i) s += std::string(i ? " " : "") + kWords[(i * 7 + salt * 3) % 15];
  return s;
}

// Request i of the mix: every other one streams, a quarter are chat, half sample with a seed.
json request_body(int i) {
  json body = {{"max_tokens", 4 + (i * 13) % 45}, {"return_token_ids", true}, {"ignore_eos", true}};
  if (i % 4 == 3) {
    body["messages"] = {{{"role", "user"}, {"content", words(2 + (i * 5) % 30, i)}}};
  } else {
    body["prompt"] = words(1 + (i * 37) % 160, i);
  }
  if (i % 2 == 1) body["stream"] = true;
  if ((i / 2) % 2 == 1) {
    body["temperature"] = 0.9;
    body["top_p"] = 0.95;
    // The tiny random model's distributions are nearly flat over 50k tokens, so without top_k a
    // draw can sit within float noise of a token boundary, and the CPU backend's batched and
    // single-row matrix products differ in the last bits (gemm vs gemv).
    body["top_k"] = 50;
    body["seed"] = 1000 + i;
  } else {
    body["temperature"] = 0;
  }
  return body;
}

Outcome run(int port, const json& body) {
  Outcome out;
  const std::string path = body.contains("messages") ? "/v1/chat/completions" : "/v1/completions";
  if (body.value("stream", false)) {
    StreamedResult r = stream_completion(port, path, body);
    out.status = r.status;
    out.error = r.error;
    if (!r.done) out.error += " (no [DONE])";
    out.text = r.text;
    out.token_ids = r.token_ids;
    return out;
  }
  auto [status, reply] = post_for_json(port, path, body);
  out.status = status;
  if (status != 200 || !reply.is_object()) return out.error = reply.dump(), out;
  for (const auto& c : reply["choices"]) {
    out.text.push_back(c.contains("message") ? c["message"]["content"].get<std::string>()
                                             : c["text"].get<std::string>());
    out.token_ids.push_back(c["token_ids"].get<std::vector<int>>());
  }
  return out;
}

void run_mix(const std::vector<std::string>& args, bool expect_preemption) {
  std::string error;
  auto server = ServerProcess::start(args, &error);
  ASSERT_NE(server, nullptr) << error;
  const int port = server->port();
  constexpr int kClients = 32;
  std::vector<Outcome> alone(kClients), together(kClients);
  for (int i = 0; i < kClients; ++i) {
    alone[i] = run(port, request_body(i));
    ASSERT_EQ(alone[i].status, 200) << "request " << i << ": " << alone[i].error;
  }
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] { together[i] = run(port, request_body(i)); });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < kClients; ++i) {
    SCOPED_TRACE("request " + std::to_string(i) + ": " + request_body(i).dump());
    ASSERT_EQ(together[i].status, 200) << together[i].error;
    EXPECT_EQ(together[i].token_ids, alone[i].token_ids);
    EXPECT_EQ(together[i].text, alone[i].text);
  }
  EXPECT_TRUE(eventually([&] { return server->metric("kvmesh_kv_pages_used") == 0.0; }, 5000));
  if (expect_preemption) {
    EXPECT_GT(server->metric("kvmesh_num_preemptions_total"), 0.0);
  }
}

TEST(ServeConcurrency, ThirtyTwoClientsMatchTheirSoloResults) {
  run_mix({"--model", hf_model_dir(), "--max-batch-tokens", "96"}, false);
}

TEST(ServeConcurrency, PreemptionUnderATinyCacheChangesNoResult) {
  // 16 KiB pages (4 layers x 32 wide x K,V x fp32 x 16 tokens): 48 pages for 32 clients.
  run_mix({"--model", hf_model_dir(), "--kv-device-mem", "768KiB", "--max-batch-tokens", "256"}, true);
}

}  // namespace
}  // namespace kvmesh::testing
