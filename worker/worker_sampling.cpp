// Sampling on the sampling rank: which way each sequence's logit rows come back (route_logit_rows),
// and Worker::sample_results turning them into tokens and log-probs in plan order (prompt
// log-probs, logit bias, penalties and banned tokens on the host's full logits).
#include <cmath>

#include "worker/micro_batch.h"
#include "worker/model.h"
#include "worker/sampler.h"
#include "worker/worker.h"

namespace kvmesh {
namespace {

// The draw needs the logits changed first (on the host).
bool edits_logits(const SeqWork& seq) { return seq.sampling.edits_logits() || !seq.banned_token_ids.empty(); }

RowRoute route_of(const SeqWork& seq) {
  if (seq.prompt_logprobs >= 0) return RowRoute::host;
  if (!seq.sample) return RowRoute::none;
  if (edits_logits(seq)) return RowRoute::host;
  // A plain greedy draw needs the argmax of the raw logits alone.
  if (seq.sampling.greedy() && seq.sampling.n_logprobs < 0) return RowRoute::greedy;
  return RowRoute::device;
}

}  // namespace

void route_logit_rows(const StepPlan& plan, MicroBatch* mb) {
  HeadWork& head = mb->head;
  head.rows.clear();
  head.draws.clear();
  mb->seq_rows.assign(mb->seq_end - mb->seq_begin, SeqRows{});
  std::vector<int32_t> sampled, host;
  for (size_t k = mb->seq_begin; k < mb->seq_end; ++k) {
    const SeqWork& seq = plan.seqs[k];
    SeqRows& rows = mb->seq_rows[k - mb->seq_begin];
    const int32_t begin = mb->batch.seqs[k - mb->seq_begin].token_begin;
    const int32_t last = begin + seq.n_tokens() - 1;
    rows.route = route_of(seq);
    switch (rows.route) {
      case RowRoute::none:
        break;
      case RowRoute::greedy:
        rows.first = static_cast<int32_t>(head.rows.size());
        head.rows.push_back(last);
        break;
      case RowRoute::device:
        rows.first = static_cast<int32_t>(sampled.size());
        sampled.push_back(last);
        head.draws.push_back({seq.sampling, static_cast<int64_t>(seq.n_past) + seq.n_tokens(),
                              seq.sampling.n_logprobs});
        break;
      case RowRoute::host:
        rows.first = static_cast<int32_t>(host.size());
        for (int32_t row = seq.prompt_logprobs >= 0 ? begin : last; row <= last; ++row)
          host.push_back(row);
        break;
    }
  }
  head.n_greedy = static_cast<int32_t>(head.rows.size());
  head.rows.insert(head.rows.end(), sampled.begin(), sampled.end());
  head.rows.insert(head.rows.end(), host.begin(), host.end());
}

void Worker::sample_results(const StepPlan& plan, StepResult* result) {
  const auto v = static_cast<size_t>(model_->config().vocab_size);
  for (const MicroBatch& mb : mbs_) {
    for (size_t k = mb.seq_begin; k < mb.seq_end; ++k) {
      const SeqWork& seq = plan.seqs[k];
      const SeqRows& rows = mb.seq_rows[k - mb.seq_begin];
      SeqResult out;
      out.seq_id = seq.seq_id;
      switch (rows.route) {
        case RowRoute::none:
          break;
        case RowRoute::greedy:
          out.token = mb.head.greedy[static_cast<size_t>(rows.first)].argmax;
          break;
        case RowRoute::device: {
          const RowSample& sample = mb.head.samples[static_cast<size_t>(rows.first)];
          out.token = sample.token;
          if (seq.sampling.n_logprobs >= 0) out.token_logprobs = sample.logprobs;
          break;
        }
        case RowRoute::host:
          sample_on_host(seq, mb.head.logits.data() + static_cast<size_t>(rows.first) * v, &out);
          break;
      }
      result->seqs.push_back(std::move(out));
    }
  }
}

void Worker::sample_on_host(const SeqWork& seq, const float* logits_rows, SeqResult* out) {
  const int32_t v = model_->config().vocab_size;
  const int32_t n_rows = seq.prompt_logprobs >= 0 ? seq.n_tokens() : 1;
  for (int32_t i = 0; i < n_rows; ++i) {
    const float* logits = logits_rows + static_cast<size_t>(i) * static_cast<size_t>(v);
    const bool last = i + 1 == n_rows;
    if (seq.prompt_logprobs >= 0) {
      const int32_t target = last ? seq.next_prompt_token : seq.token_ids[i + 1];
      if (target >= 0) {
        log_softmax(logits, v, &logprobs_);
        out->prompt_logprobs.push_back(position_logprobs(logprobs_, target, seq.prompt_logprobs));
      }
    }
    if (!(last && seq.sample)) continue;
    const float* to_sample = logits;
    if (edits_logits(seq)) {
      // The bias first, then the penalties, as vLLM; log-probs stay those of the raw logits.
      edited_logits_.assign(logits, logits + v);
      apply_logit_bias(seq.sampling, edited_logits_.data(), v);
      apply_penalties(seq.sampling, seq.history_ids, seq.n_history_prompt, edited_logits_.data(), v);
      for (int32_t t : seq.banned_token_ids)
        if (t >= 0 && t < v) edited_logits_[t] = -INFINITY;
      to_sample = edited_logits_.data();
    }
    const int64_t position = static_cast<int64_t>(seq.n_past) + seq.n_tokens();
    out->token = sample_token(seq.sampling, to_sample, v, position);
    if (seq.sampling.n_logprobs >= 0) {
      log_softmax(logits, v, &logprobs_);
      out->token_logprobs = position_logprobs(logprobs_, out->token, seq.sampling.n_logprobs);
    }
  }
}

}  // namespace kvmesh
