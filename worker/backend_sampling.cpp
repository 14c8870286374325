// host_sample_rows: the host sampler over each row of logits (downloaded first when the backend's
// memory is not host memory): each draw's logit edits on a copy of its row, the draw from that copy,
// the log-probs from the raw row.
#include <vector>

#include "worker/backend.h"
#include "worker/sampler.h"

namespace kvmesh {

void host_sample_rows(Backend& backend, const TensorView& logits, const std::vector<RowDraw>& draws,
                      RowSample* out) {
  const int64_t r = static_cast<int64_t>(draws.size());
  if (r == 0) return;
  KVMESH_CHECK(logits.dim(0) >= r);
  const int64_t v = logits.dim(1);
  const float* rows = logits.f32();
  std::vector<float> downloaded;
  if (!backend.host_memory()) {
    downloaded.resize(static_cast<size_t>(r * v));
    backend.download(downloaded.data(), logits.data, downloaded.size() * sizeof(float));
    if (!backend.status().is_ok()) return;
    rows = downloaded.data();
  }
  // Rows are independent draws: one thread each.
#pragma omp parallel for schedule(dynamic, 1) if (r > 1)
  for (int64_t i = 0; i < r; ++i) {
    const RowDraw& draw = draws[static_cast<size_t>(i)];
    const float* row = rows + i * v;
    const float* to_sample = row;
    std::vector<float> edited;
    if (!draw.edits.empty()) {
      edited.assign(row, row + v);
      apply_logit_edits(draw.params, draw.edits, edited.data(), static_cast<int32_t>(v));
      to_sample = edited.data();
    }
    out[i].token = sample_token(draw.params, to_sample, static_cast<int32_t>(v), draw.position);
    out[i].logprobs = {};
    if (draw.n_top >= 0) {
      std::vector<double> logprobs;
      log_softmax(row, static_cast<int32_t>(v), &logprobs);
      out[i].logprobs = position_logprobs(logprobs, out[i].token, draw.n_top);
    }
  }
}

}  // namespace kvmesh
