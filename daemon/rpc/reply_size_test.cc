#include "daemon/rpc/reply_size.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lockstep::daemon {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A rollout of 200 tenants, each step with 64 KiB of output (what a step
// keeps): 12.8 MB, three times what a client accepts.
v1::RolloutResponse BigRollout(int failed_index) {
  v1::RolloutResponse resp;
  v1::Rollout* r = resp.mutable_rollout();
  r->set_id("r-1");
  for (int i = 0; i < 200; ++i) {
    v1::RolloutStep* s = r->add_steps();
    s->set_database("t" + std::to_string(i));
    s->set_state(i == failed_index ? v1::STEP_STATE_FAILED : v1::STEP_STATE_SUCCEEDED);
    s->set_output(std::string(64 * 1024 - 20, 'x') + "\nthe last line " + std::to_string(i));
    if (i == 1) s->set_output_log("/var/lib/lockstep/lockstep-output/r-1/step-1.log");
  }
  return resp;
}

TEST(FitRolloutReplyTest, SucceededStepsLoseTheirOutputFirstAndAFailedOneKeepsItsEnd) {
  v1::RolloutResponse resp = BigRollout(7);
  ASSERT_GT(resp.ByteSizeLong(), kMaxReplyBytes);
  EXPECT_EQ(FitRolloutReply(resp, {resp.mutable_rollout()}), 199);
  EXPECT_LE(resp.ByteSizeLong(), kMaxReplyBytes);
  const v1::RolloutStep& failed = resp.rollout().steps(7);
  EXPECT_EQ(failed.output().size(), 64 * 1024 - 20 + 16);  // whole: it fits now
  const v1::RolloutStep& ok = resp.rollout().steps(0);
  EXPECT_THAT(ok.output(), StartsWith("[lockstep: 65532 bytes of output left out"));
  EXPECT_THAT(ok.output(), HasSubstr("`lockstep watch r-1` replays every line"));
  // A step whose output went to its log names the log instead.
  EXPECT_THAT(resp.rollout().steps(1).output(),
              HasSubstr("; the whole output is in /var/lib/lockstep/lockstep-output/r-1/"
                        "step-1.log on lockstepd's host]"));
}

TEST(FitRolloutReplyTest, ManyFailedStepsKeepTheirLastLinesThenNothing) {
  v1::RolloutResponse resp = BigRollout(-1);
  for (v1::RolloutStep& s : *resp.mutable_rollout()->mutable_steps())
    s.set_state(v1::STEP_STATE_FAILED);
  FitRolloutReply(resp, {resp.mutable_rollout()});
  EXPECT_LE(resp.ByteSizeLong(), kMaxReplyBytes);
  EXPECT_THAT(resp.rollout().steps(3).output(), HasSubstr("the last line 3"));  // 4 KiB kept
  // A reply that fits is left alone.
  v1::RolloutResponse small = BigRollout(-1);
  small.mutable_rollout()->mutable_steps()->DeleteSubrange(10, 190);
  EXPECT_EQ(FitRolloutReply(small, {small.mutable_rollout()}), 0);
  EXPECT_THAT(small.rollout().steps(3).output(), HasSubstr("the last line 3"));
  EXPECT_EQ(small.rollout().steps(3).output().size(), 64 * 1024 - 20 + 16);
}

}  // namespace
}  // namespace lockstep::daemon
