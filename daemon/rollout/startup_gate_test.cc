#include "daemon/rollout/startup_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/time/clock.h"

namespace lockstep::daemon {
namespace {

TEST(StartupGateTest, AtMostSlotsStartAtOnceAndALeaveLetsTheNextIn) {
  StartupGate gate(absl::Hours(1));
  uint64_t a = gate.Enter(2, nullptr);
  uint64_t b = gate.Enter(2, nullptr);
  ASSERT_NE(a, 0u);
  ASSERT_NE(b, 0u);
  EXPECT_EQ(gate.starting(), 2);
  std::atomic<bool> entered{false};
  std::thread third([&] {
    EXPECT_NE(gate.Enter(2, nullptr), 0u);
    entered = true;
  });
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(entered) << "a third run started while two were starting";
  gate.Leave(a);
  gate.Leave(a);  // idempotent: does not free a second slot
  third.join();
  EXPECT_TRUE(entered);
  EXPECT_EQ(gate.starting(), 2);
}

TEST(StartupGateTest, ARunThatStaysSilentLeavesAfterTheWindow) {
  StartupGate gate(absl::Milliseconds(300));
  ASSERT_NE(gate.Enter(1, nullptr), 0u);
  absl::Time start = absl::Now();
  ASSERT_NE(gate.Enter(1, nullptr), 0u);
  absl::Duration waited = absl::Now() - start;
  EXPECT_GE(waited, absl::Milliseconds(250));
  EXPECT_LT(waited, absl::Seconds(5));
}

TEST(StartupGateTest, CancelStopsTheWait) {
  StartupGate gate(absl::Hours(1));
  ASSERT_NE(gate.Enter(1, nullptr), 0u);
  std::atomic<bool> cancel{false};
  std::atomic<uint64_t> got{1};
  std::thread waiting([&] { got = gate.Enter(1, &cancel); });
  absl::SleepFor(absl::Milliseconds(150));
  cancel = true;
  waiting.join();
  EXPECT_EQ(got, 0u);
  EXPECT_EQ(gate.starting(), 1);
}

TEST(StartupGateTest, NoSlotsMeansNoLimit) {
  StartupGate gate(absl::Hours(1));
  for (int i = 0; i < 50; ++i) ASSERT_NE(gate.Enter(0, nullptr), 0u);
  EXPECT_EQ(gate.starting(), 50);
}

}  // namespace
}  // namespace lockstep::daemon
