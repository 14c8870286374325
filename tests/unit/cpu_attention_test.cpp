// CPU paged attention against a dense double-precision softmax attention, and its invariances: a
// token's output has the same bits whatever the chunking of its prompt, the page size, the
// sequences sharing its step, the thread count and the vector width (cpu_isa.h).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "worker/cpu/cpu_attention.h"
#include "worker/cpu/cpu_isa.h"
#include "worker/kv_quant.h"

namespace kvmesh {
namespace {

struct Shape {
  int n_heads;
  int head_dim;
};

// Every position's q, k and v of one sequence: [n_positions, 3, n_heads, head_dim], N(0, 1).
std::vector<float> random_qkv(int n_positions, Shape s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> qkv(static_cast<size_t>(n_positions) * 3 * s.n_heads * s.head_dim);
  for (float& x : qkv) x = normal(rng);
  return qkv;
}

// Causal softmax attention of position t over positions [0, t] (over (t - window, t] with a
// window), in double, scores scaled as spec says. out: [n_heads, head_dim]
std::vector<double> dense_attention(const std::vector<float>& qkv, Shape s, int t, const AttentionSpec& spec = {}) {
  const int first = spec.window > 0 ? std::max(0, t - spec.window + 1) : 0;
  const double scale = spec.scale != 0.0f ? spec.scale : 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  const int64_t e = static_cast<int64_t>(s.n_heads) * s.head_dim;
  auto at = [&](int pos, int part, int h, int c) {
    return static_cast<double>(qkv[static_cast<size_t>(pos * 3 * e + part * e + h * s.head_dim + c)]);
  };
  std::vector<double> out(static_cast<size_t>(e), 0.0);
  for (int h = 0; h < s.n_heads; ++h) {
    std::vector<double> w(static_cast<size_t>(t + 1 - first));
    for (int j = first; j <= t; ++j) {
      double dot = 0.0;
      for (int c = 0; c < s.head_dim; ++c) dot += at(t, 0, h, c) * at(j, 1, h, c);
      w[static_cast<size_t>(j - first)] = dot * scale;
    }
    const double top = *std::max_element(w.begin(), w.end());
    double sum = 0.0;
    for (double& x : w) sum += (x = std::exp(x - top));
    for (int j = first; j <= t; ++j)
      for (int c = 0; c < s.head_dim; ++c)
        out[static_cast<size_t>(h * s.head_dim + c)] += w[static_cast<size_t>(j - first)] / sum * at(j, 2, h, c);
  }
  return out;
}

// A page pool for one layer and sequences laid out on scattered pages.
class Pool {
 public:
  Pool(Shape s, int block_size, int n_pages)
      : bytes_(static_cast<size_t>(n_pages) * kv_page_bytes(DType::f32, 1, block_size, s.n_heads, s.head_dim)),
        view_{bytes_.data(), DType::f32, n_pages, 1, block_size, s.n_heads, s.head_dim} {}
  // Pages for a sequence of n positions, never handed out before, 7 apart (modulo the pool's
  // size, which 7 does not divide) so that neighbouring blocks are not neighbouring pages.
  std::vector<int32_t> take_pages(int n) {
    std::vector<int32_t> table;
    for (int i = 0; i < (n + view_.block_size - 1) / view_.block_size; ++i) {
      EXPECT_LT(taken_, view_.n_pages) << "the test's pool is too small";
      ++taken_;
      next_ = (next_ + 7) % view_.n_pages;
      table.push_back(next_);
    }
    return table;
  }
  KvPoolView view() const { return view_; }

 private:
  std::vector<uint8_t> bytes_;
  KvPoolView view_;
  int32_t next_ = 0;
  int32_t taken_ = 0;
};

// One sequence of a step: rows [first, first + n) of its qkv, after `first` cached positions.
struct SeqRows {
  const std::vector<float>* qkv;
  const std::vector<int32_t>* table;
  int first;
  int n;
};

// Runs one step (K/V write, then attention as spec says) over the sequences' rows; returns out [T, e].
std::vector<float> run_step(const Pool& pool, Shape s, const std::vector<SeqRows>& seqs, const AttentionSpec& spec = {}) {
  const int64_t e = static_cast<int64_t>(s.n_heads) * s.head_dim;
  const int bs = pool.view().block_size;
  BatchLayout batch;
  batch.block_size = bs;
  std::vector<float> rows;
  for (const SeqRows& q : seqs) {
    const int begin = static_cast<int>(batch.slots.size());
    batch.seqs.push_back({begin, q.n, q.first, q.table->data()});
    for (int i = q.first; i < q.first + q.n; ++i) {
      batch.positions.push_back(i);
      batch.slots.push_back((*q.table)[static_cast<size_t>(i / bs)] * bs + i % bs);
      rows.insert(rows.end(), q.qkv->begin() + i * 3 * e, q.qkv->begin() + (i + 1) * 3 * e);
    }
  }
  const int64_t n_rows = static_cast<int64_t>(batch.slots.size());
  const TensorView qkv = TensorView::of(rows.data(), {n_rows, 3 * e});
  std::vector<float> out(static_cast<size_t>(n_rows * e));
  cpu_kv_write(qkv, batch, 0, pool.view());
  cpu_paged_attention(qkv, batch, 0, pool.view(), TensorView::of(out.data(), {n_rows, e}), spec);
  return out;
}

// Rows of out, [n, e] starting at row `first`.
std::vector<float> rows_of(const std::vector<float>& out, int64_t e, int first, int n) {
  return {out.begin() + first * e, out.begin() + (first + n) * e};
}

TEST(CpuAttention, MatchesDenseAttentionOverARaggedBatch) {
  // Head sizes through each inner path: under 16, 64, 64 + 16, 64 + 16 + a remainder, 128.
  for (Shape s : {Shape{3, 8}, Shape{2, 64}, Shape{2, 80}, Shape{1, 100}, Shape{1, 128}}) {
    const int64_t e = static_cast<int64_t>(s.n_heads) * s.head_dim;
    Pool pool(s, 16, 64);
    // A 150-token prompt from scratch (3 key tiles, several blocks of query rows), 5 tokens after 70
    // cached, and one decode after 130 cached.
    const auto a = random_qkv(150, s, 1), b = random_qkv(75, s, 2), c = random_qkv(131, s, 3);
    const auto ta = pool.take_pages(150), tb = pool.take_pages(75), tc = pool.take_pages(131);
    run_step(pool, s, {{&b, &tb, 0, 70}, {&c, &tc, 0, 130}});  // the cached positions
    const auto out = run_step(pool, s, {{&a, &ta, 0, 150}, {&b, &tb, 70, 5}, {&c, &tc, 130, 1}});
    struct Row {
      const std::vector<float>* qkv;
      int position;
      int row;
    };
    double max_err = 0.0;
    for (Row r : {Row{&a, 0, 0}, Row{&a, 15, 15}, Row{&a, 16, 16}, Row{&a, 31, 31},
                  Row{&a, 32, 32}, Row{&a, 63, 63}, Row{&a, 64, 64}, Row{&a, 149, 149},
                  Row{&b, 70, 150}, Row{&b, 74, 154}, Row{&c, 130, 155}}) {
      const auto want = dense_attention(*r.qkv, s, r.position);
      for (int64_t i = 0; i < e; ++i)
        max_err = std::max(max_err, std::fabs(out[static_cast<size_t>(r.row * e + i)] - want[static_cast<size_t>(i)]));
    }
    EXPECT_LT(max_err, 2e-6) << "head_dim " << s.head_dim;
  }
}

// Local attention (GPT-Neo): each row sees its last `window` positions only, and unscaled scores;
// every row of a ragged batch (a prompt from scratch, chunks after cached tokens, a decode) against
// the dense reference, windows narrower than a page, across pages and key tiles, and wider than
// the context.
TEST(CpuAttention, WindowedUnscaledMatchesDenseAttention) {
  for (Shape s : {Shape{3, 8}, Shape{2, 64}, Shape{1, 80}}) {
    for (int window : {1, 7, 16, 70, 1000}) {
      const int64_t e = static_cast<int64_t>(s.n_heads) * s.head_dim;
      const AttentionSpec spec{s.head_dim == 8 ? 1.0f : 0.125f, window};
      Pool pool(s, 16, 64);
      const auto a = random_qkv(150, s, 1), b = random_qkv(75, s, 2), c = random_qkv(131, s, 3);
      const auto ta = pool.take_pages(150), tb = pool.take_pages(75), tc = pool.take_pages(131);
      run_step(pool, s, {{&b, &tb, 0, 70}, {&c, &tc, 0, 130}}, spec);
      const auto out = run_step(pool, s, {{&a, &ta, 0, 150}, {&b, &tb, 70, 5}, {&c, &tc, 130, 1}}, spec);
      double max_err = 0.0;
      auto check = [&](const std::vector<float>& qkv, int position, int row) {
        const auto want = dense_attention(qkv, s, position, spec);
        for (int64_t i = 0; i < e; ++i)
          max_err = std::max(max_err, std::fabs(out[static_cast<size_t>(row * e + i)] - want[static_cast<size_t>(i)]));
      };
      for (int p = 0; p < 150; ++p) check(a, p, p);
      for (int p = 70; p < 75; ++p) check(b, p, 150 + p - 70);
      check(c, 130, 155);
      EXPECT_LT(max_err, 2e-6) << "head_dim " << s.head_dim << " window " << window;
    }
  }
}

TEST(CpuAttention, ATokensOutputIsTheSameWhateverItsStepHolds) {
  const Shape s{2, 80};
  const int64_t e = static_cast<int64_t>(s.n_heads) * s.head_dim;
  const int n = 140;
  const auto prompt = random_qkv(n, s, 7), other = random_qkv(90, s, 8);

  // The reference: the whole prompt in one step, alone, 16 tokens a page, on one thread; then
  // the same on two threads.
  auto whole_prompt = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Pool pool(s, 16, 40);
    const auto table = pool.take_pages(n);
    auto out = run_step(pool, s, {{&prompt, &table, 0, n}});
    omp_set_num_threads(before);
    return out;
  };
  const auto whole = whole_prompt(1);
  EXPECT_EQ(0, std::memcmp(whole.data(), whole_prompt(2).data(), whole.size() * sizeof(float)));

  // Chunks of 37 beside another sequence's prefill and decodes, 5 tokens a page.
  Pool chunk_pool(s, 5, 100);
  const auto table = chunk_pool.take_pages(n), other_table = chunk_pool.take_pages(90);
  std::vector<float> chunked;
  int other_done = 0;
  for (int first = 0; first < n; first += 37) {
    const int len = std::min(37, n - first);
    const int other_len = other_done == 0 ? 60 : 1;
    const auto out = run_step(chunk_pool, s, {{&other, &other_table, other_done, other_len}, {&prompt, &table, first, len}});
    const auto mine = rows_of(out, e, other_len, len);
    chunked.insert(chunked.end(), mine.begin(), mine.end());
    other_done += other_len;
  }
  EXPECT_EQ(0, std::memcmp(whole.data(), chunked.data(), whole.size() * sizeof(float)));

  // One token a step (decode).
  Pool decode_pool(s, 16, 40);
  const auto decode_table = decode_pool.take_pages(n);
  std::vector<float> decoded;
  for (int t = 0; t < n; ++t) {
    const auto out = run_step(decode_pool, s, {{&prompt, &decode_table, t, 1}});
    decoded.insert(decoded.end(), out.begin(), out.end());
  }
  EXPECT_EQ(0, std::memcmp(whole.data(), decoded.data(), whole.size() * sizeof(float)));
}

TEST(CpuAttention, EveryVectorWidthGivesTheSameBits) {
  const CpuIsa best = cpu_isa();
  // Head sizes through the full 16 x 16 blocks and the edges of the key transpose and the value
  // sums; a ragged step of a prompt, a chunk after cached positions and a decode.
  for (Shape s : {Shape{3, 8}, Shape{2, 80}, Shape{1, 100}}) {
    const auto a = random_qkv(150, s, 21), b = random_qkv(75, s, 22), c = random_qkv(131, s, 23);
    std::vector<std::vector<float>> outs;
    std::vector<CpuIsa> ran;
    for (CpuIsa isa : {CpuIsa::avx512, CpuIsa::avx2, CpuIsa::scalar}) {
      if (!cpu_force_isa(isa)) continue;
      Pool pool(s, 16, 64);
      const auto ta = pool.take_pages(150), tb = pool.take_pages(75), tc = pool.take_pages(131);
      run_step(pool, s, {{&b, &tb, 0, 70}, {&c, &tc, 0, 130}});
      outs.push_back(run_step(pool, s, {{&a, &ta, 0, 150}, {&b, &tb, 70, 5}, {&c, &tc, 130, 1}}));
      ran.push_back(isa);
    }
    cpu_force_isa(best);
    for (size_t i = 1; i < outs.size(); ++i)
      EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[i].data(), outs[0].size() * sizeof(float)))
          << cpu_isa_name(ran[i]) << " against " << cpu_isa_name(ran[0]) << ", head_dim " << s.head_dim;
    if (outs.size() < 2) GTEST_SKIP() << "this CPU runs only " << cpu_isa_name(ran[0]);
  }
}

}  // namespace
}  // namespace kvmesh
