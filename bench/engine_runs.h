// Engine runs shared by the decode benchmarks: made-up greedy requests, and decode tokens/s of a
// batch measured after every sequence has its first token (prefill excluded).
#pragma once

#include "bench_util.h"
#include "coordinator/engine.h"

namespace kvmesh::bench {

// A greedy request over a made-up prompt of n_prompt token ids (different per salt) that always
// generates exactly max_tokens tokens.
inline GenerationRequest synthetic_request(int n_prompt, int max_tokens, int salt) {
  GenerationRequest r;
  for (int i = 0; i < n_prompt; ++i) r.prompt_ids.push_back((i * 7919 + salt * 104729) % 50000);
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.sampling.temperature = 0.0f;
  return r;
}

// Decode tokens/s with `batch` sequences generating n_new tokens each (prefill excluded); 0 when a
// step fails.
inline double decode_tokens_per_s(Engine& engine, int batch, int n_new) {
  int first = 0, done = 0;
  for (int b = 0; b < batch; ++b) {
    (void)engine.add_request(synthetic_request(32, n_new, b + 1), [&](const GenerationDelta& d) {
      if (d.n_generated_tokens == 1) ++first;
      if (d.finish != FinishReason::none) ++done;
    });
  }
  while (first < batch) {
    if (!engine.step().is_ok()) return 0.0;
  }
  const double t0 = now_seconds();
  while (done < batch) {
    if (!engine.step().is_ok()) return 0.0;
  }
  return static_cast<double>(batch) * (n_new - 1) / (now_seconds() - t0);
}

}  // namespace kvmesh::bench
