// Building OpenAI-style response bodies: completions and chat completions (whole, or as SSE chunk
// payloads), usage, /v1/models, /tokenize and /detokenize. The caller serializes with dump_json and,
// for streams, frames each payload as "data: <payload>\n\n", ending with "data: [DONE]\n\n".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/api_json.h"

namespace kvmesh {

class Tokenizer;

// Character offsets of tokens in a text, as OpenAI's text_offset: code points (a byte that is not
// valid UTF-8 counts as one character; it is shown as U+FFFD). A token that ends inside a character
// moves the offset only once the character is complete.
class TextOffsets {
 public:
  // The offset at which `token_bytes` start; then counts them.
  int64_t add(std::string_view token_bytes);
  int64_t offset() const { return offset_; }

 private:
  int64_t offset_ = 0;
  std::string pending_;  // bytes of an incomplete character
};

// Whole responses; outputs[c] is choice c (prompt c / n, sample c % n). An output that ended in an
// error (or was cancelled, or never finished) makes the whole response a 500 error.
ApiResult<Json> build_completion_response(const CompletionRequest& request,
                                          const std::vector<GenerationOutput>& outputs,
                                          const Tokenizer& tokenizer);
ApiResult<Json> build_chat_response(const CompletionRequest& request,
                                    const std::vector<GenerationOutput>& outputs, const Tokenizer& tokenizer);
// build_completion_response or build_chat_response, by request.kind.
ApiResult<Json> build_response(const CompletionRequest& request, const std::vector<GenerationOutput>& outputs,
                               const Tokenizer& tokenizer);

// {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details": {"cached_tokens"}}.
// Each prompt counts once however many choices it has; cached tokens are the most any of its
// choices found in the prefix cache.
Json build_usage(const CompletionRequest& request, const std::vector<GenerationOutput>& outputs);

// Why a choice stopped, as vLLM's stop_reason: the stop string or stop token id that ended it, or
// null (end of text, length, or not known).
Json stop_reason(const GenerationOutput& output);  // the stop string or stop token id, else null

// SSE payloads of one streamed request, one chunk per GenerationDelta. Keeps per-choice state
// (echo and role sent, text offsets, totals for usage). `tokenizer` must outlive it.
class StreamBuilder {
 public:
  StreamBuilder(CompletionRequest request, const Tokenizer& tokenizer);

  // The payload for `delta` of choice `index`: a completion or chat chunk, or an error body when
  // the delta ends in an error (send it, then [DONE]).
  Json chunk(int32_t index, const GenerationDelta& delta);
  // After the last delta: {"id", ..., "choices": [], "usage": {...}} when
  // stream_options.include_usage was set, otherwise nothing.
  std::optional<Json> usage_chunk() const;
  bool all_finished() const;
  const CompletionRequest& request() const { return request_; }

 private:
  struct Choice {
    bool started = false;
    TextOffsets offsets;
    GenerationOutput total;
  };
  Json completion_choice(int32_t index, Choice& state, const GenerationDelta& delta, bool first);
  Json chat_choice(int32_t index, Choice& state, const GenerationDelta& delta, bool first);
  Json envelope(Json choices) const;

  CompletionRequest request_;
  const Tokenizer& tokenizer_;
  std::vector<Choice> choices_;
};

// GET /v1/models: {"object": "list", "data": [{"id", "object": "model", "created", "owned_by",
// "root", "parent", "max_model_len"}]}.
Json build_models_response(const ServedModel& served);
// POST /tokenize: {"tokens": [...], "count": N, "max_model_len": n_positions}.
Json build_tokenize_response(const std::vector<int32_t>& ids, const ServedModel& served);
// POST /detokenize: {"prompt": "text"}.
Json build_detokenize_response(const std::vector<int32_t>& ids, const Tokenizer& tokenizer);

}  // namespace kvmesh
