// ApiJsonTest: the fixture of the API JSON tests (api_json_test, api_response_test): the shipped
// GPT-2 tokenizer and request parsers that expect success or an error.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/tokenizer.h"
#include "coordinator/api_request.h"
#include "coordinator/api_response.h"
#include "shipped_tokenizer.h"

namespace kvmesh {

class ApiJsonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_NE(testing::gpt2_tokenizer(), nullptr) << "data/gpt2 unreadable"; }
  static const Tokenizer& tok() { return *testing::gpt2_tokenizer(); }

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

  ServedModel served_{"gpt2", 64, 50257, 1700000000, ""};
};

}  // namespace kvmesh
