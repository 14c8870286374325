// host_sample_rows (the CPU backend's sample_rows): per row exactly sample_token (after the draw's
// logit edits), log_softmax and position_logprobs, on random logits with ties, for every kind of
// draw and n_top -1..32; also through a backend whose memory is not host memory (the rows are
// downloaded first).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "sample_cases.h"
#include "worker/cpu/cpu_backend.h"

namespace kvmesh::testing {
namespace {

void expect_same(const RowSample& got, const RowSample& want, const std::string& where) {
  EXPECT_EQ(got.token, want.token) << where;
  EXPECT_EQ(got.logprobs.chosen.token, want.logprobs.chosen.token) << where;
  EXPECT_EQ(got.logprobs.chosen.logprob, want.logprobs.chosen.logprob) << where;
  ASSERT_EQ(got.logprobs.top.size(), want.logprobs.top.size()) << where;
  for (size_t j = 0; j < want.logprobs.top.size(); ++j) {
    EXPECT_EQ(got.logprobs.top[j].token, want.logprobs.top[j].token) << where << " top " << j;
    EXPECT_EQ(got.logprobs.top[j].logprob, want.logprobs.top[j].logprob) << where << " top " << j;
  }
}

// Samples `calls` batches of rows of v logits with `backend` and compares each with the host sampler
// (with logit edits on most draws when `edits`).
void check_against_host(Backend& backend, int64_t v, int calls, bool edits = false) {
  const int n_rows = 13;
  for (int call = 0; call < calls; ++call) {
    std::vector<float> logits = logits_with_ties(n_rows, v, 100 + static_cast<uint32_t>(call));
    std::vector<RowDraw> draws = draw_mix(n_rows, call);
    if (edits) add_edits(draws, logits, v, 300 + static_cast<uint32_t>(call));
    std::vector<RowSample> got(draws.size());
    backend.sample_rows(TensorView::of(logits.data(), {n_rows, v}), draws, got.data());
    ASSERT_TRUE(backend.status().is_ok());
    for (int i = 0; i < n_rows; ++i) {
      const RowSample want = host_sample(draws[i], logits.data() + i * v, static_cast<int32_t>(v));
      expect_same(got[i], want, "v " + std::to_string(v) + " call " + std::to_string(call) + " row " +
                                    std::to_string(i));
      if (draws[i].n_top < 0) {
        EXPECT_TRUE(got[i].logprobs.top.empty());
      } else {
        EXPECT_EQ(got[i].logprobs.chosen.token, got[i].token);
      }
    }
  }
}

TEST(SampleRows, DefaultIsTheHostSampler) {
  auto cpu = make_cpu_backend(1);
  check_against_host(*cpu, 50257, 2);
  check_against_host(*cpu, 1000, 6);
  check_against_host(*cpu, 7, 6);
  check_against_host(*cpu, 1, 2);
}

TEST(SampleRows, DefaultAppliesLogitEditsToTheDrawOnly) {
  auto cpu = make_cpu_backend(1);
  check_against_host(*cpu, 50257, 2, true);
  check_against_host(*cpu, 1000, 6, true);
  check_against_host(*cpu, 7, 6, true);
}

// A banned argmax is never drawn, a +100 bias all but forces its token, and the log-probs stay the
// raw row's: the banned token keeps its log-prob and its place at the top.
TEST(SampleRows, EditsMoveTheDrawButNotTheLogprobs) {
  auto cpu = make_cpu_backend(1);
  std::vector<float> logits = {1.0f, 5.0f, 2.0f, -3.0f};
  RowDraw banned;
  banned.params.temperature = 0.0f;
  banned.n_top = 2;
  banned.edits = logit_edits(banned.params, {}, 0, {1}, 4);
  RowDraw forced;
  forced.params.seed = 3;
  forced.params.logit_bias = {{3, 100.0f}};
  forced.n_top = 0;
  forced.edits = logit_edits(forced.params, {}, 0, {}, 4);
  std::vector<float> rows = logits;
  rows.insert(rows.end(), logits.begin(), logits.end());
  RowSample got[2];
  cpu->sample_rows(TensorView::of(rows.data(), {2, 4}), {banned, forced}, got);
  EXPECT_EQ(got[0].token, 2);
  ASSERT_EQ(got[0].logprobs.top.size(), 2u);
  EXPECT_EQ(got[0].logprobs.top[0].token, 1);
  EXPECT_EQ(got[0].logprobs.top[1].token, 2);
  EXPECT_EQ(got[1].token, 3);
  std::vector<double> raw;
  log_softmax(logits.data(), 4, &raw);
  EXPECT_FLOAT_EQ(got[1].logprobs.chosen.logprob, static_cast<float>(raw[3]));
}

TEST(SampleRows, TopLogprobsAreSortedWithTiesByLowerId) {
  auto cpu = make_cpu_backend(1);
  // Ids 1, 4 and 6 share the largest logit; 0 and 5 the next.
  std::vector<float> logits = {2.0f, 3.0f, -1.0f, 0.5f, 3.0f, 2.0f, 3.0f};
  RowDraw draw;
  draw.params.temperature = 0.0f;
  draw.n_top = 7;
  RowSample got;
  cpu->sample_rows(TensorView::of(logits.data(), {1, 7}), {draw}, &got);
  EXPECT_EQ(got.token, 1);  // the first argmax
  const std::vector<int32_t> order = {1, 4, 6, 0, 5, 3, 2};
  ASSERT_EQ(got.logprobs.top.size(), order.size());
  for (size_t j = 0; j < order.size(); ++j) EXPECT_EQ(got.logprobs.top[j].token, order[j]) << j;
  EXPECT_EQ(got.logprobs.top[0].logprob, got.logprobs.top[2].logprob);
  EXPECT_EQ(got.logprobs.chosen.logprob, got.logprobs.top[0].logprob);
}

// A CPU backend that claims device memory: host_sample_rows must download the rows.
class NotHostMemory final : public Backend {
 public:
  explicit NotHostMemory(std::unique_ptr<Backend> cpu) : cpu_(std::move(cpu)) {}
  int downloads = 0;

  std::string describe() const override { return "not host memory"; }
  bool host_memory() const override { return false; }
  Result<Buffer> alloc(size_t bytes) override { return cpu_->alloc(bytes); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override {
    ++downloads;
    std::memcpy(dst, src, bytes);
  }
  Result<TensorView> place_weight(const std::vector<float>& host, int64_t rows, int64_t cols,
                                  bool matrix, std::vector<Buffer>* storage) override {
    return cpu_->place_weight(host, rows, cols, matrix, storage);
  }
  PageMemory& page_memory() override { return cpu_->page_memory(); }
  Status status() override { return cpu_->status(); }
  void embed(const TensorView& wte, int64_t vocab_begin, const TensorView* wpe, const int32_t* tokens,
             const int32_t* positions, TensorView out) override {
    cpu_->embed(wte, vocab_begin, wpe, tokens, positions, out);
  }
  void layer_norm(const TensorView& x, const TensorView& w, const TensorView& b, float eps,
                  TensorView out) override {
    cpu_->layer_norm(x, w, b, eps, out);
  }
  void linear(const TensorView& x, const TensorView& w, const TensorView* b, TensorView out) override {
    cpu_->linear(x, w, b, out);
  }
  void activation(TensorView x, Activation act) override { cpu_->activation(x, act); }
  void add(TensorView x, const TensorView& y) override { cpu_->add(x, y); }
  void add_bias(TensorView x, const TensorView& b) override { cpu_->add_bias(x, b); }
  void kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool) override {
    cpu_->kv_write(qkv, batch, layer, pool);
  }
  void attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool,
                 TensorView out, const AttentionSpec& spec = {}) override {
    cpu_->attention(qkv, batch, layer, pool, out, spec);
  }
  void lm_head(const TensorView& x, const TensorView& wte, TensorView logits) override {
    cpu_->lm_head(x, wte, logits);
  }
  void gather_rows(const TensorView& x, const std::vector<int32_t>& rows, TensorView out) override {
    cpu_->gather_rows(x, rows, out);
  }
  void row_stats(const TensorView& logits, RowStats* stats) override { cpu_->row_stats(logits, stats); }
  void copy_pages(KvPoolView pool, const std::vector<std::pair<int32_t, int32_t>>& moves) override {
    cpu_->copy_pages(pool, moves);
  }
  void copy(void* dst, const void* src, size_t bytes) override { cpu_->copy(dst, src, bytes); }
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
               size_t rows) override {
    cpu_->copy_2d(dst, dst_pitch, src, src_pitch, width, rows);
  }
  void sample_rows(const TensorView& logits, const std::vector<RowDraw>& draws, RowSample* out) override {
    host_sample_rows(*this, logits, draws, out);
  }

 private:
  std::unique_ptr<Backend> cpu_;
};

TEST(SampleRows, DefaultDownloadsRowsFromDeviceMemory) {
  NotHostMemory backend(make_cpu_backend(1));
  check_against_host(backend, 1000, 3);
  EXPECT_EQ(backend.downloads, 3);  // one download per call
}

}  // namespace
}  // namespace kvmesh::testing
