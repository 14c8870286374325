// coordinator_step_bench: the coordinator's own host time per decode step (scheduling, the plan,
// postprocessing, detokenising each new token, the output deltas) for the GPT-2 XL shape, with an
// executor that answers every plan at once, so nothing of a model's time is in it. Beside a GPU's
// decode step (about 1 ms at batch 1 for that shape) it says how much of a step the coordinator
// holds the device back.
#include <cstdio>
#include <memory>
#include <string>

#include "bench_util.h"
#include "common/checkpoint_maker.h"
#include "common/data_dir.h"
#include "common/tokenizer.h"
#include "coordinator/engine.h"
#include "engine_runs.h"

using namespace kvmesh;

namespace {

// Answers each sampling sequence with a made-up token (never EOS: the requests ignore it anyway).
class InstantExecutor final : public StepExecutor {
 public:
  explicit InstantExecutor(int32_t device_pages) { capacity_.device_pages = device_pages; }

  Status execute(const StepPlan& plan, StepResult* result) override {
    result->step_id = plan.step_id;
    result->seqs.clear();
    for (const SeqWork& seq : plan.seqs) {
      SeqResult r;
      r.seq_id = seq.seq_id;
      if (seq.sample) r.token = static_cast<int32_t>((seq.seq_id * 7919 + plan.step_id * 13) % 50000);
      result->seqs.push_back(std::move(r));
    }
    return Status::ok();
  }
  const TierCapacity& capacity() const override { return capacity_; }

 private:
  TierCapacity capacity_;
};

}  // namespace

int main() {
  auto tokenizer = Tokenizer::from_model_dir("", shipped_gpt2_tokenizer_dir());
  if (!tokenizer.is_ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().to_string().c_str());
    return 1;
  }
  const std::shared_ptr<const Tokenizer> shared(std::move(tokenizer).value());
  auto model = preset_model_config("gpt2-xl");
  if (!model.is_ok()) {
    std::fprintf(stderr, "%s\n", model.status().to_string().c_str());
    return 1;
  }
  EngineConfig config;
  config.model = *model;
  config.max_num_seqs = 128;
  config.max_batch_tokens = 8192;
  constexpr int kNewTokens = 512;  // per sequence: contexts from 32 to 544 tokens
  std::printf("coordinator host time per decode step, us (GPT-2 XL shape, 32-token prompts, %d new tokens "
              "each, an executor that answers at once)\n\n",
              kNewTokens);
  std::printf("| batch | greedy | sampled (T 1, top-p 0.95) | penalised (history sent each step) |\n");
  std::printf("|---|---|---|---|\n");
  for (int batch : {1, 8, 32, 128}) {
    std::printf("| %d |", batch);
    for (auto picking : {bench::Picking::greedy, bench::Picking::sampled, bench::Picking::penalised}) {
      Engine engine(config, std::make_unique<InstantExecutor>(8192), shared);
      const double tokens_per_s = bench::decode_tokens_per_s(engine, batch, kNewTokens, picking);
      if (tokens_per_s > 0)
        std::printf(" %.2f |", 1e6 * batch / tokens_per_s);
      else
        std::printf(" failed |");
    }
    std::printf("\n");
  }
  return 0;
}
