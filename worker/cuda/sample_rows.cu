// Logits to sampling on the device: the CUDA side of Backend::sample_rows and the twin of the host
// sampler (worker/sampler.cpp). How it sorts and draws, and how exact it is: docs/gpu.md.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <climits>
#include <cstdint>

#include "common/hashing.h"
#include "worker/cuda/kernels.h"

namespace kvmesh {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 8;  // consecutive candidates per thread in a tile of the prefix sums
constexpr int32_t kTile = kThreads * kItems;
constexpr int32_t kNone = INT32_MAX;
constexpr int32_t kMaxTiles = 64;  // tile sums a row keeps (vocabularies up to 64 tiles of kTile)
constexpr int kLogitBits = 32;  // the low bits of a sort key; the row's sort slot is above them

// A logit as the low 32 bits of a sort key whose ascending order is the logits' descending one: CUB's
// radix order of floats (-0 as +0, NaN by its bits: a positive NaN first, a negative one last)
// inverted. logit_of_bits undoes it (-0 comes back as +0, equal in every use here).
__device__ __forceinline__ uint32_t descending_bits(float f) {
  if (f == 0.0f) f = 0.0f;
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  const uint32_t ascending = (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
  return ~ascending;
}
__device__ __forceinline__ float logit_of_bits(uint32_t bits) {
  const uint32_t ascending = ~bits;
  const uint32_t u = (ascending & 0x80000000u) != 0 ? (ascending ^ 0x80000000u) : ~ascending;
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}
__device__ __forceinline__ uint64_t sort_key(int32_t slot, float logit) {
  return (static_cast<uint64_t>(slot) << kLogitBits) | descending_bits(logit);
}

// One row's candidates in sample_token's order: the sorted copy's logits and ids, or (a row that
// is not sorted: a row of one) the raw row with the identity for ids.
struct Candidates {
  const uint64_t* keys;  // null: raw
  const float* raw;
  const int32_t* ids;
  __device__ __forceinline__ float logit(int32_t i) const {
    return keys != nullptr ? logit_of_bits(static_cast<uint32_t>(keys[i])) : raw[i];
  }
  __device__ __forceinline__ int32_t id(int32_t i) const { return keys != nullptr ? ids[i] : i; }
};

// counter_uniform (worker/sampler.cpp) on the device: the same splitmix64 and top 53 bits.
__device__ __forceinline__ double counter_uniform_device(uint64_t seed, int64_t position) {
  const uint64_t h = splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(position));
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

struct Best {
  float value;
  int32_t index;  // kNone: nothing seen
};

// The larger value; the lower index on ties (the host's first argmax).
struct BetterOf {
  __device__ __forceinline__ Best operator()(const Best& a, const Best& b) const {
    if (b.index == kNone) return a;
    if (a.index == kNone) return b;
    return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
  }
};
struct MinOf {
  __device__ __forceinline__ int32_t operator()(int32_t a, int32_t b) const { return b < a ? b : a; }
};
struct MaxOf {
  __device__ __forceinline__ int32_t operator()(int32_t a, int32_t b) const { return b > a ? b : a; }
};

using ReduceBest = cub::BlockReduce<Best, kThreads>;
using ReduceDouble = cub::BlockReduce<double, kThreads>;
using ReduceInt = cub::BlockReduce<int32_t, kThreads>;
using ScanDouble = cub::BlockScan<double, kThreads>;

// One block's shared memory: each CUB primitive's own storage (reused only after a barrier) and
// the slots that broadcast a result from one thread to all.
struct Shared {
  ReduceBest::TempStorage best_temp;
  ReduceDouble::TempStorage sum_temp;
  ReduceInt::TempStorage int_temp;
  ScanDouble::TempStorage scan_temp;
  Best best;
  double value;
  int32_t index;
  double tile_last;
  int32_t summed_n;  // the candidates sum_tiles summed (0: none)
  double tile_sum[kMaxTiles];
};

// sample_token's unnormalised probability of the i-th sorted candidate:
// exp(logit * (1 / T) - max_logit * (1 / T)), each product and the difference rounded on its own.
struct Probs {
  Candidates c;
  double inv_t;
  double max_l;
  __device__ __forceinline__ double operator()(int32_t i) const {
    return exp(__dsub_rn(__dmul_rn(static_cast<double>(c.logit(i)), inv_t), max_l));
  }
};

struct Found {
  int32_t index;
  double cum;
};

struct Never {
  __device__ __forceinline__ bool operator()(double) const { return false; }
};
struct AtLeast {
  double target;
  __device__ __forceinline__ bool operator()(double cum) const { return cum >= target; }
};
struct Above {
  double u;
  __device__ __forceinline__ bool operator()(double cum) const { return u < cum; }
};

// One tile of the inclusive prefix sums cum_i of probs(i): the candidates [base, min(base + kTile,
// n)) after `carry` (the cum before the tile), cum_i = carry + (earlier threads' items + own items
// up to i), so every pass over the same candidates sees the same cum_i. Returns the first i whose
// cum_i passes `hit` with that cum_i (index kNone: none does), and in *tile_last the cum of the
// tile's last candidate. Every thread of the block calls it and gets the same results.
template <typename Hit>
__device__ Found scan_tile(const Probs& probs, int32_t base, int32_t n, double carry, Hit hit, Shared& sh,
                           double* tile_last) {
  const int32_t first = base + static_cast<int32_t>(threadIdx.x) * kItems;
  double run[kItems];
  double own = 0.0;
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    if (first + j < n) own = __dadd_rn(own, probs(first + j));
    run[j] = own;
  }
  double before = 0.0;
  ScanDouble(sh.scan_temp).ExclusiveSum(own, before);
  const int32_t last = (n - base > kTile ? base + kTile : n) - 1;
  int32_t found = kNone;
  double found_cum = 0.0;
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    const int32_t i = first + j;
    if (i < n) {
      const double cum = __dadd_rn(carry, __dadd_rn(before, run[j]));
      if (found == kNone && hit(cum)) {
        found = i;
        found_cum = cum;
      }
      if (i == last) sh.tile_last = cum;
    }
  }
  const int32_t tile_hit = ReduceInt(sh.int_temp).Reduce(found, MinOf{});
  if (threadIdx.x == 0) sh.index = tile_hit;
  __syncthreads();
  const int32_t hit_at = sh.index;
  if (hit_at != kNone && found == hit_at) sh.value = found_cum;
  *tile_last = sh.tile_last;
  __syncthreads();
  const Found result{hit_at, hit_at != kNone ? sh.value : 0.0};
  __syncthreads();  // every thread has read sh before anyone writes it again
  return result;
}

// The candidates [0, n) of a row summed tile by tile (n_tiles tiles; at most kMaxTiles): tile t's
// own sum, added as scan_tile adds it, in sh.tile_sum[t]. Since carry + that sum is the cum of the
// tile's last candidate, a walk can step over a whole tile in one addition. Every thread calls it.
__device__ void sum_tiles(const Probs& probs, int32_t n, Shared& sh) {
  for (int32_t t = 0, base = 0; base < n; ++t, base += kTile) {
    double own_sum = 0.0;
    (void)scan_tile(probs, base, n, 0.0, Never{}, sh, &own_sum);  // 0 + x is x: the tile's own sum
    if (threadIdx.x == 0) sh.tile_sum[t] = own_sum;
  }
  if (threadIdx.x == 0) sh.summed_n = n;
  __syncthreads();
}

// Walks the inclusive prefix sums cum_i of probs(i) over [0, n), n >= 1, and returns the first i
// whose cum_i passes `hit` (monotone: once passed, passed for every larger cum) with that cum_i, or
// {n, cum_(n-1)} when none does. Tiles whose sum sum_tiles left (for sh.summed_n >= n, the tile
// whole under both bounds or n the summed bound itself) are stepped over in one addition when their
// last cum does not pass; the tile that passes, and any other, is scanned. The cum_i are those of a
// scan of every tile.
template <typename Hit>
__device__ Found walk(const Probs& probs, int32_t n, Hit hit, Shared& sh) {
  double carry = 0.0;  // cum of the previous tile's last candidate
  for (int32_t t = 0, base = 0; base < n; ++t, base += kTile) {
    const bool summed = t < kMaxTiles && sh.summed_n >= n && (base + kTile <= n || sh.summed_n == n);
    if (summed) {
      const double tile_last = __dadd_rn(carry, sh.tile_sum[t]);
      if (!hit(tile_last)) {
        carry = tile_last;
        continue;
      }
    }
    double tile_last = 0.0;
    const Found found = scan_tile(probs, base, n, carry, hit, sh, &tile_last);
    if (found.index != kNone) return found;
    carry = tile_last;
  }
  return {n, carry};
}

// sample_token past its greedy case, over one row's candidates sorted by (logit desc, id asc).
__device__ int32_t draw_token(const SampleDraw& d, const Candidates& c, int32_t v, Shared& sh) {
  const int32_t k = (d.top_k > 0 && d.top_k < v) ? d.top_k : v;
  const double inv_t = __ddiv_rn(1.0, static_cast<double>(d.temperature));
  const Probs probs{c, inv_t, __dmul_rn(static_cast<double>(c.logit(0)), inv_t)};
  int32_t keep = k;
  if (d.min_p > 0.0f) {
    // Keep up to the last candidate with prob >= min_p * prob(0) (at least one).
    const double floor_p = __dmul_rn(static_cast<double>(d.min_p), probs(0));
    int32_t last = -1;
    for (int32_t i = static_cast<int32_t>(threadIdx.x); i < k; i += kThreads)
      if (probs(i) >= floor_p) last = i;
    last = ReduceInt(sh.int_temp).Reduce(last, MaxOf{});
    if (threadIdx.x == 0) sh.index = last;
    __syncthreads();
    last = sh.index;
    __syncthreads();
    keep = last >= 1 ? last + 1 : 1;
  }
  // Each tile summed once: the three walks then scan only the tile each stops in.
  if (threadIdx.x == 0) sh.summed_n = 0;
  __syncthreads();
  if ((keep + kTile - 1) / kTile <= kMaxTiles) sum_tiles(probs, keep, sh);
  double kept_mass = walk(probs, keep, Never{}, sh).cum;
  if (d.top_p < 1.0f) {
    // Keep the shortest prefix whose mass reaches top_p of the kept mass.
    const Found cut = walk(probs, keep, AtLeast{__dmul_rn(static_cast<double>(d.top_p), kept_mass)}, sh);
    if (cut.index < keep) {
      keep = cut.index + 1;
      kept_mass = cut.cum;
    }
  }
  const double u = __dmul_rn(counter_uniform_device(d.seed, d.position), kept_mass);
  const Found pick = walk(probs, keep, Above{u}, sh);
  const int32_t at = pick.index < keep ? pick.index : keep - 1;
  return c.id(at);
}

// edited_logit (worker/sampler.cpp) on the device, each step rounded on its own as on the host.
__device__ __forceinline__ float edited_logit_device(const SampleDraw& d, const LogitEdit& e, float x) {
  if ((e.flags & kEditBias) != 0) x = __fadd_rn(x, e.bias);
  if ((e.flags & kEditRepeated) != 0)
    x = x > 0 ? __fdiv_rn(x, d.repetition_penalty) : __fmul_rn(x, d.repetition_penalty);
  if (e.output_count > 0)
    x = __fsub_rn(x, __fadd_rn(__fmul_rn(d.frequency_penalty, static_cast<float>(e.output_count)),
                               d.presence_penalty));
  if ((e.flags & kEditBanned) != 0) x = -INFINITY;
  return x;
}

// Each sorted row's edits on its copy of the logits (tokens are distinct, so no two threads touch
// one key).  grid: r
__global__ void edit_keys_kernel(const SampleDraw* draws, const LogitEdit* edits, int64_t v, uint64_t* keys) {
  const int64_t row = blockIdx.x;
  const SampleDraw d = draws[row];
  if (d.sort_slot < 0) return;
  for (int32_t i = static_cast<int32_t>(threadIdx.x); i < d.n_edits; i += static_cast<int32_t>(blockDim.x)) {
    const LogitEdit e = edits[d.edit_begin + i];
    if (e.token < 0 || e.token >= v) continue;
    uint64_t& key = keys[d.sort_slot * v + e.token];
    key = sort_key(d.sort_slot, edited_logit_device(d, e, logit_of_bits(static_cast<uint32_t>(key))));
  }
}

// The top n_top of a raw row by (logit descending, id ascending), NaNs left out, as position_logprobs
// orders them: round j takes the block's best of the logits after round j - 1's pick.
__device__ void top_of_raw_row(const float* row, int32_t v, int32_t n_top, double log_z, SampleOut& o,
                               Shared& sh) {
  Best prev{0.0f, kNone};
  for (int32_t j = 0; j < n_top; ++j) {
    Best mine{0.0f, kNone};
    for (int32_t i = static_cast<int32_t>(threadIdx.x); i < v; i += kThreads) {
      const float x = row[i];
      const bool after_prev = prev.index == kNone || x < prev.value || (x == prev.value && i > prev.index);
      if (!isnan(x) && after_prev && (mine.index == kNone || x > mine.value)) mine = {x, i};
    }
    const Best reduced = ReduceBest(sh.best_temp).Reduce(mine, BetterOf{});
    if (threadIdx.x == 0) sh.best = reduced;
    __syncthreads();
    prev = sh.best;
    __syncthreads();
    if (prev.index == kNone) prev = {0.0f, 0};  // fewer numbers than n_top: a row of NaNs
    if (threadIdx.x == 0) {
      o.top_ids[j] = prev.index;
      o.top_logprobs[j] = static_cast<float>(static_cast<double>(row[prev.index]) - log_z);
    }
  }
}

// Keys and ids of the rows taking part in the sort, at their sort slots.  grid: (r, column blocks)
__global__ void prepare_sort_kernel(const float* logits, int64_t v, const SampleDraw* draws, uint64_t* keys,
                                    int32_t* ids) {
  const int64_t row = blockIdx.x;
  const int32_t slot = draws[row].sort_slot;
  if (slot < 0) return;
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; i < v;
       i += static_cast<int64_t>(gridDim.y) * blockDim.x) {
    keys[slot * v + i] = sort_key(slot, logits[row * v + i]);
    ids[slot * v + i] = static_cast<int32_t>(i);
  }
}

// One block per row.
__global__ void __launch_bounds__(kThreads)
    sample_rows_kernel(const float* logits, int32_t v, const SampleDraw* draws,
                       const uint64_t* sorted_keys, const int32_t* sorted_ids, SampleOut* out) {
  __shared__ Shared sh;
  const int64_t r = blockIdx.x;
  const SampleDraw d = draws[r];
  const float* row = logits + r * v;

  // The first argmax and the log-sum-exp of the raw logits, as log_softmax takes them.
  // NaNs as the host's argmax sees them: a NaN first logit is the argmax (nothing compares greater),
  // a later one never is; the log-sum-exp's max is over the numbers (as log_softmax's std::max).
  Best mine{0.0f, kNone};
  for (int32_t i = static_cast<int32_t>(threadIdx.x); i < v; i += kThreads) {
    const float x = row[i];
    if ((mine.index == kNone && !isnan(x)) || x > mine.value) mine = {x, i};  // strictly greater: first index
  }
  const Best reduced = ReduceBest(sh.best_temp).Reduce(mine, BetterOf{});
  if (threadIdx.x == 0) {
    sh.best = reduced;
    if (isnan(row[0]) || reduced.index == kNone) sh.best.index = 0;
  }
  __syncthreads();
  const Best best = sh.best;
  const double max_v = static_cast<double>(best.value);
  double sum = 0.0;
  for (int32_t i = static_cast<int32_t>(threadIdx.x); i < v; i += kThreads)
    sum += exp(static_cast<double>(row[i]) - max_v);
  sum = ReduceDouble(sh.sum_temp).Sum(sum);
  if (threadIdx.x == 0) sh.value = sum;
  __syncthreads();
  const double log_z = max_v + log(sh.value);
  __syncthreads();

  const bool sorted = d.sort_slot >= 0;  // else only a row of one needs candidates: itself
  const int64_t at = static_cast<int64_t>(d.sort_slot) * v;
  const Candidates c{sorted ? sorted_keys + at : nullptr, row, sorted ? sorted_ids + at : nullptr};
  const bool edited = d.n_edits > 0;
  // A greedy draw after edits: the first of the edited copy's order, the host's first argmax.
  const int32_t greedy_token = edited && sorted ? c.id(0) : best.index;
  const int32_t token = d.greedy != 0 ? greedy_token : draw_token(d, c, v, sh);

  SampleOut& o = out[r];
  const int32_t cap = v < kMaxSampleTop ? v : kMaxSampleTop;
  const int32_t n_top = d.n_top < 0 ? -1 : (d.n_top < cap ? d.n_top : cap);
  if (threadIdx.x == 0) {
    o.token = token;
    o.logprob = static_cast<float>(static_cast<double>(row[token]) - log_z);
    o.n_top = n_top;
  }
  if (edited && n_top > 0) return top_of_raw_row(row, v, n_top, log_z, o, sh);
  const int32_t j = static_cast<int32_t>(threadIdx.x);
  if (j < n_top) {
    o.top_ids[j] = c.id(j);
    o.top_logprobs[j] = static_cast<float>(static_cast<double>(c.logit(j)) - log_z);
  }
}

// The sort's key bits for n_sorted rows: the logit's 32 and as many as the highest slot needs.
int sort_end_bit(int64_t n_sorted) {
  int bits = kLogitBits;
  for (int64_t top = n_sorted - 1; top > 0; top >>= 1) ++bits;
  return bits;
}

}  // namespace

cudaError_t sample_rows_temp_bytes(int64_t n_sorted, int64_t v, size_t* bytes) {
  *bytes = 0;
  if (n_sorted <= 0 || v <= 0) return cudaSuccess;
  if (n_sorted * v > INT32_MAX) return cudaErrorInvalidValue;
  cub::DoubleBuffer<uint64_t> keys(nullptr, nullptr);
  cub::DoubleBuffer<int32_t> ids(nullptr, nullptr);
  return cub::DeviceRadixSort::SortPairs(nullptr, *bytes, keys, ids, static_cast<int>(n_sorted * v), 0,
                                         sort_end_bit(n_sorted));
}

cudaError_t launch_sample_rows(const float* logits, int64_t r, int64_t v, const SampleDraw* draws,
                               const LogitEdit* edits, int64_t n_sorted, const SampleScratch& scratch,
                               SampleOut* out, cudaStream_t stream) {
  if (r <= 0) return cudaSuccess;
  if (v <= 0 || v > INT32_MAX || r > INT32_MAX || n_sorted < 0 || n_sorted > r) return cudaErrorInvalidValue;
  const uint64_t* sorted_keys = nullptr;
  const int32_t* sorted_ids = nullptr;
  if (n_sorted > 0) {
    // Storage smaller than sample_rows_temp_bytes says: the sort's own cudaErrorInvalidValue.
    if (n_sorted * v > INT32_MAX || scratch.temp == nullptr) return cudaErrorInvalidValue;
    const int64_t col_blocks = (v + kThreads - 1) / kThreads;
    const dim3 grid(static_cast<unsigned>(r), static_cast<unsigned>(col_blocks < 32 ? col_blocks : 32));
    prepare_sort_kernel<<<grid, kThreads, 0, stream>>>(logits, v, draws, scratch.keys[0], scratch.ids[0]);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    if (edits != nullptr) {
      edit_keys_kernel<<<static_cast<unsigned>(r), kThreads, 0, stream>>>(draws, edits, v, scratch.keys[0]);
      err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    cub::DoubleBuffer<uint64_t> keys(scratch.keys[0], scratch.keys[1]);
    cub::DoubleBuffer<int32_t> ids(scratch.ids[0], scratch.ids[1]);
    size_t temp_bytes = scratch.temp_bytes;
    err = cub::DeviceRadixSort::SortPairs(scratch.temp, temp_bytes, keys, ids, static_cast<int>(n_sorted * v), 0,
                                          sort_end_bit(n_sorted), stream);
    if (err != cudaSuccess) return err;
    sorted_keys = keys.Current();
    sorted_ids = ids.Current();
  }
  sample_rows_kernel<<<static_cast<unsigned>(r), kThreads, 0, stream>>>(
      logits, static_cast<int32_t>(v), draws, sorted_keys, sorted_ids, out);
  return cudaGetLastError();
}

}  // namespace kvmesh
