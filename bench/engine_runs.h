// Engine runs shared by the decode benchmarks: made-up requests (greedy, or drawing their tokens),
// and decode tokens/s of a batch measured after every sequence has its first token (prefill
// excluded).
#pragma once

#include <functional>

#include "bench_util.h"
#include "coordinator/engine.h"

namespace kvmesh::bench {

// How the requests pick each token: the most likely one, or a draw (temperature 1, top-p 0.95,
// a seed per request), as chat traffic usually asks, or such a draw with penalties (repetition 1.1,
// frequency and presence 0.5: every prompt and output token's logit is edited before the draw).
enum class Picking { greedy, sampled, penalised };

// A request over a made-up prompt of n_prompt token ids (different per salt) that always
// generates exactly max_tokens tokens.
inline GenerationRequest synthetic_request(int n_prompt, int max_tokens, int salt, Picking picking = Picking::greedy) {
  GenerationRequest r;
  for (int i = 0; i < n_prompt; ++i) r.prompt_ids.push_back((i * 7919 + salt * 104729) % 50000);
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.sampling.temperature = 0.0f;
  if (picking != Picking::greedy) {
    r.sampling.temperature = 1.0f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = static_cast<uint64_t>(salt);
  }
  if (picking == Picking::penalised) {
    r.sampling.repetition_penalty = 1.1f;
    r.sampling.frequency_penalty = 0.5f;
    r.sampling.presence_penalty = 0.5f;
  }
  return r;
}

// Decode tokens/s with `batch` sequences generating n_new tokens each (prefill excluded); 0 when a
// request is refused, a step fails, or the requests are not done after many more steps than they
// need (every sequence adds a token per step once its prompt is in). on_decode_start, when given,
// runs once every sequence has its first token, just before the timed steps.
inline double decode_tokens_per_s(Engine& engine, int batch, int n_new, Picking picking = Picking::greedy,
                                  const std::function<void()>& on_decode_start = {}) {
  int first = 0, done = 0;
  for (int b = 0; b < batch; ++b) {
    auto added = engine.add_request(synthetic_request(32, n_new, b + 1, picking), [&](const GenerationDelta& d) {
      if (d.n_generated_tokens == 1) ++first;
      if (d.finish != FinishReason::none) ++done;
    });
    if (!added.is_ok()) return 0.0;
  }
  const int64_t max_steps = 4 * static_cast<int64_t>(batch) * (32 + n_new) + 64;
  int64_t steps = 0;
  while (first < batch) {
    if (++steps > max_steps || !engine.step().is_ok()) return 0.0;
  }
  if (on_decode_start) on_decode_start();
  const double t0 = seconds_now();
  while (done < batch) {
    if (++steps > max_steps || !engine.step().is_ok()) return 0.0;
  }
  return static_cast<double>(batch) * (n_new - 1) / (seconds_now() - t0);
}

}  // namespace kvmesh::bench
