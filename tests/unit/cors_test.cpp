// CorsPolicy: --allowed-origins parsing (none, any, a list; bad entries refused) and the header
// sets of replies and preflights.
#include <gtest/gtest.h>

#include <map>

#include "coordinator/cors.h"

namespace kvmesh {
namespace {

std::map<std::string, std::string> as_map(const HeaderList& headers) {
  std::map<std::string, std::string> m;
  for (const auto& [name, value] : headers) EXPECT_TRUE(m.emplace(name, value).second) << "twice: " << name;
  return m;
}

TEST(Cors, NoFlagLetsNoOriginIn) {
  auto policy = CorsPolicy::parse("");
  ASSERT_TRUE(policy.is_ok());
  EXPECT_FALSE(policy->enabled());
  EXPECT_FALSE(policy->allows("http://localhost:3000"));
  EXPECT_TRUE(policy->reply_headers("http://localhost:3000").empty());
  EXPECT_TRUE(policy->preflight_headers("http://localhost:3000", "POST, OPTIONS", "").empty());
}

TEST(Cors, ListedOriginsMatchWholeAndWithoutCase) {
  auto policy = CorsPolicy::parse(" http://localhost:3000, https://UI.example/ ");
  ASSERT_TRUE(policy.is_ok()) << policy.status().to_string();
  EXPECT_TRUE(policy->allows("http://localhost:3000"));
  EXPECT_TRUE(policy->allows("https://ui.example"));
  EXPECT_FALSE(policy->allows("http://localhost:3001"));
  EXPECT_FALSE(policy->allows("https://ui.example.evil"));
  EXPECT_FALSE(policy->allows("http://ui.example"));
  EXPECT_FALSE(policy->allows(""));
  auto reply = as_map(policy->reply_headers("https://ui.example"));
  EXPECT_EQ(reply["Access-Control-Allow-Origin"], "https://ui.example");
  EXPECT_EQ(reply["Vary"], "Origin");
  EXPECT_EQ(reply["Access-Control-Expose-Headers"], "X-Request-Id, Retry-After");
  auto preflight = as_map(policy->preflight_headers("http://localhost:3000", "POST, OPTIONS", ""));
  EXPECT_EQ(preflight["Access-Control-Allow-Origin"], "http://localhost:3000");
  EXPECT_EQ(preflight["Access-Control-Allow-Methods"], "POST, OPTIONS");
  EXPECT_EQ(preflight["Access-Control-Allow-Headers"], "Authorization, Content-Type");
  EXPECT_EQ(preflight["Access-Control-Max-Age"], "600");
  EXPECT_EQ(as_map(policy->preflight_headers("http://localhost:3000", "GET, OPTIONS", "x-stainless-os, authorization"))
                ["Access-Control-Allow-Headers"],
            "x-stainless-os, authorization");
}

TEST(Cors, AnyOriginIsAStarWithoutVary) {
  auto policy = CorsPolicy::parse("*");
  ASSERT_TRUE(policy.is_ok());
  EXPECT_TRUE(policy->allows("http://anything.example:1234"));
  EXPECT_FALSE(policy->allows(""));  // not a browser request: nothing to add
  auto reply = as_map(policy->reply_headers("http://anything.example:1234"));
  EXPECT_EQ(reply["Access-Control-Allow-Origin"], "*");
  EXPECT_EQ(reply.count("Vary"), 0u);
}

TEST(Cors, EntriesThatAreNotOriginsAreRefused) {
  for (const char* bad : {"localhost:3000", "http://", "://x", "http://a.example/path", "http://a b", "http://a,",
                          "*, http://a.example"}) {
    auto policy = CorsPolicy::parse(bad);
    ASSERT_FALSE(policy.is_ok()) << bad;
    EXPECT_NE(policy.status().message().find("--allowed-origins"), std::string::npos) << policy.status().message();
  }
}

}  // namespace
}  // namespace kvmesh
