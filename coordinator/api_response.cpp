// Response bodies of the OpenAI-style endpoints: completion and chat choices, log-probs in both
// formats, usage, stop reasons, stream chunks, and the small bodies of /v1/models and (de)tokenize.
#include "coordinator/api_response.h"

#include <algorithm>
#include <cmath>

#include "common/tokenizer.h"

namespace kvmesh {
namespace {

// JSON has no -inf; vLLM writes impossible tokens as -9999.
double finite_logprob(float logprob) { return std::isfinite(logprob) ? logprob : -9999.0; }

Json finish_json(FinishReason finish) {
  return finish == FinishReason::none ? Json(nullptr) : Json(finish_reason_name(finish));
}

// Log-probs in the completions format, token by token:
// {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}.
class CompletionLogprobs {
 public:
  CompletionLogprobs(const Tokenizer& tokenizer, TextOffsets& offsets) : tokenizer_(tokenizer), offsets_(offsets) {}

  // `logprobs` null: the token has none (the first prompt token).
  void add(int32_t token, const PositionLogprobs* logprobs) {
    tokens_.push_back(token_display(tokenizer_, token));
    text_offset_.push_back(offsets_.add(tokenizer_.token_bytes(token)));
    if (!logprobs) {
      token_logprobs_.push_back(nullptr);
      top_logprobs_.push_back(nullptr);
      return;
    }
    token_logprobs_.push_back(finite_logprob(logprobs->chosen.logprob));
    Json top = Json::object();  // the top-N by rank, then the chosen token when not among them
    for (const TokenLogprob& t : logprobs->top) {
      std::string key = token_display(tokenizer_, t.token);
      if (!top.contains(key)) top[key] = finite_logprob(t.logprob);
    }
    std::string chosen = token_display(tokenizer_, logprobs->chosen.token);
    if (!top.contains(chosen)) top[chosen] = finite_logprob(logprobs->chosen.logprob);
    top_logprobs_.push_back(std::move(top));
  }
  // Prompt tokens: the first has no log-prob; token j >= 1 has prompt_logprobs[j - 1].
  void add_prompt(const std::vector<int32_t>& prompt, const std::vector<PositionLogprobs>& prompt_logprobs) {
    for (size_t j = 0; j < prompt.size(); ++j) {
      add(prompt[j], j >= 1 && j - 1 < prompt_logprobs.size() ? &prompt_logprobs[j - 1] : nullptr);
    }
  }
  void add_generated(const std::vector<int32_t>& tokens, const std::vector<PositionLogprobs>& logprobs) {
    for (size_t k = 0; k < tokens.size(); ++k) add(tokens[k], k < logprobs.size() ? &logprobs[k] : nullptr);
  }
  Json take() {
    return Json{{"tokens", std::move(tokens_)},
                {"token_logprobs", std::move(token_logprobs_)},
                {"top_logprobs", std::move(top_logprobs_)},
                {"text_offset", std::move(text_offset_)}};
  }

 private:
  const Tokenizer& tokenizer_;
  TextOffsets& offsets_;
  Json tokens_ = Json::array(), token_logprobs_ = Json::array(), top_logprobs_ = Json::array();
  Json text_offset_ = Json::array();
};

Json token_bytes_json(const std::string& bytes) {
  Json list = Json::array();
  for (unsigned char c : bytes) list.push_back(static_cast<int>(c));
  return list;
}

// Log-probs in the chat format: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}.
Json chat_logprobs(const Tokenizer& tokenizer, const std::vector<int32_t>& tokens,
                   const std::vector<PositionLogprobs>& logprobs) {
  Json content = Json::array();
  for (size_t k = 0; k < tokens.size() && k < logprobs.size(); ++k) {
    Json top = Json::array();
    for (const TokenLogprob& t : logprobs[k].top) {
      top.push_back({{"token", token_display(tokenizer, t.token)},
                     {"logprob", finite_logprob(t.logprob)},
                     {"bytes", token_bytes_json(tokenizer.token_bytes(t.token))}});
    }
    content.push_back({{"token", token_display(tokenizer, tokens[k])},
                       {"logprob", finite_logprob(logprobs[k].chosen.logprob)},
                       {"bytes", token_bytes_json(tokenizer.token_bytes(tokens[k]))},
                       {"top_logprobs", std::move(top)}});
  }
  return Json{{"content", std::move(content)}};
}

// Every choice present and finished cleanly; otherwise the error the whole response becomes.
std::optional<ApiError> check_outputs(const CompletionRequest& request, const std::vector<GenerationOutput>& outputs) {
  if (static_cast<int64_t>(outputs.size()) != request.n_choices()) {
    return server_error("internal error: " + std::to_string(outputs.size()) + " outputs for " +
                        std::to_string(request.n_choices()) + " choices");
  }
  for (const GenerationOutput& out : outputs) {
    if (out.finish == FinishReason::error && out.unavailable) return service_unavailable(out.error);
    if (out.finish == FinishReason::error) return server_error(out.error.empty() ? "generation failed" : out.error);
    if (out.finish == FinishReason::cancelled) return server_error("the request was cancelled");
    if (out.finish == FinishReason::none) return server_error("internal error: a choice did not finish");
  }
  return std::nullopt;
}

Json response_envelope(const CompletionRequest& request, const char* object, Json choices) {
  return Json{{"id", request.id},
              {"object", object},
              {"created", request.created},
              {"model", request.model},
              {"system_fingerprint", request.system_fingerprint.empty() ? Json(nullptr)
                                                                          : Json(request.system_fingerprint)},
              {"choices", std::move(choices)}};
}

const std::vector<int32_t>& prompt_of(const CompletionRequest& request, int32_t index) {
  return request.prompts[static_cast<size_t>(index / request.n)];
}

Json completion_choice(const CompletionRequest& request, int32_t index, const GenerationOutput& out,
                       const Tokenizer& tokenizer) {
  const auto& prompt = prompt_of(request, index);
  Json logprobs = nullptr;
  if (request.logprobs >= 0) {
    TextOffsets offsets;
    CompletionLogprobs builder(tokenizer, offsets);
    if (request.echo) builder.add_prompt(prompt, out.prompt_logprobs);
    builder.add_generated(out.token_ids, out.logprobs);
    logprobs = builder.take();
  }
  Json choice = {{"index", index},
                 {"text", request.echo ? tokenizer.decode(prompt) + out.text : out.text},
                 {"logprobs", std::move(logprobs)},
                 {"finish_reason", finish_json(out.finish)},
                 {"stop_reason", stop_reason(out)}};
  if (request.return_token_ids) {
    choice["prompt_token_ids"] = prompt;
    choice["token_ids"] = out.token_ids;
  }
  return choice;
}

Json chat_choice(const CompletionRequest& request, int32_t index, const GenerationOutput& out,
                 const Tokenizer& tokenizer) {
  Json choice = {{"index", index},
                 {"message", {{"role", "assistant"}, {"content", out.text}}},
                 {"logprobs", request.logprobs >= 0 ? chat_logprobs(tokenizer, out.token_ids, out.logprobs)
                                                    : Json(nullptr)},
                 {"finish_reason", finish_json(out.finish)},
                 {"stop_reason", stop_reason(out)}};
  if (request.return_token_ids) choice["token_ids"] = out.token_ids;
  return choice;
}

}  // namespace

int64_t TextOffsets::add(std::string_view token_bytes) {
  const int64_t at = offset_;
  pending_.append(token_bytes);
  const size_t complete = utf8_complete_prefix(pending_);
  for (size_t i = 0; i < complete; ++i) {
    if ((static_cast<unsigned char>(pending_[i]) & 0xc0) != 0x80) ++offset_;
  }
  pending_.erase(0, complete);
  return at;
}

Json stop_reason(const GenerationOutput& output) {
  if (output.finish != FinishReason::stop) return nullptr;
  if (!output.stop_string.empty()) return output.stop_string;
  if (output.stop_token >= 0) return output.stop_token;
  return nullptr;  // EOS
}

Json build_usage(const CompletionRequest& request, const std::vector<GenerationOutput>& outputs) {
  int64_t n_prompt = 0, n_completion = 0, n_cached = 0;
  for (size_t p = 0; p < request.prompts.size(); ++p) {
    n_prompt += static_cast<int64_t>(request.prompts[p].size());
    int32_t cached = 0;
    for (int32_t i = 0; i < request.n; ++i) {
      const size_t c = p * static_cast<size_t>(request.n) + static_cast<size_t>(i);
      if (c >= outputs.size()) break;
      n_completion += static_cast<int64_t>(outputs[c].token_ids.size());
      cached = std::max(cached, outputs[c].n_cached_tokens);
    }
    n_cached += cached;
  }
  return Json{{"prompt_tokens", n_prompt},
              {"completion_tokens", n_completion},
              {"total_tokens", n_prompt + n_completion},
              {"prompt_tokens_details", {{"cached_tokens", n_cached}}}};
}

ApiResult<Json> build_completion_response(const CompletionRequest& request,
                                          const std::vector<GenerationOutput>& outputs,
                                          const Tokenizer& tokenizer) {
  if (auto error = check_outputs(request, outputs)) return *error;
  Json choices = Json::array();
  for (int32_t c = 0; c < request.n_choices(); ++c) {
    choices.push_back(completion_choice(request, c, outputs[static_cast<size_t>(c)], tokenizer));
  }
  Json response = response_envelope(request, "text_completion", std::move(choices));
  response["usage"] = build_usage(request, outputs);
  return response;
}

ApiResult<Json> build_chat_response(const CompletionRequest& request,
                                    const std::vector<GenerationOutput>& outputs, const Tokenizer& tokenizer) {
  if (auto error = check_outputs(request, outputs)) return *error;
  Json choices = Json::array();
  for (int32_t c = 0; c < request.n_choices(); ++c) {
    choices.push_back(chat_choice(request, c, outputs[static_cast<size_t>(c)], tokenizer));
  }
  Json response = response_envelope(request, "chat.completion", std::move(choices));
  response["usage"] = build_usage(request, outputs);
  if (request.return_token_ids && !request.prompts.empty()) response["prompt_token_ids"] = request.prompts[0];
  return response;
}

ApiResult<Json> build_response(const CompletionRequest& request, const std::vector<GenerationOutput>& outputs,
                               const Tokenizer& tokenizer) {
  return request.kind == ApiKind::chat ? build_chat_response(request, outputs, tokenizer)
                                       : build_completion_response(request, outputs, tokenizer);
}

// ---- streams ---------------------------------------------------------------------------------

StreamBuilder::StreamBuilder(CompletionRequest request, const Tokenizer& tokenizer)
    : request_(std::move(request)), tokenizer_(tokenizer),
      choices_(static_cast<size_t>(std::max(request_.n_choices(), 0))) {}

Json StreamBuilder::envelope(Json choices) const {
  const char* object = request_.kind == ApiKind::chat ? "chat.completion.chunk" : "text_completion";
  return response_envelope(request_, object, std::move(choices));
}

Json StreamBuilder::chunk(int32_t index, const GenerationDelta& delta) {
  KVMESH_CHECK(index >= 0 && static_cast<size_t>(index) < choices_.size());
  Choice& state = choices_[static_cast<size_t>(index)];
  const bool first = !state.started;
  state.started = true;
  state.total.append(delta);
  if (delta.finish == FinishReason::error && delta.unavailable) return error_body(service_unavailable(delta.error));
  if (delta.finish == FinishReason::error) {
    return error_body(server_error(delta.error.empty() ? "generation failed" : delta.error));
  }
  Json choice = request_.kind == ApiKind::chat ? chat_choice(index, state, delta, first)
                                               : completion_choice(index, state, delta, first);
  Json out = envelope(Json::array({std::move(choice)}));
  if (request_.include_usage) out["usage"] = nullptr;  // as OpenAI's chunks before the usage chunk
  return out;
}

Json StreamBuilder::completion_choice(int32_t index, Choice& state, const GenerationDelta& delta, bool first) {
  const auto& prompt = prompt_of(request_, index);
  const bool echo_now = first && request_.echo;
  Json logprobs = nullptr;
  if (request_.logprobs >= 0) {
    CompletionLogprobs builder(tokenizer_, state.offsets);
    if (echo_now) builder.add_prompt(prompt, delta.prompt_logprobs);
    builder.add_generated(delta.token_ids, delta.logprobs);
    logprobs = builder.take();
  }
  const bool done = delta.finish != FinishReason::none;
  Json choice = {{"index", index},
                 {"text", echo_now ? tokenizer_.decode(prompt) + delta.text : delta.text},
                 {"logprobs", std::move(logprobs)},
                 {"finish_reason", finish_json(delta.finish)},
                 {"stop_reason", done ? stop_reason(state.total) : Json(nullptr)}};
  if (request_.return_token_ids) {
    if (first) choice["prompt_token_ids"] = prompt;
    choice["token_ids"] = delta.token_ids;
  }
  return choice;
}

Json StreamBuilder::chat_choice(int32_t index, Choice& state, const GenerationDelta& delta, bool first) {
  Json message = Json::object();
  if (first) message["role"] = "assistant";
  message["content"] = delta.text;
  const bool done = delta.finish != FinishReason::none;
  Json choice = {{"index", index},
                 {"delta", std::move(message)},
                 {"logprobs", request_.logprobs >= 0 ? chat_logprobs(tokenizer_, delta.token_ids, delta.logprobs)
                                                     : Json(nullptr)},
                 {"finish_reason", finish_json(delta.finish)},
                 {"stop_reason", done ? stop_reason(state.total) : Json(nullptr)}};
  if (request_.return_token_ids) {
    if (first && index == 0) choice["prompt_token_ids"] = request_.prompts[0];
    choice["token_ids"] = delta.token_ids;
  }
  return choice;
}

std::optional<Json> StreamBuilder::usage_chunk() const {
  if (!request_.include_usage) return std::nullopt;
  std::vector<GenerationOutput> totals;
  totals.reserve(choices_.size());
  for (const Choice& c : choices_) totals.push_back(c.total);
  Json chunk = envelope(Json::array());
  chunk["usage"] = build_usage(request_, totals);
  return chunk;
}

bool StreamBuilder::all_finished() const {
  return std::all_of(choices_.begin(), choices_.end(), [](const Choice& c) { return c.total.finished(); });
}

// ---- small bodies ------------------------------------------------------------------------------

Json build_models_response(const ServedModel& served) {
  Json model = {{"id", served.name},
                {"object", "model"},
                {"created", served.created},
                {"owned_by", "kvmesh"},
                {"root", served.name},
                {"parent", nullptr},
                {"max_model_len", served.n_positions}};
  return Json{{"object", "list"}, {"data", Json::array({std::move(model)})}};
}

Json build_tokenize_response(const std::vector<int32_t>& ids, const ServedModel& served) {
  return Json{{"tokens", ids}, {"count", ids.size()}, {"max_model_len", served.n_positions}};
}

Json build_detokenize_response(const std::vector<int32_t>& ids, const Tokenizer& tokenizer) {
  return Json{{"prompt", tokenizer.decode(ids)}};
}

}  // namespace kvmesh
