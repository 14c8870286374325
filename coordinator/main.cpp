// kvmesh-serve: parse flags -> build worker and engine -> start the engine loop -> run the HTTP
// server -> on SIGTERM/SIGINT drain (/ready 503, running requests finish up to --drain-timeout)
// -> exit 0. Exit 2 on bad flags, 1 when the model or the address cannot be used, 3 when a rank is
// lost (every open request gets a 503 error first).
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/data_dir.h"
#include "common/hashing.h"
#include "common/tokenizer.h"
#include "coordinator/default_model.h"
#include "coordinator/engine_factory.h"
#include "coordinator/engine_loop.h"
#include "coordinator/http_server.h"
#include "coordinator/routes.h"
#include "coordinator/scheduler.h"
#include "coordinator/server_config.h"
#include "common/step_executor.h"
#include "common/synthetic_models.h"
#include "worker/disk_store.h"
#include "worker/launch.h"
#include "worker/shard_plan.h"
#include "worker/worker.h"

namespace {

using namespace kvmesh;

struct LoadedModel {
  std::unique_ptr<Engine> engine;
  std::shared_ptr<const Tokenizer> tokenizer;
  ServedModel served;
};

Result<std::string> resolve_model_dir(const ServerConfig& config) {
  if (is_synthetic_model(config.model_dir)) return config.model_dir;
  if (!config.model_dir.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(config.model_dir, ec)) {
      return not_found(config.model_dir + ": --model is not a directory");
    }
    return config.model_dir;
  }
  KVMESH_ASSIGN_OR_RETURN(DefaultModel model, ensure_default_model());
  std::fprintf(stderr, "kvmesh-serve: no --model given: %s the default random model %s\n",
               model.created ? "created" : "using", model.dir.c_str());
  return model.dir;
}

WorkerOptions worker_options(const ServerConfig& config, const std::string& dir) {
  WorkerOptions wo;
  wo.model_dir = dir;
  wo.cache.block_size = config.block_size;
  wo.cache.device_bytes = config.kv_device_bytes;
  wo.cache.device_fraction = config.kv_device_fraction;
  wo.cache.host_bytes = config.kv_host_bytes;
  wo.cache.disk_bytes = config.kv_disk_bytes;
  wo.cache.disk_dir = config.kv_disk_dir;
  wo.cache.disk_persist = config.kv_disk_persist;
  (void)parse_dtype(config.kv_dtype, &wo.cache.kv_dtype);  // validated by the flag parser
  wo.n_threads = config.threads;
  (void)parse_device(config.device, &wo.device);    // validated by the flag parser
  wo.weight_dtype = *weight_dtype_from_flags(config.device, config.dtype);  // checked with the flags
  wo.decode_graphs = !config.enforce_eager;
  wo.layout.tp = config.tp;
  wo.layout.pp = config.pp;
  wo.micro_batches = config.micro_batches;
  return wo;
}

// system_fingerprint: the checkpoint, parallel layout, KV and weight dtypes and device the replies
// come from ("fp_" and 16 hex digits).
std::string system_fingerprint(const WorkerOptions& wo, const ModelConfig& model) {
  uint64_t h = kv_model_fingerprint(wo.model_dir, wo.synthetic_seed, model, wo.cache, wo.layout.tp, wo.layout.pp);
  h = splitmix64(h ^ static_cast<uint64_t>(wo.weight_dtype ? static_cast<int>(*wo.weight_dtype) + 1 : 0));
  h = splitmix64(h ^ (static_cast<uint64_t>(wo.device) << 8));
  char text[24];
  std::snprintf(text, sizeof text, "fp_%016llx", static_cast<unsigned long long>(h));
  return text;
}

ControlOptions control_options(const ServerConfig& config) {
  ControlOptions control;
  control.step_timeout_s = config.step_timeout_s;
  control.startup_timeout_s = config.startup_timeout_s;
  return control;
}

// Every rank loads its shard; rank 0 gets the engine, the others serve plans until shutdown.
Result<LoadedModel> load_model(const ServerConfig& config, MpiRuntime& mpi, RankRole* role) {
  KVMESH_ASSIGN_OR_RETURN(std::string dir, resolve_model_dir(config));
  // Checked on every rank before any starts, so all refuse alike.
  KVMESH_ASSIGN_OR_RETURN(ModelConfig model_config, resolve_model_config(dir));
  KVMESH_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                          Tokenizer::from_model_dir(dir, shipped_gpt2_tokenizer_dir()));
  KVMESH_RETURN_IF_ERROR(check_tokenizer_decodes(*tokenizer, model_config.vocab_size, dir, model_config.vocab_padded));
  if (model_config.prepend_bos) tokenizer->set_prompt_bos(model_config.bos_token_id);
  if (config.max_model_len > 0) {
    if (config.max_model_len > model_config.n_positions) {
      return invalid_argument("--max-model-len " + std::to_string(config.max_model_len) +
                              " exceeds the model's context of " + std::to_string(model_config.n_positions) +
                              " positions (n_positions)");
    }
  }
  EngineSpec spec;
  spec.worker = worker_options(config, dir);
  spec.max_num_seqs = config.max_num_seqs;
  spec.max_batch_tokens = config.max_batch_tokens;
  spec.max_model_len = config.max_model_len;
  std::shared_ptr<const Tokenizer> shared_tokenizer = std::move(tokenizer);
  KVMESH_ASSIGN_OR_RETURN(RankEngine started, start_rank_engine(mpi, spec, control_options(config), shared_tokenizer));
  *role = std::move(started.role);
  LoadedModel out;
  if (mpi.rank() != 0) return out;
  const ModelConfig& served = started.engine->config().model;  // n_positions: what the engine admits
  out.served.name = config.served_model_name.empty() ? served.name : config.served_model_name;
  out.served.n_positions = served.n_positions;
  out.served.vocab_size = served.vocab_size;
  out.served.created = static_cast<int64_t>(std::time(nullptr));
  out.served.fingerprint = system_fingerprint(spec.worker, role->worker->model_config());
  out.tokenizer = std::move(shared_tokenizer);
  out.engine = std::move(started.engine);
  return out;
}

// --dry-run: what each rank would hold, without loading or allocating anything.
int dry_run(const ServerConfig& config, const MpiRuntime& mpi) {
  if (mpi.rank() != 0) return 0;
  auto model = resolve_model_config(config.model_dir.empty() ? std::string("synthetic:gpt2-124m") : config.model_dir);
  if (!model.is_ok()) {
    std::fprintf(stderr, "kvmesh-serve: error: %s\n", model.status().message().c_str());
    return 1;
  }
  Status layout = validate_layout(*model, config.tp, config.pp, config.tp * config.pp);
  if (!layout.is_ok()) {
    std::fprintf(stderr, "kvmesh-serve: error: %s\n", layout.message().c_str());
    return 1;
  }
  const WorkerOptions wo = worker_options(config, config.model_dir);
  std::fputs(format_shard_plan(*model, config.tp, config.pp, wo.cache, *wo.weight_dtype).c_str(), stdout);
  return 0;
}

// Blocks SIGTERM and SIGINT in this thread and every thread started after it; main waits for them.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return set;
}

// True when a stop signal arrives within `ms` (its sender in *info when given).
bool wait_signal(const sigset_t& set, int64_t ms, siginfo_t* info = nullptr) {
  timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>((ms % 1000) * 1000000)};
  return sigtimedwait(&set, info, &ts) > 0;
}

// Waits until nothing is in flight or `seconds` pass (a second signal cuts it short); `watch` runs
// every round (it may end the job).
void wait_in_flight(const HttpServer& server, const sigset_t& set, double seconds,
                    const std::function<void()>& watch) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (server.n_in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    if (wait_signal(set, 20)) return;
    watch();
  }
}

void drain(HttpServer& server, RequestQueue& queue, const sigset_t& set, double timeout_s,
           const std::function<void()>& watch) {
  std::fprintf(stderr, "kvmesh-serve: draining: %lld requests in flight, up to %.0f s\n",
               static_cast<long long>(server.n_in_flight()), timeout_s);
  queue.set_draining();
  wait_in_flight(server, set, timeout_s, watch);
  if (server.n_in_flight() > 0) {
    std::fprintf(stderr, "kvmesh-serve: drain timeout: cancelling %lld requests\n",
                 static_cast<long long>(server.n_in_flight()));
    queue.cancel_all();
    wait_in_flight(server, set, 2.0, watch);
  }
  server.stop();
}

// A step that outlasts --step-timeout waits on a rank that stopped answering (inside a collective,
// where no bounded wait sees it): the open requests fail now, not when the step returns.
void watch_ranks(EngineLoop& loop, double step_timeout_s) {
  char bound[64];
  std::snprintf(bound, sizeof bound, "--step-timeout %g s", step_timeout_s);
  if (loop.step_seconds() > step_timeout_s) {
    loop.fail_lost(std::string("a rank stopped answering: a step waited longer than ") + bound);
  } else if (loop.stalled_seconds() > step_timeout_s + 5.0) {
    loop.fail_lost(std::string("the engine stopped: its loop has not come round within ") + bound + " + 5 s");
  }
}

// After a lost rank: lets the HTTP sessions write the errors (up to flush_s), then ends the job.
[[noreturn]] void end_lost_job(const HttpServer& server, MpiRuntime& mpi, double flush_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(flush_s);
  while (server.n_in_flight() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::fprintf(stderr, "kvmesh-serve: a rank was lost; ending the job (exit 3)\n");
  mpi.abort(3);
}

// Rank 0: HTTP in front of the engine loop until SIGTERM/SIGINT (drain) or a lost rank (exit 3).
int serve(const ServerConfig& config, LoadedModel& model, DistributedExecutor* distributed,
          const sigset_t& stop_signals, MpiRuntime& mpi) {
  RequestQueue queue(config.max_queue);
  Metrics metrics;
  AdmissionLimits limits = model.engine->admission_limits();
  limits.max_queue = config.max_queue;
  RoutesContext rc{model.served, model.tokenizer, &queue, nullptr, &metrics, config.api_key,
                   config.metrics_require_key, limits, config.cors, config.log_requests};
  EngineLoopOptions loop_options;
  loop_options.debug_step_delay_ms = config.debug_step_delay_ms;
  loop_options.lose_on_unavailable = distributed != nullptr;
  EngineLoop loop(std::move(model.engine), queue, metrics, loop_options);
  rc.engine = &loop;
  Routes routes(std::move(rc));
  loop.start();
  auto server = HttpServer::start(config, routes);
  if (!server.is_ok()) {
    std::fprintf(stderr, "kvmesh-serve: error: %s\n", server.status().message().c_str());
    mpi.abort(1);
  }
  std::printf("kvmesh-serve: listening on http://%s:%d\n", config.host.c_str(), (*server)->port());
  std::printf("kvmesh-serve: try: curl -s http://%s:%d/v1/completions -H 'Content-Type: application/json' "
              "-d '{\"prompt\": \"The quick brown fox\", \"max_tokens\": 16, \"temperature\": 0}'\n",
              config.host.c_str(), (*server)->port());
  std::fflush(stdout);
  // A lost rank ends the job, also while draining.
  auto watch = [&] {
    if (distributed != nullptr) watch_ranks(loop, config.step_timeout_s);
    if (loop.lost()) end_lost_job(**server, mpi, 2.0);
  };
  siginfo_t sender{};
  while (!wait_signal(stop_signals, 200, &sender)) watch();
  if (distributed != nullptr && sender.si_pid == getppid()) {
    // mpirun (or its daemon) ends the job, after a rank exited or was killed, or on its own stop,
    // and kills what is left a second later: no time to drain.
    loop.fail_lost("the job is ending: mpirun stopped it (a rank exited or the job was stopped)");
    end_lost_job(**server, mpi, 0.5);
  }
  drain(**server, queue, stop_signals, config.drain_timeout_s, watch);
  queue.stop();
  while (loop.running()) {  // a step stuck on a lost rank would hold the join for good
    watch();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  loop.join();
  if (distributed != nullptr) (void)distributed->shutdown();
  std::fprintf(stderr, "kvmesh-serve: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  FlagsOutcome flags = parse_server_flags(argc, argv);
  if (flags.exit_code >= 0) {
    std::fprintf(flags.exit_code == 0 ? stdout : stderr, "%s\n", flags.message.c_str());
    return flags.exit_code;
  }
  const ServerConfig& config = flags.config;
  MpiRuntime mpi(&argc, &argv);
  if (mpi.rank() == 0)
    for (const std::string& note : flags.notes) std::fprintf(stderr, "%s\n", note.c_str());
  if (config.dry_run) return dry_run(config, mpi);
  const sigset_t stop_signals = block_stop_signals();
  RankRole role;
  auto model = load_model(config, mpi, &role);
  if (!model.is_ok()) {
    if (mpi.rank() == 0) std::fprintf(stderr, "kvmesh-serve: error: %s\n", model.status().message().c_str());
    return 1;
  }
  if (mpi.rank() != 0) return role.worker_loop_status.is_ok() ? 0 : 1;
  return serve(config, *model, role.distributed, stop_signals, mpi);
}
