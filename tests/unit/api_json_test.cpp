// Tests of the OpenAI-style API JSON requests: validation (each rule: status, param, message),
// prompt shapes, defaults, chat template, (de)tokenize, models and error bodies.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "api_json_fixture.h"

namespace kvmesh {
namespace {

// ---- requests: defaults and prompt shapes -----------------------------------------------------

TEST_F(ApiJsonTest, DefaultsOfAMinimalRequest) {
  CompletionRequest r = parse_ok(R"({"prompt": "Hello world"})");
  EXPECT_EQ(r.kind, ApiKind::completion);
  EXPECT_EQ(r.id.rfind("cmpl-", 0), 0u);
  EXPECT_EQ(r.id.size(), 5u + 32u);
  EXPECT_GT(r.created, 0);
  EXPECT_EQ(r.model, "gpt2");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0], tok().encode("Hello world"));
  EXPECT_EQ(r.max_tokens, std::vector<int32_t>{16});
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.stream || r.include_usage || r.echo || r.return_token_ids);
  EXPECT_EQ(r.logprobs, -1);
  const GenerationRequest& p = r.params;
  EXPECT_EQ(p.sampling.temperature, 1.0f);
  EXPECT_EQ(p.sampling.top_p, 1.0f);
  EXPECT_EQ(p.sampling.top_k, 0);
  EXPECT_EQ(p.sampling.min_p, 0.0f);
  EXPECT_EQ(p.sampling.presence_penalty, 0.0f);
  EXPECT_EQ(p.sampling.frequency_penalty, 0.0f);
  EXPECT_EQ(p.sampling.repetition_penalty, 1.0f);
  EXPECT_EQ(p.sampling.n_logprobs, -1);
  EXPECT_EQ(p.prompt_logprobs, -1);
  EXPECT_EQ(p.min_tokens, 0);
  EXPECT_TRUE(p.stop.empty());
  EXPECT_TRUE(p.stop_token_ids.empty());
  EXPECT_FALSE(p.ignore_eos);
  // No seed given: a random one per request.
  EXPECT_NE(parse_ok(R"({"prompt": "x"})").params.sampling.seed, parse_ok(R"({"prompt": "x"})").params.sampling.seed);
  EXPECT_NE(parse_ok(R"({"prompt": "x"})").id, parse_ok(R"({"prompt": "x"})").id);
}

TEST_F(ApiJsonTest, PromptShapes) {
  const auto hello = tok().encode("Hello");
  const auto bye = tok().encode(" bye");
  EXPECT_EQ(parse_ok(R"({"prompt": "Hello"})").prompts, (std::vector<std::vector<int32_t>>{hello}));
  EXPECT_EQ(parse_ok(R"({"prompt": ["Hello", " bye"]})").prompts, (std::vector<std::vector<int32_t>>{hello, bye}));
  EXPECT_EQ(parse_ok(R"({"prompt": [15496, 995]})").prompts, (std::vector<std::vector<int32_t>>{{15496, 995}}));
  EXPECT_EQ(parse_ok(R"({"prompt": [[1, 2], [3], [50256]]})").prompts,
            (std::vector<std::vector<int32_t>>{{1, 2}, {3}, {50256}}));
  EXPECT_EQ(parse_ok(R"({"prompt": [0]})").prompts[0], std::vector<int32_t>{0});
}

TEST_F(ApiJsonTest, BadPromptsNameThePromptParam) {
  const char* bodies[] = {
      R"({})", R"({"prompt": null})", R"({"prompt": ""})", R"({"prompt": []})", R"({"prompt": [""]})",
      R"({"prompt": ["a", ""]})", R"({"prompt": [[]]})", R"({"prompt": [[1], []]})", R"({"prompt": 5})",
      R"({"prompt": {"text": "a"}})", R"({"prompt": [1, "a"]})", R"({"prompt": ["a", 1]})",
      R"({"prompt": [["a"]]})", R"({"prompt": [true]})", R"({"prompt": [1.5]})", R"({"prompt": [50257]})",
      R"({"prompt": [-1]})", R"({"prompt": [[1, 99999]]})", R"({"prompt": [[1], "a"]})",
  };
  for (const char* body : bodies) {
    ApiError e = parse_fails(body);
    EXPECT_EQ(e.http_status, 400) << body;
    EXPECT_EQ(e.type, "invalid_request_error") << body;
    EXPECT_EQ(e.param, "prompt") << body;
    EXPECT_TRUE(e.message.find("prompt") != std::string::npos || e.message.find("Token id") == 0)
        << body << ": " << e.message;
  }
  EXPECT_EQ(parse_fails(R"({"prompt": [50257]})").message,
            "Token id 50257 in `prompt` is out of vocabulary (valid ids are [0, 50257))");
  EXPECT_EQ(parse_fails(R"({"prompt": ""})").message, "`prompt` must not be empty");
}

// ---- requests: one table row per validation rule ----------------------------------------------

struct BadField {
  const char* fields;  // spliced into {"prompt": "hi", ...}
  const char* param;
};

TEST_F(ApiJsonTest, EachValidationRuleNamesItsParam) {
  const BadField cases[] = {
      {R"("temperature": -0.1)", "temperature"}, {R"("temperature": 2.5)", "temperature"},
      {R"("temperature": "hot")", "temperature"}, {R"("temperature": true)", "temperature"},
      {R"("top_p": 0)", "top_p"}, {R"("top_p": 1.5)", "top_p"}, {R"("top_p": [1])", "top_p"},
      {R"("top_k": -2)", "top_k"}, {R"("top_k": 1.5)", "top_k"}, {R"("top_k": "5")", "top_k"},
      {R"("min_p": -0.1)", "min_p"}, {R"("min_p": 1.1)", "min_p"},
      {R"("presence_penalty": 2.1)", "presence_penalty"}, {R"("presence_penalty": -3)", "presence_penalty"},
      {R"("frequency_penalty": -2.5)", "frequency_penalty"}, {R"("frequency_penalty": {})", "frequency_penalty"},
      {R"("repetition_penalty": 0)", "repetition_penalty"}, {R"("repetition_penalty": 2.1)", "repetition_penalty"},
      {R"("n": 0)", "n"}, {R"("n": 17)", "n"}, {R"("n": "2")", "n"}, {R"("n": 1.5)", "n"},
      {R"("max_tokens": 0)", "max_tokens"}, {R"("max_tokens": -1)", "max_tokens"},
      {R"("max_tokens": "5")", "max_tokens"}, {R"("max_tokens": 1e30)", "max_tokens"},
      {R"("min_tokens": -1)", "min_tokens"}, {R"("min_tokens": 17)", "min_tokens"},
      {R"("logprobs": 21)", "logprobs"}, {R"("logprobs": -1)", "logprobs"}, {R"("logprobs": true)", "logprobs"},
      {R"("seed": "x")", "seed"}, {R"("seed": 1.5)", "seed"},
      {R"("stop": "")", "stop"}, {R"("stop": [""])", "stop"}, {R"("stop": 5)", "stop"}, {R"("stop": [1])", "stop"},
      {R"("stop": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"])", "stop"},
      {R"("stop_token_ids": [50257])", "stop_token_ids"}, {R"("stop_token_ids": "x")", "stop_token_ids"},
      {R"("stop_token_ids": [-1])", "stop_token_ids"},
      {R"("stream": "yes")", "stream"}, {R"("echo": 1)", "echo"}, {R"("ignore_eos": "no")", "ignore_eos"},
      {R"("return_token_ids": 0)", "return_token_ids"}, {R"("user": 5)", "user"},
      {R"("cache_salt": "")", "cache_salt"}, {R"("cache_salt": 1)", "cache_salt"},
      {R"("stream_options": {"include_usage": true})", "stream_options"},
      {R"("stream": true, "stream_options": 5)", "stream_options"},
      {R"("stream": true, "stream_options": {"include_usage": "y"})", "stream_options"},
      {R"("model": 5)", "model"},
      {R"("logit_bias": 5)", "logit_bias"}, {R"("logit_bias": {"abc": 1})", "logit_bias"},
      {R"("logit_bias": {"-1": 1})", "logit_bias"}, {R"("logit_bias": {"50257": 1})", "logit_bias"},
      {R"("logit_bias": {"11": 100.5})", "logit_bias"}, {R"("logit_bias": {"11": "1"})", "logit_bias"},
      {R"("logit_bias": {"11": true})", "logit_bias"}, {R"("logit_bias": {"99999999999": 1})", "logit_bias"},
      {R"("suffix": "and then")", "suffix"}, {R"("response_format": {"type": "json_object"})", "response_format"},
      {R"("response_format": "text")", "response_format"},
  };
  for (const BadField& c : cases) {
    const std::string body = std::string(R"({"prompt": "hi", )") + c.fields + "}";
    ApiError e = parse_fails(body);
    EXPECT_EQ(e.http_status, 400) << body;
    EXPECT_EQ(e.type, "invalid_request_error") << body;
    EXPECT_EQ(e.param, c.param) << body;
    EXPECT_NE(e.message.find(c.param), std::string::npos) << body << ": " << e.message;
  }
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "temperature": 3})").message,
            "`temperature` must be a number in [0, 2], got 3");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "top_p": 0})").message, "`top_p` must be a number in (0, 1], got 0");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "n": 17})").message, "`n` must be an integer in [1, 16], got 17");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "max_tokens": 0})").message, "`max_tokens` must be an integer >= 1, got 0");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "min_tokens": 17})").message,
            "min_tokens must be less than or equal to max_tokens=16, got 17");
}

TEST_F(ApiJsonTest, BoundaryValuesAreAccepted) {
  CompletionRequest r = parse_ok(R"({"prompt": "hi", "temperature": 0, "top_p": 1, "top_k": -1, "min_p": 1,
      "presence_penalty": -2, "frequency_penalty": 2, "repetition_penalty": 2, "n": 16, "logprobs": 20,
      "max_tokens": 1, "min_tokens": 1, "seed": -5, "stop": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p"],
      "stop_token_ids": [0, 50256], "ignore_eos": true, "cache_salt": "tenant", "user": "", "return_token_ids": true})");
  EXPECT_EQ(r.params.sampling.temperature, 0.0f);
  EXPECT_EQ(r.params.sampling.top_k, 0);  // -1 means off
  EXPECT_EQ(r.params.sampling.min_p, 1.0f);
  EXPECT_EQ(r.params.sampling.repetition_penalty, 2.0f);
  EXPECT_EQ(r.n, 16);
  EXPECT_EQ(r.logprobs, 20);
  EXPECT_EQ(r.max_tokens, std::vector<int32_t>{1});
  EXPECT_EQ(r.params.min_tokens, 1);
  EXPECT_EQ(r.params.sampling.seed, static_cast<uint64_t>(int64_t{-5}));
  EXPECT_EQ(r.params.stop.size(), 16u);
  EXPECT_EQ(r.params.stop_token_ids, (std::vector<int32_t>{0, 50256}));
  EXPECT_TRUE(r.params.ignore_eos && r.return_token_ids);
  EXPECT_EQ(r.params.cache_salt, "tenant");
  EXPECT_EQ(parse_ok(R"({"prompt": "hi", "top_k": 5, "n": 2.0})").params.sampling.top_k, 5);
  EXPECT_EQ(parse_ok(R"({"prompt": "hi", "seed": 18446744073709551615})").params.sampling.seed, UINT64_MAX);
  EXPECT_EQ(parse_ok(R"({"prompt": "hi", "stop": "\n"})").params.stop, std::vector<std::string>{"\n"});
  // null means "the default" everywhere.
  CompletionRequest nulls = parse_ok(R"({"prompt": "hi", "temperature": null, "n": null, "stop": null,
      "logprobs": null, "seed": null, "stream_options": null, "model": null, "max_tokens": null})");
  EXPECT_EQ(nulls.n, 1);
  EXPECT_EQ(nulls.logprobs, -1);
  EXPECT_EQ(nulls.max_tokens, std::vector<int32_t>{64 - 1});
}

TEST_F(ApiJsonTest, UnknownFieldsAreIgnored) {
  CompletionRequest r = parse_ok(R"({"prompt": "hi", "best_of": 3, "service_tier": "auto", "foo": {"bar": [1]}})");
  EXPECT_EQ(r.prompts.size(), 1u);
}

TEST_F(ApiJsonTest, ModelMustBeTheServedOne) {
  EXPECT_EQ(parse_ok(R"({"prompt": "hi", "model": "gpt2"})").model, "gpt2");
  ApiError e = parse_fails(R"({"prompt": "hi", "model": "gpt-4"})");
  EXPECT_EQ(e.http_status, 404);
  EXPECT_EQ(e.type, "not_found_error");
  EXPECT_EQ(e.code, "model_not_found");
  EXPECT_EQ(e.param, "model");
  EXPECT_EQ(e.message, "The model `gpt-4` does not exist.");
}

TEST_F(ApiJsonTest, MalformedBodies) {
  for (const std::string body : {"", "{", "{\"prompt\": }", "nope", "{\"prompt\": \"a\",}"}) {
    ApiError e = parse_fails(body);
    EXPECT_EQ(e.http_status, 400);
    EXPECT_EQ(e.message.rfind("Invalid JSON: ", 0), 0u) << e.message;
    EXPECT_EQ(e.param, "");
  }
  EXPECT_EQ(parse_fails("[1, 2]").message, "The request body must be a JSON object");
  EXPECT_EQ(parse_fails("\"text\"").http_status, 400);
  EXPECT_EQ(parse_fails(std::string(100000, '[')).http_status, 400);  // no stack overflow
  EXPECT_EQ(parse_fails("{\"prompt\": \"\xff\xfe\"}").http_status, 400);  // invalid UTF-8 in JSON text
}

TEST_F(ApiJsonTest, ContextLengthCheck) {
  std::string ids60 = "[";
  for (int i = 0; i < 60; ++i) ids60 += (i ? ",1" : "1");
  ids60 += "]";
  ApiError e = parse_fails(R"({"prompt": )" + ids60 + R"(, "max_tokens": 5})");
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.param, "prompt");
  EXPECT_EQ(e.message,
            "This model's maximum context length is 64 tokens. However, you requested 65 tokens (60 in the "
            "messages, 5 in the completion). Please reduce the length of the messages or completion.");
  EXPECT_EQ(parse_ok(R"({"prompt": )" + ids60 + R"(, "max_tokens": 4})").max_tokens, std::vector<int32_t>{4});
  // null max_tokens: what is left of the context, per prompt.
  EXPECT_EQ(parse_ok(R"({"prompt": [)" + ids60 + R"(, [1, 2]], "max_tokens": null})").max_tokens,
            (std::vector<int32_t>{4, 62}));
  std::string ids64 = ids60.substr(0, ids60.size() - 1) + ",1,1,1,1]";
  ApiError full = parse_fails(R"({"prompt": )" + ids64 + R"(, "max_tokens": null})");
  EXPECT_EQ(full.message,
            "This model's maximum context length is 64 tokens. However, your request has 64 input tokens. "
            "Please reduce the length of the input messages.");
  EXPECT_EQ(full.param, "prompt");
  // The default max_tokens (16) counts too.
  EXPECT_EQ(parse_fails(R"({"prompt": )" + ids60 + "}").param, "prompt");
}

TEST_F(ApiJsonTest, EchoAndLogprobsMapping) {
  CompletionRequest lp = parse_ok(R"({"prompt": "hi", "logprobs": 3})");
  EXPECT_EQ(lp.params.sampling.n_logprobs, 3);
  EXPECT_EQ(lp.params.prompt_logprobs, -1);
  CompletionRequest echo_lp = parse_ok(R"({"prompt": "hi", "logprobs": 3, "echo": true})");
  EXPECT_EQ(echo_lp.params.sampling.n_logprobs, 3);
  EXPECT_EQ(echo_lp.params.prompt_logprobs, 3);
  CompletionRequest echo = parse_ok(R"({"prompt": "hi", "echo": true})");
  EXPECT_TRUE(echo.echo);
  EXPECT_EQ(echo.params.prompt_logprobs, -1);
  EXPECT_EQ(parse_ok(R"({"prompt": "hi", "logprobs": 0, "echo": true})").params.prompt_logprobs, 0);
}

TEST_F(ApiJsonTest, StreamOptions) {
  CompletionRequest r = parse_ok(R"({"prompt": "hi", "stream": true, "stream_options": {"include_usage": true}})");
  EXPECT_TRUE(r.stream && r.include_usage);
  EXPECT_FALSE(parse_ok(R"({"prompt": "hi", "stream": true, "stream_options": {}})").include_usage);
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "stream_options": {"include_usage": true}})").message,
            "`stream_options` can only be defined when `stream=True`.");
}

TEST_F(ApiJsonTest, PromptRequestsCarryTheGroupAndSeeds) {
  CompletionRequest r = parse_ok(R"({"prompt": [[1, 2], [3]], "n": 3, "seed": 42, "max_tokens": 7, "stop": ["x"]})");
  ASSERT_EQ(r.n_choices(), 6);
  std::set<std::string> ids;
  for (int32_t p = 0; p < 2; ++p) {
    GenerationRequest g = r.prompt_request(p);
    EXPECT_EQ(g.prompt_ids, (p == 0 ? std::vector<int32_t>{1, 2} : std::vector<int32_t>{3}));
    EXPECT_EQ(g.max_tokens, 7);
    EXPECT_EQ(g.stop, std::vector<std::string>{"x"});
    EXPECT_EQ(g.n, 3);
    EXPECT_EQ(g.best_of, 3);
    EXPECT_FALSE(g.beam_search);
    ids.insert(g.request_id);
    std::set<uint64_t> seeds;
    for (int32_t i = 0; i < 3; ++i) seeds.insert(g.sample_seed(i));
    EXPECT_EQ(g.sample_seed(0), 42u);  // sample 0 keeps the seed
    EXPECT_EQ(seeds.size(), 3u);       // the samples of one prompt differ
  }
  EXPECT_EQ(ids.size(), 2u);
}

TEST_F(ApiJsonTest, BeamSearchFields) {
  CompletionRequest r = parse_ok(
      R"({"prompt": "hi", "n": 2, "use_beam_search": true, "best_of": 4, "length_penalty": 0.5, "early_stopping": "never"})");
  GenerationRequest g = r.prompt_request(0);
  EXPECT_TRUE(g.beam_search);
  EXPECT_EQ(g.n, 2);
  EXPECT_EQ(g.best_of, 4);
  EXPECT_FLOAT_EQ(g.length_penalty, 0.5f);
  EXPECT_EQ(g.early_stopping, EarlyStopping::never);
  EXPECT_EQ(parse_ok(R"({"prompt": "hi", "n": 3, "use_beam_search": true})").prompt_request(0).best_of, 3);
  EXPECT_EQ(parse_ok(R"({"prompt": "hi", "use_beam_search": true, "early_stopping": true})").params.early_stopping,
            EarlyStopping::when_full);
  // Chat's own stop string does not stand in the way.
  EXPECT_TRUE(chat_ok(R"({"messages": [{"role": "user", "content": "Hi"}], "use_beam_search": true, "n": 2})")
                  .params.stop.empty());
}

TEST_F(ApiJsonTest, GroupFieldsAreChecked) {
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "n": 3, "best_of": 2})").param, "best_of");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "n": 2, "best_of": 3, "stream": true})").param, "best_of");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "use_beam_search": true, "best_of": 2, "stream": true})").param, "stream");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "use_beam_search": true, "best_of": 2, "stop": "x"})").param, "stop");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "use_beam_search": true, "best_of": 2, "presence_penalty": 1})").param,
            "presence_penalty");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "use_beam_search": true, "best_of": 2, "logit_bias": {"11": 1}})").param,
            "logit_bias");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "early_stopping": "sometimes"})").param, "early_stopping");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "use_beam_search": "yes"})").param, "use_beam_search");
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "best_of": 0})").param, "best_of");
}

TEST_F(ApiJsonTest, LogitBiasIsReadAsDistinctTokens) {
  const CompletionRequest r = parse_ok(R"({"prompt": "hi", "logit_bias": {"50256": -100, "11": 2.5, "7": 0}})");
  const std::vector<TokenBias>& b = r.params.sampling.logit_bias;
  ASSERT_EQ(b.size(), 2u);  // a zero bias changes nothing and is dropped
  EXPECT_EQ(b[0].token, 11);
  EXPECT_EQ(b[0].bias, 2.5f);
  EXPECT_EQ(b[1].token, 50256);
  EXPECT_EQ(b[1].bias, -100.0f);
  EXPECT_TRUE(parse_ok(R"({"prompt": "hi", "logit_bias": {}})").params.sampling.logit_bias.empty());
  EXPECT_EQ(chat_ok(R"({"messages": [{"role": "user", "content": "Hi"}], "logit_bias": {"5": 1}})")
                .params.sampling.logit_bias.size(),
            1u);
  EXPECT_EQ(parse_fails(R"({"prompt": "hi", "logit_bias": {"50257": 1}})").message,
            "Token id 50257 in `logit_bias` is out of vocabulary (valid ids are [0, 50257))");
}

TEST_F(ApiJsonTest, FieldsThatCannotBeHonouredAreRefused) {
  const std::string chat = R"({"messages": [{"role": "user", "content": "Hi"}], )";
  const std::string tools = R"("tools": [{"type": "function", "function": {"name": "f"}}])";
  EXPECT_EQ(chat_fails(chat + tools + "}").param, "tools");
  EXPECT_EQ(chat_fails(chat + tools + R"(, "tool_choice": "auto"})").param, "tools");
  EXPECT_EQ(chat_fails(chat + R"("tool_choice": "required"})").param, "tool_choice");
  EXPECT_EQ(chat_fails(chat + R"("functions": [{"name": "f"}]})").param, "functions");
  EXPECT_EQ(chat_fails(chat + R"("response_format": {"type": "json_schema", "json_schema": {}}})").param,
            "response_format");
  // What changes nothing is accepted: no tool may be called, plain text, an empty suffix.
  (void)chat_ok(chat + tools + R"(, "tool_choice": "none"})");
  (void)chat_ok(chat + R"("tools": [], "tool_choice": "auto", "response_format": {"type": "text"}})");
  (void)chat_ok(chat + R"("tools": null, "functions": null, "response_format": null})");
  (void)parse_ok(R"({"prompt": "hi", "suffix": "", "response_format": {"type": "text"}})");
  (void)parse_ok(R"({"prompt": "hi", "suffix": null})");
  // Completions treat tools as chat does.
  const std::string prompt = R"({"prompt": "hi", )";
  EXPECT_EQ(parse_fails(prompt + tools + "}").param, "tools");
  EXPECT_EQ(parse_fails(prompt + R"("tool_choice": "required"})").param, "tool_choice");
  EXPECT_EQ(parse_fails(prompt + R"("functions": [{"name": "f"}]})").param, "functions");
  (void)parse_ok(prompt + tools + R"(, "tool_choice": "none"})");
}

// ---- chat ---------------------------------------------------------------------------------------

TEST_F(ApiJsonTest, ChatTemplate) {
  EXPECT_EQ(render_gpt2_chat({{"system", "Be brief."}, {"user", "Hi"}}),
            "system: Be brief.\nuser: Hi\nassistant:");
  EXPECT_EQ(render_gpt2_chat({{"user", "Hi"}, {"assistant", " Hello"}, {"user", "Bye"}}, false),
            "user: Hi\nassistant:  Hello\nuser: Bye\n");
  EXPECT_STREQ(kChatStop, "\nuser:");
}

TEST_F(ApiJsonTest, ChatRequest) {
  CompletionRequest r = chat_ok(R"({"model": "gpt2", "messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
      {"role": "assistant", "content": null}, {"role": "user", "content": "?", "name": "bob"}],
      "max_tokens": 5, "max_completion_tokens": 7, "stop": "END", "logprobs": true, "top_logprobs": 2})");
  EXPECT_EQ(r.kind, ApiKind::chat);
  EXPECT_EQ(r.id.rfind("chatcmpl-", 0), 0u);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "Hi\nthere");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0], tok().encode("system: Be brief.\nuser: Hi\nthere\nassistant: \nuser: ?\nassistant:"));
  EXPECT_EQ(r.max_tokens, std::vector<int32_t>{7});  // max_completion_tokens wins
  EXPECT_EQ(r.params.stop, (std::vector<std::string>{"END", "\nuser:"}));
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_EQ(r.params.sampling.n_logprobs, 2);
  EXPECT_EQ(r.params.prompt_logprobs, -1);
  EXPECT_EQ(chat_ok(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})").logprobs, 0);
  EXPECT_EQ(chat_ok(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": false})").logprobs, -1);
  EXPECT_EQ(chat_ok(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 3})").max_tokens,
            std::vector<int32_t>{3});
}

TEST_F(ApiJsonTest, ChatValidation) {
  const BadField cases[] = {
      {R"("messages": null)", "messages"}, {R"("messages": [])", "messages"}, {R"("messages": "hi")", "messages"},
      {R"("messages": [5])", "messages"}, {R"("messages": [{"role": "tool", "content": "x"}])", "messages"},
      {R"("messages": [{"content": "x"}])", "messages"}, {R"("messages": [{"role": "user"}])", "messages"},
      {R"("messages": [{"role": "user", "content": 5}])", "messages"},
      {R"("messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])", "messages"},
      {R"("messages": [{"role": "user", "content": [{"type": "text"}]}])", "messages"},
  };
  for (const BadField& c : cases) {
    const std::string body = std::string("{") + c.fields + "}";
    ApiError e = chat_fails(body);
    EXPECT_EQ(e.http_status, 400) << body;
    EXPECT_EQ(e.param, c.param) << body;
    EXPECT_NE(e.message.find("messages"), std::string::npos) << body << ": " << e.message;
  }
  const std::string user = R"({"messages": [{"role": "user", "content": "x"}], )";
  EXPECT_EQ(chat_fails(user + R"("top_logprobs": 2})").param, "top_logprobs");
  EXPECT_EQ(chat_fails(user + R"("top_logprobs": 21, "logprobs": true})").param, "top_logprobs");
  EXPECT_EQ(chat_fails(user + R"("logprobs": 2})").param, "logprobs");
  EXPECT_EQ(chat_fails(user + R"("max_completion_tokens": 0})").param, "max_completion_tokens");
  EXPECT_EQ(chat_fails(user + R"("temperature": 9})").param, "temperature");
  EXPECT_EQ(chat_fails(user + R"("model": "other"})").http_status, 404);
  ApiError ctx = chat_fails(user + R"("max_tokens": 60})");
  EXPECT_EQ(ctx.param, "messages");
  EXPECT_NE(ctx.message.find("maximum context length is 64 tokens"), std::string::npos);
}

// ---- tokenize / detokenize / models / errors ----------------------------------------------------

TEST_F(ApiJsonTest, TokenizeAndDetokenize) {
  auto ids = parse_tokenize_request(R"({"prompt": "Hello world"})", served_, tok());
  ASSERT_TRUE(ids.is_ok());
  EXPECT_EQ(ids.value(), tok().encode("Hello world"));
  Json body = build_tokenize_response(ids.value(), served_);
  EXPECT_EQ(dump_json(body), R"({"tokens":[15496,995],"count":2,"max_model_len":64})");
  auto chat = parse_tokenize_request(R"({"messages": [{"role": "user", "content": "Hi"}]})", served_, tok());
  ASSERT_TRUE(chat.is_ok());
  EXPECT_EQ(chat.value(), tok().encode("user: Hi\nassistant:"));
  EXPECT_EQ(parse_tokenize_request(R"({"prompt": 5})", served_, tok()).error().param, "prompt");
  EXPECT_EQ(parse_tokenize_request(R"({})", served_, tok()).error().param, "prompt");
  EXPECT_EQ(parse_tokenize_request(R"({"prompt": "a", "model": "x"})", served_, tok()).error().http_status, 404);

  auto back = parse_detokenize_request(R"({"tokens": [15496, 995]})", served_);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(dump_json(build_detokenize_response(back.value(), tok())), R"({"prompt":"Hello world"})");
  for (const char* bad : {R"({})", R"({"tokens": "x"})", R"({"tokens": [50257]})", R"({"tokens": [1, "a"]})"}) {
    auto r = parse_detokenize_request(bad, served_);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.error().param, "tokens") << bad;
  }
}

// A model whose family puts BOS before prompts (OPT): text prompts, chat and /tokenize start with
// it; prompts given as token ids are the client's own and stay as sent.
TEST_F(ApiJsonTest, PromptBosFromTheModelDescription) {
  auto loaded = Tokenizer::from_vocab_merges(KVMESH_DATA_DIR "/gpt2/vocab.json", KVMESH_DATA_DIR "/gpt2/merges.txt");
  ASSERT_TRUE(loaded.is_ok());
  Tokenizer& bos_tok = **loaded;
  bos_tok.set_prompt_bos(2);
  auto ids = parse_tokenize_request(R"({"prompt": "Hello world"})", served_, bos_tok);
  ASSERT_TRUE(ids.is_ok());
  EXPECT_EQ(ids.value(), (std::vector<int32_t>{2, 15496, 995}));
  auto text = parse_completion_request(R"({"prompt": "Hello world", "max_tokens": 1})", served_, bos_tok);
  ASSERT_TRUE(text.is_ok());
  EXPECT_EQ(text.value().prompts[0], (std::vector<int32_t>{2, 15496, 995}));
  auto given = parse_completion_request(R"({"prompt": [15496, 995], "max_tokens": 1})", served_, bos_tok);
  ASSERT_TRUE(given.is_ok());
  EXPECT_EQ(given.value().prompts[0], (std::vector<int32_t>{15496, 995}));
  auto chat = parse_chat_request(R"({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})", served_, bos_tok);
  ASSERT_TRUE(chat.is_ok());
  EXPECT_EQ(chat.value().prompts[0].front(), 2);
}

TEST_F(ApiJsonTest, ModelsAndErrorBodies) {
  EXPECT_EQ(dump_json(build_models_response(served_)),
            R"({"object":"list","data":[{"id":"gpt2","object":"model","created":1700000000,"owned_by":"kvmesh",)"
            R"("root":"gpt2","parent":null,"max_model_len":64}]})");
  EXPECT_EQ(dump_json(error_body(bad_request("bad n", "n"))),
            R"({"error":{"message":"bad n","type":"invalid_request_error","param":"n","code":null}})");
  EXPECT_EQ(dump_json(error_body(model_not_found("m"))),
            R"({"error":{"message":"The model `m` does not exist.","type":"not_found_error","param":"model",)"
            R"("code":"model_not_found"}})");
  EXPECT_EQ(server_error("x").http_status, 500);
  EXPECT_EQ(dump_json(Json("a\xff" "b")), "\"a\xef\xbf\xbd" "b\"");  // never throws on bad UTF-8
}

}  // namespace
}  // namespace kvmesh
