// Emulated cub::DeviceSegmentedRadixSort::SortPairsDescending over DoubleBuffers: a stable sort
// of each segment by the radix order of the keys (+0 and -0 equal; NaN by its bits), issued on
// the stream like any kernel (so it is captured into graphs); items outside segments untouched.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>
#include "emulated_device.h"
namespace cub {
template <typename T>
struct DoubleBuffer {
  T* d_buffers[2];
  int selector = 0;
  DoubleBuffer(T* a, T* b) : d_buffers{a, b} {}
  T* Current() { return d_buffers[selector]; }
  T* Alternate() { return d_buffers[selector ^ 1]; }
};
namespace detail {
inline uint32_t radix_key(float f) {
  if (f == 0.0f) f = 0.0f;
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
}  // namespace detail
struct DeviceSegmentedRadixSort {
  template <typename V, typename BeginIt, typename EndIt>
  static cudaError_t SortPairsDescending(void* temp, size_t& temp_bytes, DoubleBuffer<float>& keys,
                                         DoubleBuffer<V>& values, int num_items, int num_segments,
                                         BeginIt begins, EndIt ends, int begin_bit = 0, int end_bit = 32,
                                         cudaStream_t stream = 0) {
    const size_t need = 4096 + static_cast<size_t>(num_segments) * 16;
    if (temp == nullptr) { temp_bytes = need; return cudaSuccess; }
    if (temp_bytes < need || begin_bit != 0 || end_bit != 32 || num_items < 0) return cudaErrorInvalidValue;
    ::cuemu::check_device_range(temp, temp_bytes, "sort temp storage");
    const float* kin = keys.Current(); float* kout = keys.Alternate();
    const V* vin = values.Current(); V* vout = values.Alternate();
    keys.selector ^= 1; values.selector ^= 1;
    ::cuemu::launch_closure(::cuemu::Cfg(dim3(1), dim3(1), 0, stream), [=]() {
      if (::cuemu::linear_tid() != 0 || ::cuemu::b_idx.x != 0) return;
      for (int s = 0; s < num_segments; ++s) {
        const int b = begins[s], e = ends[s];
        if (e <= b) continue;
        if (b < 0 || e > num_items) ::cuemu::fail("segmented sort: segment outside the items");
        std::vector<int> order(e - b);
        std::iota(order.begin(), order.end(), b);
        std::stable_sort(order.begin(), order.end(), [&](int x, int y) {
          return detail::radix_key(kin[x]) > detail::radix_key(kin[y]);
        });
        for (int i = 0; i < e - b; ++i) { kout[b + i] = kin[order[i]]; vout[b + i] = vin[order[i]]; }
      }
    });
    return cudaGetLastError();
  }
};
}  // namespace cub
