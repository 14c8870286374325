// CudaBackend's setup and memory ops (weights, uploads), the embedding, and the head's row ops
// (gather, row statistics); make_cuda_backend picks the GPU.
#include "worker/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "worker/cuda/cuda_backend_impl.h"

namespace kvmesh {

Result<KernelDType> kernel_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32: return KernelDType::f32;
    case DType::f16: return KernelDType::f16;
    case DType::bf16: return KernelDType::bf16;
    default:
      return invalid_argument(std::string("dtype ") + dtype_name(dtype) +
                              " is not supported by the CUDA backend (use f32, f16 or bf16)");
  }
}

namespace {

// The local rank among the processes of this node, from the MPI launchers' environment.
int local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK",
                           "SLURM_LOCALID", "LOCAL_RANK"}) {
    if (const char* v = std::getenv(name)) return std::atoi(v);
  }
  return 0;
}

}  // namespace

Result<TensorView> CudaBackend::place_weight(const std::vector<float>& host, int64_t rows, int64_t cols,
                                             bool matrix, std::vector<Buffer>* storage) {
  if (static_cast<int64_t>(host.size()) != rows * cols)
    return internal_error("weight of " + std::to_string(host.size()) + " values placed as [" +
                          std::to_string(rows) + ", " + std::to_string(cols) + "]");
  const KernelDType kd = matrix ? weight_dtype_ : KernelDType::f32;
  const DType dtype = kd == KernelDType::f16 ? DType::f16 : kd == KernelDType::bf16 ? DType::bf16 : DType::f32;
  const size_t bytes = host.size() * dtype_size(dtype);
  KVMESH_ASSIGN_OR_RETURN(Buffer buffer, alloc(bytes));
  if (dtype == DType::f32) {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMemcpy(buffer.data(), host.data(), bytes, cudaMemcpyHostToDevice),
                                "uploading a weight");
  } else {
    std::vector<uint16_t> narrow(host.size());
    for (size_t i = 0; i < host.size(); ++i)
      narrow[i] = dtype == DType::bf16 ? float_to_bf16(host[i]) : float_to_half(host[i]);
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMemcpy(buffer.data(), narrow.data(), bytes, cudaMemcpyHostToDevice),
                                "uploading a weight");
  }
  TensorView view = TensorView::of(buffer.f32(), {rows, cols});
  view.dtype = dtype;
  storage->push_back(std::move(buffer));
  return view;
}

void CudaBackend::embed(const TensorView& wte, int64_t vocab_begin, const TensorView* wpe,
                        const int32_t* tokens, const int32_t* positions, TensorView out) {
  const TimedOp timed = time_op("embed");
  if (!enter()) return;
  const int64_t n = out.dim(0), e = out.dim(1);
  auto wte_dtype = kernel_dtype(wte.dtype);
  auto wpe_dtype = kernel_dtype(wpe != nullptr ? wpe->dtype : DType::f32);
  if (!note(wte_dtype.status()) || !note(wpe_dtype.status())) return;
  auto* ids = static_cast<int32_t*>(scratch(ids_, static_cast<size_t>(2 * n) * sizeof(int32_t)));
  if (ids == nullptr) return;
  // One upload: every call before this launch holds the device idle at the start of a step.
  ids_host_.assign(tokens, tokens + n);
  ids_host_.insert(ids_host_.end(), positions, positions + n);
  if (!note(staging_.upload(ids, ids_host_.data(), ids_host_.size() * sizeof(int32_t), stream_))) return;
  check(launch_embed(wte.data, *wte_dtype, wte.dim(0), vocab_begin, wpe != nullptr ? wpe->data : nullptr,
                     *wpe_dtype, ids, ids + n, n, e, out.f32(), on_stream()),
        "embed");
}

void CudaBackend::gather_rows(const TensorView& x, const std::vector<int32_t>& rows, TensorView out) {
  const TimedOp timed = time_op("gather_rows");
  if (!enter() || rows.empty()) return;
  const auto r = static_cast<int64_t>(rows.size());
  auto* ids = static_cast<int32_t*>(scratch(ids_, rows.size() * sizeof(int32_t)));
  if (ids == nullptr) return;
  if (!note(staging_.upload(ids, rows.data(), rows.size() * sizeof(int32_t), stream_))) return;
  check(launch_gather_rows(x.f32(), ids, r, x.dim(1), out.f32(), on_stream()), "gather_rows");
}

void CudaBackend::row_stats(const TensorView& logits, RowStats* stats) {
  const TimedOp timed = time_op("row_stats");
  if (!enter()) return;
  const int64_t r = logits.dim(0), v = logits.dim(1);
  if (r == 0) return;
  auto* d = static_cast<float*>(scratch(stats_, static_cast<size_t>(3 * r) * sizeof(float)));
  if (d == nullptr) return;
  auto* argmax = reinterpret_cast<int32_t*>(d + r);
  if (!check(launch_row_stats(logits.f32(), r, v, d, argmax, d + 2 * r, on_stream()), "row_stats")) return;
  std::vector<float> host(static_cast<size_t>(3 * r));
  download(host.data(), d, host.size() * sizeof(float));
  if (!error_.is_ok()) return;
  for (int64_t i = 0; i < r; ++i) {
    int32_t index = 0;
    std::memcpy(&index, &host[static_cast<size_t>(r + i)], sizeof(index));
    stats[i] = {host[static_cast<size_t>(i)], index, host[static_cast<size_t>(2 * r + i)]};
  }
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error so later calls start clean
    return 0;
  }
  return n;
}

std::string cuda_no_device_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  (void)cudaGetLastError();
  if (err != cudaSuccess) return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  return n == 0 ? "no device visible" : "";
}

Result<std::unique_ptr<Backend>> make_cuda_backend(int device, DType weight_dtype,
                                                   const CudaBackendOptions& options) {
  const int n = cuda_device_count();
  if (n == 0) return unavailable("--device cuda: no usable CUDA GPU (" + cuda_no_device_reason() + ")");
  if (device < 0) device = local_rank() % n;
  if (device >= n)
    return invalid_argument("CUDA device " + std::to_string(device) + " does not exist (" +
                            std::to_string(n) + " visible)");
  auto backend = std::make_unique<CudaBackend>();
  KVMESH_RETURN_IF_ERROR(backend->init(device, weight_dtype, options));
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace kvmesh
