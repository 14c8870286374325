// Worker: validates a StepPlan, applies its CacheOps, runs its stage's forward in micro-batches
// (activations to the next stage as soon as each is done) and, on the sampling rank, samples.
#include "worker/worker.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "common/byte_io.h"
#include "common/clock.h"
#include "common/synthetic_models.h"
#include "worker/disk_store.h"
#include "worker/kv_store.h"
#include "worker/micro_batch.h"
#include "worker/model.h"
#include "worker/recording_backend.h"
#include "worker/weight_source.h"

namespace kvmesh {

namespace {

Status validate_seq(const SeqWork& s, const ModelConfig& c, int32_t block_size, int32_t n_pages) {
  const std::string who = "sequence " + std::to_string(s.seq_id) + ": ";
  if (s.token_ids.empty()) return invalid_argument(who + "no tokens");
  if (s.n_past < 0) return invalid_argument(who + "negative n_past");
  const int64_t end = static_cast<int64_t>(s.n_past) + s.n_tokens();
  if (end > c.n_positions) {
    return out_of_range(who + "positions up to " + std::to_string(end) +
                        " exceed the model's context of " + std::to_string(c.n_positions));
  }
  for (int32_t t : s.token_ids)
    if (t < 0 || t >= c.vocab_size)
      return out_of_range(who + "token id " + std::to_string(t) + " outside the vocabulary");
  if (static_cast<int64_t>(s.block_table.size()) < (end + block_size - 1) / block_size)
    return invalid_argument(who + "block table too short");
  for (int32_t p : s.block_table)
    if (p < 0 || p >= n_pages) return out_of_range(who + "page " + std::to_string(p) + " outside the pool");
  if (s.sampling.n_logprobs > kMaxTopLogprobs || s.prompt_logprobs > kMaxLogprobs)
    return invalid_argument(who + "too many log-probs asked");
  return Status::ok();
}

const char* cache_op_name(CacheOpKind kind) {
  switch (kind) {
    case CacheOpKind::copy: return "copy";
    case CacheOpKind::swap_out: return "swap_out";
    case CacheOpKind::swap_in: return "swap_in";
    case CacheOpKind::disk_store: return "disk_store";
    case CacheOpKind::disk_load: return "disk_load";
  }
  return "unknown";
}

// Tier of an op's source (first) and destination (second): 0 device, 1 host, 2 disk; -1 unknown.
std::pair<int, int> cache_op_tiers(CacheOpKind kind) {
  switch (kind) {
    case CacheOpKind::copy: return {0, 0};
    case CacheOpKind::swap_out: return {0, 1};
    case CacheOpKind::swap_in: return {1, 0};
    case CacheOpKind::disk_store: return {1, 2};
    case CacheOpKind::disk_load: return {2, 1};
  }
  return {-1, -1};
}

Status validate_cache_op(const CacheOp& op, const TierCapacity& cap) {
  const auto [src_tier, dst_tier] = cache_op_tiers(op.kind);
  if (src_tier < 0) return invalid_argument("unknown cache op kind");
  const int32_t sizes[3] = {cap.device_pages, cap.host_slots, cap.disk_slots};
  if (op.src < 0 || op.src >= sizes[src_tier] || op.dst < 0 || op.dst >= sizes[dst_tier]) {
    return out_of_range(std::string("cache op ") + cache_op_name(op.kind) + " " +
                        std::to_string(op.src) + " -> " + std::to_string(op.dst) +
                        " outside its tier");
  }
  return Status::ok();
}

// Whether a later op of the plan writes the same page or slot as op i (then op i's leftovers
// are not its to drop).
bool rewritten_later(const StepPlan& plan, size_t i) {
  const CacheOp& op = plan.cache_ops[i];
  for (size_t j = i + 1; j < plan.cache_ops.size(); ++j) {
    const CacheOp& later = plan.cache_ops[j];
    if (cache_op_tiers(later.kind).second == cache_op_tiers(op.kind).second && later.dst == op.dst)
      return true;
  }
  return false;
}

// One line per failed cache op on the rank where it failed (the first few per process).
void log_cache_op_failure(int rank, size_t index, const CacheOp& op, const Status& status) {
  constexpr int kMaxLogged = 20;
  static std::atomic<int> logged{0};
  const int n = logged.fetch_add(1);
  if (n < kMaxLogged) {
    std::fprintf(stderr, "kvmesh rank %d: cache op %zu (%s %d -> %d) failed: %s\n", rank, index,
                 cache_op_name(op.kind), op.src, op.dst, status.to_string().c_str());
  } else if (n == kMaxLogged) {
    std::fprintf(stderr, "kvmesh rank %d: further cache op failures are not logged\n", rank);
  }
}

// Applies a plan's cache ops in order, timing each kind; an op that failed on any rank counts as
// failed on every rank (its leftovers dropped) and is listed in result->failed_cache_ops.
void apply_cache_ops(const StepPlan& plan, KvStore& kv, Backend& backend, Collectives& collectives,
                     int rank, StepResult* result) {
  if (plan.cache_ops.empty()) return;  // every rank sees the same plan, so all skip alike
  std::vector<uint8_t> failed(plan.cache_ops.size(), 0);
  for (size_t i = 0; i < plan.cache_ops.size(); ++i) {
    const CacheOp& op = plan.cache_ops[i];
    const auto t0 = std::chrono::steady_clock::now();
    Status status;
    if (op.kind == CacheOpKind::copy) {
      status = kv.fence();  // a swap_in earlier in the plan may still be writing the source
      if (status.is_ok()) backend.copy_pages(kv.device_pool(), {{op.src, op.dst}});
    } else {
      status = kv.apply(op);
    }
    result->timings.cache_op_seconds[static_cast<int>(op.kind)] +=
        std::chrono::duration<float>(std::chrono::steady_clock::now() - t0).count();
    if (!status.is_ok()) {
      failed[i] = 1;
      log_cache_op_failure(rank, i, op, status);
    }
  }
  const Status fenced = kv.fence();
  if (!fenced.is_ok()) {
    std::fill(failed.begin(), failed.end(), 1);
    log_cache_op_failure(rank, 0, plan.cache_ops[0], fenced);
  }
  collectives.world_or_flags(failed);
  for (size_t i = 0; i < failed.size(); ++i) {
    if (!failed[i]) continue;
    if (!rewritten_later(plan, i)) kv.forget(plan.cache_ops[i]);
    result->failed_cache_ops.push_back(static_cast<int32_t>(i));
  }
}

}  // namespace

Worker::Worker() = default;
Worker::~Worker() = default;

namespace {

// What one rank loads on its own before the ranks agree that all of them succeeded.
struct LocalShard {
  ModelConfig config;
  ModelWeights weights;
  int32_t budget_pages = 0;  // device pages, host slots and disk slots this rank's budgets hold
  int32_t host_slots = 0;
  int32_t disk_slots = 0;
  uint64_t bytes_read = 0;
};

Result<LocalShard> load_local_shard(const WorkerOptions& options) {
  LocalShard shard;
  KVMESH_ASSIGN_OR_RETURN(shard.config, resolve_model_config(options.model_dir));
  const ModelConfig& c = shard.config;
  const ParallelLayout& layout = options.layout;
  KVMESH_RETURN_IF_ERROR(validate_layout(c, layout.tp, layout.pp, layout.world_size()));
  if (options.cache.disk_bytes > 0 && options.cache.disk_dir.empty())
    return invalid_argument("a KV disk budget needs a disk directory (--kv-disk-dir)");
  KVMESH_ASSIGN_OR_RETURN(auto source, open_weight_source(options.model_dir, c, options.synthetic_seed));
  KVMESH_ASSIGN_OR_RETURN(shard.weights, load_weights(*source, c, layout));
  shard.bytes_read = source->bytes_read();
  const int n_layers = static_cast<int>(layout.layers(c).size());
  const int n_heads = static_cast<int>(layout.heads(c).size());
  KVMESH_ASSIGN_OR_RETURN(shard.budget_pages,
                          KvStore::budget_pages(options.cache, n_layers, n_heads, c.head_dim()));
  const int64_t page_bytes = KvStore::page_bytes_for(options.cache, n_layers, n_heads, c.head_dim());
  shard.host_slots = KvStore::host_budget_slots(options.cache, page_bytes);
  shard.disk_slots = DiskStore::budget_slots(options.cache.disk_bytes, page_bytes);
  return shard;
}

// Allocates the device and host pools and opens the disk file with the agreed counts.
Result<std::unique_ptr<KvStore>> create_tiers(const WorkerOptions& options, const ModelConfig& c,
                                              const TierCapacity& counts, PageMemory& memory) {
  const ParallelLayout& layout = options.layout;
  KVMESH_ASSIGN_OR_RETURN(
      auto kv, KvStore::create(options.cache, static_cast<int>(layout.layers(c).size()),
                               static_cast<int>(layout.heads(c).size()), c.head_dim(),
                               counts.device_pages, counts.host_slots, &memory));
  if (counts.disk_slots > 0) {
    DiskStoreOptions d;
    d.dir = options.cache.disk_dir;
    d.n_slots = counts.disk_slots;
    d.page_bytes = static_cast<int64_t>(kv->page_bytes());
    d.identity.fingerprint = kv_model_fingerprint(options.model_dir, options.synthetic_seed, c,
                                                  options.cache, layout.tp, layout.pp);
    d.identity.rank = layout.rank;
    d.identity.tp = layout.tp;
    d.identity.pp = layout.pp;
    d.persist = options.cache.disk_persist;
    KVMESH_ASSIGN_OR_RETURN(auto disk, DiskStore::open(d));
    kv->attach_disk(std::move(disk));
  }
  return kv;
}

std::string encode_disk_pages(const std::vector<DiskPage>& pages) {
  ByteWriter w;
  w.put<uint32_t>(static_cast<uint32_t>(pages.size()));
  for (const DiskPage& p : pages) {
    w.put(p.slot);
    w.put(p.page_hash);
    w.put(p.n_tokens);
  }
  return w.take();
}

// A peer's scan; false when malformed.
bool decode_disk_pages(std::string_view bytes, std::vector<DiskPage>* pages) {
  ByteReader r(bytes);
  const uint32_t n = r.get<uint32_t>();
  if (!r.ok() || n > bytes.size() / 16) return false;
  for (uint32_t i = 0; i < n; ++i) {
    DiskPage p{};
    p.slot = r.get<int32_t>();
    p.page_hash = r.get<uint64_t>();
    p.n_tokens = r.get<int32_t>();
    pages->push_back(p);
  }
  return r.ok() && r.at_end();
}

// The disk pages every rank holds identically (rank 0 gets them; other ranks get none).
std::vector<DiskPage> agree_recovered(Collectives& collectives, const KvStore& kv, int32_t n_slots) {
  const std::vector<DiskPage> mine = kv.disk() ? kv.disk()->scan() : std::vector<DiskPage>{};
  const std::vector<std::string> all = collectives.gather_to_root(encode_disk_pages(mine));
  if (all.empty()) return {};
  const int32_t block_size = kv.device_pool_view().block_size;
  std::map<int32_t, DiskPage> common;
  for (const DiskPage& p : mine)
    if (p.slot >= 0 && p.slot < n_slots && p.n_tokens >= 1 && p.n_tokens <= block_size)
      common[p.slot] = p;
  for (size_t r = 1; r < all.size(); ++r) {
    std::vector<DiskPage> theirs;
    if (!decode_disk_pages(all[r], &theirs)) return {};
    std::map<int32_t, DiskPage> kept;
    for (const DiskPage& p : theirs) {
      auto it = common.find(p.slot);
      if (it != common.end() && it->second.page_hash == p.page_hash && it->second.n_tokens == p.n_tokens)
        kept[p.slot] = p;
    }
    common.swap(kept);
  }
  std::vector<DiskPage> out;
  for (const auto& [slot, p] : common) out.push_back(p);
  return out;
}

// The backend and the model on it; the device page budget shrinks to what the device still has
// free once the weights are placed (a tenth kept back for the ops' scratch).
// graphs_ready: whether decode graphs could be turned on as asked (their buffers fit).
Result<std::unique_ptr<Model>> create_model(const WorkerOptions& options, LocalShard& shard,
                                            Collectives* collectives, Status* graphs_ready) {
  if (options.device == DeviceKind::cuda && options.cache.kv_dtype == DType::i8)
    return invalid_argument("--kv-dtype i8 is not supported with --device cuda (use bf16, f16 or f32)");
  BackendOptions bo;
  bo.device = options.device;
  bo.n_threads = options.n_threads;
  bo.weight_dtype = options.weight_dtype;
  bo.device_index = options.device_index;
  bo.cuda = options.cuda;
  KVMESH_ASSIGN_OR_RETURN(auto backend, make_backend(bo));
  const bool graphs = options.device == DeviceKind::cuda ? options.decode_graphs : options.record_graphs_on_cpu;
  if (options.device == DeviceKind::cpu && options.record_graphs_on_cpu)
    backend = make_recording_backend(std::move(backend), options.cpu_recordings_fail_from_rows);
  KVMESH_ASSIGN_OR_RETURN(auto model, Model::create(shard.config, options.layout,
                                                    std::move(shard.weights), std::move(backend),
                                                    collectives));
  *graphs_ready = model->use_decode_graphs(graphs);
  const int64_t free_bytes = model->backend().page_memory().free_device_bytes();
  if (free_bytes >= 0) {
    const ModelConfig& c = shard.config;
    const int64_t page_bytes = KvStore::page_bytes_for(
        options.cache, static_cast<int>(options.layout.layers(c).size()),
        static_cast<int>(options.layout.heads(c).size()), c.head_dim());
    const int64_t fit = KvStore::device_pages_in_free_memory(options.cache, free_bytes, page_bytes, shard.budget_pages);
    if (fit < 1)
      return resource_exhausted(model->backend().describe() + ": no device memory left for a KV page (" +
                                std::to_string(free_bytes) + " bytes free after the weights)");
    shard.budget_pages = static_cast<int32_t>(fit);
  }
  return model;
}

}  // namespace

Result<std::unique_ptr<Worker>> Worker::create(const WorkerOptions& options,
                                               std::unique_ptr<Collectives> collectives) {
  auto shard = load_local_shard(options);
  Status status = collectives->agree(shard.is_ok() ? Status::ok() : shard.status());
  if (!status.is_ok()) return status;
  const ModelConfig c = shard->config;
  Status graphs_ready;
  auto model = create_model(options, *shard, collectives.get(), &graphs_ready);
  status = collectives->agree(model.is_ok() ? Status::ok() : model.status());
  if (!status.is_ok()) return status;
  // Graphs set the size of the TP collectives in decode steps: on every rank, or on none.
  if (const Status graphs = collectives->agree(graphs_ready); !graphs.is_ok()) {
    (void)(*model)->use_decode_graphs(false);
    if (options.layout.rank == 0)
      std::fprintf(stderr, "kvmesh: decode graphs off on every rank: %s\n", graphs.to_string().c_str());
  }
  status = collectives->agree(collectives->bind_stream((*model)->backend().native_stream()));
  if (!status.is_ok()) return status;
  TierCapacity capacity;
  capacity.device_pages = static_cast<int32_t>(collectives->world_min(shard->budget_pages));
  capacity.host_slots = static_cast<int32_t>(collectives->world_min(shard->host_slots));
  capacity.disk_slots = static_cast<int32_t>(collectives->world_min(shard->disk_slots));
  auto kv = create_tiers(options, c, capacity, (*model)->backend().page_memory());
  status = collectives->agree(kv.is_ok() ? Status::ok() : kv.status());
  if (!status.is_ok()) return status;
  if (options.cache.disk_persist && capacity.disk_slots > 0)
    capacity.recovered = agree_recovered(*collectives, **kv, capacity.disk_slots);
  auto worker = std::unique_ptr<Worker>(new Worker());
  worker->collectives_ = std::move(collectives);
  worker->model_ = std::move(model).value();
  worker->kv_ = std::move(kv).value();
  worker->bytes_read_ = shard->bytes_read;
  capacity.page_bytes = static_cast<int64_t>(worker->kv_->page_bytes());
  worker->capacity_ = std::move(capacity);
  const ParallelLayout& layout = options.layout;
  worker->micro_batches_ =
      layout.pp > 1 ? (options.micro_batches > 0 ? options.micro_batches : layout.pp) : 1;
  return worker;
}

const ModelConfig& Worker::model_config() const { return model_->config(); }
int Worker::n_decode_graphs() const { return model_->n_decode_graphs(); }
const ParallelLayout& Worker::layout() const { return model_->layout(); }

Status Worker::validate(const StepPlan& plan) const {
  const KvPoolView pool = kv_->device_pool_view();
  for (const CacheOp& op : plan.cache_ops) KVMESH_RETURN_IF_ERROR(validate_cache_op(op, capacity_));
  for (const SeqWork& seq : plan.seqs)
    KVMESH_RETURN_IF_ERROR(validate_seq(seq, model_->config(), pool.block_size, pool.n_pages));
  return Status::ok();
}

Status Worker::execute(const StepPlan& plan, StepResult* result) {
  const double t0 = seconds_now();
  result->step_id = plan.step_id;
  result->seqs.clear();
  result->failed_cache_ops.clear();
  result->timings = {};
  KVMESH_RETURN_IF_ERROR(validate(plan));
  apply_cache_ops(plan, *kv_, model_->backend(), *collectives_, layout().rank, result);
  timing_ = {};
  if (!plan.seqs.empty()) {
    const double f0 = seconds_now();
    build_micro_batches(plan);
    forward_status_ = Status::ok();
    forward_micro_batches();
    KVMESH_RETURN_IF_ERROR(forward_status_);
    if (layout().is_sampler()) sample_results(plan, result);
    result->timings.forward_seconds = static_cast<float>(seconds_now() - f0);
  }
  // The page moves' own device time (by now they have run: the compute waited for them), beside
  // the host time of issuing them.
  const PageMemory::CopySeconds copies = kv_->take_copy_seconds();
  result->timings.cache_op_seconds[static_cast<int>(CacheOpKind::swap_out)] += static_cast<float>(copies.to_host);
  result->timings.cache_op_seconds[static_cast<int>(CacheOpKind::swap_in)] += static_cast<float>(copies.to_device);
  timing_.total_s = seconds_now() - t0;
  total_timing_.total_s += timing_.total_s;
  total_timing_.compute_s += timing_.compute_s;
  ++n_steps_;
  return Status::ok();
}

void Worker::build_micro_batches(const StepPlan& plan) {
  const int32_t bs = kv_->device_pool_view().block_size;
  const int n_mb = std::min<int>(micro_batches_, static_cast<int>(plan.seqs.size()));
  mbs_.resize(static_cast<size_t>(n_mb));
  // Split the sequences into n_mb contiguous groups of about equal token counts.
  const int64_t total = plan.n_tokens();
  size_t s = 0;
  int64_t seen = 0;
  for (int m = 0; m < n_mb; ++m) {
    MicroBatch& mb = mbs_[m];
    mb.seq_begin = s;
    const int64_t target = total * (m + 1) / n_mb;
    const size_t must_leave = static_cast<size_t>(n_mb - m - 1);
    while (s < plan.seqs.size() - must_leave && (s == mb.seq_begin || seen < target)) {
      seen += plan.seqs[s].n_tokens();
      ++s;
    }
    mb.seq_end = s;
    mb.tokens.clear();
    mb.batch.block_size = bs;
    mb.batch.seqs.clear();
    mb.batch.positions.clear();
    mb.batch.slots.clear();
    for (size_t k = mb.seq_begin; k < mb.seq_end; ++k) {
      const SeqWork& seq = plan.seqs[k];
      const auto begin = static_cast<int32_t>(mb.tokens.size());
      mb.batch.seqs.push_back({begin, seq.n_tokens(), seq.n_past, seq.block_table.data()});
      for (int32_t i = 0; i < seq.n_tokens(); ++i) {
        const int32_t pos = seq.n_past + i;
        mb.tokens.push_back(seq.token_ids[i]);
        mb.batch.positions.push_back(pos);
        mb.batch.slots.push_back(seq.block_table[pos / bs] * bs + pos % bs);
      }
    }
    route_logit_rows(plan, model_->config().vocab_size, &mb);
  }
}

void Worker::forward_micro_batches() {
  const ParallelLayout& l = layout();
  const int64_t e = model_->config().n_embd;
  for (size_t m = 0; m < mbs_.size(); ++m) {
    MicroBatch& mb = mbs_[m];
    const auto n = static_cast<int64_t>(mb.tokens.size());
    // Every rank runs every micro-batch (the peers wait for its sends); a failure is kept and
    // reported after the step.
    Status status = reserve(model_->backend(), &mb.x, static_cast<size_t>(n * e) * sizeof(float));
    if (!status.is_ok()) {
      KVMESH_CHECK_MSG(l.pp == 1, "cannot hold a micro-batch's activations: " + status.to_string());
      forward_status_ = status;
      return;
    }
    float* x = mb.x.f32();
    if (l.first_stage()) {
      const double c0 = seconds_now();
      status = model_->embed(mb.tokens, mb.batch, x);
      timing_.compute_s += seconds_now() - c0;
    } else {
      collectives_->pp_recv_prev(x, n * e, static_cast<int>(m));
    }
    const double c0 = seconds_now();
    if (status.is_ok()) status = model_->run_layers(mb.batch, kv_->device_pool(), n, x);
    if (status.is_ok() && l.last_stage()) {
      status = model_->head_outputs(x, &mb.head);
    }
    timing_.compute_s += seconds_now() - c0;
    if (!status.is_ok() && forward_status_.is_ok()) forward_status_ = status;
    if (!l.last_stage()) collectives_->pp_send_next(x, n * e, static_cast<int>(m));
  }
  collectives_->pp_flush_sends();
  if (forward_status_.is_ok()) forward_status_ = model_->backend().status();
}

}  // namespace kvmesh
