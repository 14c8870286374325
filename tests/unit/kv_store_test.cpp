// KvStore tiers: host and disk round trips bit-exact for every KV dtype, host-slot validity,
// budgets; and a Worker over the HF fixture running plans of cache ops (swap_out, disk_store,
// disk_load, swap_in) whose pages come back identical, corrupted disk pages reported as failed
// ops, and --kv-disk-persist recovering pages across a restart.
#include <fcntl.h>
#include <gtest/gtest.h>

#include "disk_tier_fixture.h"
#include "temp_dir.h"
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "worker/kv_store.h"
#include "worker/worker.h"

namespace kvmesh {
namespace {

namespace fs = std::filesystem;

using ::kvmesh::testing::TempDir;

CacheOp op(CacheOpKind kind, int32_t src, int32_t dst, uint64_t hash = 0, int32_t n_tokens = 16) {
  CacheOp o;
  o.kind = kind;
  o.src = src;
  o.dst = dst;
  o.page_hash = hash;
  o.n_tokens = n_tokens;
  return o;
}

void fill_random(uint8_t* p, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(rng());
}

std::vector<uint8_t> page_copy(const KvPoolView& pool, int32_t page) {
  const uint8_t* p = pool.page_ptr(page);
  return std::vector<uint8_t>(p, p + pool.page_bytes());
}

CacheConfig cache_with(DType dtype) {
  CacheConfig c;
  c.kv_dtype = dtype;
  c.block_size = 16;
  return c;
}

// A device that reports its free memory: nine tenths of it cap the byte budget's pages, or
// (--gpu-memory-utilization) the asked share of it is the budget.
TEST(KvStoreBudget, DevicePagesInFreeMemory) {
  CacheConfig cache;
  const int64_t page = 1000;
  EXPECT_EQ(KvStore::device_pages_in_free_memory(cache, 100000, page, 50), 50);   // the byte budget
  EXPECT_EQ(KvStore::device_pages_in_free_memory(cache, 20000, page, 50), 18);    // nine tenths of free
  cache.device_fraction = 0.5;
  EXPECT_EQ(KvStore::device_pages_in_free_memory(cache, 100000, page, 50), 50);
  EXPECT_EQ(KvStore::device_pages_in_free_memory(cache, 1000000, page, 50), 500);  // not capped by bytes
  EXPECT_EQ(KvStore::device_pages_in_free_memory(cache, 1999, page, 50), 0);
  cache.device_fraction = 0.9;
  EXPECT_EQ(KvStore::device_pages_in_free_memory(cache, 10000, page, 1), 9);
}

class KvStoreDtypes : public ::testing::TestWithParam<DType> {};

TEST_P(KvStoreDtypes, HostRoundTripIsBitExact) {
  auto kv = KvStore::create(cache_with(GetParam()), 2, 3, 8, 4, 3);
  ASSERT_TRUE(kv.is_ok()) << kv.status().to_string();
  KvStore& s = **kv;
  const KvPoolView dev = s.device_pool_view();
  EXPECT_EQ(s.n_host_slots(), 3);
  fill_random(dev.page_ptr(1), s.page_bytes(), 1);
  const auto original = page_copy(dev, 1);
  ASSERT_TRUE(s.apply(op(CacheOpKind::swap_out, 1, 2)).is_ok());
  EXPECT_TRUE(s.host_slot_valid(2));
  fill_random(dev.page_ptr(1), s.page_bytes(), 2);  // the device page is reused
  ASSERT_TRUE(s.apply(op(CacheOpKind::swap_in, 2, 3)).is_ok());
  EXPECT_EQ(page_copy(dev, 3), original);
  EXPECT_EQ(page_copy(s.host_pool_view(), 2), original);
}

TEST_P(KvStoreDtypes, DiskRoundTripIsBitExact) {
  TempDir dir;
  auto kv = KvStore::create(cache_with(GetParam()), 2, 3, 8, 4, 2);
  ASSERT_TRUE(kv.is_ok());
  KvStore& s = **kv;
  const Status attached = testing::attach_test_disk(s, dir.path(), 3);
  ASSERT_TRUE(attached.is_ok()) << attached.to_string();
  EXPECT_EQ(s.n_disk_slots(), 3);
  const KvPoolView dev = s.device_pool_view();
  fill_random(dev.page_ptr(0), s.page_bytes(), 3);
  const auto original = page_copy(dev, 0);
  ASSERT_TRUE(s.apply(op(CacheOpKind::swap_out, 0, 0)).is_ok());
  ASSERT_TRUE(s.apply(op(CacheOpKind::disk_store, 0, 2, 42, 9)).is_ok());
  ASSERT_TRUE(s.apply(op(CacheOpKind::disk_load, 2, 1, 42, 9)).is_ok());
  ASSERT_TRUE(s.apply(op(CacheOpKind::swap_in, 1, 3)).is_ok());
  EXPECT_EQ(page_copy(dev, 3), original);
  // A load that fails its checks leaves the host slot empty; a swap_in from it fails too.
  EXPECT_EQ(s.apply(op(CacheOpKind::disk_load, 2, 1, 43, 9)).code(), StatusCode::data_loss);
  EXPECT_FALSE(s.host_slot_valid(1));
  EXPECT_FALSE(s.apply(op(CacheOpKind::swap_in, 1, 3)).is_ok());
  // forget() after a failure elsewhere: the loaded slot is dropped, a stored slot invalidated.
  ASSERT_TRUE(s.apply(op(CacheOpKind::disk_load, 2, 1, 42, 9)).is_ok());
  s.forget(op(CacheOpKind::disk_load, 2, 1, 42, 9));
  EXPECT_FALSE(s.host_slot_valid(1));
  s.forget(op(CacheOpKind::disk_store, 0, 2, 42, 9));
  EXPECT_FALSE(s.apply(op(CacheOpKind::disk_load, 2, 1, 42, 9)).is_ok());
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, KvStoreDtypes,
                         ::testing::Values(DType::f32, DType::bf16, DType::f16, DType::i8),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(KvStore, EmptyHostSlotsAndMissingDiskFail) {
  auto kv = KvStore::create(cache_with(DType::f32), 1, 1, 4, 2, 2);
  ASSERT_TRUE(kv.is_ok());
  EXPECT_EQ((*kv)->apply(op(CacheOpKind::swap_in, 0, 0)).code(), StatusCode::data_loss);
  EXPECT_EQ((*kv)->apply(op(CacheOpKind::disk_store, 0, 0)).code(), StatusCode::data_loss);
  ASSERT_TRUE((*kv)->apply(op(CacheOpKind::swap_out, 0, 0)).is_ok());
  EXPECT_FALSE((*kv)->apply(op(CacheOpKind::disk_store, 0, 0)).is_ok());  // no disk tier
}

TEST(KvStore, BudgetsFollowTheDtype) {
  CacheConfig c = cache_with(DType::f32);
  c.device_bytes = 1 << 20;
  const int64_t f32_page = KvStore::page_bytes_for(c, 4, 4, 8);
  EXPECT_EQ(f32_page, 4 * 2 * 16 * 4 * 8 * 4);
  for (DType d : {DType::f32, DType::bf16, DType::f16, DType::i8}) {
    c.kv_dtype = d;
    auto pages = KvStore::budget_pages(c, 4, 4, 8);
    ASSERT_TRUE(pages.is_ok()) << dtype_name(d) << ": " << pages.status().to_string();
    EXPECT_EQ(*pages, (1 << 20) / KvStore::page_bytes_for(c, 4, 4, 8)) << dtype_name(d);
  }
  c.kv_dtype = DType::i32;
  EXPECT_FALSE(KvStore::budget_pages(c, 4, 4, 8).is_ok());
  c.kv_dtype = DType::f32;
  c.host_bytes = 3 * f32_page + 1;
  EXPECT_EQ(KvStore::host_budget_slots(c, f32_page), 3);
  c.host_bytes = 0;
  EXPECT_EQ(KvStore::host_budget_slots(c, f32_page), 0);
}

// --- A Worker over the HF fixture with host and disk tiers ---

constexpr int32_t kBlock = 16;
constexpr int64_t kFixturePageBytes = 4 * 2 * kBlock * 4 * 8 * 4;  // f32: 4 layers, 4 heads x 8

WorkerOptions worker_options(const std::string& disk_dir, DType dtype = DType::f32, bool persist = false) {
  WorkerOptions o;
  o.model_dir = KVMESH_TEST_DATA_DIR "/hf-gpt2-4l32d";
  o.n_threads = 2;
  o.cache.block_size = kBlock;
  o.cache.kv_dtype = dtype;
  o.cache.device_bytes = 8 * kFixturePageBytes;
  o.cache.host_bytes = 8 * kFixturePageBytes;
  o.cache.disk_bytes = 8 * DiskStore::slot_bytes(kFixturePageBytes);
  o.cache.disk_dir = disk_dir;
  o.cache.disk_persist = persist;
  return o;
}

std::unique_ptr<Worker> make_worker(const WorkerOptions& o) {
  auto w = Worker::create(o);
  EXPECT_TRUE(w.is_ok()) << w.status().to_string();
  return w.is_ok() ? std::move(w).value() : nullptr;
}

std::vector<int32_t> prompt(int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(464 + 37 * i);
  return ids;
}

SeqWork seq(std::vector<int32_t> tokens, std::vector<int32_t> table, int32_t n_past) {
  SeqWork s;
  s.seq_id = 1;
  s.n_past = n_past;
  s.token_ids = std::move(tokens);
  s.block_table = std::move(table);
  s.sample = true;
  s.sampling.temperature = 0.0f;
  s.sampling.n_logprobs = 5;
  return s;
}

StepResult run(Worker& w, std::vector<CacheOp> ops, std::vector<SeqWork> seqs = {}) {
  static uint64_t step = 0;
  StepPlan plan;
  plan.step_id = ++step;
  plan.cache_ops = std::move(ops);
  plan.seqs = std::move(seqs);
  StepResult result;
  const Status s = w.execute(plan, &result);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return result;
}

// Log-probs of the token after a 20-token context held in pages (table[0], table[1]).
PositionLogprobs decode_after(Worker& w, int32_t token, std::vector<int32_t> table) {
  StepResult r = run(w, {}, {seq({token}, std::move(table), 20)});
  return r.seqs.empty() ? PositionLogprobs{} : r.seqs[0].token_logprobs;
}

void expect_identical(const PositionLogprobs& a, const PositionLogprobs& b) {
  EXPECT_EQ(a.chosen.token, b.chosen.token);
  EXPECT_EQ(a.chosen.logprob, b.chosen.logprob);  // bit-exact: the same bytes were read
  ASSERT_EQ(a.top.size(), b.top.size());
  for (size_t i = 0; i < a.top.size(); ++i) {
    EXPECT_EQ(a.top[i].token, b.top[i].token);
    EXPECT_EQ(a.top[i].logprob, b.top[i].logprob);
  }
}

class WorkerTiers : public ::testing::TestWithParam<DType> {};

TEST_P(WorkerTiers, PagesComeBackIdenticalThroughHostAndDisk) {
  TempDir dir;
  auto w = make_worker(worker_options(dir.path(), GetParam()));
  ASSERT_NE(w, nullptr);
  EXPECT_GE(w->capacity().host_slots, 8);  // i8 pages are smaller: more slots
  EXPECT_GE(w->capacity().disk_slots, 8);
  // Prefill 20 tokens into pages 0 and 1.
  StepResult r = run(*w, {}, {seq(prompt(20), {0, 1}, 0)});
  ASSERT_EQ(r.seqs.size(), 1u);
  const int32_t next = r.seqs[0].token;
  r = run(*w, {op(CacheOpKind::swap_out, 0, 0), op(CacheOpKind::swap_out, 1, 1),
               op(CacheOpKind::disk_store, 0, 5, 1000, 16), op(CacheOpKind::disk_store, 1, 6, 1001, 4),
               op(CacheOpKind::disk_load, 5, 2, 1000, 16), op(CacheOpKind::disk_load, 6, 3, 1001, 4),
               op(CacheOpKind::swap_in, 2, 4), op(CacheOpKind::swap_in, 3, 5)});
  EXPECT_TRUE(r.failed_cache_ops.empty());
  for (int k = 1; k < 5; ++k) EXPECT_GT(r.timings.cache_op_seconds[k], 0.0f) << "kind " << k;
  const PositionLogprobs original = decode_after(*w, next, {0, 1});
  const PositionLogprobs restored = decode_after(*w, next, {4, 5});
  expect_identical(original, restored);
  const PositionLogprobs empty = decode_after(*w, next, {6, 7});  // never written: differs
  EXPECT_NE(original.chosen.logprob, empty.chosen.logprob);
}

INSTANTIATE_TEST_SUITE_P(F32AndI8, WorkerTiers, ::testing::Values(DType::f32, DType::i8),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(WorkerTiers, CapacityFollowsTheBudgets) {
  TempDir dir;
  auto w = make_worker(worker_options(dir.path()));
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->capacity().device_pages, 8);
  EXPECT_EQ(w->capacity().host_slots, 8);
  EXPECT_EQ(w->capacity().disk_slots, 8);
  EXPECT_EQ(w->capacity().page_bytes, kFixturePageBytes);
  EXPECT_TRUE(w->capacity().recovered.empty());
  EXPECT_TRUE(fs::exists(DiskStore::file_path(dir.path(), 0)));
}

TEST(WorkerTiers, CorruptDiskPagesAreFailedOpsNotServed) {
  TempDir dir;
  auto w = make_worker(worker_options(dir.path()));
  ASSERT_NE(w, nullptr);
  run(*w, {}, {seq(prompt(20), {0, 1}, 0)});
  StepResult r = run(*w, {op(CacheOpKind::swap_out, 0, 0), op(CacheOpKind::disk_store, 0, 3, 7, 16),
                          op(CacheOpKind::swap_out, 1, 1), op(CacheOpKind::disk_store, 1, 4, 8, 4)});
  ASSERT_TRUE(r.failed_cache_ops.empty());
  // Flip one payload byte of disk slot 3.
  const std::string path = DiskStore::file_path(dir.path(), 0);
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const off_t at = 3 * DiskStore::slot_bytes(kFixturePageBytes) + DiskStore::kHeaderBytes + 77;
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, at), 1);
  b ^= 1;
  ASSERT_EQ(::pwrite(fd, &b, 1, at), 1);
  ::close(fd);
  r = run(*w, {op(CacheOpKind::disk_load, 3, 5, 7, 16), op(CacheOpKind::swap_in, 5, 6),
               op(CacheOpKind::disk_load, 4, 6, 8, 4), op(CacheOpKind::swap_in, 6, 7),
               op(CacheOpKind::disk_load, 4, 7, 9, 4)});  // wrong page hash
  EXPECT_EQ(r.failed_cache_ops, (std::vector<int32_t>{0, 1, 4}));
  r = run(*w, {op(CacheOpKind::swap_in, 5, 6), op(CacheOpKind::swap_in, 7, 6)});
  EXPECT_EQ(r.failed_cache_ops, (std::vector<int32_t>{0, 1}));  // both host slots stay empty
}

TEST(WorkerTiers, OutOfRangeIdsRejectThePlan) {
  TempDir dir;
  auto w = make_worker(worker_options(dir.path()));
  ASSERT_NE(w, nullptr);
  for (const CacheOp& bad : {op(CacheOpKind::swap_out, 0, 8), op(CacheOpKind::swap_in, -1, 0),
                             op(CacheOpKind::disk_store, 0, 8), op(CacheOpKind::disk_load, 8, 0),
                             op(CacheOpKind::copy, 0, 8), op(static_cast<CacheOpKind>(9), 0, 0)}) {
    StepPlan plan;
    plan.cache_ops = {bad};
    StepResult result;
    EXPECT_FALSE(w->execute(plan, &result).is_ok()) << static_cast<int>(bad.kind);
  }
  TempDir none;
  WorkerOptions o = worker_options(none.path());
  o.cache.host_bytes = 0;
  o.cache.disk_bytes = 0;
  auto bare = make_worker(o);
  ASSERT_NE(bare, nullptr);
  StepPlan plan;
  plan.cache_ops = {op(CacheOpKind::swap_out, 0, 0)};
  StepResult result;
  EXPECT_EQ(bare->execute(plan, &result).code(), StatusCode::out_of_range);
  EXPECT_FALSE(fs::exists(DiskStore::file_path(none.path(), 0)));
}

TEST(WorkerTiers, PersistedPagesAreRecoveredAfterARestart) {
  TempDir dir;
  {
    auto w = make_worker(worker_options(dir.path()));
    ASSERT_NE(w, nullptr);
    run(*w, {}, {seq(prompt(20), {0, 1}, 0)});
    StepResult r = run(*w, {op(CacheOpKind::swap_out, 0, 0), op(CacheOpKind::disk_store, 0, 2, 111, 16),
                            op(CacheOpKind::swap_out, 1, 1), op(CacheOpKind::disk_store, 1, 7, 222, 4)});
    ASSERT_TRUE(r.failed_cache_ops.empty());
  }
  {
    auto w = make_worker(worker_options(dir.path(), DType::f32, /*persist=*/true));
    ASSERT_NE(w, nullptr);
    const auto& rec = w->capacity().recovered;
    ASSERT_EQ(rec.size(), 2u);
    EXPECT_EQ(rec[0].slot, 2);
    EXPECT_EQ(rec[0].page_hash, 111u);
    EXPECT_EQ(rec[0].n_tokens, 16);
    EXPECT_EQ(rec[1].slot, 7);
    EXPECT_EQ(rec[1].page_hash, 222u);
    EXPECT_EQ(rec[1].n_tokens, 4);
    StepResult r = run(*w, {op(CacheOpKind::disk_load, 2, 0, 111, 16), op(CacheOpKind::swap_in, 0, 3)});
    EXPECT_TRUE(r.failed_cache_ops.empty());
  }
  {  // Another KV dtype is another fingerprint: nothing is recovered.
    auto w = make_worker(worker_options(dir.path(), DType::bf16, /*persist=*/true));
    ASSERT_NE(w, nullptr);
    EXPECT_TRUE(w->capacity().recovered.empty());
  }
}

}  // namespace
}  // namespace kvmesh
