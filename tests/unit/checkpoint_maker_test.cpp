// Tests of common/checkpoint_maker and kvmesh-ckpt: a tiny random GPT-2 checkpoint reopens with
// every tensor in HF layout, is byte-identical for a seed, and reads back in f16/bf16; kvmesh-ckpt's
// progress is redrawn in place on a terminal and a few plain lines anywhere else.
#include "common/checkpoint_maker.h"
#include "common/families/family.h"

#include <gtest/gtest.h>

#include "temp_dir.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace kvmesh {
namespace {

namespace fs = std::filesystem;

using ::kvmesh::testing::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

CheckpointSpec tiny_spec(const std::string& out_dir, DType dtype = DType::f32, uint64_t seed = 7) {
  CheckpointSpec spec;
  spec.out_dir = out_dir;
  spec.config.name = "tiny";
  spec.config.n_layer = 2;
  spec.config.n_embd = 64;
  spec.config.n_head = 4;
  spec.config.n_inner = 256;
  spec.config.n_positions = 32;
  spec.config.vocab_size = 1000;
  spec.config.bos_token_id = 999;
  spec.config.eos_token_id = 999;
  spec.dtype = dtype;
  spec.seed = seed;
  return spec;
}

double mean_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return s / static_cast<double>(v.size());
}

double std_of(const std::vector<float>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (float x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

TEST(CheckpointMaker, TinyModelReopensWithEveryTensor) {
  TempDir tmp;
  const std::string out = tmp.sub("tiny");
  CheckpointSpec spec = tiny_spec(out);
  int calls = 0;
  uint64_t last_done = 0, last_total = 0;
  spec.progress = [&](const std::string&, uint64_t done, uint64_t total) {
    ++calls;
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
  };
  Status st = make_random_checkpoint(spec);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  const auto headers = model_tensor_headers(spec.config, DType::f32);
  EXPECT_EQ(headers.size(), 2u + 12u * 2u + 2u);
  EXPECT_EQ(calls, static_cast<int>(headers.size()));
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(last_total, static_cast<uint64_t>(spec.config.n_params()) * 4u);
  EXPECT_TRUE(fs::exists(out + "/vocab.json"));
  EXPECT_TRUE(fs::exists(out + "/merges.txt"));
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.tmp"));

  auto config = load_model_config(out + "/config.json");
  ASSERT_TRUE(config.is_ok()) << config.status().to_string();
  EXPECT_EQ(config->name, "tiny");
  EXPECT_EQ(config->n_layer, 2);
  EXPECT_EQ(config->n_embd, 64);
  EXPECT_EQ(config->n_head, 4);
  EXPECT_EQ(config->n_inner, 256);
  EXPECT_EQ(config->n_positions, 32);
  EXPECT_EQ(config->vocab_size, 1000);
  EXPECT_EQ(config->eos_token_id, 999);

  auto ck = Checkpoint::open_dir(out);
  ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
  EXPECT_EQ((*ck)->tensor_names().size(), headers.size());
  for (const TensorHeader& h : headers) {
    const TensorInfo* info = (*ck)->find(h.name, nullptr);
    ASSERT_NE(info, nullptr) << h.name;
    EXPECT_EQ(info->shape, h.shape) << h.name;
    EXPECT_EQ(info->dtype, DType::f32);
  }
  auto shape = [&](const std::string& name) { return *(*ck)->shape(name); };
  EXPECT_EQ(shape("transformer.wte.weight"), (std::vector<int64_t>{1000, 64}));
  EXPECT_EQ(shape("transformer.wpe.weight"), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(shape("transformer.h.1.attn.c_attn.weight"), (std::vector<int64_t>{64, 192}));
  EXPECT_EQ(shape("transformer.h.1.attn.c_attn.bias"), (std::vector<int64_t>{192}));
  EXPECT_EQ(shape("transformer.h.0.attn.c_proj.weight"), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(shape("transformer.h.0.mlp.c_fc.weight"), (std::vector<int64_t>{64, 256}));
  EXPECT_EQ(shape("transformer.h.0.mlp.c_fc.bias"), (std::vector<int64_t>{256}));
  EXPECT_EQ(shape("transformer.h.0.mlp.c_proj.weight"), (std::vector<int64_t>{256, 64}));
  EXPECT_EQ(shape("transformer.h.0.mlp.c_proj.bias"), (std::vector<int64_t>{64}));
  EXPECT_EQ(shape("transformer.ln_f.weight"), (std::vector<int64_t>{64}));
  EXPECT_EQ((*ck)->find("lm_head.weight", nullptr), nullptr);  // tied to wte

  std::vector<float> wte(1000 * 64), ln(64), bias(192);
  ASSERT_TRUE((*ck)->read_f32("wte.weight", 0, 1000, 0, 64, wte.data()).is_ok());
  ASSERT_TRUE((*ck)->read_f32("h.1.ln_2.weight", 0, 1, 0, 64, ln.data()).is_ok());
  ASSERT_TRUE((*ck)->read_f32("h.1.attn.c_attn.bias", 0, 1, 0, 192, bias.data()).is_ok());
  EXPECT_NEAR(mean_of(wte), 0.0, 0.002);
  EXPECT_NEAR(std_of(wte), 0.02, 0.002);
  EXPECT_NEAR(mean_of(ln), 1.0, 0.03);
  EXPECT_GT(std_of(ln), 0.0);   // perturbed, so tests exercise LayerNorm weights
  EXPECT_GT(std_of(bias), 0.0);  // and biases
}

TEST(CheckpointMaker, SameSeedSameBytes) {
  TempDir tmp;
  auto spec = [&](const char* dir, uint64_t seed, int n_threads) {
    CheckpointSpec s = tiny_spec(tmp.sub(dir), DType::f32, seed);
    s.config.vocab_size = 9000;  // wte spans several random-stream chunks
    s.n_threads = n_threads;
    return s;
  };
  ASSERT_TRUE(make_random_checkpoint(spec("a", 5, 1)).is_ok());
  ASSERT_TRUE(make_random_checkpoint(spec("b", 5, 3)).is_ok());  // thread count does not matter
  ASSERT_TRUE(make_random_checkpoint(spec("c", 6, 0)).is_ok());
  const std::string a = slurp(tmp.sub("a") + "/model.safetensors");
  EXPECT_GT(a.size(), 1000u);
  EXPECT_EQ(a, slurp(tmp.sub("b") + "/model.safetensors"));
  EXPECT_NE(a, slurp(tmp.sub("c") + "/model.safetensors"));
  EXPECT_EQ(slurp(tmp.sub("a") + "/config.json"), slurp(tmp.sub("b") + "/config.json"));
}

TEST(CheckpointMaker, HalfPrecisionVariantsRead) {
  TempDir tmp;
  ASSERT_TRUE(make_random_checkpoint(tiny_spec(tmp.sub("f32"), DType::f32)).is_ok());
  auto ref = Checkpoint::open_dir(tmp.sub("f32"));
  ASSERT_TRUE(ref.is_ok());
  std::vector<float> expect(64 * 32);
  ASSERT_TRUE((*ref)->read_f32("h.0.mlp.c_fc.weight", 0, 64, 32, 64, expect.data()).is_ok());
  for (DType dtype : {DType::f16, DType::bf16}) {
    const std::string out = tmp.sub(dtype_name(dtype));
    ASSERT_TRUE(make_random_checkpoint(tiny_spec(out, dtype)).is_ok());
    auto ck = Checkpoint::open_dir(out);
    ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
    EXPECT_EQ((*ck)->find("wte.weight", nullptr)->dtype, dtype);
    EXPECT_LT(fs::file_size(out + "/model.safetensors"), fs::file_size(tmp.sub("f32") + "/model.safetensors"));
    std::vector<float> got(64 * 32);
    ASSERT_TRUE((*ck)->read_f32("h.0.mlp.c_fc.weight", 0, 64, 32, 64, got.data()).is_ok());
    const double rel = dtype == DType::f16 ? 1.0 / 1024 : 1.0 / 128;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], expect[i], std::fabs(expect[i]) * rel + 1e-7) << dtype_name(dtype) << " " << i;
    }
    EXPECT_TRUE(load_model_config(out + "/config.json").is_ok());
    EXPECT_NE(slurp(out + "/config.json").find(dtype == DType::f16 ? "\"float16\"" : "\"bfloat16\""),
              std::string::npos);
  }
}

TEST(CheckpointMaker, RejectsBadSpecs) {
  TempDir tmp;
  CheckpointSpec spec = tiny_spec(tmp.sub("bad"));
  spec.config.n_head = 5;  // 64 % 5 != 0
  Status st = make_random_checkpoint(spec);
  EXPECT_EQ(st.code(), StatusCode::invalid_argument);
  EXPECT_NE(st.message().find("not divisible"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(tmp.sub("bad") + "/model.safetensors"));
  spec = tiny_spec(tmp.sub("bad"), DType::i8);
  EXPECT_EQ(make_random_checkpoint(spec).code(), StatusCode::invalid_argument);
  EXPECT_FALSE(preset_model_config("gpt5").is_ok());
  auto gpt2 = preset_model_config("gpt2-124m");
  ASSERT_TRUE(gpt2.is_ok());
  EXPECT_EQ(gpt2->n_params(), 124439808);
  auto tiny = preset_model_config("tiny");
  ASSERT_TRUE(tiny.is_ok());
  EXPECT_TRUE(tiny->validate().is_ok());
}

// OPT and GPT-Neo checkpoints carry their families' Hugging Face names, shapes and config.json
// fields, and read back as the same description.
TEST(CheckpointMaker, OtherFamiliesInHuggingFaceLayout) {
  TempDir tmp;
  for (const ModelFamily* family : {&opt_family(), &gpt_neo_family()}) {
    const std::string out = tmp.sub(family->arch);
    CheckpointSpec spec = tiny_spec(out);
    family->set_defaults(&spec.config);
    spec.config.bos_token_id = spec.config.eos_token_id = 2;
    spec.copy_tokenizer = false;
    if (!spec.config.layer_window.empty()) spec.config.layer_window[1] = 5;
    ASSERT_TRUE(make_random_checkpoint(spec).is_ok()) << family->arch;
    auto config = load_model_config(out + "/config.json");
    ASSERT_TRUE(config.is_ok()) << config.status().to_string();
    EXPECT_EQ(config->model_type, family->model_type);
    EXPECT_EQ(config->layer_window, spec.config.layer_window);
    EXPECT_EQ(config->position_offset, spec.config.position_offset);
    EXPECT_EQ(config->n_params(), spec.config.n_params());
    auto ck = Checkpoint::open_dir(out);
    ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
    const auto headers = model_tensor_headers(spec.config, DType::f32);
    EXPECT_EQ((*ck)->tensor_names().size(), headers.size());
    auto shape = [&](const std::string& name) {
      const TensorInfo* info = (*ck)->find(name, nullptr);
      return info == nullptr ? std::vector<int64_t>{} : info->shape;
    };
    if (family == &opt_family()) {
      EXPECT_EQ(shape("model.decoder.embed_positions.weight"), (std::vector<int64_t>{34, 64}));  // offset 2
      EXPECT_EQ(shape("model.decoder.layers.1.self_attn.q_proj.bias"), (std::vector<int64_t>{64}));
      EXPECT_EQ(shape("model.decoder.layers.1.fc1.weight"), (std::vector<int64_t>{256, 64}));  // [out, in]
      EXPECT_EQ(shape("model.decoder.final_layer_norm.weight"), (std::vector<int64_t>{64}));
    } else {
      EXPECT_EQ(shape("transformer.h.1.attn.attention.q_proj.weight"), (std::vector<int64_t>{64, 64}));
      EXPECT_EQ(shape("transformer.h.1.attn.attention.q_proj.bias"), (std::vector<int64_t>{}));  // none
      EXPECT_EQ(shape("transformer.h.1.attn.attention.out_proj.bias"), (std::vector<int64_t>{64}));
      EXPECT_EQ(shape("transformer.h.0.mlp.c_proj.weight"), (std::vector<int64_t>{64, 256}));
    }
  }
}

// The kvmesh-ckpt program, when it has been built next to this test.
TEST(CheckpointMaker, CommandLine) {
  const std::string bin = std::string(KVMESH_BIN_DIR) + "/tools/kvmesh-ckpt";
  if (!fs::exists(bin)) GTEST_SKIP() << bin << " not built";
  TempDir tmp;
  auto run = [&](const std::string& args) {
    const int rc = std::system((bin + " " + args + " 2>" + tmp.sub("stderr.txt")).c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  EXPECT_EQ(run("--out " + tmp.sub("m") + " --preset tiny --vocab 500 --dtype bf16 --seed 3"), 0);
  auto ck = Checkpoint::open_dir(tmp.sub("m"));
  ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
  EXPECT_EQ((*ck)->find("wte.weight", nullptr)->shape, (std::vector<int64_t>{500, 64}));
  auto config = load_model_config(tmp.sub("m") + "/config.json");
  ASSERT_TRUE(config.is_ok()) << config.status().to_string();
  EXPECT_EQ(config->eos_token_id, 499);
  EXPECT_EQ(run("--out " + tmp.sub("x") + " --embd 100 --heads 12"), 1);
  EXPECT_NE(slurp(tmp.sub("stderr.txt")).find("not divisible"), std::string::npos);
  EXPECT_EQ(run("--out " + tmp.sub("x") + " --preset tiny --dtype f64"), 1);
  EXPECT_EQ(run("--out " + tmp.sub("x") + " --preset nope"), 1);
  EXPECT_EQ(run("--layers 2"), 1);  // --out missing
  EXPECT_EQ(run("--out " + tmp.sub("neo") + " --preset tiny --arch gpt-neo --window 5 --no-tokenizer"), 0);
  auto neo = load_model_config(tmp.sub("neo") + "/config.json");
  ASSERT_TRUE(neo.is_ok()) << neo.status().to_string();
  EXPECT_EQ(neo->layer_window, (std::vector<int>{0, 5}));
  EXPECT_EQ(run("--out " + tmp.sub("opt") + " --preset tiny --arch opt --no-tokenizer"), 0);
  auto opt = load_model_config(tmp.sub("opt") + "/config.json");
  ASSERT_TRUE(opt.is_ok()) << opt.status().to_string();
  EXPECT_EQ(opt->model_type, "opt");
  EXPECT_EQ(run("--out " + tmp.sub("x") + " --preset tiny --arch llama"), 1);
  EXPECT_NE(slurp(tmp.sub("stderr.txt")).find("--arch"), std::string::npos);
  EXPECT_EQ(run("--out " + tmp.sub("x") + " --preset tiny --window 5"), 1);  // GPT-2 has no local layers
  EXPECT_FALSE(fs::exists(tmp.sub("x") + "/model.safetensors"));
}

// Progress into a file (as in a log): plain lines at 10 % steps, no carriage returns; on a terminal
// (script(1) gives the program one) the line is redrawn in place.
TEST(CheckpointMaker, ProgressRedrawnOnATerminalPlainLinesElsewhere) {
  const std::string bin = std::string(KVMESH_BIN_DIR) + "/tools/kvmesh-ckpt";
  if (!fs::exists(bin)) GTEST_SKIP() << bin << " not built";
  TempDir tmp;
  const std::string args = " --out " + tmp.sub("m") + " --preset tiny --layers 24";  // 292 tensors
  const int rc = std::system(("timeout 60 " + bin + args + " 2>" + tmp.sub("stderr.txt")).c_str());
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << rc;
  const std::string err = slurp(tmp.sub("stderr.txt"));
  const std::string head = err.substr(0, 600);  // enough of it to see what went wrong
  EXPECT_EQ(err.find('\r'), std::string::npos) << head;
  std::vector<std::string> progress;
  for (size_t at = 0, nl; at < err.size(); at = nl + 1) {
    nl = err.find('\n', at);
    if (nl == std::string::npos) nl = err.size();
    const std::string line = err.substr(at, nl - at);
    if (line.find("% (") != std::string::npos) progress.push_back(line);
  }
  ASSERT_GE(progress.size(), 2u) << head;
  EXPECT_LE(progress.size(), 10u) << head;
  EXPECT_EQ(progress.back().rfind("kvmesh-ckpt: 100%", 0), 0u) << head;
  EXPECT_NE(err.find("kvmesh-ckpt: wrote "), std::string::npos) << head;

  if (std::system("script --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "script(1) is not installed";
  const std::string line = bin + " --out " + tmp.sub("t") + " --preset tiny";
  const int tty_rc = std::system(("timeout 60 script -qec '" + line + "' /dev/null >" + tmp.sub("tty.txt")).c_str());
  const std::string tty = slurp(tmp.sub("tty.txt")).substr(0, 600);
  ASSERT_TRUE(WIFEXITED(tty_rc) && WEXITSTATUS(tty_rc) == 0) << tty_rc << tty;
  EXPECT_NE(tty.find("\rkvmesh-ckpt: "), std::string::npos) << tty;
}

}  // namespace
}  // namespace kvmesh
