// StepPlan / StepResult serialization: round trips, and malformed bytes rejected without UB.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/protocol.h"

namespace kvmesh {
namespace {

StepPlan sample_plan() {
  StepPlan plan;
  plan.step_id = 42;
  plan.cache_ops.push_back({CacheOpKind::swap_in, 3, 7, 0xabcdef, 16});
  for (int i = 0; i < 3; ++i) {
    SeqWork s;
    s.seq_id = 100 + i;
    s.n_past = 5 * i;
    s.token_ids = {1, 2, 3 + i};
    s.block_table = {i, i + 1};
    s.sample = i != 1;
    s.prompt_logprobs = i == 2 ? 5 : -1;
    s.next_prompt_token = 9;
    s.sampling.temperature = 0.5f;
    s.sampling.seed = 77 + i;
    s.sampling.n_logprobs = 3;
    s.history_ids = {4, 5};
    s.n_history_prompt = 1;
    s.banned_token_ids = {50256};
    if (i == 0) s.sampling.logit_bias = {{11, 2.5f}, {50256, -100.0f}};
    plan.seqs.push_back(s);
  }
  return plan;
}

TEST(Protocol, PlanRoundTrip) {
  const StepPlan plan = sample_plan();
  auto decoded = decode_step_plan(encode_step_plan(plan));
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  ASSERT_EQ(decoded->seqs.size(), 3u);
  EXPECT_EQ(decoded->step_id, 42u);
  ASSERT_EQ(decoded->cache_ops.size(), 1u);
  EXPECT_EQ(decoded->cache_ops[0].kind, CacheOpKind::swap_in);
  EXPECT_EQ(decoded->cache_ops[0].page_hash, 0xabcdefu);
  for (int i = 0; i < 3; ++i) {
    const SeqWork& a = plan.seqs[i];
    const SeqWork& b = decoded->seqs[i];
    EXPECT_EQ(a.seq_id, b.seq_id);
    EXPECT_EQ(a.n_past, b.n_past);
    EXPECT_EQ(a.token_ids, b.token_ids);
    EXPECT_EQ(a.block_table, b.block_table);
    EXPECT_EQ(a.sample, b.sample);
    EXPECT_EQ(a.prompt_logprobs, b.prompt_logprobs);
    EXPECT_EQ(a.sampling.seed, b.sampling.seed);
    EXPECT_EQ(a.sampling.temperature, b.sampling.temperature);
    EXPECT_EQ(a.history_ids, b.history_ids);
    EXPECT_EQ(a.banned_token_ids, b.banned_token_ids);
    ASSERT_EQ(a.sampling.logit_bias.size(), b.sampling.logit_bias.size());
    for (size_t j = 0; j < a.sampling.logit_bias.size(); ++j) {
      EXPECT_EQ(a.sampling.logit_bias[j].token, b.sampling.logit_bias[j].token);
      EXPECT_EQ(a.sampling.logit_bias[j].bias, b.sampling.logit_bias[j].bias);
    }
  }
}

TEST(Protocol, ResultRoundTrip) {
  StepResult r;
  r.step_id = 9;
  SeqResult s;
  s.seq_id = 5;
  s.token = 11;
  s.token_logprobs.chosen = {11, -0.5f};
  s.token_logprobs.top = {{11, -0.5f}, {12, -1.5f}};
  s.prompt_logprobs.resize(2);
  s.prompt_logprobs[1].chosen = {3, -2.0f};
  r.seqs.push_back(s);
  r.failed_cache_ops = {4};
  r.timings.cache_op_seconds[2] = 0.25f;
  auto d = decode_step_result(encode_step_result(r));
  ASSERT_TRUE(d.is_ok());
  ASSERT_EQ(d->seqs.size(), 1u);
  EXPECT_EQ(d->seqs[0].token, 11);
  EXPECT_EQ(d->seqs[0].token_logprobs.top.size(), 2u);
  EXPECT_EQ(d->seqs[0].prompt_logprobs[1].chosen.token, 3);
  EXPECT_EQ(d->failed_cache_ops, std::vector<int32_t>{4});
  EXPECT_FLOAT_EQ(d->timings.cache_op_seconds[2], 0.25f);
  EXPECT_EQ(d->error_code, StatusCode::ok);
  EXPECT_TRUE(d->error.empty());
}

// A step that failed on the sampling rank travels as its status; a bad code or a cut message is
// rejected.
TEST(Protocol, FailedStepResultCarriesItsStatus) {
  StepResult r;
  r.step_id = 4;
  r.error_code = StatusCode::io_error;
  r.error = "rank 1: the device failed";
  const std::string bytes = encode_step_result(r);
  auto d = decode_step_result(bytes);
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->step_id, 4u);
  EXPECT_EQ(d->error_code, StatusCode::io_error);
  EXPECT_EQ(d->error, "rank 1: the device failed");
  EXPECT_TRUE(d->seqs.empty());
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(decode_step_result(bytes.substr(0, n)).is_ok()) << "prefix of " << n << " bytes";
  std::string bad_code = bytes;
  const size_t code_at = bytes.size() - r.error.size() - 4 - 4;  // code, then the message's length
  bad_code[code_at] = 99;
  EXPECT_FALSE(decode_step_result(bad_code).is_ok());
}

TEST(Protocol, TruncatedAndCorruptMessagesAreRejected) {
  const std::string bytes = encode_step_plan(sample_plan());
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(decode_step_plan(bytes.substr(0, n)).is_ok()) << "prefix of " << n << " bytes";
  EXPECT_FALSE(decode_step_plan(bytes + "x").is_ok());
  std::string wrong_version = bytes;
  wrong_version[4] = 9;
  auto st = decode_step_plan(wrong_version);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.status().message().find("version"), std::string::npos);
  EXPECT_FALSE(decode_step_result(bytes).is_ok());  // a plan is not a result

  // Random corruption: any outcome but a crash is fine; lengths are never trusted.
  std::mt19937 rng(1);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string b = bytes;
    for (int k = 0; k < 3; ++k) b[rng() % b.size()] = static_cast<char>(rng());
    (void)decode_step_plan(b);
  }
  // A logit bias out of [-100, 100] (or NaN), or on a negative token, is a malformed plan.
  for (const TokenBias bad : {TokenBias{11, 1e9f}, TokenBias{11, NAN}, TokenBias{-1, 1.0f}}) {
    StepPlan plan = sample_plan();
    plan.seqs[1].sampling.logit_bias = {bad};
    EXPECT_FALSE(decode_step_plan(encode_step_plan(plan)).is_ok()) << bad.token << " " << bad.bias;
  }

  std::string huge = bytes.substr(0, 15);
  huge += std::string("\xff\xff\xff\xff", 4);  // absurd vector length
  EXPECT_FALSE(decode_step_plan(huge).is_ok());
}

}  // namespace
}  // namespace kvmesh
