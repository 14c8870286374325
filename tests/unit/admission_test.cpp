// Admission: each rule refuses what breaks it with its one message and field, admits what fits,
// and skips the limits it is not given (0).
#include "coordinator/admission.h"

#include <gtest/gtest.h>

namespace kvmesh {
namespace {

AdmissionLimits engine_limits() {
  AdmissionLimits l;
  l.n_positions = 64;
  l.vocab_size = 100;
  l.max_num_seqs = 4;
  l.max_batch_tokens = 256;
  l.n_pages = 10;
  l.block_size = 16;
  l.max_queue = 8;
  return l;
}

GenerationRequest request(int32_t n_prompt, int32_t max_tokens, int32_t n = 1, int32_t best_of = 1) {
  GenerationRequest r;
  r.prompt_ids.assign(static_cast<size_t>(n_prompt), 7);
  r.max_tokens = max_tokens;
  r.n = n;
  r.best_of = best_of;
  return r;
}

void expect_refused(const Verdict& v, const std::string& param, const std::string& words) {
  ASSERT_TRUE(v.has_value()) << words;
  EXPECT_EQ(v->param, param);
  EXPECT_NE(v->message.find(words), std::string::npos) << v->message;
}

TEST(Admission, PromptAndContext) {
  const Admission a(engine_limits());
  expect_refused(a.prompt({}), "prompt", "must not be empty");
  expect_refused(a.prompt({1, 100}), "prompt", "Token id 100 is out of vocabulary (valid ids are [0, 100))");
  EXPECT_FALSE(a.prompt({0, 99}));
  EXPECT_EQ(a.context(60, 5, "messages")->message,
            "This model's maximum context length is 64 tokens. However, you requested 65 tokens (60 in the "
            "messages, 5 in the completion). Please reduce the length of the messages or completion.");
  EXPECT_EQ(a.context(60, 5, "messages")->param, "messages");
  expect_refused(a.context(64, std::nullopt), "prompt", "your request has 64 input tokens");
  expect_refused(a.context(3, 0), "max_tokens", "at least 1");
  EXPECT_FALSE(a.context(60, 4));
  EXPECT_FALSE(a.context(63, std::nullopt));
}

TEST(Admission, GroupShapeAndStreaming) {
  const Admission a(engine_limits());
  expect_refused(a.group_shape(request(4, 4, 0, 0)), "n", "n must be at least 1");
  expect_refused(a.group_shape(request(4, 4, 3, 2)), "best_of", "best_of=2 and n=3");
  EXPECT_FALSE(a.group_shape(request(4, 4, 2, 3)));
  GenerationRequest beams = request(4, 4, 2, 17);
  beams.beam_search = true;
  expect_refused(a.group_shape(beams), "best_of", "at most 16");
  beams.best_of = 4;
  EXPECT_FALSE(a.group_shape(beams));
  expect_refused(a.streaming(beams), "stream", "beam search");
  beams.stop = {"x"};
  expect_refused(a.group_shape(beams), "stop", "use stop_token_ids");
  beams.stop.clear();
  beams.sampling.repetition_penalty = 1.2f;
  expect_refused(a.group_shape(beams), "repetition_penalty", "not supported with beam search");
  beams.sampling.repetition_penalty = 1.0f;
  beams.sampling.logit_bias = {{5, 1.0f}};
  expect_refused(a.group_shape(beams), "logit_bias", "not supported with beam search");
  expect_refused(a.streaming(request(4, 4, 2, 3)), "best_of", "cannot be streamed");
  EXPECT_FALSE(a.streaming(request(4, 4, 3, 3)));
}

TEST(Admission, StepWidthPagesAndQueue) {
  const Admission a(engine_limits());
  expect_refused(a.step_width(request(4, 4, 5, 5)), "n", "runs 5 sequences together");
  expect_refused(a.step_width(request(4, 4, 2, 5)), "best_of", "--max-num-seqs 4");
  EXPECT_FALSE(a.step_width(request(4, 4, 4, 4)));
  // 20 prompt tokens + 44: 4 pages alone; 4 sequences share the one full prompt page: 1 + 4 * 3.
  EXPECT_EQ(Admission::worst_case_pages(request(20, 44), 16), 4);
  EXPECT_EQ(Admission::worst_case_pages(request(20, 44, 4, 4), 16), 13);
  const Verdict pages = a.pages(request(20, 44, 4, 4));
  expect_refused(pages, "max_tokens", "needs up to 13 KV pages for 4 sequences");
  EXPECT_EQ(pages->code, StatusCode::resource_exhausted);
  EXPECT_FALSE(a.pages(request(20, 44, 2, 2)));  // 1 + 2 * 3
  expect_refused(a.queue(9, true), "prompt", "queues at most 8 (--max-queue)");
  expect_refused(a.queue(9, false), "n", "holds 9 sequences");
  EXPECT_FALSE(a.queue(8, true));
  EXPECT_EQ(a.group(request(20, 44, 4, 4))->param, "max_tokens");  // every rule, in order
  EXPECT_EQ(a.group(request(0, 4))->param, "prompt");
}

TEST(Admission, LimitsNotGivenAreNotChecked) {
  AdmissionLimits model_only;
  model_only.n_positions = 64;
  const Admission a(model_only);
  EXPECT_FALSE(a.prompt({1000000}));
  EXPECT_FALSE(a.step_width(request(4, 4, 16, 16)));
  EXPECT_FALSE(a.pages(request(20, 44, 16, 16)));
  EXPECT_FALSE(a.queue(1000, true));
}

}  // namespace
}  // namespace kvmesh
