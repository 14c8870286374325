// Fuzzes the step protocol decoders (decode_step_plan, decode_step_result) on arbitrary bytes.
// A message that decodes must satisfy the checks the decoder promises, re-encode to as many bytes
// as it came in, and decode again to a value that encodes to the same bytes.
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/protocol.h"
#include "fuzz_check.h"

namespace kvmesh {
namespace {

void check_plan(const StepPlan& plan) {
  for (const CacheOp& op : plan.cache_ops) FUZZ_CHECK(op.kind <= CacheOpKind::disk_load);
  for (const SeqWork& s : plan.seqs) {
    FUZZ_CHECK(s.prompt_logprobs >= -1 && s.prompt_logprobs <= kMaxLogprobs);
    FUZZ_CHECK(s.sampling.n_logprobs >= -1 && s.sampling.n_logprobs <= kMaxTopLogprobs);
    for (const TokenBias& b : s.sampling.logit_bias) {
      FUZZ_CHECK(b.token >= 0 && std::fabs(b.bias) <= kMaxLogitBias);
    }
  }
}

void plan_round_trip(std::string_view bytes) {
  auto plan = decode_step_plan(bytes);
  if (!plan.is_ok()) {
    FUZZ_CHECK(plan.status().code() == StatusCode::invalid_argument);
    return;
  }
  check_plan(plan.value());
  const std::string once = encode_step_plan(plan.value());
  FUZZ_CHECK(once.size() == bytes.size());
  auto again = decode_step_plan(once);
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK(encode_step_plan(again.value()) == once);
  FUZZ_CHECK(again.value().n_tokens() == plan.value().n_tokens());
  FUZZ_CHECK(!decode_step_plan(once.substr(0, once.size() - 1)).is_ok());
  FUZZ_CHECK(!decode_step_result(once).is_ok());
}

void result_round_trip(std::string_view bytes) {
  auto result = decode_step_result(bytes);
  if (!result.is_ok()) {
    FUZZ_CHECK(result.status().code() == StatusCode::invalid_argument);
    return;
  }
  for (const SeqResult& s : result.value().seqs) {
    FUZZ_CHECK(s.token_logprobs.top.size() <= static_cast<size_t>(kMaxTopLogprobs));
    for (const auto& p : s.prompt_logprobs) FUZZ_CHECK(p.top.size() <= static_cast<size_t>(kMaxTopLogprobs));
  }
  const std::string once = encode_step_result(result.value());
  FUZZ_CHECK(once.size() == bytes.size());
  auto again = decode_step_result(once);
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK(encode_step_result(again.value()) == once);
  FUZZ_CHECK(!decode_step_result(once + '\0').is_ok());
  FUZZ_CHECK(!decode_step_plan(once).is_ok());
}

}  // namespace
}  // namespace kvmesh

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  kvmesh::plan_round_trip(bytes);
  kvmesh::result_round_trip(bytes);
  return 0;
}
