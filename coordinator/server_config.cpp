// ServerConfig flag parsing (CLI11) and byte sizes with units.
#include "coordinator/server_config.h"

#include <cctype>
#include <cmath>
#include <utility>

#include <CLI/CLI.hpp>

#include "common/cli_parse.h"
#include "common/byte_size.h"
#include "common/config.h"
#include "common/device_flags.h"

namespace kvmesh {
namespace {

// String options whose values need more than CLI11's conversion.
struct RawFlags {
  std::string kv_device_mem = "256MiB";
  std::string kv_host_mem = "0";
  std::string kv_disk_mem = "0";
  std::string max_body_bytes = "1MiB";
  std::string max_header_bytes = "16KiB";
  std::string allowed_origins;
  bool disable_log_requests = false;
  std::string positional_model;  // kvmesh-serve MODEL, as vLLM's `vllm serve MODEL`
};

void add_engine_flags(CLI::App& app, ServerConfig& c, RawFlags& raw) {
  app.add_option("model", raw.positional_model, "The model, as --model (kvmesh-serve MODEL)");
  app.add_option("--model", c.model_dir,
                 "Hugging Face GPT-2 checkpoint directory or synthetic:<shape> (default: a small random model)");
  app.add_option("--served-model-name", c.served_model_name, "Name clients use in `model` (default: the model's name)");
  app.add_option("--threads", c.threads, "Compute threads (0 = all cores)")->check(CLI::Range(0, 4096));
  app.add_option("--block-size", c.block_size, "Tokens per KV page")->check(CLI::Range(1, 4096));
  CLI::Option* kv_mem = app.add_option("--kv-device-mem", raw.kv_device_mem, "KV cache budget, with a unit (256MiB, 8GiB)");
  app.add_option("--gpu-memory-utilization", c.kv_device_fraction,
                 "With --device cuda: the fraction of the GPU memory still free once the weights are placed that "
                 "the KV cache takes, instead of --kv-device-mem (0 = use --kv-device-mem)")
      ->check(CLI::Range(0.0, 0.99))
      ->excludes(kv_mem);
  app.add_option("--kv-host-mem", raw.kv_host_mem, "Host tier for cold KV pages, with a unit (0 = none)");
  app.add_option("--kv-disk-mem", raw.kv_disk_mem, "Disk tier for cold KV pages, with a unit (0 = none)");
  app.add_option("--kv-disk-dir", c.kv_disk_dir, "Directory of the disk tier's files (one per rank)");
  app.add_flag("--kv-disk-persist", c.kv_disk_persist, "Keep disk pages across restarts (same model and layout)");
  app.add_option("--kv-dtype", c.kv_dtype, "KV cache dtype: f32, bf16, f16 or i8")
      ->check(CLI::IsMember(kv_dtype_names()));
  app.add_option("--device", c.device, "Compute backend: cpu or cuda (one GPU per rank)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--dtype", c.dtype,
                 "Matrix weight dtype: auto (cpu f32, cuda bf16), f32 or bf16 on cpu, bf16 or f16 on cuda")
      ->check(CLI::IsMember({"auto", "f32", "fp32", "float32", "float", "bf16", "bfloat16", "f16", "fp16", "float16",
                             "half"}));
  app.add_flag("--enforce-eager", c.enforce_eager,
               "With --device cuda: launch every op of every step (no captured decode graphs)");
  app.add_option("--max-num-seqs", c.max_num_seqs, "Most sequences in one step")->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-model-len", c.max_model_len,
                 "Longest context (prompt + completion) served, at most the model's n_positions (0 = that)")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--max-batch-tokens", c.max_batch_tokens, "Most tokens in one step (chunked prefill)")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--max-queue", c.max_queue, "Waiting sequences before new requests get 429")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--tp,--tensor-parallel-size", c.tp, "Tensor-parallel ranks (launch tp * pp ranks with mpirun)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--pp,--pipeline-parallel-size", c.pp, "Pipeline-parallel stages")->check(CLI::Range(1, 1024));
  app.add_option("--micro-batches", c.micro_batches, "Micro-batches per step with --pp > 1 (0 = pp)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--step-timeout", c.step_timeout_s, "Seconds a step may wait for another rank before the job ends")
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--startup-timeout", c.startup_timeout_s,
                 "Seconds a rank's start-up (loading, allocating, joining the others) may take under mpirun "
                 "before the job ends (0 = no bound)")
      ->check(CLI::Range(0.0, 604800.0));
  app.add_flag("--dry-run", c.dry_run, "Print the layers, heads, weight and KV bytes of every rank, then exit");
}

void add_http_flags(CLI::App& app, ServerConfig& c, RawFlags& raw) {
  app.add_option("--host", c.host, "Address to listen on");
  app.add_option("--port", c.port, "Port (0 = pick a free one)")->check(CLI::Range(0, 65535));
  app.add_option("--http-threads", c.http_threads, "HTTP I/O threads")->check(CLI::Range(1, 256));
  app.add_option("--max-body-bytes", raw.max_body_bytes, "Largest request body, with a unit (413 beyond)");
  app.add_option("--max-header-bytes", raw.max_header_bytes, "Largest request head, with a unit (431 beyond)");
  app.add_option("--max-header-count", c.max_header_count, "Most header fields (431 beyond)")
      ->check(CLI::Range(1, 10000));
  app.add_option("--read-timeout", c.read_timeout_s, "Seconds a request (or an idle keep-alive) may take to arrive")
      ->check(CLI::Range(0.01, 86400.0));
  app.add_option("--write-timeout", c.write_timeout_s, "Seconds a client may read nothing before it is dropped")
      ->check(CLI::Range(0.01, 86400.0));
  app.add_option("--api-key", c.api_key,
                 "Require `Authorization: Bearer KEY` on every route but /health, /ready and /metrics "
                 "(also $KVMESH_API_KEY)")
      ->envname("KVMESH_API_KEY");
  app.add_flag("--metrics-require-key", c.metrics_require_key, "With --api-key: /metrics needs the key too");
  app.add_option("--allowed-origins", raw.allowed_origins,
                 "Browser origins (CORS) that may call the API: a comma-separated list of "
                 "scheme://host[:port], or * for any (default: none)");
  app.add_flag("--disable-log-requests", raw.disable_log_requests,
               "No JSON line per request on stderr (the metrics still count every request)");
  app.add_option("--drain-timeout", c.drain_timeout_s, "Seconds running requests get to finish on SIGTERM")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--debug-step-delay-ms", c.debug_step_delay_ms, "Testing: sleep this long in every engine step")
      ->check(CLI::Range(0, 60000));
}

Status apply_raw_flags(const RawFlags& raw, ServerConfig& c) {
  auto kv = parse_byte_size(raw.kv_device_mem);
  if (!kv.is_ok()) return kv.status().with_context("--kv-device-mem");
  auto body = parse_byte_size(raw.max_body_bytes);
  if (!body.is_ok()) return body.status().with_context("--max-body-bytes");
  auto head = parse_byte_size(raw.max_header_bytes);
  if (!head.is_ok()) return head.status().with_context("--max-header-bytes");
  if (*kv < 1) return invalid_argument("--kv-device-mem: must be positive");
  if (*body < 1) return invalid_argument("--max-body-bytes: must be positive");
  if (*head < 256 || *head > (64 << 20)) return invalid_argument("--max-header-bytes: must be in [256B, 64MiB]");
  c.kv_device_bytes = *kv;
  auto host = parse_byte_size(raw.kv_host_mem);
  if (!host.is_ok()) return host.status().with_context("--kv-host-mem");
  auto disk = parse_byte_size(raw.kv_disk_mem);
  if (!disk.is_ok()) return disk.status().with_context("--kv-disk-mem");
  if (*disk > 0 && c.kv_disk_dir.empty()) return invalid_argument("--kv-disk-mem needs --kv-disk-dir");
  c.kv_host_bytes = *host;
  c.kv_disk_bytes = *disk;
  c.max_body_bytes = *body;
  c.max_header_bytes = static_cast<int32_t>(*head);
  auto cors = CorsPolicy::parse(raw.allowed_origins);
  if (!cors.is_ok()) return cors.status();
  c.cors = std::move(cors).value();
  c.log_requests = !raw.disable_log_requests;
  if (!raw.positional_model.empty()) {
    if (!c.model_dir.empty() && c.model_dir != raw.positional_model)
      return invalid_argument("the model is given twice: '" + raw.positional_model + "' and --model '" + c.model_dir + "'");
    c.model_dir = raw.positional_model;
  }
  if (c.dtype == "float") c.dtype = "f32";  // vLLM's name for float32
  return weight_dtype_from_flags(c.device, c.dtype).status();
}

}  // namespace

FlagsOutcome parse_server_flags(int argc, const char* const* argv) {
  FlagsOutcome out;
  CLI::App app{"kvmesh-serve: OpenAI-compatible GPT-2 inference server", "kvmesh-serve"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  RawFlags raw;
  add_engine_flags(app, out.config, raw);
  add_http_flags(app, out.config, raw);
  const CliOutcome parsed = parse_cli(app, argc, argv, "kvmesh-serve");
  if (parsed.exit_code >= 0) {
    out.exit_code = parsed.exit_code;
    out.message = parsed.message;
    return out;
  }
  if (Status st = apply_raw_flags(raw, out.config); !st.is_ok()) {
    out.exit_code = 2;
    out.message = "kvmesh-serve: error: " + st.message() + " (see --help)";
    return out;
  }
  if (out.config.kv_device_fraction > 0.0 && out.config.device != "cuda")
    out.notes.push_back("kvmesh-serve: note: --gpu-memory-utilization has no effect with --device " +
                        out.config.device + "; the KV cache takes --kv-device-mem");
  return out;
}

}  // namespace kvmesh
