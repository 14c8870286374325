// Tile loops of cpu_matmul, shared by every ISA: included inside an anonymous namespace of
// cpu_matmul_<isa>.cpp after it defines the 16-lane vector V, its ops (load_w / load_w_n widen a
// weight element, float or bf16 bits, to fp32 exactly) and the tile sizes. Every loop is a template
// over the weight element W; only the loads of w see it.
// Determinism: every output element is one fixed chain whatever tile computes it.
//   nn: acc = bias or 0; then acc = fma(x[t,k], w[k,n], acc) for k ascending.
//   nt: lane l: acc_l = fma(x[r,e], w[v,e], acc_l) for e = l, l+16, ... ascending; then hsum's
//   tree.
// Tiles only decide which elements share loads; storing a partial sum to y and reloading it is
// exact. No #include here: the including file has already included what it needs before its target
// pragma.

constexpr int kLanes = 16;

#define KVMESH_INLINE inline __attribute__((always_inline))

KVMESH_INLINE int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
KVMESH_INLINE int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// Weight loads: fp32 as is; bf16 bits widened by the ISA's load_bf16 (16 lanes; a tail goes
// through a zero-padded copy, as the masked loads do for fp32).
KVMESH_INLINE V load_w(const float* p) { return load(p); }
KVMESH_INLINE V load_w_n(const float* p, int n) { return load_n(p, n); }
KVMESH_INLINE V load_w(const uint16_t* p) { return load_bf16(p); }
KVMESH_INLINE V load_w_n(const uint16_t* p, int n) {
  uint16_t lanes[kLanes] = {};
  for (int l = 0; l < n; ++l) lanes[l] = p[l];
  return load_bf16(lanes);
}

// Weight elements per 64-byte cache line: the stride of the prefetch loops.
template <class W>
constexpr int64_t kLineElems = 64 / static_cast<int64_t>(sizeof(W));

// ---- nn: packed register tiles for many rows (prefill) ---------------------------------------
// w is copied block by block (kc rows of k x some columns: square blocks for many rows, slabs of
// whole rows of the range for few) into panels of kPanelCols columns, [depth][16 * nv] each,
// zero-padded, so tiles read it sequentially from L1/L2 while the next block is prefetched.
// Tiles broadcast x from its rows in place, except where rows lie a multiple of 4 KiB apart
// (n_in a multiple of 1024, as the MLP's second product): there every row of a tile would fall in
// one L1 set, so each chunk of kXChunkTiles row tiles has its k block copied first, rows one
// 64-byte line more than the block apart (kXPadFloats).
// Between k blocks the partial sums rest in y; reloading a stored float is exact.

constexpr int64_t kPanelCols = kLanes * kNnVecs;
constexpr int64_t kXChunkTiles = 16;
constexpr int64_t kXPadFloats = 16;
static_assert(kNnVecs == 1 || kNnVecs == 2, "nn_panel_rows dispatches on 1 or 2 vectors");
static_assert(kPackCols % kPanelCols == 0 && kPackDepth * kPackCols <= kNnScratchFloats,
              "pack size");
static_assert(kSlabMaxCols % kPanelCols == 0 && kSlabMaxCols * 8 <= kNnScratchFloats, "slab size");
static_assert(kXChunkTiles * kNnRows * (kPackDepth + kXPadFloats) <= kNnXScratchFloats, "x chunk size");

// One packed panel of w over one chunk of packed rows of x, and the rows of the next k block of
// the same columns that this chunk prefetches.
template <class W>
struct Panel {
  const float* packed;  // [depth][16 * nv], zero-padded
  int64_t k0, depth;    // k range [k0, k0 + depth)
  int64_t c0, cols;     // columns [c0, c0 + cols), cols <= kPanelCols
  const float* xs;      // x[r, k0 + k] of rows [r0, r1) at xs[(r - r0) * x_stride + k]
  int64_t x_stride;
  int64_t r0, r1;
  const W* next;        // &w[k0 + depth, c0], or null on the last k block
  int64_t next_begin, next_end;  // rows of the next k block this chunk prefetches
};

// Brings rows [k_begin, k_end) of the panel's next k block into L2 while this block computes.
template <class W>
KVMESH_INLINE void nn_prefetch_next(const NnArgsOf<W>& a, const Panel<W>& p, int64_t k_begin,
                                    int64_t k_end) {
  if (p.next == nullptr) return;
  for (int64_t k = k_begin; k < imin(k_end, p.next_end); ++k)
    for (int64_t j = 0; j < p.cols; j += kLineElems<W>)
      __builtin_prefetch(p.next + k * a.n_out + j, 0, 2);
}

// Rows [r0, r0 + MR) x one panel (NV vectors, the last with n_last lanes when Tail): starts from
// bias or 0 on the first k block, else from the partial sums in y.
template <int MR, int NV, bool Tail, class W>
void nn_tile(const NnArgsOf<W>& a, const Panel<W>& p, int64_t r0, int n_last) {
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i) {
    const float* src = p.k0 > 0            ? a.y + (r0 + i) * a.n_out + p.c0
                       : a.bias == nullptr ? nullptr
                                           : a.bias + p.c0;
    for (int j = 0; j < NV; ++j) {
      if (src == nullptr)
        acc[i][j] = zero();
      else
        acc[i][j] =
            (Tail && j == NV - 1) ? load_n(src + kLanes * j, n_last) : load(src + kLanes * j);
    }
  }
  const float* xr = p.xs + (r0 - p.r0) * p.x_stride;
  const float* wk = p.packed;
  for (int64_t k = 0; k < p.depth; ++k, wk += kLanes * NV) {
    V wv[NV];
    for (int j = 0; j < NV; ++j) wv[j] = load(wk + kLanes * j);
    for (int i = 0; i < MR; ++i) {
      const V xb = bcast(xr[i * p.x_stride + k]);
      for (int j = 0; j < NV; ++j) acc[i][j] = fmadd(xb, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* yr = a.y + (r0 + i) * a.n_out + p.c0;
    for (int j = 0; j < NV; ++j) {
      if (Tail && j == NV - 1)
        store_n(yr + kLanes * j, acc[i][j], n_last);
      else
        store(yr + kLanes * j, acc[i][j]);
    }
  }
}

// The last n_rem (< kNnRows) rows, from r0, with a tile of exactly that height.
template <int NV, bool Tail, int MR = 1, class W>
void nn_tile_rem(const NnArgsOf<W>& a, const Panel<W>& p, int64_t r0, int n_rem, int n_last) {
  if constexpr (MR < kNnRows) {
    if (n_rem == MR) return nn_tile<MR, NV, Tail>(a, p, r0, n_last);
    nn_tile_rem<NV, Tail, MR + 1>(a, p, r0, n_rem, n_last);
  }
}

// The chunk's rows over one panel; each row tile also prefetches its share of the chunk's rows of
// the next k block.
template <int NV, bool Tail, class W>
void nn_panel_rows(const NnArgsOf<W>& a, const Panel<W>& p, int n_last) {
  const int64_t n_tiles = (p.r1 - p.r0 + kNnRows - 1) / kNnRows;
  const int64_t share = (p.next_end - p.next_begin + n_tiles - 1) / n_tiles;
  int64_t r = p.r0, k = p.next_begin;
  for (; r + kNnRows <= p.r1; r += kNnRows, k += share) {
    nn_prefetch_next(a, p, k, k + share);
    nn_tile<kNnRows, NV, Tail>(a, p, r, n_last);
  }
  if (r < p.r1) {
    nn_prefetch_next(a, p, k, k + share);
    nn_tile_rem<NV, Tail>(a, p, r, static_cast<int>(p.r1 - r), n_last);
  }
}

template <class W>
void nn_panel(const NnArgsOf<W>& a, const Panel<W>& p) {
  const int nv = static_cast<int>((p.cols + kLanes - 1) / kLanes);
  const int n_last = static_cast<int>(p.cols - kLanes * (nv - 1));
  if (nv == kNnVecs) {
    if (n_last < kLanes) return nn_panel_rows<kNnVecs, true>(a, p, n_last);
    return nn_panel_rows<kNnVecs, false>(a, p, n_last);
  }
  if (n_last < kLanes) return nn_panel_rows<1, true>(a, p, n_last);
  nn_panel_rows<1, false>(a, p, n_last);
}

// buf <- w[k0:k0+depth, c0:c1] as panels of kPanelCols columns (panel p at p * kc * kPanelCols).
template <class W>
void nn_pack(const NnArgsOf<W>& a, int64_t k0, int64_t depth, int64_t kc, int64_t c0, int64_t c1,
             float* buf) {
  for (int64_t k = 0; k < depth; ++k) {
    const W* row = a.w + (k0 + k) * a.n_out;
    for (int64_t c = c0; c < c1; c += kPanelCols) {
      const int64_t cols = imin(kPanelCols, c1 - c);
      const int64_t nv = (cols + kLanes - 1) / kLanes;
      float* dst = buf + (c - c0) * kc + k * kLanes * nv;
      for (int64_t j = 0; j < nv; ++j) {
        const int64_t n = imin(kLanes, cols - kLanes * j);
        store(dst + kLanes * j, n == kLanes ? load_w(row + c + kLanes * j)
                                            : load_w_n(row + c + kLanes * j, static_cast<int>(n)));
      }
    }
  }
}

// xs <- x[r0:r1, k0:k0+depth], row r at xs + (r - r0) * stride.
template <class W>
void nn_copy_x(const NnArgsOf<W>& a, int64_t r0, int64_t r1, int64_t k0, int64_t depth, int64_t stride,
               float* xs) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* src = a.x + r * a.n_in + k0;
    float* dst = xs + (r - r0) * stride;
    for (int64_t k = 0; k < depth; ++k) dst[k] = src[k];
  }
}

// Columns [c0, c1) for all rows, kc values of k at a time; (c1 - c0) * kc fits in buf, a chunk of
// copied rows of x in xs.
template <class W>
void nn_block(const NnArgsOf<W>& a, int64_t c0, int64_t c1, int64_t kc, float* buf, float* xs) {
  const bool copy_x = a.n_in % 1024 == 0;
  const int64_t chunk_rows = copy_x ? kXChunkTiles * kNnRows : a.n_rows;
  const int64_t n_chunks = (a.n_rows + chunk_rows - 1) / chunk_rows;
  for (int64_t k0 = 0; k0 < a.n_in; k0 += kc) {
    const int64_t depth = imin(kc, a.n_in - k0);
    nn_pack(a, k0, depth, kc, c0, c1, buf);
    const int64_t next_k0 = k0 + depth;
    const int64_t next_depth = imin(kc, a.n_in - next_k0);
    const int64_t x_stride = copy_x ? depth + kXPadFloats : a.n_in;
    for (int64_t chunk = 0; chunk < n_chunks; ++chunk) {
      const int64_t r0 = chunk * chunk_rows, r1 = imin(r0 + chunk_rows, a.n_rows);
      if (copy_x) nn_copy_x(a, r0, r1, k0, depth, x_stride, xs);
      for (int64_t c = c0; c < c1; c += kPanelCols) {
        const Panel<W> p{buf + (c - c0) * kc,
                         k0,
                         depth,
                         c,
                         imin(kPanelCols, c1 - c),
                         copy_x ? xs : a.x + r0 * a.n_in + k0,
                         x_stride,
                         r0,
                         r1,
                         next_k0 < a.n_in ? a.w + next_k0 * a.n_out + c : nullptr,
                         next_depth * chunk / n_chunks,
                         next_depth * (chunk + 1) / n_chunks};
        nn_panel(a, p);
      }
    }
  }
}

// ---- nn: streaming for a few rows (decode) ----------------------------------------------------

// y[r0:r0+MR, c] = fma chain over k .. k+KS-1 for one 16-column vector (n lanes when Tail).
template <int MR, int KS, bool Tail, class W>
KVMESH_INLINE void nn_stream_vec(const NnArgsOf<W>& a, int64_t r0, const W* wk,
                                 const V (&xb)[MR][KS], int64_t c, int n) {
  V wv[KS];
  for (int s = 0; s < KS; ++s)
    wv[s] = Tail ? load_w_n(wk + s * a.n_out + c, n) : load_w(wk + s * a.n_out + c);
  for (int i = 0; i < MR; ++i) {
    float* yp = a.y + (r0 + i) * a.n_out + c;
    V acc = Tail ? load_n(yp, n) : load(yp);
    for (int s = 0; s < KS; ++s) acc = fmadd(xb[i][s], wv[s], acc);
    if (Tail)
      store_n(yp, acc, n);
    else
      store(yp, acc);
  }
}

// Applies k .. k+KS-1 to y[r0:r0+MR, c0:c1]: KS rows of w stream once for all MR rows.
template <int MR, int KS, class W>
void nn_stream_step(const NnArgsOf<W>& a, int64_t r0, int64_t k, int64_t c0, int64_t c1) {
  V xb[MR][KS];
  for (int i = 0; i < MR; ++i)
    for (int s = 0; s < KS; ++s) xb[i][s] = bcast(a.x[(r0 + i) * a.n_in + k + s]);
  const W* wk = a.w + k * a.n_out;
  // The next step's KS rows, line by line while this step computes: more lines in flight than
  // the demand loads alone keep (bf16 spends more instructions per byte than fp32).
  const W* ahead = k + 2 * KS <= a.n_in ? wk + KS * a.n_out : nullptr;
  int64_t c = c0;
  for (; c + kLanes <= c1; c += kLanes) {
    if (ahead != nullptr && (c - c0) % kLineElems<W> == 0)
      for (int s = 0; s < KS; ++s) __builtin_prefetch(ahead + s * a.n_out + c, 0, 2);
    nn_stream_vec<MR, KS, false>(a, r0, wk, xb, c, kLanes);
  }
  if (c < c1) nn_stream_vec<MR, KS, true>(a, r0, wk, xb, c, static_cast<int>(c1 - c));
}

// Rows [r0, r0 + MR) over columns [c0, c1): y (kStreamFloats in all) stays in L1 while w streams.
template <int MR, class W>
void nn_stream(const NnArgsOf<W>& a, int64_t r0, int64_t c0, int64_t c1) {
  constexpr int64_t kCols = kStreamFloats / MR / kLanes * kLanes;
  for (int64_t p0 = c0; p0 < c1; p0 += kCols) {
    const int64_t p1 = p0 + kCols < c1 ? p0 + kCols : c1;
    for (int i = 0; i < MR; ++i) {
      float* yr = a.y + (r0 + i) * a.n_out;
      for (int64_t c = p0; c < p1; c += kLanes) {
        const int n = p1 - c < kLanes ? static_cast<int>(p1 - c) : kLanes;
        store_n(yr + c, a.bias == nullptr ? zero() : load_n(a.bias + c, n), n);
      }
    }
    int64_t k = 0;
    for (; k + kStreamDepth <= a.n_in; k += kStreamDepth)
      nn_stream_step<MR, kStreamDepth>(a, r0, k, p0, p1);
    for (; k < a.n_in; ++k) nn_stream_step<MR, 1>(a, r0, k, p0, p1);
  }
}

template <int MR = 1, class W>
void nn_stream_rows(const NnArgsOf<W>& a, int64_t c0, int64_t c1) {
  if constexpr (MR <= kStreamRows) {
    if (a.n_rows == MR) return nn_stream<MR>(a, 0, c0, c1);
    nn_stream_rows<MR + 1>(a, c0, c1);
  }
}

template <class W>
void nn_range(const NnArgsOf<W>& a, int64_t c0, int64_t c1, float* scratch) {
  if (a.n_rows <= kStreamRows) return nn_stream_rows(a, c0, c1);
  // Few rows: w dominates the traffic, so it is packed in slabs of whole rows of the range, read
  // sequentially. Many rows: square blocks keep the y reloads between k blocks rare.
  int64_t cols = kPackCols, kc = kPackDepth;
  if (a.n_rows <= kSlabMaxRows) {
    cols = imin(c1 - c0, kSlabMaxCols);
    kc = imin(kPackDepth, kNnScratchFloats / cols / 8 * 8);
  }
  for (int64_t b = c0; b < c1; b += cols)
    nn_block(a, b, imin(b + cols, c1), kc, scratch, scratch + kNnScratchFloats);
}

// ---- nt: dot products (LM head) ---------------------------------------------------------------

// One 16-wide step of e for an MR x NV tile; Tail loads the last n (< 16) values as zero-padded.
template <int MR, int NV, bool Tail, class W>
KVMESH_INLINE void nt_step(const NtArgsOf<W>& a, const float* xr, const W* wr, int64_t e, int n,
                           V (&acc)[MR][NV]) {
  V wv[NV];
  for (int j = 0; j < NV; ++j)
    wv[j] = Tail ? load_w_n(wr + j * a.n_embd + e, n) : load_w(wr + j * a.n_embd + e);
  for (int i = 0; i < MR; ++i) {
    const V xv = Tail ? load_n(xr + i * a.n_embd + e, n) : load(xr + i * a.n_embd + e);
    for (int j = 0; j < NV; ++j) acc[i][j] = fmadd(xv, wv[j], acc[i][j]);
  }
}

// Rows [r0, r0 + MR) x vocab rows [v0, v0 + NV). It also brings n_prefetch elements of w from
// `prefetch` on into L2 (a share of the vocab rows that come next), spread evenly over its steps
// of e, so that the loads stay in flight beside the arithmetic rather than in one burst.
template <int MR, int NV, class W>
void nt_tile(const NtArgsOf<W>& a, int64_t r0, int64_t v0, const W* prefetch = nullptr,
             int64_t n_prefetch = 0) {
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = zero();
  const float* xr = a.x + r0 * a.n_embd;
  const W* wr = a.w + v0 * a.n_embd;
  const int64_t n_steps = imax(1, a.n_embd / kLanes);
  const int64_t per_step = (n_prefetch / n_steps + kLineElems<W>) / kLineElems<W> * kLineElems<W>;
  int64_t e = 0, f = 0;
  for (; e + kLanes <= a.n_embd; e += kLanes) {
    for (const int64_t f_end = imin(f + per_step, n_prefetch); f < f_end; f += kLineElems<W>)
      __builtin_prefetch(prefetch + f, 0, 2);
    nt_step<MR, NV, false>(a, xr, wr, e, kLanes, acc);
  }
  if (e < a.n_embd) nt_step<MR, NV, true>(a, xr, wr, e, static_cast<int>(a.n_embd - e), acc);
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) a.y[(r0 + i) * a.n_vocab + v0 + j] = hsum(acc[i][j]);
}

template <int NV, int MR = 1, class W>
void nt_tile_rem(const NtArgsOf<W>& a, int64_t r0, int n_rem, int64_t v0, const W* prefetch,
                 int64_t n_prefetch) {
  if constexpr (MR < kNtRows) {
    if (n_rem == MR) return nt_tile<MR, NV>(a, r0, v0, prefetch, n_prefetch);
    nt_tile_rem<NV, MR + 1>(a, r0, n_rem, v0, prefetch, n_prefetch);
  }
}

// All rows against vocab rows [v0, v0 + NV): those w rows stay in L1 while the row tiles pass,
// and each row tile prefetches its share of the next NV rows (contiguous) into L2.
template <int NV, class W>
void nt_panel(const NtArgsOf<W>& a, int64_t v0) {
  const int64_t n_next = imin(NV, a.n_vocab - v0 - NV);
  const int64_t n_elems = n_next > 0 ? n_next * a.n_embd : 0;
  const W* next = a.w + imin(v0 + NV, a.n_vocab) * a.n_embd;
  const int64_t n_tiles = (a.n_rows + kNtRows - 1) / kNtRows;
  const int64_t share = (n_elems + n_tiles - 1) / n_tiles;
  int64_t f = 0;
  for (int64_t r = 0; r < a.n_rows; r += kNtRows, f += share) {
    const W* mine = next + imin(f, n_elems);
    const int64_t n_mine = imax(0, imin(share, n_elems - f));
    if (r + kNtRows <= a.n_rows)
      nt_tile<kNtRows, NV>(a, r, v0, mine, n_mine);
    else
      nt_tile_rem<NV>(a, r, static_cast<int>(a.n_rows - r), v0, mine, n_mine);
  }
}

template <class W>
void nt_range(const NtArgsOf<W>& a, int64_t v0, int64_t v1) {
  int64_t v = v0;
  if (a.n_rows == 1) {
    for (; v + kNtVecsOneRow <= v1; v += kNtVecsOneRow)
      nt_tile<1, kNtVecsOneRow>(a, 0, v, a.w + (v + kNtVecsOneRow) * a.n_embd,
                                imax(0, imin(kNtVecsOneRow, a.n_vocab - v - kNtVecsOneRow)) * a.n_embd);
  } else {
    for (; v + kNtVecs <= v1; v += kNtVecs) nt_panel<kNtVecs>(a, v);
  }
  for (; v < v1; ++v) nt_panel<1>(a, v);
}

#undef KVMESH_INLINE
