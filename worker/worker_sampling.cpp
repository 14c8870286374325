// Sampling on the sampling rank: which way each sequence's logit rows come back (route_logit_rows),
// and Worker::sample_results turning them into tokens and log-probs in plan order (prompt log-probs,
// and the draw after them, on the host's full logits; every other draw where the logits are).
#include <cmath>

#include "worker/micro_batch.h"
#include "worker/model.h"
#include "worker/sampler.h"
#include "worker/worker.h"

namespace kvmesh {
namespace {

// The draw needs the logits changed first (logit_edits).
bool edits_logits(const SeqWork& seq) { return seq.sampling.edits_logits() || !seq.banned_token_ids.empty(); }

RowRoute route_of(const SeqWork& seq) {
  if (seq.prompt_logprobs >= 0) return RowRoute::host;
  if (!seq.sample) return RowRoute::none;
  // A plain greedy draw needs the argmax of the raw logits alone.
  if (seq.sampling.greedy() && seq.sampling.n_logprobs < 0 && !edits_logits(seq)) return RowRoute::greedy;
  return RowRoute::device;
}

// The log-prob (and top-N) of each next prompt token after the chunk's rows ([n_tokens, v]). Rows
// are independent: they are shared among threads (one thread when called from a parallel region).
void prompt_logprobs_on_host(const SeqWork& seq, const float* logits_rows, int32_t v, SeqResult* out) {
  const int32_t n_rows = seq.n_tokens();
  std::vector<PositionLogprobs> rows(static_cast<size_t>(n_rows));
  std::vector<char> has_target(static_cast<size_t>(n_rows), 0);
#pragma omp parallel for schedule(static) if (n_rows > 8)
  for (int32_t i = 0; i < n_rows; ++i) {
    const int32_t target = i + 1 == n_rows ? seq.next_prompt_token : seq.token_ids[i + 1];
    if (target < 0) continue;
    std::vector<double> logprobs;
    log_softmax(logits_rows + static_cast<size_t>(i) * static_cast<size_t>(v), v, &logprobs);
    rows[static_cast<size_t>(i)] = position_logprobs(logprobs, target, seq.prompt_logprobs);
    has_target[static_cast<size_t>(i)] = 1;
  }
  for (int32_t i = 0; i < n_rows; ++i)
    if (has_target[static_cast<size_t>(i)]) out->prompt_logprobs.push_back(std::move(rows[static_cast<size_t>(i)]));
}

// The edits of a sequence's draw (none when it makes none).
std::vector<LogitEdit> edits_of(const SeqWork& seq, int32_t v) {
  if (!edits_logits(seq)) return {};
  return logit_edits(seq.sampling, seq.history_ids, seq.n_history_prompt, seq.banned_token_ids, v);
}

// The draw after the sequence's last row: its logit edits applied to a copy of the raw logits
// first; log-probs stay those of the raw logits.
void draw_on_host(const SeqWork& seq, const float* logits, int32_t v, SeqResult* out) {
  const std::vector<LogitEdit> edits = edits_of(seq, v);
  std::vector<float> edited_logits;
  const float* to_sample = logits;
  if (!edits.empty()) {
    edited_logits.assign(logits, logits + v);
    apply_logit_edits(seq.sampling, edits, edited_logits.data(), v);
    to_sample = edited_logits.data();
  }
  const int64_t position = static_cast<int64_t>(seq.n_past) + seq.n_tokens();
  out->token = sample_token(seq.sampling, to_sample, v, position);
  if (seq.sampling.n_logprobs >= 0) {
    std::vector<double> logprobs;
    log_softmax(logits, v, &logprobs);
    out->token_logprobs = position_logprobs(logprobs, out->token, seq.sampling.n_logprobs);
  }
}

// One sequence's host work from its logits rows ([n_rows, v]: every row of the chunk with prompt
// log-probs, else the last).
void sample_on_host(const SeqWork& seq, const float* logits_rows, int32_t v, SeqResult* out) {
  const int32_t n_rows = seq.prompt_logprobs >= 0 ? seq.n_tokens() : 1;
  if (seq.prompt_logprobs >= 0) prompt_logprobs_on_host(seq, logits_rows, v, out);
  if (seq.sample) draw_on_host(seq, logits_rows + static_cast<size_t>(n_rows - 1) * static_cast<size_t>(v), v, out);
}

}  // namespace

void route_logit_rows(const StepPlan& plan, int32_t vocab_size, MicroBatch* mb) {
  HeadWork& head = mb->head;
  head.rows.clear();
  head.draws.clear();
  mb->seq_rows.assign(mb->seq_end - mb->seq_begin, SeqRows{});
  // Beside draws, a plain greedy row is one more draw (the same argmax): the head then waits for
  // the device once, not once for the argmaxes and again for the draws.
  bool draws = false;
  for (size_t k = mb->seq_begin; k < mb->seq_end; ++k) {
    RowRoute& route = mb->seq_rows[k - mb->seq_begin].route;
    route = route_of(plan.seqs[k]);
    draws = draws || route == RowRoute::device;
  }
  std::vector<int32_t> sampled, host;
  for (size_t k = mb->seq_begin; k < mb->seq_end; ++k) {
    const SeqWork& seq = plan.seqs[k];
    SeqRows& rows = mb->seq_rows[k - mb->seq_begin];
    const int32_t begin = mb->batch.seqs[k - mb->seq_begin].token_begin;
    const int32_t last = begin + seq.n_tokens() - 1;
    if (rows.route == RowRoute::greedy && draws) rows.route = RowRoute::device;
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
                              seq.sampling.n_logprobs, edits_of(seq, vocab_size)});
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
  const int32_t v = model_->config().vocab_size;
  struct HostJob {
    const SeqWork* seq;
    const float* logits;  // its rows, [n_rows, v]
    size_t out;           // index into result->seqs
  };
  std::vector<HostJob> host_jobs;
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
          host_jobs.push_back({&seq, mb.head.logits.data() + static_cast<size_t>(rows.first) * v, result->seqs.size()});
          break;
      }
      result->seqs.push_back(std::move(out));
    }
  }
  // Each sequence's host work is independent of the others': one thread each.
  const auto n_jobs = static_cast<int64_t>(host_jobs.size());
#pragma omp parallel for schedule(dynamic, 1) if (n_jobs > 1)
  for (int64_t j = 0; j < n_jobs; ++j) {
    const HostJob& job = host_jobs[static_cast<size_t>(j)];
    sample_on_host(*job.seq, job.logits, v, &result->seqs[job.out]);
  }
}

}  // namespace kvmesh
