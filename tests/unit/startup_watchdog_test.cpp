// StartupWatchdog: ends the job (here: a flag) once its timeout passes without disarm(), never
// after disarm(), and never with no timeout; the line it prints names the rank and the flag.
#include "worker/startup_watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace kvmesh {
namespace {

TEST(StartupWatchdog, EndsTheJobOnceTheTimeoutPasses) {
  std::atomic<int> ended{0};
  ::testing::internal::CaptureStderr();
  {
    StartupWatchdog watchdog(0.2, 3, [&] { ++ended; });
    for (int i = 0; i < 100 && ended.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
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
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
  }
  {
    StartupWatchdog unbounded(0.0, 0, [&] { ++ended; });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  { StartupWatchdog destroyed_early(0.3, 0, [&] { ++ended; }); }  // the destructor disarms
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(ended.load(), 0);
}

}  // namespace
}  // namespace kvmesh
