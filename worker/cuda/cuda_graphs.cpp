// CudaGraphs: stream capture into executable CUDA graphs, their launches, and their scratch.
#include "worker/cuda/cuda_graphs.h"

#include <string>
#include <utility>

#include "worker/cuda/cuda_check.h"

namespace kvmesh {

CudaGraphs::~CudaGraphs() {
  if (recording_) {
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph != nullptr)
      (void)cudaGraphDestroy(graph);
  }
  destroy(pending_);
  for (auto& [key, graph] : graphs_) destroy(graph);
}

void CudaGraphs::destroy(Graph& graph) {
  if (graph.exec != nullptr) (void)cudaGraphExecDestroy(graph.exec);
  graph.exec = nullptr;
  graph.scratch.clear();
  graph.outgrown.clear();
}

Status CudaGraphs::begin(cudaStream_t stream, int key) {
  if (recording_) return internal_error("a graph is already being recorded");
  destroy(pending_);
  KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed),
                              "cudaStreamBeginCapture");
  stream_ = stream;
  pending_key_ = key;
  recording_ = true;
  return Status::ok();
}

Status CudaGraphs::end(const Status& recorded) {
  if (!recording_) return internal_error("no graph is being recorded");
  recording_ = false;
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
  Status status = recorded;
  if (status.is_ok()) status = cuda_status(ended, "cudaStreamEndCapture");
  if (status.is_ok() && graph == nullptr) status = internal_error("stream capture returned no graph");
  if (status.is_ok())
    status = cuda_status(cudaGraphInstantiate(&pending_.exec, graph, 0), "cudaGraphInstantiate");
  if (graph != nullptr) (void)cudaGraphDestroy(graph);
  if (!status.is_ok()) {
    (void)cudaGetLastError();  // a failed capture leaves the stream usable; clear its error
    destroy(pending_);
    return status.with_context("recording graph " + std::to_string(pending_key_));
  }
  auto it = graphs_.find(pending_key_);
  if (it != graphs_.end()) destroy(it->second);
  graphs_[pending_key_] = std::move(pending_);
  pending_ = Graph{};
  return Status::ok();
}

Status CudaGraphs::launch(int key, cudaStream_t stream) const {
  auto it = graphs_.find(key);
  if (it == graphs_.end() || it->second.exec == nullptr)
    return internal_error("graph " + std::to_string(key) + " was never recorded");
  return cuda_status(cudaGraphLaunch(it->second.exec, stream), "cudaGraphLaunch");
}

Result<void*> CudaGraphs::scratch(const void* role, size_t bytes) {
  if (!recording_) return internal_error("graph scratch outside a recording");
  Buffer& block = pending_.scratch[role];
  if (!block.empty() && block.bytes() >= bytes) return block.data();
  if (!block.empty()) pending_.outgrown.push_back(std::move(block));
  void* p = nullptr;
  KVMESH_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes > 0 ? bytes : 1),
                              ("cudaMalloc of " + std::to_string(bytes) + " bytes of graph scratch").c_str());
  block = Buffer(p, bytes, [](void* q, size_t) { (void)cudaFree(q); });
  return p;
}

}  // namespace kvmesh
