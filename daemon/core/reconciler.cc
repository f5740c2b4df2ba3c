#include "daemon/core/reconciler.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/database_identity.h"
#include "daemon/core/schema_check.h"
#include "daemon/drivers/backup_files.h"
#include "daemon/schema/schema_json.h"
#include "migrations/classify.h"
#include "migrations/python_launcher.h"
#include "migrations/resolver.h"
#include "migrations/revision_error.h"

namespace lockstep::daemon {
namespace {

using migrations::Classification;
using migrations::RevisionState;

// One database to check in this pass.
struct Planned {
  VersionTarget target;
  const config::EnvironmentConfig* env;
  std::string name;
  std::map<std::string, std::string> labels;
  bool discovered = false;
};

// Calls fn(0) .. fn(n - 1), each once, on at most `max_threads` threads
// (this one included); returns when all are done.
void ForEachAtOnce(size_t n, int max_threads, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) fn(i);
  };
  const size_t threads = std::min<size_t>(static_cast<size_t>(std::max(1, max_threads)), n);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  if (threads > 0) work();
  for (std::thread& t : pool) t.join();
}

void SignatureOf(const std::string& dir, bool recursive, std::string* out) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    absl::StrAppend(out, dir, ":missing;");
    return;
  }
  std::vector<std::string> lines;
  int fd = ::dirfd(d);
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || name == "__pycache__") continue;
    struct stat st;
    if (::fstatat(fd, name.c_str(), &st, 0) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (recursive) lines.push_back("/" + name);
      continue;
    }
    if (!absl::EndsWith(name, ".py")) continue;
    lines.push_back(absl::StrCat(name, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                                 st.st_mtim.tv_nsec));
  }
  ::closedir(d);
  std::sort(lines.begin(), lines.end());
  for (const std::string& l : lines) {
    if (l[0] == '/') {
      SignatureOf(dir + l, recursive, out);
    } else {
      absl::StrAppend(out, l, ";");
    }
  }
}

// Applied revisions (ancestors of the rows, dependencies included).
std::set<int> Applied(const migrations::Resolver& r, const std::vector<std::string>& rows) {
  std::vector<int> tips;
  for (const std::string& row : rows) {
    if (std::optional<int> n = r.graph().Find(row); n && r.graph().id(*n) == row) tips.push_back(*n);
  }
  std::vector<int> all = r.AncestorsOf(tips, true);
  return std::set<int>(all.begin(), all.end());
}

// The rows lockstep last saw in a database that has none now, and when it
// first saw them gone.
struct LostRows {
  std::vector<std::string> held;
  absl::Time gone_at;
  // Set when a lockstep rollout removed them itself: a downgrade to base,
  // or a step from no rows brought back to its start.
  std::string by_rollout;
};

// Whether the empty database `d` held rows when lockstep looked before: in
// the previous check (they are gone as of `now`), or in its history (the
// newest change emptied it). Never seen with rows: nullopt.
std::optional<LostRows> FindLostRows(StateStore* store, const DatabaseStatus& d,
                                     const std::map<std::string, LastCheck>& previous,
                                     absl::Time now) {
  auto it = previous.find(d.key());
  if (it == previous.end() || !it->second.revisions_known) return std::nullopt;
  LostRows lost;
  absl::Time arrived;  // when the rows it held were first seen
  if (!it->second.revisions.empty()) {
    lost = {it->second.revisions, now, ""};
    arrived = it->second.changed_at;
  } else {
    absl::StatusOr<std::vector<RevisionChange>> newest = store->Changes(d.key(), 2);
    if (!newest.ok() || newest->empty()) return std::nullopt;
    const RevisionChange& c = newest->front();
    if (!c.to.empty() || c.from.empty()) return std::nullopt;
    lost = {c.from, c.observed_at, ""};
    arrived = newest->size() > 1 ? (*newest)[1].observed_at : absl::InfinitePast();
  }
  // The last step on it ended after those rows appeared, began before they
  // were seen gone, and left no rows by design.
  absl::StatusOr<std::optional<FinishedStep>> last = store->LastFinishedStep(d.environment, d.name);
  if (last.ok() && last->has_value()) {
    const RolloutStep& s = (*last)->step;
    bool left_empty =
        (s.state == StepState::kSucceeded && s.expected.empty()) ||
        (s.state == StepState::kFailed && s.from.empty() &&
         (s.rollback == "restored" || s.rollback == "rolled_back" || s.rollback == "downgraded"));
    if (left_empty && s.finished_at >= arrived && s.started_at <= lost.gone_at) {
      lost.by_rollout = (*last)->rollout_id;
    }
  }
  return lost;
}

std::string Plural(size_t n, const std::string& noun) {
  return absl::StrCat(n, " ", noun, n == 1 ? "" : "s");
}

DatabaseState DatabaseStateOf(migrations::RevisionState state) {
  switch (state) {
    case migrations::RevisionState::kCurrent:
      return DatabaseState::kCurrent;
    case migrations::RevisionState::kBehind:
      return DatabaseState::kBehind;
    case migrations::RevisionState::kAhead:
      return DatabaseState::kAhead;
    case migrations::RevisionState::kDiverged:
      return DatabaseState::kDiverged;
    case migrations::RevisionState::kOrphaned:
      return DatabaseState::kOrphaned;
    case migrations::RevisionState::kUninitialized:
      return DatabaseState::kUninitialized;
  }
  return DatabaseState::kUninitialized;
}

// What MatchRevisions found, said after the verdict's reason.
// `rerun`: the database's one version row when the schema it holds is
// exactly its parent's (that migration did not take): reapply is the fix.
std::string MatchText(const std::string& key, const SchemaStatus& s, const std::string& rerun) {
  if (!s.matches_revisions.empty()) {
    const std::string rows = absl::StrJoin(s.matches_revisions, " ");
    return absl::StrCat("; its schema is exactly what Alembic builds for ", rows,
                        ": `lockstep stamp ", key, " ", rows,
                        "` makes its version rows say so (after a backup)",
                        rerun.empty() ? ""
                                      : absl::StrCat(", or `lockstep reapply ", key, "` runs ",
                                                     rerun, " again (after a backup)"));
  }
  if (!s.closest_revisions.empty()) {
    return absl::StrCat("; no revision builds its schema exactly; closest: ",
                        absl::StrJoin(s.closest_revisions, " "), " (", s.closest_differences,
                        " difference", s.closest_differences == 1 ? "" : "s", ")");
  }
  return "";
}

bool IsKnown(const VersionRead& read) {
  return read.outcome == ReadOutcome::kOk || read.outcome == ReadOutcome::kNoTable;
}

bool IsEmpty(const VersionRead& read) {
  return read.outcome == ReadOutcome::kNoTable ||
         (read.outcome == ReadOutcome::kOk && read.rows.empty());
}

// What one pass checks, in the order shown: environment by environment,
// listed databases before discovered ones.
struct FleetPlan {
  std::vector<Planned> databases;
  std::map<std::string, std::vector<std::string>> discover_errors;  // per environment
};

// Who claims each database (DatabaseIdentity) and each name: listed
// databases first, in every environment, so that a listed database wins
// over a discovered one; then discovered ones, first claim wins. A
// discovered database that another entry already claims is left out with
// an error naming both: it is never checked or migrated twice, nor by the
// rollout of an environment it was not given to.
class Claims {
 public:
  void Listed(const std::string& env, const std::string& name, const std::string& identity) {
    names_[env].insert(name);
    claimed_.emplace(identity, env + "/" + name);
  }

  // Why a discovered database may not be claimed as `env`/`name`: "" when
  // it may (and is now claimed), "-" when it is the very entry that claims
  // it already (skipped silently), else the error.
  std::string Discovered(const std::string& env, const std::string& name, const std::string& shown,
                         const std::string& identity) {
    const std::string key = env + "/" + name;
    if (auto it = claimed_.find(identity); it != claimed_.end()) {
      if (it->second == key) return "-";
      return absl::StrCat("discovered ", shown, " skipped: it is the same database as ", it->second,
                          "; each database belongs to one entry");
    }
    if (!names_[env].insert(name).second) {
      return absl::StrCat("discovered ", shown, " skipped: ", key,
                          " names another database already; rename one of them");
    }
    claimed_.emplace(identity, key);
    return "";
  }

 private:
  std::map<std::string, std::string> claimed_;          // identity -> "env/name"
  std::map<std::string, std::set<std::string>> names_;  // env -> names
};

// What to check: static databases, then the ones each discover rule finds.
FleetPlan PlanChecks(const config::Inventory& inv, VersionReader& reader) {
  FleetPlan plan;
  Claims claims;
  for (const config::EnvironmentConfig& env : inv.environments) {
    for (const config::DatabaseConfig& db : env.databases) {
      claims.Listed(env.name, db.name,
                    config::DatabaseIdentity(db.url, db.version_table_schema, db.version_table));
      plan.databases.push_back(
          {{env.name + "/" + db.name, db.url, db.secret, db.version_table, db.version_table_schema,
            db.schema_scope == config::SchemaScope::kVersionTableSchema ? db.version_table_schema
                                                                        : ""},
           &env,
           db.name,
           db.labels,
           false});
    }
  }
  config::OwnFiles own(inv.server);
  for (const config::EnvironmentConfig& env : inv.environments) {
    std::vector<std::string>& errors = plan.discover_errors[env.name];
    for (const config::DiscoverRule& rule : env.discover) {
      absl::StatusOr<std::vector<Discovered>> found = reader.Discover(rule);
      if (!found.ok()) {
        errors.push_back(std::string(found.status().message()));
        continue;
      }
      for (Discovered& item : *found) {
        if (!config::IsValidName(item.name)) {
          // Bytes from a file name or pg_database are not trusted to be a
          // name: said once per pass, never put in a reply or a label.
          errors.push_back(absl::StrCat("discovered database '", config::Printable(item.name),
                                        "' skipped: ", config::kNamePatternText));
          continue;
        }
        const std::string shown = item.file.empty() ? item.name : config::Printable(item.file);
        if (std::string why = item.file.empty() ? "" : own.Reason(item.file); !why.empty()) {
          errors.push_back(absl::StrCat("discovered ", shown, " skipped: ", why,
                                        "; lockstepd never migrates its own files"));
          continue;
        }
        const bool scoped = inv.project.schema_scope == config::SchemaScope::kVersionTableSchema &&
                            item.url.dialect == config::Dialect::kPostgresql;
        Planned p{{env.name + "/" + item.name, std::move(item.url), std::move(item.secret),
                   inv.project.version_table, inv.project.version_table_schema,
                   scoped ? inv.project.version_table_schema : ""},
                  &env,
                  item.name,
                  rule.labels,
                  true};
        std::string why =
            claims.Discovered(env.name, p.name, shown,
                              config::DatabaseIdentity(p.target.url, p.target.version_table_schema,
                                                       p.target.version_table));
        if (why.empty()) {
          plan.databases.push_back(std::move(p));
        } else if (why != "-") {
          errors.push_back(why);
        }
      }
    }
  }
  std::stable_sort(plan.databases.begin(), plan.databases.end(),
                   [](const Planned& a, const Planned& b) {
                     return std::less<const config::EnvironmentConfig*>()(a.env, b.env);
                   });
  return plan;
}

std::string When(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// One database's state from its read: where its rows stand against the
// graph and its environment's target, told apart from a database whose
// rows were lost.
DatabaseStatus Classify(const Planned& p, const VersionRead& read,
                        const migrations::Resolver& resolver, StateStore* store,
                        const std::optional<std::map<std::string, LastCheck>>& previous,
                        absl::Time checked_at) {
  DatabaseStatus d;
  d.environment = p.env->name;
  d.name = p.name;
  d.url = p.target.url.Redacted();
  d.labels = p.labels;
  d.discovered = p.discovered;
  d.check_outcome = std::string(ReadOutcomeName(read.outcome));
  d.check_error = read.error;
  d.check_duration = read.took;
  d.last_check = checked_at;
  if (!IsKnown(read)) {
    d.state = DatabaseState::kUnreachable;
    d.reason = absl::StrCat(ReadOutcomeName(read.outcome), ": ", read.error);
    return d;
  }
  d.revisions = read.rows;
  Classification c = migrations::ClassifyRows(resolver, read.rows, p.env->target);
  d.state = DatabaseStateOf(c.state);
  d.reason = c.reason;
  if (read.outcome == ReadOutcome::kNoTable) {
    d.reason = absl::StrCat("no ", p.target.version_table, " table (never migrated); ",
                            Plural(c.pending.size(), "revision"), " to apply");
  }
  d.pending = std::move(c.pending);
  d.orphaned = std::move(c.orphaned);
  d.beyond = std::move(c.beyond);
  std::optional<LostRows> lost;
  if (read.rows.empty() && previous) lost = FindLostRows(store, d, *previous, checked_at);
  if (lost && !lost->by_rollout.empty()) {
    // Still uninitialized (a rollout may build it again), but not
    // "never migrated".
    d.reason =
        absl::StrCat("no version rows: rollout ", lost->by_rollout, " left it so (it held ",
                     absl::StrJoin(lost->held, ", "), " until ", When(lost->gone_at), "); ",
                     Plural(d.pending.size(), "revision"), " to apply to reach ", p.env->target);
  } else if (lost) {
    // Not "never migrated": upgrading it from nothing would run every
    // migration over tables that may still be there.
    d.state = DatabaseState::kVersionRowsLost;
    d.reason = absl::StrCat("no version rows now; held ", absl::StrJoin(lost->held, ", "),
                            " until ", When(lost->gone_at),
                            " (lockstep saw it); restore a backup or `alembic stamp` the "
                            "revisions it really holds");
    d.pending.clear();  // lockstep will not run them (the planner refuses)
  }
  return d;
}

// Per environment: lockstep within, promotion order between. A database
// holding a revision that is not yet in every database of the environment
// it comes `after` is ahead of it.
void JudgeEnvironments(const config::Inventory& inv, const migrations::Resolver& resolver,
                       std::map<std::string, std::vector<std::string>>& discover_errors,
                       FleetSnapshot* snapshot) {
  std::map<std::string, std::set<int>> promoted;  // env -> applied in every reachable database
  for (const config::EnvironmentConfig& env : inv.environments) {
    EnvironmentStatus es;
    es.name = env.name;
    es.after = env.after;
    es.target = env.target;
    es.discover_errors = discover_errors[env.name];
    std::set<std::vector<std::string>> sets;
    std::optional<std::set<int>> common;
    const bool check_after = !env.after.empty() && promoted.count(env.after);
    const std::set<int> after_applied = check_after ? promoted[env.after] : std::set<int>();
    std::set<std::string> violations;
    for (DatabaseStatus& d : snapshot->databases) {
      if (d.environment != env.name) continue;
      ++es.databases;
      // Rows unknown (unreachable), meaningless to the graph (orphaned) or
      // gone (version_rows_lost): not comparable, and not in lockstep.
      bool comparable = d.state != DatabaseState::kUnreachable &&
                        d.state != DatabaseState::kOrphaned &&
                        d.state != DatabaseState::kVersionRowsLost;
      if (!comparable) {
        es.in_lockstep = false;
        ++es.by_state[d.state];
        continue;
      }
      sets.insert(d.revisions);
      std::set<int> applied = Applied(resolver, d.revisions);
      if (!common) {
        common = applied;
      } else {
        std::set<int> both;
        std::set_intersection(common->begin(), common->end(), applied.begin(), applied.end(),
                              std::inserter(both, both.begin()));
        common = std::move(both);
      }
      std::vector<std::string> early;
      if (check_after) {
        for (int a : applied) {
          if (!after_applied.count(a)) early.push_back(resolver.graph().id(a));
        }
      }
      if (!early.empty()) {
        violations.insert(early.begin(), early.end());
        if (d.state == DatabaseState::kCurrent || d.state == DatabaseState::kBehind)
          d.state = DatabaseState::kAhead;
        d.reason = absl::StrCat("ahead of ", env.after, ": has ", absl::StrJoin(early, ", "),
                                ", not yet in every ", env.after, " database; ", d.reason);
      }
      ++es.by_state[d.state];
    }
    es.revision_sets.assign(sets.begin(), sets.end());
    if (es.revision_sets.size() > 1) es.in_lockstep = false;
    es.promotion_violations.assign(violations.begin(), violations.end());
    promoted[env.name] = common.value_or(std::set<int>());
    snapshot->environments.push_back(std::move(es));
  }
}

// The plan's databases (indexes) in the units one reader call reads:
// alone, or with the others of their BatchKey (tenants as schemas of one
// PostgreSQL database), at most kBatchSize together so that a large group
// is still read by several threads (1,000 tenants: 20 batches of two
// statements each, over max_concurrent_checks threads).
std::vector<std::vector<size_t>> BatchesOf(const FleetPlan& plan, const VersionReader& reader) {
  constexpr size_t kBatchSize = 50;
  std::vector<std::vector<size_t>> out;
  std::map<std::string, size_t> open;  // key -> its batch in `out` that still has room
  for (size_t i = 0; i < plan.databases.size(); ++i) {
    const std::string key = reader.BatchKey(plan.databases[i].target);
    if (key.empty()) {
      out.push_back({i});
      continue;
    }
    auto it = open.find(key);
    if (it == open.end() || out[it->second].size() >= kBatchSize) {
      out.emplace_back();
      it = open.insert_or_assign(key, out.size() - 1).first;
    }
    out[it->second].push_back(i);
  }
  return out;
}

}  // namespace

migrations::ProjectSource ProjectSourceOf(const config::Inventory& inv) {
  migrations::ProjectSource s;
  s.config_file = inv.project.alembic_ini;
  s.scripts_dir = inv.project.scripts;
  s.section = inv.project.ini_section;
  s.cwd = inv.project.working_dir;
  // The Python Alembic runs on (empty: the default, computed_headers.h).
  s.python = inv.project.python.empty()
                 ? migrations::CommandInterpreter(inv.project.alembic_command,
                                                  inv.project.working_dir)
                 : std::vector<std::string>{inv.project.python};
  return s;
}

std::string ScriptsSignature(const migrations::ScriptLocation& location) {
  std::string out;
  for (const std::string& dir : location.version_locations) SignatureOf(dir, location.recursive, &out);
  return out;
}

absl::StatusOr<std::unique_ptr<Reconciler>> Reconciler::Create(
    std::shared_ptr<const config::Inventory> inventory, std::shared_ptr<VersionReader> reader,
    StateStore* store, const Clock* clock) {
  absl::StatusOr<migrations::Project> project = migrations::Project::Load(ProjectSourceOf(*inventory));
  if (!project.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load the Alembic project: ",
                     migrations::CommandErrorMessage(project.status())));
  }
  std::unique_ptr<Reconciler> r(new Reconciler());
  r->reader_ = std::move(reader);
  r->store_ = store;
  if (clock != nullptr) r->clock_ = clock;
  MutexLock pass(r->refresh_mu_);  // nobody else has it yet; this says so to the analysis
  MutexLock lock(r->mu_);
  r->inventory_ = std::move(inventory);
  r->project_signature_ = ScriptsSignature(project->location());
  r->graph_.loaded_at = r->clock_->Now();
  r->project_ = std::make_shared<const migrations::Project>(*std::move(project));
  r->loaded_signature_ = r->project_signature_;
  r->snapshot_ = std::make_shared<const FleetSnapshot>();
  if (absl::Status loaded = r->checksums_.Load(store); !loaded.ok()) return loaded;
  return r;
}

void Reconciler::MaybeReloadProject(const config::Inventory& inv, GraphStatus* graph) {
  std::shared_ptr<const migrations::Project> current = project();
  std::string signature = ScriptsSignature(current->location());
  bool source_changed = ProjectSourceOf(inv).config_file != current->location().config_file &&
                        !inv.project.alembic_ini.empty();
  // A reloaded inventory (SIGHUP) reloads the scripts too: the ini or its
  // version_locations may be what was fixed, with no version file touched.
  const bool requested = reload_requested_.exchange(false);
  if (signature == project_signature_ && !source_changed && !requested) return;
  absl::StatusOr<migrations::Project> loaded = migrations::Project::Load(ProjectSourceOf(inv));
  project_signature_ = signature;
  if (!loaded.ok()) {
    graph->broken = true;
    graph->error = migrations::CommandErrorMessage(loaded.status());
    return;
  }
  graph->broken = false;
  graph->error.clear();
  graph->loaded_at = clock_->Now();
  project_signature_ = ScriptsSignature(loaded->location());
  MutexLock lock(mu_);
  project_ = std::make_shared<const migrations::Project>(*std::move(loaded));
  loaded_signature_ = project_signature_;
}

absl::Status Reconciler::Refresh() {
  absl::Status versions = RefreshVersions();
  if (absl::IsUnavailable(versions) && closing_) return versions;
  absl::Status schemas = RefreshSchemas();
  return versions.ok() ? schemas : versions;
}

absl::Status Reconciler::RefreshVersions() {
  absl::Status s = VersionPass();
  // What the pass's threads allocated and freed stays with glibc's per-thread
  // arenas unless it is given back: at 20,000 databases the process kept
  // about 200 MB after a few passes and scrapes where it needs 140.
  ::malloc_trim(0);
  return s;
}

absl::Status Reconciler::VersionPass() {
  MutexLock pass(refresh_mu_);
  if (closed_) return absl::UnavailableError("lockstepd is shutting down");
  const absl::Time started = absl::Now();
  std::shared_ptr<const config::Inventory> inv = inventory();
  MaybeReloadProject(*inv, &graph_);
  std::shared_ptr<const migrations::Project> project = this->project();
  migrations::Resolver resolver(&project->graph());

  auto snapshot = std::make_shared<FleetSnapshot>();
  snapshot->graph = graph_;
  snapshot->graph.heads = project->graph().Ids(project->graph().heads());
  snapshot->graph.revisions = project->graph().size();

  FleetPlan plan = PlanChecks(*inv, *reader_);
  std::vector<VersionRead> reads(plan.databases.size());
  const std::vector<std::vector<size_t>> batches = BatchesOf(plan, *reader_);
  ForEachAtOnce(batches.size(), inv->server.max_concurrent_checks, [&](size_t b) {
    if (closing_) return;
    const std::vector<size_t>& batch = batches[b];
    if (batch.size() == 1) {
      reads[batch[0]] = reader_->Read(plan.databases[batch[0]].target);
      return;
    }
    std::vector<const VersionTarget*> targets;
    for (size_t i : batch) targets.push_back(&plan.databases[i].target);
    std::vector<VersionRead> read = reader_->ReadBatch(targets);
    for (size_t k = 0; k < batch.size() && k < read.size(); ++k)
      reads[batch[k]] = std::move(read[k]);
  });
  // Stopping: what is left of the pass is not read, and a pass cut short is
  // not published (it would say the databases it skipped are unreachable).
  if (closing_) return absl::UnavailableError("lockstepd is shutting down; the pass was cut short");

  // An empty database is told apart by what lockstep saw there before, so
  // the previous checks are read (once) when any database is empty.
  const absl::Time checked_at = clock_->Now();
  std::optional<std::map<std::string, LastCheck>> previous;
  if (std::any_of(reads.begin(), reads.end(), IsEmpty)) {
    absl::StatusOr<std::map<std::string, LastCheck>> last = store_->LastChecks();
    previous = last.ok() ? *std::move(last) : std::map<std::string, LastCheck>();
  }
  for (size_t i = 0; i < plan.databases.size(); ++i) {
    snapshot->databases.push_back(
        Classify(plan.databases[i], reads[i], resolver, store_, previous, checked_at));
  }
  JudgeEnvironments(*inv, resolver, plan.discover_errors, snapshot.get());
  absl::Status recorded = Record(reads, checked_at, snapshot.get());
  if (absl::Status files = CheckRevisionFiles(*project, checked_at, snapshot.get());
      recorded.ok()) {
    recorded = files;
  }
  snapshot->refreshed_at = checked_at;
  snapshot->refresh_duration = absl::Now() - started;

  // The version rows are published at once; schemas follow in the schema
  // pass (building an expected schema runs Alembic, seconds).
  std::map<std::string, VersionTarget> targets;
  for (const Planned& p : plan.databases) targets.emplace(p.target.name, p.target);
  Publish(snapshot, &targets);
  return recorded;
}

absl::Status Reconciler::RefreshSchemas() {
  MutexLock pass(schema_mu_);
  if (closed_) return absl::UnavailableError("lockstepd is shutting down");
  std::shared_ptr<const config::Inventory> inv = inventory();
  std::shared_ptr<const migrations::Project> project = this->project();
  std::shared_ptr<FleetSnapshot> judged;
  std::map<std::string, VersionTarget> targets;
  {
    MutexLock lock(mu_);  // a snapshot and its targets, published together
    judged = std::make_shared<FleetSnapshot>(*snapshot_);
    targets = targets_;
  }
  std::vector<const VersionTarget*> schema_targets;
  std::vector<DatabaseStatus> known;
  for (DatabaseStatus& d : judged->databases) {
    auto t = targets.find(d.key());
    if (t == targets.end()) continue;  // not reached by this snapshot's pass
    schema_targets.push_back(&t->second);
    known.push_back(std::move(d));
  }
  judged->databases = std::move(known);
  CheckSchemas(*inv, project->graph(), schema_targets, judged.get());
  if (closing_) return absl::UnavailableError("lockstepd is shutting down; the pass was cut short");
  // Into the newest snapshot: a version pass may have published since.
  judged->expected_builds = BuildStats();
  Publish(nullptr, nullptr, judged.get());
  return absl::OkStatus();
}

// The durable record of what this pass saw, then when each database last
// changed (and, for one unreachable now, the rows it last held).
absl::Status Reconciler::Record(const std::vector<VersionRead>& reads, absl::Time checked_at,
                                FleetSnapshot* snapshot) {
  std::vector<CheckRecord> records;
  for (size_t i = 0; i < reads.size(); ++i) {
    const DatabaseStatus& d = snapshot->databases[i];
    records.push_back({d.key(), d.environment, IsKnown(reads[i]), d.revisions,
                       std::string(NameOf(d.state)), d.check_outcome, d.check_error, checked_at});
  }
  auto fill = [](const LastCheck& last, DatabaseStatus& d) {
    d.last_change = last.changed_at;
    if (d.state == DatabaseState::kUnreachable && last.revisions_known)
      d.revisions = last.revisions;
  };
  absl::StatusOr<std::vector<LastCheck>> stored = store_->RecordChecks(records);
  if (stored.ok()) {
    for (size_t i = 0; i < stored->size(); ++i) fill((*stored)[i], snapshot->databases[i]);
    return absl::OkStatus();
  }
  // Not recorded (a full disk): what the store still holds fills in.
  absl::StatusOr<std::map<std::string, LastCheck>> last = store_->LastChecks();
  if (last.ok()) {
    for (DatabaseStatus& d : snapshot->databases) {
      auto it = last->find(d.key());
      if (it != last->end()) fill(it->second, d);
    }
  }
  return stored.status();
}

std::optional<FileChecksum> Reconciler::CurrentChecksum(const migrations::Project& project,
                                                        const std::string& revision) {
  std::optional<int> node = project.graph().Find(revision);
  if (!node) return std::nullopt;
  const std::string& path = project.graph().node(*node).file->path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  const int64_t mtime_ns =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  {
    MutexLock lock(files_mu_);
    auto it = files_.find(path);
    if (it != files_.end() && it->second.size == st.st_size && it->second.mtime_ns == mtime_ns) {
      return it->second.sum;
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  FileChecksum sum = ChecksumOf(text);
  MutexLock lock(files_mu_);
  files_[path] = {static_cast<int64_t>(st.st_size), mtime_ns, sum};
  return sum;
}

absl::Status Reconciler::CheckRevisionFiles(const migrations::Project& project, absl::Time now,
                                            FleetSnapshot* snapshot) {
  migrations::Resolver resolver(&project.graph());
  const CurrentChecksumFn current = [&](const std::string& revision) {
    return CurrentChecksum(project, revision);
  };
  // Databases at the same rows imply the same revisions: worked out once.
  std::map<std::vector<std::string>, std::vector<std::string>> implied;
  checksums_.BeginPass();
  for (DatabaseStatus& d : snapshot->databases) {
    // Rows that mean something in the graph: not orphaned, lost or unknown.
    if (d.state != DatabaseState::kCurrent && d.state != DatabaseState::kBehind &&
        d.state != DatabaseState::kAhead && d.state != DatabaseState::kDiverged) {
      continue;
    }
    auto it = implied.find(d.revisions);
    if (it == implied.end()) {
      std::vector<int> nodes;
      for (const std::string& r : d.revisions) {
        if (std::optional<int> n = project.graph().Find(r)) nodes.push_back(*n);
      }
      std::vector<std::string> ids = project.graph().Ids(resolver.AncestorsOf(nodes));
      std::sort(ids.begin(), ids.end());
      it = implied.emplace(d.revisions, std::move(ids)).first;
    }
    d.changed_revisions = checksums_.Observe(d.key(), it->second, current, now);
  }
  return checksums_.Save(store_);
}

void Reconciler::RecordApplied(const std::string& key, const std::vector<std::string>& revisions,
                               bool upgrade) {
  std::shared_ptr<const migrations::Project> p = project();
  checksums_.Applied(
      key, revisions, upgrade,
      [&](const std::string& revision) { return CurrentChecksum(*p, revision); }, clock_->Now());
  // Not saved now (the store refuses writes): kept, and saved by the next
  // pass, whose status says why it could not be.
  checksums_.Save(store_).IgnoreError();
}

// Until its schema is read again, a database keeps its last verdict while
// its rows are unchanged.
void Reconciler::CarrySchemas(const FleetSnapshot& from, FleetSnapshot* to) {
  to->expected_builds = from.expected_builds;
  const std::unordered_map<std::string, const DatabaseStatus*> last_of = from.Index();
  for (DatabaseStatus& d : to->databases) {
    auto found = last_of.find(d.key());
    const DatabaseStatus* last = found == last_of.end() ? nullptr : found->second;
    if (last != nullptr && last->revisions == d.revisions) {
      d.schema = last->schema;
    } else {
      d.schema.reason = "its schema is being read";
    }
  }
}

void Reconciler::Publish(std::shared_ptr<FleetSnapshot> snapshot,
                         std::map<std::string, VersionTarget>* targets,
                         const FleetSnapshot* schemas_from) {
  MutexLock publishing(publish_mu_);
  if (snapshot == nullptr) snapshot = std::make_shared<FleetSnapshot>(*Snapshot());
  CarrySchemas(schemas_from != nullptr ? *schemas_from : *Snapshot(), snapshot.get());
  std::function<void(const FleetSnapshot&)> callback;
  {
    MutexLock lock(mu_);
    snapshot_ = snapshot;
    if (targets != nullptr) {
      targets_ = std::move(*targets);
      targets_published_ = true;
    }
    callback = on_refresh_;
  }
  if (callback) callback(*snapshot);
}

void Reconciler::SetExpectedSchemas(ExpectedSchemaFn fn) {
  MutexLock lock(mu_);
  expected_fn_ = std::move(fn);
}

std::string Reconciler::ExpectedKey(const config::Inventory& inv, config::Dialect dialect,
                                    const std::vector<std::string>& revisions,
                                    const SchemaFilter& filter) {
  std::shared_ptr<const migrations::Project> p = project();
  const migrations::RevisionGraph& graph = p->graph();
  std::vector<int> nodes;
  for (const std::string& r : revisions) {
    std::optional<int> n = graph.Find(r);
    if (!n) return "";
    nodes.push_back(*n);
  }
  migrations::Resolver resolver(&graph);
  std::vector<std::string> ids = graph.Ids(resolver.AncestorsOf(nodes));
  std::sort(ids.begin(), ids.end());
  // Bump when lockstep reads or normalizes schemas differently: what it
  // stored before would no longer compare equal.
  constexpr char kSchemaModel[] = "schema-model-1";
  std::string key = absl::StrCat(kSchemaModel, "\n", config::DialectName(dialect), "\n",
                                 absl::StrJoin(revisions, " "), "\n");
  for (const std::string& id : ids) {
    std::optional<FileChecksum> sum = CurrentChecksum(*p, id);
    if (!sum) return "";
    absl::StrAppend(&key, id, " ", sum->sha256, "\n");
  }
  absl::StatusOr<std::string> env_py = Sha256OfFile(p->location().script_dir + "/env.py");
  // A scoped read (a tenant's schema) reads the scratch database's public
  // schema only: another expected schema than a whole database's.
  if (!filter.only_schema.empty()) absl::StrAppend(&key, "scoped\n");
  absl::StrAppend(&key, "env.py ", env_py.ok() ? *env_py : "none", "\n", filter.version_table, "\n",
                  absl::StrJoin(filter.ignore, " "), "\n", inv.project.python, "\n",
                  absl::StrJoin(inv.project.alembic_command, " "), "\n");
  return Sha256Hex(key);
}

ExpectedSchema Reconciler::ExpectedSchemaFor(const config::Inventory& inv,
                                             config::Dialect dialect,
                                             const std::vector<std::string>& revisions,
                                             const SchemaFilter& filter) {
  ExpectedSchemaFn fn;
  {
    MutexLock lock(mu_);
    fn = expected_fn_;
  }
  if (!fn) return {};
  if (closing_) return {nullptr, "", "lockstepd is shutting down"};  // not kept: not a verdict
  const auto key = std::make_pair(std::string(config::DialectName(dialect)), revisions);
  MutexLock lock(expected_mu_);
  auto cached = expected_.find(key);
  if (cached != expected_.end()) return cached->second;
  ExpectedSchema e;
  // Built before, by this lockstepd or an earlier one, from the same files.
  const std::string stored_key = ExpectedKey(inv, dialect, revisions, filter);
  if (!stored_key.empty()) {
    absl::StatusOr<std::optional<StoredExpectedSchema>> stored =
        store_->LoadExpectedSchema(stored_key);
    if (stored.ok() && stored->has_value()) {
      absl::StatusOr<Schema> schema = SchemaFromJson((*stored)->schema_json);
      if (schema.ok() && SchemaFingerprint(*schema) == (*stored)->fingerprint) {
        e.fingerprint = (*stored)->fingerprint;
        e.schema = std::make_shared<const Schema>(*std::move(schema));
        ++build_stats_.loaded;
        expected_[key] = e;
        return e;
      }
    }
  }
  const absl::Time started = absl::Now();
  absl::StatusOr<Schema> built = fn(inv, dialect, revisions, filter);
  const absl::Duration took = absl::Now() - started;
  ++build_stats_.built;
  build_stats_.build_time += took;
  if (built.ok()) {
    e.fingerprint = SchemaFingerprint(*built);
    e.schema = std::make_shared<const Schema>(*std::move(built));
    if (!stored_key.empty()) {
      // Not kept (the store refuses writes): built again after a restart.
      store_
          ->SaveExpectedSchema(stored_key,
                               {SchemaToJson(*e.schema), e.fingerprint, clock_->Now(), took})
          .IgnoreError();
    }
  } else {
    ++build_stats_.failed;
    e.error = std::string(built.status().message());
  }
  expected_[key] = e;
  return e;
}

ExpectedBuildStats Reconciler::BuildStats() {
  MutexLock lock(expected_mu_);
  return build_stats_;
}

ExpectedSchemas Reconciler::Expected(const config::Inventory& inv,
                                     const migrations::RevisionGraph& graph,
                                     const std::vector<SchemaSample>& samples,
                                     const std::map<std::string, SchemaFilter>& filters,
                                     bool retry_failed) {
  const std::string signature = LoadedSignature();
  {
    MutexLock lock(expected_mu_);
    if (expected_signature_ != signature) {
      expected_.clear();  // the scripts changed: what they build may have too
      expected_signature_ = signature;
    }
    if (retry_failed) {
      for (auto it = expected_.begin(); it != expected_.end();) {
        it = it->second.schema ? std::next(it) : expected_.erase(it);
      }
    }
  }
  ExpectedSchemas out;
  for (const SchemaSample& s : samples) {
    if (s.schema == nullptr) continue;
    const auto key = std::make_pair(s.dialect, s.revisions);
    if (out.count(key)) continue;
    // Only revisions the scripts define can be built.
    bool known = true;
    for (const std::string& r : s.revisions) known = known && graph.Find(r).has_value();
    if (!known) continue;
    ExpectedSchema e =
        ExpectedSchemaFor(inv, schema_memo_[s.key].dialect_id, s.revisions, filters.at(s.key));
    if (e.schema == nullptr && e.error.empty()) return {};  // no builder
    out[key] = std::move(e);
  }
  return out;
}

void Reconciler::CheckSchemas(const config::Inventory& inv,
                              const migrations::RevisionGraph& graph,
                              const std::vector<const VersionTarget*>& targets,
                              FleetSnapshot* snapshot) {
  std::vector<DatabaseStatus>& dbs = snapshot->databases;
  if (inv.server.schema_interval <= absl::ZeroDuration()) {
    for (DatabaseStatus& d : dbs) {
      d.schema = SchemaStatus{};
      d.schema.reason = "schema checks are off (server.schema_interval: 0)";
    }
    return;
  }
  const absl::Time now = clock_->Now();
  const bool due = now - last_schema_pass_ >= inv.server.schema_interval ||
                   schema_pass_requested_.exchange(false);
  std::vector<size_t> to_read;
  for (size_t i = 0; i < dbs.size(); ++i) {
    if (dbs[i].state == DatabaseState::kUnreachable) continue;
    auto memo = schema_memo_.find(dbs[i].key());
    if (due || memo == schema_memo_.end() || memo->second.retry ||
        memo->second.revisions != dbs[i].revisions) {
      to_read.push_back(i);
    }
  }
  std::vector<absl::StatusOr<SchemaSnapshot>> reads(to_read.size(),
                                                    absl::UnknownError("not read"));
  std::map<std::string, SchemaFilter> filters;  // by key
  for (size_t i = 0; i < dbs.size(); ++i) {
    filters[dbs[i].key()] = SchemaFilterFor(*targets[i], inv.project.schema_ignore);
  }
  ForEachAtOnce(to_read.size(), inv.server.max_concurrent_checks, [&](size_t k) {
    if (closing_) return;
    reads[k] = reader_->ReadSchema(*targets[to_read[k]], filters.at(dbs[to_read[k]].key()));
  });
  if (closing_) return;
  for (size_t k = 0; k < to_read.size(); ++k) {
    const DatabaseStatus& d = dbs[to_read[k]];
    SchemaMemo& m = schema_memo_[d.key()];
    m.dialect_id = targets[to_read[k]]->url.dialect;
    m.dialect = std::string(config::DialectName(m.dialect_id));
    m.read_at = now;
    if (reads[k].ok() && !reads[k]->locked_by.empty()) {
      // A step (or a restore) may be changing it as it was read: no verdict.
      m.revisions = reads[k]->rows;
      m.fingerprint.clear();
      m.error = absl::StrCat("lockstep's lock on it was held (", reads[k]->locked_by,
                             ") while its schema was read: a step or restore may be changing "
                             "it; read again at the next poll");
      m.retry = true;
    } else if (reads[k].ok()) {
      m.revisions = reads[k]->rows;
      m.fingerprint = SchemaFingerprint(reads[k]->schema);
      m.error.clear();
      m.retry = false;
      auto& shared = schemas_[m.fingerprint];
      if (!shared) shared = std::make_shared<const Schema>(std::move(reads[k]->schema));
    } else {
      m.revisions = d.revisions;
      m.fingerprint.clear();
      m.error = std::string(reads[k].status().message());
      // A database that could not be read now (a lock, a blip) is tried
      // again next pass; one whose dialect cannot be read, at the interval.
      m.retry = !absl::IsUnimplemented(reads[k].status());
    }
  }
  if (due) last_schema_pass_ = now;

  // Forget databases that went away, and schemas nobody holds any more.
  std::set<std::string> keys, prints;
  for (const DatabaseStatus& d : dbs) keys.insert(d.key());
  for (auto it = schema_memo_.begin(); it != schema_memo_.end();) {
    it = keys.count(it->first) ? std::next(it) : schema_memo_.erase(it);
  }
  for (const auto& [key, m] : schema_memo_) prints.insert(m.fingerprint);
  for (auto it = schemas_.begin(); it != schemas_.end();) {
    it = prints.count(it->first) ? std::next(it) : schemas_.erase(it);
  }

  std::vector<SchemaSample> samples;
  for (const DatabaseStatus& d : dbs) {
    auto m = schema_memo_.find(d.key());
    if (d.state == DatabaseState::kUnreachable || m == schema_memo_.end()) continue;
    auto schema = schemas_.find(m->second.fingerprint);
    samples.push_back({d.key(), m->second.dialect, m->second.revisions,
                       schema == schemas_.end() ? nullptr : schema->second,
                       m->second.fingerprint, m->second.error});
  }
  std::map<std::string, SchemaStatus> verdicts =
      JudgeCohorts(samples, Expected(inv, graph, samples, filters, due));
  for (DatabaseStatus& d : dbs) {
    auto v = verdicts.find(d.key());
    if (v == verdicts.end()) {
      d.schema = SchemaStatus{};  // not the verdict it had while it was reachable
      d.schema.reason = "unreachable: its schema cannot be read";
      continue;
    }
    SchemaMemo& m = schema_memo_[d.key()];
    if (v->second.state == SchemaState::kDrift && m.suspected != m.fingerprint) {
      // First sight: confirmed by the next read (at the next poll).
      m.suspected = m.fingerprint;
      m.retry = true;
      v->second.state = SchemaState::kUnknown;
      v->second.reason = absl::StrCat("confirming at the next poll (it may have been read while "
                                      "a migration ran): ", v->second.reason);
    } else if (v->second.state != SchemaState::kDrift) {
      m.suspected.clear();
    }
    d.schema = std::move(v->second);
    d.schema.checked_at = m.read_at;
  }
  MatchRevisions(inv, graph, filters, snapshot);
}

std::optional<ExpectedSchema> Reconciler::CachedExpected(
    config::Dialect dialect, const std::vector<std::string>& revisions) {
  MutexLock lock(expected_mu_);
  auto it = expected_.find(std::make_pair(std::string(config::DialectName(dialect)), revisions));
  if (it == expected_.end()) return std::nullopt;
  return it->second;
}

void Reconciler::MatchRevisions(const config::Inventory& inv,
                                const migrations::RevisionGraph& graph,
                                const std::map<std::string, SchemaFilter>& filters,
                                FleetSnapshot* snapshot) {
  if (const std::string signature = LoadedSignature(); match_signature_ != signature) {
    match_memo_.clear();
    match_signature_ = signature;
  }
  // Each candidate not built yet is an Alembic run on a shadow database; a
  // pass builds a few and the next passes the rest, so that a project of
  // hundreds of revisions never holds a refresh up for minutes.
  constexpr int kBuildsPerPass = 8;
  int budget = kBuildsPerPass;
  struct Candidates {
    std::vector<std::pair<std::vector<std::string>, ExpectedSchema>> built;
    size_t total = 0;
  };
  std::map<config::Dialect, Candidates> by_dialect;
  // Base first, then every revision in graph order (fewer ancestors
  // first): an exact match names the earliest revision that builds it.
  auto candidates_for = [&](config::Dialect dialect, const SchemaFilter& filter) -> Candidates& {
    auto [it, fresh] = by_dialect.try_emplace(dialect);
    if (!fresh) return it->second;
    Candidates& c = it->second;
    migrations::Resolver resolver(&graph);
    std::vector<std::pair<size_t, int>> order;
    for (int i = 0; i < graph.size(); ++i) {
      order.emplace_back(resolver.AncestorsOf({i}, true).size(), i);
    }
    std::sort(order.begin(), order.end());
    auto add = [&](std::vector<std::string> label, const std::vector<std::string>& set) {
      ++c.total;
      std::optional<ExpectedSchema> e = CachedExpected(dialect, set);
      if (!e) {
        if (budget == 0) return;
        --budget;
        e = ExpectedSchemaFor(inv, dialect, set, filter);
      }
      c.built.emplace_back(std::move(label), *std::move(e));
    };
    // Named as Alembic names it: `alembic stamp base` empties the rows.
    add({"base"}, {});
    for (const auto& [depth, i] : order) add({graph.id(i)}, {graph.id(i)});
    return c;
  };
  for (DatabaseStatus& d : snapshot->databases) {
    const bool untrusted = d.schema.state == SchemaState::kDrift ||
                           d.state == DatabaseState::kOrphaned ||
                           d.state == DatabaseState::kVersionRowsLost;
    auto m = schema_memo_.find(d.key());
    if (!untrusted || m == schema_memo_.end() || m->second.fingerprint.empty()) continue;
    auto schema = schemas_.find(m->second.fingerprint);
    if (schema == schemas_.end()) continue;
    const std::string memo_key = absl::StrCat(m->second.dialect, "/", m->second.fingerprint);
    SchemaStatus matched;
    std::string so_far;
    if (auto hit = match_memo_.find(memo_key); hit != match_memo_.end()) {
      matched = hit->second;
    } else {
      Candidates& c = candidates_for(m->second.dialect_id, filters.at(d.key()));
      MatchRevision(*schema->second, c.built, &matched);
      if (c.built.size() == c.total || !matched.matches_revisions.empty()) {
        match_memo_.emplace(memo_key, matched);
      } else {  // not final: the next passes build the rest
        so_far =
            absl::StrCat(" (compared with ", c.built.size(), " of ", c.total, " revisions so far)");
      }
    }
    d.schema.matches_revisions = matched.matches_revisions;
    d.schema.closest_revisions = matched.closest_revisions;
    d.schema.closest_differences = matched.closest_differences;
    std::string rerun;
    if (d.revisions.size() == 1 && matched.matches_revisions.size() == 1 &&
        d.state != DatabaseState::kOrphaned && d.state != DatabaseState::kVersionRowsLost) {
      std::optional<int> row = graph.Find(d.revisions[0]);
      std::optional<int> parent = graph.Find(matched.matches_revisions[0]);
      // Not for a merge: Alembic's `downgrade REV-1` is ambiguous there.
      if (row && parent && graph.node(*row).down.size() == 1 &&
          *graph.node(*row).down.begin() == *parent) {
        rerun = d.revisions[0];
      }
    }
    d.schema.reason = absl::StrCat(d.schema.reason, MatchText(d.key(), d.schema, rerun), so_far);
  }
}

std::shared_ptr<const FleetSnapshot> Reconciler::Snapshot() const {
  MutexLock lock(mu_);
  return snapshot_;
}

std::shared_ptr<const migrations::Project> Reconciler::project() const {
  MutexLock lock(mu_);
  return project_;
}

std::string Reconciler::LoadedSignature() const {
  MutexLock lock(mu_);
  return loaded_signature_;
}

std::shared_ptr<const config::Inventory> Reconciler::inventory() const {
  MutexLock lock(mu_);
  return inventory_;
}

std::optional<VersionTarget> Reconciler::Target(const std::string& key) {
  bool published = false;
  {
    MutexLock lock(mu_);
    published = targets_published_;
  }
  if (!published) {
    absl::Status first = RefreshVersions();  // waits for a pass under way
    (void)first;  // a pass that fails leaves no targets: "not in the inventory"
  }
  MutexLock lock(mu_);
  auto it = targets_.find(key);
  if (it == targets_.end()) return std::nullopt;
  return it->second;
}

void Reconciler::SetInventory(std::shared_ptr<const config::Inventory> inventory) {
  MutexLock lock(mu_);
  inventory_ = std::move(inventory);
  reload_requested_ = true;
}

void Reconciler::Close() {
  closing_ = true;  // a running pass stops reading and ends
  MutexLock pass(refresh_mu_);
  MutexLock schemas(schema_mu_);
  closed_ = true;
}

void Reconciler::OnRefresh(std::function<void(const FleetSnapshot&)> callback) {
  MutexLock lock(mu_);
  on_refresh_ = std::move(callback);
}

absl::StatusOr<Reconciler::SchemaComparison> Reconciler::CompareSchema(const std::string& key,
                                                                       const std::string& against) {
  std::shared_ptr<const config::Inventory> inv = inventory();
  // The schema and the version rows of one snapshot (as the checks read them).
  auto read =
      [&](const std::string& which) -> absl::StatusOr<std::pair<VersionTarget, SchemaSnapshot>> {
    std::optional<VersionTarget> target = Target(which);
    if (!target) {
      return absl::NotFoundError(
          absl::StrCat("no database ", which, " in the inventory (lockstep status lists them)"));
    }
    absl::StatusOr<SchemaSnapshot> snap =
        reader_->ReadSchema(*target, SchemaFilterFor(*target, inv->project.schema_ignore));
    if (!snap.ok()) {
      return absl::Status(snap.status().code(), absl::StrCat(which, ": ", snap.status().message()));
    }
    if (!snap->locked_by.empty()) {
      return absl::UnavailableError(
          absl::StrCat(which, " is locked by ", snap->locked_by,
                       " (a step or restore may be changing it); compare again when it is done"));
    }
    return std::make_pair(*target, *std::move(snap));
  };
  absl::StatusOr<std::pair<VersionTarget, SchemaSnapshot>> found = read(key);
  if (!found.ok()) return found.status();
  const VersionTarget& target = found->first;
  SchemaComparison out;
  out.found_fingerprint = SchemaFingerprint(found->second.schema);
  Schema expected;
  if (against.find('/') != std::string::npos) {
    absl::StatusOr<std::pair<VersionTarget, SchemaSnapshot>> other = read(against);
    if (!other.ok()) return other.status();
    if (other->first.url.dialect != target.url.dialect) {
      return absl::InvalidArgumentError(absl::StrCat(
          key, " is ", config::DialectName(target.url.dialect), " and ", against, " is ",
          config::DialectName(other->first.url.dialect),
          ": their schemas are not comparable (compare each with a revision instead)"));
    }
    out.against = against;
    expected = std::move(other->second.schema);
  } else {
    std::vector<std::string> revisions;
    if (against.empty()) {
      revisions = found->second.rows;  // read with the schema
    } else if (against != "base") {
      std::shared_ptr<const migrations::Project> p = project();
      migrations::Resolver resolver(&p->graph());
      absl::StatusOr<std::vector<migrations::RevRef>> refs = resolver.GetRevisions(against);
      if (!refs.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--against ", against, ": ", migrations::CommandErrorMessage(refs.status())));
      }
      for (const migrations::RevRef& r : *refs) {
        if (r.is_rev()) revisions.push_back(p->graph().id(r.idx));
      }
      std::sort(revisions.begin(), revisions.end());
    }
    ExpectedSchema built = ExpectedSchemaFor(*inv, target.url.dialect, revisions,
                                             SchemaFilterFor(target, inv->project.schema_ignore));
    if (built.schema == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot build what Alembic makes of [", absl::StrJoin(revisions, ", "),
          "]: ", built.error.empty() ? "expected schemas are not built here" : built.error));
    }
    out.against = absl::StrCat("what Alembic builds for [", absl::StrJoin(revisions, ", "), "]",
                               against.empty() ? " (its version rows)" : "");
    expected = *built.schema;
  }
  out.against_fingerprint = SchemaFingerprint(expected);
  out.differences = Diff(expected, found->second.schema);
  return out;
}

}  // namespace lockstep::daemon
