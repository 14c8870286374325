// ServerConfig: every setting of kvmesh-serve, parsed once from the command line (CLI11) and
// validated; sizes accept units (256KiB, 8GiB, 64MB). Everything downstream takes it by const ref.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/byte_size.h"
#include "common/status.h"
#include "coordinator/cors.h"

namespace kvmesh {

struct ServerConfig {
  // Model and engine.
  std::string model_dir;                 // "" -> the default model (default_model.h)
  std::string served_model_name;         // "" -> the model's name
  int threads = 0;                       // compute threads; 0 = all cores
  int32_t block_size = 16;               // tokens per KV page
  int64_t kv_device_bytes = 256ll << 20; // KV cache budget of the device tier
  double kv_device_fraction = 0.0;       // cuda: KV takes this share of the memory free after the weights
  int64_t kv_host_bytes = 0;             // host tier (0 = none)
  int64_t kv_disk_bytes = 0;             // disk tier (0 = none)
  std::string kv_disk_dir;               // where each rank's disk file lives
  bool kv_disk_persist = false;          // keep disk pages across restarts
  std::string kv_dtype = "f32";          // f32, bf16, f16, i8
  std::string device = "cpu";            // compute backend: cpu or cuda
  std::string dtype = "auto";            // matrix weights: auto (cpu f32, cuda bf16), f32, bf16, f16
  bool enforce_eager = false;            // cuda: no captured decode graphs
  int32_t max_num_seqs = 64;             // sequences in one step
  int32_t max_model_len = 0;             // context (prompt + completion) served; 0 = the model's n_positions
  int32_t max_batch_tokens = 2048;       // tokens in one step (chunked prefill)
  int32_t max_queue = 256;               // waiting sequences before new requests get 429

  // Parallel layout (launch tp * pp ranks with mpirun).
  int tp = 1;
  int pp = 1;
  int micro_batches = 0;                 // per step with pp > 1; 0 = pp
  double step_timeout_s = 300.0;         // a step waiting longer on another rank ends the job
  double startup_timeout_s = 1800.0;     // a rank's start-up taking longer under mpirun ends the job
  bool dry_run = false;                  // print what each rank would hold, then exit

  // HTTP.
  std::string host = "127.0.0.1";
  int port = 8000;                       // 0 = pick a free port (printed at start)
  int http_threads = 2;
  int64_t max_body_bytes = 1ll << 20;    // larger bodies get 413
  int32_t max_header_bytes = 16 << 10;   // request line + headers; larger gets 431
  int32_t max_header_count = 100;        // more header fields gets 431
  double read_timeout_s = 30.0;          // a request (or keep-alive idle) must arrive within it
  double write_timeout_s = 60.0;         // a client that reads nothing for this long is dropped
  std::string api_key;                   // "" = no authentication
  bool metrics_require_key = false;      // /metrics needs the key too (public by default)
  CorsPolicy cors;                       // --allowed-origins: browser origins that may call
  bool log_requests = true;              // one JSON line per request on stderr
  double drain_timeout_s = 30.0;         // SIGTERM: running requests get this long to finish

  // Testing.
  int debug_step_delay_ms = 0;           // sleep in every engine step
};

// What parse_server_flags decided: run with `config`, or exit with `exit_code` after printing
// `message` (help text to stdout when exit_code is 0, a one-line error to stderr otherwise).
struct FlagsOutcome {
  ServerConfig config;
  int exit_code = -1;  // -1: run
  std::string message;
  std::vector<std::string> notes;  // lines for rank 0 to print when it runs (flags that have no effect)
};

FlagsOutcome parse_server_flags(int argc, const char* const* argv);


}  // namespace kvmesh
