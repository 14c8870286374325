// pack_sample_draws and unpack_samples: RowDraw to SampleDraw (and edits), SampleOut to RowSample.
#include "worker/cuda/layout/sample_staging.h"

#include <climits>
#include <string>

namespace kvmesh {

static_assert(kMaxSampleTop == kMaxTopLogprobs, "the device returns as many top log-probs as a draw may ask");

Result<SampleStaging> pack_sample_draws(const RowDraw* draws, int64_t r, int64_t v) {
  SampleStaging s;
  s.draws.resize(static_cast<size_t>(r));
  for (int64_t i = 0; i < r; ++i) {
    const RowDraw& in = draws[i];
    KVMESH_CHECK(in.n_top <= kMaxSampleTop);
    SampleDraw& d = s.draws[static_cast<size_t>(i)];
    d.temperature = in.params.temperature;
    d.top_p = in.params.top_p;
    d.min_p = in.params.min_p;
    d.top_k = in.params.top_k;
    d.seed = in.params.seed;
    d.position = in.position;
    d.greedy = in.params.greedy() ? 1 : 0;
    d.n_top = in.n_top < 0 ? -1 : in.n_top;
    d.repetition_penalty = in.params.repetition_penalty;
    d.frequency_penalty = in.params.frequency_penalty;
    d.presence_penalty = in.params.presence_penalty;
    d.edit_begin = static_cast<int32_t>(s.edits.size());
    d.n_edits = static_cast<int32_t>(in.edits.size());
    s.edits.insert(s.edits.end(), in.edits.begin(), in.edits.end());
    const bool sorted = v > 1 && (d.greedy == 0 || d.n_top > 0 || d.n_edits > 0);
    d.sort_slot = sorted ? static_cast<int32_t>(s.n_sorted++) : -1;
  }
  if (s.n_sorted * v > INT32_MAX)
    return invalid_argument("sample_rows: " + std::to_string(s.n_sorted) + " rows of " + std::to_string(v) +
                            " logits exceed the sort's 2^31 elements");
  return s;
}

void unpack_samples(const std::vector<SampleDraw>& draws, const SampleOut* results, RowSample* out) {
  for (size_t i = 0; i < draws.size(); ++i) {
    const SampleOut& o = results[i];
    RowSample& s = out[i];
    s.token = o.token;
    s.logprobs = {};
    if (draws[i].n_top < 0) continue;
    s.logprobs.chosen = {o.token, o.logprob};
    for (int32_t j = 0; j < o.n_top; ++j) s.logprobs.top.push_back({o.top_ids[j], o.top_logprobs[j]});
  }
}

}  // namespace kvmesh
