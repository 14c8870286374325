// Scheduler: FCFS continuous batching of sequence groups with chunked prefill and preemption; turns
// queues into StepPlans and step results into output deltas. It touches no bytes, sockets or MPI.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"
#include "coordinator/block_manager.h"
#include "coordinator/sequence_group.h"
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

  // Queues a request as a group (its root member computes the prompt once). Member ids are the
  // scheduler's own; the group id is the caller's handle.
  void add(uint64_t group_id, GenerationRequest request, OutputSink sink);
  void cancel(uint64_t group_id);  // takes effect at the next schedule()
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }

  // Picks this step's work. Groups cancelled since the last step end here.
  StepPlan schedule();
  // Applies the workers' results: appends tokens, steps beam searches, checks stops, streams
  // deltas, frees pages.
  void postprocess(const StepPlan& plan, const StepResult& result);
  // Ends every group (running and waiting) with an error delta.
  void fail_all(const Status& status);

  const BlockManager& blocks() const { return blocks_; }
  const TierPolicy& tier_policy() const { return policy_; }
  const SchedulerStats& stats() const { return stats_; }
  int32_t n_running() const;  // member sequences
  int32_t n_waiting() const;

 private:
  // What one member computes this step.
  struct MemberWork {
    Sequence* seq;
    int32_t n_tokens;
  };
  void drop_cancelled();
  // This step's work for a running group within the token budget (empty when it must wait).
  std::vector<MemberWork> plan_group(SequenceGroup& group, int32_t budget);
  int32_t pages_needed(const std::vector<MemberWork>& work) const;
  void commit_work(const std::vector<MemberWork>& work, StepPlan* plan);
  // Admits the group at the head of the queue if its pages, tokens and seats fit.
  bool admit_head(int32_t* budget, int32_t* seats, StepPlan* plan);
  // Reuses the cached leading pages of a member that holds none; false when it must wait a
  // step for its prefix to come up from disk.
  bool reuse_prefix(Sequence& seq);
  void register_full_pages(Sequence& seq);
  void preempt(std::unique_ptr<SequenceGroup> group);
  void release_members(SequenceGroup& group);
  void fork_samples(SequenceGroup& group);
  std::unique_ptr<Sequence> fork_member(const Sequence& parent);
  SeqWork make_work(const Sequence& seq, int32_t n_tokens) const;
  void collect_prompt_logprobs(Sequence& seq, const SeqWork& work, const SeqResult& res);
  bool is_stop_token(const GenerationRequest& r, int32_t token) const;
  FinishReason append_token(Sequence& seq, const SeqResult& res);
  void on_sample(SequenceGroup& group, Sequence& seq, const SeqResult& res);
  void beam_step(SequenceGroup& group, const std::vector<std::pair<Sequence*, const SeqResult*>>& results);
  void finish_beam_search(SequenceGroup& group);
  void finish_best_of(SequenceGroup& group);
  // `unavailable`: an error that is the service's, not the request's (see GenerationDelta).
  void send_delta(SequenceGroup& group, Sequence& seq, const SeqResult* res, FinishReason finish,
                  const std::string& error, bool unavailable = false);
  void emit(SequenceGroup& group, GenerationDelta delta);
  // Ends every returned sequence not yet ended, and frees the group's pages.
  void end_group(SequenceGroup& group, FinishReason finish, const std::string& error, bool unavailable = false);
  void finish_member(SequenceGroup& group, Sequence& seq);

  SchedulerConfig config_;
  BlockManager blocks_;
  TierPolicy policy_;
  const Tokenizer* tokenizer_;
  std::deque<std::unique_ptr<SequenceGroup>> waiting_;
  std::vector<std::unique_ptr<SequenceGroup>> running_;  // oldest admission first
  std::vector<uint64_t> cancelled_;
  SchedulerStats stats_;
  uint64_t next_step_id_ = 1;
  uint64_t next_member_id_ = 1;
};

}  // namespace kvmesh
