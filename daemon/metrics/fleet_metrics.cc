#include "daemon/metrics/fleet_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <unordered_map>

#include "absl/strings/str_join.h"
#include "daemon/model/utf8.h"

namespace lockstep::daemon {
namespace {

using prometheus::Family;
using prometheus::Gauge;
using prometheus::Labels;

double Seconds(absl::Time t) {
  return t == absl::InfinitePast() ? 0 : absl::ToDoubleSeconds(t - absl::UnixEpoch());
}

Family<Gauge>& GaugeFamily(prometheus::Registry* r, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*r);
}

}  // namespace

struct FleetMetrics::Families {
  explicit Families(prometheus::Registry* r)
      : up(GaugeFamily(r, "lockstep_database_up", "1 if the last check read the version table")),
        pending(GaugeFamily(r, "lockstep_database_pending_revisions",
                            "Revisions an upgrade to the environment's target would run")),
        info(GaugeFamily(r, "lockstep_database_info",
                         "Always 1; the revision label holds the version rows")),
        state(GaugeFamily(r, "lockstep_database_state", "1 for the database's current state")),
        last_check(GaugeFamily(r, "lockstep_database_last_check_timestamp_seconds",
                               "When the database was last checked")),
        last_change(GaugeFamily(r, "lockstep_database_last_change_timestamp_seconds",
                                "When the database's revisions were last seen to change")),
        schema_drift(GaugeFamily(r, "lockstep_database_schema_drift",
                                 "1 when the database's schema differs from the one its version "
                                 "rows claim (schema: drift)")),
        schema_known(GaugeFamily(r, "lockstep_database_schema_known",
                                 "1 when the database's schema could be judged (match or drift)")),
        schema_differences(GaugeFamily(r, "lockstep_schema_differences",
                                       "Differences between the database's schema and the one "
                                       "expected for its version rows")),
        files_changed(GaugeFamily(r, "lockstep_revision_files_changed",
                                  "Revision files changed since a database applied them "
                                  "(change: edited, or cosmetic: comments or spacing only)")),
        file_changed_databases(
            GaugeFamily(r, "lockstep_revision_file_changed_databases",
                        "Databases that applied this revision's file before it changed")),
        expected_builds(GaugeFamily(r, "lockstep_expected_schemas",
                                    "Expected schemas since start, by how they were had "
                                    "(built: Alembic on a shadow database, failures included; "
                                    "failed; stored: loaded from the state store)")),
        expected_build_seconds(
            GaugeFamily(r, "lockstep_expected_schema_build_seconds",
                        "Time spent building expected schemas with Alembic since start")),
        heads(GaugeFamily(r, "lockstep_graph_heads", "Heads of the revision graph")),
        revisions(GaugeFamily(r, "lockstep_graph_revisions", "Revisions in the graph")),
        broken(GaugeFamily(r, "lockstep_graph_broken",
                           "1 when the scripts changed and no longer load (last good graph used)")),
        refresh_duration(GaugeFamily(r, "lockstep_refresh_duration_seconds",
                                     "Duration of the last full refresh")),
        refresh_time(GaugeFamily(r, "lockstep_refresh_timestamp_seconds",
                                 "When the last full refresh finished")),
        env_databases(GaugeFamily(r, "lockstep_environment_databases",
                                  "Databases of the environment in each state")),
        env_schema_databases(
            GaugeFamily(r, "lockstep_environment_schema_databases",
                        "Databases of the environment by schema verdict (match, drift, unknown)")),
        in_lockstep(
            GaugeFamily(r, "lockstep_environment_in_lockstep",
                        "1 when every database of the environment is reachable and holds the same "
                        "known revisions (none orphaned or version_rows_lost)")),
        violations(
            GaugeFamily(r, "lockstep_environment_promotion_violations",
                        "Revisions applied before the environment they must follow has them")),
        check_duration(prometheus::BuildHistogram()
                           .Name("lockstep_check_duration_seconds")
                           .Help("Duration of one database check")
                           .Register(*r)) {}

  Family<Gauge>& up;
  Family<Gauge>& pending;
  Family<Gauge>& info;
  Family<Gauge>& state;
  Family<Gauge>& last_check;
  Family<Gauge>& last_change;
  Family<Gauge>& schema_drift;
  Family<Gauge>& schema_known;
  Family<Gauge>& schema_differences;
  Family<Gauge>& files_changed;
  Family<Gauge>& file_changed_databases;
  Family<Gauge>& expected_builds;
  Family<Gauge>& expected_build_seconds;
  Family<Gauge>& heads;
  Family<Gauge>& revisions;
  Family<Gauge>& broken;
  Family<Gauge>& refresh_duration;
  Family<Gauge>& refresh_time;
  Family<Gauge>& env_databases;
  Family<Gauge>& env_schema_databases;
  Family<Gauge>& in_lockstep;
  Family<Gauge>& violations;
  Family<prometheus::Histogram>& check_duration;
  // Series added for the previous snapshot, removed before the next.
  // The series the last Update set, and their family: a series keeps its
  // place (and pointer) while its labels stay; only those that went are
  // removed (Family::Remove searches linearly: calling it for every series
  // on every pass was quadratic in the fleet).
  std::unordered_map<Gauge*, Family<Gauge>*> series;
};

FleetMetrics::PerDatabase FleetMetrics::ParsePerDatabase(const std::string& name) {
  if (name == "all") return PerDatabase::kAll;
  if (name == "none") return PerDatabase::kNone;
  return PerDatabase::kNotClean;
}

FleetMetrics::FleetMetrics(prometheus::Registry* registry)
    : f_(std::make_unique<Families>(registry)) {}
FleetMetrics::~FleetMetrics() = default;

void FleetMetrics::Update(const FleetSnapshot& s, PerDatabase per_database) {
  std::lock_guard<std::mutex> lock(mu_);
  Families& f = *f_;
  std::unordered_map<Gauge*, Family<Gauge>*> now;
  now.reserve(f.series.size());
  auto set = [&](Family<Gauge>& family, const Labels& labels, double value) {
    Gauge& g = family.Add(labels);  // the existing series when it has these labels
    g.Set(value);
    now.emplace(&g, &family);
  };
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  // environment -> counts by schema verdict (by state: the reconciler's
  // EnvironmentStatus::by_state, which GetFleet shows too)
  std::map<std::string, std::map<SchemaState, int>> by_schema;
  for (const DatabaseStatus& d : s.databases) {
    ++by_schema[d.environment][d.schema.state];
    f.check_duration.Add({{"outcome", d.check_outcome}}, kBuckets)
        .Observe(absl::ToDoubleSeconds(d.check_duration));
    if (per_database == PerDatabase::kNone) continue;
    if (per_database == PerDatabase::kNotClean && d.clean()) continue;
    Labels base = {{"environment", d.environment}, {"database", d.name}};
    set(f.up, base, d.check_outcome == "ok" || d.check_outcome == "no_table" ? 1 : 0);
    set(f.pending, base, static_cast<double>(d.pending.size()));
    Labels info = base;
    // Version rows are bytes from the database: a label is valid UTF-8.
    info["revision"] = d.revisions.empty() ? "none" : ValidUtf8(absl::StrJoin(d.revisions, ","));
    set(f.info, info, 1);
    for (const auto& [state, name] : AllOf<DatabaseState>()) {
      Labels l = base;
      l["state"] = std::string(name);
      set(f.state, l, d.state == state ? 1 : 0);
    }
    set(f.last_check, base, Seconds(d.last_check));
    set(f.last_change, base, Seconds(d.last_change));
    set(f.schema_drift, base, d.schema.state == SchemaState::kDrift ? 1 : 0);
    set(f.schema_known, base, d.schema.state == SchemaState::kUnknown ? 0 : 1);
    set(f.schema_differences, base, static_cast<double>(d.schema.differences.size()));
  }
  std::map<std::pair<std::string, bool>, int> changed;  // (revision, cosmetic) -> databases
  for (const DatabaseStatus& d : s.databases) {
    for (const ChangedRevision& c : d.changed_revisions) ++changed[{c.revision, c.cosmetic}];
  }
  int files[2] = {0, 0};  // edited, cosmetic: always exported, 0 when none
  for (const auto& [key, databases] : changed) {
    const char* change = key.second ? "cosmetic" : "edited";
    set(f.file_changed_databases, {{"revision", key.first}, {"change", change}}, databases);
    ++files[key.second ? 1 : 0];
  }
  set(f.files_changed, {{"change", "edited"}}, files[0]);
  set(f.files_changed, {{"change", "cosmetic"}}, files[1]);
  for (const EnvironmentStatus& e : s.environments) {
    // Every state and verdict, 0 when none: a dashboard's sum or an alert's
    // comparison has a series to read.
    for (const auto& [state, name] : AllOf<DatabaseState>()) {
      set(f.env_databases, {{"environment", e.name}, {"state", std::string(name)}},
          e.by_state.count(state) ? e.by_state.at(state) : 0);
    }
    for (const auto& [schema, name] : AllOf<SchemaState>()) {
      set(f.env_schema_databases, {{"environment", e.name}, {"schema", std::string(name)}},
          by_schema[e.name][schema]);
    }
    set(f.in_lockstep, {{"environment", e.name}}, e.in_lockstep ? 1 : 0);
    set(f.violations, {{"environment", e.name}},
        static_cast<double>(e.promotion_violations.size()));
  }
  set(f.expected_builds, {{"how", "built"}}, s.expected_builds.built);
  set(f.expected_builds, {{"how", "failed"}}, s.expected_builds.failed);
  set(f.expected_builds, {{"how", "stored"}}, s.expected_builds.loaded);
  set(f.expected_build_seconds, {}, absl::ToDoubleSeconds(s.expected_builds.build_time));
  set(f.heads, {}, static_cast<double>(s.graph.heads.size()));
  set(f.revisions, {}, s.graph.revisions);
  set(f.broken, {}, s.graph.broken ? 1 : 0);
  set(f.refresh_duration, {}, absl::ToDoubleSeconds(s.refresh_duration));
  set(f.refresh_time, {}, Seconds(s.refreshed_at));
  for (const auto& [gauge, family] : f.series) {
    if (!now.count(gauge)) family->Remove(gauge);  // its database (or state) went
  }
  f.series = std::move(now);
}

}  // namespace lockstep::daemon
