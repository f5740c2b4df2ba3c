#include "daemon/state/state_store.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class StateStoreTest : public ::testing::Test {
 protected:
  CheckRecord Check(const std::string& db, std::vector<std::string> rows, bool known, int t) {
    return {db, "prod", known, std::move(rows), known ? "current" : "unreachable", known ? "ok" : "unreachable",
            known ? "" : "refused", absl::FromUnixSeconds(1000 + t)};
  }
  lockstep::testing::TempDir tmp_{"lockstep-state"};
  std::string dir_ = tmp_.path();
  std::string path_ = dir_ + "/state.db";
};

TEST_F(StateStoreTest, RecordsChangesAndSurvivesReopen) {
  {
    auto store = StateStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {"r1"}, true, 0)}).ok());
    ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {"r1"}, true, 1)}).ok());   // no change
    ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {}, false, 2)}).ok());      // unreachable
    ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {"r2"}, true, 3)}).ok());   // by hand
  }
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok());
  auto changes = (*store)->Changes("prod/a", 10);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_THAT((*changes)[0].from, ElementsAre("r1"));
  EXPECT_THAT((*changes)[0].to, ElementsAre("r2"));
  EXPECT_EQ((*changes)[0].observed_at, absl::FromUnixSeconds(1003));
  EXPECT_FALSE((*changes)[0].first_seen);
  EXPECT_TRUE((*changes)[0].rollout_id.empty());  // no rollout or restore: by hand
  EXPECT_EQ((*changes)[0].restored_backup, 0);
  EXPECT_THAT((*changes)[1].from, IsEmpty());
  EXPECT_TRUE((*changes)[1].first_seen);
  auto last = (*store)->LastChecks();
  ASSERT_TRUE(last.ok());
  EXPECT_THAT(last->at("prod/a").revisions, ElementsAre("r2"));
  EXPECT_EQ(last->at("prod/a").changed_at, absl::FromUnixSeconds(1003));
}

// The audit log: newest first, by time and subject, and it survives a reopen.
TEST_F(StateStoreTest, AuditRecordsNewestFirstBySinceAndSubject) {
  {
    auto store = StateStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    for (int i = 0; i < 5; ++i) {
      AuditRecord r;
      r.at = absl::FromUnixSeconds(100 + i);
      r.subject = i % 2 ? "alice" : "bob";
      r.method = "token";
      r.rpc = i == 4 ? "RestoreBackup" : "StartRollout";
      r.request = absl::StrCat("target: \"r", i, "\"");
      r.code = i == 2 ? "PERMISSION_DENIED" : "OK";
      ASSERT_TRUE((*store)->AddAudit(&r).ok());
      EXPECT_EQ(r.id, i + 1);
    }
  }
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto all = (*store)->Audit(absl::InfinitePast(), "", 10);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[0].rpc, "RestoreBackup");
  EXPECT_EQ((*all)[2].code, "PERMISSION_DENIED");
  EXPECT_EQ((*all)[4].at, absl::FromUnixSeconds(100));
  auto alice = (*store)->Audit(absl::FromUnixSeconds(102), "alice", 10);
  ASSERT_TRUE(alice.ok());
  ASSERT_EQ(alice->size(), 1u);
  EXPECT_EQ((*alice)[0].request, "target: \"r3\"");
  EXPECT_EQ((*store)->Audit(absl::InfinitePast(), "", 2)->size(), 2u);
}

// The audit log keeps the newest kAuditKeep records: past them, the oldest
// go (every thousandth record trims), so it cannot fill the disk.
TEST_F(StateStoreTest, TheAuditLogKeepsTheNewestHundredThousand) {
  ASSERT_TRUE(StateStore::Open(path_).ok());
  const int64_t kept = StateStore::kAuditKeep;
  {
    // A long history, written at once (AddAudit commits each record).
    SQLite::Database db(path_, SQLite::OPEN_READWRITE);
    SQLite::Transaction tx(db);
    SQLite::Statement q(db,
                        "INSERT INTO audit (at_us, subject, method, peer, rpc, request, code, "
                        "message) VALUES (?, 'bot', 'token', 'ipv4:127.0.0.1:1', 'Refresh', '', "
                        "'OK', '')");
    for (int64_t i = 1; i <= kept + 998; ++i) {
      q.bind(1, i);
      q.exec();
      q.reset();
    }
    tx.commit();
  }
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto count = [&] {
    SQLite::Database db(path_, SQLite::OPEN_READONLY);
    return db.execAndGet("SELECT COUNT(*) FROM audit").getInt64();
  };
  AuditRecord r;
  r.at = absl::FromUnixSeconds(5000);
  r.subject = "alice";
  r.rpc = "StartRollout";
  ASSERT_TRUE((*store)->AddAudit(&r).ok());
  EXPECT_EQ(r.id, kept + 999);
  EXPECT_EQ(count(), kept + 999);  // trimmed only every thousandth record
  ASSERT_TRUE((*store)->AddAudit(&r).ok());
  EXPECT_EQ(r.id, kept + 1000);
  EXPECT_EQ(count(), kept);  // the oldest thousand went
  auto newest = (*store)->Audit(absl::InfinitePast(), "alice", 10);
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_EQ(newest->size(), 2u);
  SQLite::Database db(path_, SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT MIN(id) FROM audit").getInt64(), 1001);
}

TEST_F(StateStoreTest, UnreachableKeepsLastKnownRevisions) {
  auto store = StateStore::Open(path_);
  ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {"r1"}, true, 0)}).ok());
  ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {}, false, 5)}).ok());
  auto last = (*store)->LastChecks();
  EXPECT_THAT(last->at("prod/a").revisions, ElementsAre("r1"));
  EXPECT_EQ(last->at("prod/a").outcome, "unreachable");
  EXPECT_EQ(last->at("prod/a").recorded_at, absl::FromUnixSeconds(1005));
}

// A pass over a fleet at rest writes no row: each check that says what the
// last one said leaves its row (and the file) as it was, and what the store
// holds still comes back for every check.
TEST_F(StateStoreTest, ACheckThatFindsWhatTheLastFoundWritesNothing) {
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto first =
      (*store)->RecordChecks({Check("prod/a", {"r1"}, true, 0), Check("prod/b", {}, false, 0)});
  ASSERT_TRUE(first.ok()) << first.status();
  SQLite::Database db(path_, SQLite::OPEN_READONLY);
  auto data_version = [&] { return db.execAndGet("PRAGMA data_version").getInt(); };
  const int before = data_version();
  auto again =
      (*store)->RecordChecks({Check("prod/a", {"r1"}, true, 7), Check("prod/b", {}, false, 7)});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(data_version(), before) << "a pass that found nothing new wrote to the store";
  ASSERT_EQ(again->size(), 2u);
  EXPECT_THAT((*again)[0].revisions, ElementsAre("r1"));
  EXPECT_EQ((*again)[0].changed_at, absl::FromUnixSeconds(1000));
  EXPECT_EQ((*again)[0].recorded_at, absl::FromUnixSeconds(1000));
  EXPECT_FALSE((*again)[1].revisions_known);
  EXPECT_EQ((*again)[1].outcome, "unreachable");
  // A change writes that row, and only that one.
  auto moved =
      (*store)->RecordChecks({Check("prod/a", {"r2"}, true, 9), Check("prod/b", {}, false, 9)});
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_NE(data_version(), before);
  EXPECT_EQ((*moved)[0].changed_at, absl::FromUnixSeconds(1009));
  auto last = (*store)->LastChecks();
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->at("prod/a").recorded_at, absl::FromUnixSeconds(1009));
  EXPECT_EQ(last->at("prod/b").recorded_at, absl::FromUnixSeconds(1000));
}

TEST_F(StateStoreTest, AnEmptyDatabaseSeenFirstIsNoChange) {
  {
    auto store = StateStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {}, true, 0)}).ok());  // never migrated
    auto changes = (*store)->Changes("prod/a", 10);
    ASSERT_TRUE(changes.ok());
    EXPECT_THAT(*changes, IsEmpty());
    // It still counts as seen: last_change starts at the first sight.
    EXPECT_EQ((*store)->LastChecks()->at("prod/a").changed_at, absl::FromUnixSeconds(1000));
    ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {"r1"}, true, 1)}).ok());
  }
  // A row an older lockstepd wrote for the same first sight is not shown.
  {
    SQLite::Database db(path_, SQLite::OPEN_READWRITE);
    db.exec(
        "INSERT INTO revision_changes (database, from_revisions, to_revisions, observed_at_us) "
        "VALUES ('prod/a', '', '', 500)");
  }
  auto store = StateStore::Open(path_);
  auto changes = (*store)->Changes("prod/a", 10);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_THAT((*changes)[0].from, IsEmpty());
  EXPECT_THAT((*changes)[0].to, ElementsAre("r1"));
  EXPECT_FALSE((*changes)[0].first_seen);  // a database without rows that got some
}

// `db` history says which rollout step or restore changed a database, from
// what lockstep did between the observation before and this one; a change
// nothing of lockstep's explains was made outside it.
TEST_F(StateStoreTest, HistoryNamesTheRolloutOrRestoreThatChangedADatabase) {
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->RecordChecks({Check("prod/t1", {"a"}, true, 0)}).ok());
  Rollout r;
  r.id = "r-1";
  r.kind = "upgrade";
  r.target = "heads";
  r.created_at = absl::FromUnixSeconds(1004);
  r.stages.push_back({});
  r.stages[0].environment = "prod";
  RolloutStep step;
  step.environment = "prod";
  step.database = "t1";
  step.from = {"a"};
  step.expected = {"b"};
  step.state = StepState::kSucceeded;
  step.started_at = absl::FromUnixSeconds(1005);
  step.finished_at = absl::FromUnixSeconds(1006);
  r.steps.push_back(step);
  RolloutStep other = step;  // another database's step in the same window
  other.index = 1;
  other.database = "t2";
  other.expected = {"c"};
  r.steps.push_back(other);
  ASSERT_TRUE((*store)->SaveRollout(r).ok());
  ASSERT_TRUE((*store)->RecordChecks({Check("prod/t1", {"b"}, true, 10)}).ok());
  Backup b;
  b.environment = "prod";
  b.database = "t1";
  b.revisions = {"a"};
  b.created_at = absl::FromUnixSeconds(1005);
  ASSERT_TRUE((*store)->AddBackup(&b).ok());
  ASSERT_TRUE((*store)->MarkRestored(b.id, "alice@vm", absl::FromUnixSeconds(1015)).ok());
  ASSERT_TRUE((*store)->RecordChecks({Check("prod/t1", {"a"}, true, 20)}).ok());
  ASSERT_TRUE((*store)->RecordChecks({Check("prod/t1", {"c"}, true, 30)}).ok());  // by hand

  auto changes = (*store)->Changes("prod/t1", 10);
  ASSERT_TRUE(changes.ok()) << changes.status();
  ASSERT_EQ(changes->size(), 4u);
  EXPECT_THAT((*changes)[0].to, ElementsAre("c"));
  EXPECT_EQ((*changes)[0].rollout_id, "");  // r-1 ended before the observation before
  EXPECT_EQ((*changes)[0].restored_backup, 0);
  EXPECT_THAT((*changes)[1].to, ElementsAre("a"));
  EXPECT_EQ((*changes)[1].restored_backup, b.id);
  EXPECT_EQ((*changes)[1].restored_by, "alice@vm");
  EXPECT_EQ((*changes)[1].rollout_id, "");
  EXPECT_THAT((*changes)[2].to, ElementsAre("b"));
  EXPECT_EQ((*changes)[2].rollout_id, "r-1");
  EXPECT_EQ((*changes)[2].rollout_kind, "upgrade");
  EXPECT_TRUE((*changes)[3].first_seen);
  EXPECT_EQ((*changes)[3].rollout_id, "");
  // A store from before first sights were recorded (schema 12): the
  // oldest change from none of each database was its first sight.
  store->reset();
  {
    SQLite::Database db(path_, SQLite::OPEN_READWRITE);
    db.exec(
        "ALTER TABLE revision_changes DROP COLUMN first_seen; DROP TABLE webhook_positions; "
        "DROP TABLE fleet_conditions; DROP TABLE fleet_events; "
        "PRAGMA user_version = 12;");
  }
  store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  changes = (*store)->Changes("prod/t1", 10);
  ASSERT_EQ(changes->size(), 4u);
  EXPECT_TRUE((*changes)[3].first_seen);
  EXPECT_FALSE((*changes)[2].first_seen);
  // The limit cuts the list, not what the oldest one shown is judged by.
  auto newest = (*store)->Changes("prod/t1", 2);
  ASSERT_EQ(newest->size(), 2u);
  EXPECT_EQ((*newest)[1].restored_backup, b.id);
}

TEST_F(StateStoreTest, RefusesANewerSchema) {
  {
    SQLite::Database db(path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA user_version = 99");
  }
  EXPECT_THAT(StateStore::Open(path_).status().message(), HasSubstr("schema version 99, newer"));
}

TEST_F(StateStoreTest, UpgradesAVersionOneFileKeepingItsChecks) {
  {
    // A state file as lockstepd with schema 1 left it.
    SQLite::Database db(path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec(R"sql(
      CREATE TABLE database_checks (database TEXT PRIMARY KEY, environment TEXT NOT NULL,
        revisions TEXT NOT NULL, revisions_known INTEGER NOT NULL, state TEXT NOT NULL,
        outcome TEXT NOT NULL, error TEXT NOT NULL, checked_at_us INTEGER NOT NULL,
        changed_at_us INTEGER NOT NULL);
      CREATE TABLE revision_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, database TEXT NOT NULL,
        from_revisions TEXT NOT NULL, to_revisions TEXT NOT NULL, observed_at_us INTEGER NOT NULL);
      INSERT INTO database_checks VALUES ('prod/a', 'prod', 'r1', 1, 'current', 'ok', '', 5, 4);
      PRAGMA user_version = 1;)sql");
  }
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_THAT((*store)->LastChecks()->at("prod/a").revisions, ElementsAre("r1"));
  auto rollouts = (*store)->ListRollouts(10);
  ASSERT_TRUE(rollouts.ok()) << rollouts.status();
  EXPECT_THAT(*rollouts, IsEmpty());
  SQLite::Database db(path_, SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("PRAGMA user_version").getInt(), StateStore::kSchemaVersion);
}

TEST_F(StateStoreTest, RolloutsStepsEventsAndBackupsRoundTrip) {
  Rollout r;
  r.id = "r-1";
  r.target = "heads";
  r.target_revisions = {"h1", "h2"};
  r.created_at = absl::FromUnixSeconds(100);
  r.stages.push_back({});
  r.stages[0].environment = "prod";
  r.stages[0].soak = absl::Minutes(10);
  r.stages[0].approval_required = true;
  RolloutStep step;
  step.environment = "prod";
  step.database = "t1";
  step.from = {"a"};
  step.expected = {"h1", "h2"};
  step.path = {"b", "h1", "h2"};
  r.steps.push_back(step);
  {
    auto store = StateStore::Open(path_);
    ASSERT_TRUE((*store)->SaveRollout(r).ok());
    step.state = StepState::kRunning;
    step.phase = StepPhase::kAlembic;
    step.pid = 4242;
    step.pid_identity = "boot/123";
    step.backup_id = 7;
    ASSERT_TRUE((*store)->SaveStep("r-1", step).ok());
    r.stages[0].approved_by = "alice";
    ASSERT_TRUE((*store)->SaveStage("r-1", 0, r.stages[0]).ok());
    RolloutEvent e1{0, absl::FromUnixSeconds(101), EventKind::kStepStarted, "prod", "t1", "go"};
    RolloutEvent e2{0,    absl::FromUnixSeconds(102), EventKind::kOutput, "prod",
                    "t1", "Running upgrade"};
    ASSERT_TRUE((*store)->AppendEvent("r-1", &e1).ok());
    ASSERT_TRUE((*store)->AppendEvent("r-1", &e2).ok());
    EXPECT_EQ(e1.seq, 1);
    EXPECT_EQ(e2.seq, 2);
    Backup b;
    b.environment = "prod";
    b.database = "t1";
    b.revisions = {"a"};
    b.path = "/backups/x";
    b.size_bytes = 123;
    b.sha256 = "ab";
    b.created_at = absl::FromUnixSeconds(103);
    ASSERT_TRUE((*store)->AddBackup(&b).ok());
    EXPECT_GT(b.id, 0);
  }
  // What a restarted lockstepd reads back.
  auto store = StateStore::Open(path_);
  auto unfinished = (*store)->ListRollouts(0, true);
  ASSERT_TRUE(unfinished.ok());
  ASSERT_EQ(unfinished->size(), 1u);
  const Rollout& back = (*unfinished)[0];
  EXPECT_THAT(back.target_revisions, ElementsAre("h1", "h2"));
  EXPECT_EQ(back.stages[0].soak, absl::Minutes(10));
  EXPECT_EQ(back.stages[0].approved_by, "alice");
  EXPECT_EQ(back.stages[0].approved_at, absl::InfinitePast());
  ASSERT_EQ(back.steps.size(), 1u);
  EXPECT_EQ(NameOf(back.steps[0].phase), "alembic");
  EXPECT_EQ(back.steps[0].pid, 4242);
  EXPECT_EQ(back.steps[0].pid_identity, "boot/123");
  EXPECT_EQ(back.steps[0].backup_id, 7);
  EXPECT_THAT(back.steps[0].path, ElementsAre("b", "h1", "h2"));
  auto events = (*store)->Events("r-1", 1, 10);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].message, "Running upgrade");
  auto backups = (*store)->Backups("prod", "", 10);
  ASSERT_EQ(backups->size(), 1u);
  EXPECT_EQ((*backups)[0].size_bytes, 123);
  EXPECT_THAT((*backups)[0].revisions, ElementsAre("a"));
  EXPECT_EQ((*store)->LoadRollout("nope").status().code(), absl::StatusCode::kNotFound);
  r.state = RolloutState::kSucceeded;
  ASSERT_TRUE((*store)->SaveRolloutHeader(r).ok());
  EXPECT_THAT(*(*store)->ListRollouts(0, true), IsEmpty());
}

// A state this lockstepd does not know (a store written by a newer one,
// or edited by hand) is an error naming the column and the value, not a
// rollout silently read as something else.
TEST_F(StateStoreTest, AnUnknownStoredStateIsAnErrorNamingIt) {
  Rollout r;
  r.id = "r-1";
  r.stages.push_back({});
  r.stages[0].environment = "prod";
  RolloutStep step;
  step.environment = "prod";
  step.database = "t1";
  r.steps.push_back(step);
  {
    auto store = StateStore::Open(path_);
    ASSERT_TRUE((*store)->SaveRollout(r).ok());
  }
  {
    SQLite::Database db(path_, SQLite::OPEN_READWRITE);
    db.exec("UPDATE rollout_steps SET state = 'teleported'");
  }
  auto store = StateStore::Open(path_);
  absl::StatusOr<Rollout> back = (*store)->LoadRollout("r-1");
  ASSERT_FALSE(back.ok());
  EXPECT_THAT(
      back.status().message(),
      HasSubstr("rollout_steps.state holds 'teleported', which this lockstepd does not know"));
}

// The file deleted or replaced while lockstepd runs is noticed, never a
// silent fresh start.
TEST_F(StateStoreTest, AFileDeletedOrReplacedUnderneathIsAnAlarm) {
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->CheckFile().ok());
  std::filesystem::rename(path_, path_ + ".moved");
  absl::Status gone = (*store)->CheckFile();
  EXPECT_TRUE(absl::IsUnavailable(gone)) << gone;
  EXPECT_THAT(gone.message(), HasSubstr("is gone (deleted while lockstepd runs)"));
  std::filesystem::copy_file(path_ + ".moved", path_);
  absl::Status replaced = (*store)->CheckFile();
  EXPECT_THAT(replaced.message(), HasSubstr("was replaced by another file"));
  std::filesystem::remove(path_);
  std::filesystem::rename(path_ + ".moved", path_);
  EXPECT_TRUE((*store)->CheckFile().ok());
}

TEST_F(StateStoreTest, UpgradesAVersionThreeBackupCatalogAndRecordsRestores) {
  {
    // The backups table as lockstepd with schema 3 left it (unchanged since
    // 2), with one row.
    SQLite::Database db(path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec(R"sql(
      CREATE TABLE backups (id INTEGER PRIMARY KEY AUTOINCREMENT, environment TEXT NOT NULL,
        database TEXT NOT NULL, revisions TEXT NOT NULL, path TEXT NOT NULL,
        size_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, rollout_id TEXT NOT NULL,
        created_at_us INTEGER NOT NULL, took_us INTEGER NOT NULL);
      INSERT INTO backups VALUES (1, 'prod', 't1', 'a', '/b/1', 10, 'ab', 'r-1', 5, 6);
      CREATE TABLE rollout_steps (rollout_id TEXT NOT NULL, environment TEXT NOT NULL,
        database TEXT NOT NULL, pid INTEGER NOT NULL, started_at_us INTEGER NOT NULL);
      CREATE TABLE rollouts (id TEXT PRIMARY KEY);
      CREATE TABLE rollout_stages (rollout_id TEXT NOT NULL);
      CREATE TABLE database_checks (database TEXT PRIMARY KEY, checked_at_us INTEGER NOT NULL);
      CREATE TABLE revision_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, database TEXT NOT NULL,
        from_revisions TEXT NOT NULL, to_revisions TEXT NOT NULL, observed_at_us INTEGER NOT NULL);
      PRAGMA user_version = 3;)sql");
  }
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto old = (*store)->GetBackup(1);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->rollout_id, "r-1");
  EXPECT_EQ(old->safety_for, 0);
  EXPECT_EQ(old->note, "");
  EXPECT_EQ(old->restored_by, "");
  EXPECT_EQ(old->restored_at, absl::InfinitePast());

  Backup safety;
  safety.environment = "prod";
  safety.database = "t1";
  safety.safety_for = 1;
  safety.note = "safety copy before restoring backup 1";
  ASSERT_TRUE((*store)->AddBackup(&safety).ok());
  ASSERT_TRUE((*store)->MarkRestored(1, "alice@vm", absl::FromUnixSeconds(2000)).ok());
  EXPECT_EQ((*store)->MarkRestored(99, "alice@vm", absl::FromUnixSeconds(2000)).code(),
            absl::StatusCode::kNotFound);
  auto backups = (*store)->Backups("prod", "t1", 10);
  ASSERT_TRUE(backups.ok()) << backups.status();
  ASSERT_EQ(backups->size(), 2u);
  EXPECT_EQ((*backups)[0].safety_for, 1);
  EXPECT_EQ((*backups)[0].note, "safety copy before restoring backup 1");
  EXPECT_EQ((*backups)[0].restored_at, absl::InfinitePast());
  EXPECT_EQ((*backups)[1].restored_by, "alice@vm");
  EXPECT_EQ((*backups)[1].restored_at, absl::FromUnixSeconds(2000));
}

TEST_F(StateStoreTest, ReusedStatementsHoldNoReadSnapshotBetweenCalls) {
  // The hot writes reuse prepared statements; one left stepped would keep a
  // read snapshot open and the WAL could never be checkpointed.
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok());
  Rollout r;
  r.id = "r-1";
  ASSERT_TRUE((*store)->SaveRollout(r).ok());
  for (int i = 0; i < 3; ++i) {
    RolloutEvent e{0, absl::FromUnixSeconds(100 + i), EventKind::kOutput, "prod", "t1", "line"};
    ASSERT_TRUE((*store)->AppendEvent("r-1", &e).ok());
    EXPECT_EQ(e.seq, i + 1);
  }
  auto first = (*store)->Events("r-1", 0, 1);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  SQLite::Database other(path_, SQLite::OPEN_READWRITE);
  SQLite::Statement checkpoint(other, "PRAGMA wal_checkpoint(TRUNCATE)");
  ASSERT_TRUE(checkpoint.executeStep());
  EXPECT_EQ(checkpoint.getColumn(0).getInt(), 0) << "a reader blocked the checkpoint";
  EXPECT_EQ(std::filesystem::file_size(path_ + "-wal"), 0u);
  auto rest = (*store)->Events("r-1", 1, 10);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->size(), 2u);
}

TEST_F(StateStoreTest, UnwritablePathIsAClearError) {
  EXPECT_THAT(StateStore::Open(dir_ + "/no/such/dir/state.db").status().message(),
              HasSubstr("cannot open the state store"));
}

TEST_F(StateStoreTest, WebhooksReadTheEventLogInOrderFromWhereTheyWereAdded) {
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto rollout = [&](const std::string& id) {
    Rollout r;
    r.id = id;
    r.kind = "upgrade";
    r.target = "heads";
    r.created_by = "dora";
    r.created_at = absl::FromUnixSeconds(100);
    r.updated_at = r.created_at;
    ASSERT_TRUE((*store)->SaveRollout(r).ok());
  };
  auto event = [&](const std::string& id, EventKind kind, const std::string& message) {
    RolloutEvent e{0, absl::FromUnixSeconds(101), kind, "prod", "t1", message};
    ASSERT_TRUE((*store)->AppendEvent(id, &e).ok());
  };
  rollout("r-1");
  event("r-1", EventKind::kRolloutStarted, "before the webhook");
  // A webhook seen for the first time starts at the newest event.
  absl::StatusOr<int64_t> start = (*store)->WebhookPosition("ops");
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_GT(*start, 0);
  rollout("r-2");
  event("r-1", EventKind::kOutput, "an output line");
  event("r-2", EventKind::kRolloutStarted, "second");
  event("r-1", EventKind::kStepFailed, "failed");
  auto after = (*store)->EventsAfter(*start, 10);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->size(), 2u);  // no output line, nothing from before
  EXPECT_EQ((*after)[0].rollout_id, "r-2");
  EXPECT_EQ((*after)[0].event.kind, EventKind::kRolloutStarted);
  EXPECT_EQ((*after)[0].rollout_kind, "upgrade");
  EXPECT_EQ((*after)[0].created_by, "dora");
  EXPECT_EQ((*after)[1].rollout_id, "r-1");
  EXPECT_EQ((*after)[1].event.kind, EventKind::kStepFailed);
  EXPECT_EQ((*after)[1].event.seq, 3);
  EXPECT_LT((*after)[0].position, (*after)[1].position);
  // The position is kept, by name; a second look does not move it.
  ASSERT_TRUE((*store)->SetWebhookPosition("ops", (*after)[0].position).ok());
  EXPECT_EQ(*(*store)->WebhookPosition("ops"), (*after)[0].position);
  auto limited = (*store)->EventsAfter((*after)[0].position, 1);
  ASSERT_TRUE(limited.ok());
  ASSERT_EQ(limited->size(), 1u);
  EXPECT_EQ((*limited)[0].event.message, "failed");
  // Another webhook, added now, starts after all of it.
  EXPECT_EQ(*(*store)->WebhookPosition("new"), (*after)[1].position);
}

TEST_F(StateStoreTest, AFleetConditionIsToldOncePerOccurrence) {
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  const absl::Time at = absl::FromUnixSeconds(200);
  using C = StateStore::FleetCondition;
  const C drift{"schema_drift", "prod", "t1", "", true, "table orders is missing"};
  const C edited{"checksum_changed", "", "", "abc123", true, "the file of revision abc123 ..."};
  const int64_t start = *(*store)->WebhookPosition("ops", /*fleet=*/true);
  ASSERT_TRUE((*store)->NoteFleetConditions({drift, edited}, at).ok());
  ASSERT_TRUE((*store)->NoteFleetConditions({drift, edited}, at).ok());  // still: nothing new
  auto events = (*store)->FleetEventsAfter(start, 10);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].kind, "schema_drift");
  EXPECT_EQ((*events)[0].environment, "prod");
  EXPECT_EQ((*events)[0].database, "t1");
  EXPECT_EQ((*events)[0].message, "table orders is missing");
  EXPECT_EQ((*events)[1].kind, "checksum_changed");
  EXPECT_LT((*events)[0].id, (*events)[1].id);
  // The same database in another environment is another condition.
  C staging = drift;
  staging.environment = "staging";
  // Repaired, then drifted again: told again.
  C repaired = drift;
  repaired.holds = false;
  ASSERT_TRUE((*store)->NoteFleetConditions({repaired, staging}, at).ok());
  ASSERT_TRUE((*store)->NoteFleetConditions({drift}, at).ok());
  events = (*store)->FleetEventsAfter((*events)[1].id, 10);
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].environment, "staging");
  EXPECT_EQ((*events)[1].environment, "prod");
  // Reopened (a restarted lockstepd): what holds is still held.
  store->reset();
  store = StateStore::Open(path_);
  const int64_t last = (*events)[1].id;
  ASSERT_TRUE((*store)->NoteFleetConditions({drift, staging, edited}, at).ok());
  EXPECT_THAT(*(*store)->FleetEventsAfter(last, 10), IsEmpty());
  // The positions of one webhook in the two logs are apart.
  ASSERT_TRUE((*store)->SetWebhookPosition("ops", last, /*fleet=*/true).ok());
  EXPECT_EQ(*(*store)->WebhookPosition("ops", /*fleet=*/true), last);
  EXPECT_EQ(*(*store)->WebhookPosition("ops"), 0);
}

}  // namespace
}  // namespace lockstep::daemon
