// kvmesh-generate: runs one OpenAI-style request (/v1/completions body, or /v1/chat/completions when
// it has "messages") on an in-process engine and prints the response JSON, or its SSE events when
// the request streams. Errors: one line on stderr, exit 1 (exit 2 for bad command lines).
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/cli_parse.h"
#include "common/config.h"
#include "common/data_dir.h"
#include "common/tokenizer.h"
#include "coordinator/api_request.h"
#include "coordinator/api_response.h"
#include "coordinator/engine.h"
#include "coordinator/engine_factory.h"
#include "common/step_executor.h"
#include "common/synthetic_models.h"
#include "worker/launch.h"
#include "worker/worker.h"

namespace kvmesh {
namespace {

struct Options {
  std::string model_dir;
  std::string request;  // JSON text, or @path
  int block_size = 16;
  int n_threads = 0;
  int tp = 1;
  int pp = 1;
  int micro_batches = 0;
  bool timing = false;
  std::string device = "cpu";
  std::string dtype = "auto";
  bool enforce_eager = false;
  double step_timeout_s = ControlOptions{}.step_timeout_s;
  double startup_timeout_s = ControlOptions{}.startup_timeout_s;
};

int fail(const std::string& message) {
  std::fprintf(stderr, "kvmesh-generate: %s\n", message.c_str());
  return 1;
}

// The request text: the argument itself, or the contents of the file named after '@'.
Result<std::string> read_request_text(const std::string& arg) {
  if (arg.empty() || arg[0] != '@') return arg;
  const std::string path = arg.substr(1);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return io_error(path + ": is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(path + ": cannot open (" + std::strerror(errno) + ")");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return io_error(path + ": read failed");
  return text;
}

std::string describe(const ApiError& error) {
  std::string line = "invalid request: " + error.message;
  if (!error.param.empty()) line += " (param `" + error.param + "`)";
  return line;
}

void print_event(const Json& payload) {
  std::fputs(sse_event(dump_json(payload)).c_str(), stdout);
  std::fflush(stdout);
}

// Queues every prompt's group at once (so the engine batches them) and steps until all are done. With a
// stream, each delta is printed as it arrives.
Status run_choices(Engine& engine, const CompletionRequest& request, StreamBuilder* stream,
                   std::vector<GenerationOutput>& outputs) {
  outputs.assign(static_cast<size_t>(request.n_choices()), GenerationOutput{});
  for (int32_t p = 0; p < static_cast<int32_t>(request.prompts.size()); ++p) {
    const int32_t first_choice = p * request.n;
    auto sink = [&outputs, stream, first_choice](const GenerationDelta& delta) {
      const int32_t c = first_choice + delta.index;
      outputs[static_cast<size_t>(c)].append(delta);
      if (stream) print_event(stream->chunk(c, delta));
    };
    auto added = engine.add_request(request.prompt_request(p), sink);
    if (!added.is_ok()) return added.status();
  }
  while (engine.has_work()) {
    KVMESH_RETURN_IF_ERROR(engine.step());
  }
  for (const GenerationOutput& out : outputs) {
    if (!out.finished()) return internal_error("a sequence ended without a final delta");
  }
  return Status::ok();
}

// Runs on every rank: rank 0 parses the request and drives the engine; the other ranks serve
// plans until rank 0 shuts them down. Only rank 0 prints.
int generate(const Options& options, MpiRuntime& mpi) {
  const bool leader = mpi.rank() == 0;
  auto say = [&](const std::string& message) { return leader ? fail(message) : 1; };
  auto text = read_request_text(options.request);
  if (!text.is_ok()) return say(text.status().message());
  auto config = resolve_model_config(options.model_dir);
  if (!config.is_ok()) return say(config.status().message());
  auto loaded = Tokenizer::from_model_dir(options.model_dir, shipped_gpt2_tokenizer_dir());
  if (!loaded.is_ok()) return say(loaded.status().message());
  if (Status covers = check_tokenizer_decodes(**loaded, config->vocab_size, options.model_dir, config->vocab_padded); !covers.is_ok())
    return say(covers.message());
  if (config->prepend_bos) (*loaded)->set_prompt_bos(config->bos_token_id);
  std::shared_ptr<const Tokenizer> tokenizer(std::move(loaded).value());

  const ServedModel served{config->name, config->n_positions, config->vocab_size,
                           static_cast<int64_t>(std::time(nullptr)), ""};
  auto request = parse_any_request(*text, served, *tokenizer);
  if (!request.is_ok()) return say(describe(request.error()));

  EngineSpec spec;
  WorkerOptions& worker_options = spec.worker;
  worker_options.model_dir = options.model_dir;
  worker_options.cache.block_size = options.block_size;
  worker_options.n_threads = options.n_threads;
  worker_options.layout.tp = options.tp;
  worker_options.layout.pp = options.pp;
  worker_options.micro_batches = options.micro_batches;
  (void)parse_device(options.device, &worker_options.device);  // validated by the flag parser
  worker_options.weight_dtype = *weight_dtype_from_flags(options.device, options.dtype);  // checked in main
  worker_options.decode_graphs = !options.enforce_eager;
  ControlOptions control;
  control.report_timing = options.timing;
  control.step_timeout_s = options.step_timeout_s;
  control.startup_timeout_s = options.startup_timeout_s;
  auto rank_engine = start_rank_engine(mpi, spec, control, tokenizer);
  if (!rank_engine.is_ok()) return say(rank_engine.status().message());
  if (!leader) return rank_engine->role.worker_loop_status.is_ok() ? 0 : 1;
  const Worker* worker = rank_engine->role.worker;
  DistributedExecutor* distributed = rank_engine->role.distributed;
  Engine& engine = *rank_engine->engine;

  const CompletionRequest& req = request.value();
  std::unique_ptr<StreamBuilder> stream;
  if (req.stream) stream = std::make_unique<StreamBuilder>(req, *tokenizer);
  std::vector<GenerationOutput> outputs;
  const auto started = std::chrono::steady_clock::now();
  const Status status = run_choices(engine, req, stream.get(), outputs);
  const double generate_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const Status shut_down = distributed != nullptr ? distributed->shutdown() : Status::ok();
  // A rank that stopped answering may be stuck in a step, and MPI_Finalize would wait for it.
  if (!shut_down.is_ok() || (distributed != nullptr && status.code() == StatusCode::unavailable)) {
    fail("generation failed: " + (status.is_ok() ? shut_down : status).message() + "; aborting the job");
    mpi.abort(1);
  }
  if (options.timing) {
    int64_t generated = 0;
    for (const auto& out : outputs) generated += static_cast<int64_t>(out.token_ids.size());
    std::fprintf(stderr, "kvmesh-timing generate_s=%.4f generated_tokens=%lld\n", generate_s,
                 static_cast<long long>(generated));
    print_rank_timing(*worker);
  }
  if (stream) {
    if (auto usage = stream->usage_chunk(); usage && status.is_ok()) print_event(*usage);
    std::fputs(sse_event(kDoneMarker).c_str(), stdout);
    std::fflush(stdout);
  }
  if (!status.is_ok()) return fail("generation failed: " + status.message());
  if (stream) return 0;
  auto response = build_response(req, outputs, *tokenizer);
  if (!response.is_ok()) return fail("generation failed: " + response.error().message);
  std::fputs((dump_json(response.value(), 2) + "\n").c_str(), stdout);
  return 0;
}

}  // namespace
}  // namespace kvmesh

int main(int argc, char** argv) {
  kvmesh::Options options;
  CLI::App app{"Runs one OpenAI-style completion or chat request on a local engine and prints the response.",
               "kvmesh-generate"};
  app.add_option("--model", options.model_dir, "Model directory (config.json, model.safetensors) or synthetic:<shape>")->required();
  app.add_option("--request", options.request, "Request JSON, or @path of a file holding it")->required();
  app.add_option("--block-size", options.block_size, "Tokens per KV page")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--threads", options.n_threads, "Compute threads (0: all cores)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_option("--tp", options.tp, "Tensor-parallel ranks (launch tp * pp ranks with mpirun)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--pp", options.pp, "Pipeline-parallel stages")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--micro-batches", options.micro_batches, "Micro-batches per step with --pp > 1 (0: pp)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--device", options.device, "Compute backend: cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_flag("--enforce-eager", options.enforce_eager,
               "With --device cuda: launch every op of every step (no captured decode graphs)");
  app.add_option("--dtype", options.dtype,
                 "Matrix weight dtype: auto (cpu f32, cuda bf16), f32 or bf16 on cpu, bf16 or f16 on cuda")
      ->check(CLI::IsMember({"auto", "f32", "fp32", "bf16", "f16", "fp16"}))
      ->capture_default_str();
  app.add_option("--step-timeout", options.step_timeout_s,
                 "Seconds a step may wait for another rank before the job ends")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  app.add_option("--startup-timeout", options.startup_timeout_s,
                 "Seconds a rank's start-up may take under mpirun before the job ends (0 = no bound)")
      ->check(CLI::Range(0.0, 604800.0))
      ->capture_default_str();
  app.add_flag("--timing", options.timing, "Each rank prints its step and busy time at the end (pipeline bubble)");
  if (const kvmesh::CliOutcome parsed = kvmesh::parse_cli(app, argc, argv, "kvmesh-generate"); parsed.exit_code >= 0) {
    std::fprintf(parsed.exit_code == 0 ? stdout : stderr, "%s\n", parsed.message.c_str());
    return parsed.exit_code;
  }
  if (auto dtype = kvmesh::weight_dtype_from_flags(options.device, options.dtype); !dtype.is_ok()) {
    std::fprintf(stderr, "kvmesh-generate: %s (see --help)\n", dtype.status().message().c_str());
    return 2;
  }
  kvmesh::MpiRuntime mpi(&argc, &argv);
  try {
    return kvmesh::generate(options, mpi);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvmesh-generate: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "kvmesh-generate: unexpected error\n");
  }
  return 1;
}
