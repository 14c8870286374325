// The engine: owns scheduler and executor, and runs one step at a time (schedule, execute, postprocess).
#include "coordinator/engine.h"

#include <cmath>
#include <string>

#include "common/tokenizer.h"
#include "coordinator/scheduler.h"
#include "coordinator/step_executor.h"

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
}

Engine::~Engine() = default;

Result<uint64_t> Engine::add_request(GenerationRequest request, OutputSink sink) {
  const ModelConfig& m = config_.model;
  const auto n_prompt = static_cast<int64_t>(request.prompt_ids.size());
  if (n_prompt == 0) return invalid_argument("the prompt is empty");
  for (int32_t t : request.prompt_ids) {
    if (t < 0 || t >= m.vocab_size)
      return invalid_argument("token id " + std::to_string(t) + " is outside the vocabulary [0, " +
                              std::to_string(m.vocab_size) + ")");
  }
  if (request.max_tokens < 1) return invalid_argument("max_tokens must be at least 1");
  const int64_t total = n_prompt + request.max_tokens;
  if (total > m.n_positions) {
    return invalid_argument("This model's maximum context length is " +
                            std::to_string(m.n_positions) + " tokens. However, you requested " +
                            std::to_string(total) + " tokens (" + std::to_string(n_prompt) +
                            " in the messages, " + std::to_string(request.max_tokens) +
                            " in the completion). Please reduce the length of the messages or "
                            "completion.");
  }
  KVMESH_RETURN_IF_ERROR(check_group(request));
  const BlockManager& blocks = scheduler_->blocks();
  const int32_t pages = scheduler_->worst_case_pages(request);
  if (pages > blocks.n_pages()) {
    const std::string width = request.group_size() > 1
                                  ? " for " + std::to_string(request.group_size()) + " sequences"
                                  : "";
    return resource_exhausted("the request needs " + std::to_string(pages) + " KV pages" + width +
                              " but the cache holds " + std::to_string(blocks.n_pages()) +
                              "; raise the KV cache budget or lower max_tokens");
  }
  const uint64_t id = next_seq_id_++;
  scheduler_->add(id, std::move(request), std::move(sink));
  return id;
}

Status Engine::check_group(const GenerationRequest& r) const {
  if (r.n < 1) return invalid_argument("n must be at least 1");
  if (r.best_of < r.n && r.best_of != 1)
    return invalid_argument("best_of must be greater than or equal to n");
  const int32_t width = r.group_size();
  if (width > config_.max_num_seqs || width > config_.max_batch_tokens) {
    return invalid_argument("the request runs " + std::to_string(width) +
                            " sequences together, more than one step holds (--max-num-seqs " +
                            std::to_string(config_.max_num_seqs) + ", --max-batch-tokens " +
                            std::to_string(config_.max_batch_tokens) + ")");
  }
  if (r.beam_search) {
    if (width > kMaxBeamWidth)
      return invalid_argument("the beam width is at most " + std::to_string(kMaxBeamWidth));
    if (!std::isfinite(r.length_penalty)) return invalid_argument("length_penalty must be a finite number");
    if (!r.stop.empty()) return invalid_argument("stop strings are not supported with beam search; use stop_token_ids");
    if (r.sampling.has_penalties())
      return invalid_argument("presence, frequency and repetition penalties are not supported with beam search");
  }
  return Status::ok();
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
