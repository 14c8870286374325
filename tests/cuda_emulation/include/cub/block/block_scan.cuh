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
    if (::cuemu::b_dim.x * ::cuemu::b_dim.y * ::cuemu::b_dim.z != kThreads) ::cuemu::fail("BlockScan: block size differs from its template");
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
