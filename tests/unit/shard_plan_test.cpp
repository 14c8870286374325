// ShardPlan: per-rank ownership adds up to the whole model for every layout, and ranges are right.
#include <gtest/gtest.h>

#include <string>

#include "common/synthetic_models.h"
#include "worker/shard_plan.h"

namespace kvmesh {
namespace {

TEST(ShardPlan, Gpt3_175bAt8x8OwnsEveryParameterOnce) {
  auto c = synthetic_model_config("synthetic:gpt3-175b");
  ASSERT_TRUE(c.is_ok());
  EXPECT_NEAR(static_cast<double>(c->n_params()), 174.6e9, 0.2e9);  // the paper's "175B"
  CacheConfig cache;
  cache.device_bytes = 8ll << 30;
  const auto shards = plan_shards(*c, 8, 8, cache);
  ASSERT_EQ(shards.size(), 64u);
  int64_t owned = 0;
  for (const auto& s : shards) {
    owned += s.weight_elems_owned;
    EXPECT_EQ(s.layers.size(), 12);  // 96 layers over 8 stages
    EXPECT_EQ(s.heads.size(), 12);   // 96 heads over 8 ranks
    EXPECT_GE(s.weight_elems_held, s.weight_elems_owned);
  }
  EXPECT_EQ(owned, c->n_params());
  const std::string table = format_shard_plan(*c, 8, 8, cache, DType::bf16);
  EXPECT_NE(table.find("total weights owned: " + std::to_string(c->n_params() * 2) + " bytes"),
            std::string::npos)
      << table;
}

TEST(ShardPlan, UnevenLayersAndPaddedVocabulary) {
  ModelConfig c;
  c.name = "t";
  c.n_layer = 5;
  c.n_embd = 64;
  c.n_head = 4;
  c.n_inner = 256;
  c.n_positions = 32;
  c.vocab_size = 101;  // padded to 104 over tp 4
  for (int tp : {1, 2, 4}) {
    for (int pp : {1, 2, 3, 5}) {
      const auto shards = plan_shards(c, tp, pp, CacheConfig{});
      int64_t owned = 0, layers = 0;
      for (const auto& s : shards) {
        owned += s.weight_elems_owned;
        if (s.tp_rank == 0) layers += s.layers.size();
      }
      EXPECT_EQ(owned, c.n_params()) << "tp " << tp << " pp " << pp;
      EXPECT_EQ(layers, 5);
    }
  }
  const ParallelLayout last{4, 1, 3};
  EXPECT_EQ(last.vocab(c).begin, 78);
  EXPECT_EQ(last.vocab(c).end, 104);
}

// OPT (a position table 2 rows longer, q/k/v biases) and GPT-Neo (no q/k/v biases), and a
// separate LM head: every parameter still owned exactly once, for the published shapes.
TEST(ShardPlan, OtherFamiliesOwnEveryParameterOnce) {
  for (const char* name : {"synthetic:opt-125m", "synthetic:opt-66b", "synthetic:gpt-neo-125m", "synthetic:gpt-neo-2.7b"}) {
    auto c = synthetic_model_config(name);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    c->tied_head = std::string(name).find("66b") == std::string::npos;  // one with a separate head
    for (int tp : {1, 2, 4}) {
      for (int pp : {1, 3}) {
        int64_t owned = 0;
        for (const auto& s : plan_shards(*c, tp, pp, CacheConfig{})) owned += s.weight_elems_owned;
        EXPECT_EQ(owned, c->n_params()) << name << " tp " << tp << " pp " << pp;
      }
    }
  }
  EXPECT_NEAR(static_cast<double>(synthetic_model_config("synthetic:opt-175b")->n_params()), 174.6e9, 0.5e9);
  EXPECT_NEAR(static_cast<double>(synthetic_model_config("synthetic:gpt-neo-1.3b")->n_params()), 1.3157e9, 0.01e9);
}

}  // namespace
}  // namespace kvmesh
