// Tests of common/config: Hugging Face config.json parsing (fixture and variants), validation
// errors that name the file and field, the written config.json, the parameter count, and the
// names --kv-dtype takes.
#include "common/config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace kvmesh {
namespace {

const std::string kFixtureDir = KVMESH_TEST_DATA_DIR "/hf-gpt2-4l32d";

std::string minimal_config(const std::string& extra = "") {
  std::string s = R"({"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 128, "vocab_size": 50257)";
  if (!extra.empty()) s += ", " + extra;
  return s + "}";
}

// Expects a parse error whose message names the source and contains `needle`.
void expect_error(const std::string& json_text, const std::string& needle) {
  auto r = parse_model_config(json_text, "cfg/config.json");
  ASSERT_FALSE(r.is_ok()) << json_text;
  EXPECT_EQ(r.status().code(), StatusCode::invalid_argument) << r.status().to_string();
  EXPECT_NE(r.status().message().find("cfg/config.json"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

TEST(ModelConfig, LoadsHuggingFaceFixture) {
  auto r = load_model_config(kFixtureDir + "/config.json");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const ModelConfig& c = *r;
  EXPECT_EQ(c.name, "hf-gpt2-4l32d");
  EXPECT_EQ(c.n_layer, 4);
  EXPECT_EQ(c.n_embd, 32);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.head_dim(), 8);
  EXPECT_EQ(c.n_inner, 128);  // null -> 4 * n_embd
  EXPECT_EQ(c.n_positions, 512);
  EXPECT_EQ(c.vocab_size, 50257);
  EXPECT_EQ(c.activation, Activation::gelu_new);
  EXPECT_FLOAT_EQ(c.layer_norm_epsilon, 1e-5f);
  EXPECT_EQ(c.bos_token_id, 50256);
  EXPECT_EQ(c.eos_token_id, 50256);
  EXPECT_TRUE(c.validate().is_ok());
}

TEST(ModelConfig, DefaultsAndFallbacks) {
  auto r = parse_model_config(
      R"({"n_layer": 2, "n_embd": 64, "n_head": 4, "n_ctx": 256, "vocab_size": 1000, "n_inner": 100,
          "eos_token_id": null, "bos_token_id": 7, "layer_norm_epsilon": 1e-6})",
      "x.json");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->n_positions, 256);  // from n_ctx
  EXPECT_EQ(r->n_inner, 100);
  EXPECT_EQ(r->eos_token_id, -1);  // null: none
  EXPECT_EQ(r->bos_token_id, 7);
  EXPECT_FLOAT_EQ(r->layer_norm_epsilon, 1e-6f);
  EXPECT_EQ(r->activation, Activation::gelu_new);  // absent

  auto d = parse_model_config(minimal_config(), "x.json");
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->eos_token_id, 50256);  // absent: GPT-2's <|endoftext|>
  EXPECT_EQ(d->n_inner, 256);
  auto both = parse_model_config(minimal_config(R"("n_ctx": 64, "model_type": "gpt2")"), "x.json");
  ASSERT_TRUE(both.is_ok());
  EXPECT_EQ(both->n_positions, 128);  // n_positions wins over n_ctx
}

TEST(ModelConfig, Activations) {
  const std::pair<const char*, Activation> cases[] = {{"gelu_new", Activation::gelu_new},
                                                      {"gelu_pytorch_tanh", Activation::gelu_new},
                                                      {"gelu", Activation::gelu},
                                                      {"gelu_fast", Activation::gelu_fast},
                                                      {"relu", Activation::relu}};
  for (const auto& [name, act] : cases) {
    auto r = parse_model_config(minimal_config(std::string(R"("activation_function": ")") + name + "\""), "x");
    ASSERT_TRUE(r.is_ok()) << name << ": " << r.status().to_string();
    EXPECT_EQ(r->activation, act) << name;
  }
  EXPECT_STREQ(activation_name(Activation::gelu_fast), "gelu_fast");
  expect_error(minimal_config(R"("activation_function": "xyz")"), "unknown activation_function 'xyz'");
  expect_error(minimal_config(R"("activation_function": 3)"), "activation_function");
}

TEST(ModelConfig, MalformedJson) {
  expect_error("{\"n_layer\": 2,", "not valid JSON");
  expect_error("", "not valid JSON");
  expect_error("[1, 2]", "not a JSON object");
}

TEST(ModelConfig, MissingAndMistypedFields) {
  expect_error(R"({"n_embd": 64, "n_head": 4, "n_positions": 128, "vocab_size": 10})", "'n_layer'");
  expect_error(R"({"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 10})", "n_positions");
  expect_error(R"({"n_layer": "2", "n_embd": 64, "n_head": 4, "n_positions": 128, "vocab_size": 10})",
               "'n_layer' must be an integer");
  expect_error(R"({"n_layer": 2.5, "n_embd": 64, "n_head": 4, "n_positions": 128, "vocab_size": 10})",
               "'n_layer' must be an integer");
  expect_error(R"({"n_layer": 2, "n_embd": 64, "n_head": true, "n_positions": 128, "vocab_size": 10})",
               "'n_head' must be an integer");
  expect_error(minimal_config(R"("n_inner": "big")"), "'n_inner'");
  expect_error(minimal_config(R"("layer_norm_epsilon": "small")"), "'layer_norm_epsilon'");
  expect_error(minimal_config(R"("eos_token_id": [1, 2])"), "'eos_token_id'");
  expect_error(R"({"n_layer": 99999999999, "n_embd": 64, "n_head": 4, "n_positions": 1, "vocab_size": 10})",
               "out of range");
  expect_error(minimal_config(R"("model_type": "llama")"), "model_type 'llama'");
  expect_error(minimal_config(R"("model_type": 2)"), "model_type");
}

TEST(ModelConfig, Validation) {
  expect_error(R"({"n_layer": 2, "n_embd": 30, "n_head": 4, "n_positions": 128, "vocab_size": 50257})",
               "n_embd (30) is not divisible by n_head (4)");
  expect_error(R"({"n_layer": 0, "n_embd": 32, "n_head": 4, "n_positions": 128, "vocab_size": 50257})", "n_layer");
  expect_error(R"({"n_layer": 2, "n_embd": 32, "n_head": 0, "n_positions": 128, "vocab_size": 50257})", "n_head");
  expect_error(R"({"n_layer": 2, "n_embd": -32, "n_head": 4, "n_positions": 128, "vocab_size": 50257})", "n_embd");
  expect_error(R"({"n_layer": 2000, "n_embd": 32, "n_head": 4, "n_positions": 128, "vocab_size": 50257})",
               "n_layer");
  expect_error(R"({"n_layer": 2, "n_embd": 32, "n_head": 4, "n_positions": 128, "vocab_size": 20000000})",
               "vocab_size");
  expect_error(R"({"n_layer": 2, "n_embd": 131072, "n_head": 4, "n_positions": 128, "vocab_size": 100})", "n_embd");
  expect_error(R"({"n_layer": 2, "n_embd": 32, "n_head": 4, "n_positions": 128, "vocab_size": 100})",
               "_token_id = 50256");  // the default is outside a 100-token vocabulary
  expect_error(minimal_config(R"("layer_norm_epsilon": -1)"), "layer_norm_epsilon");
  expect_error(minimal_config(R"("n_inner": -5)"), "n_inner");
}

// Switches that would change the arithmetic kvmesh implements are refused, not ignored.
TEST(ModelConfig, SwitchesOfOtherArithmeticAreRefused) {
  expect_error(minimal_config(R"("scale_attn_weights": false)"), "scale_attn_weights = false is not supported");
  expect_error(minimal_config(R"("scale_attn_by_inverse_layer_idx": true)"),
               "scale_attn_by_inverse_layer_idx = true is not supported");
  expect_error(minimal_config(R"("add_cross_attention": true)"), "add_cross_attention = true");
  expect_error(minimal_config(R"("tie_word_embeddings": false)"), "tie_word_embeddings = false");
  expect_error(minimal_config(R"("scale_attn_weights": "yes")"), "'scale_attn_weights' must be a boolean");
  // The values kvmesh computes, null, and an fp32 upcast it always does are all fine.
  for (const char* ok : {R"("scale_attn_weights": true, "scale_attn_by_inverse_layer_idx": false)",
                         R"("add_cross_attention": null, "tie_word_embeddings": true)",
                         R"("reorder_and_upcast_attn": true)"}) {
    EXPECT_TRUE(parse_model_config(minimal_config(ok), "cfg/config.json").is_ok()) << ok;
  }
}

TEST(ModelConfig, MissingFileIsNotFound) {
  auto r = load_model_config("/nonexistent/dir/config.json");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::not_found);
  EXPECT_NE(r.status().message().find("/nonexistent/dir/config.json"), std::string::npos);
}

TEST(ModelConfig, WrittenJsonReadsBack) {
  ModelConfig c;
  c.name = "my-model";
  c.n_layer = 3;
  c.n_embd = 48;
  c.n_head = 6;
  c.n_inner = 100;
  c.n_positions = 64;
  c.vocab_size = 500;
  c.layer_norm_epsilon = 1e-5f;
  c.activation = Activation::gelu;
  c.bos_token_id = 499;
  c.eos_token_id = -1;
  const std::string text = model_config_to_json(c);
  auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["model_type"], "gpt2");
  EXPECT_EQ(j["architectures"][0], "GPT2LMHeadModel");
  EXPECT_EQ(j["tie_word_embeddings"], true);
  EXPECT_EQ(j["layer_norm_epsilon"].get<double>(), 1e-5);  // written as the short decimal
  EXPECT_TRUE(j["eos_token_id"].is_null());
  auto r = parse_model_config(text, "written");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->n_layer, 3);
  EXPECT_EQ(r->n_embd, 48);
  EXPECT_EQ(r->n_head, 6);
  EXPECT_EQ(r->n_inner, 100);
  EXPECT_EQ(r->n_positions, 64);
  EXPECT_EQ(r->vocab_size, 500);
  EXPECT_EQ(r->activation, Activation::gelu);
  EXPECT_EQ(r->bos_token_id, 499);
  EXPECT_EQ(r->eos_token_id, -1);
  EXPECT_EQ(r->layer_norm_epsilon, 1e-5f);

  c.n_inner = 4 * c.n_embd;
  EXPECT_TRUE(nlohmann::json::parse(model_config_to_json(c))["n_inner"].is_null());
}

TEST(ModelConfig, ParameterCount) {
  ModelConfig c;
  c.n_layer = 12;
  c.n_embd = 768;
  c.n_head = 12;
  c.n_inner = 3072;
  c.n_positions = 1024;
  c.vocab_size = 50257;
  EXPECT_EQ(c.n_params(), 124439808);  // GPT-2 small, LM head tied
  c.n_layer = 1;
  c.n_embd = 2;
  c.n_inner = 3;
  c.n_positions = 5;
  c.vocab_size = 7;
  // wte 14 + wpe 10 + ln1 4 + c_attn 12+6 + c_proj 4+2 + ln2 4 + c_fc 6+3 + mlp c_proj 6+2 + ln_f 4
  EXPECT_EQ(c.n_params(), 14 + 10 + 4 + 18 + 6 + 4 + 9 + 8 + 4);
}

// --kv-dtype's names (kvmesh-serve and kvmesh-plan both parse with these): exactly the listed
// spellings, each to the dtype parse_dtype gives it; nothing else, not even another case.
TEST(KvDtypeNames, ParseExactlyTheListedNames) {
  EXPECT_EQ(kv_dtype_names(), (std::vector<std::string>{"f32", "fp32", "bf16", "f16", "fp16", "i8", "int8"}));
  for (const std::string& name : kv_dtype_names()) {
    DType got = DType::u8, want = DType::u8;
    ASSERT_TRUE(parse_kv_dtype(name, &got)) << name;
    ASSERT_TRUE(parse_dtype(name, &want)) << name;
    EXPECT_EQ(got, want) << name;
  }
  for (const char* name : {"", "half", "float16", "BF16", "I8", "u8", "i32", "int4", "f32 "}) {
    DType got = DType::i64;
    EXPECT_FALSE(parse_kv_dtype(name, &got)) << name;
    EXPECT_EQ(got, DType::i64) << name;
  }
}

}  // namespace
}  // namespace kvmesh

namespace kvmesh {
namespace {

// ---- Families other than GPT-2: OPT and GPT-Neo configs fill the same description ----

TEST(ModelFamilies, LoadsOptReference) {
  auto r = load_model_config(KVMESH_TEST_DATA_DIR "/hf-opt-3l32d/config.json");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->model_type, "opt");
  EXPECT_EQ(r->n_layer, 3);
  EXPECT_EQ(r->n_embd, 32);
  EXPECT_EQ(r->n_head, 4);
  EXPECT_EQ(r->n_inner, 128);  // ffn_dim
  EXPECT_EQ(r->n_positions, 64);
  EXPECT_EQ(r->position_offset, 2);
  EXPECT_EQ(r->activation, Activation::relu);
  EXPECT_TRUE(r->prepend_bos);
  EXPECT_TRUE(r->vocab_padded);
  EXPECT_EQ(r->bos_token_id, 2);
  EXPECT_EQ(r->eos_token_id, 2);
  EXPECT_TRUE(r->qkv_bias);
  EXPECT_FLOAT_EQ(r->attention_scale(), 1.0f / std::sqrt(8.0f));
  EXPECT_EQ(r->window(0), 0);
}

TEST(ModelFamilies, LoadsGptNeoReference) {
  auto r = load_model_config(KVMESH_TEST_DATA_DIR "/hf-gptneo-4l32d/config.json");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->model_type, "gpt_neo");
  EXPECT_EQ(r->n_layer, 4);
  EXPECT_EQ(r->n_inner, 128);  // intermediate_size null -> 4 * hidden_size
  EXPECT_EQ(r->layer_window, (std::vector<int>{0, 7, 0, 7}));
  EXPECT_FALSE(r->scale_attention);
  EXPECT_FLOAT_EQ(r->attention_scale(), 1.0f);
  EXPECT_FALSE(r->qkv_bias);
  EXPECT_FALSE(r->prepend_bos);
  EXPECT_EQ(r->position_offset, 0);
  EXPECT_EQ(r->activation, Activation::gelu_new);
}

std::string opt_config(const std::string& extra = "") {
  std::string s = R"({"model_type": "opt", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                      "ffn_dim": 256, "max_position_embeddings": 128, "vocab_size": 1000)";
  return s + (extra.empty() ? "" : ", " + extra) + "}";
}

std::string neo_config(const std::string& extra = "") {
  std::string s = R"({"model_type": "gpt_neo", "num_layers": 4, "hidden_size": 64, "num_heads": 4,
                      "max_position_embeddings": 128, "vocab_size": 1000, "bos_token_id": 0, "eos_token_id": 0)";
  return s + (extra.empty() ? "" : ", " + extra) + "}";
}

TEST(ModelFamilies, BadConfigsNameTheField) {
  expect_error(neo_config(R"("attention_types": [[["global", "local"], 3]])"), "attention_types describes 6 layers but num_layers is 4");
  expect_error(neo_config(R"("attention_types": [[["global", "sliding"], 2]])"), "attention_types");
  expect_error(neo_config(R"("attention_types": "global")"), "attention_types");
  expect_error(neo_config(R"("attention_types": [[["global", "local"], 2]], "window_size": 0)"), "window_size = 0");
  expect_error(neo_config(R"("attention_types": [[["global", "local"], 2]], "num_heads": 5)"),
               "hidden_size (64) is not divisible by num_heads (5)");
  expect_error(opt_config(R"("num_attention_heads": 6)"), "hidden_size (64) is not divisible by num_attention_heads (6)");
  expect_error(opt_config(R"("word_embed_proj_dim": 32)"), "word_embed_proj_dim = 32");
  expect_error(opt_config(R"("do_layer_norm_before": false)"), "do_layer_norm_before = false is not supported");
  expect_error(opt_config(R"("enable_bias": false)"), "enable_bias = false");
  expect_error(opt_config(R"("tie_word_embeddings": 0)"), "'tie_word_embeddings' must be a boolean");
  expect_error(opt_config(R"("model_type": "bloom")"), "model_type 'bloom' is not supported");
  // One line each.
  auto r = parse_model_config(opt_config(R"("word_embed_proj_dim": 32)"), "cfg/config.json");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
}

TEST(ModelFamilies, UntiedHeads) {
  auto r = load_model_config(KVMESH_TEST_DATA_DIR "/hf-opt-untied-2l32d/config.json");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_FALSE(r->tied_head);
  auto tied = load_model_config(KVMESH_TEST_DATA_DIR "/hf-opt-3l32d/config.json");
  ASSERT_TRUE(tied.is_ok());
  EXPECT_TRUE(tied->tied_head);
  auto untied = parse_model_config(model_config_to_json(*r), "written");
  ASSERT_TRUE(untied.is_ok()) << untied.status().to_string();
  EXPECT_FALSE(untied->tied_head);
  EXPECT_EQ(untied->n_params(), r->n_params());
  EXPECT_EQ(r->n_params() - 512 * 32, [&] {  // the head's rows counted once more than a tied model
    ModelConfig t = *r;
    t.tied_head = true;
    return t.n_params();
  }());
}

TEST(ModelFamilies, WrittenConfigsReadBack) {
  for (const std::string& text : {opt_config(), neo_config(R"("attention_types": [[["global", "local"], 2]], "window_size": 12)")}) {
    auto c = parse_model_config(text, "in");
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    auto back = parse_model_config(model_config_to_json(*c), "written");
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_EQ(back->model_type, c->model_type);
    EXPECT_EQ(back->n_layer, c->n_layer);
    EXPECT_EQ(back->n_inner, c->n_inner);
    EXPECT_EQ(back->layer_window, c->layer_window);
    EXPECT_EQ(back->position_offset, c->position_offset);
    EXPECT_EQ(back->scale_attention, c->scale_attention);
    EXPECT_EQ(back->bos_token_id, c->bos_token_id);
    EXPECT_EQ(back->n_params(), c->n_params());
  }
}

TEST(ModelFamilies, ParameterCountsOfPublishedShapes) {
  auto opt = parse_model_config(R"({"model_type": "opt", "num_hidden_layers": 12, "hidden_size": 768,
      "num_attention_heads": 12, "ffn_dim": 3072, "max_position_embeddings": 2048, "vocab_size": 50272})", "opt-125m");
  ASSERT_TRUE(opt.is_ok()) << opt.status().to_string();
  EXPECT_EQ(opt->n_params(), 125239296);  // facebook/opt-125m
  auto neo = parse_model_config(R"({"model_type": "gpt_neo", "num_layers": 12, "hidden_size": 768, "num_heads": 12,
      "attention_types": [[["global", "local"], 6]], "max_position_embeddings": 2048, "vocab_size": 50257})", "neo");
  ASSERT_TRUE(neo.is_ok()) << neo.status().to_string();
  EXPECT_EQ(neo->n_params(), 125198592);  // EleutherAI/gpt-neo-125M
}

}  // namespace
}  // namespace kvmesh
