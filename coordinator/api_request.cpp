// Request parsing for the OpenAI-style endpoints: JSON body -> CompletionRequest or token ids.
// Sampling fields are validated from tables (name, range, destination); the first problem found
// becomes the ApiError, naming its parameter. Nothing here throws.
#include "coordinator/api_request.h"

#include <ctime>
#include <span>

#include "common/tokenizer.h"
#include "coordinator/admission.h"
#include "coordinator/api_field_reader.h"
#include "coordinator/api_shaped_fields.h"

namespace kvmesh {
namespace {

constexpr int64_t kDefaultMaxTokens = 16;  // completions without max_tokens (chat: up to the context)

// ---- the tables --------------------------------------------------------------------------

struct NumberRule {
  const char* name;
  float SamplingParams::*field;
  double lo, hi;
  bool lo_open;  // (lo, hi] rather than [lo, hi]
};
constexpr NumberRule kNumberRules[] = {
    {"temperature", &SamplingParams::temperature, 0.0, 2.0, false},
    {"top_p", &SamplingParams::top_p, 0.0, 1.0, true},
    {"min_p", &SamplingParams::min_p, 0.0, 1.0, false},
    {"presence_penalty", &SamplingParams::presence_penalty, -2.0, 2.0, false},
    {"frequency_penalty", &SamplingParams::frequency_penalty, -2.0, 2.0, false},
    {"repetition_penalty", &SamplingParams::repetition_penalty, 0.0, 2.0, true},
};

struct IntRule {
  const char* name;
  int64_t lo, hi;
  void (*apply)(CompletionRequest& r, int64_t v);
};
const IntRule kCommonIntRules[] = {
    {"n", 1, kMaxChoices, [](CompletionRequest& r, int64_t v) { r.n = static_cast<int32_t>(v); }},
    {"best_of", 1, kMaxChoices, [](CompletionRequest& r, int64_t v) { r.params.best_of = static_cast<int32_t>(v); }},
    // -1 and 0 both mean "off"
    {"top_k", -1, kInt32Max,
     [](CompletionRequest& r, int64_t v) { r.params.sampling.top_k = v < 0 ? 0 : static_cast<int32_t>(v); }},
    {"min_tokens", 0, kInt32Max,
     [](CompletionRequest& r, int64_t v) { r.params.min_tokens = static_cast<int32_t>(v); }},
};
const IntRule kCompletionIntRules[] = {
    {"logprobs", 0, kMaxLogprobs, [](CompletionRequest& r, int64_t v) { r.logprobs = static_cast<int32_t>(v); }},
};

struct BoolRule {
  const char* name;
  void (*apply)(CompletionRequest& r, bool v);
};
const BoolRule kCommonBoolRules[] = {
    {"stream", [](CompletionRequest& r, bool v) { r.stream = v; }},
    {"ignore_eos", [](CompletionRequest& r, bool v) { r.params.ignore_eos = v; }},
    {"return_token_ids", [](CompletionRequest& r, bool v) { r.return_token_ids = v; }},
    {"use_beam_search", [](CompletionRequest& r, bool v) { r.params.beam_search = v; }},
};
const BoolRule kCompletionBoolRules[] = {
    {"echo", [](CompletionRequest& r, bool v) { r.echo = v; }},
};

struct StringRule {
  const char* name;
  bool non_empty;
  void (*apply)(CompletionRequest& r, std::string v);
};
const StringRule kCommonStringRules[] = {
    {"user", false, [](CompletionRequest& r, std::string v) { r.user = std::move(v); }},
    {"cache_salt", true, [](CompletionRequest& r, std::string v) { r.params.cache_salt = std::move(v); }},
};

void apply_rules(FieldReader& reader, std::span<const IntRule> ints, std::span<const BoolRule> bools,
                 CompletionRequest& r) {
  for (const IntRule& rule : ints) {
    if (auto v = reader.integer(rule.name, rule.lo, rule.hi)) rule.apply(r, *v);
  }
  for (const BoolRule& rule : bools) {
    if (auto v = reader.boolean(rule.name)) rule.apply(r, *v);
  }
}

// ---- fields with shapes of their own ------------------------------------------------------

std::optional<ApiError> check_model(const FieldReader& reader, const ServedModel& served) {
  const JsonIn* model = reader.find("model");
  if (!model) return std::nullopt;
  if (!model->is_string()) return bad_request("`model` must be a string, got " + shown(*model), "model");
  if (model->get_ref<const std::string&>() != served.name) return model_not_found(model->get<std::string>());
  return std::nullopt;
}

// Fields shared by completions and chat.
void read_common_fields(FieldReader& reader, const ServedModel& served, CompletionRequest& r) {
  for (const NumberRule& rule : kNumberRules) {
    if (auto v = reader.number(rule.name, rule.lo, rule.hi, rule.lo_open)) {
      r.params.sampling.*rule.field = static_cast<float>(*v);
    }
  }
  apply_rules(reader, kCommonIntRules, kCommonBoolRules, r);
  for (const StringRule& rule : kCommonStringRules) {
    if (auto v = reader.string(rule.name, rule.non_empty)) rule.apply(r, std::move(*v));
  }
  read_seed(reader, r.params.sampling);
  read_stop(reader, r.params.stop);
  read_stop_token_ids(reader, served, r.params.stop_token_ids);
  read_logit_bias(reader, served, r.params.sampling);
  read_stream_options(reader, r);
  if (auto v = reader.number("length_penalty", -1000.0, 1000.0, false)) r.params.length_penalty = static_cast<float>(*v);
  read_early_stopping(reader, r.params);
}

ApiError refusal_error(const Refusal& refusal) { return bad_request(refusal.message, refusal.param); }

// n, best_of and beam search against each other and the rest of the request (Admission's rules).
std::optional<ApiError> check_group(FieldReader& reader, const Admission& admission, CompletionRequest& r) {
  GenerationRequest& p = r.params;
  if (!reader.present("best_of")) p.best_of = r.n;
  p.n = r.n;
  // Chat's own stop string ends a turn; beam search ends on stop tokens only, so it goes.
  if (p.beam_search && r.kind == ApiKind::chat && p.stop == std::vector<std::string>{kChatStop}) p.stop.clear();
  if (auto refusal = admission.group_shape(p)) return refusal_error(*refusal);
  if (r.stream)
    if (auto refusal = admission.streaming(p)) return refusal_error(*refusal);
  return std::nullopt;
}

// ---- prompts, context, and the finished request ---------------------------------------------

constexpr const char* kPromptShape = "a string, a list of strings, a list of token ids or a list of token-id lists";

void add_prompt(FieldReader& reader, std::vector<int32_t> ids, CompletionRequest& r) {
  if (ids.empty()) return reader.fail("`prompt` must not be empty", "prompt");
  r.prompts.push_back(std::move(ids));
}

void read_prompts(FieldReader& reader, const ServedModel& served, const Tokenizer& tokenizer,
                  CompletionRequest& r) {
  const JsonIn* prompt = reader.find("prompt");
  if (!prompt) return reader.fail("`prompt` is required", "prompt");
  if (prompt->is_string()) return add_prompt(reader, tokenizer.encode_prompt(prompt->get<std::string>()), r);
  if (!prompt->is_array()) return reader.fail_expected("prompt", kPromptShape, *prompt);
  if (prompt->empty()) return reader.fail("`prompt` must not be empty", "prompt");
  if (prompt->front().is_number()) {
    std::vector<int32_t> ids;
    if (read_token_ids(reader, *prompt, served.vocab_size, "prompt", ids)) add_prompt(reader, std::move(ids), r);
    return;
  }
  const bool strings = prompt->front().is_string();
  for (const JsonIn& item : *prompt) {
    if (reader.failed()) return;
    if (strings && item.is_string()) {
      add_prompt(reader, tokenizer.encode_prompt(item.get<std::string>()), r);
    } else if (!strings && item.is_array()) {
      std::vector<int32_t> ids;
      if (read_token_ids(reader, item, served.vocab_size, "prompt", ids)) add_prompt(reader, std::move(ids), r);
    } else {
      return reader.fail_expected("prompt", kPromptShape, *prompt);
    }
  }
}

// Resolves max_tokens per prompt (null: what is left of the context) and refuses prompts that do
// not fit (Admission's rules).
std::optional<ApiError> fit_context(std::optional<int64_t> max_tokens, const Admission& admission,
                                    const std::string& param, CompletionRequest& r) {
  const int32_t n_positions = admission.limits().n_positions;
  for (const auto& prompt : r.prompts) {
    const auto n_prompt = static_cast<int64_t>(prompt.size());
    if (auto refusal = admission.prompt(prompt)) return refusal_error(Refusal{refusal->message, param});
    if (auto refusal = admission.context(n_prompt, max_tokens, param)) return refusal_error(*refusal);
    r.max_tokens.push_back(static_cast<int32_t>(max_tokens ? *max_tokens : n_positions - n_prompt));
    if (r.params.min_tokens > r.max_tokens.back()) {
      return bad_request("min_tokens must be less than or equal to max_tokens=" +
                             std::to_string(r.max_tokens.back()) + ", got " + std::to_string(r.params.min_tokens),
                         "min_tokens");
    }
  }
  return std::nullopt;
}

CompletionRequest new_request(ApiKind kind, const ServedModel& served) {
  CompletionRequest r;
  r.kind = kind;
  r.id = make_request_id(kind == ApiKind::chat ? "chatcmpl-" : "cmpl-");
  r.created = static_cast<int64_t>(std::time(nullptr));
  r.model = served.name;
  r.system_fingerprint = served.fingerprint;
  return r;
}

ApiResult<CompletionRequest> finish_request(FieldReader& reader, const ServedModel& served,
                                            std::optional<int64_t> max_tokens, const std::string& prompt_param,
                                            CompletionRequest r) {
  if (reader.failed()) return reader.error();
  AdmissionLimits limits;
  limits.n_positions = served.n_positions;
  limits.vocab_size = served.vocab_size;
  const Admission admission(limits);
  if (auto error = fit_context(max_tokens, admission, prompt_param, r)) return *error;
  if (auto error = check_group(reader, admission, r)) return *error;
  r.params.sampling.n_logprobs = r.logprobs;
  r.params.prompt_logprobs = r.echo && r.logprobs >= 0 ? r.logprobs : -1;
  return r;
}

ApiResult<CompletionRequest> completion_from_json(const JsonIn& body, const ServedModel& served,
                                                  const Tokenizer& tokenizer) {
  FieldReader reader(body);
  if (auto error = check_model(reader, served)) return *error;
  CompletionRequest r = new_request(ApiKind::completion, served);
  refuse_unsupported(reader, r.kind);
  read_prompts(reader, served, tokenizer, r);
  read_common_fields(reader, served, r);
  apply_rules(reader, kCompletionIntRules, kCompletionBoolRules, r);
  // Absent: 16, as OpenAI; null: whatever fits the context, as vLLM.
  auto max_tokens = reader.integer("max_tokens", 1, kInt32Max);
  if (!reader.present("max_tokens")) max_tokens = kDefaultMaxTokens;
  return finish_request(reader, served, max_tokens, "prompt", std::move(r));
}

}  // namespace

// ---- chat ----------------------------------------------------------------------------------

std::string render_gpt2_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string text;
  for (const ChatMessage& m : messages) text += m.role + ": " + m.content + "\n";
  if (add_generation_prompt) text += "assistant:";
  return text;
}

namespace {

// A message's content: a string, or a list of {"type": "text", "text": ...} parts joined by "\n".
// null is allowed for assistant messages (as OpenAI allows with tool calls) and reads as "".
std::optional<std::string> read_content(FieldReader& reader, const JsonIn& message, const std::string& role,
                                        const std::string& where) {
  auto it = message.find("content");
  if (it == message.end() || it->is_null()) {
    if (role == "assistant") return std::string();
    return reader.fail("`" + where + ".content` is required", "messages"), std::nullopt;
  }
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) return reader.fail("`" + where + ".content` must be a string or a list of text parts", "messages"), std::nullopt;
  std::string text;
  for (const JsonIn& part : *it) {
    const bool is_text = part.is_object() && part.value("type", JsonIn()) == "text" &&
                         part.contains("text") && part["text"].is_string();
    if (!is_text) {
      reader.fail("Only text content parts ({\"type\": \"text\", \"text\": ...}) are supported, got " +
                      shown(part) + " in " + where, "messages");
      return std::nullopt;
    }
    if (!text.empty()) text += "\n";
    text += part["text"].get<std::string>();
  }
  return text;
}

void read_messages(FieldReader& reader, std::vector<ChatMessage>& out) {
  const JsonIn* messages = reader.find("messages");
  if (!messages) return reader.fail("`messages` is required", "messages");
  if (!messages->is_array() || messages->empty()) {
    return reader.fail_expected("messages", "a non-empty list of messages", *messages);
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const JsonIn& m = (*messages)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return reader.fail("`" + where + "` must be an object, got " + shown(m), "messages");
    std::string role = m.contains("role") && m["role"].is_string() ? m["role"].get<std::string>() : "";
    if (role == "developer") role = "system";  // OpenAI's newer name for system
    if (role != "system" && role != "user" && role != "assistant") {
      return reader.fail("`" + where + ".role` must be one of system, user, assistant, got " +
                             shown(m.value("role", JsonIn())), "messages");
    }
    auto content = read_content(reader, m, role, where);
    if (!content) return;
    out.push_back({role, std::move(*content)});
  }
}

// logprobs (bool) and top_logprobs (0..20, only with logprobs=true).
void read_chat_logprobs(FieldReader& reader, CompletionRequest& r) {
  const bool logprobs = reader.boolean("logprobs").value_or(false);
  auto top = reader.integer("top_logprobs", 0, kMaxLogprobs);
  if (top && !logprobs) return reader.fail("when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs");
  r.logprobs = logprobs ? static_cast<int32_t>(top.value_or(0)) : -1;
}

ApiResult<CompletionRequest> chat_from_json(const JsonIn& body, const ServedModel& served,
                                            const Tokenizer& tokenizer) {
  FieldReader reader(body);
  if (auto error = check_model(reader, served)) return *error;
  CompletionRequest r = new_request(ApiKind::chat, served);
  refuse_unsupported(reader, r.kind);
  read_messages(reader, r.messages);
  read_common_fields(reader, served, r);
  read_chat_logprobs(reader, r);
  auto max_tokens = reader.integer("max_completion_tokens", 1, kInt32Max);
  if (!max_tokens) max_tokens = reader.integer("max_tokens", 1, kInt32Max);
  if (!reader.failed()) {
    r.prompts.push_back(tokenizer.encode_prompt(render_gpt2_chat(r.messages)));
    r.params.stop.push_back(kChatStop);
  }
  return finish_request(reader, served, max_tokens, "messages", std::move(r));
}

}  // namespace

ApiResult<CompletionRequest> parse_completion_request(std::string_view body, const ServedModel& served,
                                                      const Tokenizer& tokenizer) {
  auto json = parse_body(body);
  if (!json) return json.error();
  return completion_from_json(json.value(), served, tokenizer);
}

ApiResult<CompletionRequest> parse_chat_request(std::string_view body, const ServedModel& served,
                                                const Tokenizer& tokenizer) {
  auto json = parse_body(body);
  if (!json) return json.error();
  return chat_from_json(json.value(), served, tokenizer);
}

ApiResult<CompletionRequest> parse_any_request(std::string_view body, const ServedModel& served,
                                               const Tokenizer& tokenizer) {
  auto json = parse_body(body);
  if (!json) return json.error();
  if (json.value().contains("messages")) return chat_from_json(json.value(), served, tokenizer);
  return completion_from_json(json.value(), served, tokenizer);
}

// ---- /tokenize and /detokenize ---------------------------------------------------------------

ApiResult<std::vector<int32_t>> parse_tokenize_request(std::string_view body, const ServedModel& served,
                                                       const Tokenizer& tokenizer) {
  auto json = parse_body(body);
  if (!json) return json.error();
  FieldReader reader(json.value());
  if (auto error = check_model(reader, served)) return *error;
  if (reader.find("messages")) {
    std::vector<ChatMessage> messages;
    read_messages(reader, messages);
    const bool generation_prompt = reader.boolean("add_generation_prompt").value_or(true);
    if (reader.failed()) return reader.error();
    return tokenizer.encode_prompt(render_gpt2_chat(messages, generation_prompt));
  }
  const JsonIn* prompt = reader.find("prompt");
  if (!prompt) return bad_request("`prompt` or `messages` is required", "prompt");
  if (!prompt->is_string()) return bad_request("`prompt` must be a string, got " + shown(*prompt), "prompt");
  return tokenizer.encode_prompt(prompt->get<std::string>());
}

ApiResult<std::vector<int32_t>> parse_detokenize_request(std::string_view body, const ServedModel& served) {
  auto json = parse_body(body);
  if (!json) return json.error();
  FieldReader reader(json.value());
  if (auto error = check_model(reader, served)) return *error;
  const JsonIn* tokens = reader.find("tokens");
  if (!tokens) return bad_request("`tokens` is required", "tokens");
  if (!tokens->is_array()) return bad_request("`tokens` must be a list of token ids, got " + shown(*tokens), "tokens");
  std::vector<int32_t> ids;
  if (!read_token_ids(reader, *tokens, served.vocab_size, "tokens", ids)) return reader.error();
  return ids;
}

}  // namespace kvmesh
