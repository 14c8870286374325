// Emulated cub::DeviceRadixSort::SortPairs over DoubleBuffers of unsigned integer keys: a stable
// sort of the items by key bits [begin_bit, end_bit) ascending, issued on the stream like any kernel
// (so it is captured into graphs). As CUB, it asks for temporary storage first and flips each
// buffer's selector to the one holding the result.
#pragma once
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <type_traits>
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
struct DeviceRadixSort {
  template <typename K, typename V>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, DoubleBuffer<K>& keys, DoubleBuffer<V>& values,
                               int num_items, int begin_bit = 0, int end_bit = static_cast<int>(sizeof(K) * 8),
                               cudaStream_t stream = 0) {
    static_assert(std::is_unsigned<K>::value, "the emulated sort takes unsigned integer keys");
    const size_t need = 4096 + static_cast<size_t>(num_items > 0 ? num_items : 0) / 64;
    if (temp == nullptr) {
      temp_bytes = need;
      return cudaSuccess;
    }
    if (temp_bytes < need || num_items < 0 || begin_bit < 0 || begin_bit >= end_bit ||
        end_bit > static_cast<int>(sizeof(K) * 8))
      return cudaErrorInvalidValue;
    ::cuemu::check_device_range(temp, temp_bytes, "sort temp storage");
    const K* kin = keys.Current();
    K* kout = keys.Alternate();
    const V* vin = values.Current();
    V* vout = values.Alternate();
    keys.selector ^= 1;
    values.selector ^= 1;
    const int width = end_bit - begin_bit;
    const K mask = width >= static_cast<int>(sizeof(K) * 8) ? ~K(0) : ((K(1) << width) - 1);
    ::cuemu::launch_closure(::cuemu::Cfg(dim3(1), dim3(1), 0, stream), [=]() {
      if (::cuemu::linear_tid() != 0 || ::cuemu::b_idx.x != 0) return;
      if (num_items > 0) {
        ::cuemu::check_device_range(kin, sizeof(K) * num_items, "sort keys in");
        ::cuemu::check_device_range(kout, sizeof(K) * num_items, "sort keys out");
        ::cuemu::check_device_range(vin, sizeof(V) * num_items, "sort values in");
        ::cuemu::check_device_range(vout, sizeof(V) * num_items, "sort values out");
      }
      std::vector<int> order(static_cast<size_t>(num_items));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int x, int y) {
        return ((kin[x] >> begin_bit) & mask) < ((kin[y] >> begin_bit) & mask);
      });
      for (int i = 0; i < num_items; ++i) {
        kout[i] = kin[order[i]];
        vout[i] = vin[order[i]];
      }
    });
    return cudaGetLastError();
  }
};
}  // namespace cub
