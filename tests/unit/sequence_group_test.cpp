// Sequence groups on the engine: beam search reproduces Hugging Face's beam4 results, beams and
// samples share the prompt's KV pages (copy-on-write), n seeded samples are distinct and
// reproducible, best_of keeps the most likely samples, and groups survive a tiny device tier.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "engine_fixture.h"
#include "temp_dir.h"

namespace kvmesh::testing {
namespace {

nlohmann::json golden() { return load_json_file(hf_fixture_dir() + "/golden.json"); }

GenerationRequest beam_request(const std::vector<int32_t>& prompt, int32_t width, int32_t max_tokens) {
  GenerationRequest r;
  r.prompt_ids = prompt;
  r.max_tokens = max_tokens;
  r.n = width;
  r.best_of = width;
  r.beam_search = true;
  r.length_penalty = 1.0f;
  r.early_stopping = EarlyStopping::when_full;
  r.ignore_eos = true;  // the fixture's run has no EOS
  return r;
}

GenerationRequest sample_request(const std::vector<int32_t>& prompt, int32_t n, uint64_t seed) {
  GenerationRequest r;
  r.prompt_ids = prompt;
  r.max_tokens = 12;
  r.n = n;
  r.best_of = n;
  r.sampling.temperature = 1.0f;
  r.sampling.seed = seed;
  r.ignore_eos = true;
  return r;
}

std::vector<int32_t> long_prompt(int32_t n) {
  std::vector<int32_t> p;
  for (int32_t i = 0; i < n; ++i) p.push_back((i * 7919 + 13) % 50000);
  return p;
}

void expect_fixture_beams(const std::vector<GenerationOutput>& got, const nlohmann::json& beam4, const std::string& what) {
  const auto sequences = beam4["sequences"].get<std::vector<std::vector<int32_t>>>();
  const auto scores = beam4["scores"].get<std::vector<double>>();
  ASSERT_EQ(got.size(), sequences.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < sequences.size(); ++i) {
    EXPECT_EQ(got[i].token_ids, sequences[i]) << what << " beam " << i;
    EXPECT_NEAR(got[i].score, scores[i], 1e-4) << what << " beam " << i;
    EXPECT_EQ(got[i].finish, FinishReason::length) << what;
    worst = std::max(worst, std::abs(got[i].score - scores[i]));
  }
  std::printf("%s: largest beam score difference %.2e\n", what.c_str(), worst);
}

TEST(BeamSearch, ReproducesHuggingFaceBeam4) {
  auto engine = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(engine, nullptr);
  const nlohmann::json g = golden();
  for (const auto& c : g["cases"]) {
    const auto prompt = c["prompt"].get<std::vector<int32_t>>();
    auto out = generate_group_blocking(*engine, beam_request(prompt, 4, 16));
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    expect_fixture_beams(*out, c["beam4"], "prompt of " + std::to_string(prompt.size()));
    EXPECT_EQ(engine->scheduler().blocks().n_used(), 0);
  }
}

// 20 device pages: beam groups wait for room, and a long greedy request that keeps growing beside
// them makes the scheduler preempt whole groups, whose cached pages spill down the tiers and come
// back (or are recomputed) on readmission.
void run_beams_beside_a_growing_request(const EngineOptions& o, Tier spill_tier) {
  auto engine = make_engine(hf_fixture_dir(), o);
  ASSERT_NE(engine, nullptr);
  ASSERT_EQ(engine->scheduler().blocks().n_pages(), 20);
  GenerationRequest greedy = greedy_request(long_prompt(60), 200);
  std::vector<GenerationRequest> reqs = {greedy};
  const auto cases = golden()["cases"];
  for (const auto& c : cases) {
    if (c["prompt"].size() > 33) continue;  // longer prompts need more than 20 pages for 4 beams
    reqs.push_back(beam_request(c["prompt"].get<std::vector<int32_t>>(), 4, 16));
  }
  auto out = run_groups(*engine, reqs);
  size_t k = 1;
  for (const auto& c : cases) {
    if (c["prompt"].size() > 33) continue;
    expect_fixture_beams(out[k++], c["beam4"], "prompt of " + std::to_string(c["prompt"].size()));
  }
  // A long prompt pushes every cached page off the device; the beams run again from pages that
  // come back from the lower tiers.
  ASSERT_TRUE(generate_blocking(*engine, greedy_request(long_prompt(300), 1)).is_ok());
  auto again = run_groups(*engine, std::vector<GenerationRequest>(reqs.begin() + 1, reqs.end()));
  k = 0;
  for (const auto& c : cases) {
    if (c["prompt"].size() > 33) continue;
    expect_fixture_beams(again[k++], c["beam4"], "again, prompt of " + std::to_string(c["prompt"].size()));
  }
  auto roomy = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(roomy, nullptr);
  auto solo = generate_blocking(*roomy, greedy);
  ASSERT_TRUE(solo.is_ok());
  EXPECT_EQ(out[0][0].token_ids, solo->token_ids);
  const BlockManager& blocks = engine->scheduler().blocks();
  const TierCounters& c = blocks.counters();
  std::printf("preemptions %lld; pages out to host %lld, to disk %lld; reused from device %lld, host %lld, disk %lld\n",
              static_cast<long long>(engine->scheduler().stats().n_preemptions),
              static_cast<long long>(c.moved_out[1]), static_cast<long long>(c.moved_out[2]),
              static_cast<long long>(c.hits[0]), static_cast<long long>(c.hits[1]),
              static_cast<long long>(c.hits[2]));
  EXPECT_GT(engine->scheduler().stats().n_preemptions, 0);
  EXPECT_GT(c.moved_out[static_cast<int>(spill_tier)], 0);
  EXPECT_GT(c.hits[static_cast<int>(spill_tier)], 0);  // and came back from there  // pages went down that far
  EXPECT_EQ(blocks.n_used(), 0);
}

constexpr int64_t kFixturePageBytes = 16 * 4 * 2 * 32 * 4;  // 16 tokens x 4 layers x K,V x 32 floats

TEST(BeamSearch, TinyDeviceTierWithPreemptionMatchesTheFixture) {
  EngineOptions o;
  o.device_bytes = 20 * kFixturePageBytes;
  o.host_bytes = 64ll << 20;
  run_beams_beside_a_growing_request(o, Tier::host);
}

TEST(BeamSearch, PagesThroughHostAndDiskMatchTheFixture) {
  TempDir dir("kvmesh-beam-disk");
  EngineOptions o;
  o.device_bytes = 20 * kFixturePageBytes;
  o.host_bytes = 4 * kFixturePageBytes;  // a tiny host tier spills on to disk
  o.disk_bytes = 64ll << 20;
  o.disk_dir = dir.path();
  run_beams_beside_a_growing_request(o, Tier::disk);
}

TEST(BeamSearch, FourBeamsHoldThePromptPagesOnce) {
  auto engine = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(engine, nullptr);
  const BlockManager& blocks = engine->scheduler().blocks();
  const int32_t idle = blocks.n_used();
  ASSERT_EQ(idle, 0);
  GenerationOutput first;
  std::vector<GenerationOutput> outs(4);
  auto id = engine->add_request(beam_request(long_prompt(300), 4, 16), [&](const GenerationDelta& d) {
    outs[static_cast<size_t>(d.index)].append(d);
  });
  ASSERT_TRUE(id.is_ok());
  // 300 tokens = 18 full pages + 1 partly filled; 316 tokens per beam at most = 20 pages.
  int32_t max_used = 0;
  int32_t max_shared_refs = 0;
  int32_t max_shared = 0;
  for (int guard = 0; engine->has_work() && guard < 1000; ++guard) {
    ASSERT_TRUE(engine->step().is_ok());
    max_used = std::max(max_used, blocks.n_used());
    max_shared_refs = std::max(max_shared_refs, blocks.ref_count(0));  // the prompt's first page
    max_shared = std::max(max_shared, blocks.n_shared());
  }
  std::printf("4 beams over 300 tokens: at most %d device pages in use, %d shared, %lld copies\n", max_used,
              max_shared, static_cast<long long>(blocks.counters().copies));
  EXPECT_EQ(max_shared_refs, 4);          // held by all four beams at once
  EXPECT_GE(max_shared, 18);              // every full prompt page is shared
  EXPECT_EQ(blocks.n_shared(), 0);
  EXPECT_LE(max_used, 18 + 4 * 2 + 1);    // the full prompt pages once, each beam's own pages
  EXPECT_GE(max_used, 18 + 4);
  EXPECT_GT(blocks.counters().copies, 0);  // beams copied the shared partly filled page
  EXPECT_EQ(blocks.n_used(), idle);        // back to idle
  for (const auto& o : outs) {
    EXPECT_EQ(o.token_ids.size(), 16u);
    EXPECT_EQ(o.finish, FinishReason::length);
  }
  for (size_t i = 1; i < outs.size(); ++i) EXPECT_GE(outs[i - 1].score, outs[i].score);
}

TEST(SamplingGroup, SeededSamplesDifferAndRepeatAloneOrInTraffic) {
  auto engine = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(engine, nullptr);
  const std::vector<int32_t> prompt = {464, 2068, 7586, 21831, 18045, 625, 262};
  auto alone = generate_group_blocking(*engine, sample_request(prompt, 4, 1234));
  ASSERT_TRUE(alone.is_ok());
  std::set<std::vector<int32_t>> distinct;
  for (const auto& o : *alone) {
    EXPECT_EQ(o.token_ids.size(), 12u);
    distinct.insert(o.token_ids);
  }
  EXPECT_EQ(distinct.size(), 4u);
  auto again = generate_group_blocking(*engine, sample_request(prompt, 4, 1234));
  ASSERT_TRUE(again.is_ok());
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ((*again)[i].token_ids, (*alone)[i].token_ids);
  // Among other traffic: other prompts, another seed, a beam search, all in the same steps.
  std::vector<GenerationRequest> traffic = {sample_request(long_prompt(40), 3, 7), sample_request(prompt, 4, 1234),
                                            beam_request(long_prompt(20), 3, 8), sample_request(prompt, 2, 99)};
  auto mixed = run_groups(*engine, traffic);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(mixed[1][i].token_ids, (*alone)[i].token_ids);
  EXPECT_EQ(engine->scheduler().blocks().n_used(), 0);
}

TEST(SamplingGroup, SamplesShareThePromptPages) {
  auto engine = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(engine, nullptr);
  const BlockManager& blocks = engine->scheduler().blocks();
  std::vector<GenerationOutput> outs(4);
  ASSERT_TRUE(engine->add_request(sample_request(long_prompt(300), 4, 5), [&](const GenerationDelta& d) {
                outs[static_cast<size_t>(d.index)].append(d);
              }).is_ok());
  int32_t max_used = 0;
  for (int guard = 0; engine->has_work() && guard < 1000; ++guard) {
    ASSERT_TRUE(engine->step().is_ok());
    max_used = std::max(max_used, blocks.n_used());
  }
  EXPECT_LE(max_used, 18 + 4 * 2 + 1);
  EXPECT_EQ(blocks.n_used(), 0);
  // Each sample equals the same seed run on its own (the prompt computed once changes nothing).
  GenerationRequest single = sample_request(long_prompt(300), 1, 5);
  auto solo = generate_blocking(*engine, single);
  ASSERT_TRUE(solo.is_ok());
  EXPECT_EQ(solo->token_ids, outs[0].token_ids);
}

TEST(SamplingGroup, BestOfReturnsTheMostLikelySamples) {
  auto engine = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(engine, nullptr);
  const std::vector<int32_t> prompt = {464, 2068, 7586};
  GenerationRequest all = sample_request(prompt, 4, 77);
  all.sampling.n_logprobs = 0;
  auto four = generate_group_blocking(*engine, all);
  ASSERT_TRUE(four.is_ok());
  std::vector<std::pair<double, std::vector<int32_t>>> ranked;
  for (const auto& o : *four) {
    double sum = 0;
    for (const auto& lp : o.logprobs) sum += lp.chosen.logprob;
    ranked.push_back({sum, o.token_ids});
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  GenerationRequest best = sample_request(prompt, 2, 77);
  best.best_of = 4;
  auto two = generate_group_blocking(*engine, best);
  ASSERT_TRUE(two.is_ok());
  ASSERT_EQ(two->size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ((*two)[i].token_ids, ranked[i].second) << i;
    EXPECT_NEAR((*two)[i].score, ranked[i].first, 1e-3) << i;
    EXPECT_TRUE((*two)[i].logprobs.empty());  // not asked for
  }
}

TEST(SequenceGroupEcho, EveryMemberGetsThePromptLogprobs) {
  auto engine = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(engine, nullptr);
  const nlohmann::json g = golden();
  const auto& c = g["cases"][1];
  const auto prompt = c["prompt"].get<std::vector<int32_t>>();
  const auto expected = c["prompt_logprob_of_next"].get<std::vector<double>>();
  GenerationRequest beams = beam_request(prompt, 3, 4);
  beams.prompt_logprobs = 1;
  beams.sampling.n_logprobs = 1;
  GenerationRequest samples = sample_request(prompt, 3, 8);
  samples.prompt_logprobs = 1;
  for (const GenerationRequest& r : {beams, samples}) {
    auto out = generate_group_blocking(*engine, r);
    ASSERT_TRUE(out.is_ok());
    for (const auto& o : *out) {
      ASSERT_EQ(o.prompt_logprobs.size(), expected.size());
      for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(o.prompt_logprobs[i].chosen.logprob, expected[i], 1e-4);
    }
  }
  // Beam log-probs are each chosen token's, with the asked-for top list.
  auto out = generate_group_blocking(*engine, beams);
  ASSERT_TRUE(out.is_ok());
  for (const auto& o : *out) {
    ASSERT_EQ(o.logprobs.size(), o.token_ids.size());
    double sum = 0;
    for (size_t i = 0; i < o.logprobs.size(); ++i) {
      EXPECT_EQ(o.logprobs[i].chosen.token, o.token_ids[i]);
      EXPECT_EQ(o.logprobs[i].top.size(), 1u);
      sum += o.logprobs[i].chosen.logprob;
    }
    EXPECT_NEAR(o.score, sum / 4.0, 1e-4);  // length_penalty 1: the mean log-prob
  }
}

TEST(SequenceGroupLimits, GroupsThatCannotFitAreRefused) {
  EngineOptions o;
  o.max_num_seqs = 4;
  auto engine = make_engine(hf_fixture_dir(), o);
  ASSERT_NE(engine, nullptr);
  GenerationRequest wide = beam_request({464}, 8, 4);
  EXPECT_EQ(engine->add_request(wide, nullptr).status().code(), StatusCode::invalid_argument);
  GenerationRequest bad = sample_request({464}, 3, 1);
  bad.best_of = 2;
  EXPECT_EQ(engine->add_request(bad, nullptr).status().code(), StatusCode::invalid_argument);
  GenerationRequest stops = beam_request({464}, 2, 4);
  stops.stop = {"x"};
  EXPECT_EQ(engine->add_request(stops, nullptr).status().code(), StatusCode::invalid_argument);
}

TEST(SequenceGroupCancel, CancellingABeamSearchFreesEveryPage) {
  auto engine = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(engine, nullptr);
  std::vector<GenerationOutput> outs(3);
  auto id = engine->add_request(beam_request(long_prompt(50), 3, 30), [&](const GenerationDelta& d) {
    outs[static_cast<size_t>(d.index)].append(d);
  });
  ASSERT_TRUE(id.is_ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(engine->step().is_ok());
  EXPECT_GT(engine->scheduler().blocks().n_used(), 0);
  engine->cancel(*id);
  ASSERT_TRUE(engine->step().is_ok());
  EXPECT_FALSE(engine->has_work());
  EXPECT_EQ(engine->scheduler().blocks().n_used(), 0);
  for (const auto& o : outs) EXPECT_EQ(o.finish, FinishReason::cancelled);
}

}  // namespace
}  // namespace kvmesh::testing
