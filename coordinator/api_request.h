// Parsing and validating OpenAI-style request bodies (/v1/completions, /v1/chat/completions,
// /tokenize, /detokenize) into engine-ready values; every refusal is an ApiError naming its param.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/api_json.h"

namespace kvmesh {

class Tokenizer;

// POST /v1/completions. `prompt` may be a string, a list of strings, a list of token ids or a list
// of token-id lists; each becomes one prompt with `n` choices. max_tokens defaults to 16; null asks
// for as many as fit the context. Unknown fields are ignored.
ApiResult<CompletionRequest> parse_completion_request(std::string_view body, const ServedModel& served,
                                                      const Tokenizer& tokenizer);

// POST /v1/chat/completions. The messages are rendered with render_gpt2_chat into one prompt, and
// "\nuser:" is added to the stop strings so the model stops at the next turn. Without
// max_completion_tokens / max_tokens, the reply may fill the context.
ApiResult<CompletionRequest> parse_chat_request(std::string_view body, const ServedModel& served,
                                                const Tokenizer& tokenizer);

// Either of the two, by shape: a body with "messages" is a chat request (kvmesh-generate).
ApiResult<CompletionRequest> parse_any_request(std::string_view body, const ServedModel& served,
                                               const Tokenizer& tokenizer);

// The chat template for GPT-2 (which has none of its own): a plain transcript that base models
// continue well. Each message is written as "<role>: <content>\n" in order; then, when
// add_generation_prompt, "assistant:" (no trailing space: GPT-2 tokens carry their leading space,
// so the reply usually starts with " "). Example:
//   [{system, "Be brief."}, {user, "Hi"}]  ->  "system: Be brief.\nuser: Hi\nassistant:"
std::string render_gpt2_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true);
constexpr const char* kChatStop = "\nuser:";  // default stop string of chat requests

// POST /tokenize: {"prompt": "text"} or {"messages": [...]} (rendered with render_gpt2_chat,
// "add_generation_prompt" defaults to true) -> token ids.
ApiResult<std::vector<int32_t>> parse_tokenize_request(std::string_view body, const ServedModel& served,
                                                       const Tokenizer& tokenizer);
// POST /detokenize: {"tokens": [ids]} -> token ids, each checked against the vocabulary.
ApiResult<std::vector<int32_t>> parse_detokenize_request(std::string_view body, const ServedModel& served);

}  // namespace kvmesh
