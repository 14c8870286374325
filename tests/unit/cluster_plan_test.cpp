// kvmesh-plan against byte counts worked out here from the GPT architecture (not from the planner's
// code): GPT-3 175B on 8 and 16 H200s (141 GiB, 4.8 TB/s, 8 per node) and GPT-2 XL on one; its
// --kv-dtype takes exactly the names kvmesh-serve's does.
#include <gtest/gtest.h>

#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "coordinator/server_config.h"

namespace kvmesh::testing {
namespace {

const std::string kPlan = KVMESH_BIN_DIR "/tools/kvmesh-plan";
constexpr int64_t kBf16 = 2;                            // bytes per weight and per KV element
constexpr int64_t kUsable = 141ll * (1ll << 30) * 9 / 10;  // 141 GiB less the 10 % reserve, floored
constexpr double kBandwidth = 4.8e12;                   // bytes/s

// Elements one TP rank holds of one GPT-2 block: LayerNorms and the two row-parallel biases whole,
// the column-parallel matrices (qkv, fc1) and their biases by 1/tp of the columns, the row-parallel
// matrices (attn_out, fc2) by 1/tp of the rows.
int64_t block_elems(int64_t d, int64_t tp) {
  const int64_t ln = 2 * (2 * d);                     // ln_1, ln_2: weight + bias
  const int64_t qkv = d * (3 * d / tp) + 3 * d / tp;  // c_attn
  const int64_t attn_out = (d / tp) * d + d;          // c_proj
  const int64_t fc1 = d * (4 * d / tp) + 4 * d / tp;  // mlp.c_fc
  const int64_t fc2 = (4 * d / tp) * d + d;           // mlp.c_proj
  return ln + qkv + attn_out + fc1 + fc2;
}

// A page: every layer of the rank, K and V, 16 tokens, its heads of 128 (GPT-3) or 64 (GPT-2) dims.
int64_t page_bytes(int64_t layers, int64_t heads, int64_t head_dim) { return layers * 2 * 16 * heads * head_dim * kBf16; }

nlohmann::json plan_json(const std::string& args) {
  CommandResult r = run_command(kPlan + " --json --gpu-mem 141GiB --mem-bandwidth 4.8TB/s " + args, 60);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
}

const nlohmann::json* find_layout(const nlohmann::json& j, int tp, int pp) {
  for (const auto& l : j["layouts"]) {
    if (l["tp"] == tp && l["pp"] == pp) return &l;
  }
  return nullptr;
}

struct Expected {
  int64_t weight_bytes_max, kv_page_bytes, kv_pages, max_seqs, decode_bytes;
};

void expect_layout(const nlohmann::json& l, const Expected& e) {
  EXPECT_EQ(l["usable_bytes"].get<int64_t>(), kUsable);
  EXPECT_EQ(l["weight_bytes_max"].get<int64_t>(), e.weight_bytes_max);
  EXPECT_EQ(l["kv_page_bytes_max"].get<int64_t>(), e.kv_page_bytes);
  EXPECT_EQ(l["kv_pages"].get<int64_t>(), e.kv_pages);
  EXPECT_EQ(l["kv_bytes_max"].get<int64_t>(), e.kv_pages * e.kv_page_bytes);
  EXPECT_EQ(l["max_seqs"].get<int64_t>(), e.max_seqs);
  EXPECT_EQ(l["decode_bytes"].get<int64_t>(), e.decode_bytes);
  EXPECT_NEAR(l["decode_floor_ms"].get<double>(), static_cast<double>(e.decode_bytes) / kBandwidth * 1e3, 1e-6);
  EXPECT_TRUE(l["fits"].get<bool>());
}

// GPT-3 175B: 96 layers, d_model 12288, 96 heads of 128, vocabulary 50257, 2048 positions.
constexpr int64_t kD = 12288, kLayers = 96, kPositions = 2048;
constexpr int64_t kVocabRowsTp8 = 6283;  // 50257 padded to 50264 = 8 x 6283

TEST(ClusterPlan, Gpt3On8H200sTp8) {
  const nlohmann::json j = plan_json("--model synthetic:gpt3-175b --nodes 1 --gpus-per-node 8");
  ASSERT_FALSE(j.is_null());
  const nlohmann::json* l = find_layout(j, 8, 1);
  ASSERT_NE(l, nullptr);
  // One stage holds every layer, its 1/8 of wte (embedding and tied LM head), wpe and ln_f.
  const int64_t held = (kLayers * block_elems(kD, 8) + kVocabRowsTp8 * kD + kPositions * kD + 2 * kD) * kBf16;
  const int64_t page = page_bytes(kLayers, 12, 128);  // 9 MiB
  const int64_t pages = (kUsable - held) / page;
  // A decode step reads everything but wpe, of which it gathers one row per token.
  expect_layout(*l, {held, page, pages, pages / (2048 / 16), held - kPositions * kD * kBf16});
  EXPECT_EQ(page, 9ll << 20);
  EXPECT_EQ(pages, 9806);
  EXPECT_EQ(pages / 128, 76);

  // 175B x 2 bytes = 349 GB against 136 GB usable: one or two GPUs cannot hold the weights.
  std::set<std::pair<int, int>> fitting, expected_fit = {{3, 1}, {1, 3}, {4, 1}, {2, 2}, {1, 4}, {1, 5},
                                                         {6, 1}, {3, 2}, {2, 3}, {1, 6}, {1, 7}, {8, 1},
                                                         {4, 2}, {2, 4}, {1, 8}};
  for (const auto& x : j["layouts"]) {
    if (x["fits"].get<bool>()) fitting.insert({x["tp"].get<int>(), x["pp"].get<int>()});
  }
  EXPECT_EQ(fitting, expected_fit);
  EXPECT_EQ(j["layouts"].size(), 18u);  // tp in {1,2,3,4,6,8} (divides 96, fits a node) x pp
  EXPECT_EQ(j["n_params"].get<int64_t>(), 174604259328);
}

TEST(ClusterPlan, Gpt3On16H200sTp8Pp2) {
  const nlohmann::json j = plan_json("--model synthetic:gpt3-175b --nodes 2 --gpus-per-node 8");
  ASSERT_FALSE(j.is_null());
  const nlohmann::json* l = find_layout(j, 8, 2);
  ASSERT_NE(l, nullptr);
  EXPECT_EQ((*l)["nodes"].get<int>(), 2);
  // Stage 0: layers 0..47, wte rows (embedding) and wpe. Stage 1: layers 48..95, wte rows (LM head), ln_f.
  const int64_t blocks = 48 * block_elems(kD, 8);
  const int64_t held0 = (blocks + kVocabRowsTp8 * kD + kPositions * kD) * kBf16;
  const int64_t held1 = (blocks + kVocabRowsTp8 * kD + 2 * kD) * kBf16;
  ASSERT_GT(held0, held1);
  const int64_t page = page_bytes(48, 12, 128);  // 4.5 MiB
  const int64_t pages = (kUsable - held0) / page;  // the fuller stage sets the global page count
  // Stage 0 only gathers rows of wte and wpe; stage 1 reads its wte rows whole as the LM head.
  const int64_t decode = (held0 - (kVocabRowsTp8 + kPositions) * kD * kBf16) + held1;
  expect_layout(*l, {held0, page, pages, pages / 128, decode});
  EXPECT_EQ(pages, 24223);
  EXPECT_EQ(pages / 128, 189);
  // PP does not shorten a token: the same bytes are read per token as with tp=8 x pp=1.
  const nlohmann::json* one_node = find_layout(j, 8, 1);
  ASSERT_NE(one_node, nullptr);
  EXPECT_EQ((*one_node)["decode_bytes"].get<int64_t>(), decode);
  EXPECT_EQ(j["layouts"].size(), 36u);
}

TEST(ClusterPlan, Gpt2XlOnOneH200) {
  const nlohmann::json j = plan_json("--model synthetic:gpt2-xl --nodes 1 --gpus-per-node 1");
  ASSERT_FALSE(j.is_null());
  ASSERT_EQ(j["layouts"].size(), 1u);
  // GPT-2 XL: 48 layers, d_model 1600, 25 heads of 64, 1024 positions; 1,557,611,200 parameters.
  const int64_t d = 1600;
  const int64_t params = 48 * (12 * d * d + 13 * d) + (50257 + 1024) * d + 2 * d;
  ASSERT_EQ(params, 1557611200);
  const int64_t held = params * kBf16;
  const int64_t page = page_bytes(48, 25, 64);
  const int64_t pages = (kUsable - held) / page;
  expect_layout(j["layouts"][0], {held, page, pages, pages / (1024 / 16), held - 1024 * d * kBf16});
  EXPECT_EQ(pages, 27087);
  EXPECT_EQ(pages / 64, 423);
}

TEST(ClusterPlan, TextStatesTheFormulaAndTheRows) {
  CommandResult r = run_command(kPlan + " --model synthetic:gpt3-175b --gpus-per-node 8 --gpu-mem 141GiB "
                                        "--mem-bandwidth 4.8TB/s",
                                60);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("decode floor = sum over PP stages of max over the stage's TP ranks"), std::string::npos);
  EXPECT_NE(r.out.find(" 8 x 1       8      1     40.71 GiB     86.19 GiB    9.00 MiB       9806        76        9.10"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("does not fit"), std::string::npos) << "only fitting layouts without --all";
  EXPECT_NE(r.out.find("15 of 18 layouts fit."), std::string::npos);
}

// i8 pages: one byte per element, then (from the next 16-byte boundary) an fp32 scale per token,
// layer, K/V and head.
TEST(ClusterPlan, Gpt3On8H200sWithI8Kv) {
  const nlohmann::json j = plan_json("--model synthetic:gpt3-175b --gpus-per-node 8 --tp 8 --pp 1 --kv-dtype i8");
  ASSERT_EQ(j["layouts"].size(), 1u) << j.dump();
  EXPECT_EQ(j["kv_dtype"], "i8") << j.dump();
  const int64_t rows = kLayers * 2 * 16 * (96 / 8);  // (layer, K/V, token, head) rows of one page
  const int64_t page = (rows * 128 + 15) / 16 * 16 + rows * 4;
  EXPECT_EQ(j["layouts"][0]["kv_page_bytes_max"].get<int64_t>(), page);
  EXPECT_TRUE(j["layouts"][0]["fits"].get<bool>());
}

// Every --kv-dtype spelling kvmesh-serve takes, kvmesh-plan takes; what the server refuses, the
// planner refuses too (exit 2, naming the flag).
TEST(ClusterPlan, KvDtypeNamesAreTheServers) {
  for (const char* name : {"f32", "fp32", "bf16", "f16", "fp16", "i8", "int8", "half", "float16", "BF16", "u8",
                           "i32", "int4", ""}) {
    const char* argv[] = {"kvmesh-serve", "--kv-dtype", name};
    const bool server_takes = parse_server_flags(3, argv).exit_code < 0;
    CommandResult r = run_command(kPlan + " --model synthetic:gpt2-xl --kv-dtype " + shell_quote(name), 60);
    EXPECT_EQ(r.exit_code != 2, server_takes) << "'" << name << "': " << r.err;
    if (!server_takes) {
      EXPECT_NE(r.err.find("--kv-dtype"), std::string::npos) << r.err;
    }
  }
  const char* i8[] = {"kvmesh-serve", "--kv-dtype", "i8"};
  EXPECT_LT(parse_server_flags(3, i8).exit_code, 0);
}

TEST(ClusterPlan, ErrorsAndNothingFits) {
  CommandResult none = run_command(kPlan + " --model synthetic:gpt3-175b --gpus-per-node 2 --gpu-mem 24GB", 60);
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.out.find("does not fit: weights"), std::string::npos) << none.out;
  CommandResult context = run_command(kPlan + " --model synthetic:gpt3-175b --context 4096", 60);
  EXPECT_EQ(context.exit_code, 2);
  EXPECT_NE(context.err.find("--context 4096 exceeds the model's 2048 positions"), std::string::npos) << context.err;
  CommandResult mem = run_command(kPlan + " --model synthetic:gpt2-xl --gpu-mem lots", 60);
  EXPECT_EQ(mem.exit_code, 2);
  EXPECT_NE(mem.err.find("--gpu-mem"), std::string::npos) << mem.err;
  CommandResult bw = run_command(kPlan + " --model synthetic:gpt2-xl --mem-bandwidth fast", 60);
  EXPECT_EQ(bw.exit_code, 2);
  CommandResult model = run_command(kPlan + " --model synthetic:gpt5", 60);
  EXPECT_EQ(model.exit_code, 1);
  EXPECT_NE(model.err.find("unknown synthetic model"), std::string::npos) << model.err;
}

}  // namespace
}  // namespace kvmesh::testing
