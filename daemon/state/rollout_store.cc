// The state store's rollout tables and backup catalog (schema versions 2 to 5).
#include <SQLiteCpp/SQLiteCpp.h>

#include "daemon/state/state_store.h"
#include "daemon/state/store_util.h"

namespace lockstep::daemon {
namespace {

using store_util::FromMicros;
using store_util::Guard;
using store_util::Join;
using store_util::Micros;
using store_util::Name;
using store_util::Split;
using store_util::Stored;

constexpr const char* kUpsertRollout = R"sql(
  INSERT OR REPLACE INTO rollouts (id, kind, target, target_revisions, state, reason, created_by,
                                   override_promotion, created_at_us, updated_at_us, finished_at_us,
                                   override_reason, override_window)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?))sql";

constexpr const char* kUpsertStage = R"sql(
  INSERT OR REPLACE INTO rollout_stages (rollout_id, position, environment, state, soak_us,
      approval_required, batch_size, max_parallel, max_failures, on_failure, backup_required,
      failures, approved_by, approved_at_us, started_at_us, finished_at_us, canary_soak_us,
      canary_approval_required, canary_approved_by, canary_approved_at_us, approvals_required,
      distinct_from_requester, approvers)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?))sql";

constexpr const char* kUpsertStep = R"sql(
  INSERT OR REPLACE INTO rollout_steps (rollout_id, position, environment, database, wave, canary,
      from_revisions, expected_revisions, path, state, phase, error, rollback, output, exit_code,
      backup_id, pid, attempts, alembic_us, started_at_us, finished_at_us, pid_identity,
      output_log)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?))sql";

void BindRollout(SQLite::Statement& q, const Rollout& r) {
  q.bind(1, r.id);
  q.bind(2, r.kind);
  q.bind(3, r.target);
  q.bind(4, Join(r.target_revisions));
  q.bind(5, Name(r.state));
  q.bind(6, r.reason);
  q.bind(7, r.created_by);
  q.bind(8, r.override_promotion ? 1 : 0);
  q.bind(9, Micros(r.created_at));
  q.bind(10, Micros(r.updated_at));
  q.bind(11, Micros(r.finished_at));
  q.bind(12, r.override_reason);
  q.bind(13, r.override_window);
}

void BindStage(SQLite::Statement& q, const std::string& id, int position, const RolloutStage& s) {
  q.bind(1, id);
  q.bind(2, position);
  q.bind(3, s.environment);
  q.bind(4, Name(s.state));
  q.bind(5, absl::ToInt64Microseconds(s.soak));
  q.bind(6, s.approval_required ? 1 : 0);
  q.bind(7, s.batch_size);
  q.bind(8, s.max_parallel);
  q.bind(9, s.max_failures);
  q.bind(10, Name(s.on_failure));
  q.bind(11, s.backup_required ? 1 : 0);
  q.bind(12, s.failures);
  q.bind(13, s.approved_by);
  q.bind(14, Micros(s.approved_at));
  q.bind(15, Micros(s.started_at));
  q.bind(16, Micros(s.finished_at));
  q.bind(17, absl::ToInt64Microseconds(s.canary_soak));
  q.bind(18, s.canary_approval_required ? 1 : 0);
  q.bind(19, s.canary_approved_by);
  q.bind(20, Micros(s.canary_approved_at));
  q.bind(21, s.approvals_required);
  q.bind(22, s.distinct_from_requester ? 1 : 0);
  q.bind(23, absl::StrJoin(s.approvers, "\n"));  // actor labels may hold commas
}

void BindStep(SQLite::Statement& q, const std::string& id, const RolloutStep& s) {
  q.bind(1, id);
  q.bind(2, s.index);
  q.bind(3, s.environment);
  q.bind(4, s.database);
  q.bind(5, s.wave);
  q.bind(6, s.canary ? 1 : 0);
  q.bind(7, Join(s.from));
  q.bind(8, Join(s.expected));
  q.bind(9, Join(s.path));
  q.bind(10, Name(s.state));
  q.bind(11, Name(s.phase));
  q.bind(12, s.error);
  q.bind(13, s.rollback);
  q.bind(14, s.output);
  q.bind(15, s.exit_code);
  q.bind(16, s.backup_id);
  q.bind(17, s.pid);
  q.bind(18, s.attempts);
  q.bind(19, absl::ToInt64Microseconds(s.alembic_time));
  q.bind(20, Micros(s.started_at));
  q.bind(21, Micros(s.finished_at));
  q.bind(22, s.pid_identity);
  q.bind(23, s.output_log);
}

// Runs `sql` with `bind` applied, once, as a statement prepared once.
template <typename Bind>
void ExecOne(store_util::StatementCache& prepared, const char* sql, Bind&& bind) {
  store_util::StatementCache::Handle q = prepared.Get(sql);
  bind(*q);
  q->exec();
}

void LoadChildren(SQLite::Database& db, Rollout* r) {
  SQLite::Statement stages(db, R"sql(
    SELECT environment, state, soak_us, approval_required, batch_size, max_parallel, max_failures,
           on_failure, backup_required, failures, approved_by, approved_at_us, started_at_us,
           finished_at_us, canary_soak_us, canary_approval_required, canary_approved_by,
           canary_approved_at_us, approvals_required, distinct_from_requester, approvers
    FROM rollout_stages WHERE rollout_id = ? ORDER BY position)sql");
  stages.bind(1, r->id);
  while (stages.executeStep()) {
    RolloutStage s;
    s.environment = stages.getColumn(0).getString();
    s.state = Stored<StageState>(stages.getColumn(1).getString(), "rollout_stages.state");
    s.soak = absl::Microseconds(stages.getColumn(2).getInt64());
    s.approval_required = stages.getColumn(3).getInt() != 0;
    s.batch_size = stages.getColumn(4).getInt();
    s.max_parallel = stages.getColumn(5).getInt();
    s.max_failures = stages.getColumn(6).getInt();
    s.on_failure =
        Stored<FailurePolicy>(stages.getColumn(7).getString(), "rollout_stages.on_failure");
    s.backup_required = stages.getColumn(8).getInt() != 0;
    s.failures = stages.getColumn(9).getInt();
    s.approved_by = stages.getColumn(10).getString();
    s.approved_at = FromMicros(stages.getColumn(11).getInt64());
    s.started_at = FromMicros(stages.getColumn(12).getInt64());
    s.finished_at = FromMicros(stages.getColumn(13).getInt64());
    s.canary_soak = absl::Microseconds(stages.getColumn(14).getInt64());
    s.canary_approval_required = stages.getColumn(15).getInt() != 0;
    s.canary_approved_by = stages.getColumn(16).getString();
    s.canary_approved_at = FromMicros(stages.getColumn(17).getInt64());
    s.approvals_required = stages.getColumn(18).getInt();
    s.distinct_from_requester = stages.getColumn(19).getInt() != 0;
    s.approvers = absl::StrSplit(stages.getColumn(20).getString(), '\n', absl::SkipEmpty());
    r->stages.push_back(std::move(s));
  }
  SQLite::Statement steps(db, R"sql(
    SELECT position, environment, database, wave, canary, from_revisions, expected_revisions, path,
           state, phase, error, rollback, output, exit_code, backup_id, pid, attempts, alembic_us,
           started_at_us, finished_at_us, pid_identity, output_log
    FROM rollout_steps WHERE rollout_id = ? ORDER BY position)sql");
  steps.bind(1, r->id);
  while (steps.executeStep()) {
    RolloutStep s;
    s.index = steps.getColumn(0).getInt();
    s.environment = steps.getColumn(1).getString();
    s.database = steps.getColumn(2).getString();
    s.wave = steps.getColumn(3).getInt();
    s.canary = steps.getColumn(4).getInt() != 0;
    s.from = Split(steps.getColumn(5).getString());
    s.expected = Split(steps.getColumn(6).getString());
    s.path = Split(steps.getColumn(7).getString());
    s.state = Stored<StepState>(steps.getColumn(8).getString(), "rollout_steps.state");
    s.phase = Stored<StepPhase>(steps.getColumn(9).getString(), "rollout_steps.phase");
    s.error = steps.getColumn(10).getString();
    s.rollback = steps.getColumn(11).getString();
    s.output = steps.getColumn(12).getString();
    s.exit_code = steps.getColumn(13).getInt();
    s.backup_id = steps.getColumn(14).getInt64();
    s.pid = steps.getColumn(15).getInt();
    s.attempts = steps.getColumn(16).getInt();
    s.alembic_time = absl::Microseconds(steps.getColumn(17).getInt64());
    s.started_at = FromMicros(steps.getColumn(18).getInt64());
    s.finished_at = FromMicros(steps.getColumn(19).getInt64());
    s.pid_identity = steps.getColumn(20).getString();
    s.output_log = steps.getColumn(21).getString();
    r->steps.push_back(std::move(s));
  }
}

Rollout RolloutFromRow(SQLite::Statement& q) {
  Rollout r;
  r.id = q.getColumn(0).getString();
  r.kind = q.getColumn(1).getString();
  r.target = q.getColumn(2).getString();
  r.target_revisions = Split(q.getColumn(3).getString());
  r.state = Stored<RolloutState>(q.getColumn(4).getString(), "rollouts.state");
  r.reason = q.getColumn(5).getString();
  r.created_by = q.getColumn(6).getString();
  r.override_promotion = q.getColumn(7).getInt() != 0;
  r.created_at = FromMicros(q.getColumn(8).getInt64());
  r.updated_at = FromMicros(q.getColumn(9).getInt64());
  r.finished_at = FromMicros(q.getColumn(10).getInt64());
  r.override_reason = q.getColumn(11).getString();
  r.override_window = q.getColumn(12).getString();
  return r;
}

constexpr const char* kRolloutColumns =
    "SELECT id, kind, target, target_revisions, state, reason, created_by, override_promotion, "
    "created_at_us, updated_at_us, finished_at_us, override_reason, override_window FROM rollouts ";

Backup BackupFromRow(SQLite::Statement& q) {
  Backup b;
  b.id = q.getColumn(0).getInt64();
  b.environment = q.getColumn(1).getString();
  b.database = q.getColumn(2).getString();
  b.revisions = Split(q.getColumn(3).getString());
  b.path = q.getColumn(4).getString();
  b.size_bytes = q.getColumn(5).getInt64();
  b.sha256 = q.getColumn(6).getString();
  b.rollout_id = q.getColumn(7).getString();
  b.created_at = FromMicros(q.getColumn(8).getInt64());
  b.took = absl::Microseconds(q.getColumn(9).getInt64());
  b.safety_for = q.getColumn(10).getInt64();
  b.note = q.getColumn(11).getString();
  b.restored_by = q.getColumn(12).getString();
  b.restored_at = FromMicros(q.getColumn(13).getInt64());
  return b;
}

constexpr const char* kBackupColumns =
    "SELECT id, environment, database, revisions, path, size_bytes, sha256, rollout_id, "
    "created_at_us, took_us, safety_for, note, restored_by, restored_at_us FROM backups ";

}  // namespace

absl::Status StateStore::SaveRollout(const Rollout& rollout) {
  MutexLock lock(mu_);
  return Guard("save rollout", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Transaction tx(*db_);
    ExecOne(*prepared_, kUpsertRollout, [&](SQLite::Statement& q) { BindRollout(q, rollout); });
    for (size_t i = 0; i < rollout.stages.size(); ++i) {
      ExecOne(*prepared_, kUpsertStage, [&](SQLite::Statement& q) {
        BindStage(q, rollout.id, static_cast<int>(i), rollout.stages[i]);
      });
    }
    for (const RolloutStep& s : rollout.steps) {
      ExecOne(*prepared_, kUpsertStep, [&](SQLite::Statement& q) { BindStep(q, rollout.id, s); });
    }
    tx.commit();
  });
}

absl::Status StateStore::SaveRolloutHeader(const Rollout& rollout) {
  MutexLock lock(mu_);
  return Guard("save rollout", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    ExecOne(*prepared_, kUpsertRollout, [&](SQLite::Statement& q) { BindRollout(q, rollout); });
  });
}

absl::Status StateStore::SaveStage(const std::string& rollout_id, int position,
                                   const RolloutStage& stage) {
  MutexLock lock(mu_);
  return Guard("save stage", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    ExecOne(*prepared_, kUpsertStage,
            [&](SQLite::Statement& q) { BindStage(q, rollout_id, position, stage); });
  });
}

absl::Status StateStore::SaveStep(const std::string& rollout_id, const RolloutStep& step) {
  MutexLock lock(mu_);
  return Guard("save step", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    ExecOne(*prepared_, kUpsertStep, [&](SQLite::Statement& q) { BindStep(q, rollout_id, step); });
  });
}

absl::Status StateStore::AppendEvent(const std::string& rollout_id, RolloutEvent* event) {
  MutexLock lock(mu_);
  return Guard("append event", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Transaction tx(*db_);
    {
      store_util::StatementCache::Handle next = prepared_->Get(
          "SELECT COALESCE(MAX(seq), 0) + 1 FROM rollout_events WHERE rollout_id = ?");
      next->bind(1, rollout_id);
      next->executeStep();
      event->seq = next->getColumn(0).getInt64();
    }
    ExecOne(*prepared_,
            "INSERT INTO rollout_events (rollout_id, seq, at_us, kind, environment, database, "
            "message) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [&](SQLite::Statement& q) {
              q.bind(1, rollout_id);
              q.bind(2, event->seq);
              q.bind(3, Micros(event->at));
              q.bind(4, Name(event->kind));
              q.bind(5, event->environment);
              q.bind(6, event->database);
              q.bind(7, event->message);
            });
    tx.commit();
  });
}

absl::Status StateStore::WriteEvents(
    const std::vector<std::pair<std::string, RolloutEvent>>& events) {
  MutexLock lock(mu_);
  return Guard("append events", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Transaction tx(*db_);
    for (const auto& item : events) {
      const std::string& rollout_id = item.first;  // (a lambda below uses them:
      const RolloutEvent& event = item.second;     // no structured bindings for clang 14)
      ExecOne(*prepared_,
              "INSERT OR IGNORE INTO rollout_events (rollout_id, seq, at_us, kind, environment, "
              "database, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
              [&](SQLite::Statement& q) {
                q.bind(1, rollout_id);
                q.bind(2, event.seq);
                q.bind(3, Micros(event.at));
                q.bind(4, Name(event.kind));
                q.bind(5, event.environment);
                q.bind(6, event.database);
                q.bind(7, event.message);
              });
    }
    tx.commit();
  });
}

absl::StatusOr<int64_t> StateStore::LastEventSeq(const std::string& rollout_id) {
  MutexLock lock(mu_);
  int64_t last = 0;
  absl::Status s = Guard("read events", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    store_util::StatementCache::Handle q =
        prepared_->Get("SELECT COALESCE(MAX(seq), 0) FROM rollout_events WHERE rollout_id = ?");
    q->bind(1, rollout_id);
    q->executeStep();
    last = q->getColumn(0).getInt64();
  });
  if (!s.ok()) return s;
  return last;
}

absl::StatusOr<Rollout> StateStore::LoadRollout(const std::string& id) {
  MutexLock lock(mu_);
  std::optional<Rollout> out;
  absl::Status s = Guard("load rollout", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Statement q(*db_, absl::StrCat(kRolloutColumns, "WHERE id = ?"));
    q.bind(1, id);
    if (!q.executeStep()) return;
    out = RolloutFromRow(q);
    LoadChildren(*db_, &*out);
  });
  if (!s.ok()) return s;
  if (!out) return absl::NotFoundError(absl::StrCat("no rollout '", id, "'"));
  return *std::move(out);
}

absl::StatusOr<std::vector<Rollout>> StateStore::ListRollouts(int limit, bool unfinished_only) {
  MutexLock lock(mu_);
  std::vector<Rollout> out;
  absl::Status s = Guard("list rollouts", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    std::string sql = kRolloutColumns;
    if (unfinished_only) {
      sql += "WHERE state NOT IN ('succeeded', 'failed', 'halted', 'aborted') ";
    }
    sql += "ORDER BY created_at_us DESC, id DESC LIMIT ?";
    SQLite::Statement q(*db_, sql);
    q.bind(1, unfinished_only ? -1 : limit);
    while (q.executeStep()) out.push_back(RolloutFromRow(q));
    for (Rollout& r : out) LoadChildren(*db_, &r);
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::vector<RolloutEvent>> StateStore::Events(const std::string& rollout_id,
                                                             int64_t after_seq, int limit) {
  MutexLock lock(mu_);
  std::vector<RolloutEvent> out;
  absl::Status s = Guard("read events", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    store_util::StatementCache::Handle q = prepared_->Get(
        "SELECT seq, at_us, kind, environment, database, message FROM rollout_events "
        "WHERE rollout_id = ? AND seq > ? ORDER BY seq LIMIT ?");
    q->bind(1, rollout_id);
    q->bind(2, after_seq);
    q->bind(3, limit);
    while (q->executeStep()) {
      out.push_back({q->getColumn(0).getInt64(), FromMicros(q->getColumn(1).getInt64()),
                     Stored<EventKind>(q->getColumn(2).getString(), "rollout_events.kind"),
                     q->getColumn(3).getString(), q->getColumn(4).getString(),
                     q->getColumn(5).getString()});
    }
  });
  if (!s.ok()) return s;
  return out;
}

// The event log's rowid is the position: rows are only ever added at the
// end (a new rowid is one more than the largest), and pruning removes the
// oldest rollouts' events, never the newest row.
absl::StatusOr<std::vector<StateStore::PositionedEvent>> StateStore::EventsAfter(int64_t after,
                                                                                 int limit) {
  MutexLock lock(mu_);
  std::vector<PositionedEvent> out;
  absl::Status s = Guard("read events for webhooks", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    out.clear();
    store_util::StatementCache::Handle q = prepared_->Get(
        "SELECT e.rowid, e.rollout_id, r.kind, r.target, r.created_by, e.seq, e.at_us, e.kind, "
        "e.environment, e.database, e.message FROM rollout_events AS e "
        "JOIN rollouts AS r ON r.id = e.rollout_id "
        "WHERE e.rowid > ? AND e.kind != 'output' ORDER BY e.rowid LIMIT ?");
    q->bind(1, after);
    q->bind(2, limit);
    while (q->executeStep()) {
      PositionedEvent p;
      p.position = q->getColumn(0).getInt64();
      p.rollout_id = q->getColumn(1).getString();
      p.rollout_kind = q->getColumn(2).getString();
      p.rollout_target = q->getColumn(3).getString();
      p.created_by = q->getColumn(4).getString();
      p.event = {q->getColumn(5).getInt64(),
                 FromMicros(q->getColumn(6).getInt64()),
                 Stored<EventKind>(q->getColumn(7).getString(), "rollout_events.kind"),
                 q->getColumn(8).getString(),
                 q->getColumn(9).getString(),
                 q->getColumn(10).getString()};
      out.push_back(std::move(p));
    }
  });
  if (!s.ok()) return s;
  return out;
}

namespace {

// A webhook's position in the fleet events is kept beside its position in
// the rollout events, under a name no webhook can have (names are YAML
// strings; this one holds a newline).
std::string PositionKey(const std::string& name, bool fleet) {
  return fleet ? "fleet\n" + name : name;
}

}  // namespace

absl::StatusOr<int64_t> StateStore::WebhookPosition(const std::string& name, bool fleet) {
  MutexLock lock(mu_);
  int64_t position = 0;
  absl::Status s = Guard("read a webhook's position", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Transaction tx(*db_);
    SQLite::Statement init(
        *db_, absl::StrCat("INSERT OR IGNORE INTO webhook_positions (name, position) SELECT ?, ",
                           fleet ? "COALESCE(MAX(id), 0) FROM fleet_events"
                                 : "COALESCE(MAX(rowid), 0) FROM rollout_events"));
    init.bind(1, PositionKey(name, fleet));
    init.exec();
    SQLite::Statement q(*db_, "SELECT position FROM webhook_positions WHERE name = ?");
    q.bind(1, PositionKey(name, fleet));
    if (q.executeStep()) position = q.getColumn(0).getInt64();
    tx.commit();
  });
  if (!s.ok()) return s;
  return position;
}

absl::Status StateStore::SetWebhookPosition(const std::string& name, int64_t position, bool fleet) {
  MutexLock lock(mu_);
  return Guard("save a webhook's position", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    store_util::StatementCache::Handle q =
        prepared_->Get("UPDATE webhook_positions SET position = ? WHERE name = ?");
    q->bind(1, position);
    q->bind(2, PositionKey(name, fleet));
    q->exec();
  });
}

absl::Status StateStore::NoteFleetConditions(const std::vector<FleetCondition>& seen,
                                             absl::Time at) {
  if (seen.empty()) return absl::OkStatus();
  MutexLock lock(mu_);
  return Guard("record fleet conditions", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Transaction tx(*db_);
    SQLite::Statement hold(*db_,
                           "INSERT OR IGNORE INTO fleet_conditions (kind, environment, database, "
                           "subject, since_us) VALUES (?, ?, ?, ?, ?)");
    SQLite::Statement forget(*db_,
                             "DELETE FROM fleet_conditions WHERE kind = ? AND environment = ? AND "
                             "database = ? AND subject = ?");
    SQLite::Statement event(*db_,
                            "INSERT INTO fleet_events (at_us, kind, environment, database, "
                            "message) VALUES (?, ?, ?, ?, ?)");
    for (const FleetCondition& c : seen) {
      SQLite::Statement& q = c.holds ? hold : forget;
      q.bind(1, c.kind);
      q.bind(2, c.environment);
      q.bind(3, c.database);
      q.bind(4, c.subject);
      if (c.holds) q.bind(5, Micros(at));
      const bool new_one = q.exec() > 0 && c.holds;
      q.reset();
      if (!new_one) continue;
      event.bind(1, Micros(at));
      event.bind(2, c.kind);
      event.bind(3, c.environment);
      event.bind(4, c.database);
      event.bind(5, c.message);
      event.exec();
      event.reset();
    }
    tx.commit();
  });
}

absl::StatusOr<std::vector<StateStore::FleetEvent>> StateStore::FleetEventsAfter(int64_t after,
                                                                                 int limit) {
  MutexLock lock(mu_);
  std::vector<FleetEvent> out;
  absl::Status s = Guard("read fleet events", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    out.clear();
    store_util::StatementCache::Handle q = prepared_->Get(
        "SELECT id, at_us, kind, environment, database, message FROM fleet_events "
        "WHERE id > ? ORDER BY id LIMIT ?");
    q->bind(1, after);
    q->bind(2, limit);
    while (q->executeStep()) {
      out.push_back({q->getColumn(0).getInt64(), FromMicros(q->getColumn(1).getInt64()),
                     q->getColumn(2).getString(), q->getColumn(3).getString(),
                     q->getColumn(4).getString(), q->getColumn(5).getString()});
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::optional<FinishedStep>> StateStore::LastFinishedStep(
    const std::string& environment, const std::string& database) {
  MutexLock lock(mu_);
  std::optional<FinishedStep> out;
  absl::Status s = Guard("read the last step", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Statement q(*db_, R"sql(
      SELECT rollout_id, from_revisions, expected_revisions, state, rollback, started_at_us,
             finished_at_us
      FROM rollout_steps
      WHERE environment = ? AND database = ? AND state IN ('succeeded', 'failed')
      ORDER BY finished_at_us DESC LIMIT 1)sql");
    q.bind(1, environment);
    q.bind(2, database);
    if (!q.executeStep()) return;
    FinishedStep f;
    f.rollout_id = q.getColumn(0).getString();
    f.step.environment = environment;
    f.step.database = database;
    f.step.from = Split(q.getColumn(1).getString());
    f.step.expected = Split(q.getColumn(2).getString());
    f.step.state = Stored<StepState>(q.getColumn(3).getString(), "rollout_steps.state");
    f.step.rollback = q.getColumn(4).getString();
    f.step.started_at = FromMicros(q.getColumn(5).getInt64());
    f.step.finished_at = FromMicros(q.getColumn(6).getInt64());
    out = std::move(f);
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status StateStore::AddBackup(Backup* b) {
  MutexLock lock(mu_);
  return Guard("add backup", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    ExecOne(*prepared_,
            "INSERT INTO backups (environment, database, revisions, path, size_bytes, sha256, "
            "rollout_id, created_at_us, took_us, safety_for, note, restored_by, restored_at_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [&](SQLite::Statement& q) {
              q.bind(1, b->environment);
              q.bind(2, b->database);
              q.bind(3, Join(b->revisions));
              q.bind(4, b->path);
              q.bind(5, b->size_bytes);
              q.bind(6, b->sha256);
              q.bind(7, b->rollout_id);
              q.bind(8, Micros(b->created_at));
              q.bind(9, absl::ToInt64Microseconds(b->took));
              q.bind(10, b->safety_for);
              q.bind(11, b->note);
              q.bind(12, b->restored_by);
              q.bind(13, Micros(b->restored_at));
            });
    b->id = db_->getLastInsertRowid();
  });
}

absl::StatusOr<Backup> StateStore::GetBackup(int64_t id) {
  MutexLock lock(mu_);
  std::optional<Backup> out;
  absl::Status s = Guard("read backup", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Statement q(*db_, absl::StrCat(kBackupColumns, "WHERE id = ?"));
    q.bind(1, id);
    if (q.executeStep()) out = BackupFromRow(q);
  });
  if (!s.ok()) return s;
  if (!out) return absl::NotFoundError(absl::StrCat("no backup ", id));
  return *std::move(out);
}

absl::StatusOr<std::vector<Backup>> StateStore::Backups(const std::string& environment,
                                                        const std::string& database, int limit) {
  MutexLock lock(mu_);
  std::vector<Backup> out;
  absl::Status s = Guard("list backups", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Statement q(*db_, absl::StrCat(kBackupColumns,
                                           "WHERE (?1 = '' OR environment = ?1) AND "
                                           "(?2 = '' OR database = ?2) ORDER BY id DESC LIMIT ?3"));
    q.bind(1, environment);
    q.bind(2, database);
    q.bind(3, limit);
    while (q.executeStep()) out.push_back(BackupFromRow(q));
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status StateStore::DeleteBackup(int64_t id) {
  MutexLock lock(mu_);
  return Guard("delete backup", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    ExecOne(*prepared_, "DELETE FROM backups WHERE id = ?",
            [&](SQLite::Statement& q) { q.bind(1, id); });
  });
}

absl::Status StateStore::MarkRestored(int64_t id, const std::string& who, absl::Time at) {
  MutexLock lock(mu_);
  int changed = 0;
  absl::Status s = Guard("record restore", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    ExecOne(*prepared_, "UPDATE backups SET restored_by = ?, restored_at_us = ? WHERE id = ?",
            [&](SQLite::Statement& q) {
              q.bind(1, who);
              q.bind(2, Micros(at));
              q.bind(3, id);
            });
    changed = db_->getChanges();
  });
  if (!s.ok()) return s;
  if (changed == 0) return absl::NotFoundError(absl::StrCat("no backup ", id));
  return absl::OkStatus();
}

absl::Status StateStore::AddAudit(AuditRecord* r) {
  MutexLock lock(mu_);
  return Guard("record audit", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    ExecOne(*prepared_,
            "INSERT INTO audit (at_us, subject, method, peer, rpc, request, code, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [&](SQLite::Statement& q) {
              q.bind(1, Micros(r->at));
              q.bind(2, r->subject);
              q.bind(3, r->method);
              q.bind(4, r->peer);
              q.bind(5, r->rpc);
              q.bind(6, r->request);
              q.bind(7, r->code);
              q.bind(8, r->message);
            });
    r->id = db_->getLastInsertRowid();
    if (r->id % 1000 == 0) {  // now and then, the oldest beyond kAuditKeep go
      ExecOne(*prepared_, "DELETE FROM audit WHERE id <= ?",
              [&](SQLite::Statement& q) { q.bind(1, r->id - kAuditKeep); });
    }
  });
}

absl::StatusOr<std::vector<AuditRecord>> StateStore::Audit(absl::Time since,
                                                           const std::string& subject, int limit) {
  MutexLock lock(mu_);
  std::vector<AuditRecord> out;
  absl::Status s = Guard("read audit", [&] {
    mu_.AssertHeld();  // Guard runs it here, under the lock taken above
    SQLite::Statement q(*db_,
                        "SELECT id, at_us, subject, method, peer, rpc, request, code, message "
                        "FROM audit WHERE at_us >= ?1 AND (?2 = '' OR subject = ?2) "
                        "ORDER BY id DESC LIMIT ?3");
    q.bind(1, Micros(since));
    q.bind(2, subject);
    q.bind(3, limit);
    while (q.executeStep()) {
      AuditRecord r;
      r.id = q.getColumn(0).getInt64();
      r.at = FromMicros(q.getColumn(1).getInt64());
      r.subject = q.getColumn(2).getString();
      r.method = q.getColumn(3).getString();
      r.peer = q.getColumn(4).getString();
      r.rpc = q.getColumn(5).getString();
      r.request = q.getColumn(6).getString();
      r.code = q.getColumn(7).getString();
      r.message = q.getColumn(8).getString();
      out.push_back(std::move(r));
    }
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace lockstep::daemon
