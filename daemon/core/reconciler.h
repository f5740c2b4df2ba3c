// The reconciler: checks every database, classifies it against the revision
// graph and its environment's target, and publishes a FleetSnapshot.
//
// Example:
//   auto r = Reconciler::Create(inventory, drivers, store.get());  // a Drivers reads
//   (*r)->Refresh();                     // at start, every poll, on Refresh()
//   auto snapshot = (*r)->Snapshot();    // cheap; immutable
//
// Thread-safe. Refresh() runs one pass at a time (a second caller waits and
// returns after the pass in progress); checks inside a pass run on up to
// server.max_concurrent_checks threads. The store must outlive the
// reconciler.
#ifndef LOCKSTEP_DAEMON_CORE_RECONCILER_H_
#define LOCKSTEP_DAEMON_CORE_RECONCILER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "config/inventory.h"
#include "daemon/core/revision_checksums.h"
#include "daemon/core/schema_check.h"
#include "daemon/drivers/version_reader.h"
#include "daemon/model/clock.h"
#include "daemon/model/fleet.h"
#include "daemon/model/mutex.h"
#include "daemon/state/state_store.h"
#include "migrations/project.h"

namespace lockstep::daemon {

class Reconciler {
 public:
  // Fails when the project cannot be loaded at all at start. `clock` (may
  // be null: the wall clock; must outlive the reconciler) stamps what it
  // records: when a change was seen, when the scripts were loaded. The
  // rollout engine must use the same one: the planner compares the two.
  static absl::StatusOr<std::unique_ptr<Reconciler>> Create(
      std::shared_ptr<const config::Inventory> inventory, std::shared_ptr<VersionReader> reader,
      StateStore* store, const Clock* clock = nullptr);

  // One full pass: RefreshVersions(), then RefreshSchemas() (`lockstep
  // refresh`, a rollout after its steps: everything read when it returns).
  absl::Status Refresh();
  // The version pass: reload the scripts if they changed, expand discover
  // rules, read every database's version rows, record changes, publish the
  // snapshot. Each database keeps its schema verdict while its rows are
  // unchanged; one whose rows changed reads "its schema is being read" until
  // the next schema pass. Never waits for a schema pass (lockstepd's poll
  // loop runs the two on their own threads: reading thousands of schemas,
  // or Alembic building an expected one, does not hold the status back).
  absl::Status RefreshVersions();
  // The schema pass, on the last published snapshot: reads the schemas
  // that are due (every server.schema_interval; a database whose rows
  // changed, or that is new, or whose read is to be retried: at once),
  // judges them and publishes the verdicts into the newest snapshot (a
  // database whose rows changed meanwhile keeps waiting for the next pass).
  absl::Status RefreshSchemas();

  std::shared_ptr<const FleetSnapshot> Snapshot() const;
  std::shared_ptr<const migrations::Project> project() const;
  std::shared_ptr<const config::Inventory> inventory() const;
  // How to reach database "env/name" (static or discovered) as of the last
  // version pass: its URL and where its password comes from. Before this
  // process's first pass has published, runs one: a rollout recovered at
  // start (a step to settle, a restore to run again) asks before the poll
  // loop's first pass ends, and that pass takes seconds at 100,000
  // databases. Never call it from inside a pass.
  std::optional<VersionTarget> Target(const std::string& key);

  // Takes a new inventory (SIGHUP); used from the next refresh on.
  void SetInventory(std::shared_ptr<const config::Inventory> inventory);

  // What Alembic builds for a revision set on an empty database of a
  // dialect (daemon/rollout/shadow_schema.h); schemas are judged against it
  // when it can be built, else against their cohort. Built once per
  // dialect, revision set and version of the scripts.
  using ExpectedSchemaFn = std::function<absl::StatusOr<Schema>(
      const config::Inventory&, config::Dialect, const std::vector<std::string>&,
      const SchemaFilter&)>;
  void SetExpectedSchemas(ExpectedSchemaFn fn);
  // The expected schema of `revisions` on `dialect` (cached, else built
  // now; thread-safe, for a rollout step's check after Alembic). A null
  // schema with an empty error: no builder is set. A null schema with an
  // error: it could not be built, and why.
  ExpectedSchema ExpectedSchemaFor(const config::Inventory& inv, config::Dialect dialect,
                                   const std::vector<std::string>& revisions,
                                   const SchemaFilter& filter);

  // `lockstep diff`: the schema of database `key` ("env/name"), read now,
  // against `against`: another database ("env/name", same dialect), a
  // revision identifier (a revision, heads, base: what Alembic builds for
  // it), or, empty, what Alembic builds for the database's own version
  // rows. Differences are "expected" = against, "found" = the database.
  struct SchemaComparison {
    std::string against;  // in words: "prod/t1", "what Alembic builds for [e9a8…]"
    std::string found_fingerprint;
    std::string against_fingerprint;
    std::vector<SchemaDifference> differences;
  };
  absl::StatusOr<SchemaComparison> CompareSchema(const std::string& key,
                                                 const std::string& against);

  // A lockstep step ran `revisions` on the database `key` (env/name):
  // upgraded, or downgraded; their files' checksums as they are now are
  // recorded as applied, or forgotten (revision_checksums.h).
  void RecordApplied(const std::string& key, const std::vector<std::string>& revisions,
                     bool upgrade);

  // Expected schemas since start: built by Alembic (and how long that
  // took), or loaded from the state store (built before from the same files).
  ExpectedBuildStats BuildStats();

  // The next pass reads every schema, due or not (`lockstep refresh`).
  void RequestSchemaPass() { schema_pass_requested_ = true; }

  // Called after each refresh with the new snapshot (metrics hook).
  void OnRefresh(std::function<void(const FleetSnapshot&)> callback);

  // Makes a running pass stop reading and end (UNAVAILABLE, nothing
  // published), and later ones end at once: SIGTERM does not wait for a
  // pass over a large fleet. Close() does it too.
  void Interrupt() { closing_ = true; }

  // Waits for a running pass and makes later Refresh() calls return
  // UNAVAILABLE without touching the store: call before the store goes away
  // (a Refresh RPC may still hold this reconciler on its own thread).
  void Close();

 private:
  // RefreshVersions() but for giving memory back: the pass itself.
  absl::Status VersionPass();
  Reconciler() = default;
  // Makes `snapshot` (null: a copy of the one published now; and
  // `targets`, unless null) what readers see, with the schema verdicts of
  // `schemas_from` (null: the snapshot published now) carried over where
  // the version rows are the same, then calls the OnRefresh callback. The
  // two passes publish one at a time.
  void Publish(std::shared_ptr<FleetSnapshot> snapshot,
               std::map<std::string, VersionTarget>* targets,
               const FleetSnapshot* schemas_from = nullptr) ABSL_LOCKS_EXCLUDED(publish_mu_);
  // Reloads the project when the version folders changed; keeps the last
  // good graph (and reports the error) when the new one does not load.
  void MaybeReloadProject(const config::Inventory& inv, GraphStatus* graph)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_);
  // The pass's durable record (the store), and what it gives back: when
  // each database last changed.
  absl::Status Record(const std::vector<VersionRead>& reads, absl::Time checked_at,
                      FleetSnapshot* snapshot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_);
  // Each database of `to` takes its schema verdict in `from` when its rows
  // are the same there; else it reads "its schema is being read". The
  // expected-schema build figures go along.
  static void CarrySchemas(const FleetSnapshot& from, FleetSnapshot* to);
  // Revision files changed since each database applied them.
  absl::Status CheckRevisionFiles(const migrations::Project& project, absl::Time now,
                                  FleetSnapshot* snapshot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_);
  // The checksums of a revision's file as it is now (cached by the file's
  // size and mtime); nullopt when the revision or its file is gone.
  std::optional<FileChecksum> CurrentChecksum(const migrations::Project& project,
                                              const std::string& revision);
  // The signature of the scripts project() was loaded from.
  std::string LoadedSignature() const;
  // The state store's key for what Alembic builds for `revisions`: a hash of
  // everything the build depends on; "" when a file is missing.
  std::string ExpectedKey(const config::Inventory& inv, config::Dialect dialect,
                          const std::vector<std::string>& revisions, const SchemaFilter& filter);
  // Reads the schemas that are due (every server.schema_interval, and any
  // database whose version rows changed since its last read) and judges
  // every database's schema (schema_check.h) into snapshot->databases;
  // `targets[i]` reaches snapshot->databases[i].
  void CheckSchemas(const config::Inventory& inv, const migrations::RevisionGraph& graph,
                    const std::vector<const VersionTarget*>& targets, FleetSnapshot* snapshot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(schema_mu_);
  // Expected schemas for the cohorts in `samples` that have none yet (or
  // whose build failed, when `retry_failed`).
  // For each database whose version rows cannot be trusted (its schema
  // drifted, it is orphaned or lost its rows): the revision whose expected
  // schema it holds, or the closest (MatchRevision). The candidates, base
  // and every single revision, are built when first needed, once per
  // scripts signature, at most 8 a pass; a result is kept per dialect and
  // fingerprint once every candidate was compared (or one matched).
  void MatchRevisions(const config::Inventory& inv, const migrations::RevisionGraph& graph,
                      const std::map<std::string, SchemaFilter>& filters, FleetSnapshot* snapshot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(schema_mu_);
  // The expected schema of `revisions` if it was built already.
  std::optional<ExpectedSchema> CachedExpected(config::Dialect dialect,
                                               const std::vector<std::string>& revisions);
  ExpectedSchemas Expected(const config::Inventory& inv, const migrations::RevisionGraph& graph,
                           const std::vector<SchemaSample>& samples,
                           const std::map<std::string, SchemaFilter>& filters, bool retry_failed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(schema_mu_);

  // Each database's last schema read (by key) and the schemas read, shared
  // by fingerprint (thousands of tenants usually hold a handful).
  struct SchemaMemo {
    config::Dialect dialect_id = config::Dialect::kSqlite;
    std::string dialect;
    std::vector<std::string> revisions;  // read with the schema
    std::string fingerprint;             // empty when it could not be read
    std::string error;
    bool retry = false;  // read again at the next pass, not the next interval
    absl::Time read_at = absl::InfinitePast();
    // A schema judged drift once: drift is reported when a second read
    // finds the same schema (a migration run by hand outside a transaction
    // is not mistaken for drift).
    std::string suspected;
  };
  Mutex schema_mu_;  // one schema pass at a time
  std::map<std::string, SchemaMemo> schema_memo_ ABSL_GUARDED_BY(schema_mu_);
  std::map<std::string, std::shared_ptr<const Schema>> schemas_ ABSL_GUARDED_BY(schema_mu_);
  absl::Time last_schema_pass_ ABSL_GUARDED_BY(schema_mu_) = absl::InfinitePast();
  // MatchRevisions' results by "dialect/fingerprint", for match_signature_.
  std::map<std::string, SchemaStatus> match_memo_ ABSL_GUARDED_BY(schema_mu_);
  std::string match_signature_ ABSL_GUARDED_BY(schema_mu_);
  ExpectedSchemaFn expected_fn_ ABSL_GUARDED_BY(mu_);
  Mutex expected_mu_;  // held while one is built: each is built once
  // Built for expected_signature_, the scripts' signature.
  ExpectedSchemas expected_ ABSL_GUARDED_BY(expected_mu_);
  ExpectedBuildStats build_stats_ ABSL_GUARDED_BY(expected_mu_);
  std::string expected_signature_ ABSL_GUARDED_BY(expected_mu_);

  ChecksumLedger checksums_;
  struct CachedFile {
    int64_t size = -1;
    int64_t mtime_ns = 0;
    FileChecksum sum;
  };
  Mutex files_mu_;
  std::map<std::string, CachedFile> files_ ABSL_GUARDED_BY(files_mu_);  // by path

  RealClock real_clock_;
  const Clock* clock_ = &real_clock_;  // constant after Create
  std::shared_ptr<VersionReader> reader_;  // shared with the rollout engine (daemon: the Drivers)
  StateStore* store_ = nullptr;

  Mutex refresh_mu_;  // one version pass at a time
  Mutex publish_mu_;  // one publication at a time (a version and a schema pass)
  // Set by Close() holding refresh_mu_ and schema_mu_ (either one reads it).
  std::atomic<bool> closed_{false};
  mutable Mutex mu_;
  std::shared_ptr<const config::Inventory> inventory_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const migrations::Project> project_ ABSL_GUARDED_BY(mu_);
  // The scripts' signature as the version pass last saw them; and that of
  // project_, the last that loaded (the schema pass's, published with it).
  std::string project_signature_ ABSL_GUARDED_BY(refresh_mu_);
  std::string loaded_signature_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> reload_requested_{false};  // SetInventory: reload the scripts next pass
  std::atomic<bool> schema_pass_requested_{false};  // RequestSchemaPass
  std::atomic<bool> closing_{false};                // Interrupt, Close
  GraphStatus graph_ ABSL_GUARDED_BY(refresh_mu_);
  std::shared_ptr<const FleetSnapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  bool targets_published_ ABSL_GUARDED_BY(mu_) = false;  // by a version pass
  std::map<std::string, VersionTarget> targets_ ABSL_GUARDED_BY(mu_);
  std::function<void(const FleetSnapshot&)> on_refresh_ ABSL_GUARDED_BY(mu_);
};

// The project source an inventory names.
migrations::ProjectSource ProjectSourceOf(const config::Inventory& inv);
// A cheap fingerprint of the version folders (names, sizes, mtimes).
std::string ScriptsSignature(const migrations::ScriptLocation& location);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_CORE_RECONCILER_H_
