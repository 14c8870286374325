// Scheduler: FCFS continuous batching with chunked prefill and preemption; turns queues into StepPlans
// and step results into output deltas. It touches no bytes, sockets or MPI.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"
#include "coordinator/block_manager.h"
#include "coordinator/sequence.h"
#include "coordinator/tier_policy.h"

namespace kvmesh {

struct SchedulerConfig {
  int32_t max_num_seqs = 64;
  int32_t max_batch_tokens = 2048;
  int32_t n_positions = 1024;
  int32_t eos_token_id = -1;
};

struct SchedulerStats {
  int64_t n_preemptions = 0;
  int64_t n_steps = 0;
  int64_t n_cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, const TierCapacity& capacity, int32_t block_size,
            const Tokenizer* tokenizer);

  void add(std::unique_ptr<Sequence> seq);
  void cancel(uint64_t seq_id);  // takes effect at the next schedule()
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }

  // Picks this step's work. Sequences cancelled since the last step end here.
  StepPlan schedule();
  // Applies the workers' results: appends tokens, checks stops, streams deltas, frees pages.
  void postprocess(const StepPlan& plan, const StepResult& result);
  // Ends every sequence (running and waiting) with an error delta.
  void fail_all(const Status& status);

  const BlockManager& blocks() const { return blocks_; }
  const TierPolicy& tier_policy() const { return policy_; }
  const SchedulerStats& stats() const { return stats_; }
  int32_t n_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t n_waiting() const { return static_cast<int32_t>(waiting_.size()); }

 private:
  void drop_cancelled();
  bool schedule_seq(Sequence& seq, int32_t n_tokens, StepPlan* plan);
  // Reuses the cached leading pages of a sequence that holds none; false when it must wait a
  // step for its prefix to come up from disk.
  bool reuse_prefix(Sequence& seq);
  void register_full_pages(Sequence& seq);
  void preempt(std::unique_ptr<Sequence> seq);
  SeqWork make_work(const Sequence& seq, int32_t n_tokens) const;
  void collect_prompt_logprobs(Sequence& seq, const SeqWork& work, const SeqResult& res);
  FinishReason append_token(Sequence& seq, const SeqResult& res);
  void send_delta(Sequence& seq, const SeqResult* res, FinishReason finish, const std::string& error);
  void finish(Sequence& seq);

  SchedulerConfig config_;
  BlockManager blocks_;
  TierPolicy policy_;
  const Tokenizer* tokenizer_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // oldest admission first
  std::vector<uint64_t> cancelled_;
  SchedulerStats stats_;
  uint64_t next_step_id_ = 1;
};

}  // namespace kvmesh
