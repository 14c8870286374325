// RowSampler: draws and their logit edits to the device, launch_sample_rows, results back to RowSample.
#include "worker/cuda/row_sampler.h"

#include <algorithm>
#include <climits>
#include <string>

#include "worker/cuda/cuda_check.h"

namespace kvmesh {

static_assert(kMaxSampleTop == kMaxTopLogprobs, "the device returns as many top log-probs as a draw may ask");

Status RowSampler::sample(Backend& backend, HostStaging& staging, cudaStream_t stream,
                          const TensorView& logits, const std::vector<RowDraw>& draws, RowSample* out) {
  const auto r = static_cast<int64_t>(draws.size());
  if (r == 0) return Status::ok();
  const int64_t v = logits.dim(1);
  if (logits.dim(0) < r || v < 1 || v > INT32_MAX)
    return invalid_argument("sample_rows: logits of shape [" + std::to_string(logits.dim(0)) + ", " +
                            std::to_string(v) + "] for " + std::to_string(r) + " draws");
  // The sort takes fewer than 2^31 elements: more rows than that go in chunks.
  const int64_t chunk = std::max<int64_t>(1, INT32_MAX / v);
  for (int64_t begin = 0; begin < r; begin += chunk) {
    const int64_t n = std::min(chunk, r - begin);
    KVMESH_RETURN_IF_ERROR(sample_chunk(backend, staging, stream, logits.f32() + begin * v, v,
                                        draws.data() + begin, n, out + begin));
  }
  return Status::ok();
}

Status RowSampler::sample_chunk(Backend& backend, HostStaging& staging, cudaStream_t stream, const float* logits,
                                int64_t v, const RowDraw* draws, int64_t r, RowSample* out) {
  draws_host_.resize(static_cast<size_t>(r));
  edits_host_.clear();
  int64_t n_sorted = 0;
  for (int64_t i = 0; i < r; ++i) {
    const RowDraw& in = draws[i];
    KVMESH_CHECK(in.n_top <= kMaxSampleTop);
    SampleDraw& d = draws_host_[static_cast<size_t>(i)];
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
    d.edit_begin = static_cast<int32_t>(edits_host_.size());
    d.n_edits = static_cast<int32_t>(in.edits.size());
    edits_host_.insert(edits_host_.end(), in.edits.begin(), in.edits.end());
    const bool sorted = v > 1 && (d.greedy == 0 || d.n_top > 0 || d.n_edits > 0);
    d.sort_slot = sorted ? static_cast<int32_t>(n_sorted++) : -1;
  }
  if (n_sorted * v > INT32_MAX)
    return invalid_argument("sample_rows: " + std::to_string(n_sorted) + " rows of " + std::to_string(v) +
                            " logits exceed the sort's 2^31 elements");
  KVMESH_RETURN_IF_ERROR(reserve(backend, &draws_, static_cast<size_t>(r) * sizeof(SampleDraw)));
  KVMESH_RETURN_IF_ERROR(reserve(backend, &out_, static_cast<size_t>(r) * sizeof(SampleOut)));
  SampleScratch scratch;
  if (n_sorted > 0) {
    const size_t n = static_cast<size_t>(n_sorted * v);
    for (int b = 0; b < 2; ++b) {
      KVMESH_RETURN_IF_ERROR(reserve(backend, &keys_[b], n * sizeof(uint64_t)));
      KVMESH_RETURN_IF_ERROR(reserve(backend, &ids_[b], n * sizeof(int32_t)));
      scratch.keys[b] = static_cast<uint64_t*>(keys_[b].data());
      scratch.ids[b] = static_cast<int32_t*>(ids_[b].data());
    }
    size_t temp_bytes = 0;
    KVMESH_CUDA_RETURN_IF_ERROR(sample_rows_temp_bytes(n_sorted, v, &temp_bytes), "sample_rows: sort storage");
    KVMESH_RETURN_IF_ERROR(reserve(backend, &temp_, temp_bytes > 0 ? temp_bytes : 1));
    scratch.temp = temp_.data();
    scratch.temp_bytes = temp_.bytes();
  }
  auto* draws_dev = static_cast<SampleDraw*>(draws_.data());
  auto* out_dev = static_cast<SampleOut*>(out_.data());
  KVMESH_RETURN_IF_ERROR(
      staging.upload(draws_dev, draws_host_.data(), static_cast<size_t>(r) * sizeof(SampleDraw), stream));
  LogitEdit* edits_dev = nullptr;
  if (!edits_host_.empty()) {
    const size_t bytes = edits_host_.size() * sizeof(LogitEdit);
    KVMESH_RETURN_IF_ERROR(reserve(backend, &edits_, bytes));
    edits_dev = static_cast<LogitEdit*>(edits_.data());
    KVMESH_RETURN_IF_ERROR(staging.upload(edits_dev, edits_host_.data(), bytes, stream));
  }
  KVMESH_CUDA_RETURN_IF_ERROR(
      launch_sample_rows(logits, r, v, draws_dev, edits_dev, n_sorted, scratch, out_dev, stream), "sample_rows");
  out_host_.resize(static_cast<size_t>(r));
  KVMESH_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out_host_.data(), out_dev,
                                              static_cast<size_t>(r) * sizeof(SampleOut),
                                              cudaMemcpyDeviceToHost, stream),
                              "sample_rows: download");
  KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream), "sample_rows");
  for (int64_t i = 0; i < r; ++i) {
    const SampleOut& o = out_host_[static_cast<size_t>(i)];
    RowSample& s = out[i];
    s.token = o.token;
    s.logprobs = {};
    if (draws_host_[static_cast<size_t>(i)].n_top < 0) continue;
    s.logprobs.chosen = {o.token, o.logprob};
    for (int32_t j = 0; j < o.n_top; ++j) s.logprobs.top.push_back({o.top_ids[j], o.top_logprobs[j]});
  }
  return Status::ok();
}

}  // namespace kvmesh
