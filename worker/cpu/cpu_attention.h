// CPU paged attention: K/V writes into pages and causal attention over a ragged batch.
#pragma once

#include "worker/backend.h"

namespace kvmesh {

void cpu_kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool);
void cpu_paged_attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                         KvPoolView pool, TensorView out);

}  // namespace kvmesh
