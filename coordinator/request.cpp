// FinishReason names and GenerationOutput::append (accumulating streamed deltas into a whole output).
#include "coordinator/request.h"

#include "common/hashing.h"

namespace kvmesh {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::none: return "";
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::error: return "error";
  }
  return "";
}

uint64_t GenerationRequest::sample_seed(int32_t i) const {
  return i == 0 ? sampling.seed : splitmix64(sampling.seed + static_cast<uint64_t>(i));
}

void GenerationOutput::append(const GenerationDelta& delta) {
  text += delta.text;
  token_ids.insert(token_ids.end(), delta.token_ids.begin(), delta.token_ids.end());
  logprobs.insert(logprobs.end(), delta.logprobs.begin(), delta.logprobs.end());
  prompt_logprobs.insert(prompt_logprobs.end(), delta.prompt_logprobs.begin(),
                         delta.prompt_logprobs.end());
  // Every delta carries the counts; a delta that leaves them at 0 does not erase known values.
  if (delta.n_prompt_tokens > 0) n_prompt_tokens = delta.n_prompt_tokens;
  if (delta.n_cached_tokens > 0) n_cached_tokens = delta.n_cached_tokens;
  if (delta.finish != FinishReason::none && finish == FinishReason::none) {
    finish = delta.finish;
    error = delta.error;
    unavailable = delta.unavailable;
    stop_string = delta.stop_string;
    stop_token = delta.stop_token;
    score = delta.score;
  }
}

GenerationDelta GenerationOutput::take_as_delta(int32_t index) {
  GenerationDelta d;
  d.index = index;
  d.text = std::move(text);
  d.token_ids = std::move(token_ids);
  d.logprobs = std::move(logprobs);
  d.prompt_logprobs = std::move(prompt_logprobs);
  d.finish = finish;
  d.error = std::move(error);
  d.unavailable = unavailable;
  d.stop_string = std::move(stop_string);
  d.stop_token = stop_token;
  d.n_prompt_tokens = n_prompt_tokens;
  d.n_cached_tokens = n_cached_tokens;
  d.n_generated_tokens = static_cast<int32_t>(d.token_ids.size());
  d.score = score;
  return d;
}

}  // namespace kvmesh
