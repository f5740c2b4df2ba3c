#include "daemon/rollout/process.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "absl/time/clock.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ProcessTest, CapturesLinesExitCodeAndEnvironment) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "echo one; echo \"two $LOCKSTEP_T\" >&2; exit 3"};
  spec.env = {"LOCKSTEP_T=secret-in-env"};
  spec.cwd = "/tmp";
  std::vector<std::string> lines;
  int pid = 0;
  ProcessResult r = RunProcess(
      spec, nullptr, [&](int p) { pid = p; }, [&](const std::string& l) { lines.push_back(l); });
  EXPECT_GT(pid, 0);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(lines, ElementsAre("one", "two secret-in-env"));
  EXPECT_EQ(r.Describe(), "exit 3");
}

TEST(ProcessTest, TimeoutStopsTheWholeGroup) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "sleep 30 & sleep 30; echo never"};
  spec.timeout = absl::Milliseconds(300);
  spec.grace = absl::Milliseconds(500);
  absl::Time start = absl::Now();
  ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, 15);
  EXPECT_THAT(r.Describe(), HasSubstr("timed out"));
}

TEST(ProcessTest, CancelStopsIt) {
  ProcessSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  std::atomic<bool> cancel{false};
  std::thread t([&] {
    absl::SleepFor(absl::Milliseconds(200));
    cancel = true;
  });
  ProcessResult r = RunProcess(spec, &cancel, nullptr, nullptr);
  t.join();
  EXPECT_TRUE(r.cancelled);
  EXPECT_FALSE(r.ok());
}

TEST(ProcessTest, MissingCommandIsAClearError) {
  ProcessSpec spec;
  spec.argv = {"/no/such/alembic", "upgrade"};
  ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_THAT(r.output, HasSubstr("cannot execute /no/such/alembic"));
}

// That a child dies with lockstepd (PR_SET_PDEATHSIG) is tested for real in
// tests/e2e/test_rollout.py: kill -9 of lockstepd, then no Alembic is left.

}  // namespace
}  // namespace lockstep::daemon
