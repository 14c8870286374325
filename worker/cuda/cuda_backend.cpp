// CudaBackend: each Backend op as kernel launches (or a cuBLAS call) on one compute stream. Errors
// are sticky: the first one is kept, later ops do nothing, status() reports it. Host arrays
// (tokens, slots, block tables, row lists) are staged through pinned memory. Ops may be recorded
// into CUDA graphs (cuda_graphs.h); an error while recording only fails that recording.
#include "worker/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "worker/cuda/cuda_check.h"
#include "worker/cuda/device_page_memory.h"
#include "worker/cuda/cuda_graphs.h"
#include "worker/cuda/gemm.h"
#include "worker/cuda/host_staging.h"
#include "worker/cuda/kernels.h"
#include "worker/cuda/row_sampler.h"

namespace kvmesh {
namespace {

constexpr int32_t kKeysPerSplit = 256;  // context positions one attention block takes when split
constexpr int32_t kMinTiledRows = 16;   // a prefill chunk this long goes to the tiled attention

Result<KernelDType> kernel_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32: return KernelDType::f32;
    case DType::f16: return KernelDType::f16;
    case DType::bf16: return KernelDType::bf16;
    default:
      return invalid_argument(std::string("dtype ") + dtype_name(dtype) +
                              " is not supported by the CUDA backend (use f32, f16 or bf16)");
  }
}

// The local rank among the processes of this node, from the MPI launchers' environment.
int local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK",
                           "SLURM_LOCALID", "LOCAL_RANK"}) {
    if (const char* v = std::getenv(name)) return std::atoi(v);
  }
  return 0;
}

class CudaBackend final : public Backend {
 public:
  ~CudaBackend() override {
    if (stream_ != nullptr) {
      (void)cudaSetDevice(device_);
      (void)cudaStreamSynchronize(stream_);
    }
    // Members holding device memory go before the stream.
    graphs_.reset();
    gemm_.reset();
    pages_.reset();
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  }

  Status init(int device, DType weight_dtype) {
    device_ = device;
    KVMESH_ASSIGN_OR_RETURN(weight_dtype_, kernel_dtype(weight_dtype));
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    cudaDeviceProp prop{};
    KVMESH_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
    name_ = "cuda:" + std::to_string(device_) + " " + prop.name;
    KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                                "cudaStreamCreate (compute)");
    graphs_ = std::make_unique<CudaGraphs>();
    gemm_ = std::make_unique<Gemm>();
    KVMESH_RETURN_IF_ERROR(gemm_->init(stream_));
    KVMESH_ASSIGN_OR_RETURN(pages_, make_device_page_memory(device_, stream_));
    return Status::ok();
  }

  // ---- Memory ----
  std::string describe() const override { return name_; }
  bool host_memory() const override { return false; }
  Result<Buffer> alloc(size_t bytes) override {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    void* p = nullptr;
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes > 0 ? bytes : 1),
                                ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
    return Buffer(p, bytes, [](void* q) { (void)cudaFree(q); });
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    if (enter()) note(staging_.upload(dst, src, bytes, stream_));
  }
  void download(void* dst, const void* src, size_t bytes) override {
    if (!enter() || bytes == 0) return;
    if (check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "download"))
      check(cudaStreamSynchronize(stream_), "download");
  }
  Result<TensorView> place_weight(const std::vector<float>& host, int64_t rows, int64_t cols,
                                  bool matrix, std::vector<Buffer>* storage) override;
  PageMemory& page_memory() override { return *pages_; }
  Status status() override {
    if (enter()) check(cudaStreamSynchronize(stream_), "device work");
    return error_;
  }
  void* native_stream() override { return stream_; }
  void prepare_batch(const BatchLayout& batch) override;

  // ---- Ops ----
  void embed(const TensorView& wte, int64_t vocab_begin, const TensorView* wpe, const int32_t* tokens,
             const int32_t* positions, TensorView out) override;
  DType matmul_input_dtype() const override {
    return weight_dtype_ == KernelDType::f16 ? DType::f16 : DType::bf16;
  }
  void layer_norm(const TensorView& x, const TensorView& w, const TensorView& b, float eps,
                  TensorView out) override {
    KernelDType od;
    if (enter() && activation_dtype(out, &od))
      check(launch_layer_norm(x.f32(), w.f32(), b.f32(), eps, x.dim(0), x.dim(1), out.data, od, stream_),
            "layer_norm");
  }
  void add_bias_residual_layer_norm(TensorView x, TensorView y, const TensorView& b, const TensorView& ln_w,
                                    const TensorView& ln_b, float eps, TensorView out) override {
    KernelDType od;
    if (enter() && activation_dtype(out, &od))
      check(launch_residual_layer_norm(x.f32(), y.f32(), b.f32(), ln_w.f32(), ln_b.f32(), eps, x.dim(0),
                                       x.dim(1), out.data, od, stream_),
            "bias + residual + layer_norm");
  }
  void linear(const TensorView& x, const TensorView& w, const TensorView* b, TensorView out) override {
    matmul(x, w, out);
    if (b != nullptr && enter())
      check(launch_bias_act(out.f32(), b->f32(), kNoActivation, out.dim(0), out.dim(1), stream_), "bias");
  }
  // out fp32: the product, then bias + activation in place; out narrow (the next product's
  // operand): the product into fp32 scratch, then bias + activation written narrow.
  void linear_act(const TensorView& x, const TensorView& w, const TensorView& b, Activation act,
                  TensorView out) override {
    KernelDType od;
    if (!enter() || !activation_dtype(out, &od)) return;
    TensorView product = out;
    if (od != KernelDType::f32) {
      product.dtype = DType::f32;
      product.data = scratch(wide_, static_cast<size_t>(out.numel()) * sizeof(float));
      if (product.data == nullptr) return;
    }
    matmul(x, w, product);
    if (enter())
      check(launch_bias_act_into(product.f32(), b.f32(), static_cast<int>(act), out.dim(0), out.dim(1), out.data,
                                 od, stream_),
            "bias + activation");
  }
  void activation(TensorView x, Activation act) override {
    if (enter())
      check(launch_bias_act(x.f32(), nullptr, static_cast<int>(act), 1, x.numel(), stream_), "activation");
  }
  void add(TensorView x, const TensorView& y) override {
    if (enter()) check(launch_bias_residual(x.f32(), y.f32(), nullptr, 1, x.numel(), stream_), "add");
  }
  void add_bias(TensorView x, const TensorView& b) override {
    if (enter())
      check(launch_bias_act(x.f32(), b.f32(), kNoActivation, x.dim(0), x.dim(1), stream_), "bias");
  }
  void add_bias_residual(TensorView x, TensorView y, const TensorView& b) override {
    if (enter())
      check(launch_bias_residual(x.f32(), y.f32(), b.f32(), x.dim(0), x.dim(1), stream_),
            "bias + residual");
  }
  void kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool) override;
  void attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool,
                 TensorView out) override;
  void lm_head(const TensorView& x, const TensorView& wte, TensorView logits) override;
  void gather_rows(const TensorView& x, const std::vector<int32_t>& rows, TensorView out) override;
  void row_stats(const TensorView& logits, RowStats* stats) override;
  void sample_rows(const TensorView& logits, const std::vector<RowDraw>& draws, RowSample* out) override {
    if (enter()) note(sampler_.sample(*this, staging_, stream_, logits, draws, out));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (enter() && bytes > 0 && dst != src)
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copy");
  }
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
               size_t rows) override {
    if (enter() && width > 0 && rows > 0)
      check(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDeviceToDevice, stream_),
            "copy_2d");
  }
  bool can_capture() const override { return true; }
  bool captures_collectives() const override { return true; }  // NCCL on the compute stream
  Status begin_capture(int key) override {
    if (!enter()) return error_;
    capture_error_ = Status::ok();
    return graphs_->begin(stream_, key);
  }
  Status end_capture() override {
    if (!graphs_->recording()) return internal_error("end_capture without begin_capture");
    (void)cudaSetDevice(device_);
    return graphs_->end(capture_error_);
  }
  Status replay(int key) override {
    if (!enter()) return error_;
    note(graphs_->launch(key, stream_));
    return error_;
  }
  void copy_pages(KvPoolView pool, const std::vector<std::pair<int32_t, int32_t>>& moves) override {
    if (!enter()) return;
    const auto bytes = static_cast<size_t>(pool.page_bytes());
    for (const auto& [src, dst] : moves) {
      if (src == dst) continue;
      if (!check(cudaMemcpyAsync(pool.page_ptr(dst), pool.page_ptr(src), bytes,
                                 cudaMemcpyDeviceToDevice, stream_),
                 "copy_pages"))
        return;
    }
  }

 private:
  // Makes the device current on this thread; false when an earlier error stopped the backend.
  bool enter() {
    if (!error_.is_ok()) return false;
    return check(cudaSetDevice(device_), "cudaSetDevice");
  }
  bool check(cudaError_t err, const char* what) { return note(cuda_status(err, what)); }
  // Keeps the first error: the backend's (sticky), or the recording's while a graph is recorded.
  bool note(const Status& s) {
    if (s.is_ok()) return true;
    Status& first = graphs_ != nullptr && graphs_->recording() ? capture_error_ : error_;
    if (first.is_ok()) first = Status(s.code(), name_ + ": " + s.message());
    return false;
  }
  // Device scratch of at least `bytes`, or null (error noted); while recording, the graph's own.
  void* scratch(Buffer& buffer, size_t bytes) {
    if (graphs_->recording()) {
      auto p = graphs_->scratch(&buffer, bytes);
      return note(p.status()) ? *p : nullptr;
    }
    if (!note(reserve(*this, &buffer, bytes))) return nullptr;
    return buffer.data();
  }
  bool pool_geometry(const KvPoolView& pool, KvPoolGeometry* g);
  // An activation's dtype: fp32, or the weights' (a matrix product's narrow operand); else an error.
  bool activation_dtype(const TensorView& t, KernelDType* out) {
    if (t.dtype == DType::f32 || t.dtype == matmul_input_dtype()) {
      *out = t.dtype == DType::f32 ? KernelDType::f32 : weight_dtype_;
      return true;
    }
    return note(invalid_argument(std::string("activations in ") + dtype_name(t.dtype) +
                                 " (the CUDA backend takes f32 or its weights' dtype)"));
  }
  // x as the narrow operand of a matrix product: itself when already narrow, else cast into narrow_.
  const void* narrow_operand(const TensorView& x, KernelDType wd);
  bool ensure_staged(const BatchLayout& batch);
  void matmul(const TensorView& x, const TensorView& w, TensorView out);

  int device_ = 0;
  std::string name_;
  KernelDType weight_dtype_ = KernelDType::bf16;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CudaGraphs> graphs_;
  std::unique_ptr<Gemm> gemm_;
  std::unique_ptr<PageMemory> pages_;
  HostStaging staging_;
  Status error_;
  Status capture_error_;  // the first error of the graph being recorded
  // Staged batch: [slots R | row_ctx R | row_table R | block tables ...] int32 on the device, R the
  // rows the ops run (padded_rows for a graph's layout).
  const BatchLayout* staged_ = nullptr;
  size_t staged_tokens_ = 0;
  int64_t staged_rows_ = 0;
  int32_t staged_max_ctx_ = 0;
  const int32_t* staged_meta_ = nullptr;
  int64_t n_tiles_ = 0, tiles_at_ = 0;    // prefill tiles (4 int32 each) staged at meta + tiles_at_
  int64_t n_listed_ = 0, listed_at_ = 0;  // the rows outside tiles, at meta + listed_at_
  std::vector<int32_t> meta_host_;
  Buffer meta_;
  std::map<int32_t, Buffer> graph_meta_;  // by padded_rows: a fixed address per graph shape
  Buffer ids_;        // [2T] tokens then positions, or [R] row indices
  Buffer narrow_;     // activations narrowed for a matrix product
  Buffer wide_;       // a product's fp32 result before it is written narrow
  Buffer partial_;    // attention split partials
  Buffer stats_;      // row_stats results [3R]
  RowSampler sampler_;  // sample_rows: its scratch and staging
};

Result<TensorView> CudaBackend::place_weight(const std::vector<float>& host, int64_t rows, int64_t cols,
                                             bool matrix, std::vector<Buffer>* storage) {
  if (static_cast<int64_t>(host.size()) != rows * cols)
    return internal_error("weight of " + std::to_string(host.size()) + " values placed as [" +
                          std::to_string(rows) + ", " + std::to_string(cols) + "]");
  const KernelDType kd = matrix ? weight_dtype_ : KernelDType::f32;
  const DType dtype = kd == KernelDType::f16 ? DType::f16 : kd == KernelDType::bf16 ? DType::bf16 : DType::f32;
  const size_t bytes = host.size() * dtype_size(dtype);
  KVMESH_ASSIGN_OR_RETURN(Buffer buffer, alloc(bytes));
  if (dtype == DType::f32) {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMemcpy(buffer.data(), host.data(), bytes, cudaMemcpyHostToDevice),
                                "uploading a weight");
  } else {
    std::vector<uint16_t> narrow(host.size());
    for (size_t i = 0; i < host.size(); ++i)
      narrow[i] = dtype == DType::bf16 ? float_to_bf16(host[i]) : float_to_half(host[i]);
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMemcpy(buffer.data(), narrow.data(), bytes, cudaMemcpyHostToDevice),
                                "uploading a weight");
  }
  TensorView view = TensorView::of(buffer.f32(), {rows, cols});
  view.dtype = dtype;
  storage->push_back(std::move(buffer));
  return view;
}

void CudaBackend::prepare_batch(const BatchLayout& batch) {
  if (!enter()) return;
  if (graphs_->recording()) {
    note(internal_error("a batch staged while a graph is recorded"));
    return;
  }
  const auto n_tokens = static_cast<int64_t>(batch.positions.size());
  const bool graph = batch.padded_rows > 0;
  if (batch.block_size < 1 || (graph && (batch.padded_rows < n_tokens || batch.max_context < 1))) {
    note(invalid_argument("a batch layout without its block size, or padded below its rows"));
    return;
  }
  const int64_t t = graph ? batch.padded_rows : n_tokens;
  meta_host_.assign(static_cast<size_t>(3 * t), 0);
  std::fill(meta_host_.begin(), meta_host_.begin() + t, -1);  // padded rows write no slot
  int32_t max_ctx = 0;
  for (const SeqSpan& span : batch.seqs) {
    const int32_t table_at = static_cast<int32_t>(meta_host_.size());
    const int32_t n_ctx_end = span.n_past + span.n_tokens;
    for (int32_t i = 0; i < span.n_tokens; ++i) {
      const int64_t row = span.token_begin + i;
      meta_host_[static_cast<size_t>(t + row)] = span.n_past + i + 1;  // causal: itself included
      meta_host_[static_cast<size_t>(2 * t + row)] = table_at;
    }
    max_ctx = std::max(max_ctx, n_ctx_end);
    const int32_t n_pages = (n_ctx_end + batch.block_size - 1) / batch.block_size;
    meta_host_.insert(meta_host_.end(), span.block_table, span.block_table + n_pages);
  }
  for (int64_t row = 0; row < n_tokens; ++row) meta_host_[static_cast<size_t>(row)] = batch.slots[row];
  // Eager batches: long prefill chunks in tiles for the tiled attention, the other rows listed.
  n_tiles_ = 0;
  n_listed_ = 0;
  if (!graph) {
    std::vector<int32_t> listed;
    tiles_at_ = static_cast<int64_t>(meta_host_.size());
    for (size_t k = 0; k < batch.seqs.size(); ++k) {
      const SeqSpan& span = batch.seqs[k];
      if (span.n_tokens < kMinTiledRows) {
        for (int32_t i = 0; i < span.n_tokens; ++i) listed.push_back(span.token_begin + i);
        continue;
      }
      const int32_t table_at = meta_host_[static_cast<size_t>(2 * t + span.token_begin)];
      for (int32_t i = 0; i < span.n_tokens; i += kPrefillTileRows) {
        const int32_t rows = std::min(kPrefillTileRows, span.n_tokens - i);
        meta_host_.insert(meta_host_.end(), {span.token_begin + i, rows, span.n_past + i, table_at});
        ++n_tiles_;
      }
    }
    listed_at_ = static_cast<int64_t>(meta_host_.size());
    n_listed_ = static_cast<int64_t>(listed.size());
    meta_host_.insert(meta_host_.end(), listed.begin(), listed.end());
  }
  void* dst = nullptr;
  if (graph) {
    if (max_ctx > batch.max_context) {
      note(invalid_argument("a context of " + std::to_string(max_ctx) + " past the graph bound of " +
                            std::to_string(batch.max_context)));
      return;
    }
    // Sized for the worst case once, so the address a graph recorded never moves.
    const int64_t pages_per_row = (batch.max_context + batch.block_size - 1) / batch.block_size;
    Buffer& fixed = graph_meta_[batch.padded_rows];
    dst = scratch(fixed, static_cast<size_t>(t * (3 + pages_per_row)) * sizeof(int32_t));
    max_ctx = batch.max_context;
  } else {
    dst = scratch(meta_, meta_host_.size() * sizeof(int32_t));
  }
  if (dst == nullptr) return;
  if (!note(staging_.upload(dst, meta_host_.data(), meta_host_.size() * sizeof(int32_t), stream_))) return;
  staged_ = &batch;
  staged_tokens_ = batch.positions.size();
  staged_rows_ = t;
  staged_max_ctx_ = max_ctx;
  staged_meta_ = static_cast<const int32_t*>(dst);
}

bool CudaBackend::ensure_staged(const BatchLayout& batch) {
  if (staged_ != &batch || staged_tokens_ != batch.positions.size()) prepare_batch(batch);
  return error_.is_ok() && staged_meta_ != nullptr;
}

bool CudaBackend::pool_geometry(const KvPoolView& pool, KvPoolGeometry* g) {
  auto dtype = kernel_dtype(pool.dtype);
  if (!dtype.is_ok()) return note(dtype.status().with_context("KV pages"));
  if (pool.head_dim < 1 || pool.head_dim > kMaxHeadDim)
    return note(invalid_argument("head_dim " + std::to_string(pool.head_dim) + " outside [1, " +
                                 std::to_string(kMaxHeadDim) + "] for the CUDA attention kernel"));
  g->data = pool.data;
  g->dtype = *dtype;
  g->page_elems = pool.page_elems();
  g->block_size = pool.block_size;
  g->n_heads = pool.n_heads;
  g->head_dim = pool.head_dim;
  return true;
}

void CudaBackend::embed(const TensorView& wte, int64_t vocab_begin, const TensorView* wpe,
                        const int32_t* tokens, const int32_t* positions, TensorView out) {
  if (!enter()) return;
  const int64_t n = out.dim(0), e = out.dim(1);
  auto wte_dtype = kernel_dtype(wte.dtype);
  auto wpe_dtype = kernel_dtype(wpe != nullptr ? wpe->dtype : DType::f32);
  if (!note(wte_dtype.status()) || !note(wpe_dtype.status())) return;
  auto* ids = static_cast<int32_t*>(scratch(ids_, static_cast<size_t>(2 * n) * sizeof(int32_t)));
  if (ids == nullptr) return;
  if (!note(staging_.upload(ids, tokens, static_cast<size_t>(n) * sizeof(int32_t), stream_))) return;
  if (!note(staging_.upload(ids + n, positions, static_cast<size_t>(n) * sizeof(int32_t), stream_))) return;
  check(launch_embed(wte.data, *wte_dtype, wte.dim(0), vocab_begin, wpe != nullptr ? wpe->data : nullptr,
                     *wpe_dtype, ids, ids + n, n, e, out.f32(), stream_),
        "embed");
}

const void* CudaBackend::narrow_operand(const TensorView& x, KernelDType wd) {
  KernelDType xd;
  if (!activation_dtype(x, &xd)) return nullptr;
  if (xd == wd) return x.data;
  const int64_t n = x.numel();
  void* xn = scratch(narrow_, static_cast<size_t>(n) * 2);
  if (xn == nullptr) return nullptr;
  if (!check(launch_cast(x.f32(), xn, wd, n, stream_), "narrowing activations")) return nullptr;
  return xn;
}

void CudaBackend::matmul(const TensorView& x, const TensorView& w, TensorView out) {
  if (!enter()) return;
  auto wd = kernel_dtype(w.dtype);
  if (!note(wd.status())) return;
  if (*wd == KernelDType::f32) {
    note(invalid_argument("the CUDA matrix products take f16 or bf16 weights"));
    return;
  }
  if (out.dtype != DType::f32) {
    note(invalid_argument("a CUDA matrix product writes fp32 (linear_act writes narrow activations)"));
    return;
  }
  const void* xn = narrow_operand(x, *wd);
  if (xn != nullptr) note(gemm_->nn(xn, w.data, *wd, x.dim(0), x.dim(1), w.dim(1), out.f32()));
}

void CudaBackend::lm_head(const TensorView& x, const TensorView& wte, TensorView logits) {
  if (!enter()) return;
  auto wd = kernel_dtype(wte.dtype);
  if (!note(wd.status())) return;
  if (*wd == KernelDType::f32) {
    note(invalid_argument("the CUDA LM head takes an f16 or bf16 embedding"));
    return;
  }
  const void* xn = narrow_operand(x, *wd);
  if (xn != nullptr) note(gemm_->nt(xn, wte.data, *wd, x.dim(0), x.dim(1), wte.dim(0), logits.f32()));
}

void CudaBackend::kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool) {
  KvPoolGeometry g;
  if (!enter() || !ensure_staged(batch) || !pool_geometry(pool, &g)) return;
  check(launch_kv_write(qkv.f32(), staged_meta_, staged_rows_, layer, g, stream_), "kv_write");
}

void CudaBackend::attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                            KvPoolView pool, TensorView out) {
  KvPoolGeometry g;
  KernelDType od;
  if (!enter() || !ensure_staged(batch) || !pool_geometry(pool, &g) || !activation_dtype(out, &od)) return;
  const int64_t t = staged_rows_;
  const int32_t* meta = staged_meta_;
  AttentionRows rows{meta + t, meta + 2 * t, meta};
  int64_t n_rows = t;  // rows for the row-per-block kernel
  if (n_tiles_ > 0 && prefill_attention_serves(g)) {
    if (!check(launch_prefill_attention(qkv.f32(), reinterpret_cast<const PrefillTile*>(meta + tiles_at_),
                                        n_tiles_, meta, layer, g, out.data, od, stream_),
               "prefill attention"))
      return;
    rows.listed = meta + listed_at_;
    n_rows = n_listed_;
    if (n_rows == 0) return;
  }
  // Split long contexts when the rows alone would not fill the GPU.
  int32_t n_splits = 1;
  if (staged_max_ctx_ > 2 * kKeysPerSplit && n_rows * pool.n_heads < 1024)
    n_splits = std::min<int32_t>((staged_max_ctx_ + kKeysPerSplit - 1) / kKeysPerSplit, 64);
  float* partial = nullptr;
  if (n_splits > 1) {
    const size_t bytes = static_cast<size_t>(t * pool.n_heads * n_splits * (pool.head_dim + 2)) * sizeof(float);
    partial = static_cast<float*>(scratch(partial_, bytes));
    if (partial == nullptr) return;
  }
  check(launch_paged_attention(qkv.f32(), rows, n_rows, layer, g, n_splits,
                               n_splits > 1 ? kKeysPerSplit : std::max(staged_max_ctx_, 1), partial,
                               out.data, od, stream_),
        "attention");
}

void CudaBackend::gather_rows(const TensorView& x, const std::vector<int32_t>& rows, TensorView out) {
  if (!enter() || rows.empty()) return;
  const auto r = static_cast<int64_t>(rows.size());
  auto* ids = static_cast<int32_t*>(scratch(ids_, rows.size() * sizeof(int32_t)));
  if (ids == nullptr) return;
  if (!note(staging_.upload(ids, rows.data(), rows.size() * sizeof(int32_t), stream_))) return;
  check(launch_gather_rows(x.f32(), ids, r, x.dim(1), out.f32(), stream_), "gather_rows");
}

void CudaBackend::row_stats(const TensorView& logits, RowStats* stats) {
  if (!enter()) return;
  const int64_t r = logits.dim(0), v = logits.dim(1);
  if (r == 0) return;
  auto* d = static_cast<float*>(scratch(stats_, static_cast<size_t>(3 * r) * sizeof(float)));
  if (d == nullptr) return;
  auto* argmax = reinterpret_cast<int32_t*>(d + r);
  if (!check(launch_row_stats(logits.f32(), r, v, d, argmax, d + 2 * r, stream_), "row_stats")) return;
  std::vector<float> host(static_cast<size_t>(3 * r));
  download(host.data(), d, host.size() * sizeof(float));
  if (!error_.is_ok()) return;
  for (int64_t i = 0; i < r; ++i) {
    int32_t index = 0;
    std::memcpy(&index, &host[static_cast<size_t>(r + i)], sizeof(index));
    stats[i] = {host[static_cast<size_t>(i)], index, host[static_cast<size_t>(2 * r + i)]};
  }
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error so later calls start clean
    return 0;
  }
  return n;
}

Result<std::unique_ptr<Backend>> make_cuda_backend(int device, DType weight_dtype) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess || n == 0) {
    std::string why = err != cudaSuccess ? std::string(cudaGetErrorString(err)) : "no device visible";
    (void)cudaGetLastError();
    return unavailable("--device cuda: no usable CUDA GPU (" + why + ")");
  }
  if (device < 0) device = local_rank() % n;
  if (device >= n)
    return invalid_argument("CUDA device " + std::to_string(device) + " does not exist (" +
                            std::to_string(n) + " visible)");
  auto backend = std::make_unique<CudaBackend>();
  KVMESH_RETURN_IF_ERROR(backend->init(device, weight_dtype));
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace kvmesh
