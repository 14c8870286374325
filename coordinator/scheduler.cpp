// Scheduler, planning half: FCFS admission of sequence groups, chunked prefill, forks and
// copy-on-write page sharing inside a group, and preemption of whole groups.
#include "coordinator/scheduler.h"

#include <algorithm>
#include <unordered_set>

#include "common/tokenizer.h"
#include "coordinator/admission.h"

namespace kvmesh {

Scheduler::Scheduler(const SchedulerConfig& config, const TierCapacity& capacity, int32_t block_size,
                     const Tokenizer* tokenizer)
    : config_(config), blocks_(capacity, block_size), policy_(block_size), tokenizer_(tokenizer) {}

void Scheduler::add(uint64_t group_id, GenerationRequest request, OutputSink sink) {
  auto group = std::make_unique<SequenceGroup>(group_id, request, std::move(sink));
  GenerationRequest root = std::move(request);
  root.sampling.seed = root.sample_seed(0);
  if (group->is_beam()) {
    const int32_t n_stop = static_cast<int32_t>(root.stop_token_ids.size()) +
                           (!root.ignore_eos && config_.eos_token_id >= 0 ? 1 : 0);
    group->beam = std::make_unique<BeamSearch>(group->width(), root.length_penalty, root.early_stopping,
                                               root.max_tokens, n_stop);
    // Every beam computes greedily and reports its best candidates; the search picks among them.
    SamplingParams beam_sampling;
    beam_sampling.temperature = 0.0f;
    beam_sampling.n_logprobs = std::min(group->beam->candidates_kept(), kMaxTopLogprobs);
    root.sampling = beam_sampling;
    root.stop.clear();
  } else if (!group->streams_members()) {
    root.sampling.n_logprobs = std::max(root.sampling.n_logprobs, 0);  // best_of ranks by log-prob
  }
  group->members.push_back(std::make_unique<Sequence>(next_member_id_++, std::move(root), tokenizer_));
  group->status = SeqStatus::waiting;
  waiting_.push_back(std::move(group));
}

void Scheduler::cancel(uint64_t group_id) { cancelled_.push_back(group_id); }

namespace {

// A group that has not forked yet will run `width` sequences: it holds their seats already.
int32_t seats_of(const SequenceGroup& g) { return g.forked ? g.n_members() : g.width(); }

}  // namespace

int32_t Scheduler::n_running() const {
  int32_t n = 0;
  for (const auto& g : running_) n += seats_of(*g);
  return n;
}

int32_t Scheduler::n_waiting() const {
  int32_t n = 0;
  for (const auto& g : waiting_) n += seats_of(*g);
  return n;
}

void Scheduler::drop_cancelled() {
  if (cancelled_.empty()) return;
  auto is_cancelled = [&](const std::unique_ptr<SequenceGroup>& g) {
    return std::find(cancelled_.begin(), cancelled_.end(), g->id) != cancelled_.end();
  };
  for (auto& g : running_)
    if (is_cancelled(g)) end_group(*g, FinishReason::cancelled, "");
  for (auto& g : waiting_)
    if (is_cancelled(g)) end_group(*g, FinishReason::cancelled, "");
  std::erase_if(running_, [](const auto& g) { return g->status == SeqStatus::finished; });
  std::erase_if(waiting_, [](const auto& g) { return g->status == SeqStatus::finished; });
  cancelled_.clear();
}

void Scheduler::release_members(SequenceGroup& group) {
  for (auto& m : group.members) {
    blocks_.release(&m->block_table);  // full pages stay cached: readmission reuses or swaps them in
    m->n_computed = 0;
    m->n_registered = 0;
    m->staged_from_disk = false;
  }
}

void Scheduler::preempt(std::unique_ptr<SequenceGroup> group) {
  release_members(*group);
  for (auto& m : group->members) m->n_preemptions++;
  group->status = SeqStatus::waiting;
  ++stats_.n_preemptions;
  waiting_.push_front(std::move(group));
}

std::unique_ptr<Sequence> Scheduler::fork_member(const Sequence& parent) {
  return std::make_unique<Sequence>(next_member_id_++, parent, blocks_.fork(parent.block_table));
}

// The root has computed all but the last prompt token: every sample shares those pages and
// computes the last token itself, drawing its first token with its own seed.
void Scheduler::fork_samples(SequenceGroup& group) {
  Sequence& root = *group.members.front();
  for (int32_t i = 1; i < group.width(); ++i) {
    auto child = fork_member(root);
    child->request.sampling.seed = group.request.sample_seed(i);
    child->index = i;
    group.members.push_back(std::move(child));
  }
  group.forked = true;
}

std::vector<Scheduler::MemberWork> Scheduler::plan_group(SequenceGroup& group, int32_t budget) {
  std::vector<MemberWork> work;
  if (group.is_sampling_group() && !group.forked) {
    Sequence& root = *group.members.front();
    const int32_t shared = root.n_prompt - 1;  // the prompt once, but its last token per sample
    if (root.n_computed < shared) {
      work.push_back({&root, std::min(shared - root.n_computed, budget)});
      return work;
    }
    fork_samples(group);
  }
  const bool lockstep = group.is_beam() && group.n_members() > 1;
  int32_t total = 0;
  for (const auto& m : group.members) total += m->n_uncomputed();
  if (!lockstep || total <= budget) {
    for (auto& m : group.members) {
      const int32_t n = std::min(m->n_uncomputed(), budget);
      if (n <= 0) continue;
      work.push_back({m.get(), n});
      budget -= n;
    }
    return work;
  }
  // Beams advance together: until every beam can take its last token in one step, they only
  // catch up on the tokens before it.
  for (auto& m : group.members) {
    const int32_t n = std::min(m->n_uncomputed() - 1, budget);
    if (n <= 0) continue;
    work.push_back({m.get(), n});
    budget -= n;
  }
  return work;
}

int32_t Scheduler::pages_needed(const std::vector<MemberWork>& work) const {
  int32_t n = 0;
  for (const MemberWork& w : work) {
    n += blocks_.pages_missing(w.seq->block_table, w.seq->n_computed + w.n_tokens);
    if (blocks_.needs_copy(w.seq->block_table, w.seq->n_computed)) ++n;
  }
  return n;
}

void Scheduler::commit_work(const std::vector<MemberWork>& work, StepPlan* plan) {
  for (const MemberWork& w : work) {
    Sequence& seq = *w.seq;
    KVMESH_CHECK(blocks_.make_writable(&seq.block_table, seq.n_computed).is_ok());
    KVMESH_CHECK(blocks_.grow(&seq.block_table, seq.n_computed + w.n_tokens).is_ok());
    plan->seqs.push_back(make_work(seq, w.n_tokens));
  }
}

StepPlan Scheduler::schedule() {
  drop_cancelled();
  StepPlan plan;
  plan.step_id = next_step_id_++;
  int32_t budget = config_.max_batch_tokens;

  // Running groups first, oldest first; the newest give way (as whole groups) when pages run out.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    std::vector<MemberWork> work = plan_group(*running_[i], budget);
    if (work.empty()) {
      ++i;
      continue;
    }
    while (pages_needed(work) > blocks_.n_free() && running_.size() > i + 1) {
      auto victim = std::move(running_.back());
      running_.pop_back();
      preempt(std::move(victim));
    }
    if (pages_needed(work) > blocks_.n_free()) {
      auto self = std::move(running_[i]);
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
      preempt(std::move(self));
      continue;
    }
    commit_work(work, &plan);
    for (const MemberWork& w : work) budget -= w.n_tokens;
    ++i;
  }

  // Then waiting groups in arrival order, while pages, tokens and seats last.
  int32_t seats = config_.max_num_seqs - n_running();
  while (!waiting_.empty() && budget > 0 && admit_head(&budget, &seats, &plan)) {
  }
  if (!plan.seqs.empty()) ++stats_.n_steps;
  plan.cache_ops = blocks_.take_ops();
  return plan;
}

bool Scheduler::admit_head(int32_t* budget, int32_t* seats, StepPlan* plan) {
  SequenceGroup& group = *waiting_.front();
  const int32_t seats_needed = seats_of(group);
  if (seats_needed > *seats) return false;
  for (auto& m : group.members)
    if (!reuse_prefix(*m)) return false;
  std::vector<MemberWork> work = plan_group(group, *budget);
  bool fits = !work.empty() && pages_needed(work) <= blocks_.n_free();
  if (fits && group.width() > 1) {
    // A group starts only when its worst case fits beside what it already holds.
    std::unordered_set<int32_t> held;
    for (const auto& m : group.members) held.insert(m->block_table.begin(), m->block_table.end());
    fits = blocks_.n_free() + static_cast<int32_t>(held.size()) >= Admission::worst_case_pages(group.request, blocks_.block_size());
  }
  if (!fits) {
    release_members(group);  // the reused pages stay cached
    return false;
  }
  commit_work(work, plan);
  for (const MemberWork& w : work) *budget -= w.n_tokens;
  *seats -= seats_needed;
  group.status = SeqStatus::running;
  running_.push_back(std::move(waiting_.front()));
  waiting_.pop_front();
  return true;
}

SeqWork Scheduler::make_work(const Sequence& seq, int32_t n_tokens) const {
  SeqWork w;
  w.seq_id = seq.id;
  w.n_past = seq.n_computed;
  w.token_ids.assign(seq.tokens.begin() + seq.n_computed,
                     seq.tokens.begin() + seq.n_computed + n_tokens);
  w.block_table = seq.block_table;
  const int32_t end = seq.n_computed + n_tokens;
  w.sample = end == seq.n_tokens();
  if (seq.wants_prompt_logprobs() && seq.n_computed < seq.n_prompt) {
    w.prompt_logprobs = seq.request.prompt_logprobs;
    w.next_prompt_token = end < seq.n_prompt ? seq.tokens[end] : -1;
  }
  w.sampling = seq.request.sampling;
  if (w.sample && seq.n_generated() < seq.request.min_tokens) {
    w.banned_token_ids = seq.request.stop_token_ids;
    if (!seq.request.ignore_eos && config_.eos_token_id >= 0)
      w.banned_token_ids.push_back(config_.eos_token_id);
  }
  if (w.sample && w.sampling.has_penalties()) {
    w.history_ids = seq.tokens;
    w.n_history_prompt = seq.n_prompt;
  }
  return w;
}

bool Scheduler::reuse_prefix(Sequence& seq) {
  if (!seq.block_table.empty() || seq.n_computed != 0) return true;
  if (seq.wants_prompt_logprobs()) return true;  // every prompt position must be computed
  const int32_t bs = blocks_.block_size();
  seq.extend_page_hashes(bs, seq.n_tokens() - 1);  // at least one token is left to compute
  std::vector<uint64_t> hashes(seq.page_hashes.begin(),
                               seq.page_hashes.begin() + std::min<size_t>(seq.page_hashes.size(),
                                                                          (seq.n_tokens() - 1) / bs));
  auto hits = blocks_.match(hashes);
  // Stop at the first page that is cheaper to recompute than to bring back.
  for (size_t i = 0; i < hits.size(); ++i) {
    if (policy_.worth_reusing(hits[i].tier)) continue;
    hits.resize(i);
    hashes.resize(i);
    break;
  }
  const bool on_disk = std::any_of(hits.begin(), hits.end(),
                                   [](const auto& h) { return h.tier == Tier::disk; });
  if (on_disk && !seq.staged_from_disk) {
    seq.staged_from_disk = true;
    if (blocks_.stage_from_disk(hashes)) return false;  // next step, once the loads are known good
  }
  const int32_t taken = blocks_.take_matched(hashes, &seq.block_table);
  seq.n_computed = taken * bs;
  seq.n_registered = taken;
  if (!seq.admitted_before) {
    seq.n_cached_prompt = std::min(seq.n_computed, seq.n_prompt);
    stats_.n_cached_prompt_tokens += seq.n_cached_prompt;
  }
  seq.admitted_before = true;
  return true;
}

void Scheduler::register_full_pages(Sequence& seq) {
  const int32_t bs = blocks_.block_size();
  seq.extend_page_hashes(bs, seq.n_computed);
  const auto n_full = static_cast<int32_t>(std::min<size_t>(seq.page_hashes.size(), seq.block_table.size()));
  for (; seq.n_registered < n_full && (seq.n_registered + 1) * bs <= seq.n_computed; ++seq.n_registered)
    blocks_.register_full_page(seq.block_table[seq.n_registered], seq.page_hashes[seq.n_registered]);
}

}  // namespace kvmesh
