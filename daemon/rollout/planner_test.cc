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
    d.state = DatabaseState::kBehind;
    d.revisions = std::move(rows);
    d.last_change = now_ - absl::Hours(1);
    fleet_.databases.push_back(d);
    return fleet_.databases.back();
  }
  // The rollout, or what StartRollout would refuse with.
  absl::StatusOr<Rollout> Plan(RolloutRequest req, std::vector<std::string>* overridden = nullptr) {
    absl::StatusOr<RolloutPlan> plan = PlanRollout(req, inv_, *resolver_, fleet_, now_, lint_);
    if (!plan.ok()) return plan.status();
    if (absl::Status blocked = plan->BlockingStatus(); !blocked.ok()) return blocked;
    for (const PlanProblem& p : plan->overridden) {
      if (overridden != nullptr) overridden->push_back(p.Text());
    }
    return plan->rollout;
  }
  RolloutPlan FullPlan(RolloutRequest req) {
    absl::StatusOr<RolloutPlan> plan = PlanRollout(req, inv_, *resolver_, fleet_, now_, lint_);
    EXPECT_TRUE(plan.ok()) << plan.status();
    return plan.ok() ? *std::move(plan) : RolloutPlan{};
  }
  std::vector<migrations::LintFinding> lint_;

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
  EXPECT_EQ(NameOf(r->stages[2].on_failure), "downgrade");
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
  down.state = DatabaseState::kUnreachable;
  down.reason = "unreachable: connection refused";
  auto r = Plan(Req("heads"));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("prod/t3: orphaned version row zzz"));
  EXPECT_THAT(r.status().message(), HasSubstr("prod/t4: unreachable: connection refused"));
}

TEST_F(PlannerTest, LostVersionRowsBlockTheRolloutForAPersonToDecide) {
  DatabaseStatus& lost = Set("prod", "t2", {});
  lost.state = DatabaseState::kVersionRowsLost;
  lost.reason = "no version rows now; held c until 2026-12-02T17:01:00Z (lockstep saw it)";
  auto r = Plan(Req("heads"));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(),
              HasSubstr("prod/t2: no version rows now; held c until "
                        "2026-12-02T17:01:00Z (lockstep saw it); lockstep will not migrate it "
                        "from nothing: which to do is a person's decision"));
  EXPECT_EQ(FullPlan(Req("heads")).problems[0].code, "version_rows_lost");
  EXPECT_EQ(PlanDowngrade("prod", "t2", "base", inv_, *resolver_, fleet_).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // An uninitialized database (never seen with rows) is migrated from scratch.
  lost.state = DatabaseState::kUninitialized;
  r = Plan(Req("heads"));
  ASSERT_TRUE(r.ok()) << r.status();
}

// A database whose schema drifted is refused, like Atlas's pre-apply check;
// --allow-drift migrates it, and the plan says whose schema was overridden.
TEST_F(PlannerTest, ADriftedSchemaBlocksUnlessAllowed) {
  DatabaseStatus& t3 = Set("prod", "t3", {"a"});
  t3.schema.state = SchemaState::kDrift;
  t3.schema.reason = "not the schema Alembic builds for a: table orders missing";
  RolloutPlan plan = FullPlan(Req("heads"));
  ASSERT_EQ(plan.problems.size(), 1u);
  EXPECT_EQ(plan.problems[0].code, "schema-drift");
  EXPECT_EQ(plan.problems[0].Text(),
            "prod/t3: its schema is not what its version rows claim (not the schema Alembic "
            "builds for a: table orders missing); repair it first, or --allow-drift to migrate "
            "it anyway");
  RolloutRequest allow = Req("heads");
  allow.allow_drift = true;
  std::vector<std::string> overridden;
  auto r = Plan(allow, &overridden);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(overridden.size(), 1u);
  EXPECT_THAT(overridden[0], HasSubstr("prod/t3: its schema is not what"));
  // A drifted database already at the target is no step, and no problem.
  t3.revisions = {"c"};
  EXPECT_TRUE(FullPlan(Req("heads")).problems.empty());
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
  EXPECT_TRUE(r->stages[0].approval_required);  // prod's policy holds for incident work too
  EXPECT_EQ(PlanDowngrade("prod", "t9", "a", inv_, *resolver_, fleet_).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(PlanDowngrade("prod", "t2", "a", inv_, *resolver_, fleet_).status().message(),
              HasSubstr("already at a"));
}

TEST_F(PlannerTest, StampIsOneStepWithABackupAndRestoresOnFailure) {
  Set("prod", "t1", {"zzz"}).state = DatabaseState::kOrphaned;  // its rows lie
  auto r = PlanStamp("prod", "t1", "b", "", inv_, *resolver_, fleet_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, "stamp");
  ASSERT_EQ(r->steps.size(), 1u);
  EXPECT_THAT(r->steps[0].path, ::testing::IsEmpty());  // no migration runs
  EXPECT_THAT(r->steps[0].from, ElementsAre("zzz"));
  EXPECT_THAT(r->steps[0].expected, ElementsAre("b"));
  EXPECT_TRUE(r->stages[0].backup_required);
  EXPECT_TRUE(r->stages[0].approval_required);  // prod's policy holds for incident work too
  // prod says on_failure: downgrade; a stamp has nothing to downgrade.
  EXPECT_EQ(NameOf(r->stages[0].on_failure), "restore");
  EXPECT_EQ(PlanStamp("prod", "t1", "base", "x", inv_, *resolver_, fleet_)->override_reason, "x");
  EXPECT_THAT(PlanStamp("prod", "t1", "nope", "", inv_, *resolver_, fleet_).status().message(),
              HasSubstr("nope"));
  Set("prod", "t2", {"b"});
  EXPECT_THAT(PlanStamp("prod", "t2", "b", "", inv_, *resolver_, fleet_).status().message(),
              HasSubstr("already holds [b]; nothing to stamp"));
  Set("prod", "t3", {}).state = DatabaseState::kUnreachable;
  EXPECT_EQ(PlanStamp("prod", "t3", "b", "", inv_, *resolver_, fleet_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(PlannerTest, ReapplyGoesDownBelowTheRevisionAndUpAgainWithABackup) {
  Set("prod", "t1", {"c"});
  auto r = PlanReapply("prod", "t1", "b", inv_, *resolver_, fleet_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, "reapply");
  EXPECT_EQ(r->target, "b");
  ASSERT_EQ(r->steps.size(), 1u);
  EXPECT_THAT(r->steps[0].path, ElementsAre("c", "b", "b", "c"));  // down, then up
  EXPECT_THAT(r->steps[0].from, ElementsAre("c"));
  EXPECT_THAT(r->steps[0].expected, ElementsAre("c"));
  EXPECT_TRUE(r->stages[0].backup_required);
  EXPECT_EQ(NameOf(r->stages[0].on_failure), "restore");
  // No REV: its one row.
  auto own = PlanReapply("prod", "t1", "", inv_, *resolver_, fleet_);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_THAT(own->steps[0].path, ElementsAre("c", "c"));
  // A revision it does not hold, an unknown one, a database that cannot be read.
  Set("prod", "t2", {"a"});
  EXPECT_THAT(PlanReapply("prod", "t2", "c", inv_, *resolver_, fleet_).status().message(),
              HasSubstr("does not hold c"));
  EXPECT_THAT(PlanReapply("prod", "t2", "nope", inv_, *resolver_, fleet_).status().message(),
              HasSubstr("nope"));
  Set("prod", "t3", {"zzz"}).orphaned = {"zzz"};
  EXPECT_EQ(PlanReapply("prod", "t3", "", inv_, *resolver_, fleet_).status().code(),
            absl::StatusCode::kFailedPrecondition);
  Set("prod", "t4", {});
  EXPECT_THAT(PlanReapply("prod", "t4", "", inv_, *resolver_, fleet_).status().message(),
              HasSubstr("name the revision to reapply"));
}

TEST_F(PlannerTest, ProblemsCarryDatabaseAndCode) {
  Set("prod", "t3", {"zzz"}).orphaned = {"zzz"};
  RolloutPlan plan = FullPlan(Req("heads", {"prod"}));
  ASSERT_TRUE(plan.blocked());
  ASSERT_EQ(plan.problems.size(), 2u);
  EXPECT_EQ(plan.problems[0].database, "prod/t3");
  EXPECT_EQ(plan.problems[0].code, "orphaned");
  EXPECT_EQ(plan.problems[1].database, "");
  EXPECT_EQ(plan.problems[1].code, "promotion");
  EXPECT_THAT(plan.problems[1].Text(), HasSubstr("promotion: prod comes after staging"));
  EXPECT_EQ(plan.rollout.id, "");
  EXPECT_EQ(NameOf(plan.rollout.state), "planned");
  EXPECT_FALSE(plan.rollout.steps.empty());  // the plan is still shown
}

// The scripts on disk no longer load: lockstep plans on the last good graph,
// but Alembic would fail on them, so nothing may start.
TEST_F(PlannerTest, BrokenScriptsBlock) {
  fleet_.graph.broken = true;
  fleet_.graph.error = "versions/x.py:3: cannot parse";
  RolloutPlan plan = FullPlan(Req("heads", {"dev"}));
  ASSERT_EQ(plan.problems.size(), 1u);
  EXPECT_EQ(plan.problems[0].code, "scripts-broken");
  EXPECT_THAT(plan.problems[0].message, HasSubstr("versions/x.py:3: cannot parse"));
}

TEST_F(PlannerTest, LintFindingsOnThePathBlockUnlessAllowed) {
  Set("dev", "app", {"b"});  // dev runs only c
  lint_ = {{"/versions/b_.py", 7, "empty-upgrade", "upgrade() of b does nothing"},
           {"/versions/c_.py", 3, "filename-mismatch", "revision id 'c' ..."},
           {"/versions/c_.py", 9, "revises-mismatch", "docstring says ..."},
           {"/versions/c_.py", 12, "empty-downgrade", "downgrade() of c does nothing"}};
  RolloutPlan plan = FullPlan(Req("heads", {"dev"}));
  // b is not on dev's path; revises-mismatch never blocks; dev restores on failure.
  ASSERT_EQ(plan.problems.size(), 1u);
  EXPECT_EQ(plan.problems[0].code, "filename-mismatch");
  EXPECT_THAT(plan.problems[0].message, HasSubstr("(/versions/c_.py:3)"));
  // prod rolls back by downgrade: an empty downgrade on its path blocks too;
  // staging runs b and c.
  plan = FullPlan(Req("heads", {}, {}, true));
  std::vector<std::string> codes;
  for (const PlanProblem& p : plan.problems) codes.push_back(p.code);
  EXPECT_THAT(codes, ElementsAre("empty-upgrade", "filename-mismatch", "empty-downgrade"));
  RolloutRequest allow = Req("heads", {"dev"});
  allow.allow_lint = {"filename-mismatch"};
  plan = FullPlan(allow);
  EXPECT_FALSE(plan.blocked());
  ASSERT_EQ(plan.overridden.size(), 1u);
  EXPECT_EQ(plan.overridden[0].code, "filename-mismatch");
  // A code that is no lint code (a typo) overrides nothing: it is refused.
  allow.allow_lint = {"filename-missmatch"};
  absl::StatusOr<RolloutPlan> typo = PlanRollout(allow, inv_, *resolver_, fleet_, now_, lint_);
  EXPECT_TRUE(absl::IsInvalidArgument(typo.status())) << typo.status();
  EXPECT_THAT(typo.status().message(),
              HasSubstr("allow_lint: 'filename-missmatch' is not a lint code; codes: "
                        "multiple-heads, empty-upgrade"));
}

TEST_F(PlannerTest, CanaryMatchingNothingBlocksAndADiscoveredOneCounts) {
  // t5 is discovered at refresh time (not listed): it is a canary by that name.
  fleet_.databases.erase(std::remove_if(fleet_.databases.begin(), fleet_.databases.end(),
                                        [](const DatabaseStatus& d) { return d.name == "t2"; }),
                         fleet_.databases.end());
  Set("prod", "t5", {"a"}).discovered = true;
  RolloutPlan plan = FullPlan(Req("heads", {"prod"}, {}, true));
  ASSERT_EQ(plan.problems.size(), 1u);
  EXPECT_EQ(plan.problems[0].code, "canary-unknown");
  EXPECT_THAT(plan.problems[0].message,
              HasSubstr("prod: canary 't2' matches no database (it has 5 databases)"));
  ASSERT_FALSE(plan.rollout.steps.empty());
  EXPECT_EQ(plan.rollout.steps[0].database, "t5");
  EXPECT_TRUE(plan.rollout.steps[0].canary);
  // A canary left out by --db is said, not silently dropped.
  Set("prod", "t2", {"a"});
  plan = FullPlan(Req("heads", {"prod"}, {"t1"}, true));
  EXPECT_FALSE(plan.blocked());
  EXPECT_THAT(plan.notes, ElementsAre(HasSubstr("canary t5 is not in this rollout"),
                                      HasSubstr("canary t2 is not in this rollout")));
}

TEST_F(PlannerTest, SeveralHeadsAreSaid) {
  auto g = migrations::testing::BuildGraph({{"a", {}}, {"b", {"a"}}, {"x", {"a"}}});
  ASSERT_TRUE(g.ok());
  graph_ = std::make_unique<migrations::RevisionGraph>(*std::move(g));
  resolver_ = std::make_unique<migrations::Resolver>(graph_.get());
  RolloutPlan plan = FullPlan(Req("heads", {"dev"}));
  EXPECT_THAT(plan.notes, ElementsAre(HasSubstr("heads is 2 revisions (b, x)")));
  EXPECT_THAT(plan.rollout.steps[0].expected, ElementsAre("b", "x"));
  // `head` with two heads is Alembic's own error.
  EXPECT_THAT(Plan(Req("head", {"dev"})).status().message(), HasSubstr("Multiple head revisions"));
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
