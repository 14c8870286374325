// Scheduler: FCFS continuous batching with chunked prefill and preemption (recompute).
#include "coordinator/scheduler.h"

#include <algorithm>

#include "common/tokenizer.h"

namespace kvmesh {

Scheduler::Scheduler(const SchedulerConfig& config, const TierCapacity& capacity, int32_t block_size,
                     const Tokenizer* tokenizer)
    : config_(config), blocks_(capacity, block_size), policy_(block_size), tokenizer_(tokenizer) {}

void Scheduler::add(std::unique_ptr<Sequence> seq) {
  seq->status = SeqStatus::waiting;
  waiting_.push_back(std::move(seq));
}

void Scheduler::cancel(uint64_t seq_id) { cancelled_.push_back(seq_id); }

void Scheduler::drop_cancelled() {
  if (cancelled_.empty()) return;
  auto is_cancelled = [&](const std::unique_ptr<Sequence>& s) {
    return std::find(cancelled_.begin(), cancelled_.end(), s->id) != cancelled_.end();
  };
  auto end_one = [&](std::unique_ptr<Sequence>& s) {
    send_delta(*s, nullptr, FinishReason::cancelled, "");
    finish(*s);
  };
  for (auto& s : running_)
    if (is_cancelled(s)) end_one(s);
  for (auto& s : waiting_)
    if (is_cancelled(s)) end_one(s);
  std::erase_if(running_, [](const auto& s) { return s->status == SeqStatus::finished; });
  std::erase_if(waiting_, [](const auto& s) { return s->status == SeqStatus::finished; });
  cancelled_.clear();
}

void Scheduler::preempt(std::unique_ptr<Sequence> seq) {
  blocks_.release(&seq->block_table);  // full pages stay cached: readmission reuses or swaps them in
  seq->n_computed = 0;
  seq->n_registered = 0;
  seq->staged_from_disk = false;
  seq->n_preemptions++;
  seq->status = SeqStatus::waiting;
  ++stats_.n_preemptions;
  waiting_.push_front(std::move(seq));
}

StepPlan Scheduler::schedule() {
  drop_cancelled();
  StepPlan plan;
  plan.step_id = next_step_id_++;
  int32_t budget = config_.max_batch_tokens;

  // Running sequences first, oldest first; the newest give way when pages run out.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence& seq = *running_[i];
    const int32_t n = std::min(seq.n_uncomputed(), budget);
    while (!blocks_.can_grow(seq.block_table, seq.n_computed + n) && running_.size() > i + 1) {
      auto victim = std::move(running_.back());
      running_.pop_back();
      preempt(std::move(victim));
    }
    if (!blocks_.can_grow(seq.block_table, seq.n_computed + n)) {
      auto self = std::move(running_[i]);
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
      preempt(std::move(self));
      continue;
    }
    KVMESH_CHECK(blocks_.grow(&seq.block_table, seq.n_computed + n).is_ok());
    plan.seqs.push_back(make_work(seq, n));
    budget -= n;
    ++i;
  }

  // Then waiting sequences in arrival order, while pages, tokens and seats last.
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int32_t>(running_.size()) < config_.max_num_seqs) {
    Sequence& seq = *waiting_.front();
    if (!reuse_prefix(seq)) break;
    const int32_t n = std::min(seq.n_uncomputed(), budget);
    if (!blocks_.can_grow(seq.block_table, seq.n_computed + n)) {
      blocks_.release(&seq.block_table);  // the reused pages stay cached
      seq.n_computed = 0;
      break;
    }
    KVMESH_CHECK(blocks_.grow(&seq.block_table, seq.n_computed + n).is_ok());
    plan.seqs.push_back(make_work(seq, n));
    budget -= n;
    seq.status = SeqStatus::running;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  if (!plan.seqs.empty()) ++stats_.n_steps;
  plan.cache_ops = blocks_.take_ops();
  return plan;
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

void Scheduler::postprocess(const StepPlan& plan, const StepResult& result) {
  KVMESH_CHECK(plan.seqs.size() == result.seqs.size());
  blocks_.on_ops_failed(plan.cache_ops, result.failed_cache_ops);
  policy_.observe(plan, result);
  for (size_t k = 0; k < plan.seqs.size(); ++k) {
    const SeqWork& work = plan.seqs[k];
    const SeqResult& res = result.seqs[k];
    auto it = std::find_if(running_.begin(), running_.end(),
                           [&](const auto& s) { return s->id == work.seq_id; });
    if (it == running_.end()) continue;
    Sequence& seq = **it;
    seq.n_computed += work.n_tokens();
    register_full_pages(seq);
    collect_prompt_logprobs(seq, work, res);
    if (!work.sample || res.token < 0) continue;
    const FinishReason reason = append_token(seq, res);
    send_delta(seq, &res, reason, "");
    if (reason != FinishReason::none) finish(seq);
  }
  std::erase_if(running_, [](const auto& s) { return s->status == SeqStatus::finished; });
}

void Scheduler::collect_prompt_logprobs(Sequence& seq, const SeqWork& work, const SeqResult& res) {
  for (size_t i = 0; i < res.prompt_logprobs.size(); ++i) {
    // Row i predicts the token at index n_past + i + 1.
    const int64_t target = static_cast<int64_t>(work.n_past) + static_cast<int64_t>(i) + 1;
    if (target < seq.n_prompt && target == static_cast<int64_t>(seq.prompt_logprobs.size()) + 1)
      seq.prompt_logprobs.push_back(res.prompt_logprobs[i]);
  }
}

FinishReason Scheduler::append_token(Sequence& seq, const SeqResult& res) {
  const int32_t token = res.token;
  seq.tokens.push_back(token);
  const GenerationRequest& r = seq.request;
  // Stop tokens cannot be sampled before min_tokens (see make_work); stop strings wait too.
  const bool may_stop = seq.n_generated() >= r.min_tokens;
  const bool is_stop_token =
      (token == config_.eos_token_id && !r.ignore_eos) ||
      std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(), token) != r.stop_token_ids.end();
  if (is_stop_token) return FinishReason::stop;  // its text is not shown
  if (seq.text.append(token, may_stop)) return FinishReason::stop;
  if (seq.n_generated() >= r.max_tokens || seq.n_tokens() >= config_.n_positions)
    return FinishReason::length;
  return FinishReason::none;
}

void Scheduler::send_delta(Sequence& seq, const SeqResult* res, FinishReason finish_reason,
                           const std::string& error) {
  GenerationDelta d;
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
  if (finish_reason == FinishReason::stop) {
    d.stop_string = seq.text.matched_stop();
    const auto& ids = seq.request.stop_token_ids;
    if (d.stop_string.empty() && std::find(ids.begin(), ids.end(), seq.tokens.back()) != ids.end())
      d.stop_token = seq.tokens.back();  // EOS has no stop_reason
  }
  d.n_prompt_tokens = seq.n_prompt;
  d.n_cached_tokens = seq.n_cached_prompt;
  d.n_generated_tokens = seq.n_generated();
  if (seq.sink) seq.sink(d);
}

void Scheduler::finish(Sequence& seq) {
  blocks_.release(&seq.block_table);
  seq.status = SeqStatus::finished;
}

void Scheduler::fail_all(const Status& status) {
  auto fail = [&](std::unique_ptr<Sequence>& s) {
    send_delta(*s, nullptr, FinishReason::error, status.message());
    finish(*s);
  };
  std::for_each(running_.begin(), running_.end(), fail);
  std::for_each(waiting_.begin(), waiting_.end(), fail);
  running_.clear();
  waiting_.clear();
}

}  // namespace kvmesh
