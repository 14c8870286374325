// Emulated cub::BlockReduce: the result is defined in thread 0 only, as CUB documents; other
// threads get a poisoned value so a misuse shows.
#pragma once
#include <cstring>
#include "emulated_device.h"
namespace cub {
template <typename T, int kThreads>
class BlockReduce {
 public:
  struct TempStorage { T vals[kThreads]; };
  explicit BlockReduce(TempStorage& s) : s_(s) {}
  template <typename Op>
  T Reduce(T v, Op op) {
    const unsigned t = ::cuemu::linear_tid();
    ::cuemu::expect_block_threads(kThreads, "BlockReduce");
    s_.vals[t] = v;
    __syncthreads();
    if (t == 0) {
      T r = s_.vals[0];
      for (int i = 1; i < kThreads; ++i) r = op(r, s_.vals[i]);
      return r;
    }
    T poison;
    std::memset(static_cast<void*>(&poison), 0xA5, sizeof(T));
    return poison;
  }
  T Sum(T v) { return Reduce(v, [](const T& a, const T& b) { return a + b; }); }
 private:
  TempStorage& s_;
};
}  // namespace cub
