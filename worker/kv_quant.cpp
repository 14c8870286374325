// KV dtype conversion of K/V rows (fp32 <-> f32/bf16/f16/i8). Writes round to nearest even; reads
// of f16 go through a 64 Ki-entry table so attention's inner loop stays a load and a multiply.
#include "worker/kv_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/status.h"

namespace kvmesh {
namespace {

const float* half_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = half_to_float(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

void quantize_head_i8(const float* src, int head_dim, int8_t* dst, float* scale) {
  float absmax = 0.0f;
  for (int c = 0; c < head_dim; ++c) absmax = std::max(absmax, std::fabs(src[c]));
  if (!std::isfinite(absmax)) {  // keep the non-finite value visible, as fp32 would
    *scale = std::nanf("");
    std::fill_n(dst, head_dim, static_cast<int8_t>(0));
    return;
  }
  if (absmax == 0.0f) {
    *scale = 0.0f;
    std::fill_n(dst, head_dim, static_cast<int8_t>(0));
    return;
  }
  *scale = absmax / 127.0f;
  const float inv = 127.0f / absmax;
  for (int c = 0; c < head_dim; ++c) {
    const float q = std::nearbyint(src[c] * inv);
    dst[c] = static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f));
  }
}

}  // namespace

bool kv_dtype_supported(DType dtype) {
  return dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16 || dtype == DType::i8;
}

int64_t kv_page_bytes(DType dtype, int n_layers, int block_size, int n_heads, int head_dim) {
  const int64_t rows = static_cast<int64_t>(n_layers) * 2 * block_size;
  const int64_t data = rows * n_heads * head_dim * static_cast<int64_t>(dtype_size(dtype));
  if (dtype != DType::i8) return data;
  return (data + 15) / 16 * 16 + rows * n_heads * 4;
}

void kv_store_row(DType dtype, const float* src, int n_heads, int head_dim, void* dst,
                  float* scales) {
  const int64_t n = static_cast<int64_t>(n_heads) * head_dim;
  switch (dtype) {
    case DType::f32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::bf16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(src[i]);
      return;
    }
    case DType::f16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_half(src[i]);
      return;
    }
    case DType::i8: {
      auto* d = static_cast<int8_t*>(dst);
      for (int h = 0; h < n_heads; ++h)
        quantize_head_i8(src + h * head_dim, head_dim, d + h * head_dim, scales + h);
      return;
    }
    default:
      KVMESH_CHECK_MSG(false, "unsupported KV dtype");
  }
}

void kv_load_head(DType dtype, const void* src, float scale, int head_dim, float* dst) {
  switch (dtype) {
    case DType::f32:
      std::memcpy(dst, src, static_cast<size_t>(head_dim) * 4);
      return;
    case DType::bf16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int c = 0; c < head_dim; ++c) dst[c] = bf16_to_float(s[c]);
      return;
    }
    case DType::f16: {
      const auto* s = static_cast<const uint16_t*>(src);
      const float* table = half_table();
      for (int c = 0; c < head_dim; ++c) dst[c] = table[s[c]];
      return;
    }
    case DType::i8: {
      const auto* s = static_cast<const int8_t*>(src);
      for (int c = 0; c < head_dim; ++c) dst[c] = static_cast<float>(s[c]) * scale;
      return;
    }
    default:
      KVMESH_CHECK_MSG(false, "unsupported KV dtype");
  }
}

}  // namespace kvmesh
