// Admission rules and their messages (the context's in vLLM's words).
#include "coordinator/admission.h"

#include <cmath>

#include "common/protocol.h"

namespace kvmesh {
namespace {

Refusal refuse(std::string message, std::string param, StatusCode code = StatusCode::invalid_argument) {
  return Refusal{std::move(message), std::move(param), code};
}

// The field that sets a group's width.
const char* width_param(const GenerationRequest& r) { return r.best_of > r.n ? "best_of" : "n"; }

}  // namespace

Verdict Admission::prompt(const std::vector<int32_t>& ids) const {
  if (ids.empty()) return refuse("`prompt` must not be empty", "prompt");
  if (limits_.vocab_size <= 0) return std::nullopt;
  for (int32_t id : ids) {
    if (id < 0 || id >= limits_.vocab_size) {
      return refuse("Token id " + std::to_string(id) + " is out of vocabulary (valid ids are [0, " +
                        std::to_string(limits_.vocab_size) + "))",
                    "prompt");
    }
  }
  return std::nullopt;
}

Verdict Admission::context(int64_t n_prompt, std::optional<int64_t> max_tokens, const std::string& param) const {
  if (max_tokens && *max_tokens < 1) return refuse("max_tokens must be at least 1", "max_tokens");
  const int64_t n_positions = limits_.n_positions;
  const std::string limit = "This model's maximum context length is " + std::to_string(n_positions) + " tokens. ";
  if (max_tokens && n_prompt + *max_tokens > n_positions) {
    return refuse(limit + "However, you requested " + std::to_string(n_prompt + *max_tokens) + " tokens (" +
                      std::to_string(n_prompt) + " in the messages, " + std::to_string(*max_tokens) +
                      " in the completion). Please reduce the length of the messages or completion.",
                  param);
  }
  if (!max_tokens && n_prompt >= n_positions) {
    return refuse(limit + "However, your request has " + std::to_string(n_prompt) +
                      " input tokens. Please reduce the length of the input messages.",
                  param);
  }
  return std::nullopt;
}

Verdict Admission::group_shape(const GenerationRequest& r) const {
  if (r.n < 1) return refuse("n must be at least 1", "n");
  if (r.best_of < r.n) {
    return refuse("best_of must be greater than or equal to n, got best_of=" + std::to_string(r.best_of) +
                      " and n=" + std::to_string(r.n),
                  "best_of");
  }
  if (!r.beam_search) return std::nullopt;
  if (r.best_of > kMaxBeamWidth) {
    return refuse("the beam width (best_of) is at most " + std::to_string(kMaxBeamWidth) + ", got " +
                      std::to_string(r.best_of),
                  "best_of");
  }
  if (!r.stop.empty()) return refuse("stop strings are not supported with beam search; use stop_token_ids", "stop");
  const SamplingParams& s = r.sampling;
  for (const auto& [name, set] : {std::pair{"presence_penalty", s.presence_penalty != 0.0f},
                                  std::pair{"frequency_penalty", s.frequency_penalty != 0.0f},
                                  std::pair{"repetition_penalty", s.repetition_penalty != 1.0f}}) {
    if (set) return refuse(std::string("`") + name + "` is not supported with beam search", name);
  }
  if (!s.logit_bias.empty()) return refuse("`logit_bias` is not supported with beam search", "logit_bias");
  if (!std::isfinite(r.length_penalty)) return refuse("length_penalty must be a finite number", "length_penalty");
  return std::nullopt;
}

Verdict Admission::streaming(const GenerationRequest& r) const {
  if (r.beam_search) return refuse("Streaming is not supported with beam search (use_beam_search)", "stream");
  if (r.best_of > r.n) return refuse("best_of > n cannot be streamed; set best_of = n", "best_of");
  return std::nullopt;
}

Verdict Admission::step_width(const GenerationRequest& r) const {
  const int32_t width = r.group_size();
  const bool too_many_seqs = limits_.max_num_seqs > 0 && width > limits_.max_num_seqs;
  const bool too_many_tokens = limits_.max_batch_tokens > 0 && width > limits_.max_batch_tokens;
  if (!too_many_seqs && !too_many_tokens) return std::nullopt;
  return refuse("the request runs " + std::to_string(width) +
                    " sequences together, more than one step holds (--max-num-seqs " +
                    std::to_string(limits_.max_num_seqs) + ", --max-batch-tokens " +
                    std::to_string(limits_.max_batch_tokens) + ")",
                width_param(r));
}

Verdict Admission::pages(const GenerationRequest& r) const {
  if (limits_.n_pages <= 0) return std::nullopt;
  const int32_t pages = worst_case_pages(r, limits_.block_size);
  if (pages <= limits_.n_pages) return std::nullopt;
  const std::string width = r.group_size() > 1 ? " for " + std::to_string(r.group_size()) + " sequences" : "";
  return refuse("The request needs up to " + std::to_string(pages) + " KV pages" + width + " (" +
                    std::to_string(r.prompt_ids.size()) + " prompt tokens, max_tokens " +
                    std::to_string(r.max_tokens) + ") but the server's cache holds " +
                    std::to_string(limits_.n_pages) +
                    " pages. Please lower max_tokens, the prompt length or the number of sequences.",
                "max_tokens", StatusCode::resource_exhausted);
}

Verdict Admission::queue(int64_t n_sequences, bool several_prompts) const {
  if (limits_.max_queue <= 0 || n_sequences <= limits_.max_queue) return std::nullopt;
  return refuse("The request holds " + std::to_string(n_sequences) + " sequences (prompts times n or best_of) " +
                    "but the server queues at most " + std::to_string(limits_.max_queue) +
                    " (--max-queue). Please send fewer prompts or sequences per request.",
                several_prompts ? "prompt" : "n");
}

Verdict Admission::group(const GenerationRequest& r) const {
  if (auto v = prompt(r.prompt_ids)) return v;
  if (auto v = context(static_cast<int64_t>(r.prompt_ids.size()), r.max_tokens)) return v;
  if (auto v = group_shape(r)) return v;
  if (auto v = step_width(r)) return v;
  return pages(r);
}

int32_t Admission::worst_case_pages(const GenerationRequest& r, int32_t block_size) {
  const auto n_prompt = static_cast<int64_t>(r.prompt_ids.size());
  const auto pages_for = [block_size](int64_t n_tokens) {
    return static_cast<int32_t>((n_tokens + block_size - 1) / block_size);
  };
  const int32_t total = pages_for(n_prompt + r.max_tokens);
  const int32_t width = r.group_size();
  if (width <= 1) return total;
  const auto shared = static_cast<int32_t>((n_prompt - 1) / block_size);
  return shared + width * (total - shared);
}

}  // namespace kvmesh
