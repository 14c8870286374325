// StartupWatchdog: a thread that waits for disarm() up to the timeout, then reports and ends the
// job; and the stall that tests of it ask for.
#include "worker/startup_watchdog.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace kvmesh {

StartupWatchdog::StartupWatchdog(double timeout_s, int rank, std::function<void()> end_job) {
  if (!(timeout_s > 0)) {
    done_ = true;
    return;
  }
  thread_ = std::thread([this, timeout_s, rank, end_job = std::move(end_job)] {
    std::unique_lock<std::mutex> lock(mu_);
    const auto limit = std::chrono::duration<double>(timeout_s);
    if (cv_.wait_for(lock, limit, [this] { return disarmed_; })) {
      done_ = true;
      return;
    }
    std::fprintf(stderr,
                 "kvmesh rank %d: start-up did not finish within %g s (--startup-timeout): this rank or a "
                 "peer is stuck loading, allocating or joining the others; ending the job\n",
                 rank, timeout_s);
    std::fflush(stderr);
    end_job();
    done_ = true;
  });
}

StartupWatchdog::~StartupWatchdog() {
  disarm();
  if (thread_.joinable()) thread_.join();
}

void stall_startup_if_asked(int rank) {
  const char* named = std::getenv("KVMESH_DEBUG_STALL_STARTUP_RANK");
  if (named == nullptr || std::to_string(rank) != named) return;
  std::fprintf(stderr, "kvmesh rank %d: stopping in its start-up (KVMESH_DEBUG_STALL_STARTUP_RANK)\n", rank);
  std::fflush(stderr);
  std::this_thread::sleep_for(std::chrono::seconds(600));
}

void StartupWatchdog::disarm() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    disarmed_ = true;
  }
  cv_.notify_all();
}

}  // namespace kvmesh
