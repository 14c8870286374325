// closest_flag and the unknown-flag message: distances, the reach limit, "=value", ties.
#include <gtest/gtest.h>

#include "common/flag_suggest.h"

namespace kvmesh {
namespace {

const std::vector<std::string> kKnown = {"--num-requests", "--num-prompts", "--concurrency", "--rate",
                                         "--request-rate", "--seed", "-h", "--help"};

TEST(FlagSuggest, EditDistance) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("--seed", "--seed"), 0u);
  EXPECT_EQ(edit_distance("--sede", "--seed"), 2u);
}

TEST(FlagSuggest, NearestWithinReach) {
  EXPECT_EQ(closest_flag("--num-prompt", kKnown), "--num-prompts");
  EXPECT_EQ(closest_flag("--concurency", kKnown), "--concurrency");
  EXPECT_EQ(closest_flag("--concurency=4", kKnown), "--concurrency");
  EXPECT_EQ(closest_flag("--seeds", kKnown), "--seed");
  EXPECT_EQ(closest_flag("--rates", kKnown), "--rate");
  EXPECT_EQ(closest_flag("--xyzzy-frobnicate", kKnown), "");  // nothing near
  EXPECT_EQ(closest_flag("--num-requests", {}), "");
}

TEST(FlagSuggest, Message) {
  EXPECT_EQ(unknown_flag_message("--num-prompt=5", kKnown), "unknown flag --num-prompt (did you mean --num-prompts?)");
  EXPECT_EQ(unknown_flag_message("--xyzzy-frobnicate", kKnown), "unknown flag --xyzzy-frobnicate");
}

TEST(FlagSuggest, FirstFlag) {
  EXPECT_EQ(first_flag({"5", "--num-prompt"}), "--num-prompt");
  EXPECT_EQ(first_flag({"-1", "-x"}), "-x");
  EXPECT_EQ(first_flag({"5", "-", "--"}), "");
}

}  // namespace
}  // namespace kvmesh
