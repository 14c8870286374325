// StartupWatchdog: ends the job (here: a flag) once its timeout passes without disarm(), never
// after disarm(), and never with no timeout; the line it prints names the rank and the flag. The
// tests wait on the watchdog being done, not on the clock.
#include "worker/startup_watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace kvmesh {
namespace {

// Waits (bounded) until the watchdog is done: disarmed, or fired.
bool done_within(const StartupWatchdog& watchdog, int ms) {
  for (int i = 0; i < ms / 5 && !watchdog.done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return watchdog.done();
}

TEST(StartupWatchdog, EndsTheJobOnceTheTimeoutPasses) {
  std::atomic<int> ended{0};
  ::testing::internal::CaptureStderr();
  {
    StartupWatchdog watchdog(0.2, 3, [&] { ++ended; });
    ASSERT_TRUE(done_within(watchdog, 10000));
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(ended.load(), 1);
  EXPECT_NE(err.find("kvmesh rank 3: start-up did not finish within 0.2 s (--startup-timeout)"), std::string::npos)
      << err;
}

TEST(StartupWatchdog, NeverFiresOnceDisarmedOrWithoutATimeout) {
  std::atomic<int> ended{0};
  {
    StartupWatchdog watchdog(0.3, 0, [&] { ++ended; });
    watchdog.disarm();
    // Done at once, without firing: a disarm the thread missed would fire after 0.3 s and be done
    // only then, with `ended` counted.
    ASSERT_TRUE(done_within(watchdog, 10000));
    EXPECT_EQ(ended.load(), 0);
  }
  {
    StartupWatchdog unbounded(0.0, 0, [&] { ++ended; });
    EXPECT_TRUE(unbounded.done());  // nothing to wait for
  }
  { StartupWatchdog destroyed_early(30.0, 0, [&] { ++ended; }); }  // the destructor disarms and joins
  EXPECT_EQ(ended.load(), 0);
}

}  // namespace
}  // namespace kvmesh
