// The engine: owns scheduler and executor, and runs one step at a time (schedule, execute, postprocess).
#include "coordinator/engine.h"

#include <cmath>
#include <string>

#include "common/tokenizer.h"
#include "coordinator/scheduler.h"
#include "common/step_executor.h"

namespace kvmesh {
namespace {

Status check_result_matches(const StepPlan& plan, const StepResult& result) {
  if (result.step_id != plan.step_id || result.seqs.size() != plan.seqs.size())
    return internal_error("step result does not match its plan");
  for (size_t i = 0; i < plan.seqs.size(); ++i)
    if (result.seqs[i].seq_id != plan.seqs[i].seq_id)
      return internal_error("step result lists sequences out of order");
  return Status::ok();
}

}  // namespace

Engine::Engine(const EngineConfig& config, std::unique_ptr<StepExecutor> executor,
               std::shared_ptr<const Tokenizer> tokenizer)
    : config_(config), executor_(std::move(executor)), tokenizer_(std::move(tokenizer)) {
  SchedulerConfig sc;
  sc.max_num_seqs = config_.max_num_seqs;
  sc.max_batch_tokens = config_.max_batch_tokens;
  sc.n_positions = config_.model.n_positions;
  sc.eos_token_id = config_.model.eos_token_id;
  scheduler_ = std::make_unique<Scheduler>(sc, executor_->capacity(), config_.cache.block_size,
                                           tokenizer_.get());
  admission_ = Admission(admission_limits());
}

Engine::~Engine() = default;

Result<uint64_t> Engine::add_request(GenerationRequest request, OutputSink sink) {
  if (auto refusal = admission_.group(request)) return refusal->status();
  const uint64_t id = next_seq_id_++;
  scheduler_->add(id, std::move(request), std::move(sink));
  return id;
}

AdmissionLimits Engine::admission_limits() const {
  AdmissionLimits limits;
  limits.n_positions = config_.model.n_positions;
  limits.vocab_size = config_.model.vocab_size;
  limits.max_num_seqs = config_.max_num_seqs;
  limits.max_batch_tokens = config_.max_batch_tokens;
  limits.n_pages = scheduler_->blocks().n_pages();
  limits.block_size = config_.cache.block_size;
  return limits;
}

void Engine::cancel(uint64_t seq_id) { scheduler_->cancel(seq_id); }

bool Engine::has_work() const { return scheduler_->has_work(); }

const TierCapacity& Engine::capacity() const { return executor_->capacity(); }

Status Engine::step() {
  StepPlan plan = scheduler_->schedule();
  if (plan.seqs.empty() && plan.cache_ops.empty()) return Status::ok();
  StepResult result;
  Status status = executor_->execute(plan, &result);
  if (status.is_ok()) status = check_result_matches(plan, result);
  if (!status.is_ok()) {
    scheduler_->fail_all(status);
    return status;
  }
  scheduler_->postprocess(plan, result);
  return Status::ok();
}

Result<std::vector<GenerationOutput>> generate_group_blocking(Engine& engine, GenerationRequest request) {
  std::vector<GenerationOutput> outputs(static_cast<size_t>(std::max(request.n, 1)));
  auto all_finished = [&outputs] {
    for (const auto& o : outputs)
      if (!o.finished()) return false;
    return true;
  };
  auto id = engine.add_request(std::move(request), [&outputs](const GenerationDelta& d) {
    if (d.index >= 0 && d.index < static_cast<int32_t>(outputs.size())) outputs[static_cast<size_t>(d.index)].append(d);
  });
  if (!id.is_ok()) return id.status();
  while (!all_finished()) {
    Status st = engine.step();
    if (!st.is_ok()) return st;
    if (!engine.has_work() && !all_finished()) return internal_error("sequence vanished");
  }
  return outputs;
}

Result<GenerationOutput> generate_blocking(Engine& engine, GenerationRequest request) {
  request.n = 1;
  request.best_of = 1;
  request.beam_search = false;
  KVMESH_ASSIGN_OR_RETURN(auto outputs, generate_group_blocking(engine, std::move(request)));
  return std::move(outputs.front());
}

}  // namespace kvmesh
