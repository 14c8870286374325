// Tile loops of cpu_matmul, shared by every ISA: included inside an anonymous namespace of
// cpu_matmul_<isa>.cpp after it defines the 16-lane vector V, its ops and the tile sizes.
// Determinism: every output element is one fixed chain whatever tile computes it.
//   nn: acc = bias or 0; then acc = fma(x[t,k], w[k,n], acc) for k ascending.
//   nt: lane l: acc_l = fma(x[r,e], w[v,e], acc_l) for e = l, l+16, ... ascending; then hsum's tree.
// Tiles only decide which elements share loads; storing a partial sum to y and reloading it is exact.
// No #include here: the including file has already included what it needs before its target pragma.

constexpr int kLanes = 16;

#define KVMESH_INLINE inline __attribute__((always_inline))

// ---- nn: register tiles for many rows -------------------------------------------------------

// Rows [r0, r0 + MR) x columns [c0, c0 + 16 * NV) over all k; with Tail the last vector has n_last lanes.
template <int MR, int NV, bool Tail>
void nn_tile(const NnArgs& a, int64_t r0, int64_t c0, int n_last) {
  V acc[MR][NV];
  for (int j = 0; j < NV; ++j) {
    V b = zero();
    if (a.bias != nullptr) {
      const float* bp = a.bias + c0 + kLanes * j;
      b = (Tail && j == NV - 1) ? load_n(bp, n_last) : load(bp);
    }
    for (int i = 0; i < MR; ++i) acc[i][j] = b;
  }
  const float* xr = a.x + r0 * a.n_in;
  const float* wk = a.w + c0;
  for (int64_t k = 0; k < a.n_in; ++k, wk += a.n_out) {
    V wv[NV];
    for (int j = 0; j < NV; ++j)
      wv[j] = (Tail && j == NV - 1) ? load_n(wk + kLanes * j, n_last) : load(wk + kLanes * j);
    for (int i = 0; i < MR; ++i) {
      const V xb = bcast(xr[i * a.n_in + k]);
      for (int j = 0; j < NV; ++j) acc[i][j] = fmadd(xb, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* yr = a.y + (r0 + i) * a.n_out + c0;
    for (int j = 0; j < NV; ++j) {
      if (Tail && j == NV - 1) store_n(yr + kLanes * j, acc[i][j], n_last);
      else store(yr + kLanes * j, acc[i][j]);
    }
  }
}

// The last n_rem (< kNnRows) rows, from r0, with a tile of exactly that height.
template <int NV, bool Tail, int MR = 1>
void nn_tile_rem(const NnArgs& a, int64_t r0, int n_rem, int64_t c0, int n_last) {
  if constexpr (MR < kNnRows) {
    if (n_rem == MR) return nn_tile<MR, NV, Tail>(a, r0, c0, n_last);
    nn_tile_rem<NV, Tail, MR + 1>(a, r0, n_rem, c0, n_last);
  }
}

// All rows of one column panel; the panel stays in L2 while the row tiles pass over it.
template <int NV, bool Tail>
void nn_panel(const NnArgs& a, int64_t c0, int n_last) {
  int64_t r = 0;
  for (; r + kNnRows <= a.n_rows; r += kNnRows) nn_tile<kNnRows, NV, Tail>(a, r, c0, n_last);
  if (r < a.n_rows) nn_tile_rem<NV, Tail>(a, r, static_cast<int>(a.n_rows - r), c0, n_last);
}

// ---- nn: streaming for a few rows (decode) ----------------------------------------------------

// y[r0:r0+MR, c] = fma chain over k .. k+KS-1 for one 16-column vector (n lanes when Tail).
template <int MR, int KS, bool Tail>
KVMESH_INLINE void nn_stream_vec(const NnArgs& a, int64_t r0, const float* wk, const V (&xb)[MR][KS],
                                 int64_t c, int n) {
  V wv[KS];
  for (int s = 0; s < KS; ++s) wv[s] = Tail ? load_n(wk + s * a.n_out + c, n) : load(wk + s * a.n_out + c);
  for (int i = 0; i < MR; ++i) {
    float* yp = a.y + (r0 + i) * a.n_out + c;
    V acc = Tail ? load_n(yp, n) : load(yp);
    for (int s = 0; s < KS; ++s) acc = fmadd(xb[i][s], wv[s], acc);
    if (Tail) store_n(yp, acc, n);
    else store(yp, acc);
  }
}

// Applies k .. k+KS-1 to y[r0:r0+MR, c0:c1]: KS rows of w stream once for all MR rows.
template <int MR, int KS>
void nn_stream_step(const NnArgs& a, int64_t r0, int64_t k, int64_t c0, int64_t c1) {
  V xb[MR][KS];
  for (int i = 0; i < MR; ++i)
    for (int s = 0; s < KS; ++s) xb[i][s] = bcast(a.x[(r0 + i) * a.n_in + k + s]);
  const float* wk = a.w + k * a.n_out;
  int64_t c = c0;
  for (; c + kLanes <= c1; c += kLanes) nn_stream_vec<MR, KS, false>(a, r0, wk, xb, c, kLanes);
  if (c < c1) nn_stream_vec<MR, KS, true>(a, r0, wk, xb, c, static_cast<int>(c1 - c));
}

// Rows [r0, r0 + MR) over columns [c0, c1): y (a few KiB per row) stays in L1 while w streams.
template <int MR>
void nn_stream(const NnArgs& a, int64_t r0, int64_t c0, int64_t c1) {
  for (int64_t p0 = c0; p0 < c1; p0 += kStreamCols) {
    const int64_t p1 = p0 + kStreamCols < c1 ? p0 + kStreamCols : c1;
    for (int i = 0; i < MR; ++i) {
      float* yr = a.y + (r0 + i) * a.n_out;
      for (int64_t c = p0; c < p1; c += kLanes) {
        const int n = p1 - c < kLanes ? static_cast<int>(p1 - c) : kLanes;
        store_n(yr + c, a.bias == nullptr ? zero() : load_n(a.bias + c, n), n);
      }
    }
    int64_t k = 0;
    for (; k + kStreamDepth <= a.n_in; k += kStreamDepth) nn_stream_step<MR, kStreamDepth>(a, r0, k, p0, p1);
    for (; k < a.n_in; ++k) nn_stream_step<MR, 1>(a, r0, k, p0, p1);
  }
}

template <int MR = 1>
void nn_stream_rows(const NnArgs& a, int64_t c0, int64_t c1) {
  if constexpr (MR <= kStreamRows) {
    if (a.n_rows == MR) return nn_stream<MR>(a, 0, c0, c1);
    nn_stream_rows<MR + 1>(a, c0, c1);
  }
}

void nn_range(const NnArgs& a, int64_t c0, int64_t c1) {
  if (a.n_rows <= kStreamRows) return nn_stream_rows(a, c0, c1);
  int64_t c = c0;
  for (; c + kLanes * kNnVecs <= c1; c += kLanes * kNnVecs) nn_panel<kNnVecs, false>(a, c, kLanes);
  for (; c + kLanes <= c1; c += kLanes) nn_panel<1, false>(a, c, kLanes);
  if (c < c1) nn_panel<1, true>(a, c, static_cast<int>(c1 - c));
}

// ---- nt: dot products (LM head) ---------------------------------------------------------------

// One 16-wide step of e for an MR x NV tile; Tail loads the last n (< 16) values as zero-padded.
template <int MR, int NV, bool Tail>
KVMESH_INLINE void nt_step(const NtArgs& a, const float* xr, const float* wr, int64_t e, int n,
                           V (&acc)[MR][NV]) {
  V wv[NV];
  for (int j = 0; j < NV; ++j) wv[j] = Tail ? load_n(wr + j * a.n_embd + e, n) : load(wr + j * a.n_embd + e);
  for (int i = 0; i < MR; ++i) {
    const V xv = Tail ? load_n(xr + i * a.n_embd + e, n) : load(xr + i * a.n_embd + e);
    for (int j = 0; j < NV; ++j) acc[i][j] = fmadd(xv, wv[j], acc[i][j]);
  }
}

// Rows [r0, r0 + MR) x vocab rows [v0, v0 + NV).
template <int MR, int NV>
void nt_tile(const NtArgs& a, int64_t r0, int64_t v0) {
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = zero();
  const float* xr = a.x + r0 * a.n_embd;
  const float* wr = a.w + v0 * a.n_embd;
  int64_t e = 0;
  for (; e + kLanes <= a.n_embd; e += kLanes) nt_step<MR, NV, false>(a, xr, wr, e, kLanes, acc);
  if (e < a.n_embd) nt_step<MR, NV, true>(a, xr, wr, e, static_cast<int>(a.n_embd - e), acc);
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) a.y[(r0 + i) * a.n_vocab + v0 + j] = hsum(acc[i][j]);
}

template <int NV, int MR = 1>
void nt_tile_rem(const NtArgs& a, int64_t r0, int n_rem, int64_t v0) {
  if constexpr (MR < kNtRows) {
    if (n_rem == MR) return nt_tile<MR, NV>(a, r0, v0);
    nt_tile_rem<NV, MR + 1>(a, r0, n_rem, v0);
  }
}

// All rows against vocab rows [v0, v0 + NV): those w rows stay in L1 while the row tiles pass.
template <int NV>
void nt_panel(const NtArgs& a, int64_t v0) {
  int64_t r = 0;
  for (; r + kNtRows <= a.n_rows; r += kNtRows) nt_tile<kNtRows, NV>(a, r, v0);
  if (r < a.n_rows) nt_tile_rem<NV>(a, r, static_cast<int>(a.n_rows - r), v0);
}

void nt_range(const NtArgs& a, int64_t v0, int64_t v1) {
  int64_t v = v0;
  if (a.n_rows == 1) {
    for (; v + kNtVecsOneRow <= v1; v += kNtVecsOneRow) nt_tile<1, kNtVecsOneRow>(a, 0, v);
  } else {
    for (; v + kNtVecs <= v1; v += kNtVecs) nt_panel<kNtVecs>(a, v);
  }
  for (; v < v1; ++v) nt_panel<1>(a, v);
}

#undef KVMESH_INLINE
