// Worker: executes StepPlans on its shard of the model (CacheOps first, then forward, then sampling).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/config.h"
#include "common/protocol.h"
#include "common/status.h"

namespace kvmesh {

struct WorkerOptions {
  std::string model_dir;       // HF-layout checkpoint directory
  CacheConfig cache;
  int n_threads = 0;           // compute threads; 0 = all cores
};

class Model;
class KvStore;

class Worker {
 public:
  // Loads the weights and allocates the KV page pool. Errors name the file and the problem.
  static Result<std::unique_ptr<Worker>> create(const WorkerOptions& options);
  ~Worker();

  // Runs one step. Bad plans (page ids outside the pool, positions past the context) are errors.
  Status execute(const StepPlan& plan, StepResult* result);

  const ModelConfig& model_config() const;
  int32_t n_device_pages() const;

 private:
  Worker();
  std::unique_ptr<Model> model_;
  std::unique_ptr<KvStore> kv_;
  struct Scratch;
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace kvmesh
