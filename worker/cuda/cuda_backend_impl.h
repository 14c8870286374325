// CudaBackend: each Backend op as kernel launches (or a cuBLAS call) on one compute stream. Errors
// are sticky: the first one is kept, later ops do nothing, status() reports it. Host arrays
// (tokens, slots, block tables, row lists) are staged through pinned memory. Ops may be recorded
// into CUDA graphs (cuda_graphs.h); an error while recording only fails that recording.
// Internal to worker/cuda: its ops are defined in cuda_backend.cpp (memory, weights, embedding,
// the head's rows), cuda_batch_ops.cpp (a batch's staged layout, KV writes, attention) and
// cuda_products.cpp (the matrix products).
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "worker/backend.h"
#include "worker/cuda/cuda_backend.h"
#include "worker/cuda/cuda_check.h"
#include "worker/cuda/cuda_graphs.h"
#include "worker/cuda/device_page_memory.h"
#include "worker/cuda/fused_gemm.h"
#include "worker/cuda/gemm.h"
#include "worker/cuda/host_staging.h"
#include "worker/cuda/kernels.h"
#include "worker/cuda/layout/staged_batch.h"
#include "worker/cuda/op_timeline.h"
#include "worker/cuda/row_sampler.h"

namespace kvmesh {

// A tensor dtype as the kernels take it (f32, f16, bf16); others are an error.
Result<KernelDType> kernel_dtype(DType dtype);

class CudaBackend final : public Backend {
 public:
  ~CudaBackend() override {
    if (stream_ != nullptr) {
      (void)cudaSetDevice(device_);
      (void)cudaStreamSynchronize(stream_);
    }
    // Members holding device memory or events go before the stream.
    timeline_.reset();
    graphs_.reset();
    fused_.reset();
    gemm_.reset();
    pages_.reset();
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  }

  Status init(int device, DType weight_dtype, const CudaBackendOptions& options) {
    device_ = device;
    few_rows_kernel_ = options.few_rows_kernel;
    KVMESH_ASSIGN_OR_RETURN(weight_dtype_, kernel_dtype(weight_dtype));
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    cudaDeviceProp prop{};
    KVMESH_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
    name_ = "cuda:" + std::to_string(device_) + " " + prop.name;
    KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                                "cudaStreamCreate (compute)");
    graphs_ = std::make_unique<CudaGraphs>();
    timeline_ = std::make_unique<OpTimeline>(device_, stream_);
    gemm_ = std::make_unique<Gemm>();
    KVMESH_RETURN_IF_ERROR(gemm_->init(stream_));
    if (options.fused_epilogues) {
      fused_ = std::make_unique<FusedGemm>();
      KVMESH_RETURN_IF_ERROR(fused_->init(stream_));
    }
    KVMESH_ASSIGN_OR_RETURN(pages_, make_device_page_memory(device_, stream_));
    const size_t arrival_bytes = static_cast<size_t>(kMaxSplitPairs) * sizeof(int32_t);
    KVMESH_ASSIGN_OR_RETURN(arrivals_, alloc(arrival_bytes));
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(arrivals_.data(), 0, arrival_bytes, stream_),
                                "zeroing the attention splits' counters");
    if (options.overlap_launches) {
      const char* why = "";
      overlap_ = launch_overlap_works(stream_, &why);
      if (!overlap_) std::fprintf(stderr, "kvmesh: %s: kernels launched one after another: %s\n", name_.c_str(), why);
    }
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
    return Buffer(p, bytes, [](void* q, size_t) { (void)cudaFree(q); });
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    const TimedOp timed = time_op("upload");
    if (enter()) note(staging_.upload(dst, src, bytes, stream_));
  }
  void download(void* dst, const void* src, size_t bytes) override {
    const TimedOp timed = time_op("download");
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
  Status error_so_far() override { return error_; }  // each op's launch or copy was checked as issued
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
    const TimedOp timed = time_op("layer_norm");
    KernelDType od;
    if (enter() && activation_dtype(out, &od))
      check(launch_layer_norm(x.f32(), w.f32(), b.f32(), eps, x.dim(0), x.dim(1), out.data, od, on_stream()),
            "layer_norm");
  }
  void add_bias_residual_layer_norm(TensorView x, TensorView y, const TensorView& b, const TensorView& ln_w,
                                    const TensorView& ln_b, float eps, TensorView out) override {
    const TimedOp timed = time_op("bias + residual + layer_norm");
    KernelDType od;
    if (enter() && activation_dtype(out, &od))
      check(launch_residual_layer_norm(x.f32(), y.f32(), b.f32(), ln_w.f32(), ln_b.f32(), eps, x.dim(0),
                                       x.dim(1), out.data, od, on_stream()),
            "bias + residual + layer_norm");
  }
  void linear(const TensorView& x, const TensorView& w, const TensorView* b, TensorView out) override;
  void linear_act(const TensorView& x, const TensorView& w, const TensorView& b, Activation act,
                  TensorView out) override;
  void activation(TensorView x, Activation act) override {
    const TimedOp timed = time_op("activation");
    if (enter())
      check(launch_bias_act(x.f32(), nullptr, static_cast<int>(act), 1, x.numel(), on_stream()), "activation");
  }
  void add(TensorView x, const TensorView& y) override {
    const TimedOp timed = time_op("add");
    if (enter()) check(launch_bias_residual(x.f32(), y.f32(), nullptr, 1, x.numel(), on_stream()), "add");
  }
  void add_bias(TensorView x, const TensorView& b) override {
    const TimedOp timed = time_op("bias");
    if (enter())
      check(launch_bias_act(x.f32(), b.f32(), kNoActivation, x.dim(0), x.dim(1), on_stream()), "bias");
  }
  void add_bias_residual(TensorView x, TensorView y, const TensorView& b) override {
    const TimedOp timed = time_op("bias + residual");
    if (enter())
      check(launch_bias_residual(x.f32(), y.f32(), b.f32(), x.dim(0), x.dim(1), on_stream()),
            "bias + residual");
  }
  void kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool) override;
  void attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool,
                 TensorView out, const AttentionSpec& spec = {}) override;
  // A batch of decode rows only (one token per sequence): the attention kernel writes each row's K
  // and V itself (one launch fewer per layer); other batches: kv_write, then attention.
  void kv_write_attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool,
                          TensorView out, const AttentionSpec& spec = {}) override;
  void lm_head(const TensorView& x, const TensorView& wte, TensorView logits) override;
  void gather_rows(const TensorView& x, const std::vector<int32_t>& rows, TensorView out) override;
  void row_stats(const TensorView& logits, RowStats* stats) override;
  void sample_rows(const TensorView& logits, const std::vector<RowDraw>& draws, RowSample* out) override {
    const TimedOp timed = time_op("sample_rows");
    if (enter()) note(sampler_.sample(*this, staging_, stream_, logits, draws, out));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    const TimedOp timed = time_op("copy");
    if (enter() && bytes > 0 && dst != src)
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copy");
  }
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
               size_t rows) override {
    const TimedOp timed = time_op("copy_2d");
    if (enter() && width > 0 && rows > 0)
      check(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDeviceToDevice, stream_),
            "copy_2d");
  }
  bool can_capture() const override { return true; }
  bool captures_collectives() const override { return true; }  // NCCL on the compute stream
  Status begin_capture(int key) override {
    if (!enter()) return error_;
    capture_error_ = Status::ok();
    const Status begun = graphs_->begin(stream_, key);
    if (!begun.is_ok()) note_earlier_fault();
    return error_.is_ok() ? begun : error_;
  }
  Status end_capture() override {
    if (!graphs_->recording()) return internal_error("end_capture without begin_capture");
    (void)cudaSetDevice(device_);
    const Status ended = graphs_->end(capture_error_);
    if (!ended.is_ok()) note_earlier_fault();
    return error_.is_ok() ? ended : error_;
  }
  Status replay(int key) override {
    const TimedOp timed = time_op("graph replay");
    if (!enter()) return error_;
    note(graphs_->launch(key, stream_));
    return error_;
  }
  void copy_pages(KvPoolView pool, const std::vector<std::pair<int32_t, int32_t>>& moves) override {
    const TimedOp timed = time_op("copy_pages");
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
  // A staged batch: its layout's host array and where it sits on the device.
  struct DeviceBatch {
    StagedBatch staged;
    const int32_t* meta = nullptr;  // staged.host on the device
  };
  // The op's device time when op timing is on (op_timeline.h); k x n: a product's shape.
  TimedOp time_op(const char* op, int64_t k = 0, int64_t n = 0, double weight_bytes = 0.0) {
    return TimedOp(*timeline_, graphs_->recording(), op, k, n, weight_bytes);
  }
  // Makes the device current on this thread; false when an earlier error stopped the backend.
  bool enter() {
    if (!error_.is_ok()) return false;
    return check(cudaSetDevice(device_), "cudaSetDevice");
  }
  bool check(cudaError_t err, const char* what) { return note(cuda_status(err, what)); }
  // After a failed recording (not recording any more): capture calls also return the errors of
  // earlier asynchronous work, and such a fault (sticky) is the backend's, not the recording's.
  void note_earlier_fault() {
    const cudaError_t q = cudaStreamQuery(stream_);
    if (q != cudaSuccess && q != cudaErrorNotReady) check(q, "device work before a graph recording");
  }
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
  // attention's launches; write_own_kv: the row kernel also writes each row's K and V (decode
  // rows only, no prefill tiles).
  void attend(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool, TensorView out,
              const AttentionSpec& spec, bool write_own_kv);
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
  // What was staged for batch, staging it first when the last batch staged was another; null
  // when the backend has stopped on an error or nothing is staged.
  const DeviceBatch* staged_for(const BatchLayout& batch);
  // A product's weights as the narrow dtype its operands take; false (error noted) for fp32.
  bool weight_operand_dtype(const TensorView& w, const char* what, KernelDType* wd);
  // Whether out [n, cols] = x [n, k] @ w fits together, w [k, cols] (or [cols, k] when
  // transposed, the LM head) and the bias, when given, [cols]; false (error noted) otherwise, since a
  // device product would read or write past its buffers instead of failing.
  bool product_shapes(const TensorView& x, const TensorView& w, const TensorView* b, const TensorView& out,
                      bool transposed, const char* what);
  // out = x @ w, shapes checked by the caller (linear, linear_act).
  void matmul(const TensorView& x, const TensorView& w, TensorView out);
  // out = epilogue(x @ w + b) as one cuBLASLt product; false, with nothing issued, when fused
  // products are off or cuBLASLt has none for this one (true too when it noted an error).
  bool fused_product(const TensorView& x, const TensorView& w, const TensorView& b, Epilogue epilogue,
                     const TensorView& out, KernelDType out_dtype);
  // out = act(x @ w + b) (b may be null) by the few-rows kernel; false, with nothing issued, when it
  // is off or does not serve the shape (true too when it noted an error).
  bool few_rows_product(const TensorView& x, const TensorView& w, const TensorView* b, int act,
                        const TensorView& out, KernelDType out_dtype);

  int device_ = 0;
  bool few_rows_kernel_ = true;  // products and LM heads of up to kFewRowsMax rows by the few-rows kernels
  bool overlap_ = false;         // kvmesh's kernels launched to overlap the kernel before them
  // The compute stream as kvmesh's launchers take it.
  KernelStream on_stream() const { return KernelStream(stream_, overlap_); }
  std::string name_;
  KernelDType weight_dtype_ = KernelDType::bf16;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CudaGraphs> graphs_;
  std::unique_ptr<OpTimeline> timeline_;
  std::unique_ptr<Gemm> gemm_;
  std::unique_ptr<FusedGemm> fused_;  // null: bias and activations run as kernels of their own
  std::unique_ptr<PageMemory> pages_;
  HostStaging staging_;
  Status error_;
  Status capture_error_;  // the first error of the graph being recorded
  DeviceBatch batch_;  // the batch staged last, or none (meta null)
  Buffer meta_;                           // an eager batch's device copy
  std::map<int32_t, Buffer> graph_meta_;  // by padded_rows: a fixed address per graph shape
  Buffer ids_;        // [2T] tokens then positions, or [R] row indices
  std::vector<int32_t> ids_host_;  // the embedding's tokens then positions, uploaded in one copy
  Buffer narrow_;     // activations narrowed for a matrix product
  Buffer wide_;       // a product's fp32 result before it is written narrow
  Buffer partial_;    // attention split partials
  Buffer product_partial_;  // the few-rows products' chunk sums
  Buffer arrivals_;   // attention splits' and few-rows products' counters: kMaxSplitPairs int32, zero between launches
  Buffer stats_;      // row_stats results [3R]
  RowSampler sampler_;  // sample_rows: its scratch and staging
};

}  // namespace kvmesh
