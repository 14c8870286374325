// Worker: validates a StepPlan, applies its CacheOps, runs its stage's forward in micro-batches
// (activations to the next stage as soon as each is done) and, on the sampling rank, samples.
#include "worker/worker.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "common/synthetic_models.h"
#include "worker/cpu/cpu_backend.h"
#include "worker/kv_store.h"
#include "worker/micro_batch.h"
#include "worker/model.h"
#include "worker/weight_source.h"

namespace kvmesh {

namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

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
  if (s.sampling.n_logprobs > kMaxLogprobs || s.prompt_logprobs > kMaxLogprobs)
    return invalid_argument(who + "too many log-probs asked");
  return Status::ok();
}

}  // namespace

Worker::Worker() = default;
Worker::~Worker() = default;

namespace {

// What one rank loads on its own before the ranks agree that all of them succeeded.
struct LocalShard {
  ModelConfig config;
  ModelWeights weights;
  int32_t budget_pages = 0;
  uint64_t bytes_read = 0;
};

Result<LocalShard> load_local_shard(const WorkerOptions& options) {
  LocalShard shard;
  KVMESH_ASSIGN_OR_RETURN(shard.config, resolve_model_config(options.model_dir));
  const ModelConfig& c = shard.config;
  const ParallelLayout& layout = options.layout;
  KVMESH_RETURN_IF_ERROR(validate_layout(c, layout.tp, layout.pp, layout.world_size()));
  KVMESH_ASSIGN_OR_RETURN(auto source, open_weight_source(options.model_dir, c, options.synthetic_seed));
  KVMESH_ASSIGN_OR_RETURN(shard.weights, load_weights(*source, c, layout));
  shard.bytes_read = source->bytes_read();
  KVMESH_ASSIGN_OR_RETURN(shard.budget_pages,
                          KvStore::budget_pages(options.cache, static_cast<int>(layout.layers(c).size()),
                                                static_cast<int>(layout.heads(c).size()), c.head_dim()));
  return shard;
}

}  // namespace

Result<std::unique_ptr<Worker>> Worker::create(const WorkerOptions& options,
                                               std::unique_ptr<Collectives> collectives) {
  auto shard = load_local_shard(options);
  Status status = collectives->agree(shard.is_ok() ? Status::ok() : shard.status());
  if (!status.is_ok()) return status;
  const ModelConfig& c = shard->config;
  const ParallelLayout& layout = options.layout;
  const auto n_pages = static_cast<int32_t>(collectives->world_min(shard->budget_pages));
  auto kv = KvStore::create(options.cache, static_cast<int>(layout.layers(c).size()),
                            static_cast<int>(layout.heads(c).size()), c.head_dim(), n_pages);
  status = collectives->agree(kv.is_ok() ? Status::ok() : kv.status());
  if (!status.is_ok()) return status;
  auto worker = std::unique_ptr<Worker>(new Worker());
  worker->collectives_ = std::move(collectives);
  worker->model_ = std::make_unique<Model>(c, layout, std::move(shard->weights),
                                           make_cpu_backend(options.n_threads),
                                           worker->collectives_.get());
  worker->kv_ = std::move(kv).value();
  worker->bytes_read_ = shard->bytes_read;
  worker->capacity_.device_pages = n_pages;
  worker->capacity_.page_bytes = static_cast<int64_t>(worker->kv_->page_bytes());
  worker->micro_batches_ =
      layout.pp > 1 ? (options.micro_batches > 0 ? options.micro_batches : layout.pp) : 1;
  return worker;
}

const ModelConfig& Worker::model_config() const { return model_->config(); }
const ParallelLayout& Worker::layout() const { return model_->layout(); }

Status Worker::validate(const StepPlan& plan) const {
  const KvPoolView pool = kv_->device_pool_view();
  for (const CacheOp& op : plan.cache_ops) {
    if (op.kind != CacheOpKind::copy) return invalid_argument("cache op kind not supported by this worker");
    if (op.src < 0 || op.src >= pool.n_pages || op.dst < 0 || op.dst >= pool.n_pages)
      return out_of_range("cache op page outside the pool");
  }
  for (const SeqWork& seq : plan.seqs)
    KVMESH_RETURN_IF_ERROR(validate_seq(seq, model_->config(), pool.block_size, pool.n_pages));
  return Status::ok();
}

Status Worker::execute(const StepPlan& plan, StepResult* result) {
  const double t0 = seconds_now();
  result->step_id = plan.step_id;
  result->seqs.clear();
  result->failed_cache_ops.clear();
  KVMESH_RETURN_IF_ERROR(validate(plan));
  std::vector<std::pair<int32_t, int32_t>> copies;
  for (const CacheOp& op : plan.cache_ops) copies.emplace_back(op.src, op.dst);
  if (!copies.empty()) model_->backend().copy_pages(kv_->device_pool(), copies);
  timing_ = {};
  if (!plan.seqs.empty()) {
    build_micro_batches(plan);
    forward_micro_batches();
    if (layout().is_sampler()) sample_results(plan, result);
  }
  timing_.total_s = seconds_now() - t0;
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
    mb.batch.seqs.clear();
    mb.batch.positions.clear();
    mb.batch.slots.clear();
    mb.logit_rows.clear();
    for (size_t k = mb.seq_begin; k < mb.seq_end; ++k) {
      const SeqWork& seq = plan.seqs[k];
      const auto begin = static_cast<int32_t>(mb.tokens.size());
      mb.batch.seqs.push_back({begin, seq.n_tokens(), seq.n_past, seq.block_table.data()});
      for (int32_t i = 0; i < seq.n_tokens(); ++i) {
        const int32_t pos = seq.n_past + i;
        mb.tokens.push_back(seq.token_ids[i]);
        mb.batch.positions.push_back(pos);
        mb.batch.slots.push_back(seq.block_table[pos / bs] * bs + pos % bs);
        if (seq.prompt_logprobs >= 0 || (i + 1 == seq.n_tokens() && seq.sample))
          mb.logit_rows.push_back(begin + i);
      }
    }
  }
}

void Worker::forward_micro_batches() {
  const ParallelLayout& l = layout();
  const int64_t e = model_->config().n_embd;
  for (size_t m = 0; m < mbs_.size(); ++m) {
    MicroBatch& mb = mbs_[m];
    const auto n = static_cast<int64_t>(mb.tokens.size());
    mb.x.resize(static_cast<size_t>(n * e));
    if (l.first_stage()) {
      const double c0 = seconds_now();
      model_->embed(mb.tokens, mb.batch, mb.x.data());
      timing_.compute_s += seconds_now() - c0;
    } else {
      collectives_->pp_recv_prev(mb.x.data(), n * e, static_cast<int>(m));
    }
    const double c0 = seconds_now();
    model_->run_layers(mb.batch, kv_->device_pool(), n, mb.x.data());
    if (l.last_stage()) model_->logits(mb.x.data(), mb.logit_rows, &mb.logits);
    timing_.compute_s += seconds_now() - c0;
    if (!l.last_stage()) collectives_->pp_send_next(mb.x.data(), n * e, static_cast<int>(m));
  }
  collectives_->pp_flush_sends();
}

}  // namespace kvmesh
