// kvmesh-generate on broken inputs: each gives one line on stderr naming the file and the problem,
// and exit code 1; never a crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "common/safetensors.h"
#include "engine_fixture.h"
#include "temp_dir.h"

namespace kvmesh::testing {
namespace {

namespace fs = std::filesystem;
const std::string kGenerate = KVMESH_BIN_DIR "/tools/kvmesh-generate";

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// A model dir: the fixture's config.json (or `config`) and the given safetensors bytes.
std::string model_dir(const TempDir& tmp, const std::string& name, const std::string& safetensors,
                      const std::string& config = "") {
  const std::string dir = tmp.sub(name);
  fs::create_directories(dir);
  if (config.empty()) {
    fs::copy_file(hf_fixture_dir() + "/config.json", dir + "/config.json");
  } else {
    write_file(dir + "/config.json", config);
  }
  write_file(dir + "/model.safetensors", safetensors);
  return dir;
}

std::string safetensors_with_header(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

struct Outcome {
  int exit_code;
  std::string err;
  int lines;
};

Outcome generate(const std::string& model, const std::string& request = R"({"prompt": [464], "max_tokens": 2})") {
  CommandResult r = run_command(kGenerate + " --model " + model + " --threads 1 --request " + shell_quote(request), 60);
  int lines = 0;
  for (char c : r.err) lines += c == '\n';
  return {r.exit_code, r.err, lines};
}

void expect_one_line_error(const Outcome& o, const std::vector<std::string>& phrases) {
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_EQ(o.lines, 1) << o.err;
  for (const auto& p : phrases) EXPECT_NE(o.err.find(p), std::string::npos) << "missing '" << p << "' in: " << o.err;
}

std::string fixture_bytes() { return read_text_file(hf_fixture_dir() + "/model.safetensors"); }

TEST(GenerateCli, CorruptCheckpointsGiveOneLineNamingTheFile) {
  TempDir tmp("kvmesh-cli");
  const std::string good = fixture_bytes();
  expect_one_line_error(generate(model_dir(tmp, "truncated", good.substr(0, good.size() / 2))),
                        {"model.safetensors"});
  std::string huge_header(8, '\xff');
  expect_one_line_error(generate(model_dir(tmp, "header", huge_header + "{}")), {"model.safetensors", "header"});
  const std::string outside = R"({"transformer.wte.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,1000]}})";
  expect_one_line_error(generate(model_dir(tmp, "outside", safetensors_with_header(outside, 16))),
                        {"model.safetensors", "transformer.wte.weight"});
  const std::string mismatch = R"({"transformer.wte.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})";
  expect_one_line_error(generate(model_dir(tmp, "mismatch", safetensors_with_header(mismatch, 8))),
                        {"model.safetensors", "transformer.wte.weight"});
  const std::string unknown = R"({"transformer.wte.weight":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})";
  expect_one_line_error(generate(model_dir(tmp, "dtype", safetensors_with_header(unknown, 8))),
                        {"model.safetensors", "dtype"});
}

TEST(GenerateCli, MissingTensorAndBadConfigs) {
  TempDir tmp("kvmesh-cli");
  // The fixture without one tensor.
  auto src = SafetensorsFile::open(hf_fixture_dir() + "/model.safetensors");
  ASSERT_TRUE(src.is_ok());
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, info] : (*src)->tensors()) {
    if (name == "transformer.h.1.attn.c_attn.bias") continue;
    const uint8_t* data = (*src)->data(info);
    tensors.push_back({name, info.dtype, info.shape, std::string(reinterpret_cast<const char*>(data), info.end - info.begin)});
  }
  const std::string missing = tmp.sub("missing");
  fs::create_directories(missing);
  fs::copy_file(hf_fixture_dir() + "/config.json", missing + "/config.json");
  ASSERT_TRUE(write_safetensors(missing + "/model.safetensors", tensors).is_ok());
  expect_one_line_error(generate(missing), {"h.1.attn.c_attn.bias"});

  const std::string good = fixture_bytes();
  expect_one_line_error(generate(model_dir(tmp, "badjson", good, "{not json")), {"config.json"});
  auto config = load_json_file(hf_fixture_dir() + "/config.json");
  config["activation_function"] = "swish";
  expect_one_line_error(generate(model_dir(tmp, "activation", good, config.dump())),
                        {"config.json", "activation_function", "swish"});
  config = load_json_file(hf_fixture_dir() + "/config.json");
  config["n_embd"] = "wide";
  expect_one_line_error(generate(model_dir(tmp, "types", good, config.dump())), {"config.json", "n_embd"});
}

TEST(GenerateCli, PromptLongerThanTheContextIsRefusedNotTruncated) {
  nlohmann::json req = {{"prompt", std::vector<int>(600, 464)}, {"max_tokens", 1}};
  expect_one_line_error(generate(hf_fixture_dir(), req.dump()), {"maximum context length is 512 tokens"});
  EXPECT_EQ(generate("/nonexistent/model").exit_code, 1);
}

}  // namespace
}  // namespace kvmesh::testing

namespace kvmesh::testing {
namespace {

// --device cuda where it cannot run (a build without CUDA, or no GPU): one error line, exit 1.
TEST(GenerateDevice, CudaWithoutGpuIsOneClearError) {
  if (std::system("nvidia-smi -L >/dev/null 2>&1") == 0) GTEST_SKIP() << "a GPU is present here";
  const std::string request = R"({"prompt": "Hello", "max_tokens": 2})";
  CommandResult r = run_command(kGenerate + " --model " + hf_fixture_dir() + " --device cuda --request " +
                                shell_quote(request));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("--device cuda"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// One greedy CPU request without and with `flags`; both must succeed with the same choices.
struct FlagRuns {
  CommandResult plain, flagged;
};
FlagRuns expect_same_choices_with(const std::string& flags) {
  const std::string request = R"({"prompt": "Hello", "max_tokens": 4, "temperature": 0, "logprobs": 2})";
  const std::string base = kGenerate + " --model " + hf_fixture_dir() + " --request " + shell_quote(request);
  FlagRuns runs{run_command(base), run_command(base + " " + flags)};
  EXPECT_EQ(runs.plain.exit_code, 0) << runs.plain.err;
  EXPECT_EQ(runs.flagged.exit_code, 0) << runs.flagged.err;
  if (runs.plain.exit_code != 0 || runs.flagged.exit_code != 0) return runs;
  auto choices = [](const std::string& out) { return nlohmann::json::parse(out)["choices"]; };
  EXPECT_EQ(choices(runs.flagged.out), choices(runs.plain.out)) << flags;
  return runs;
}

// --enforce-eager only concerns CUDA decode graphs: on the CPU the output is the same.
TEST(GenerateDevice, EnforceEagerIsAcceptedAndChangesNothingOnCpu) { expect_same_choices_with("--enforce-eager"); }

// --dtype f32 is the CPU's default; bf16 runs (the engine tests check its numbers); f16 is refused
// on the CPU with one line before anything loads.
TEST(GenerateDevice, DtypeOnCpu) {
  expect_same_choices_with("--dtype f32");
  const std::string request = R"({"prompt": "Hello", "max_tokens": 3})";
  const std::string base = kGenerate + " --model " + hf_fixture_dir() + " --request " + shell_quote(request);
  CommandResult bf16 = run_command(base + " --dtype bf16");
  EXPECT_EQ(bf16.exit_code, 0) << bf16.err;
  EXPECT_EQ(nlohmann::json::parse(bf16.out)["usage"]["completion_tokens"], 3) << bf16.out;
  CommandResult f16 = run_command(base + " --dtype f16");
  EXPECT_EQ(f16.exit_code, 2) << f16.err;
  EXPECT_NE(f16.err.find("--dtype f16 is not available with --device cpu (f32 or bf16)"), std::string::npos) << f16.err;
  EXPECT_EQ(std::count(f16.err.begin(), f16.err.end(), '\n'), 1) << f16.err;
}

TEST(GenerateDevice, UnknownDeviceIsAFlagError) {
  CommandResult r = run_command(kGenerate + " --model " + hf_fixture_dir() + " --device tpu --request x");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--device"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvmesh::testing
