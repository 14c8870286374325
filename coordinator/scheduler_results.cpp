// Scheduler, results half: a step's results become tokens, beam-search steps, stop checks and
// output deltas (streamed, or held until a best_of group or a beam search is done).
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "common/tokenizer.h"
#include "coordinator/scheduler.h"

namespace kvmesh {

void Scheduler::postprocess(const StepPlan& plan, const StepResult& result) {
  KVMESH_CHECK(plan.seqs.size() == result.seqs.size());
  const std::vector<int32_t> lost = blocks_.on_ops_failed(plan.cache_ops, result.failed_cache_ops);
  policy_.observe(plan, result);
  // A group holding a page that a failed swap-in or copy left wrong computed on wrong K/V: its
  // results are dropped and it recomputes from its tokens (preempted below).
  std::unordered_set<const SequenceGroup*> redo;
  for (const auto& g : running_) {
    for (const auto& m : g->members) {
      for (int32_t page : m->block_table)
        if (std::find(lost.begin(), lost.end(), page) != lost.end()) redo.insert(g.get());
    }
  }
  std::unordered_map<uint64_t, std::pair<SequenceGroup*, Sequence*>> by_id;
  for (auto& g : running_) {
    if (redo.count(g.get()) != 0) continue;
    for (auto& m : g->members) by_id[m->id] = {g.get(), m.get()};
  }
  std::vector<std::pair<SequenceGroup*, std::vector<std::pair<Sequence*, const SeqResult*>>>> beams;
  for (size_t k = 0; k < plan.seqs.size(); ++k) {
    const SeqWork& work = plan.seqs[k];
    const SeqResult& res = result.seqs[k];
    auto it = by_id.find(work.seq_id);
    if (it == by_id.end()) continue;
    auto [group, seq] = it->second;
    seq->n_computed += work.n_tokens();
    register_full_pages(*seq);
    collect_prompt_logprobs(*seq, work, res);
    if (!work.sample || res.token < 0) continue;
    if (!group->is_beam()) {
      on_sample(*group, *seq, res);
      continue;
    }
    if (beams.empty() || beams.back().first != group) beams.push_back({group, {}});
    beams.back().second.push_back({seq, &res});
  }
  for (auto& [group, results] : beams) beam_step(*group, results);
  for (auto& g : running_) {
    if (g->status == SeqStatus::finished) continue;
    std::erase_if(g->members, [](const auto& m) { return m->status == SeqStatus::finished; });
    if (!g->members.empty()) continue;
    if (!g->streams_members()) finish_best_of(*g);
    g->status = SeqStatus::finished;
  }
  std::erase_if(running_, [](const auto& g) { return g->status == SeqStatus::finished; });
  for (size_t i = running_.size(); i-- > 0;) {
    if (redo.count(running_[i].get()) == 0) continue;
    auto group = std::move(running_[i]);
    running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    preempt(std::move(group));
  }
}

void Scheduler::collect_prompt_logprobs(Sequence& seq, const SeqWork& work, const SeqResult& res) {
  for (size_t i = 0; i < res.prompt_logprobs.size(); ++i) {
    // Row i predicts the token at index n_past + i + 1.
    const int64_t target = static_cast<int64_t>(work.n_past) + static_cast<int64_t>(i) + 1;
    if (target < seq.n_prompt && target == static_cast<int64_t>(seq.prompt_logprobs.size()) + 1)
      seq.prompt_logprobs.push_back(res.prompt_logprobs[i]);
  }
}

bool Scheduler::is_stop_token(const GenerationRequest& r, int32_t token) const {
  return (token == config_.eos_token_id && !r.ignore_eos) ||
         std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(), token) != r.stop_token_ids.end();
}

FinishReason Scheduler::append_token(Sequence& seq, const SeqResult& res) {
  const int32_t token = res.token;
  seq.tokens.push_back(token);
  const GenerationRequest& r = seq.request;
  // Stop tokens cannot be sampled before min_tokens (see make_work); stop strings wait too.
  const bool may_stop = seq.n_generated() >= r.min_tokens;
  if (is_stop_token(r, token)) return FinishReason::stop;  // its text is not shown
  if (seq.text.append(token, may_stop)) return FinishReason::stop;
  if (seq.n_generated() >= r.max_tokens || seq.n_tokens() >= config_.n_positions)
    return FinishReason::length;
  return FinishReason::none;
}

void Scheduler::on_sample(SequenceGroup& group, Sequence& seq, const SeqResult& res) {
  seq.cumulative_logprob += res.token_logprobs.chosen.logprob;
  const FinishReason reason = append_token(seq, res);
  send_delta(group, seq, &res, reason, "");
  if (reason != FinishReason::none) finish_member(group, seq);
}

void Scheduler::finish_member(SequenceGroup& group, Sequence& seq) {
  blocks_.release(&seq.block_table);
  seq.status = SeqStatus::finished;
  if (group.streams_members()) return;
  seq.output.score = seq.cumulative_logprob;
  group.held.push_back(std::move(seq.output));
}

// best_of > n: the n samples with the highest cumulative log-prob, best first.
void Scheduler::finish_best_of(SequenceGroup& group) {
  std::stable_sort(group.held.begin(), group.held.end(),
                   [](const GenerationOutput& a, const GenerationOutput& b) { return a.score > b.score; });
  const bool wants_logprobs = group.request.sampling.n_logprobs >= 0;
  for (int32_t i = 0; i < group.request.n && i < static_cast<int32_t>(group.held.size()); ++i) {
    GenerationDelta d = group.held[static_cast<size_t>(i)].take_as_delta(i);
    if (!wants_logprobs) d.logprobs.clear();
    emit(group, std::move(d));
  }
  group.held.clear();
}

void Scheduler::beam_step(SequenceGroup& group,
                          const std::vector<std::pair<Sequence*, const SeqResult*>>& results) {
  // Beams run in lockstep (plan_group), so every live beam sampled in this step.
  KVMESH_CHECK(static_cast<int32_t>(results.size()) == group.n_members());
  const GenerationRequest& r = group.request;
  const int32_t n_generated = group.members.front()->n_generated();
  std::vector<BeamCandidate> candidates;
  for (int32_t j = 0; j < group.n_members(); ++j) {
    const Sequence& seq = *group.members[static_cast<size_t>(j)];
    KVMESH_CHECK(results[static_cast<size_t>(j)].first == &seq);
    for (const TokenLogprob& t : results[static_cast<size_t>(j)].second->token_logprobs.top) {
      if (t.token < 0) continue;
      const bool stop = is_stop_token(r, t.token);
      if (stop && n_generated < r.min_tokens) continue;  // stop tokens wait for min_tokens
      candidates.push_back(BeamCandidate{j, t.token, t.logprob, seq.cumulative_logprob + t.logprob,
                                         stop || n_generated + 1 >= r.max_tokens});
    }
  }
  const int64_t first_key = group.next_key;
  group.next_key += static_cast<int64_t>(candidates.size());
  BeamSearch::Step step = group.beam->step(candidates, n_generated, first_key);

  const bool wants_logprobs = r.sampling.n_logprobs >= 0;
  auto position = [&](const BeamCandidate& c) {
    PositionLogprobs p;
    p.chosen = TokenLogprob{c.token, c.logprob};
    const auto& top = results[static_cast<size_t>(c.parent)].second->token_logprobs.top;
    const auto k = std::min(top.size(), static_cast<size_t>(std::max(r.sampling.n_logprobs, 0)));
    p.top.assign(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(k));
    return p;
  };
  for (const FinishedBeam& f : step.finished) {
    const Sequence& parent = *group.members[static_cast<size_t>(f.last.parent)];
    BeamHypothesis h;
    h.tokens.assign(parent.tokens.begin() + parent.n_prompt, parent.tokens.end());
    h.tokens.push_back(f.last.token);
    if (wants_logprobs) {
      h.logprobs = parent.output_logprobs;
      h.logprobs.push_back(position(f.last));
    }
    h.stopped = is_stop_token(r, f.last.token);
    group.hypotheses[f.key] = std::move(h);
  }
  for (int64_t key : step.evicted) group.hypotheses.erase(key);
  if (step.done) {
    finish_beam_search(group);
    return;
  }

  // The next beams: a parent with no child is pruned (its pages go at once); the first child
  // continues the parent, the others fork it and share its pages until they write.
  std::vector<std::vector<size_t>> children(group.members.size());
  for (size_t rank = 0; rank < step.running.size(); ++rank)
    children[static_cast<size_t>(step.running[rank].parent)].push_back(rank);
  std::vector<std::unique_ptr<Sequence>> next(step.running.size());
  auto extend = [&](Sequence& seq, const BeamCandidate& c) {
    seq.tokens.push_back(c.token);
    seq.cumulative_logprob = c.cumulative;
    if (wants_logprobs) seq.output_logprobs.push_back(position(c));
  };
  for (size_t j = 0; j < group.members.size(); ++j) {
    auto& parent = group.members[j];
    if (children[j].empty()) {
      blocks_.release(&parent->block_table);
      continue;
    }
    for (size_t c = 1; c < children[j].size(); ++c) {
      const size_t rank = children[j][c];
      next[rank] = fork_member(*parent);
      extend(*next[rank], step.running[rank]);
    }
    const size_t rank = children[j][0];
    extend(*parent, step.running[rank]);
    next[rank] = std::move(parent);
  }
  group.members = std::move(next);
  group.forked = true;
}

void Scheduler::finish_beam_search(SequenceGroup& group) {
  const GenerationRequest& r = group.request;
  const int32_t n_prompt = static_cast<int32_t>(r.prompt_ids.size());
  const int32_t n_cached = group.members.empty() ? 0 : group.members.front()->n_cached_prompt;
  std::vector<PositionLogprobs> prompt_logprobs;
  if (r.prompt_logprobs >= 0 && !group.members.empty()) prompt_logprobs = group.members.front()->prompt_logprobs;
  const std::vector<FinishedBeam> best = group.beam->results();
  for (int32_t i = 0; i < r.n && i < static_cast<int32_t>(best.size()); ++i) {
    const BeamHypothesis& h = group.hypotheses.at(best[static_cast<size_t>(i)].key);
    OutputText text(tokenizer_, {});
    const size_t shown = h.stopped ? h.tokens.size() - 1 : h.tokens.size();  // a stop token's text is not shown
    for (size_t t = 0; t < shown; ++t) text.append(h.tokens[t], false);
    GenerationDelta d;
    d.index = i;
    d.text = text.take_rest();
    d.token_ids = h.tokens;
    d.logprobs = h.logprobs;
    d.prompt_logprobs = prompt_logprobs;
    d.finish = h.stopped ? FinishReason::stop : FinishReason::length;
    if (h.stopped) {
      const auto& ids = r.stop_token_ids;
      if (std::find(ids.begin(), ids.end(), h.tokens.back()) != ids.end()) d.stop_token = h.tokens.back();
    }
    d.n_prompt_tokens = n_prompt;
    d.n_cached_tokens = n_cached;
    d.n_generated_tokens = static_cast<int32_t>(h.tokens.size());
    d.score = best[static_cast<size_t>(i)].score;
    emit(group, std::move(d));
  }
  end_group(group, FinishReason::length, "");  // frees the beams' pages
}

void Scheduler::send_delta(SequenceGroup& group, Sequence& seq, const SeqResult* res,
                           FinishReason finish_reason, const std::string& error, bool unavailable) {
  GenerationDelta d;
  d.index = seq.index;
  if (res != nullptr) {
    d.token_ids.push_back(res->token);
    if (seq.request.sampling.n_logprobs >= 0) d.logprobs.push_back(res->token_logprobs);
  }
  if (!seq.prompt_logprobs_sent && seq.request.prompt_logprobs >= 0 &&
      (res != nullptr || finish_reason != FinishReason::none)) {
    d.prompt_logprobs = seq.prompt_logprobs;
    seq.prompt_logprobs_sent = true;
  }
  d.text = finish_reason == FinishReason::none ? seq.text.take_ready() : seq.text.take_rest();
  d.finish = finish_reason;
  d.error = error;
  d.unavailable = unavailable;
  if (finish_reason == FinishReason::stop) {
    d.stop_string = seq.text.matched_stop();
    const auto& ids = seq.request.stop_token_ids;
    if (d.stop_string.empty() && std::find(ids.begin(), ids.end(), seq.tokens.back()) != ids.end())
      d.stop_token = seq.tokens.back();  // EOS has no stop_reason
  }
  d.n_prompt_tokens = seq.n_prompt;
  d.n_cached_tokens = seq.n_cached_prompt;
  d.n_generated_tokens = seq.n_generated();
  d.score = seq.cumulative_logprob;
  if (group.streams_members()) {
    emit(group, std::move(d));
  } else {
    seq.output.append(d);
  }
}

void Scheduler::emit(SequenceGroup& group, GenerationDelta delta) {
  if (delta.index < 0 || delta.index >= group.request.n) return;
  if (group.index_done[static_cast<size_t>(delta.index)]) return;
  if (delta.finish != FinishReason::none) group.index_done[static_cast<size_t>(delta.index)] = true;
  if (group.sink) group.sink(delta);
}

void Scheduler::end_group(SequenceGroup& group, FinishReason finish_reason, const std::string& error,
                          bool unavailable) {
  if (group.streams_members()) {
    for (auto& m : group.members)
      if (m->status != SeqStatus::finished) send_delta(group, *m, nullptr, finish_reason, error, unavailable);
  }
  for (int32_t i = 0; i < group.request.n; ++i) {
    if (group.index_done[static_cast<size_t>(i)]) continue;
    GenerationDelta d;
    d.index = i;
    d.finish = finish_reason;
    d.error = error;
    d.unavailable = unavailable;
    d.n_prompt_tokens = static_cast<int32_t>(group.request.prompt_ids.size());
    emit(group, std::move(d));
  }
  for (auto& m : group.members) blocks_.release(&m->block_table);
  group.members.clear();
  group.status = SeqStatus::finished;
}

void Scheduler::fail_all(const Status& status) {
  const bool unavailable = status.code() == StatusCode::unavailable;  // a lost rank, not the request
  for (auto& g : running_) end_group(*g, FinishReason::error, status.message(), unavailable);
  for (auto& g : waiting_) end_group(*g, FinishReason::error, status.message(), unavailable);
  running_.clear();
  waiting_.clear();
}

}  // namespace kvmesh
