// RecordingBackend: forwards ops to the wrapped backend, or records them as calls to replay.
#include "worker/recording_backend.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace kvmesh {
namespace {

class RecordingBackend final : public Backend {
 public:
  RecordingBackend(std::unique_ptr<Backend> inner, int fail_from_key)
      : inner_(std::move(inner)), fail_from_key_(fail_from_key) {}

  std::string describe() const override { return inner_->describe() + " (recorded graphs)"; }
  bool host_memory() const override { return inner_->host_memory(); }
  Result<Buffer> alloc(size_t bytes) override { return inner_->alloc(bytes); }
  void upload(void* dst, const void* src, size_t bytes) override { inner_->upload(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { inner_->download(dst, src, bytes); }
  Result<TensorView> place_weight(const std::vector<float>& host, int64_t rows, int64_t cols, bool matrix,
                                  std::vector<Buffer>* storage) override {
    return inner_->place_weight(host, rows, cols, matrix, storage);
  }
  PageMemory& page_memory() override { return inner_->page_memory(); }
  Status status() override {
    if (!error_.is_ok()) return error_;
    return inner_->status();
  }
  Status error_so_far() override {
    if (!error_.is_ok()) return error_;
    return inner_->error_so_far();
  }
  void* native_stream() override { return inner_->native_stream(); }
  void prepare_batch(const BatchLayout& batch) override {
    if (recording_) {
      fail("a batch staged while a graph is recorded");
      return;
    }
    inner_->prepare_batch(batch);
  }

  void embed(const TensorView& wte, int64_t vocab_begin, const TensorView* wpe, const int32_t* tokens,
             const int32_t* positions, TensorView out) override {
    run([=, this] { inner_->embed(wte, vocab_begin, wpe, tokens, positions, out); });
  }
  void layer_norm(const TensorView& x, const TensorView& w, const TensorView& b, float eps,
                  TensorView out) override {
    run([=, this] { inner_->layer_norm(x, w, b, eps, out); });
  }
  void linear(const TensorView& x, const TensorView& w, const TensorView* b, TensorView out) override {
    run([=, this] { inner_->linear(x, w, b, out); });
  }
  void activation(TensorView x, Activation act) override { run([=, this] { inner_->activation(x, act); }); }
  void add(TensorView x, const TensorView& y) override { run([=, this] { inner_->add(x, y); }); }
  void add_bias(TensorView x, const TensorView& b) override { run([=, this] { inner_->add_bias(x, b); }); }
  void kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool) override {
    const BatchLayout* at = &batch;  // a recorded layout is read again, where it lives, at replay
    run([=, this] { inner_->kv_write(qkv, *at, layer, pool); });
  }
  void attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool,
                 TensorView out, const AttentionSpec& spec = {}) override {
    const BatchLayout* at = &batch;
    run([=, this] { inner_->attention(qkv, *at, layer, pool, out, spec); });
  }
  void lm_head(const TensorView& x, const TensorView& wte, TensorView logits) override {
    run([=, this] { inner_->lm_head(x, wte, logits); });
  }
  void gather_rows(const TensorView& x, const std::vector<int32_t>& rows, TensorView out) override {
    run([=, this] { inner_->gather_rows(x, rows, out); });
  }
  void linear_act(const TensorView& x, const TensorView& w, const TensorView& b, Activation act,
                  TensorView out) override {
    run([=, this] { inner_->linear_act(x, w, b, act, out); });
  }
  void add_bias_residual(TensorView x, TensorView y, const TensorView& b) override {
    run([=, this] { inner_->add_bias_residual(x, y, b); });
  }
  DType matmul_input_dtype() const override { return inner_->matmul_input_dtype(); }
  void add_bias_residual_layer_norm(TensorView x, TensorView y, const TensorView& b, const TensorView& ln_w,
                                    const TensorView& ln_b, float eps, TensorView out) override {
    run([=, this] { inner_->add_bias_residual_layer_norm(x, y, b, ln_w, ln_b, eps, out); });
  }
  void row_stats(const TensorView& logits, RowStats* stats) override {
    run([=, this] { inner_->row_stats(logits, stats); });
  }
  void sample_rows(const TensorView& logits, const std::vector<RowDraw>& draws, RowSample* out) override {
    run([=, this] { inner_->sample_rows(logits, draws, out); });
  }
  void copy_pages(KvPoolView pool, const std::vector<std::pair<int32_t, int32_t>>& moves) override {
    run([=, this] { inner_->copy_pages(pool, moves); });
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    run([=, this] { inner_->copy(dst, src, bytes); });
  }

  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
               size_t rows) override {
    run([=, this] { inner_->copy_2d(dst, dst_pitch, src, src_pitch, width, rows); });
  }
  bool can_capture() const override { return true; }
  Status begin_capture(int key) override {
    if (recording_) return internal_error("a graph is already being recorded");
    recording_ = true;
    key_ = key;
    pending_.clear();
    return Status::ok();
  }
  Status end_capture() override {
    if (!recording_) return internal_error("end_capture without begin_capture");
    recording_ = false;
    if (fail_from_key_ > 0 && key_ >= fail_from_key_) {
      pending_.clear();
      return internal_error("graph " + std::to_string(key_) + " could not be recorded (refused from key " +
                            std::to_string(fail_from_key_) + ")");
    }
    graphs_[key_] = std::move(pending_);
    pending_.clear();
    return Status::ok();
  }
  Status replay(int key) override {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) return internal_error("graph " + std::to_string(key) + " was never recorded");
    for (const auto& op : it->second) op();
    return inner_->error_so_far();
  }

 private:
  void run(std::function<void()> op) {
    if (recording_) {
      pending_.push_back(std::move(op));
    } else {
      op();
    }
  }
  void fail(const std::string& why) {
    if (error_.is_ok()) error_ = internal_error(why);
  }

  std::unique_ptr<Backend> inner_;
  int fail_from_key_;
  bool recording_ = false;
  int key_ = 0;
  std::vector<std::function<void()>> pending_;
  std::map<int, std::vector<std::function<void()>>> graphs_;
  Status error_;
};

}  // namespace

std::unique_ptr<Backend> make_recording_backend(std::unique_ptr<Backend> inner, int fail_from_key) {
  return std::make_unique<RecordingBackend>(std::move(inner), fail_from_key);
}

}  // namespace kvmesh
