#include "daemon/metrics/fleet_metrics.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <string>

namespace lockstep::daemon {
namespace {

DatabaseStatus Db(const std::string& name, DatabaseState state) {
  DatabaseStatus d;
  d.environment = "prod";
  d.name = name;
  d.state = state;
  d.revisions = {"a1"};
  d.check_outcome = "ok";
  return d;
}

std::string Text(prometheus::Registry& r) {
  return prometheus::TextSerializer().Serialize(r.Collect());
}

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Series follow the fleet: a database that leaves takes its series along, a
// new one gets them, a changed state or revision moves the value or label.
TEST(FleetMetricsTest, SeriesFollowDatabasesThatAppearChangeAndLeave) {
  prometheus::Registry registry;
  FleetMetrics metrics(&registry);
  FleetSnapshot s;
  s.databases = {Db("t1", DatabaseState::kCurrent), Db("t2", DatabaseState::kBehind)};
  metrics.Update(s);
  std::string text = Text(registry);
  EXPECT_TRUE(Has(
      text, "lockstep_database_state{database=\"t2\",environment=\"prod\",state=\"behind\"} 1"));
  EXPECT_EQ(Count(text, "database=\"t2\""), Count(text, "database=\"t1\""));

  s.databases = {Db("t1", DatabaseState::kBehind), Db("t3", DatabaseState::kCurrent)};
  s.databases[0].revisions = {"b2"};
  metrics.Update(s);
  text = Text(registry);
  EXPECT_EQ(Count(text, "database=\"t2\""), 0) << text;  // gone with its database
  EXPECT_GT(Count(text, "database=\"t3\""), 10);
  EXPECT_TRUE(Has(
      text, "lockstep_database_state{database=\"t1\",environment=\"prod\",state=\"behind\"} 1"));
  EXPECT_TRUE(Has(
      text, "lockstep_database_state{database=\"t1\",environment=\"prod\",state=\"current\"} 0"));
  EXPECT_TRUE(
      Has(text, "lockstep_database_info{database=\"t1\",environment=\"prod\",revision=\"b2\"} 1"));
  EXPECT_EQ(Count(text, "revision=\"a1\"} 1"), 1) << text;  // t3 only: t1's old label is gone
}

// A refresh of a large fleet republishes in time linear in the fleet (it
// was quadratic: every series removed and added again each pass).
TEST(FleetMetricsTest, AThousandsStrongFleetUpdatesInPlace) {
  prometheus::Registry registry;
  FleetMetrics metrics(&registry);
  FleetSnapshot s;
  for (int i = 0; i < 5000; ++i) {
    s.databases.push_back(Db("t" + std::to_string(i), DatabaseState::kCurrent));
  }
  metrics.Update(s);
  s.databases.pop_back();
  metrics.Update(s);
  const std::string text = Text(registry);
  EXPECT_EQ(Count(text, "database=\"t4999\""), 0);
  EXPECT_GT(Count(text, "database=\"t4998\""), 10);
}

// By default only databases that are not clean have their own series; every
// environment always has its counts by state and schema verdict.
TEST(FleetMetricsTest, NotCleanDatabasesHaveSeriesAndEveryEnvironmentItsCounts) {
  prometheus::Registry registry;
  FleetMetrics metrics(&registry);
  FleetSnapshot s;
  s.environments.push_back(EnvironmentStatus{});
  s.environments[0].name = "prod";
  s.databases = {Db("t1", DatabaseState::kCurrent), Db("t2", DatabaseState::kBehind),
                 Db("t3", DatabaseState::kCurrent)};
  // As the reconciler counts them (JudgeEnvironments).
  s.environments[0].by_state = {{DatabaseState::kCurrent, 2}, {DatabaseState::kBehind, 1}};
  s.databases[2].schema.state = SchemaState::kDrift;  // current, but not clean
  const auto not_clean = FleetMetrics::PerDatabase::kNotClean;
  metrics.Update(s, not_clean);
  std::string text = Text(registry);
  EXPECT_EQ(Count(text, "database=\"t1\""), 0) << text;
  EXPECT_GT(Count(text, "database=\"t2\""), 10);
  EXPECT_TRUE(Has(text, "lockstep_database_schema_drift{database=\"t3\",environment=\"prod\"} 1"));
  EXPECT_TRUE(
      Has(text, "lockstep_environment_databases{environment=\"prod\",state=\"current\"} 2"));
  EXPECT_TRUE(Has(text, "lockstep_environment_databases{environment=\"prod\",state=\"behind\"} 1"));
  EXPECT_TRUE(
      Has(text, "lockstep_environment_databases{environment=\"prod\",state=\"orphaned\"} 0"));
  EXPECT_TRUE(
      Has(text, "lockstep_environment_schema_databases{environment=\"prod\",schema=\"drift\"} 1"));

  // t2 caught up: its series go; t1 fell behind: its series come.
  s.databases[0].state = DatabaseState::kBehind;
  s.databases[1].state = DatabaseState::kCurrent;
  metrics.Update(s, not_clean);
  text = Text(registry);
  EXPECT_EQ(Count(text, "database=\"t2\""), 0) << text;
  EXPECT_TRUE(Has(
      text, "lockstep_database_state{database=\"t1\",environment=\"prod\",state=\"behind\"} 1"));

  // all: every database; none: counts only.
  metrics.Update(s, FleetMetrics::PerDatabase::kAll);
  text = Text(registry);
  EXPECT_GT(Count(text, "database=\"t2\""), 10);
  metrics.Update(s, FleetMetrics::PerDatabase::kNone);
  text = Text(registry);
  EXPECT_EQ(Count(text, "database=\""), 0) << text;
  EXPECT_TRUE(Has(text, "lockstep_environment_databases{environment=\"prod\",state=\"behind\"} 1"));
}

}  // namespace
}  // namespace lockstep::daemon
