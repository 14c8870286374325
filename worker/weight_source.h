// WeightSource: where a rank's weight shards come from: a checkpoint's byte ranges, or a synthetic
// model whose every element is a pure function of (seed, tensor, index), so a shard never depends
// on the layout that asks for it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"

namespace kvmesh {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The full shape of a tensor (names as HF saves them, with or without "transformer.").
  virtual Result<std::vector<int64_t>> shape(const std::string& name) const = 0;
  // Rows [r0, r1) x columns [c0, c1) of a 2-D tensor (a 1-D tensor is one row) as fp32.
  virtual Status read_f32(const std::string& name, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                          float* dst) const = 0;
  // Every tensor a checkpoint holds, as saved (none for a synthetic model, which holds what it is asked).
  virtual std::vector<std::string> tensor_names() const { return {}; }
  virtual std::string describe() const = 0;  // for messages: the checkpoint dir or the model name
  virtual uint64_t bytes_read() const = 0;   // checkpoint bytes read so far (0 for synthetic)
};

// A checkpoint directory, or "synthetic:<shape>" with config (seed picks the weights).
Result<std::unique_ptr<WeightSource>> open_weight_source(const std::string& model,
                                                         const ModelConfig& config, uint64_t seed);

}  // namespace kvmesh
