// launch_overlap_works: whether the current device and this build run overlapping launches
// (KernelStream::overlap) correctly, checked once per backend: the device's compute capability, the
// PTX the kernels were built from, and overlapping launches after a kernel and after a memset whose
// order a wrong overlap would break, run eagerly and from a CUDA graph.
#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

// The first kernel: long enough that a second kernel which did not wait would read too early.
__global__ void slow_write_kernel(int32_t* cell, int32_t value) {
  begin_after_previous_kernel();
  for (int i = 0; i < 20; ++i) __nanosleep(1000);
  *cell = value;
}

// The second: copies what the first wrote, after waiting for it.
__global__ void copy_after_kernel(const int32_t* cell, int32_t* copy) {
  begin_after_previous_kernel();
  *copy = *cell;
}

// Runs on `stream`, eagerly or recorded into a graph and replayed: cells[0..3] zeroed, `value` into
// cells[0] by the slow kernel and copied into cells[1] by an overlapping one; then cells[2] set to
// all-ones bytes (-1) by a memset and copied into cells[3] by an overlapping kernel after it.
cudaError_t run_sequence(int32_t* cells, int32_t value, bool from_graph, cudaStream_t stream) {
  cudaGraph_t graph = nullptr;
  if (from_graph) {
    if (const cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed); e != cudaSuccess) return e;
  }
  cudaError_t e = cudaMemsetAsync(cells, 0, 4 * sizeof(int32_t), stream);
  if (e == cudaSuccess) e = launch_kernel(slow_write_kernel, 1, 1, KernelStream(stream), cells, value);
  if (e == cudaSuccess) e = launch_kernel(copy_after_kernel, 1, 1, KernelStream(stream, true), cells, cells + 1);
  if (e == cudaSuccess) e = cudaMemsetAsync(cells + 2, 0xFF, sizeof(int32_t), stream);
  if (e == cudaSuccess) e = launch_kernel(copy_after_kernel, 1, 1, KernelStream(stream, true), cells + 2, cells + 3);
  if (!from_graph) return e;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (e == cudaSuccess) e = ended;
  cudaGraphExec_t exec = nullptr;
  if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
  if (e == cudaSuccess) e = cudaGraphLaunch(exec, stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
  if (exec != nullptr) (void)cudaGraphExecDestroy(exec);
  if (graph != nullptr) (void)cudaGraphDestroy(graph);
  return e;
}

}  // namespace

bool launch_overlap_works(cudaStream_t stream, const char** why) {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    *why = "the device's compute capability could not be read";
    return false;
  }
  if (major < 9) {
    *why = "the device is older than compute capability 9.0";
    return false;
  }
  cudaFuncAttributes built{};
  if (cudaFuncGetAttributes(&built, reinterpret_cast<const void*>(slow_write_kernel)) != cudaSuccess ||
      built.ptxVersion < 90) {
    *why = "the kernels run from PTX older than compute capability 9.0 (no wait instruction in them)";
    (void)cudaGetLastError();
    return false;
  }
  int32_t* cells = nullptr;
  if (cudaMalloc(&cells, 4 * sizeof(int32_t)) != cudaSuccess) {
    *why = "no device memory for the check";
    (void)cudaGetLastError();
    return false;
  }
  bool works = true;
  int32_t value = 0;
  for (bool from_graph : {false, true}) {
    ++value;
    int32_t got[4] = {0, 0, 0, 0};
    cudaError_t e = run_sequence(cells, value, from_graph, stream);
    if (e == cudaSuccess) e = cudaMemcpyAsync(got, cells, sizeof(got), cudaMemcpyDeviceToHost, stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) {
      *why = from_graph ? "a CUDA graph of overlapping launches failed" : "an overlapping launch failed";
      (void)cudaGetLastError();
      works = false;
      break;
    }
    if (got[1] != value || got[3] != -1) {
      *why = from_graph ? "a CUDA graph ran a kernel before the one it waits for had finished"
                        : "a kernel ran before the one it waits for had finished";
      works = false;
      break;
    }
  }
  (void)cudaFree(cells);
  return works;
}

}  // namespace kvmesh
