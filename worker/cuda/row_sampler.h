// RowSampler: the host side of the CUDA backend's sample_rows: the rows' draws packed and their
// results unpacked by pure functions (layout/sample_staging.h); here the upload, the sort's scratch
// grown as needed (never shrunk), one launch (sample_rows.cu) and one download of each row's result.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "worker/backend.h"
#include "worker/buffer.h"
#include "worker/cuda/host_staging.h"
#include "worker/cuda/kernels.h"
#include "worker/cuda/layout/sample_staging.h"

namespace kvmesh {

class RowSampler {
 public:
  // Samples the first draws.size() rows of logits (device memory, [R, V]) on `stream` into out
  // (host memory, draws.size() entries). Device memory comes from backend.alloc().
  Status sample(Backend& backend, HostStaging& staging, cudaStream_t stream, const TensorView& logits,
                const std::vector<RowDraw>& draws, RowSample* out);

 private:
  // r rows of logits [r, v] (device memory), r * v < 2^31: pack, launch, unpack.
  Status sample_chunk(Backend& backend, HostStaging& staging, cudaStream_t stream, const float* logits,
                      int64_t v, const RowDraw* draws, int64_t r, RowSample* out);
  // The packed rows uploaded, sampled on the device and their results downloaded into out_host_
  // (waits for the stream).
  Status launch(Backend& backend, HostStaging& staging, cudaStream_t stream, const float* logits, int64_t v,
                const SampleStaging& packed);
  // The sort's device scratch for n_sorted rows of v (none when 0).
  Status reserve_sort(Backend& backend, int64_t n_sorted, int64_t v, SampleScratch* scratch);

  std::vector<SampleOut> out_host_;  // [R] the last launch's results
  Buffer draws_;    // [R] SampleDraw
  Buffer edits_;    // the packed logit edits on the device
  Buffer out_;      // [R] SampleOut
  Buffer keys_[2];  // [sorted rows, V] uint64 sort keys each
  Buffer ids_[2];   // [sorted rows, V] each
  Buffer temp_;     // the sort's temporary storage
};

}  // namespace kvmesh
