// Tests of the OpenAI-style API JSON responses: completion and chat bodies, log-probs, echo,
// tokens that are not UTF-8 alone, errors, and stream chunks.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api_json_fixture.h"

namespace kvmesh {
namespace {

// ---- responses ----------------------------------------------------------------------------------

GenerationOutput make_output(const std::string& text, std::vector<int32_t> ids, FinishReason finish,
                             int32_t n_cached = 0) {
  GenerationOutput out;
  out.text = text;
  out.token_ids = std::move(ids);
  out.finish = finish;
  out.n_cached_tokens = n_cached;
  return out;
}

PositionLogprobs plp(int32_t token, float logprob, std::vector<TokenLogprob> top = {}) {
  return PositionLogprobs{{token, logprob}, std::move(top)};
}

TEST_F(ApiJsonTest, RequestHelpers) {
  EXPECT_STREQ(finish_reason_name(FinishReason::none), "");
  EXPECT_STREQ(finish_reason_name(FinishReason::stop), "stop");
  EXPECT_STREQ(finish_reason_name(FinishReason::length), "length");
  GenerationOutput out;
  GenerationDelta d1;
  d1.text = "a";
  d1.token_ids = {1};
  d1.logprobs = {plp(1, -1)};
  d1.prompt_logprobs = {plp(2, -2)};
  d1.n_prompt_tokens = 2;
  d1.n_cached_tokens = 1;
  out.append(d1);
  GenerationDelta d2;
  d2.text = "b";
  d2.token_ids = {3};
  d2.logprobs = {plp(3, -3)};
  d2.finish = FinishReason::length;
  out.append(d2);
  EXPECT_EQ(out.text, "ab");
  EXPECT_EQ(out.token_ids, (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(out.logprobs.size(), 2u);
  EXPECT_EQ(out.prompt_logprobs.size(), 1u);
  EXPECT_EQ(out.n_prompt_tokens, 2);
  EXPECT_EQ(out.n_cached_tokens, 1);
  EXPECT_TRUE(out.finished());
  EXPECT_EQ(out.finish, FinishReason::length);
}

TEST_F(ApiJsonTest, CompletionResponse) {
  CompletionRequest r = parse_ok(R"({"prompt": ["Hello", " world"], "n": 2, "stop": ["!"], "stop_token_ids": [13],
                                     "return_token_ids": true})");
  std::vector<GenerationOutput> outputs = {
      make_output(" there", tok().encode(" there"), FinishReason::length),
      make_output("", {0}, FinishReason::stop),                    // "!" stop string
      make_output(",", {11, 50256}, FinishReason::stop, 1),        // end of text
      make_output("x", {87, 13}, FinishReason::stop, 1)};          // stop token "."
  outputs[1].stop_string = "!";
  outputs[3].stop_token = 13;
  auto built = build_completion_response(r, outputs, tok());
  ASSERT_TRUE(built.is_ok()) << built.error().message;
  const Json& body = built.value();
  EXPECT_EQ(body["id"], r.id);
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["created"], r.created);
  EXPECT_EQ(body["model"], "gpt2");
  ASSERT_EQ(body["choices"].size(), 4u);
  for (int c = 0; c < 4; ++c) {
    const Json& choice = body["choices"][c];
    EXPECT_EQ(choice["index"], c);
    EXPECT_EQ(choice["text"], outputs[c].text);
    EXPECT_TRUE(choice["logprobs"].is_null());
    EXPECT_EQ(choice["prompt_token_ids"], r.prompts[c / 2]);
    EXPECT_EQ(choice["token_ids"], outputs[c].token_ids);
  }
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(body["choices"][0]["stop_reason"].is_null());
  EXPECT_EQ(body["choices"][1]["finish_reason"], "stop");
  EXPECT_EQ(body["choices"][1]["stop_reason"], "!");
  EXPECT_TRUE(body["choices"][2]["stop_reason"].is_null());
  EXPECT_EQ(body["choices"][3]["stop_reason"], 13);
  const Json& usage = body["usage"];
  const int64_t n_completion = static_cast<int64_t>(tok().encode(" there").size()) + 1 + 2 + 2;
  EXPECT_EQ(usage["prompt_tokens"], 2);  // each prompt once, whatever n
  EXPECT_EQ(usage["completion_tokens"], n_completion);
  EXPECT_EQ(usage["total_tokens"], 2 + n_completion);
  EXPECT_EQ(usage["prompt_tokens_details"]["cached_tokens"], 1);
  EXPECT_EQ(dump_json(body).rfind("{\"id\":\"cmpl-", 0), 0u);
}

TEST_F(ApiJsonTest, EchoWithLogprobs) {
  CompletionRequest r = parse_ok(R"({"prompt": "Hello world", "echo": true, "logprobs": 1})");
  GenerationOutput out = make_output("!!", {0, 0}, FinishReason::length);
  out.logprobs = {plp(0, -0.5f), plp(0, -0.25f, {{13, -0.125f}})};
  out.prompt_logprobs = {plp(995, -3.0f, {{11, -1.0f}})};
  auto built = build_completion_response(r, {out}, tok());
  ASSERT_TRUE(built.is_ok());
  const Json& choice = built.value()["choices"][0];
  EXPECT_EQ(choice["text"], "Hello world!!");
  EXPECT_EQ(dump_json(choice["logprobs"]),
            R"({"tokens":["Hello"," world","!","!"],"token_logprobs":[null,-3.0,-0.5,-0.25],)"
            R"("top_logprobs":[null,{",":-1.0," world":-3.0},{"!":-0.5},{".":-0.125,"!":-0.25}],)"
            R"("text_offset":[0,5,11,12]})");
  // Without echo the offsets start at the generated text.
  CompletionRequest plain = parse_ok(R"({"prompt": "Hello world", "logprobs": 0})");
  auto no_echo = build_completion_response(plain, {out}, tok());
  ASSERT_TRUE(no_echo.is_ok());
  EXPECT_EQ(no_echo.value()["choices"][0]["text"], "!!");
  EXPECT_EQ(no_echo.value()["choices"][0]["logprobs"]["text_offset"], Json::array({0, 1}));
}

TEST_F(ApiJsonTest, TokensThatAreNotUtf8OnTheirOwn) {
  int32_t e6 = -1;
  for (int32_t id = 0; id < tok().vocab_size() && e6 < 0; ++id) {
    if (tok().token_bytes(id) == "\xe6") e6 = id;
  }
  ASSERT_GE(e6, 0);
  EXPECT_EQ(token_display(tok(), e6), "bytes:\\xe6");
  EXPECT_EQ(token_display(tok(), 15496), "Hello");
  EXPECT_TRUE(is_valid_utf8("h\xc3\xa9llo \xe6\x97\xa5"));
  EXPECT_FALSE(is_valid_utf8("\xe6\x97"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));  // overlong
  TextOffsets offsets;
  EXPECT_EQ(offsets.add("\xe6\x97"), 0);
  EXPECT_EQ(offsets.add("\xa5"), 0);  // completes one character
  EXPECT_EQ(offsets.add("ab"), 1);
  EXPECT_EQ(offsets.add("c"), 3);
}

TEST_F(ApiJsonTest, ChatResponse) {
  CompletionRequest r = chat_ok(R"({"messages": [{"role": "user", "content": "Hi"}], "logprobs": true,
                                    "top_logprobs": 1, "return_token_ids": true})");
  GenerationOutput out = make_output(" Hello", {18435}, FinishReason::stop);
  out.logprobs = {plp(18435, -0.5f, {{18435, -0.5f}})};
  auto built = build_response(r, {out}, tok());
  ASSERT_TRUE(built.is_ok());
  const Json& body = built.value();
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["prompt_token_ids"], r.prompts[0]);
  const Json& choice = body["choices"][0];
  EXPECT_EQ(dump_json(choice["message"]), R"({"role":"assistant","content":" Hello"})");
  EXPECT_EQ(dump_json(choice["logprobs"]),
            R"({"content":[{"token":" Hello","logprob":-0.5,"bytes":[32,72,101,108,108,111],)"
            R"("top_logprobs":[{"token":" Hello","logprob":-0.5,"bytes":[32,72,101,108,108,111]}]}]})");
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_EQ(body["usage"]["completion_tokens"], 1);
}

TEST_F(ApiJsonTest, FailedOutputsBecomeServerErrors) {
  CompletionRequest r = parse_ok(R"({"prompt": "hi", "n": 2})");
  GenerationOutput ok = make_output("a", {64}, FinishReason::length);
  GenerationOutput bad = make_output("", {}, FinishReason::error);
  bad.error = "worker lost";
  auto failed = build_completion_response(r, {ok, bad}, tok());
  ASSERT_FALSE(failed.is_ok());
  EXPECT_EQ(failed.error().http_status, 500);
  EXPECT_EQ(failed.error().message, "worker lost");
  EXPECT_FALSE(build_completion_response(r, {ok}, tok()).is_ok());                  // a choice missing
  EXPECT_FALSE(build_completion_response(r, {ok, GenerationOutput{}}, tok()).is_ok());  // unfinished
  EXPECT_TRUE(build_completion_response(r, {ok, ok}, tok()).is_ok());
  bad.unavailable = true;  // the service lost a rank: 503, not the request's fault
  auto lost = build_completion_response(r, {ok, bad}, tok());
  ASSERT_FALSE(lost.is_ok());
  EXPECT_EQ(lost.error().http_status, 503);
  EXPECT_EQ(lost.error().type, "service_unavailable");
  EXPECT_EQ(lost.error().message, "worker lost");
}

// ---- streams ------------------------------------------------------------------------------------

GenerationDelta make_delta(const std::string& text, std::vector<int32_t> ids, FinishReason finish) {
  GenerationDelta d;
  d.text = text;
  d.token_ids = std::move(ids);
  d.finish = finish;
  return d;
}

TEST_F(ApiJsonTest, CompletionStreamChunks) {
  CompletionRequest r = parse_ok(R"({"prompt": "Hello", "n": 2, "echo": true, "logprobs": 0, "stream": true,
      "stream_options": {"include_usage": true}, "return_token_ids": true})");
  StreamBuilder stream(r, tok());
  GenerationDelta d1 = make_delta(" there", {612}, FinishReason::none);
  d1.logprobs = {plp(612, -1.0f)};
  Json c1 = stream.chunk(0, d1);
  EXPECT_EQ(c1["id"], r.id);
  EXPECT_EQ(c1["object"], "text_completion");
  EXPECT_EQ(c1["model"], "gpt2");
  ASSERT_EQ(c1["choices"].size(), 1u);
  const Json& ch1 = c1["choices"][0];
  EXPECT_EQ(ch1["index"], 0);
  EXPECT_EQ(ch1["text"], "Hello there");  // the echo rides on the first chunk
  EXPECT_EQ(dump_json(ch1["logprobs"]), R"({"tokens":["Hello"," there"],"token_logprobs":[null,-1.0],)"
                                        R"("top_logprobs":[null,{" there":-1.0}],"text_offset":[0,5]})");
  EXPECT_TRUE(ch1["finish_reason"].is_null());
  ASSERT_TRUE(c1.contains("usage"));  // null on every chunk before the usage chunk, as OpenAI's
  EXPECT_TRUE(c1["usage"].is_null());
  EXPECT_EQ(ch1["prompt_token_ids"], Json::array({15496}));
  EXPECT_EQ(ch1["token_ids"], Json::array({612}));
  EXPECT_FALSE(stream.all_finished());

  GenerationDelta d2 = make_delta("!", {0}, FinishReason::length);
  d2.logprobs = {plp(0, -2.0f)};
  const Json ch2 = stream.chunk(0, d2)["choices"][0];
  EXPECT_EQ(ch2["text"], "!");
  EXPECT_FALSE(ch2.contains("prompt_token_ids"));
  EXPECT_EQ(ch2["logprobs"]["text_offset"], Json::array({11}));
  EXPECT_EQ(ch2["finish_reason"], "length");

  const Json ch3 = stream.chunk(1, make_delta("", {50256}, FinishReason::stop))["choices"][0];
  EXPECT_EQ(ch3["index"], 1);
  EXPECT_EQ(ch3["text"], "Hello");
  EXPECT_EQ(ch3["finish_reason"], "stop");
  EXPECT_TRUE(ch3["stop_reason"].is_null());
  EXPECT_TRUE(stream.all_finished());

  std::optional<Json> usage = stream.usage_chunk();
  ASSERT_TRUE(usage.has_value());
  EXPECT_EQ((*usage)["choices"], Json::array());
  EXPECT_EQ(dump_json((*usage)["usage"]), R"({"prompt_tokens":1,"completion_tokens":3,"total_tokens":4,)"
                                          R"("prompt_tokens_details":{"cached_tokens":0}})");
  EXPECT_STREQ(kDoneMarker, "[DONE]");

  CompletionRequest quiet = parse_ok(R"({"prompt": "Hello", "stream": true, "stop": ["!"]})");
  StreamBuilder quiet_stream(quiet, tok());
  GenerationDelta stopped = make_delta(" a", {257, 0}, FinishReason::stop);
  stopped.stop_string = "!";
  Json last = quiet_stream.chunk(0, stopped);
  EXPECT_EQ(last["choices"][0]["stop_reason"], "!");
  EXPECT_TRUE(last["choices"][0]["logprobs"].is_null());
  EXPECT_FALSE(last.contains("usage"));  // not asked for
  EXPECT_FALSE(last["choices"][0].contains("token_ids"));
  EXPECT_FALSE(quiet_stream.usage_chunk().has_value());
}

// system_fingerprint: the served model's, on every response and chunk (null when it has none).
TEST_F(ApiJsonTest, SystemFingerprint) {
  GenerationOutput out = make_output(" Hello", {18435}, FinishReason::stop);
  auto plain = build_response(chat_ok(R"({"messages": [{"role": "user", "content": "Hi"}]})"), {out}, tok());
  ASSERT_TRUE(plain.is_ok());
  ASSERT_TRUE(plain.value().contains("system_fingerprint"));
  EXPECT_TRUE(plain.value()["system_fingerprint"].is_null());
  served_.fingerprint = "fp_0123456789abcdef";
  CompletionRequest r = parse_ok(R"({"prompt": "Hello", "stream": true})");
  auto built = build_response(r, {out}, tok());
  ASSERT_TRUE(built.is_ok());
  EXPECT_EQ(built.value()["system_fingerprint"], "fp_0123456789abcdef");
  StreamBuilder stream(r, tok());
  EXPECT_EQ(stream.chunk(0, make_delta(" a", {257}, FinishReason::none))["system_fingerprint"], "fp_0123456789abcdef");
}

TEST_F(ApiJsonTest, StreamErrorDeltaBecomesErrorBody) {
  StreamBuilder stream(parse_ok(R"({"prompt": "Hello", "stream": true})"), tok());
  GenerationDelta d = make_delta("", {}, FinishReason::error);
  d.error = "rank 1 lost";
  EXPECT_EQ(dump_json(stream.chunk(0, d)),
            R"({"error":{"message":"rank 1 lost","type":"server_error","param":null,"code":null}})");
  StreamBuilder lost_stream(parse_ok(R"({"prompt": "Hello", "stream": true})"), tok());
  d.unavailable = true;
  EXPECT_EQ(dump_json(lost_stream.chunk(0, d)),
            R"({"error":{"message":"rank 1 lost","type":"service_unavailable","param":null,)"
            R"("code":"engine_unavailable"}})");
}

TEST_F(ApiJsonTest, ChatStreamChunks) {
  CompletionRequest r = chat_ok(R"({"messages": [{"role": "user", "content": "Hi"}], "stream": true,
                                    "logprobs": true})");
  StreamBuilder stream(r, tok());
  GenerationDelta d1 = make_delta(" Hello", {18435}, FinishReason::none);
  d1.logprobs = {plp(18435, -0.5f)};
  Json c1 = stream.chunk(0, d1);
  EXPECT_EQ(c1["object"], "chat.completion.chunk");
  EXPECT_EQ(c1["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(dump_json(c1["choices"][0]["delta"]), R"({"role":"assistant","content":" Hello"})");
  EXPECT_EQ(c1["choices"][0]["logprobs"]["content"][0]["token"], " Hello");
  EXPECT_TRUE(c1["choices"][0]["finish_reason"].is_null());
  GenerationDelta user_turn = make_delta("", {198, 7220, 25}, FinishReason::stop);
  user_turn.stop_string = "\nuser:";
  Json c2 = stream.chunk(0, user_turn);
  EXPECT_EQ(dump_json(c2["choices"][0]["delta"]), R"({"content":""})");
  EXPECT_EQ(c2["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(c2["choices"][0]["stop_reason"], "\nuser:");
}

}  // namespace
}  // namespace kvmesh
