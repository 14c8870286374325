// RowSampler: the host side of the CUDA backend's sample_rows: the draws and their logit edits
// staged to the device, the sort's scratch grown as needed (never shrunk), one launch
// (sample_rows.cu) and one download of the few numbers each row gives back.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "worker/backend.h"
#include "worker/buffer.h"
#include "worker/cuda/host_staging.h"
#include "worker/cuda/kernels.h"

namespace kvmesh {

class RowSampler {
 public:
  // Samples the first draws.size() rows of logits (device memory, [R, V]) on `stream` into out
  // (host memory, draws.size() entries). Device memory comes from backend.alloc().
  Status sample(Backend& backend, HostStaging& staging, cudaStream_t stream, const TensorView& logits,
                const std::vector<RowDraw>& draws, RowSample* out);

 private:
  // r rows of logits [r, v] (device memory), r * v < 2^31.
  Status sample_chunk(Backend& backend, HostStaging& staging, cudaStream_t stream, const float* logits,
                      int64_t v, const RowDraw* draws, int64_t r, RowSample* out);

  std::vector<SampleDraw> draws_host_;
  std::vector<SampleOut> out_host_;
  std::vector<LogitEdit> edits_host_;  // every draw's edits, one after another
  Buffer draws_;    // [R] SampleDraw
  Buffer edits_;    // edits_host_ on the device
  Buffer out_;      // [R] SampleOut
  Buffer keys_[2];  // [sorted rows, V] uint64 sort keys each
  Buffer ids_[2];   // [sorted rows, V] each
  Buffer temp_;     // the sort's temporary storage
};

}  // namespace kvmesh
