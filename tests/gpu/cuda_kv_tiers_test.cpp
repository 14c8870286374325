// KV pages across tiers on the GPU: with a device pool of a few pages and a host tier in pinned
// memory, preempted sequences and reused prefixes go to the host and come back (page moves on the
// copy stream), on to disk when the host tier is small too, and every request gives the tokens and
// log-probs of a pool large enough for all.
// Batches differ between the two runs, so cuBLAS may round differently: log-probs agree within
// 2e-3 and tokens until the first step whose top-2 margin is under 1e-2. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "engine_fixture.h"
#include "temp_dir.h"
#include "worker/cuda/cuda_backend.h"

namespace kvmesh::testing {
namespace {

constexpr double kLogprobTolerance = 2e-3;
constexpr double kClearMargin = 1e-2;
constexpr int64_t kBf16PageBytes = 16 * 4 * 2 * 32 * 2;  // 16 tokens x 4 layers x K,V x 32 x bf16

std::vector<int32_t> golden_prompt(int index) {
  static const nlohmann::json golden = load_json_file(hf_fixture_dir() + "/golden.json");
  return golden["cases"][index]["prompt"].get<std::vector<int32_t>>();
}

// Three sequences that grow past their first pages, and a longer probe with log-probs.
std::vector<GenerationRequest> growing_requests() {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 3; ++i) {
    const auto p = golden_prompt(3);
    GenerationRequest r = greedy_request(std::vector<int32_t>(p.begin() + i, p.begin() + i + 10), 30);
    r.sampling.n_logprobs = 2;
    reqs.push_back(r);
  }
  GenerationRequest probe = greedy_request(golden_prompt(2), 24);
  probe.sampling.n_logprobs = 2;
  reqs.push_back(probe);
  return reqs;
}

EngineOptions cuda_options(int64_t device_bytes, int64_t host_bytes) {
  EngineOptions o;
  o.device = DeviceKind::cuda;
  o.kv_dtype = DType::bf16;
  o.device_bytes = device_bytes;
  o.host_bytes = host_bytes;
  return o;
}

void expect_same_tokens(const GenerationOutput& got, const GenerationOutput& want, const std::string& what) {
  ASSERT_TRUE(want.error.empty()) << what << ": " << want.error;
  ASSERT_TRUE(got.error.empty()) << what << ": " << got.error;
  ASSERT_EQ(got.token_ids.size(), want.token_ids.size()) << what;
  for (size_t i = 0; i < want.token_ids.size(); ++i) {
    EXPECT_NEAR(got.logprobs[i].chosen.logprob, want.logprobs[i].chosen.logprob, kLogprobTolerance)
        << what << " step " << i;
    EXPECT_EQ(got.token_ids[i], want.token_ids[i]) << what << " step " << i;
    const auto& top = want.logprobs[i].top;
    const double margin = top.size() >= 2 ? top[0].logprob - top[1].logprob : 1.0;
    if (margin < kClearMargin || got.token_ids[i] != want.token_ids[i]) break;  // may part from here
  }
}

// Runs growing_requests() on a device pool of six pages beside the lower tiers `tiers` and
// compares every request with a pool large enough for all; returns the tight engine's counters.
// Six device pages: the probe holds three while the others grow, so sequences are preempted;
// their full pages stay cached and move down the tiers as the device needs the room.
void expect_tiers_give_the_same_tokens(EngineOptions tiers, Tier lowest) {
  const auto reqs = growing_requests();
  auto roomy = make_engine(hf_fixture_dir(), cuda_options(64ll << 20, 0));
  ASSERT_NE(roomy, nullptr);
  const auto want = run_all(*roomy, reqs);

  tiers.device_bytes = 6 * kBf16PageBytes;
  auto tight = make_engine(hf_fixture_dir(), tiers);
  ASSERT_NE(tight, nullptr);
  const auto got = run_all(*tight, reqs);
  ASSERT_EQ(got.size(), want.size());
  for (size_t r = 0; r < want.size(); ++r) expect_same_tokens(got[r], want[r], "request " + std::to_string(r));

  // The probe again, after another prompt has pushed its cached pages off the device: its prompt
  // comes back from a lower tier.
  std::vector<int32_t> filler;
  for (int32_t i = 0; i < 80; ++i) filler.push_back((i * 7919 + 11) % 50000);
  ASSERT_TRUE(generate_blocking(*tight, greedy_request(filler, 1)).is_ok());
  const auto again = run_all(*tight, {reqs.back()});
  expect_same_tokens(again[0], want.back(), "probe again");

  const auto& c = tight->scheduler().blocks().counters();
  const int low = static_cast<int>(lowest);
  std::printf("preemptions %lld; pages to host %lld, to disk %lld, back to the device %lld; reused from "
              "host %lld, from disk %lld\n",
              static_cast<long long>(tight->scheduler().stats().n_preemptions),
              static_cast<long long>(c.moved_out[1]), static_cast<long long>(c.moved_out[2]),
              static_cast<long long>(c.moved_in[0]), static_cast<long long>(c.hits[1]),
              static_cast<long long>(c.hits[2]));
  const TierCosts& costs = tight->scheduler().tier_policy().costs();
  std::printf("measured per page: to host %.1f us, back to the device %.1f us (copy stream, device time)\n",
              1e6 * costs.seconds_per_page[static_cast<int>(CacheOpKind::swap_out)],
              1e6 * costs.seconds_per_page[static_cast<int>(CacheOpKind::swap_in)]);
  EXPECT_GT(costs.seconds_per_page[static_cast<int>(CacheOpKind::swap_in)], 0.0);
  EXPECT_GT(tight->scheduler().stats().n_preemptions, 0);
  EXPECT_GT(c.moved_out[low], 0);
  EXPECT_GT(c.moved_in[0], 0);
  EXPECT_GT(c.hits[low], 0);
  EXPECT_EQ(c.failed_moves, 0);
  EXPECT_EQ(tight->scheduler().blocks().n_used(), 0);
}

TEST(CudaKvTiers, PagesThroughTheHostTierGiveTheSameTokens) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU usable (" << cuda_no_device_reason() << "): the GPU KV tiers need one";
  expect_tiers_give_the_same_tokens(cuda_options(0, 16ll << 20), Tier::host);
}

// A host tier of two slots spills on to disk: pages written to disk come from host slots that a
// copy from the device has just filled, and pages read back go through them to the device.
TEST(CudaKvTiers, PagesThroughHostAndDiskGiveTheSameTokens) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU usable (" << cuda_no_device_reason() << "): the GPU KV tiers need one";
  TempDir dir("kvmesh-cuda-disk");
  EngineOptions tiers = cuda_options(0, 2 * kBf16PageBytes);
  tiers.disk_bytes = 16ll << 20;
  tiers.disk_dir = dir.path();
  expect_tiers_give_the_same_tokens(tiers, Tier::disk);
}

// --gpu-memory-utilization: the device pool is the asked share of the memory the device still has
// free once the weights are placed, whatever the byte budget says.
TEST(CudaKvTiers, DevicePoolTakesTheAskedShareOfFreeMemory) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU usable (" << cuda_no_device_reason() << "): the GPU KV pool needs one";
  size_t free_before = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_before, &total), cudaSuccess);
  std::map<double, int32_t> pages;
  for (double fraction : {0.01, 0.02}) {
    EngineOptions o = cuda_options(64ll << 20, 0);
    o.device_fraction = fraction;
    std::string error;
    auto engine = make_engine(hf_fixture_dir(), o, &error);
    ASSERT_NE(engine, nullptr) << error;
    pages[fraction] = engine->capacity().device_pages;
    const double most = fraction * static_cast<double>(free_before) / kBf16PageBytes;
    EXPECT_LE(pages[fraction], most) << fraction;
    EXPECT_GE(pages[fraction], 0.9 * most) << fraction << ": the weights and scratch take far less than a tenth";
    auto outputs = run_all(*engine, growing_requests());
    for (const GenerationOutput& out : outputs) EXPECT_TRUE(out.error.empty()) << out.error;
  }
  EXPECT_NE(pages[0.01], (64 << 20) / kBf16PageBytes) << "not the byte budget";
  EXPECT_NEAR(pages[0.02], 2.0 * pages[0.01], 0.02 * pages[0.01]);
}

}  // namespace
}  // namespace kvmesh::testing
