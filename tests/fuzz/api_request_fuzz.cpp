// Fuzzes request parsing (completions, chat, either, /tokenize, /detokenize by the first byte; the
// body after it). A refusal must be a 400 or 404 whose body serializes; an accepted request holds
// only what the engine can run (ids in the vocabulary, prompts that fit, fields in range).
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/tokenizer.h"
#include "coordinator/api_request.h"
#include "fuzz_check.h"
#include "shipped_tokenizer.h"

namespace kvmesh {
namespace {

const ServedModel kServed{"gpt2", 1024, 50257, 1700000000};

const Tokenizer& tokenizer() {
  static const auto tok = testing::gpt2_tokenizer();
  FUZZ_CHECK(tok != nullptr);
  return *tok;
}

bool ids_in_vocab(const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    if (id < 0 || id >= kServed.vocab_size) return false;
  }
  return true;
}

void check_error(const ApiError& e) {
  FUZZ_CHECK(e.http_status == 400 || e.http_status == 404);
  FUZZ_CHECK(!e.message.empty());
  FUZZ_CHECK(!dump_json(error_body(e)).empty());
}

void check_sampling(const SamplingParams& s) {
  FUZZ_CHECK(s.temperature >= 0.0f && s.temperature <= 2.0f);
  FUZZ_CHECK(s.top_p > 0.0f && s.top_p <= 1.0f);
  FUZZ_CHECK(s.min_p >= 0.0f && s.min_p <= 1.0f);
  FUZZ_CHECK(s.top_k >= 0);
  FUZZ_CHECK(s.repetition_penalty > 0.0f && s.repetition_penalty <= 2.0f);
  FUZZ_CHECK(std::fabs(s.presence_penalty) <= 2.0f && std::fabs(s.frequency_penalty) <= 2.0f);
  FUZZ_CHECK(s.n_logprobs >= -1 && s.n_logprobs <= kMaxLogprobs);
  for (const TokenBias& b : s.logit_bias) {
    FUZZ_CHECK(b.token >= 0 && b.token < kServed.vocab_size && std::fabs(b.bias) <= kMaxLogitBias);
  }
}

void check_request(const CompletionRequest& r) {
  FUZZ_CHECK(!r.prompts.empty() && r.max_tokens.size() == r.prompts.size());
  FUZZ_CHECK(r.n >= 1 && r.n <= kMaxChoices);
  const GenerationRequest& p = r.params;
  FUZZ_CHECK(p.n == r.n && p.best_of >= p.n && p.best_of <= kMaxChoices);
  FUZZ_CHECK(!p.beam_search || (!r.stream && p.best_of <= kMaxBeamWidth && p.stop.empty()));
  const size_t own_stops = r.kind == ApiKind::chat ? 1 : 0;  // chat's "\nuser:"
  FUZZ_CHECK(p.stop.size() <= kMaxStopStrings + own_stops);
  for (const std::string& stop : p.stop) FUZZ_CHECK(!stop.empty());
  FUZZ_CHECK(ids_in_vocab(p.stop_token_ids));
  FUZZ_CHECK(r.logprobs >= -1 && r.logprobs <= kMaxLogprobs);
  check_sampling(p.sampling);
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    const auto& prompt = r.prompts[i];
    FUZZ_CHECK(!prompt.empty() && ids_in_vocab(prompt));
    FUZZ_CHECK(r.max_tokens[i] >= 1 && p.min_tokens <= r.max_tokens[i]);
    FUZZ_CHECK(static_cast<int64_t>(prompt.size()) + r.max_tokens[i] <= kServed.n_positions);
    const GenerationRequest one = r.prompt_request(static_cast<int32_t>(i));
    FUZZ_CHECK(one.prompt_ids == prompt && one.max_tokens == r.max_tokens[i]);
  }
}

template <typename T>
bool check_refusal(const ApiResult<T>& result) {
  if (!result.is_ok()) check_error(result.error());
  return result.is_ok();
}

}  // namespace
}  // namespace kvmesh

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvmesh;
  if (size == 0) return 0;
  const Tokenizer& tok = tokenizer();
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 5) {
    case 0: {
      auto r = parse_completion_request(body, kServed, tok);
      if (check_refusal(r)) check_request(r.value());
      break;
    }
    case 1: {
      auto r = parse_chat_request(body, kServed, tok);
      if (check_refusal(r)) check_request(r.value());
      break;
    }
    case 2: {
      auto r = parse_any_request(body, kServed, tok);
      if (check_refusal(r)) check_request(r.value());
      break;
    }
    case 3: {
      auto ids = parse_tokenize_request(body, kServed, tok);
      if (check_refusal(ids)) FUZZ_CHECK(ids_in_vocab(ids.value()));
      break;
    }
    default: {
      auto ids = parse_detokenize_request(body, kServed);
      if (check_refusal(ids)) FUZZ_CHECK(ids_in_vocab(ids.value()));
      break;
    }
  }
  return 0;
}
