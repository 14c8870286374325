// The CUDA PageMemory. Every copy between the pools runs on the copy stream, after (on the device)
// the compute issued before it, and in the background: fence() makes the compute stream wait for
// the copies issued so far, wait_copies() makes the host wait for them. No copy waits on the host.
#include "worker/cuda/device_page_memory.h"

#include <cstring>
#include <string>

#include "worker/cuda/cuda_check.h"

namespace kvmesh {
namespace {

class DevicePageMemory final : public PageMemory {
 public:
  DevicePageMemory(int device, cudaStream_t compute) : device_(device), compute_(compute) {}
  ~DevicePageMemory() override {
    if (copy_ != nullptr) {
      (void)cudaStreamSynchronize(copy_);
      (void)cudaStreamDestroy(copy_);
    }
    if (compute_done_ != nullptr) (void)cudaEventDestroy(compute_done_);
    if (copies_done_ != nullptr) (void)cudaEventDestroy(copies_done_);
  }

  Status init() {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking),
                                "cudaStreamCreate (KV copy stream)");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming),
                                "cudaEventCreate");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&copies_done_, cudaEventDisableTiming),
                                "cudaEventCreate");
    return Status::ok();
  }

  Result<Buffer> alloc_device(size_t bytes) override {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    void* p = nullptr;
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes > 0 ? bytes : 1),
                                ("cudaMalloc of the KV device pool (" + std::to_string(bytes) + " bytes)").c_str());
    Buffer buffer(p, bytes, [](void* q) { (void)cudaFree(q); });
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMemset(p, 0, bytes), "zeroing the KV device pool");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), "zeroing the KV device pool");
    return buffer;
  }

  Result<Buffer> alloc_host(size_t bytes) override {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    void* p = nullptr;
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMallocHost(&p, bytes > 0 ? bytes : 1),
                                ("cudaMallocHost of the KV host pool (" + std::to_string(bytes) + " bytes)").c_str());
    std::memset(p, 0, bytes);
    return Buffer(p, bytes, [](void* q) { (void)cudaFreeHost(q); });
  }

  Status copy_to_host(void* host_dst, const void* device_src, size_t bytes) override {
    KVMESH_RETURN_IF_ERROR(after_compute());
    KVMESH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, copy_), "KV page to host");
    issued();
    return Status::ok();
  }

  Status copy_to_device(void* device_dst, const void* host_src, size_t bytes) override {
    KVMESH_RETURN_IF_ERROR(after_compute());
    KVMESH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, copy_), "KV page to device");
    issued();
    return Status::ok();
  }

  Status copy_in_device(void* device_dst, const void* device_src, size_t bytes) override {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    KVMESH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(device_dst, device_src, bytes, cudaMemcpyDeviceToDevice, compute_), "KV page copy");
    return Status::ok();
  }

  int64_t free_device_bytes() override {
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(device_) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
    return static_cast<int64_t>(free_b);
  }

  Status fence() override {
    if (!unfenced_) return Status::ok();
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventRecord(copies_done_, copy_), "cudaEventRecord (KV copies)");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(compute_, copies_done_, 0), "cudaStreamWaitEvent");
    unfenced_ = false;
    return Status::ok();
  }

  Status wait_copies() override {
    if (!pending_) return Status::ok();
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(copy_), "waiting for KV page copies");
    pending_ = false;
    unfenced_ = false;  // the copies are done, so later compute needs no wait for them
    return Status::ok();
  }

 private:
  void issued() { pending_ = unfenced_ = true; }

  // The copy stream waits for everything the compute stream was given so far.
  Status after_compute() {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventRecord(compute_done_, compute_), "cudaEventRecord (compute)");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_, compute_done_, 0), "cudaStreamWaitEvent");
    return Status::ok();
  }

  int device_;
  cudaStream_t compute_;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t compute_done_ = nullptr;
  cudaEvent_t copies_done_ = nullptr;
  bool pending_ = false;   // copies issued and not yet waited for on the host
  bool unfenced_ = false;  // copies issued since the compute stream last waited for them
};

}  // namespace

Result<std::unique_ptr<PageMemory>> make_device_page_memory(int device, cudaStream_t compute) {
  auto memory = std::make_unique<DevicePageMemory>(device, compute);
  KVMESH_RETURN_IF_ERROR(memory->init());
  return std::unique_ptr<PageMemory>(std::move(memory));
}

}  // namespace kvmesh
