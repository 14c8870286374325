// Device copy bandwidth: cudaMemcpyAsync device to device between two buffers, timed by events.
#include "worker/cuda/device_bandwidth.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "worker/cuda/cuda_check.h"

namespace kvmesh {

Result<double> measure_device_copy_gbs(int device, size_t bytes) {
  KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device), "cudaSetDevice");
  void* a = nullptr;
  void* b = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  std::vector<float> ms;
  auto release = [&] {
    if (a) (void)cudaFree(a);
    if (b) (void)cudaFree(b);
    if (start) (void)cudaEventDestroy(start);
    if (stop) (void)cudaEventDestroy(stop);
  };
  Status s = cuda_status(cudaMalloc(&a, bytes), "cudaMalloc (bandwidth)");
  if (s.is_ok()) s = cuda_status(cudaMalloc(&b, bytes), "cudaMalloc (bandwidth)");
  if (s.is_ok()) s = cuda_status(cudaMemset(a, 1, bytes), "cudaMemset (bandwidth)");  // not zeros
  if (s.is_ok()) s = cuda_status(cudaEventCreate(&start), "cudaEventCreate");
  if (s.is_ok()) s = cuda_status(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; s.is_ok() && i < 11; ++i) {
    s = cuda_status(cudaEventRecord(start), "cudaEventRecord");
    if (s.is_ok()) s = cuda_status(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "bandwidth copy");
    if (s.is_ok()) s = cuda_status(cudaEventRecord(stop), "cudaEventRecord");
    if (s.is_ok()) s = cuda_status(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0.0f;
    if (s.is_ok()) s = cuda_status(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    if (s.is_ok() && i > 0) ms.push_back(t);  // the first copy warms up
  }
  release();
  if (!s.is_ok()) return s;
  std::sort(ms.begin(), ms.end());
  const double median_s = ms[ms.size() / 2] / 1e3;
  return 2.0 * static_cast<double>(bytes) / median_s / 1e9;
}

}  // namespace kvmesh
