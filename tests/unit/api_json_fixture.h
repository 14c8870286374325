// ApiJsonTest: the fixture of the API JSON tests (api_json_test, api_response_test): the shipped
// GPT-2 tokenizer and request parsers that expect success or an error.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/tokenizer.h"
#include "coordinator/api_request.h"
#include "coordinator/api_response.h"

namespace kvmesh {

class ApiJsonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = std::string(KVMESH_DATA_DIR) + "/gpt2";
    auto loaded = Tokenizer::from_vocab_merges(dir + "/vocab.json", dir + "/merges.txt");
    ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
    tokenizer_ = std::move(loaded).value().release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  static const Tokenizer& tok() { return *tokenizer_; }

  CompletionRequest parse_ok(const std::string& body) {
    auto r = parse_completion_request(body, served_, tok());
    EXPECT_TRUE(r.is_ok()) << body << " -> " << (r.is_ok() ? "" : r.error().message);
    return r.is_ok() ? std::move(r).value() : CompletionRequest{};
  }
  ApiError parse_fails(const std::string& body) {
    auto r = parse_completion_request(body, served_, tok());
    EXPECT_FALSE(r.is_ok()) << body;
    return r.is_ok() ? ApiError{} : r.error();
  }
  CompletionRequest chat_ok(const std::string& body) {
    auto r = parse_chat_request(body, served_, tok());
    EXPECT_TRUE(r.is_ok()) << body << " -> " << (r.is_ok() ? "" : r.error().message);
    return r.is_ok() ? std::move(r).value() : CompletionRequest{};
  }
  ApiError chat_fails(const std::string& body) {
    auto r = parse_chat_request(body, served_, tok());
    EXPECT_FALSE(r.is_ok()) << body;
    return r.is_ok() ? ApiError{} : r.error();
  }

  static Tokenizer* tokenizer_;
  ServedModel served_{"gpt2", 64, 50257, 1700000000};
};
inline Tokenizer* ApiJsonTest::tokenizer_ = nullptr;

}  // namespace kvmesh
