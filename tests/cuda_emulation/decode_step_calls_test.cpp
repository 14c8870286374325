// What one decode step asks of the CUDA runtime, counted by the emulated runtime: with decode
// graphs, a step replays one graph and the host waits for the device once (for the sampled tokens,
// greedy, drawn or both), and it allocates nothing. The table of calls per step is printed for
// reading beside a GPU's host time between steps.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>

#include "emulated_runtime.h"
#include "engine_fixture.h"

namespace kvmesh::testing {
namespace {

using CallCounts = std::map<std::string, long>;

long count_of(const CallCounts& calls, const std::string& name) {
  auto it = calls.find(name);
  return it == calls.end() ? 0 : it->second;
}

// The calls of n_steps decode steps of `batch` sequences, once every sequence has its first token
// and each bucket's graph is recorded (the first steps of a bucket warm it up and record it).
// How the sequences pick their tokens: all greedy, all drawn, or every other one drawn.
enum class Picking { greedy, sampled, mixed };

CallCounts decode_step_calls(int batch, Picking picking, int n_steps, bool eager = false) {
  EngineOptions o;
  o.eager = eager;
  o.device = DeviceKind::cuda;
  o.kv_dtype = DType::bf16;
  o.device_bytes = 256ll << 20;
  std::string error;
  const Worker* worker = nullptr;
  auto engine = make_engine(hf_fixture_dir(), o, &error, &worker);
  EXPECT_NE(engine, nullptr) << error;
  if (engine == nullptr) return {};
  constexpr int kWarmSteps = 3;
  int first = 0;
  for (int b = 0; b < batch; ++b) {
    GenerationRequest r = greedy_request({10 + b, 20, 30, 40 + b}, 1 + kWarmSteps + n_steps + 1);
    if (picking == Picking::sampled || (picking == Picking::mixed && b % 2 == 1)) {
      r.sampling.temperature = 1.0f;
      r.sampling.top_p = 0.9f;
      r.sampling.seed = static_cast<uint64_t>(b + 1);
    }
    auto added = engine->add_request(r, [&first](const GenerationDelta& d) { first += d.n_generated_tokens == 1; });
    EXPECT_TRUE(added.is_ok()) << added.status().to_string();
  }
  for (int step = 0; first < batch && step < 64; ++step) EXPECT_TRUE(engine->step().is_ok());
  EXPECT_EQ(first, batch);
  for (int step = 0; step < kWarmSteps; ++step) EXPECT_TRUE(engine->step().is_ok());
  EXPECT_EQ(worker->n_decode_graphs() > 0, !eager);
  cuemu::reset_runtime_calls();
  for (int step = 0; step < n_steps; ++step) EXPECT_TRUE(engine->step().is_ok());
  return cuemu::runtime_calls();
}

void print_per_step(const std::string& title, const CallCounts& calls, int n_steps) {
  std::printf("%s, runtime calls per decode step:\n", title.c_str());
  for (const auto& [name, n] : calls) std::printf("  %-28s %6.1f\n", name.c_str(), static_cast<double>(n) / n_steps);
}

TEST(DecodeStepCalls, AGraphStepReplaysOnceAndWaitsOnce) {
  constexpr int kSteps = 4;
  const std::pair<Picking, const char*> pickings[] = {
      {Picking::greedy, "greedy"}, {Picking::sampled, "sampled"}, {Picking::mixed, "greedy and sampled"}};
  for (const auto& [picking, name] : pickings) {
    for (const int batch : {1, 3}) {
      if (picking == Picking::mixed && batch == 1) continue;
      const std::string title = std::string(name) + ", batch " + std::to_string(batch);
      const CallCounts calls = decode_step_calls(batch, picking, kSteps);
      print_per_step(title, calls, kSteps);
      EXPECT_EQ(count_of(calls, "cudaGraphLaunch"), kSteps) << title;
      EXPECT_EQ(count_of(calls, "host wait for unfinished work"), kSteps) << title << ": one wait a step, for the sampled tokens";
      for (const char* name : {"cudaMalloc", "cudaFree", "cudaMallocHost", "cudaFreeHost", "cudaStreamBeginCapture"})
        EXPECT_EQ(count_of(calls, name), 0) << title << ": " << name;
    }
  }
}

// Without graphs (--enforce-eager) the step's kernels are launched one by one, and the host still
// waits once.
TEST(DecodeStepCalls, AnEagerStepWaitsOnce) {
  constexpr int kSteps = 2;
  const CallCounts calls = decode_step_calls(3, Picking::mixed, kSteps, /*eager=*/true);
  print_per_step("eager, greedy and sampled, batch 3", calls, kSteps);
  EXPECT_EQ(count_of(calls, "cudaGraphLaunch"), 0);
  EXPECT_GT(count_of(calls, "kernel launch"), 10 * kSteps);
  EXPECT_EQ(count_of(calls, "host wait for unfinished work"), kSteps);
}

}  // namespace
}  // namespace kvmesh::testing
