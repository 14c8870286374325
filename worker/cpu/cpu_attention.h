// CPU paged attention: K/V writes into pages and causal (optionally windowed) attention over a ragged batch.
#pragma once

#include "worker/backend.h"

namespace kvmesh {

void cpu_kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool);
// Scores scaled and keys limited to a window as spec says (backend.h: AttentionSpec).
void cpu_paged_attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                         KvPoolView pool, TensorView out, const AttentionSpec& spec = {});

}  // namespace kvmesh
