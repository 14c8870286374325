// StartupWatchdog: bounds one rank's start-up in a job of many ranks; unless disarmed in time it
// prints one line naming the rank and ends the job. Why: docs/cluster.md ("The start-up watchdog").
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace kvmesh {

class StartupWatchdog {
 public:
  // timeout_s <= 0: no bound. end_job runs on expiry, after the line is printed, and must not
  // return (MPI_Abort); tests pass their own.
  StartupWatchdog(double timeout_s, int rank, std::function<void()> end_job);
  ~StartupWatchdog();  // disarms
  StartupWatchdog(const StartupWatchdog&) = delete;
  StartupWatchdog& operator=(const StartupWatchdog&) = delete;

  // The start-up is over: the watchdog will not fire.
  void disarm();
  // Whether the watchdog is done: it was disarmed (or has no timeout), or it fired.
  bool done() const { return done_.load(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// For tests of a stuck start-up: KVMESH_DEBUG_STALL_STARTUP_RANK=<rank> makes that rank stop here
// (sleeping; 600 s at most), as a rank held in its start-up would.
void stall_startup_if_asked(int rank);

}  // namespace kvmesh
