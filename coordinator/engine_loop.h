// EngineLoop: the engine thread. It alone calls the Engine: takes submissions and cancels from the
// RequestQueue, steps the engine while it has work, waits on the queue when idle, routes every
// delta to its request's channel, and publishes gauges and latencies to Metrics. When a rank is
// lost, every open and queued request ends with an error (503 for the client), from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "coordinator/engine.h"
#include "coordinator/metrics.h"
#include "coordinator/request_queue.h"

namespace kvmesh {

struct EngineLoopOptions {
  int debug_step_delay_ms = 0;  // sleep in every step that runs work (tests)
  // A step that fails as `unavailable` (a rank stopped answering) ends every request with an error
  // and marks the loop lost; the process must then exit so the job restarts.
  bool lose_on_unavailable = false;
};

class EngineLoop {
 public:
  EngineLoop(std::unique_ptr<Engine> engine, RequestQueue& queue, Metrics& metrics, EngineLoopOptions options);
  ~EngineLoop();  // stops the queue and joins
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  void start();
  // Returns once the loop has left (after RequestQueue::stop()).
  void join();
  // The engine thread is running, has not failed, and came round its loop recently (not stuck
  // in a step).
  bool ready() const;
  // The engine thread has not left its loop yet.
  bool running() const { return running_.load(); }
  // A rank was lost (see EngineLoopOptions::lose_on_unavailable).
  bool lost() const { return lost_.load(); }
  // Seconds since the engine thread last came round its loop (a stuck step grows it).
  double stalled_seconds() const;
  // Seconds the step now running has taken (0 between steps).
  double step_seconds() const;
  // The job lost a rank: every open and queued request ends at once with `why` as a service error
  // (503), new requests and /ready get 503, and lost() turns true. Safe from any thread, also
  // while the engine thread is stuck in a step; the engine thread leaves its loop if it returns.
  void fail_lost(const std::string& why);

 private:
  struct Ticket {
    std::shared_ptr<DeltaChannel> channel;
    std::vector<uint64_t> seq_ids;
    std::vector<Clock::time_point> last_token_at;  // per choice; epoch = no token yet
    int32_t n_open = 0;
    Clock::time_point arrival;
    bool first_token_seen = false;
  };

  void run();
  void fail_everything(const std::string& message, bool unavailable);
  void fail_choices(DeltaChannel& channel, int32_t first, int32_t n, const std::string& message, bool unavailable);
  void apply(QueueBatch& batch);
  void admit(Submission& submission);
  void cancel_ticket(uint64_t ticket);
  void on_delta(uint64_t ticket, int32_t index, const GenerationDelta& delta);
  void record_timing(Ticket& t, int32_t index, const GenerationDelta& delta, Clock::time_point now);
  void step_once();
  void publish();
  void publish_kv_tiers();

  std::unique_ptr<Engine> engine_;
  RequestQueue& queue_;
  Metrics& metrics_;
  EngineLoopOptions options_;
  // The engine thread's, and fail_lost()'s from the watchdog: the one mutex outside the queues, since
  // a lost rank can hold the engine thread in a step while its requests must still end. Never held
  // across a step's MPI calls.
  std::mutex tickets_mu_;
  std::unordered_map<uint64_t, Ticket> tickets_;
  std::thread thread_;
  bool published_this_step_ = false;
  std::atomic<bool> running_{false};
  std::atomic<bool> failed_{false};
  std::atomic<bool> lost_{false};
  std::atomic<bool> lose_claimed_{false};
  std::atomic<Clock::rep> heartbeat_{0};  // steady clock, at the top of every loop round
  std::atomic<Clock::rep> step_started_{0};  // steady clock when the running step began; 0: none
};

}  // namespace kvmesh
