// The tiered KV cache through a real server: with a device tier of a few pages spilling to host and
// disk, results equal an ample device tier; returning conversations reuse their prefix from host or
// disk; a corrupted disk page is recomputed; --kv-disk-persist keeps prefixes across a restart.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "server_process.h"

namespace kvmesh::testing {
namespace {

// The fixture model: 4 layers x (K, V) x 16 tokens x 32 wide x 4 bytes = 16 KiB per page.
std::vector<std::string> tiny_tiers(const std::string& disk_dir, const std::string& host = "64KiB") {
  return {"--model", hf_model_dir(), "--kv-device-mem", "160KiB", "--kv-host-mem", host,
          "--kv-disk-mem", "2MiB", "--kv-disk-dir", disk_dir, "--max-batch-tokens", "256"};
}

std::vector<int> prompt_of(int seed, int n) {
  std::vector<int> p;
  for (int i = 0; i < n; ++i) p.push_back((seed * 7919 + i * 104729) % 50000);
  return p;
}

struct Answer {
  std::vector<int> tokens;
  std::vector<double> logprobs;
  int cached = -1;
};

Answer complete(int port, const std::vector<int>& prompt, int max_tokens = 12) {
  nlohmann::json body = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0},
                         {"logprobs", 0},    {"return_token_ids", true}, {"ignore_eos", true}};
  auto [status, json] = post_for_json(port, "/v1/completions", body);
  Answer a;
  if (status != 200) return a;
  a.tokens = json["choices"][0]["token_ids"].get<std::vector<int>>();
  for (const auto& lp : json["choices"][0]["logprobs"]["token_logprobs"]) a.logprobs.push_back(lp.get<double>());
  a.cached = json["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
  return a;
}

void expect_same(const Answer& a, const Answer& b, const std::string& what) {
  ASSERT_FALSE(a.tokens.empty()) << what;
  EXPECT_EQ(a.tokens, b.tokens) << what;
  ASSERT_EQ(a.logprobs.size(), b.logprobs.size()) << what;
  for (size_t i = 0; i < a.logprobs.size(); ++i) EXPECT_NEAR(a.logprobs[i], b.logprobs[i], 1e-5) << what;
}

std::string temp_dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/kvmesh_" + name + "_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(KvTiers, SpillingTiersGiveTheSameResultsUnderConcurrency) {
  std::string error;
  auto ample = ServerProcess::start({"--model", hf_model_dir()}, &error);
  ASSERT_NE(ample, nullptr) << error;
  std::vector<Answer> expected;
  for (int i = 0; i < 16; ++i) expected.push_back(complete(ample->port(), prompt_of(i % 5, 40 + 5 * i)));
  ample.reset();

  const std::string dir = temp_dir("spill");
  auto tiny = ServerProcess::start(tiny_tiers(dir), &error);
  ASSERT_NE(tiny, nullptr) << error;
  for (int i = 0; i < 16; ++i)  // alone, one after another: prefixes come back from host and disk
    expect_same(expected[i], complete(tiny->port(), prompt_of(i % 5, 40 + 5 * i)), "alone " + std::to_string(i));
  std::vector<std::future<Answer>> futures;
  for (int i = 0; i < 16; ++i)
    futures.push_back(std::async(std::launch::async, complete, tiny->port(), prompt_of(i % 5, 40 + 5 * i), 12));
  for (int i = 0; i < 16; ++i) expect_same(expected[i], futures[i].get(), "concurrent " + std::to_string(i));
  const std::string m = tiny->metrics();
  EXPECT_GT(metric_value(m, "kvmesh_kv_pages_moved_total{from=\"device\",to=\"host\"}"), 0);
  EXPECT_GT(metric_value(m, "kvmesh_kv_pages_moved_total{from=\"host\",to=\"disk\"}"), 0);
  EXPECT_GT(metric_value(m, "kvmesh_prefix_cache_hits_total"), 0);
  EXPECT_EQ(metric_value(m, "kvmesh_kv_pages_used"), 0);
  std::filesystem::remove_all(dir);
}

TEST(KvTiers, ReturningConversationReusesItsHistoryFromHostOrDisk) {
  std::string error;
  const std::string dir = temp_dir("turns");
  auto server = ServerProcess::start(tiny_tiers(dir), &error);
  ASSERT_NE(server, nullptr) << error;
  std::vector<int> history = prompt_of(42, 70);
  for (int turn = 0; turn < 3; ++turn) {
    Answer a = complete(server->port(), history);
    ASSERT_FALSE(a.tokens.empty());
    if (turn > 0) EXPECT_GE(a.cached, 64) << "turn " << turn;  // the earlier turns' full pages
    history.insert(history.end(), a.tokens.begin(), a.tokens.end());
    for (int k = 0; k < 20; ++k) history.push_back(1000 + 37 * turn + k);  // the user's next message
    for (int f = 0; f < 3; ++f) complete(server->port(), prompt_of(100 + 10 * turn + f, 120), 4);  // other traffic
  }
  const std::string m = server->metrics();
  EXPECT_GT(metric_value(m, "kvmesh_kv_prefix_hits_total{tier=\"host\"}") +
                metric_value(m, "kvmesh_kv_prefix_hits_total{tier=\"disk\"}"), 0);
  std::filesystem::remove_all(dir);
}

TEST(KvTiers, CorruptedDiskPagesAreRecomputedAndPersistSurvivesRestart) {
  std::string error;
  const std::string dir = temp_dir("persist");
  std::vector<std::string> args = tiny_tiers(dir, "16KiB");  // one host slot: pages reach disk fast
  args.push_back("--kv-disk-persist");
  const std::vector<int> prompt = prompt_of(7, 100);
  Answer reference;
  {
    auto server = ServerProcess::start(args, &error);
    ASSERT_NE(server, nullptr) << error;
    reference = complete(server->port(), prompt);
    for (int f = 0; f < 4; ++f) complete(server->port(), prompt_of(200 + f, 120), 4);  // push it to disk
    server->send_signal(SIGTERM);
    ASSERT_EQ(server->wait_exit(30000), std::optional<int>(0));
  }
  {
    auto server = ServerProcess::start(args, &error);
    ASSERT_NE(server, nullptr) << error;
    Answer again = complete(server->port(), prompt);
    expect_same(reference, again, "after restart");
    EXPECT_GE(again.cached, 16) << "the prefix should come back from disk after a restart";
    server->send_signal(SIGTERM);
    ASSERT_EQ(server->wait_exit(30000), std::optional<int>(0));
  }
  // Flip bytes all over the disk file: every page fails its checksum, is recomputed, and the
  // answer is still right.
  const std::string file = dir + "/kvmesh-kv-rank0.bin";
  ASSERT_TRUE(std::filesystem::exists(file));
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = std::filesystem::file_size(file);
    for (uint64_t at = 200; at < size; at += 1024) {
      f.seekp(static_cast<std::streamoff>(at));
      f.put('\x5a');
    }
  }
  auto server = ServerProcess::start(args, &error);
  ASSERT_NE(server, nullptr) << error;
  Answer after = complete(server->port(), prompt);
  expect_same(reference, after, "corrupted disk");
  EXPECT_GT(server->metric("kvmesh_kv_disk_checksum_failures_total"), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvmesh::testing
