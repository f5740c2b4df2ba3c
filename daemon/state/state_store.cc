#include "daemon/state/state_store.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <SQLiteCpp/SQLiteCpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "daemon/state/store_util.h"

namespace lockstep::daemon {
namespace {

using store_util::FromMicros;
using store_util::Guard;
using store_util::Join;
using store_util::Micros;
using store_util::Split;

// Schema migrations, applied in order; index i brings version i to i + 1.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE database_checks (
  database        TEXT PRIMARY KEY,
  environment     TEXT NOT NULL,
  revisions       TEXT NOT NULL,
  revisions_known INTEGER NOT NULL,
  state           TEXT NOT NULL,
  outcome         TEXT NOT NULL,
  error           TEXT NOT NULL,
  checked_at_us   INTEGER NOT NULL,
  changed_at_us   INTEGER NOT NULL
);
CREATE TABLE revision_changes (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  database        TEXT NOT NULL,
  from_revisions  TEXT NOT NULL,
  to_revisions    TEXT NOT NULL,
  observed_at_us  INTEGER NOT NULL
);
CREATE INDEX revision_changes_by_database ON revision_changes (database, id);
)sql",
    R"sql(
CREATE TABLE rollouts (
  id                 TEXT PRIMARY KEY,
  kind               TEXT NOT NULL,
  target             TEXT NOT NULL,
  target_revisions   TEXT NOT NULL,
  state              TEXT NOT NULL,
  reason             TEXT NOT NULL,
  created_by         TEXT NOT NULL,
  override_promotion INTEGER NOT NULL,
  created_at_us      INTEGER NOT NULL,
  updated_at_us      INTEGER NOT NULL,
  finished_at_us     INTEGER NOT NULL
);
CREATE TABLE rollout_stages (
  rollout_id        TEXT NOT NULL REFERENCES rollouts (id),
  position          INTEGER NOT NULL,
  environment       TEXT NOT NULL,
  state             TEXT NOT NULL,
  soak_us           INTEGER NOT NULL,
  approval_required INTEGER NOT NULL,
  batch_size        INTEGER NOT NULL,
  max_parallel      INTEGER NOT NULL,
  max_failures      INTEGER NOT NULL,
  on_failure        TEXT NOT NULL,
  backup_required   INTEGER NOT NULL,
  failures          INTEGER NOT NULL,
  approved_by       TEXT NOT NULL,
  approved_at_us    INTEGER NOT NULL,
  started_at_us     INTEGER NOT NULL,
  finished_at_us    INTEGER NOT NULL,
  PRIMARY KEY (rollout_id, position)
);
CREATE TABLE rollout_steps (
  rollout_id         TEXT NOT NULL REFERENCES rollouts (id),
  position           INTEGER NOT NULL,
  environment        TEXT NOT NULL,
  database           TEXT NOT NULL,
  wave               INTEGER NOT NULL,
  canary             INTEGER NOT NULL,
  from_revisions     TEXT NOT NULL,
  expected_revisions TEXT NOT NULL,
  path               TEXT NOT NULL,
  state              TEXT NOT NULL,
  phase              TEXT NOT NULL,
  error              TEXT NOT NULL,
  rollback           TEXT NOT NULL,
  output             TEXT NOT NULL,
  exit_code          INTEGER NOT NULL,
  backup_id          INTEGER NOT NULL,
  pid                INTEGER NOT NULL,
  attempts           INTEGER NOT NULL,
  alembic_us         INTEGER NOT NULL,
  started_at_us      INTEGER NOT NULL,
  finished_at_us     INTEGER NOT NULL,
  PRIMARY KEY (rollout_id, position)
);
CREATE TABLE rollout_events (
  rollout_id  TEXT NOT NULL REFERENCES rollouts (id),
  seq         INTEGER NOT NULL,
  at_us       INTEGER NOT NULL,
  kind        TEXT NOT NULL,
  environment TEXT NOT NULL,
  database    TEXT NOT NULL,
  message     TEXT NOT NULL,
  PRIMARY KEY (rollout_id, seq)
);
CREATE TABLE backups (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  environment   TEXT NOT NULL,
  database      TEXT NOT NULL,
  revisions     TEXT NOT NULL,
  path          TEXT NOT NULL,
  size_bytes    INTEGER NOT NULL,
  sha256        TEXT NOT NULL,
  rollout_id    TEXT NOT NULL,
  created_at_us INTEGER NOT NULL,
  took_us       INTEGER NOT NULL
);
CREATE INDEX backups_by_database ON backups (environment, database, id);
)sql",
    // 3: the canary gate of a stage.
    R"sql(
ALTER TABLE rollout_stages ADD COLUMN canary_soak_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollout_stages ADD COLUMN canary_approval_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollout_stages ADD COLUMN canary_approved_by TEXT NOT NULL DEFAULT '';
ALTER TABLE rollout_stages ADD COLUMN canary_approved_at_us INTEGER NOT NULL DEFAULT -9223372036854775808;
)sql",
    // 4: restore takes a safety backup first and records who restored; older
    // rows get "no note, never restored" (INT64_MIN is how "never" is kept).
    R"sql(
ALTER TABLE backups ADD COLUMN safety_for INTEGER NOT NULL DEFAULT 0;
ALTER TABLE backups ADD COLUMN note TEXT NOT NULL DEFAULT '';
ALTER TABLE backups ADD COLUMN restored_by TEXT NOT NULL DEFAULT '';
ALTER TABLE backups ADD COLUMN restored_at_us INTEGER NOT NULL DEFAULT -9223372036854775808;
)sql",
    // 5: what tells a step's Alembic from a later process with its pid.
    R"sql(
ALTER TABLE rollout_steps ADD COLUMN pid_identity TEXT NOT NULL DEFAULT '';
)sql",
    // 6: where a step's whole output is when it outgrew the 64 KiB kept here.
    R"sql(
ALTER TABLE rollout_steps ADD COLUMN output_log TEXT NOT NULL DEFAULT '';
)sql",
    // 7: an operator's reason for overriding a refusal (stamp --force).
    R"sql(
ALTER TABLE rollouts ADD COLUMN override_reason TEXT NOT NULL DEFAULT '';
)sql",
    // 8: the checksums of the revision files each database applied.
    R"sql(
CREATE TABLE checksum_sets (
  id   TEXT PRIMARY KEY,
  body TEXT NOT NULL
);
CREATE TABLE database_checksums (
  database TEXT PRIMARY KEY,
  set_id   TEXT NOT NULL
);
)sql",
    // 9: what Alembic builds for each revision set, kept across restarts.
    R"sql(
CREATE TABLE expected_schemas (
  key         TEXT PRIMARY KEY,
  schema_json TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  built_at_us INTEGER NOT NULL,
  took_us     INTEGER NOT NULL,
  used_at_us  INTEGER NOT NULL
);
)sql",
    // 10: a check row is written only when what it says changes, so its
    // time is when it was last recorded, not when it was last checked.
    R"sql(
ALTER TABLE database_checks RENAME COLUMN checked_at_us TO recorded_at_us;
)sql",
    // 11: four eyes: how many different people approve a stage, whether the
    // requester may be one, and who approved so far.
    R"sql(
ALTER TABLE rollout_stages ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 1;
ALTER TABLE rollout_stages ADD COLUMN distinct_from_requester INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollout_stages ADD COLUMN approvers TEXT NOT NULL DEFAULT '';
)sql",
    // 12: the audit log: mutating calls and refused ones.
    R"sql(
CREATE TABLE audit (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  at_us   INTEGER NOT NULL,
  subject TEXT NOT NULL,
  method  TEXT NOT NULL,
  peer    TEXT NOT NULL,
  rpc     TEXT NOT NULL,
  request TEXT NOT NULL,
  code    TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at_us);
ALTER TABLE rollouts ADD COLUMN override_window TEXT NOT NULL DEFAULT '';
)sql",
    // 13: a database's first sight is not a change from no rows. Older
    // stores: a database's oldest change from none was its first sight.
    // And each change's cause is looked up among the database's steps.
    R"sql(
CREATE INDEX IF NOT EXISTS rollout_steps_by_database ON rollout_steps (environment, database, started_at_us);
ALTER TABLE revision_changes ADD COLUMN first_seen INTEGER NOT NULL DEFAULT 0;
UPDATE revision_changes SET first_seen = 1
  WHERE from_revisions = '' AND id = (SELECT MIN(id) FROM revision_changes AS c
                                      WHERE c.database = revision_changes.database);
)sql",
    // 14: how far each webhook has been sent the event logs (their ids);
    // what the fleet showed that people are told of (schema drift, a
    // revision file edited after it was applied), once per occurrence.
    R"sql(
CREATE TABLE webhook_positions (
  name     TEXT PRIMARY KEY,
  position INTEGER NOT NULL
);
CREATE TABLE fleet_conditions (
  kind        TEXT NOT NULL,
  environment TEXT NOT NULL,
  database    TEXT NOT NULL,
  subject     TEXT NOT NULL,
  since_us    INTEGER NOT NULL,
  PRIMARY KEY (kind, environment, database, subject)
);
CREATE TABLE fleet_events (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  at_us       INTEGER NOT NULL,
  kind        TEXT NOT NULL,
  environment TEXT NOT NULL,
  database    TEXT NOT NULL,
  message     TEXT NOT NULL
);
)sql",
};

}  // namespace

StateStore::StateStore(std::unique_ptr<SQLite::Database> db)
    : db_(std::move(db)), prepared_(std::make_unique<store_util::StatementCache>(db_.get())) {}
StateStore::~StateStore() = default;

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::string& path,
                                                             absl::Duration busy_timeout) {
  std::unique_ptr<SQLite::Database> db;
  try {
    db = std::make_unique<SQLite::Database>(
        path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE,
        static_cast<int>(absl::ToInt64Milliseconds(busy_timeout)));
    db->exec("PRAGMA journal_mode = WAL");
    // WAL + NORMAL: a commit survives lockstepd being killed (it is in the
    // OS's cache); only an OS crash can lose the last few. Rollouts stay
    // safe even then: every step re-reads its database before acting, so a
    // lost record makes it "already at the target", never a second run.
    // FULL cost an fsync per Alembic output line and slowed rollouts ~15%.
    db->exec("PRAGMA synchronous = NORMAL");
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot open the state store ", path, ": ", e.what()));
  }
  std::unique_ptr<StateStore> store(new StateStore(std::move(db)));
  store->path_ = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    store->device_ = st.st_dev;
    store->inode_ = st.st_ino;
  }
  absl::Status migrated = store->Migrate();
  if (!migrated.ok()) return migrated;
  return store;
}

absl::Status StateStore::CheckFile() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "the state store file ", path_, " is gone (deleted while lockstepd runs): ",
        std::strerror(errno), "; what lockstepd records now would be lost, and a restart would "
        "start without its rollouts and backup catalog: put the file back where it was"));
  }
  if (static_cast<uint64_t>(st.st_dev) != device_ || static_cast<uint64_t>(st.st_ino) != inode_) {
    return absl::UnavailableError(absl::StrCat(
        "the state store file ", path_, " was replaced by another file while lockstepd runs; "
        "what lockstepd records goes to the old one. Restart lockstepd on the right file"));
  }
  return absl::OkStatus();
}

absl::Status StateStore::Migrate() {
  MutexLock lock(mu_);
  int version = db_->execAndGet("PRAGMA user_version").getInt();
  constexpr int kKnown = sizeof(kMigrations) / sizeof(kMigrations[0]);
  static_assert(kKnown == kSchemaVersion);
  if (version > kKnown) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the state store has schema version ", version, ", newer than this lockstepd knows (",
        kKnown, "); run a newer lockstepd or point server.state elsewhere"));
  }
  return Guard("schema upgrade", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Transaction tx(*db_);
    for (int v = version; v < kKnown; ++v) db_->exec(kMigrations[v]);
    db_->exec(absl::StrCat("PRAGMA user_version = ", kKnown));
    tx.commit();
  });
}

absl::StatusOr<std::vector<LastCheck>> StateStore::RecordChecks(
    const std::vector<CheckRecord>& checks) {
  MutexLock lock(mu_);
  std::vector<LastCheck> out;
  out.reserve(checks.size());
  absl::Status s = Guard("record checks", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    out.clear();       // a retried attempt starts over
    SQLite::Transaction tx(*db_);
    SQLite::Statement last(*db_,
                           "SELECT environment, revisions, revisions_known, state, outcome, error, "
                           "recorded_at_us, changed_at_us FROM database_checks WHERE database = ?");
    SQLite::Statement upsert(*db_, R"sql(
      INSERT INTO database_checks (database, environment, revisions, revisions_known, state,
                                   outcome, error, recorded_at_us, changed_at_us)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (database) DO UPDATE SET
        environment = excluded.environment, revisions = excluded.revisions,
        revisions_known = excluded.revisions_known, state = excluded.state,
        outcome = excluded.outcome, error = excluded.error,
        recorded_at_us = excluded.recorded_at_us, changed_at_us = excluded.changed_at_us)sql");
    SQLite::Statement change(
        *db_,
        "INSERT INTO revision_changes (database, from_revisions, to_revisions, "
        "observed_at_us, first_seen) VALUES (?, ?, ?, ?, ?)");
    for (const CheckRecord& c : checks) {
      bool had_before = false;
      std::string before_env;
      LastCheck before;
      before.changed_at = absl::InfinitePast();
      std::string before_joined;
      last.bind(1, c.database);
      if (last.executeStep()) {
        had_before = true;
        before_env = last.getColumn(0).getString();
        before_joined = last.getColumn(1).getString();
        before.revisions = Split(before_joined);
        before.revisions_known = last.getColumn(2).getInt() != 0;
        before.state = last.getColumn(3).getString();
        before.outcome = last.getColumn(4).getString();
        before.error = last.getColumn(5).getString();
        before.recorded_at = FromMicros(last.getColumn(6).getInt64());
        before.changed_at = FromMicros(last.getColumn(7).getInt64());
      }
      last.reset();
      const std::string now = Join(c.revisions);
      LastCheck after;
      after.revisions_known = c.rows_known || before.revisions_known;
      after.revisions = c.rows_known ? c.revisions : before.revisions;
      after.state = c.state;
      after.outcome = c.outcome;
      after.error = c.error;
      after.changed_at = before.changed_at;
      // Never known before, `before` is empty: a first sight of rows is a
      // change from none; a first sight of none is no change, so the history
      // holds no "<none> -> <none>" line (changed_at still starts there).
      if (c.rows_known && (!had_before || !before.revisions_known || before_joined != now)) {
        if (before_joined != now) {
          change.bind(1, c.database);
          change.bind(2, before_joined);
          change.bind(3, now);
          change.bind(4, static_cast<int64_t>(Micros(c.checked_at)));
          change.bind(5, !had_before || !before.revisions_known ? 1 : 0);
          change.exec();
          change.reset();
        }
        after.changed_at = c.checked_at;
      }
      // A row that says what it said is not written again: a pass over a
      // fleet at rest writes nothing but its transaction.
      if (had_before && before_env == c.environment && before.revisions == after.revisions &&
          before.revisions_known == after.revisions_known && before.state == after.state &&
          before.outcome == after.outcome && before.error == after.error &&
          before.changed_at == after.changed_at) {
        after.recorded_at = before.recorded_at;
        out.push_back(std::move(after));
        continue;
      }
      after.recorded_at = c.checked_at;
      upsert.bind(1, c.database);
      upsert.bind(2, c.environment);
      upsert.bind(3, Join(after.revisions));
      upsert.bind(4, after.revisions_known ? 1 : 0);
      upsert.bind(5, c.state);
      upsert.bind(6, c.outcome);
      upsert.bind(7, c.error);
      upsert.bind(8, static_cast<int64_t>(Micros(after.recorded_at)));
      upsert.bind(9, static_cast<int64_t>(Micros(after.changed_at)));
      upsert.exec();
      upsert.reset();
      out.push_back(std::move(after));
    }
    tx.commit();
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::map<std::string, LastCheck>> StateStore::LastChecks() {
  MutexLock lock(mu_);
  std::map<std::string, LastCheck> out;
  absl::Status s = Guard("read checks", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Statement q(*db_,
                        "SELECT database, revisions, revisions_known, state, outcome, error, "
                        "recorded_at_us, changed_at_us FROM database_checks");
    while (q.executeStep()) {
      LastCheck c;
      c.revisions = Split(q.getColumn(1).getString());
      c.revisions_known = q.getColumn(2).getInt() != 0;
      c.state = q.getColumn(3).getString();
      c.outcome = q.getColumn(4).getString();
      c.error = q.getColumn(5).getString();
      c.recorded_at = FromMicros(q.getColumn(6).getInt64());
      c.changed_at = FromMicros(q.getColumn(7).getInt64());
      out[q.getColumn(0).getString()] = std::move(c);
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status StateStore::SaveChecksums(const ChecksumSets& changed) {
  MutexLock lock(mu_);
  return Guard("record revision file checksums", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Transaction tx(*db_);
    SQLite::Statement add(*db_, "INSERT OR IGNORE INTO checksum_sets (id, body) VALUES (?, ?)");
    for (const auto& [id, body] : changed.bodies) {
      add.bind(1, id);
      add.bind(2, body);
      add.exec();
      add.reset();
    }
    SQLite::Statement point(*db_,
                            "INSERT INTO database_checksums (database, set_id) VALUES (?, ?) "
                            "ON CONFLICT (database) DO UPDATE SET set_id = excluded.set_id");
    for (const auto& [database, id] : changed.of) {
      point.bind(1, database);
      point.bind(2, id);
      point.exec();
      point.reset();
    }
    db_->exec("DELETE FROM checksum_sets WHERE id NOT IN (SELECT set_id FROM database_checksums)");
    tx.commit();
  });
}

absl::StatusOr<ChecksumSets> StateStore::LoadChecksums() {
  MutexLock lock(mu_);
  ChecksumSets out;
  absl::Status s = Guard("read revision file checksums", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Statement sets(*db_, "SELECT id, body FROM checksum_sets");
    while (sets.executeStep())
      out.bodies[sets.getColumn(0).getString()] = sets.getColumn(1).getString();
    SQLite::Statement of(*db_, "SELECT database, set_id FROM database_checksums");
    while (of.executeStep()) out.of[of.getColumn(0).getString()] = of.getColumn(1).getString();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status StateStore::SaveExpectedSchema(const std::string& key, const StoredExpectedSchema& e) {
  MutexLock lock(mu_);
  return Guard("record an expected schema", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Transaction tx(*db_);
    SQLite::Statement put(*db_, R"sql(
INSERT INTO expected_schemas (key, schema_json, fingerprint, built_at_us, took_us, used_at_us)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET schema_json = excluded.schema_json,
  fingerprint = excluded.fingerprint, built_at_us = excluded.built_at_us,
  took_us = excluded.took_us, used_at_us = excluded.used_at_us)sql");
    put.bind(1, key);
    put.bind(2, e.schema_json);
    put.bind(3, e.fingerprint);
    put.bind(4, static_cast<int64_t>(absl::ToUnixMicros(e.built_at)));
    put.bind(5, static_cast<int64_t>(absl::ToInt64Microseconds(e.took)));
    put.bind(6, static_cast<int64_t>(absl::ToUnixMicros(absl::Now())));
    put.exec();
    db_->exec(
        "DELETE FROM expected_schemas WHERE key NOT IN "
        "(SELECT key FROM expected_schemas ORDER BY used_at_us DESC LIMIT 2000)");
    tx.commit();
  });
}

absl::StatusOr<std::optional<StoredExpectedSchema>> StateStore::LoadExpectedSchema(
    const std::string& key) {
  MutexLock lock(mu_);
  std::optional<StoredExpectedSchema> out;
  absl::Status s = Guard("read an expected schema", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Statement q(*db_,
                        "SELECT schema_json, fingerprint, built_at_us, took_us "
                        "FROM expected_schemas WHERE key = ?");
    q.bind(1, key);
    if (!q.executeStep()) return;
    out = StoredExpectedSchema{q.getColumn(0).getString(), q.getColumn(1).getString(),
                               absl::FromUnixMicros(q.getColumn(2).getInt64()),
                               absl::Microseconds(q.getColumn(3).getInt64())};
    SQLite::Statement used(*db_, "UPDATE expected_schemas SET used_at_us = ? WHERE key = ?");
    used.bind(1, static_cast<int64_t>(absl::ToUnixMicros(absl::Now())));
    used.bind(2, key);
    used.exec();
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::vector<RevisionChange>> StateStore::Changes(const std::string& database,
                                                                int limit) {
  MutexLock lock(mu_);
  std::vector<RevisionChange> out;
  absl::Status s = Guard("read changes", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Statement q(*db_,
                        "SELECT from_revisions, to_revisions, observed_at_us, first_seen "
                        "FROM revision_changes "
                        // Older lockstepd recorded a first sight of an empty
                        // database as a change from none to none: not one.
                        "WHERE database = ? AND from_revisions != to_revisions "
                        "ORDER BY id DESC LIMIT ?");
    q.bind(1, database);
    q.bind(2, limit + 1);  // one more: when the oldest one shown was seen before
    std::vector<int64_t> observed_us;
    while (q.executeStep()) {
      RevisionChange c{database, Split(q.getColumn(0).getString()),
                       Split(q.getColumn(1).getString()), FromMicros(q.getColumn(2).getInt64())};
      c.first_seen = q.getColumn(3).getInt() != 0;
      out.push_back(std::move(c));
      observed_us.push_back(q.getColumn(2).getInt64());
    }
    // What lockstep did there in the window each change was observed in:
    // after the change before it was seen, up to its observation.
    const size_t slash = database.find('/');
    const std::string env = database.substr(0, slash);
    const std::string name = slash == std::string::npos ? "" : database.substr(slash + 1);
    SQLite::Statement steps(
        *db_,
        "SELECT s.rollout_id, r.kind, s.from_revisions, s.expected_revisions, s.started_at_us, "
        "s.finished_at_us FROM rollout_steps AS s JOIN rollouts AS r ON r.id = s.rollout_id "
        "WHERE s.environment = ? AND s.database = ? AND s.started_at_us != ? "
        "AND s.started_at_us <= ? AND (s.finished_at_us = ? OR s.finished_at_us >= ?) "
        "ORDER BY s.started_at_us DESC");
    SQLite::Statement restores(
        *db_,
        "SELECT id, revisions, restored_by FROM backups WHERE environment = ? AND database = ? "
        "AND restored_at_us > ? AND restored_at_us <= ? ORDER BY restored_at_us DESC LIMIT 1");
    for (size_t i = 0; i < out.size(); ++i) {
      RevisionChange& c = out[i];
      if (c.first_seen) continue;
      const int64_t seen = observed_us[i];
      const int64_t after = i + 1 < observed_us.size() ? observed_us[i + 1] : INT64_MIN;
      const std::string to = Join(c.to);
      steps.bind(1, env);
      steps.bind(2, name);
      steps.bind(3, INT64_MIN);
      steps.bind(4, seen);
      steps.bind(5, INT64_MIN);
      steps.bind(6, after);
      int64_t step_at = INT64_MIN;
      while (steps.executeStep()) {
        const int64_t started = steps.getColumn(4).getInt64();
        const int64_t finished = steps.getColumn(5).getInt64();
        // The step left `to` (its target; or where it started, after its
        // backup was restored), or was running when `to` was seen (a step
        // of several revisions, seen half way).
        const bool running_then = finished == INT64_MIN || finished >= seen;
        if (steps.getColumn(3).getString() == to || steps.getColumn(2).getString() == to ||
            running_then) {
          c.rollout_id = steps.getColumn(0).getString();
          c.rollout_kind = steps.getColumn(1).getString();
          step_at = started;
          break;
        }
      }
      steps.reset();
      restores.bind(1, env);
      restores.bind(2, name);
      restores.bind(3, std::max(after, step_at));  // a restore after that step, if any
      restores.bind(4, seen);
      if (restores.executeStep() && restores.getColumn(1).getString() == to) {
        if (c.rollout_kind != "restore") {  // a restore's own rollout stays named
          c.rollout_id.clear();
          c.rollout_kind.clear();
        }
        c.restored_backup = restores.getColumn(0).getInt64();
        c.restored_by = restores.getColumn(2).getString();
      }
      restores.reset();
    }
    if (out.size() > static_cast<size_t>(std::max(limit, 0))) out.resize(std::max(limit, 0));
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace lockstep::daemon
