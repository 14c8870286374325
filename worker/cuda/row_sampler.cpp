// RowSampler: rows packed (layout/sample_staging.h), uploaded with their logit edits, launch_sample_rows,
// the results downloaded and unpacked into RowSample.
#include "worker/cuda/row_sampler.h"

#include <algorithm>
#include <climits>
#include <string>

#include "worker/cuda/cuda_check.h"

namespace kvmesh {

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
  KVMESH_ASSIGN_OR_RETURN(const SampleStaging packed, pack_sample_draws(draws, r, v));
  KVMESH_RETURN_IF_ERROR(launch(backend, staging, stream, logits, v, packed));
  unpack_samples(packed.draws, out_host_.data(), out);
  return Status::ok();
}

Status RowSampler::reserve_sort(Backend& backend, int64_t n_sorted, int64_t v, SampleScratch* scratch) {
  if (n_sorted == 0) return Status::ok();
  const size_t n = static_cast<size_t>(n_sorted * v);
  for (int b = 0; b < 2; ++b) {
    KVMESH_RETURN_IF_ERROR(reserve(backend, &keys_[b], n * sizeof(uint64_t)));
    KVMESH_RETURN_IF_ERROR(reserve(backend, &ids_[b], n * sizeof(int32_t)));
    scratch->keys[b] = static_cast<uint64_t*>(keys_[b].data());
    scratch->ids[b] = static_cast<int32_t*>(ids_[b].data());
  }
  size_t temp_bytes = 0;
  KVMESH_CUDA_RETURN_IF_ERROR(sample_rows_temp_bytes(n_sorted, v, &temp_bytes), "sample_rows: sort storage");
  KVMESH_RETURN_IF_ERROR(reserve(backend, &temp_, temp_bytes > 0 ? temp_bytes : 1));
  scratch->temp = temp_.data();
  scratch->temp_bytes = temp_.bytes();
  return Status::ok();
}

Status RowSampler::launch(Backend& backend, HostStaging& staging, cudaStream_t stream, const float* logits,
                          int64_t v, const SampleStaging& packed) {
  const auto r = static_cast<int64_t>(packed.draws.size());
  KVMESH_RETURN_IF_ERROR(reserve(backend, &draws_, static_cast<size_t>(r) * sizeof(SampleDraw)));
  KVMESH_RETURN_IF_ERROR(reserve(backend, &out_, static_cast<size_t>(r) * sizeof(SampleOut)));
  SampleScratch scratch;
  KVMESH_RETURN_IF_ERROR(reserve_sort(backend, packed.n_sorted, v, &scratch));
  auto* draws_dev = static_cast<SampleDraw*>(draws_.data());
  auto* out_dev = static_cast<SampleOut*>(out_.data());
  KVMESH_RETURN_IF_ERROR(
      staging.upload(draws_dev, packed.draws.data(), static_cast<size_t>(r) * sizeof(SampleDraw), stream));
  LogitEdit* edits_dev = nullptr;
  if (!packed.edits.empty()) {
    const size_t bytes = packed.edits.size() * sizeof(LogitEdit);
    KVMESH_RETURN_IF_ERROR(reserve(backend, &edits_, bytes));
    edits_dev = static_cast<LogitEdit*>(edits_.data());
    KVMESH_RETURN_IF_ERROR(staging.upload(edits_dev, packed.edits.data(), bytes, stream));
  }
  KVMESH_CUDA_RETURN_IF_ERROR(
      launch_sample_rows(logits, r, v, draws_dev, edits_dev, packed.n_sorted, scratch, out_dev, stream),
      "sample_rows");
  out_host_.resize(static_cast<size_t>(r));
  KVMESH_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out_host_.data(), out_dev,
                                              static_cast<size_t>(r) * sizeof(SampleOut),
                                              cudaMemcpyDeviceToHost, stream),
                              "sample_rows: download");
  KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream), "sample_rows");
  return Status::ok();
}

}  // namespace kvmesh
