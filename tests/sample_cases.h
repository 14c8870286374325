// Inputs of the sample_rows tests (CPU default and CUDA): random logits with ties and a mix of
// draws (greedy, temperature, top-k, top-p, min-p, combined) with many seeds and n_top -1..32, and
// logit edits for them (biases, penalties, bans).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "worker/backend.h"
#include "worker/sampler.h"

namespace kvmesh::testing {

// [r, v] logits ~ N(0, 3) with ties: copies of each row's max elsewhere in the row (a tied
// argmax), copies of other values, and every third row rounded to halves (many ties at the top).
inline std::vector<float> logits_with_ties(int64_t r, int64_t v, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(r * v));
  for (float& value : x) value = normal(rng);
  for (int64_t i = 0; i < r; ++i) {
    float* row = x.data() + i * v;
    if (i % 3 == 2)
      for (int64_t j = 0; j < v; ++j) row[j] = std::round(row[j] * 2.0f) / 2.0f;
    const int64_t best = std::max_element(row, row + v) - row;
    for (int t = 0; t < 3; ++t) row[rng() % v] = row[best];
    for (int64_t t = 0; t < v / 8 + 1; ++t) row[rng() % v] = row[rng() % v];
  }
  return x;
}

// Sampling parameters of every kind sample_rows takes (no penalties).
inline std::vector<SamplingParams> sampling_mix() {
  std::vector<SamplingParams> mix;
  auto add = [&](float temperature, int32_t top_k, float top_p, float min_p) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    mix.push_back(p);
  };
  add(0.0f, 0, 1.0f, 0.0f);      // greedy
  add(1.0f, 1, 1.0f, 0.0f);      // greedy by top-k 1
  add(1.0f, 0, 1.0f, 0.0f);      // the full distribution
  add(0.7f, 0, 1.0f, 0.0f);
  add(1.3f, 5, 1.0f, 0.0f);
  add(1.0f, 40, 1.0f, 0.0f);
  add(1.0f, 0, 0.9f, 0.0f);
  add(0.8f, 0, 0.5f, 0.0f);
  add(1.0f, 0, 1.0f, 0.05f);
  add(1.5f, 0, 1.0f, 0.2f);
  add(0.9f, 50, 0.95f, 0.02f);   // combined
  add(2.0f, 100000, 0.7f, 0.01f);  // top-k past the vocabulary
  add(0.05f, 0, 0.99f, 0.0f);    // nearly greedy
  return mix;
}

// n_rows draws over the mix, each with its own seed, position and n_top (-1..32).
inline std::vector<RowDraw> draw_mix(int n_rows, int call) {
  const std::vector<SamplingParams> mix = sampling_mix();
  const int32_t tops[] = {-1, 0, 1, 2, 5, 32, 7, 20, 31, 3};
  std::vector<RowDraw> draws(static_cast<size_t>(n_rows));
  for (int i = 0; i < n_rows; ++i) {
    RowDraw& d = draws[static_cast<size_t>(i)];
    d.params = mix[static_cast<size_t>(i + call) % mix.size()];
    d.params.seed = 0x9e3779b9ull * static_cast<uint64_t>(call + 1) + static_cast<uint64_t>(i);
    d.params.n_logprobs = tops[(i + 3 * call) % 10];
    d.position = 17 + 3 * i + 1000 * static_cast<int64_t>(call);
    d.n_top = d.params.n_logprobs;
  }
  return draws;
}

// Logit edits on draws of rows [r, v] (v > 2): every draw but each fourth gets some of a bias
// forcing a low-ranked token (+100), biases that move tokens past the top (+-3.5), the row's argmax
// banned, and penalties (repetition, frequency, presence) over a history that holds the top tokens.
inline void add_edits(std::vector<RowDraw>& draws, const std::vector<float>& logits, int64_t v, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto vi = static_cast<int32_t>(v);
  for (size_t i = 0; i < draws.size(); ++i) {
    if (i % 4 == 3) continue;
    RowDraw& d = draws[i];
    const float* row = logits.data() + i * v;
    const auto best = static_cast<int32_t>(std::max_element(row, row + v) - row);
    const auto kind = static_cast<int>(i % 5);
    std::map<int32_t, float> bias;
    if (kind == 0) bias[static_cast<int32_t>(std::min_element(row, row + v) - row)] = 100.0f;
    if (kind == 1 || kind == 4)
      for (int k = 0; k < 8; ++k) bias[static_cast<int32_t>(rng() % vi)] = k % 2 == 0 ? 3.5f : -3.5f;
    for (const auto& [t, b] : bias) d.params.logit_bias.push_back({t, b});
    std::vector<int32_t> history, banned;
    int32_t n_prompt = 0;
    if (kind == 2 || kind == 4) {
      d.params.repetition_penalty = 1.3f;
      d.params.frequency_penalty = 0.4f;
      d.params.presence_penalty = kind == 4 ? 0.0f : 0.7f;
      for (int k = 0; k < 40; ++k) history.push_back(k % 3 == 0 ? best : static_cast<int32_t>(rng() % vi));
      n_prompt = 15;
    }
    if (kind == 3 || kind == 4) banned = {best, vi - 1, best};
    d.edits = logit_edits(d.params, history, n_prompt, banned, vi);
  }
}

// What the host sampler gives for one row: sample_token on the edited row, then log_softmax and
// position_logprobs of the raw row.
inline RowSample host_sample(const RowDraw& d, const float* row, int32_t v) {
  std::vector<float> edited(row, row + v);
  apply_logit_edits(d.params, d.edits, edited.data(), v);
  RowSample s;
  s.token = sample_token(d.params, edited.data(), v, d.position);
  if (d.n_top >= 0) {
    std::vector<double> logprobs;
    log_softmax(row, v, &logprobs);
    s.logprobs = position_logprobs(logprobs, s.token, d.n_top);
  }
  return s;
}

}  // namespace kvmesh::testing
