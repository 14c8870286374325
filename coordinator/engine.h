// The engine: owns a scheduler and a StepExecutor (which runs each step on the workers), and runs one
// step at a time (schedule, execute, postprocess).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "common/step_executor.h"
#include "coordinator/admission.h"
#include "coordinator/request.h"

namespace kvmesh {

class Scheduler;
class StepExecutor;
class Tokenizer;

struct EngineConfig {
  ModelConfig model;
  CacheConfig cache;
  int32_t max_num_seqs = 64;          // sequences in one step
  int32_t max_batch_tokens = 2048;    // tokens in one step (chunked prefill)
};

class Engine {
 public:
  // executor runs StepPlans (the local worker, or the broadcast to all ranks).
  Engine(const EngineConfig& config, std::unique_ptr<StepExecutor> executor,
         std::shared_ptr<const Tokenizer> tokenizer);
  ~Engine();

  // Queues a request (one sequence group). Fails (nothing queued) when Admission refuses it: the
  // prompt is empty or holds an id outside the vocabulary, prompt + max_tokens exceeds the
  // context, or the group cannot fit a step or the cache. The sink gets every delta of every
  // returned sequence (delta.index).
  Result<uint64_t> add_request(GenerationRequest request, OutputSink sink);
  // Stops a request; its sink gets a final delta per open sequence with finish == cancelled at the
  // next step.
  void cancel(uint64_t seq_id);
  bool has_work() const;
  // One schedule -> execute -> postprocess round. A failed execute ends every running sequence
  // with an error delta and returns the status.
  Status step();

  const EngineConfig& config() const { return config_; }
  // The limits this engine admits requests by (the routes refuse what it would refuse, up front).
  AdmissionLimits admission_limits() const;
  const Scheduler& scheduler() const { return *scheduler_; }
  const TierCapacity& capacity() const;

 private:
  EngineConfig config_;
  std::unique_ptr<StepExecutor> executor_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<Scheduler> scheduler_;
  Admission admission_{AdmissionLimits{}};
  uint64_t next_seq_id_ = 1;
};

// Runs a request to completion on an engine with nothing else queued (offline use and tests):
// one sequence, or all n of a group (index i = delta.index i).
Result<GenerationOutput> generate_blocking(Engine& engine, GenerationRequest request);
Result<std::vector<GenerationOutput>> generate_group_blocking(Engine& engine, GenerationRequest request);

}  // namespace kvmesh
