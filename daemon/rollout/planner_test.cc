#include "daemon/rollout/planner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "migrations/test_util.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// a -> b -> c (head)
constexpr char kInventory[] = R"yaml(
project: {scripts: /nowhere}
environments:
  - name: dev
    databases: [{name: app, url: "sqlite:///dev.db"}]
  - name: staging
    after: dev
    soak: 10m
    databases: [{name: app, url: "sqlite:///staging.db"}]
  - name: prod
    after: staging
    approval: required
    canary: [t5, t2]
    batch_size: 2
    max_parallel: 3
    max_failures: 1
    on_failure: downgrade
    databases:
      - {name: t1, url: "sqlite:///t1.db"}
      - {name: t2, url: "sqlite:///t2.db"}
      - {name: t3, url: "sqlite:///t3.db"}
      - {name: t4, url: "sqlite:///t4.db"}
      - {name: t5, url: "sqlite:///t5.db"}
      - {name: t6, url: "sqlite:///t6.db"}
)yaml";

RolloutRequest Req(const std::string& target, std::vector<std::string> environments = {},
                   std::vector<std::string> databases = {}, bool override_promotion = false) {
  RolloutRequest r;
  r.target = target;
  r.environments = std::move(environments);
  r.databases = std::move(databases);
  r.override_promotion = override_promotion;
  return r;
}

class PlannerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto g = migrations::testing::BuildGraph({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}});
    ASSERT_TRUE(g.ok());
    graph_ = std::make_unique<migrations::RevisionGraph>(*std::move(g));
    resolver_ = std::make_unique<migrations::Resolver>(graph_.get());
    auto inv = config::ParseInventory(kInventory, "/etc/lockstep/fleet.yaml");
    ASSERT_TRUE(inv.ok()) << inv.status();
    inv_ = *std::move(inv);
    Set("dev", "app", {"a"});
    Set("staging", "app", {"a"});
    for (const char* t : {"t1", "t2", "t3", "t4", "t5", "t6"}) Set("prod", t, {"a"});
  }
  DatabaseStatus& Set(const std::string& env, const std::string& name,
                      std::vector<std::string> rows) {
    for (DatabaseStatus& d : fleet_.databases) {
      if (d.environment == env && d.name == name) {
        d.revisions = rows;
        return d;
      }
    }
    DatabaseStatus d;
    d.environment = env;
    d.name = name;
    d.state = "behind";
    d.revisions = std::move(rows);
    d.last_change = now_ - absl::Hours(1);
    fleet_.databases.push_back(d);
    return fleet_.databases.back();
  }
  absl::StatusOr<Rollout> Plan(RolloutRequest req, std::vector<std::string>* overridden = nullptr) {
    return PlanRollout(req, inv_, *resolver_, fleet_, now_, overridden);
  }

  std::unique_ptr<migrations::RevisionGraph> graph_;
  std::unique_ptr<migrations::Resolver> resolver_;
  config::Inventory inv_;
  FleetSnapshot fleet_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

TEST_F(PlannerTest, StagesInPromotionOrderCanariesFirstThenBatches) {
  auto r = Plan(Req("heads"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->stages.size(), 3u);
  EXPECT_EQ(r->stages[2].environment, "prod");
  EXPECT_TRUE(r->stages[2].approval_required);
  EXPECT_EQ(r->stages[2].on_failure, "downgrade");
  EXPECT_EQ(r->stages[1].soak, absl::Minutes(10));
  EXPECT_THAT(r->target_revisions, ElementsAre("c"));
  std::vector<std::string> order;
  std::vector<int> waves;
  for (const RolloutStep& s : r->steps) {
    if (s.environment != "prod") continue;
    order.push_back(s.database);
    waves.push_back(s.wave);
  }
  // Canaries in the inventory's order, one per wave; then batches of 2 by name.
  EXPECT_THAT(order, ElementsAre("t5", "t2", "t1", "t3", "t4", "t6"));
  EXPECT_THAT(waves, ElementsAre(0, 1, 2, 2, 3, 3));
  EXPECT_THAT(r->steps[0].path, ElementsAre("b", "c"));
  EXPECT_THAT(r->steps[0].expected, ElementsAre("c"));
  for (size_t i = 0; i < r->steps.size(); ++i) EXPECT_EQ(r->steps[i].index, static_cast<int>(i));
}

TEST_F(PlannerTest, DatabasesAtTheTargetGetNoStep) {
  Set("prod", "t1", {"c"});
  auto r = Plan(Req("b", {"dev", "staging", "prod"}));
  ASSERT_TRUE(r.ok()) << r.status();
  for (const RolloutStep& s : r->steps) {
    EXPECT_THAT(s.path, ElementsAre("b"));
    EXPECT_NE(s.database, "t1") << "t1 is past b";
  }
}

TEST_F(PlannerTest, EveryBlockingProblemIsListed) {
  Set("prod", "t3", {"zzz"}).orphaned = {"zzz"};
  DatabaseStatus& down = Set("prod", "t4", {"a"});
  down.state = "unreachable";
  down.reason = "unreachable: connection refused";
  auto r = Plan(Req("heads"));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("prod/t3: orphaned version row zzz"));
  EXPECT_THAT(r.status().message(), HasSubstr("prod/t4: unreachable: connection refused"));
}

TEST_F(PlannerTest, LostVersionRowsBlockTheRolloutForAPersonToDecide) {
  DatabaseStatus& lost = Set("prod", "t2", {});
  lost.state = "version_rows_lost";
  lost.reason = "no version rows now; held c until 2026-12-02T17:01:00Z (lockstep saw it)";
  auto r = Plan(Req("heads"));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(),
              HasSubstr("prod/t2: version_rows_lost: no version rows now; held c until "
                        "2026-12-02T17:01:00Z (lockstep saw it); lockstep will not migrate it "
                        "from nothing: which to do is a person's decision"));
  EXPECT_EQ(PlanDowngrade("prod", "t2", "base", inv_, *resolver_, fleet_).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // An uninitialized database (never seen with rows) is migrated from scratch.
  lost.state = "uninitialized";
  r = Plan(Req("heads"));
  ASSERT_TRUE(r.ok()) << r.status();
}

TEST_F(PlannerTest, PromotionGateWhenTheEarlierEnvironmentIsNotInScope) {
  auto r = Plan(Req("heads", {"prod"}));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("promotion: prod comes after staging, but staging/app does not hold heads "
                        "yet (2 pending)"));
  std::vector<std::string> overridden;
  r = Plan(Req("heads", {"prod"}, {}, true), &overridden);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->override_promotion);
  EXPECT_THAT(overridden, ElementsAre(HasSubstr("staging/app does not hold heads")));
}

TEST_F(PlannerTest, SoakIsCheckedAgainstTheLastChange) {
  DatabaseStatus& dev = Set("dev", "app", {"c"});
  dev.last_change = now_ - absl::Minutes(4);
  auto r = Plan(Req("heads", {"staging"}));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("dev has held heads for 4m of its 10m soak"));
  dev.last_change = now_ - absl::Minutes(11);
  EXPECT_TRUE(Plan(Req("heads", {"staging"})).ok());
}

TEST_F(PlannerTest, FiltersAndBadArguments) {
  auto r = Plan(Req("heads", {"prod"}, {"t[12]", "prod/t6"}, true));
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> names;
  for (const RolloutStep& s : r->steps) names.push_back(s.database);
  EXPECT_THAT(names, ElementsAre("t2", "t1", "t6"));
  EXPECT_THAT(Plan(Req("heads", {}, {"nope*"})).status().message(),
              HasSubstr("database filter 'nope*' matches no database"));
  EXPECT_THAT(Plan(Req("heads", {"qa"})).status().message(),
              HasSubstr("no environment 'qa'; the inventory has: dev, staging, prod"));
  EXPECT_THAT(Plan(Req("x9")).status().message(),
              HasSubstr("target 'x9': Can't locate revision identified by 'x9'"));
}

TEST_F(PlannerTest, DowngradeIsOneStepWithABackup) {
  Set("prod", "t1", {"c"});
  auto r = PlanDowngrade("prod", "t1", "a", inv_, *resolver_, fleet_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, "downgrade");
  ASSERT_EQ(r->steps.size(), 1u);
  EXPECT_THAT(r->steps[0].path, ElementsAre("c", "b"));
  EXPECT_THAT(r->steps[0].expected, ElementsAre("a"));
  EXPECT_THAT(r->target_revisions, ElementsAre("a"));
  EXPECT_TRUE(r->stages[0].backup_required);
  EXPECT_FALSE(r->stages[0].approval_required);
  EXPECT_EQ(PlanDowngrade("prod", "t9", "a", inv_, *resolver_, fleet_).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(PlanDowngrade("prod", "t2", "a", inv_, *resolver_, fleet_).status().message(),
              HasSubstr("already at a"));
}

TEST_F(PlannerTest, RelativeDowngradeNamesWhatThisDatabaseWillHold) {
  // Relative to t1 (at b), not to the graph's head c.
  Set("prod", "t1", {"b"});
  auto r = PlanDowngrade("prod", "t1", "-1", inv_, *resolver_, fleet_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->target, "-1");
  EXPECT_THAT(r->steps[0].path, ElementsAre("b"));
  EXPECT_THAT(r->target_revisions, ElementsAre("a"));
  EXPECT_THAT(r->steps[0].expected, ElementsAre("a"));
}

}  // namespace
}  // namespace lockstep::daemon
