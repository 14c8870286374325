// CudaGraphs: the CUDA backend's captured graphs, one executable graph per key, and the scratch
// memory each graph's recorded kernels point at (kept for as long as the graph lives).
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <vector>

#include "common/status.h"
#include "worker/buffer.h"

namespace kvmesh {

class CudaGraphs {
 public:
  CudaGraphs() = default;
  ~CudaGraphs();
  CudaGraphs(const CudaGraphs&) = delete;
  CudaGraphs& operator=(const CudaGraphs&) = delete;

  // Starts recording stream's work into graph `key` (replacing an earlier one of that key once
  // end() succeeds). Relaxed mode: scratch may be allocated while recording.
  Status begin(cudaStream_t stream, int key);
  // Stops recording; `recorded` is the first error an op met while recording (then nothing is
  // kept). Instantiates the graph on success.
  Status end(const Status& recorded);
  // Launches graph `key` on stream.
  Status launch(int key, cudaStream_t stream) const;
  bool recording() const { return recording_; }

  // Scratch of at least `bytes` for the graph being recorded, one block per role (an op's scratch
  // buffer): blocks a graph outgrew stay alive with it, since its earlier kernels point at them.
  Result<void*> scratch(const void* role, size_t bytes);

 private:
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    std::map<const void*, Buffer> scratch;  // by role
    std::vector<Buffer> outgrown;
  };
  static void destroy(Graph& graph);

  std::map<int, Graph> graphs_;
  Graph pending_;  // what is being recorded
  int pending_key_ = 0;
  cudaStream_t stream_ = nullptr;
  bool recording_ = false;
};

}  // namespace kvmesh
