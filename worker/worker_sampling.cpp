// Worker::sample_results: prompt log-probs, penalties, banned tokens and sampling on the sampling
// rank, row by row in plan order.
#include <cmath>

#include "worker/micro_batch.h"
#include "worker/model.h"
#include "worker/sampler.h"
#include "worker/worker.h"

namespace kvmesh {

void Worker::sample_results(const StepPlan& plan, StepResult* result) {
  const int32_t v = model_->config().vocab_size;
  for (const MicroBatch& mb : mbs_) {
    size_t row = 0;
    for (size_t k = mb.seq_begin; k < mb.seq_end; ++k) {
      const SeqWork& seq = plan.seqs[k];
      SeqResult out;
      out.seq_id = seq.seq_id;
      const int32_t n_rows = seq.prompt_logprobs >= 0 ? seq.n_tokens() : (seq.sample ? 1 : 0);
      if (mb.greedy_only) {  // plain greedy draws: the argmax came back alone
        if (n_rows > 0) out.token = mb.greedy[row].argmax;
        row += static_cast<size_t>(n_rows);
        result->seqs.push_back(std::move(out));
        continue;
      }
      for (int32_t i = 0; i < n_rows; ++i, ++row) {
        const float* logits = mb.logits.data() + row * static_cast<size_t>(v);
        const bool last = i + 1 == n_rows;
        if (seq.prompt_logprobs >= 0) {
          const int32_t target = last ? seq.next_prompt_token : seq.token_ids[i + 1];
          if (target >= 0) {
            log_softmax(logits, v, &logprobs_);
            out.prompt_logprobs.push_back(position_logprobs(logprobs_, target, seq.prompt_logprobs));
          }
        }
        if (!(last && seq.sample)) continue;
        const float* to_sample = logits;
        if (seq.sampling.has_penalties() || !seq.banned_token_ids.empty()) {
          penalised_.assign(logits, logits + v);
          apply_penalties(seq.sampling, seq.history_ids, seq.n_history_prompt, penalised_.data(), v);
          for (int32_t t : seq.banned_token_ids)
            if (t >= 0 && t < v) penalised_[t] = -INFINITY;
          to_sample = penalised_.data();
        }
        const int64_t position = static_cast<int64_t>(seq.n_past) + seq.n_tokens();
        out.token = sample_token(seq.sampling, to_sample, v, position);
        if (seq.sampling.n_logprobs >= 0) {
          log_softmax(logits, v, &logprobs_);
          out.token_logprobs = position_logprobs(logprobs_, out.token, seq.sampling.n_logprobs);
        }
      }
      result->seqs.push_back(std::move(out));
    }
  }
}

}  // namespace kvmesh
