// CPU backend: fp32 ops with deterministic matrix products (cpu_matmul) and OpenMP loops. The
// reference for every GPU op. Matrix weights stay fp32 (a view of the host copy) or are kept as bf16
// (half the memory and the decode traffic; widened exactly as the products load them).
#include "worker/cpu/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "common/status.h"
#include "worker/cpu/cpu_activation.h"
#include "worker/cpu/cpu_attention.h"
#include "worker/cpu/cpu_matmul.h"
#include "worker/host_memory.h"

namespace kvmesh {
namespace {

// Row `row` of a placed matrix (fp32 or bf16) added to (Add) or copied into out[0, cols).
template <bool Add>
void widen_row(const TensorView& m, int64_t row, float* out) {
  const int64_t cols = m.dim(1);
  if (m.dtype == DType::bf16) {
    const uint16_t* src = static_cast<const uint16_t*>(m.data) + row * cols;
    for (int64_t i = 0; i < cols; ++i) out[i] = (Add ? out[i] : 0.0f) + bf16_to_float(src[i]);
  } else {
    const float* src = m.f32() + row * cols;
    for (int64_t i = 0; i < cols; ++i) out[i] = Add ? out[i] + src[i] : src[i];
  }
}

const uint16_t* bf16_bits(const TensorView& t) { return static_cast<const uint16_t*>(t.data); }

class CpuBackend final : public Backend {
 public:
  CpuBackend(int n_threads, DType weight_dtype)
      : weight_dtype_(weight_dtype), pages_(make_host_page_memory()) {
    if (n_threads > 0) omp_set_num_threads(n_threads);
  }

  std::string describe() const override { return "cpu"; }
  bool host_memory() const override { return true; }
  Result<Buffer> alloc(size_t bytes) override { return alloc_host_memory(bytes, "CPU backend"); }
  void upload(void* dst, const void* src, size_t bytes) override {
    if (dst != src && bytes > 0) std::memcpy(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override {
    if (dst != src && bytes > 0) std::memcpy(dst, src, bytes);
  }
  Result<TensorView> place_weight(const std::vector<float>& host, int64_t rows, int64_t cols,
                                  bool matrix, std::vector<Buffer>* storage) override {
    if (static_cast<int64_t>(host.size()) != rows * cols)
      return internal_error("weight of " + std::to_string(host.size()) + " values placed as [" +
                            std::to_string(rows) + ", " + std::to_string(cols) + "]");
    // Weights own their memory (huge pages where large; the host copy is then dropped): bf16
    // matrices as their bits, everything else copied as it is.
    TensorView view = TensorView::of(nullptr, {rows, cols});
    if (matrix && weight_dtype_ == DType::bf16) view.dtype = DType::bf16;
    KVMESH_ASSIGN_OR_RETURN(Buffer buffer, alloc(view.nbytes()));
    view.data = buffer.data();
    const auto n = static_cast<int64_t>(host.size());
    if (view.dtype == DType::bf16) {
      auto* bits = static_cast<uint16_t*>(view.data);
#pragma omp parallel for if (n > (1 << 20))
      for (int64_t i = 0; i < n; ++i) bits[i] = float_to_bf16(host[i]);
    } else {
      float* out = view.f32();
#pragma omp parallel for if (n > (1 << 20))
      for (int64_t i = 0; i < n; ++i) out[i] = host[i];
    }
    storage->push_back(std::move(buffer));
    return view;
  }
  PageMemory& page_memory() override { return *pages_; }
  Status status() override { return Status::ok(); }

  void embed(const TensorView& wte, int64_t vocab_begin, const TensorView* wpe,
             const int32_t* tokens, const int32_t* positions, TensorView out) override {
    const int64_t n = out.dim(0), e = out.dim(1), rows = wte.dim(0);
    float* o = out.f32();
    for (int64_t t = 0; t < n; ++t) {
      const int64_t row = tokens[t] - vocab_begin;
      if (row >= 0 && row < rows) {
        widen_row<false>(wte, row, o + t * e);
      } else {
        std::fill_n(o + t * e, e, 0.0f);
      }
      if (wpe != nullptr) widen_row<true>(*wpe, positions[t], o + t * e);
    }
  }

  void layer_norm(const TensorView& x, const TensorView& w, const TensorView& b, float eps,
                  TensorView out) override {
    const int64_t n = x.dim(0), e = x.dim(1);
    const float* xs = x.f32();
    const float* ws = w.f32();
    const float* bs = b.f32();
    float* o = out.f32();
    // Threads only for enough elements: a parallel region costs more than a few small rows, and
    // far more when another process holds a core (a thread of the team then waits for a time slice).
#pragma omp parallel for if (n * e > (1 << 16))
    for (int64_t t = 0; t < n; ++t) {
      const float* row = xs + t * e;
      double mean = 0.0;
      for (int64_t i = 0; i < e; ++i) mean += row[i];
      mean /= static_cast<double>(e);
      double var = 0.0;
      for (int64_t i = 0; i < e; ++i) var += (row[i] - mean) * (row[i] - mean);
      var /= static_cast<double>(e);
      const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
      const float m = static_cast<float>(mean);
      for (int64_t i = 0; i < e; ++i) o[t * e + i] = (row[i] - m) * inv * ws[i] + bs[i];
    }
  }

  void linear(const TensorView& x, const TensorView& w, const TensorView* b, TensorView out) override {
    // x [n, in] @ w [in, outc] (+ b [outc]); each row's result is independent of n and threads.
    const float* bias = b != nullptr ? b->f32() : nullptr;
    if (w.dtype == DType::bf16)
      matmul_nn_bf16(x.f32(), x.dim(0), w.dim(0), bf16_bits(w), w.dim(1), bias, out.f32());
    else
      matmul_nn(x.f32(), x.dim(0), w.dim(0), w.f32(), w.dim(1), bias, out.f32());
  }

  void activation(TensorView x, Activation act) override {
    float* v = x.f32();
    const int64_t n = x.numel();
    constexpr int64_t kChunk = 16384;  // elements per task (a multiple of the vector width)
    const int64_t n_chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for if (n_chunks > 4)
    for (int64_t c = 0; c < n_chunks; ++c) cpu_activation(v + c * kChunk, std::min(kChunk, n - c * kChunk), act);
  }

  void add(TensorView x, const TensorView& y) override {
    float* a = x.f32();
    const float* b = y.f32();
    const int64_t n = x.numel();
    for (int64_t i = 0; i < n; ++i) a[i] += b[i];
  }

  void add_bias(TensorView x, const TensorView& b) override {
    const int64_t n = x.dim(0), e = x.dim(1);
    float* v = x.f32();
    const float* bias = b.f32();
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < e; ++i) v[t * e + i] += bias[i];
  }

  void kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                KvPoolView pool) override {
    cpu_kv_write(qkv, batch, layer, pool);
  }

  void attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool,
                 TensorView out, const AttentionSpec& spec = {}) override {
    cpu_paged_attention(qkv, batch, layer, pool, out, spec);
  }

  void lm_head(const TensorView& x, const TensorView& wte, TensorView logits) override {
    // logits [r, v] = x [r, e] @ wte [v, e]^T, independent of r and threads.
    if (wte.dtype == DType::bf16)
      matmul_nt_bf16(x.f32(), x.dim(0), x.dim(1), bf16_bits(wte), wte.dim(0), logits.f32());
    else
      matmul_nt(x.f32(), x.dim(0), x.dim(1), wte.f32(), wte.dim(0), logits.f32());
  }

  void gather_rows(const TensorView& x, const std::vector<int32_t>& rows, TensorView out) override {
    const int64_t e = x.dim(1);
    for (size_t i = 0; i < rows.size(); ++i)
      std::copy_n(x.f32() + rows[i] * e, e, out.f32() + static_cast<int64_t>(i) * e);
  }

  void row_stats(const TensorView& logits, RowStats* stats) override {
    const int64_t r = logits.dim(0), v = logits.dim(1);
    // Rows are independent: one thread each (each row's sum runs in the same order whatever the threads).
#pragma omp parallel for schedule(static, 1) if (r > 1)
    for (int64_t i = 0; i < r; ++i) {
      const float* row = logits.f32() + i * v;
      int64_t best = 0;
      for (int64_t j = 1; j < v; ++j)
        if (row[j] > row[best]) best = j;
      double sum = 0.0;
      for (int64_t j = 0; j < v; ++j) sum += std::exp(static_cast<double>(row[j]) - row[best]);
      stats[i] = {row[best], static_cast<int32_t>(best),
                  static_cast<float>(row[best] + std::log(sum))};
    }
  }

  void sample_rows(const TensorView& logits, const std::vector<RowDraw>& draws, RowSample* out) override {
    host_sample_rows(*this, logits, draws, out);
  }

  void copy(void* dst, const void* src, size_t bytes) override {
    if (dst != src && bytes > 0) std::memmove(dst, src, bytes);
  }
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
               size_t rows) override {
    for (size_t i = 0; i < rows; ++i)
      std::memmove(static_cast<uint8_t*>(dst) + i * dst_pitch, static_cast<const uint8_t*>(src) + i * src_pitch,
                   width);
  }

  void copy_pages(KvPoolView pool, const std::vector<std::pair<int32_t, int32_t>>& moves) override {
    const auto page_bytes = static_cast<size_t>(pool.page_bytes());  // i8 pages carry their scales
    for (const auto& [src, dst] : moves) {
      if (src == dst) continue;
      std::memcpy(pool.page_ptr(dst), pool.page_ptr(src), page_bytes);
    }
  }

 private:
  DType weight_dtype_;  // of matrix weights: f32 or bf16
  std::unique_ptr<PageMemory> pages_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int n_threads, DType weight_dtype) {
  return std::make_unique<CpuBackend>(n_threads, weight_dtype);
}

}  // namespace kvmesh
