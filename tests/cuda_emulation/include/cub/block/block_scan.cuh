// Emulated cub::BlockScan (ExclusiveSum, left to right).
#pragma once
#include "emulated_device.h"
namespace cub {
template <typename T, int kThreads>
class BlockScan {
 public:
  struct TempStorage { T vals[kThreads]; };
  explicit BlockScan(TempStorage& s) : s_(s) {}
  void ExclusiveSum(T in, T& out) {
    const unsigned t = ::cuemu::linear_tid();
    ::cuemu::expect_block_threads(kThreads, "BlockScan");
    s_.vals[t] = in;
    __syncthreads();
    T acc = T(0);
    for (unsigned i = 0; i < t; ++i) acc = acc + s_.vals[i];
    out = acc;
  }
 private:
  TempStorage& s_;
};
}  // namespace cub
