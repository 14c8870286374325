// SequenceGroup: the sequences of one prompt (n > 1 samples, best_of, or beam search) that share
// the prompt's KV pages and are admitted, preempted and cancelled as one. A plain request is a
// group of one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "coordinator/beam_search.h"
#include "coordinator/request.h"
#include "coordinator/sequence.h"

namespace kvmesh {

// A finished beam hypothesis: its generated tokens and how it ended.
struct BeamHypothesis {
  std::vector<int32_t> tokens;
  std::vector<PositionLogprobs> logprobs;
  bool stopped = false;  // ended by a stop token (the last token), not by the length limit
};

struct SequenceGroup {
  SequenceGroup(uint64_t id, GenerationRequest request, OutputSink sink);

  uint64_t id;
  GenerationRequest request;
  OutputSink sink;
  SeqStatus status = SeqStatus::waiting;
  bool cancel_requested = false;
  // Live members. Before the group forks it holds the root alone, which computes the prompt once.
  std::vector<std::unique_ptr<Sequence>> members;
  bool forked = false;
  std::vector<bool> index_done;  // per returned sequence: its last delta was sent
  // best_of > n: finished samples wait here until all are done, then the n best are sent.
  std::vector<GenerationOutput> held;
  // Beam search only.
  std::unique_ptr<BeamSearch> beam;
  std::map<int64_t, BeamHypothesis> hypotheses;  // by BeamSearch key
  int64_t next_key = 0;

  int32_t width() const { return request.group_size(); }
  bool is_beam() const { return request.beam_search; }
  bool is_sampling_group() const { return !request.beam_search && width() > 1; }
  // Members' outputs go straight to the client (n samples, nothing to choose between).
  bool streams_members() const { return !request.beam_search && request.best_of <= request.n; }
  int32_t n_members() const { return static_cast<int32_t>(members.size()); }
};

}  // namespace kvmesh
