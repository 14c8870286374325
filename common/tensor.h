// DType and the non-owning TensorView {data, dtype, shape} passed between loaders and ops.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace kvmesh {

enum class DType : uint8_t { f32, f16, bf16, i8, i32, i64, u8 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "f32", "f16", ...
// Parses a name as used on the command line and in safetensors headers ("F32", "bf16", ...).
bool parse_dtype(std::string_view name, DType* out);

// IEEE half and bfloat16 conversions (round to nearest even).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
inline float bf16_to_float(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
uint16_t float_to_bf16(float f);

// Converts n elements of src (dtype src_dtype) to fp32.
void convert_to_f32(const void* src, DType src_dtype, float* dst, size_t n);

constexpr int kMaxRank = 4;

// Non-owning view of a dense row-major tensor.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  int rank = 0;
  std::array<int64_t, kMaxRank> shape{};

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const { return shape[i]; }
  float* f32() const { return static_cast<float*>(data); }

  static TensorView of(float* data, std::initializer_list<int64_t> dims) {
    TensorView t;
    t.data = data;
    t.dtype = DType::f32;
    for (int64_t d : dims) t.shape[t.rank++] = d;
    return t;
  }
};

std::string shape_string(const int64_t* shape, int rank);  // "[2, 3]"

}  // namespace kvmesh
