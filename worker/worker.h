// Worker: executes StepPlans on its shard of the model (CacheOps first, then the forward of its
// pipeline stage in micro-batches, then, on the sampling rank, log-probs and sampling).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/config.h"
#include "common/protocol.h"
#include "common/status.h"
#include "common/step_executor.h"
#include "worker/backend_factory.h"
#include "worker/collectives.h"
#include "worker/parallel.h"

namespace kvmesh {

struct WorkerOptions {
  std::string model_dir;       // HF-layout checkpoint directory, or "synthetic:<shape>"
  uint64_t synthetic_seed = 1; // weights of a synthetic model
  CacheConfig cache;
  int n_threads = 0;           // compute threads; 0 = all cores
  ParallelLayout layout;       // tp, pp and this rank
  int micro_batches = 0;       // per step with pp > 1; 0 = pp
  DeviceKind device = DeviceKind::cpu;  // compute backend
  std::optional<DType> weight_dtype;    // matrix weights; unset: the device's default (cpu f32, cuda bf16)
  int device_index = -1;                // CUDA: GPU to use (-1: local rank modulo visible GPUs)
  bool decode_graphs = true;            // CUDA: decode steps replay captured graphs (--enforce-eager: off)
  CudaBackendOptions cuda;              // CUDA: how the backend runs its ops (all on by default)
  bool record_graphs_on_cpu = false;    // tests: the CPU backend records and replays decode graphs
  int cpu_recordings_fail_from_rows = 0;  // tests: with record_graphs_on_cpu, buckets this large fail to record
};

class Model;
class KvStore;
struct MicroBatch;

// Time a rank spent in one step, for the pipeline bubble.
struct StepTiming {
  double total_s = 0;    // whole execute()
  double compute_s = 0;  // forward and sampling, excluding waits for other stages
};

class Worker {
 public:
  // Loads this rank's weight shard and allocates its KV page pool; the page count is the minimum
  // over all ranks. Errors name the file and the problem.
  static Result<std::unique_ptr<Worker>> create(const WorkerOptions& options,
                                                std::unique_ptr<Collectives> collectives);
  static Result<std::unique_ptr<Worker>> create(const WorkerOptions& options) {
    return create(options, make_local_collectives());
  }
  ~Worker();

  // Runs one step. Bad plans (page ids outside the pool, positions past the context) are errors
  // (every rank sees the same plan, so every rank rejects it alike). `result` is filled on the
  // sampling rank only.
  Status execute(const StepPlan& plan, StepResult* result);

  const ModelConfig& model_config() const;
  const ParallelLayout& layout() const;
  int32_t n_device_pages() const { return capacity_.device_pages; }
  // Decode graphs recorded so far (one per batch-size bucket used; 0 when they are off).
  int n_decode_graphs() const;
  const TierCapacity& capacity() const { return capacity_; }
  const StepTiming& last_timing() const { return timing_; }
  // Sums over every step so far: busy (compute) versus total time, for the pipeline bubble.
  const StepTiming& total_timing() const { return total_timing_; }
  int64_t n_steps() const { return n_steps_; }
  // Time this rank spent in a step outside execute() (rank 0 waiting for the sampled result).
  void add_step_wait(double seconds) { total_timing_.total_s += seconds; }
  uint64_t checkpoint_bytes_read() const { return bytes_read_; }

 private:
  Worker();
  Status validate(const StepPlan& plan) const;
  void build_micro_batches(const StepPlan& plan);
  void forward_micro_batches();
  void sample_results(const StepPlan& plan, StepResult* result);

  std::unique_ptr<Collectives> collectives_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KvStore> kv_;
  int micro_batches_ = 1;
  std::vector<MicroBatch> mbs_;
  StepTiming timing_;
  StepTiming total_timing_;
  int64_t n_steps_ = 0;
  uint64_t bytes_read_ = 0;
  TierCapacity capacity_;
  Status forward_status_;  // the first error of the current step's forward
};

}  // namespace kvmesh
