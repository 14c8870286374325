// Worker: validates a StepPlan, applies its CacheOps, runs the forward and samples the results.
#include "worker/worker.h"

#include <cmath>
#include <string>

#include "common/safetensors.h"
#include "worker/cpu/cpu_backend.h"
#include "worker/kv_store.h"
#include "worker/model.h"
#include "worker/sampler.h"

namespace kvmesh {

struct Worker::Scratch {
  std::vector<int32_t> tokens;
  BatchLayout batch;
  std::vector<int32_t> logit_rows;
  std::vector<float> logits;
  std::vector<double> logprobs;
  std::vector<float> penalised;
};

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
    if (t < 0 || t >= c.vocab_size) return out_of_range(who + "token id " + std::to_string(t) + " outside the vocabulary");
  const int64_t pages_needed = (end + block_size - 1) / block_size;
  if (static_cast<int64_t>(s.block_table.size()) < pages_needed)
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

Result<std::unique_ptr<Worker>> Worker::create(const WorkerOptions& options) {
  KVMESH_ASSIGN_OR_RETURN(ModelConfig config, load_model_config(options.model_dir + "/config.json"));
  KVMESH_ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::open_dir(options.model_dir));
  KVMESH_ASSIGN_OR_RETURN(ModelWeights weights, load_weights(*checkpoint, config));
  KVMESH_ASSIGN_OR_RETURN(auto kv, KvStore::create(options.cache, config.n_layer, config.n_head,
                                                   config.head_dim()));
  auto worker = std::unique_ptr<Worker>(new Worker());
  worker->model_ = std::make_unique<Model>(config, std::move(weights),
                                           make_cpu_backend(options.n_threads));
  worker->kv_ = std::move(kv);
  worker->scratch_ = std::make_unique<Scratch>();
  return worker;
}

const ModelConfig& Worker::model_config() const { return model_->config(); }
int32_t Worker::n_device_pages() const { return kv_->n_device_pages(); }

Status Worker::execute(const StepPlan& plan, StepResult* result) {
  const ModelConfig& c = model_->config();
  KvPoolView pool = kv_->device_pool();
  result->step_id = plan.step_id;
  result->seqs.clear();
  result->failed_disk_loads.clear();

  std::vector<std::pair<int32_t, int32_t>> copies;
  for (const CacheOp& op : plan.cache_ops) {
    if (op.kind != CacheOpKind::copy) return invalid_argument("cache op kind not supported by this worker");
    if (op.src < 0 || op.src >= pool.n_pages || op.dst < 0 || op.dst >= pool.n_pages)
      return out_of_range("cache op page outside the pool");
    copies.emplace_back(op.src, op.dst);
  }
  if (!copies.empty()) model_->backend().copy_pages(pool, copies);
  if (plan.seqs.empty()) return Status::ok();

  Scratch& s = *scratch_;
  s.tokens.clear();
  s.batch.seqs.clear();
  s.batch.positions.clear();
  s.batch.slots.clear();
  s.logit_rows.clear();
  for (const SeqWork& seq : plan.seqs) {
    KVMESH_RETURN_IF_ERROR(validate_seq(seq, c, pool.block_size, pool.n_pages));
    const auto begin = static_cast<int32_t>(s.tokens.size());
    s.batch.seqs.push_back({begin, seq.n_tokens(), seq.n_past, seq.block_table.data()});
    for (int32_t i = 0; i < seq.n_tokens(); ++i) {
      const int32_t pos = seq.n_past + i;
      s.tokens.push_back(seq.token_ids[i]);
      s.batch.positions.push_back(pos);
      s.batch.slots.push_back(seq.block_table[pos / pool.block_size] * pool.block_size +
                              pos % pool.block_size);
      const bool last = i + 1 == seq.n_tokens();
      if (seq.prompt_logprobs >= 0 || (last && seq.sample)) s.logit_rows.push_back(begin + i);
    }
  }
  model_->forward(s.tokens, s.batch, s.logit_rows, pool, &s.logits);

  // Log-probs and sampling, row by row in plan order.
  const int32_t v = c.vocab_size;
  size_t row = 0;
  for (const SeqWork& seq : plan.seqs) {
    SeqResult out;
    out.seq_id = seq.seq_id;
    const int32_t n_rows = seq.prompt_logprobs >= 0 ? seq.n_tokens() : (seq.sample ? 1 : 0);
    for (int32_t i = 0; i < n_rows; ++i, ++row) {
      const float* logits = s.logits.data() + row * static_cast<size_t>(v);
      const bool last = i + 1 == n_rows;
      if (seq.prompt_logprobs >= 0) {
        const int32_t target = last ? seq.next_prompt_token : seq.token_ids[i + 1];
        if (target >= 0) {
          log_softmax(logits, v, &s.logprobs);
          out.prompt_logprobs.push_back(position_logprobs(s.logprobs, target, seq.prompt_logprobs));
        }
      }
      if (!(last && seq.sample)) continue;
      const float* to_sample = logits;
      if (seq.sampling.has_penalties() || !seq.banned_token_ids.empty()) {
        s.penalised.assign(logits, logits + v);
        apply_penalties(seq.sampling, seq.history_ids, seq.n_history_prompt, s.penalised.data(), v);
        for (int32_t t : seq.banned_token_ids)
          if (t >= 0 && t < v) s.penalised[t] = -INFINITY;
        to_sample = s.penalised.data();
      }
      const int64_t position = static_cast<int64_t>(seq.n_past) + seq.n_tokens();
      out.token = sample_token(seq.sampling, to_sample, v, position);
      if (seq.sampling.n_logprobs >= 0) {
        log_softmax(logits, v, &s.logprobs);
        out.token_logprobs = position_logprobs(s.logprobs, out.token, seq.sampling.n_logprobs);
      }
    }
    result->seqs.push_back(std::move(out));
  }
  return Status::ok();
}

}  // namespace kvmesh
