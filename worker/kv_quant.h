// KV dtype conversion: one token row of K or V ([n_heads, head_dim]) between fp32 (what compute
// uses) and the page dtype: f32, bf16, f16, or i8 with one fp32 scale per head (absmax / 127).
#pragma once

#include <cstdint>

#include "common/tensor.h"

namespace kvmesh {

// The dtypes a KV page may hold.
bool kv_dtype_supported(DType dtype);

// Bytes one page holds for n_layers layers, block_size tokens and n_heads heads of head_dim: the
// elements in dtype, then (i8 only) the scales from the first 16-byte boundary. Same arithmetic as
// KvPoolView::page_bytes().
int64_t kv_page_bytes(DType dtype, int n_layers, int block_size, int n_heads, int head_dim);

// Writes src [n_heads, head_dim] (fp32) into dst (dtype). i8 also writes scales [n_heads]: each
// head is quantized by absmax / 127, rounding to nearest even; an all-zero head has scale 0.
void kv_store_row(DType dtype, const float* src, int n_heads, int head_dim, void* dst,
                  float* scales);

// Reads head_dim elements of one head back to fp32 (scale is used for i8 only).
void kv_load_head(DType dtype, const void* src, float scale, int head_dim, float* dst);

}  // namespace kvmesh
