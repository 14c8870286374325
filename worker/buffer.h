// Buffer: one owned block of memory a backend's ops read and write (host RAM on the CPU backend,
// device memory on CUDA), freed by the function of whoever allocated it (given the block and its size). Move-only.
#pragma once

#include <cstddef>
#include <utility>

namespace kvmesh {

class Buffer {
 public:
  using FreeFn = void (*)(void* data, size_t bytes);

  Buffer() = default;
  Buffer(void* data, size_t bytes, FreeFn free_fn) : data_(data), bytes_(bytes), free_(free_fn) {}
  Buffer(Buffer&& other) noexcept { swap(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    Buffer moved(std::move(other));
    swap(moved);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (data_ != nullptr && free_ != nullptr) free_(data_, bytes_);
  }

  void* data() const { return data_; }
  float* f32() const { return static_cast<float*>(data_); }
  size_t bytes() const { return bytes_; }
  bool empty() const { return data_ == nullptr; }

 private:
  void swap(Buffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    std::swap(free_, other.free_);
  }

  void* data_ = nullptr;
  size_t bytes_ = 0;
  FreeFn free_ = nullptr;
};

}  // namespace kvmesh
