// RequestQueue and DeltaChannel: the coordinator's only mutexes. HTTP threads submit generation
// requests and cancellations to the engine thread through the queue; the engine thread hands each
// request's deltas back through its channel, which wakes the HTTP session that owns it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "coordinator/request.h"

namespace kvmesh {

using Clock = std::chrono::steady_clock;

// One delta of one choice, stamped with the time the engine produced it.
struct ChoiceEvent {
  int32_t index = 0;
  GenerationDelta delta;
  Clock::time_point at;
};

// Deltas of one request (all its choices), engine thread -> HTTP session. push() never blocks on
// the session: events pile up until the session takes them (its writes are the backpressure).
class DeltaChannel {
 public:
  // `notify` runs on the engine thread when the channel turns non-empty; it must not block (it
  // posts a wake-up to the session's executor).
  explicit DeltaChannel(std::function<void()> notify) : notify_(std::move(notify)) {}

  void push(ChoiceEvent event);     // engine thread
  std::vector<ChoiceEvent> take();  // HTTP thread; re-arms the notification

 private:
  std::mutex mu_;
  std::vector<ChoiceEvent> events_;
  bool notified_ = false;
  std::function<void()> notify_;
};

// A request on its way to the engine: one GenerationRequest per prompt (each a sequence group of n
// choices, numbered on in prompt order), one channel for all.
struct Submission {
  uint64_t ticket = 0;
  std::vector<GenerationRequest> prompts;
  std::shared_ptr<DeltaChannel> channel;
  Clock::time_point arrival;
};

// What the engine thread picks up in one go.
struct QueueBatch {
  std::vector<Submission> submissions;
  std::vector<uint64_t> cancels;  // tickets
  bool cancel_all = false;        // drain deadline passed: end everything
  bool stop = false;              // leave the loop once the engine is idle
};

class RequestQueue {
 public:
  explicit RequestQueue(int32_t max_waiting) : max_waiting_(max_waiting) {}

  // ---- HTTP threads ----
  // Queues a request. resource_exhausted when the waiting sequences would exceed max_waiting (429;
  // a request larger than the whole queue is refused before, by Admission), unavailable while
  // draining or stopped (503). Returns the ticket to cancel it with.
  Result<uint64_t> submit(std::vector<GenerationRequest> prompts, std::shared_ptr<DeltaChannel> channel,
                          Clock::time_point arrival);
  // The client went away: drops a request not yet taken, or forwards the cancel to the engine.
  void cancel(uint64_t ticket);

  // ---- main thread (signals) ----
  void set_draining();            // new submissions get unavailable
  bool draining() const { return draining_.load(); }
  void cancel_all();              // ends every request at the engine's next step
  void stop();                    // the engine loop exits when idle

  // ---- engine thread ----
  // Takes everything posted. When `wait` is set and nothing is posted, blocks until something is
  // or `max_wait` passes.
  QueueBatch take(bool wait, std::chrono::milliseconds max_wait);
  // Sequences waiting in the engine, for admission (called after every step).
  void publish_engine_waiting(int32_t n_waiting);

 private:
  const int32_t max_waiting_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Submission> pending_;
  std::vector<uint64_t> cancels_;
  int64_t n_pending_seqs_ = 0;   // sequences the pending submissions will run
  int64_t n_engine_waiting_ = 0;
  uint64_t next_ticket_ = 1;
  bool cancel_all_ = false;
  bool stop_ = false;
  std::atomic<bool> draining_{false};
};

}  // namespace kvmesh
