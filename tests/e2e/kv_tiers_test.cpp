// The tiered KV cache through a real server: with a device tier of a few pages spilling to host and
// disk, results equal an ample device tier; returning conversations reuse their prefix from host or
// disk; a corrupted disk page is recomputed; --kv-disk-persist keeps prefixes across a restart.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "fixture_checks.h"
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
  // Pages are freed as the last token goes out; the gauge follows at the end of that step.
  EXPECT_TRUE(eventually([&] { return tiny->metric("kvmesh_kv_pages_used") == 0.0; }, 5000));
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
    if (turn > 0) {
      EXPECT_GE(a.cached, 64) << "turn " << turn;  // the earlier turns' full pages
    }
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

namespace kvmesh::testing {
namespace {

TEST(KvTiers, TwoByTwoWithSpillingTiersMatchesOneProcess) {
  std::string error;
  auto ample = ServerProcess::start({"--model", hf_model_dir()}, &error);
  ASSERT_NE(ample, nullptr) << error;
  std::vector<Answer> expected;
  for (int i = 0; i < 16; ++i) expected.push_back(complete(ample->port(), prompt_of(i % 3, 40 + 7 * i)));
  ample.reset();
  // Each rank holds half the heads of half the layers: a page is 4 KiB per rank.
  const std::string dir = temp_dir("grid");
  auto grid = ServerProcess::start_mpi(
      4, {"--model", hf_model_dir(), "--tp", "2", "--pp", "2", "--kv-device-mem", "40KiB", "--kv-host-mem",
          "16KiB", "--kv-disk-mem", "512KiB", "--kv-disk-dir", dir, "--max-batch-tokens", "256"},
      &error);
  ASSERT_NE(grid, nullptr) << error;
  for (int i = 0; i < 16; ++i)
    expect_same(expected[i], complete(grid->port(), prompt_of(i % 3, 40 + 7 * i)), "2x2 " + std::to_string(i));
  std::vector<std::future<Answer>> futures;
  for (int i = 0; i < 16; ++i)
    futures.push_back(std::async(std::launch::async, complete, grid->port(), prompt_of(i % 3, 40 + 7 * i), 12));
  for (int i = 0; i < 16; ++i) expect_same(expected[i], futures[i].get(), "2x2 concurrent " + std::to_string(i));
  const std::string m = grid->metrics();
  EXPECT_GT(metric_value(m, "kvmesh_kv_pages_moved_total{from=\"host\",to=\"disk\"}"), 0);
  EXPECT_GT(metric_value(m, "kvmesh_prefix_cache_hits_total"), 0);
  std::filesystem::remove_all(dir);
}

TEST(KvTiers, Int8PagesKeepGreedyTokensAndQuarterTheBytes) {
  std::string error;
  const auto golden = nlohmann::json::parse(std::ifstream(hf_model_dir() + "/golden.json"));
  auto f32 = ServerProcess::start({"--model", hf_model_dir()}, &error);
  ASSERT_NE(f32, nullptr) << error;
  auto i8 = ServerProcess::start({"--model", hf_model_dir(), "--kv-dtype", "i8"}, &error);
  ASSERT_NE(i8, nullptr) << error;
  for (const auto& c : golden["cases"]) {
    const auto prompt = c["prompt"].get<std::vector<int>>();
    const auto n_greedy = static_cast<int>(c["greedy"].size());
    Answer a = complete(i8->port(), prompt, n_greedy);
    expect_fixture_greedy(a.tokens, c, 1e-2);  // int8 K/V moves log-probs by up to ~1e-3 on this model
    Answer b = complete(f32->port(), prompt, n_greedy);
    for (size_t k = 0; k < std::min(a.logprobs.size(), b.logprobs.size()) && a.tokens[k] == b.tokens[k]; ++k)
      EXPECT_NEAR(a.logprobs[k], b.logprobs[k], 2e-3) << "step " << k;
  }
  // Per page: int8 with one fp32 scale per token and head, against fp32. With head_dim 8 the scales
  // weigh (8 + 4) / 32 = 0.375; with GPT-2's head_dim 64 it is 68 / 256.
  const double ratio = i8->metric("kvmesh_kv_page_bytes") / f32->metric("kvmesh_kv_page_bytes");
  EXPECT_NEAR(ratio, 12.0 / 32.0, 0.01);

  const std::string dir = temp_dir("hd64");
  const std::string make = std::string(KVMESH_BIN_DIR) + "/tools/kvmesh-ckpt --out " + dir +
                           " --layers 2 --embd 128 --heads 2 --positions 128 --seed 3 2>/dev/null";
  ASSERT_EQ(std::system(make.c_str()), 0);
  auto wide_f32 = ServerProcess::start({"--model", dir}, &error);
  ASSERT_NE(wide_f32, nullptr) << error;
  auto wide_i8 = ServerProcess::start({"--model", dir, "--kv-dtype", "i8"}, &error);
  ASSERT_NE(wide_i8, nullptr) << error;
  EXPECT_NEAR(wide_i8->metric("kvmesh_kv_page_bytes") / wide_f32->metric("kvmesh_kv_page_bytes"), 68.0 / 256.0, 1e-3);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvmesh::testing
