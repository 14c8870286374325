// Start-up of kvmesh-serve: flag parsing (sizes with units, one-line errors, exit 2), model load
// errors (exit 1, naming the file), a CUDA-only refusal, an address in use, --served-model-name, and the default
// model (made on first start in $KVMESH_HOME, reused on the next).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "coordinator/server_config.h"
#include "server_process.h"

namespace kvmesh::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/kvmesh-e2e-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string path;
};

FlagsOutcome parse(std::vector<std::string> args) {
  args.insert(args.begin(), "kvmesh-serve");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  return parse_server_flags(static_cast<int>(argv.size()), argv.data());
}

TEST(ServeFlags, ByteSizes) {
  EXPECT_EQ(*parse_byte_size("1048576"), 1048576);
  EXPECT_EQ(*parse_byte_size("256KiB"), 256 << 10);
  EXPECT_EQ(*parse_byte_size("256MiB"), 256ll << 20);
  EXPECT_EQ(*parse_byte_size("8GiB"), 8ll << 30);
  EXPECT_EQ(*parse_byte_size("8g"), 8ll << 30);
  EXPECT_EQ(*parse_byte_size("64MB"), 64000000);
  EXPECT_EQ(*parse_byte_size("1.5GiB"), 3ll << 29);
  EXPECT_EQ(*parse_byte_size("512 KiB"), 512 << 10);
  for (const char* bad : {"", "MiB", "12XB", "-5MiB", "1..2GiB", "99999999999TiB"}) {
    EXPECT_FALSE(parse_byte_size(bad).is_ok()) << bad;
  }
}

// --dtype: auto (the device's default), f32 or bf16 on the CPU, bf16 or f16 on CUDA; any other
// pairing is a one-line flag error naming what the device takes.
TEST(ServeFlags, DtypeIsCheckedAgainstTheDevice) {
  for (const std::vector<std::string>& ok :
       {std::vector<std::string>{}, {"--dtype", "bf16"}, {"--dtype", "f32"}, {"--dtype", "auto"},
        {"--device", "cuda", "--dtype", "f16"}, {"--device", "cuda", "--dtype", "bf16"}}) {
    const FlagsOutcome out = parse(ok);
    EXPECT_EQ(out.exit_code, -1) << out.message;
    EXPECT_TRUE(out.notes.empty());
  }
  const FlagsOutcome cpu = parse({"--dtype", "f16"});
  EXPECT_EQ(cpu.exit_code, 2);
  EXPECT_NE(cpu.message.find("--dtype f16 is not available with --device cpu (f32 or bf16)"), std::string::npos)
      << cpu.message;
  const FlagsOutcome cuda = parse({"--device", "cuda", "--dtype", "f32"});
  EXPECT_EQ(cuda.exit_code, 2);
  EXPECT_NE(cuda.message.find("(bf16 or f16)"), std::string::npos) << cuda.message;
  EXPECT_EQ(parse({"--dtype", "int4"}).exit_code, 2);
}

// The names users bring from vLLM: the model as a positional argument, the parallel sizes, the
// dtypes by torch's names, and the KV cache as a share of the GPU memory.
TEST(ServeFlags, VllmNames) {
  FlagsOutcome o = parse({"/models/gpt2", "--tensor-parallel-size", "2", "--pipeline-parallel-size", "3",
                          "--dtype", "bfloat16"});
  ASSERT_EQ(o.exit_code, -1) << o.message;
  EXPECT_EQ(o.config.model_dir, "/models/gpt2");
  EXPECT_EQ(o.config.tp, 2);
  EXPECT_EQ(o.config.pp, 3);
  EXPECT_EQ(o.config.dtype, "bfloat16");
  EXPECT_EQ(parse({"m", "--model", "m"}).config.model_dir, "m");
  const FlagsOutcome twice = parse({"a", "--model", "b"});
  EXPECT_EQ(twice.exit_code, 2);
  EXPECT_NE(twice.message.find("given twice"), std::string::npos) << twice.message;
  for (const char* dtype : {"float32", "float", "bfloat16"}) EXPECT_EQ(parse({"--dtype", dtype}).exit_code, -1) << dtype;
  EXPECT_EQ(parse({"--dtype", "half"}).exit_code, 2);  // the CPU backend has no f16 products
  for (const char* dtype : {"half", "float16", "bfloat16"})
    EXPECT_EQ(parse({"--device", "cuda", "--dtype", dtype}).exit_code, -1) << dtype;
  const FlagsOutcome gpu = parse({"--device", "cuda", "--gpu-memory-utilization", "0.8"});
  ASSERT_EQ(gpu.exit_code, -1) << gpu.message;
  EXPECT_DOUBLE_EQ(gpu.config.kv_device_fraction, 0.8);
  EXPECT_TRUE(gpu.notes.empty());
  const FlagsOutcome cpu = parse({"--gpu-memory-utilization", "0.8"});
  ASSERT_EQ(cpu.exit_code, -1) << cpu.message;
  ASSERT_EQ(cpu.notes.size(), 1u);
  EXPECT_NE(cpu.notes[0].find("no effect with --device cpu"), std::string::npos) << cpu.notes[0];
  EXPECT_EQ(parse({"--gpu-memory-utilization", "1.5"}).exit_code, 2);
  EXPECT_EQ(parse({"--device", "cuda", "--gpu-memory-utilization", "0.5", "--kv-device-mem", "1GiB"}).exit_code, 2);
}

// --help shows the default of every option that has one.
TEST(ServeFlags, HelpShowsDefaults) {
  const FlagsOutcome help = parse({"--help"});
  ASSERT_EQ(help.exit_code, 0);
  for (const char* shown : {"256MiB", "8000", "127.0.0.1", "2048", "300", "auto"})
    EXPECT_NE(help.message.find(shown), std::string::npos) << shown << " in\n" << help.message;
}

TEST(ServeFlags, ParsedValuesAndDefaults) {
  FlagsOutcome d = parse({});
  ASSERT_EQ(d.exit_code, -1) << d.message;
  EXPECT_EQ(d.config.port, 8000);
  EXPECT_EQ(d.config.host, "127.0.0.1");
  EXPECT_EQ(d.config.block_size, 16);
  EXPECT_EQ(d.config.kv_device_bytes, 256ll << 20);
  EXPECT_EQ(d.config.max_num_seqs, 64);
  EXPECT_EQ(d.config.max_batch_tokens, 2048);
  EXPECT_EQ(d.config.max_queue, 256);
  EXPECT_EQ(d.config.max_body_bytes, 1 << 20);
  EXPECT_EQ(d.config.http_threads, 2);
  EXPECT_EQ(d.config.drain_timeout_s, 30.0);
  EXPECT_EQ(d.config.startup_timeout_s, 1800.0);
  EXPECT_EQ(d.config.max_model_len, 0);
  EXPECT_TRUE(d.config.log_requests);
  EXPECT_FALSE(d.config.cors.enabled());
  FlagsOutcome o = parse({"--kv-device-mem", "2GiB", "--port", "0", "--max-body-bytes", "64KiB", "--api-key", "k",
                          "--startup-timeout", "0", "--disable-log-requests", "--allowed-origins", "*"});
  ASSERT_EQ(o.exit_code, -1) << o.message;
  EXPECT_EQ(o.config.kv_device_bytes, 2ll << 30);
  EXPECT_EQ(o.config.port, 0);
  EXPECT_EQ(o.config.max_body_bytes, 64 << 10);
  EXPECT_EQ(o.config.api_key, "k");
  EXPECT_EQ(o.config.startup_timeout_s, 0.0);  // no bound
  EXPECT_FALSE(o.config.log_requests);
  EXPECT_TRUE(o.config.cors.allows("http://anywhere.example"));
  for (const auto& bad : std::vector<std::vector<std::string>>{
           {"--bogus"}, {"--port", "70000"}, {"--kv-device-mem", "lots"}, {"--max-num-seqs", "0"},
           {"--threads", "x"}, {"--drain-timeout", "-1"}, {"--startup-timeout", "-5"},
           {"--allowed-origins", "localhost:3000"}, {"--max-model-len", "-1"}}) {
    FlagsOutcome r = parse(bad);
    EXPECT_EQ(r.exit_code, 2) << bad[0];
    EXPECT_EQ(r.message.find('\n'), std::string::npos) << "one line: " << r.message;
    EXPECT_NE(r.message.find("error"), std::string::npos) << r.message;
  }
  EXPECT_EQ(parse({"--help"}).exit_code, 0);
}

// Runs the server to its exit; (exit code, stderr).
std::pair<int, std::string> run_to_exit(const std::vector<std::string>& args) {
  std::string error;
  auto server = ServerProcess::launch(args, &error);
  if (!server) return {-1, error};
  auto code = server->wait_exit(60000);
  return {code.value_or(-2), server->stderr_text()};
}

TEST(ServeFlags, BadFlagsExitTwoWithOneLine) {
  auto [code, err] = run_to_exit({"--no-such-flag"});
  EXPECT_EQ(code, 2);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  auto [code2, err2] = run_to_exit({"--kv-device-mem", "12XB"});
  EXPECT_EQ(code2, 2);
  EXPECT_NE(err2.find("--kv-device-mem"), std::string::npos) << err2;
}

// An unknown flag names itself and the nearest known one, as every kvmesh program does.
TEST(ServeFlags, UnknownFlagSuggestsTheNearest) {
  const FlagsOutcome typo = parse({"--tensor-paralel-size", "2"});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_NE(typo.message.find("unknown flag --tensor-paralel-size (did you mean --tensor-parallel-size?)"),
            std::string::npos) << typo.message;
  const FlagsOutcome far = parse({"--completely-different"});
  EXPECT_EQ(far.exit_code, 2);
  EXPECT_NE(far.message.find("unknown flag --completely-different"), std::string::npos) << far.message;
  EXPECT_EQ(far.message.find("did you mean"), std::string::npos) << far.message;
  auto [code, err] = run_to_exit({"--max-num-seq", "4"});
  EXPECT_EQ(code, 2);
  EXPECT_NE(err.find("did you mean --max-num-seqs?"), std::string::npos) << err;
}

TEST(ServeFlags, ModelLoadErrorsExitOneNamingTheFile) {
  auto [code, err] = run_to_exit({"--model", "/nonexistent/model"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("/nonexistent/model"), std::string::npos) << err;
  TempDir dir;
  std::ofstream(dir.path + "/config.json") << "{\"n_layer\": \"four\"}";
  auto [code2, err2] = run_to_exit({"--model", dir.path});
  EXPECT_EQ(code2, 1);
  EXPECT_NE(err2.find("config.json"), std::string::npos) << err2;
}

// A copy of the fixture checkpoint whose files a test then spoils.
std::string copy_of_fixture(const TempDir& dir) {
  for (const char* file : {"config.json", "model.safetensors"})
    fs::copy_file(hf_model_dir() + "/" + file, dir.path + "/" + file);
  return dir.path;
}

// A tokenizer that cannot decode what the model can produce is refused, naming the first id it
// lacks, instead of completions that come back as empty text.
TEST(ServeFlags, TokenizerSmallerThanTheModelIsRefused) {
  TempDir dir;
  const std::string model = copy_of_fixture(dir);
  std::ofstream(model + "/vocab.json") << "{\"a\": 0, \"b\": 1}";
  std::ofstream(model + "/merges.txt") << "#version: 0.2\n";
  auto [code, err] = run_to_exit({"--model", model});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("the tokenizer cannot decode 50255 of the model's 50257 token ids (the first is 2"),
            std::string::npos) << err;
}

// Tensors the config does not account for (a config.json with fewer layers than the weights) are
// an error naming them, not a silently different model.
TEST(ServeFlags, TensorsTheConfigDoesNotUseAreRefused) {
  TempDir dir;
  const std::string model = copy_of_fixture(dir);
  json config = json::parse(std::ifstream(model + "/config.json"));
  config["n_layer"] = 3;
  std::ofstream(model + "/config.json", std::ios::trunc) << config.dump(2);
  auto [code, err] = run_to_exit({"--model", model});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("12 tensors are not part of the model config.json describes (n_layer 3): "
                     "transformer.h.3.attn.c_attn.bias"),
            std::string::npos) << err;
}

// i8 KV pages are CPU-only: asking for them on CUDA is refused before a GPU is looked for, so the
// message is the same with or without a GPU, and without the CUDA backend built.
TEST(ServeFlags, CudaWithI8PagesExitsOneSayingSo) {
  auto [code, err] = run_to_exit({"--model", hf_model_dir(), "--device", "cuda", "--kv-dtype", "i8"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("--kv-dtype i8 is not supported with --device cuda"), std::string::npos) << err;
}

TEST(ServeFlags, AddressInUseExitsOne) {
  std::string error;
  auto first = ServerProcess::start({"--model", hf_model_dir()}, &error);
  ASSERT_NE(first, nullptr) << error;
  auto [code, err] = run_to_exit({"--model", hf_model_dir(), "--port", std::to_string(first->port())});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("cannot listen on 127.0.0.1:" + std::to_string(first->port())), std::string::npos) << err;
  EXPECT_EQ(http_request(first->port(), "GET", "/health").status, 200) << "the first server is unaffected";
}

TEST(ServeFlags, ServedModelName) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir(), "--served-model-name", "my-gpt"}, &error);
  ASSERT_NE(server, nullptr) << error;
  auto models = json::parse(http_request(server->port(), "GET", "/v1/models").body);
  EXPECT_EQ(models["data"][0]["id"], "my-gpt");
  auto [status, reply] = post_for_json(server->port(), "/v1/completions",
                                       json{{"model", "my-gpt"}, {"prompt", "hi"}, {"max_tokens", 2}});
  EXPECT_EQ(status, 200) << reply.dump();
  EXPECT_EQ(reply["model"], "my-gpt");
}

// --max-model-len caps the context served below the model's n_positions (512 for the fixture):
// /v1/models reports it, requests past it get vLLM's 400, and null max_tokens fills up to it.
TEST(ServeFlags, MaxModelLenCapsTheContext) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir(), "--max-model-len", "24"}, &error);
  ASSERT_NE(server, nullptr) << error;
  auto models = json::parse(http_request(server->port(), "GET", "/v1/models").body);
  EXPECT_EQ(models["data"][0]["max_model_len"], 24);
  const std::vector<int> prompt(20, 11);
  auto [status, reply] = post_for_json(server->port(), "/v1/completions",
                                       json{{"prompt", prompt}, {"max_tokens", 5}, {"temperature", 0}});
  EXPECT_EQ(status, 400) << reply.dump();
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("maximum context length is 24 tokens"),
            std::string::npos) << reply.dump();
  auto [ok_status, filled] = post_for_json(server->port(), "/v1/completions",
                                           json{{"prompt", prompt}, {"max_tokens", nullptr}, {"temperature", 0},
                                                {"ignore_eos", true}});
  ASSERT_EQ(ok_status, 200) << filled.dump();
  EXPECT_EQ(filled["usage"]["completion_tokens"], 4);

  // --disable-log-requests: no request line on stderr, the metrics still count.
  auto quiet = ServerProcess::start({"--model", hf_model_dir(), "--disable-log-requests"}, &error);
  ASSERT_NE(quiet, nullptr) << error;
  EXPECT_EQ(post_for_json(quiet->port(), "/v1/completions", json{{"prompt", "hi"}, {"max_tokens", 2}}).first, 200);
  EXPECT_TRUE(eventually([&] { return quiet->metric("kvmesh_http_requests_total{code=\"200\"}") >= 1.0; }, 5000));
  EXPECT_EQ(quiet->stderr_text().find("\"path\":\"/v1/completions\""), std::string::npos) << quiet->stderr_text();

  auto [code, err] = run_to_exit({"--model", hf_model_dir(), "--max-model-len", "513"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("--max-model-len 513 exceeds the model's context of 512"), std::string::npos) << err;
}

TEST(ServeFlags, DefaultModelIsMadeOnceAndReused) {
  TempDir home;
  ::setenv("KVMESH_HOME", home.path.c_str(), 1);
  for (const char* expected : {"created", "using"}) {
    std::string error;
    auto server = ServerProcess::start({}, &error, 120000);
    ASSERT_NE(server, nullptr) << error;
    EXPECT_NE(server->stderr_text().find(expected), std::string::npos) << server->stderr_text();
    auto models = json::parse(http_request(server->port(), "GET", "/v1/models").body);
    EXPECT_EQ(models["data"][0]["id"], "default-gpt2-4l256d");
    EXPECT_EQ(models["data"][0]["max_model_len"], 1024);
    auto [status, reply] = post_for_json(server->port(), "/v1/completions", json{{"prompt", "hi"}, {"max_tokens", 3}});
    EXPECT_EQ(status, 200) << reply.dump();
  }
  EXPECT_TRUE(fs::exists(home.path + "/default-gpt2-4l256d/model.safetensors"));
  ::unsetenv("KVMESH_HOME");
}

}  // namespace
}  // namespace kvmesh::testing
