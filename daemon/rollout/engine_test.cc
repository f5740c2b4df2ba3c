// RolloutEngine without Python: a FakeClock drives soaks and gates, and a
// fake Alembic moves each SQLite database's version rows the way `alembic
// upgrade heads` would (or fails, or blocks until released). The store,
// reconciler, planner, executor, locks and backups are the real ones.
#include "daemon/rollout/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/drivers/sqlite_driver.h"
#include "tests/support/alembic.h"
#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kAge[] = "7c4e2d8a9b22";   // users + age: two revisions from heads
constexpr char kHead[] = "e9a8c6b4d244";  // the example project's head (a merge)
constexpr char kUsers[] = "3f2a1b9c0d11";  // users: the first revision

void Sql(const std::string& file, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK) << error;
  sqlite3_close(db);
}

std::vector<std::string> Rows(const std::string& file) {
  sqlite3* db = nullptr;
  std::vector<std::string> rows;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT version_num FROM alembic_version ORDER BY 1", -1, &q,
                           nullptr) == SQLITE_OK) {
      while (sqlite3_step(q) == SQLITE_ROW) {
        rows.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)));
      }
      sqlite3_finalize(q);
    }
  }
  sqlite3_close(db);
  return rows;
}

// Alembic, faked: `upgrade heads` leaves the database at kHead; a database
// named in `fail` exits 1 with a traceback and leaves it as it was; one in
// `block` waits until released (or cancelled, like a killed process).
class FakeAlembic {
 public:
  ProcessResult Run(const ProcessSpec& spec, const std::atomic<bool>* cancel,
                    const std::function<void(int)>& on_start,
                    const std::function<void(const std::string&)>& on_line) {
    std::string file;
    for (const std::string& arg : spec.argv) {
      if (absl::StartsWith(arg, "url=sqlite:///")) file = arg.substr(strlen("url=sqlite:///"));
    }
    const std::string name = fs::path(file).stem().string();
    // "... -x url=... downgrade <target>": the last two arguments.
    const bool downgrade = spec.argv.size() >= 2 && spec.argv[spec.argv.size() - 2] == "downgrade";
    ProcessResult r;
    if (downgrade) {
      std::lock_guard<std::mutex> lock(mu_);
      downgrades_.push_back(absl::StrCat(name, " to ", spec.argv.back()));
      if (on_start) on_start(0);
      on_line("INFO  [alembic.runtime.migration] Running downgrade");
      if (fail_downgrade_.count(name)) {
        on_line("NotImplementedError: this migration cannot be undone");
        r.exit_code = 1;
        r.output = "NotImplementedError: this migration cannot be undone\n";
        return r;
      }
      Sql(file, spec.argv.back() == "base"
                    ? std::string("DELETE FROM alembic_version")
                    : absl::StrCat("DELETE FROM alembic_version; INSERT INTO alembic_version "
                                   "VALUES ('", spec.argv.back(), "')"));
      r.exit_code = 0;
      return r;
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      calls_.push_back(name);
      ++running_;
      max_running_ = std::max(max_running_, running_);
      changed_.notify_all();
      while (block_.count(name) &&
             (stubborn_.count(name) || !(cancel != nullptr && *cancel))) {
        changed_.wait_for(lock, std::chrono::milliseconds(2));
      }
      --running_;
      if (cancel != nullptr && *cancel) {
        r.cancelled = true;
        r.signal = 15;
        return r;
      }
      if (fail_.count(name)) {
        if (auto half = halfway_.find(name); half != halfway_.end()) {
          // What a SQLite migration that failed after its first revision leaves.
          Sql(file, "DELETE FROM alembic_version");
          for (const std::string& row : half->second) {
            Sql(file, absl::StrCat("INSERT INTO alembic_version VALUES ('", row, "')"));
          }
        }
        on_line("Traceback (most recent call last):");
        on_line("sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) no such table: x");
        r.exit_code = 1;
        r.output = "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) no such table: x\n";
        return r;
      }
    }
    if (on_start) on_start(0);
    on_line("INFO  [alembic.runtime.migration] Context impl SQLiteImpl.");
    {
      std::lock_guard<std::mutex> lock(mu_);
      output_logs_.push_back(spec.output_log);
      for (int i = 0; i < chatter_[name]; ++i) on_line(absl::StrCat("migrating row batch ", i));
    }
    bool lies = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      lies = lies_.count(name) > 0;
    }
    if (lies) {
      // Exit 0, one revision short (an env.py that swallowed an error).
      Sql(file, "INSERT INTO alembic_version VALUES ('b5d1e7f3a033')");
    } else {
      Sql(file, absl::StrCat("DELETE FROM alembic_version; INSERT INTO alembic_version VALUES ('",
                             kHead, "')"));
    }
    r.exit_code = 0;
    return r;
  }

  // `name`'s downgrade fails, touching nothing.
  void FailDowngrade(const std::string& name) {
    std::lock_guard<std::mutex> l(mu_);
    fail_downgrade_.insert(name);
  }
  // `name`'s upgrade exits 0 without reaching its target.
  void Lie(const std::string& name) {
    std::lock_guard<std::mutex> l(mu_);
    lies_.insert(name);
  }

  void Fail(const std::string& name) {
    std::lock_guard<std::mutex> l(mu_);
    fail_.insert(name);
  }
  // `name`'s upgrade prints `lines` more lines.
  void Chatter(const std::string& name, int lines) {
    std::lock_guard<std::mutex> l(mu_);
    chatter_[name] = lines;
  }
  // The output log each successful upgrade was given, in order.
  std::vector<std::string> output_logs() {
    std::lock_guard<std::mutex> l(mu_);
    return output_logs_;
  }
  // Fails `name`'s upgrade after it moved the database to `rows`.
  void FailHalfway(const std::string& name, std::vector<std::string> rows) {
    std::lock_guard<std::mutex> l(mu_);
    fail_.insert(name);
    halfway_[name] = std::move(rows);
  }
  // "t1 to 7c4e2d8a9b22" per downgrade run.
  std::vector<std::string> downgrades() {
    std::lock_guard<std::mutex> l(mu_);
    return downgrades_;
  }
  void Block(const std::string& name) {
    std::lock_guard<std::mutex> l(mu_);
    block_.insert(name);
  }
  // Blocks even when cancelled, like an Alembic slow to die.
  void BlockStubbornly(const std::string& name) {
    std::lock_guard<std::mutex> l(mu_);
    block_.insert(name);
    stubborn_.insert(name);
  }
  void Release(const std::string& name) {
    std::lock_guard<std::mutex> l(mu_);
    block_.erase(name);
    changed_.notify_all();
  }
  // Waits (real time) until `name` has been started.
  bool WaitStarted(const std::string& name) {
    std::unique_lock<std::mutex> l(mu_);
    return changed_.wait_for(l, std::chrono::seconds(20), [&] {
      return std::find(calls_.begin(), calls_.end(), name) != calls_.end();
    });
  }
  std::vector<std::string> calls() {
    std::lock_guard<std::mutex> l(mu_);
    return calls_;
  }
  int max_running() {
    std::lock_guard<std::mutex> l(mu_);
    return max_running_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::set<std::string> fail_, block_, stubborn_, lies_, fail_downgrade_;
  std::map<std::string, std::vector<std::string>> halfway_;
  std::map<std::string, int> chatter_;
  std::vector<std::string> calls_, downgrades_, output_logs_;
  int running_ = 0, max_running_ = 0;
};

// The real SQLite driver, except that after each restore a writer that
// ignores lockstep's lock moves the version row (`sneaked_in`): the restore
// succeeded, and its result is not what the backup holds.
class RestoreThenOverwrittenDriver : public Driver {
 public:
  explicit RestoreThenOverwrittenDriver(std::string sneaked_in)
      : inner_(MakeSqliteDriver({})), sneaked_in_(std::move(sneaked_in)) {}
  config::Dialect dialect() const override { return inner_->dialect(); }
  absl::StatusOr<std::unique_ptr<DatabaseLock>> Lock(const VersionTarget& t,
                                                     const config::DatabaseUrl& url,
                                                     absl::Duration timeout,
                                                     IfMissing if_missing) override {
    return inner_->Lock(t, url, timeout, if_missing);
  }
  absl::StatusOr<Backup> TakeBackup(const VersionTarget& t, const config::DatabaseUrl& url,
                                    const std::string& dir, absl::Duration timeout) override {
    return inner_->TakeBackup(t, url, dir, timeout);
  }
  absl::Status RestoreBackup(const Backup& backup, const config::DatabaseUrl& url,
                             absl::Duration timeout) override {
    absl::Status restored = inner_->RestoreBackup(backup, url, timeout);
    Sql(url.database, "UPDATE alembic_version SET version_num = '" + sneaked_in_ + "'");
    return restored;
  }
  absl::StatusOr<BackupComparison> CompareWithBackup(const Backup& backup,
                                                     const config::DatabaseUrl& url,
                                                     std::vector<std::string> rows,
                                                     absl::Duration connect_timeout,
                                                     absl::Duration timeout) override {
    return inner_->CompareWithBackup(backup, url, std::move(rows), connect_timeout, timeout);
  }
  bool transactional_ddl() const override { return inner_->transactional_ddl(); }
  bool RepairAfterKilledWriter(const VersionTarget& t, const VersionRead& r) override {
    return inner_->RepairAfterKilledWriter(t, r);
  }
  std::vector<std::string> ChildEnvironment(const config::DatabaseUrl& url) const override {
    return inner_->ChildEnvironment(url);
  }
  absl::StatusOr<SchemaSnapshot> ReadSchema(const VersionTarget& t,
                                            const SchemaFilter& filter) override {
    return inner_->ReadSchema(t, filter);
  }

 protected:
  VersionRead ReadRows(const VersionTarget& t) override { return inner_->Read(t); }

 private:
  std::unique_ptr<Driver> inner_;
  const std::string sneaked_in_;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::copy(lockstep::testing::ExampleProjectDir(), dir_ + "/project",
             fs::copy_options::recursive);
  }
  void TearDown() override {
    if (engine_) engine_->Stop();
  }

  std::string Db(const std::string& name, const std::vector<std::string>& rows) {
    std::string file = dir_ + "/" + name + ".db";
    Sql(file, "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)");
    for (const std::string& r : rows) {
      Sql(file, absl::StrCat("INSERT INTO alembic_version VALUES ('", r, "')"));
    }
    return file;
  }

  // lockstepd's parts on `environments` (YAML), with the fake clock and Alembic.
  void Start(const std::string& environments) {
    std::ofstream(dir_ + "/fleet.yaml") << "project: {alembic_ini: project/alembic.ini}\n"
                                        << "server: {backup_dir: backups}\n"
                                        << "environments:\n"
                                        << environments;
    auto inv = config::LoadInventory(dir_ + "/fleet.yaml");
    ASSERT_TRUE(inv.ok()) << inv.status();
    auto store = StateStore::Open(dir_ + "/state.db", absl::Milliseconds(100));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto r = Reconciler::Create(std::make_shared<config::Inventory>(*inv), MakeDrivers({}),
                                store_.get(), &clock_);
    ASSERT_TRUE(r.ok()) << r.status();
    reconciler_ = *std::move(r);
    StartEngine();
  }
  // A backup of database `key` ("env/name") as a dead lockstepd took it
  // before its step's Alembic started, recorded with `revisions`; its id.
  int64_t BackupBeforeTheCrash(const std::string& key, std::vector<std::string> revisions) {
    std::unique_ptr<Drivers> drivers = MakeDrivers({});
    EXPECT_TRUE(reconciler_->Refresh().ok());
    std::optional<VersionTarget> target = reconciler_->Target(key);
    if (!target) {
      ADD_FAILURE() << "no database " << key;
      return 0;
    }
    std::filesystem::create_directories(dir_ + "/backups");
    absl::StatusOr<Backup> b =
        drivers->For(target->url)
            .TakeBackup(*target, target->url, dir_ + "/backups", absl::Minutes(1));
    if (!b.ok()) {
      ADD_FAILURE() << b.status();
      return 0;
    }
    b->revisions = std::move(revisions);
    EXPECT_TRUE(store_->AddBackup(&*b).ok());
    return b->id;
  }
  // A new engine on the same store, as a restarted lockstepd has.
  void StartEngine() {
    RolloutEngine::Options options;
    options.clock = &clock_;
    options.alembic = [this](const ProcessSpec& spec, const std::atomic<bool>* cancel,
                             const std::function<void(int)>& on_start,
                             const std::function<void(const std::string&)>& on_line) {
      return alembic_.Run(spec, cancel, on_start, on_line);
    };
    engine_ = std::make_unique<RolloutEngine>(reconciler_, store_.get(),
                                              engine_drivers_ ? engine_drivers_ : MakeDrivers({}),
                                              RolloutHooks{}, std::move(options));
    ASSERT_TRUE(engine_->Recover().ok());
  }

  // dev and prod at kAge; prod after dev, with a 10m soak.
  void StartDevThenProd() {
    Db("dev", {kAge});
    Db("prod", {kAge});
    Start(R"(
  - name: dev
    databases: [{name: app, url: "sqlite:///dev.db"}]
  - name: prod
    after: dev
    soak: 10m
    databases: [{name: app, url: "sqlite:///prod.db"}]
)");
  }

  std::string Launch(const std::string& target = "heads") {
    RolloutRequest req;
    req.target = target;
    req.requested_by = "test";
    absl::StatusOr<Rollout> r = engine_->Start(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->id : "";
  }
  std::string StateOf(const std::string& id) { return std::string(NameOf(*engine_->StateOf(id))); }
  // Waits (real time) until the rollout's state is `state`.
  bool WaitFor(const std::string& id, const std::string& state) {
    for (int i = 0; i < 4000; ++i) {
      if (StateOf(id) == state) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    ADD_FAILURE() << id << " stayed " << StateOf(id) << ", not " << state;
    return false;
  }
  const RolloutStep& Step(const Rollout& r, const std::string& name) {
    for (const RolloutStep& s : r.steps) {
      if (s.database == name) return s;
    }
    static RolloutStep none;
    ADD_FAILURE() << "no step " << name;
    return none;
  }
  std::vector<std::string> EventKinds(const std::string& id) {
    std::vector<std::string> kinds;
    absl::StatusOr<std::vector<RolloutEvent>> events = store_->Events(id, 0, 10000);
    EXPECT_TRUE(events.ok()) << events.status();
    for (const RolloutEvent& e : *events) kinds.emplace_back(NameOf(e.kind));
    return kinds;
  }

  lockstep::testing::TempDir tmp_{"lockstep-engine"};
  std::string dir_ = tmp_.path();
  FakeClock clock_{absl::Now()};
  FakeAlembic alembic_;
  std::shared_ptr<Drivers> engine_drivers_;  // set: the engine's drivers instead of the real ones
  std::unique_ptr<StateStore> store_;
  std::shared_ptr<Reconciler> reconciler_;
  std::unique_ptr<RolloutEngine> engine_;
};

// 100,000 output lines (2.3 MB) are not 100,000 events in the state store:
// the first MiB is, then one line says where the rest is.
TEST_F(EngineTest, AStepsOutputEventsStopAtOneMiBAndSayWhereTheRestIs) {
  Db("t1", {kAge});
  Start(R"(
  - name: prod
    databases: [{name: t1, url: "sqlite:///t1.db"}]
)");
  alembic_.Chatter("t1", 100000);
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "succeeded"));
  const std::string log = absl::StrCat(dir_, "/lockstep-output/", id, "/step-0.log");
  EXPECT_THAT(alembic_.output_logs(), ElementsAre(log));
  absl::StatusOr<std::vector<RolloutEvent>> events = store_->Events(id, 0, 1000000);
  ASSERT_TRUE(events.ok()) << events.status();
  size_t bytes = 0;
  std::vector<std::string> output;
  for (const RolloutEvent& e : *events) {
    if (e.kind != EventKind::kOutput) continue;
    bytes += e.message.size();
    output.push_back(e.message);
  }
  EXPECT_LE(bytes, 1024u * 1024u + 200u);
  EXPECT_GT(output.size(), 40000u);
  EXPECT_LT(output.size(), 50000u);
  EXPECT_EQ(output.back(), absl::StrCat("[lockstep: over 1 MiB of output; the rest is not shown "
                                        "here: all of it is in ",
                                        log, "]"));
}

TEST_F(EngineTest, SoaksBetweenEnvironmentsOnItsClock) {
  StartDevThenProd();
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "soaking"));
  EXPECT_THAT(Rows(dir_ + "/dev.db"), ElementsAre(kHead));
  EXPECT_THAT(Rows(dir_ + "/prod.db"), ElementsAre(kAge));
  clock_.Advance(absl::Minutes(9));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(StateOf(id), "soaking");
  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(WaitFor(id, "succeeded"));
  EXPECT_THAT(Rows(dir_ + "/prod.db"), ElementsAre(kHead));
  Rollout r = *engine_->Get(id);
  EXPECT_GE(r.stages[1].started_at - r.stages[0].finished_at, absl::Minutes(10));
}

TEST_F(EngineTest, CanarySoakAndApprovalHoldTheRest) {
  for (const char* t : {"t1", "t2", "t3"}) Db(t, {kAge});
  Start(R"(
  - name: prod
    canary: [t2]
    canary_soak: 5m
    canary_approval: required
    databases:
      - {name: t1, url: "sqlite:///t1.db"}
      - {name: t2, url: "sqlite:///t2.db"}
      - {name: t3, url: "sqlite:///t3.db"}
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "soaking"));
  EXPECT_THAT(alembic_.calls(), ElementsAre("t2"));
  // An approval before the canaries are through vouches for nothing.
  EXPECT_EQ(engine_->Approve(id, "eager").code(), absl::StatusCode::kFailedPrecondition);
  clock_.Advance(absl::Minutes(5));
  ASSERT_TRUE(WaitFor(id, "awaiting_approval"));
  EXPECT_THAT(alembic_.calls(), ElementsAre("t2"));
  ASSERT_TRUE(engine_->Approve(id, "carol").ok());
  ASSERT_TRUE(WaitFor(id, "succeeded"));
  std::vector<std::string> calls = alembic_.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0], "t2");
  EXPECT_THAT(std::vector<std::string>(calls.begin() + 1, calls.end()),
              ::testing::UnorderedElementsAre("t1", "t3"));
  Rollout r = *engine_->Get(id);
  EXPECT_EQ(r.stages[0].canary_approved_by, "carol");
  EXPECT_GE(Step(r, "t1").started_at - Step(r, "t2").finished_at, absl::Minutes(5));
  EXPECT_THAT(EventKinds(id), ::testing::IsSupersetOf({"canary_soaking", "canary_soaked",
                                                       "awaiting_approval", "approved"}));
}

// An approval applies to the gate waiting at that moment, once: a second
// `approve` (or ten at once, or pause, approve, approve, resume) given at the
// stage gate must not pre-approve the canary gate ahead of it.
TEST_F(EngineTest, AnApprovalAppliesToTheOneGateWaiting) {
  for (const char* t : {"t1", "t2", "t3"}) Db(t, {kAge});
  Start(R"(
  - name: prod
    approval: required
    canary: [t2]
    canary_approval: required
    databases:
      - {name: t1, url: "sqlite:///t1.db"}
      - {name: t2, url: "sqlite:///t2.db"}
      - {name: t3, url: "sqlite:///t3.db"}
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "awaiting_approval"));
  ASSERT_TRUE(engine_->Pause(id, "ops").ok());
  std::vector<std::thread> approvers;
  std::atomic<int> approved{0}, refused{0};
  for (int i = 0; i < 10; ++i) {
    approvers.emplace_back([&, i] {
      absl::Status s = engine_->Approve(id, absl::StrCat("approver-", i));
      (s.ok() ? approved : refused)++;
      if (!s.ok()) {
        EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
      }
    });
  }
  for (std::thread& t : approvers) t.join();
  EXPECT_EQ(approved.load(), 1);
  EXPECT_EQ(refused.load(), 9);
  ASSERT_TRUE(engine_->Resume(id, "ops").ok());
  // The canary runs, then the rollout waits at the canary gate: nobody has
  // approved that one.
  ASSERT_TRUE(alembic_.WaitStarted("t2"));
  ASSERT_TRUE(WaitFor(id, "awaiting_approval"));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_THAT(alembic_.calls(), ElementsAre("t2"));
  Rollout r = *engine_->Get(id);
  EXPECT_THAT(r.stages[0].approved_by, HasSubstr("approver-"));
  EXPECT_EQ(r.stages[0].canary_approved_by, "");
  ASSERT_TRUE(engine_->Approve(id, "carol").ok());
  ASSERT_TRUE(WaitFor(id, "succeeded"));
  EXPECT_EQ(engine_->Get(id)->stages[0].canary_approved_by, "carol");
  EXPECT_EQ(alembic_.calls().size(), 3u);
}

TEST_F(EngineTest, ACanaryThatMovesDuringItsSoakHalts) {
  for (const char* t : {"t1", "t2"}) Db(t, {kAge});
  Start(R"(
  - name: prod
    canary: [t1]
    canary_soak: 5m
    databases:
      - {name: t1, url: "sqlite:///t1.db"}
      - {name: t2, url: "sqlite:///t2.db"}
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "soaking"));
  Sql(dir_ + "/t1.db", absl::StrCat("UPDATE alembic_version SET version_num = '", kAge, "'"));
  clock_.Advance(absl::Minutes(5));
  ASSERT_TRUE(WaitFor(id, "halted"));
  Rollout r = *engine_->Get(id);
  EXPECT_THAT(r.reason, HasSubstr("canaries did not hold through their soak: prod/t1 holds"));
  EXPECT_EQ(NameOf(Step(r, "t2").state), "skipped");
  EXPECT_THAT(alembic_.calls(), ElementsAre("t1"));
}

TEST_F(EngineTest, ApprovalGatesAProtectedEnvironment) {
  Db("app", {kAge});
  Start(R"(
  - name: prod
    approval: required
    databases: [{name: app, url: "sqlite:///app.db"}]
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "awaiting_approval"));
  EXPECT_TRUE(alembic_.calls().empty());
  ASSERT_TRUE(engine_->Approve(id, "dave").ok());
  ASSERT_TRUE(WaitFor(id, "succeeded"));
  EXPECT_EQ(engine_->Get(id)->stages[0].approved_by, "dave");
}

// A freeze that covers now holds the rollout (awaiting_window, no step
// run) until the window ends on the engine's clock; an override skips it.
TEST_F(EngineTest, AChangeWindowHoldsStepsUntilItOpens) {
  Db("app", {kAge});
  const absl::CivilMinute now = absl::ToCivilMinute(clock_.Now(), absl::UTCTimeZone());
  const absl::CivilMinute end = now + 30;
  Start(absl::StrFormat(R"(
  - name: prod
    windows: [{kind: deny, schedule: "daily %02d:%02d-%02d:%02d", timezone: UTC}]
    databases: [{name: app, url: "sqlite:///app.db"}]
)",
                        now.hour(), now.minute(), end.hour(), end.minute()));
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "awaiting_window"));
  EXPECT_THAT(engine_->Get(id)->reason,
              HasSubstr("prod is outside its change windows (deny daily"));
  EXPECT_EQ(NameOf(engine_->Get(id)->stages[0].state), "awaiting_window");
  clock_.Advance(absl::Minutes(20));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(StateOf(id), "awaiting_window");
  EXPECT_TRUE(alembic_.calls().empty());
  clock_.Advance(absl::Minutes(11));
  ASSERT_TRUE(WaitFor(id, "succeeded"));
  EXPECT_THAT(alembic_.calls(), ElementsAre("app"));
  std::vector<RolloutEvent> events = *store_->Events(id, 0, 100);
  EXPECT_TRUE(std::any_of(events.begin(), events.end(), [](const RolloutEvent& e) {
    return e.kind == EventKind::kWindowOpened;
  }));

  // The same freeze, overridden with a reason: no wait, and it is recorded.
  clock_.Advance(absl::Hours(24) - absl::Minutes(31));  // inside the window again
  Sql(dir_ + "/app.db", absl::StrCat("UPDATE alembic_version SET version_num = '", kAge, "'"));
  ASSERT_TRUE(reconciler_->Refresh().ok());
  RolloutRequest req;
  req.target = "heads";
  req.requested_by = "test";
  req.override_window = "hotfix for INC-42";
  absl::StatusOr<Rollout> r = engine_->Start(req);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(WaitFor(r->id, "succeeded"));
  std::vector<RolloutEvent> overridden = *store_->Events(r->id, 0, 100);
  EXPECT_TRUE(std::any_of(overridden.begin(), overridden.end(), [](const RolloutEvent& e) {
    return e.kind == EventKind::kOverrideWindow &&
           e.message == "change windows overridden by test: hotfix for INC-42";
  }));
}

// Four eyes: two different people, neither the requester; each approval
// is recorded as it comes.
TEST_F(EngineTest, FourEyesNeedsTwoDistinctApproversNotTheRequester) {
  Db("app", {kAge});
  Start(R"(
  - name: prod
    approval: {required: true, approvals: 2, distinct_from_requester: true}
    databases: [{name: app, url: "sqlite:///app.db"}]
)");
  std::string id = Launch();  // requested by "test"
  ASSERT_TRUE(WaitFor(id, "awaiting_approval"));
  absl::Status self = engine_->Approve(id, "test");
  EXPECT_EQ(self.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(self.message(), HasSubstr("test requested rollout " + id + " and may not approve"));
  ASSERT_TRUE(engine_->Approve(id, "dave").ok());
  absl::Status twice = engine_->Approve(id, "dave");
  EXPECT_EQ(twice.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(twice.message(), HasSubstr("dave already approved prod"));
  EXPECT_EQ(StateOf(id), "awaiting_approval");
  EXPECT_TRUE(alembic_.calls().empty());
  Rollout waiting = *engine_->Get(id);
  EXPECT_THAT(waiting.stages[0].approvers, ElementsAre("dave"));
  EXPECT_EQ(waiting.stages[0].approved_by, "");
  ASSERT_TRUE(engine_->Approve(id, "erin").ok());
  ASSERT_TRUE(WaitFor(id, "succeeded"));
  Rollout done = *engine_->Get(id);
  EXPECT_EQ(done.stages[0].approved_by, "dave, erin");
  EXPECT_EQ(done.stages[0].approvals_required, 2);
}

// The database moved between the plan and its step (by hand, while the
// rollout waited for approval): the step plans again from where it is, says
// so, and goes on from there to the same target.
TEST_F(EngineTest, AStepPlansAgainWhenTheDatabaseMovedSinceThePlan) {
  Db("app", {kAge});
  Start(R"(
  - name: prod
    approval: required
    databases: [{name: app, url: "sqlite:///app.db"}]
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "awaiting_approval"));
  EXPECT_THAT(Step(*engine_->Get(id), "app").path,
              ElementsAre("b5d1e7f3a033", "c2e4a6b8d055", kHead));
  Sql(dir_ + "/app.db", "INSERT INTO alembic_version VALUES ('b5d1e7f3a033')");
  ASSERT_TRUE(engine_->Approve(id, "dave").ok());
  ASSERT_TRUE(WaitFor(id, "succeeded"));
  const Rollout r = *engine_->Get(id);
  const RolloutStep& step = Step(r, "app");
  EXPECT_THAT(step.from, ElementsAre(kAge, "b5d1e7f3a033"));
  EXPECT_THAT(step.path, ElementsAre("c2e4a6b8d055", kHead));
  EXPECT_THAT(EventKinds(id), ::testing::Contains("replanned"));
  EXPECT_THAT(Rows(dir_ + "/app.db"), ElementsAre(kHead));
}

// A database that became unreachable after the plan (its file gone while
// the rollout waited for approval): its step fails saying so, creates
// nothing, and the others go on within max_failures.
TEST_F(EngineTest, ADatabaseUnreachableMidRolloutFailsItsStepOnly) {
  Db("a", {kAge});
  Db("b", {kAge});
  Start(R"(
  - name: prod
    approval: required
    max_failures: 1
    max_parallel: 1
    databases:
      - {name: a, url: "sqlite:///a.db"}
      - {name: b, url: "sqlite:///b.db"}
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "awaiting_approval"));
  fs::rename(dir_ + "/b.db", dir_ + "/b.db.moved-away");
  ASSERT_TRUE(engine_->Approve(id, "dave").ok());
  ASSERT_TRUE(WaitFor(id, "failed"));
  const Rollout r = *engine_->Get(id);
  EXPECT_EQ(NameOf(Step(r, "a").state), "succeeded");
  EXPECT_EQ(NameOf(Step(r, "b").state), "failed");
  EXPECT_THAT(Step(r, "b").error, HasSubstr("b.db"));
  EXPECT_THAT(alembic_.calls(), ElementsAre("a"));
  EXPECT_FALSE(fs::exists(dir_ + "/b.db")) << "a missing SQLite file was created";
}

TEST_F(EngineTest, HaltsPastMaxFailuresWithTheCause) {
  for (const char* t : {"a", "b", "c", "d"}) Db(t, {kAge});
  alembic_.Fail("a");
  alembic_.Fail("b");
  Start(R"(
  - name: prod
    max_failures: 1
    max_parallel: 1
    on_failure: leave
    databases:
      - {name: a, url: "sqlite:///a.db"}
      - {name: b, url: "sqlite:///b.db"}
      - {name: c, url: "sqlite:///c.db"}
      - {name: d, url: "sqlite:///d.db"}
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "halted"));
  Rollout r = *engine_->Get(id);
  EXPECT_EQ(NameOf(Step(r, "a").state), "failed");
  EXPECT_THAT(Step(r, "a").error,
              HasSubstr("Alembic exit 1: sqlite3.OperationalError: no such table: x"));
  EXPECT_EQ(NameOf(Step(r, "b").state), "failed");
  EXPECT_EQ(NameOf(Step(r, "c").state), "skipped");
  EXPECT_EQ(NameOf(Step(r, "d").state), "skipped");
  EXPECT_THAT(r.reason, HasSubstr("2 failed in prod, more than max_failures 1; prod/b: Alembic "
                                  "exit 1: sqlite3.OperationalError"));
  // States are said by name in messages (absl::StrCat would print an enum
  // as its number).
  absl::StatusOr<std::vector<RolloutEvent>> events = store_->Events(id, 0, 1000);
  ASSERT_TRUE(events.ok());
  ASSERT_FALSE(events->empty());
  EXPECT_EQ(NameOf(events->back().kind), "rollout_finished");
  EXPECT_THAT(events->back().message, ::testing::StartsWith("halted: "));
}

// Issue 11 #2: no backup, no migration. The backup folder cannot be made
// (a file stands where it should be; root ignores read-only modes), so no
// backup can be taken: a step whose policy restores from one must fail
// before Alembic runs; a step that restores nothing runs without one.
TEST_F(EngineTest, NoBackupNoMigrationWhenTheFailurePolicyRestores) {
  Db("a", {kAge});
  Db("b", {kAge});
  std::ofstream(dir_ + "/backups") << "not a folder\n";
  Start(R"(
  - name: dev
    on_failure: restore
    databases:
      - {name: a, url: "sqlite:///a.db"}
  - name: prod
    after: dev
    on_failure: leave
    databases:
      - {name: b, url: "sqlite:///b.db"}
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "halted"));  // max_failures 0
  Rollout r = *engine_->Get(id);
  EXPECT_EQ(NameOf(Step(r, "a").state), "failed");
  EXPECT_THAT(Step(r, "a").error,
              HasSubstr("on_failure: restore needs a backup, and it failed (Alembic did not run)"));
  EXPECT_EQ(Step(r, "a").rollback, "");  // nothing ran, nothing to undo
  EXPECT_THAT(alembic_.calls(), ::testing::IsEmpty());
  EXPECT_THAT(EventKinds(id), ::testing::Contains("backup_failed"));

  // The same folder, and a policy that needs no backup: Alembic runs.
  RolloutRequest req;
  req.target = "heads";
  req.requested_by = "test";
  req.environments = {"prod"};
  req.override_promotion = true;
  absl::StatusOr<Rollout> started = engine_->Start(req);
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_TRUE(WaitFor(started->id, "succeeded"));
  EXPECT_THAT(alembic_.calls(), ::testing::ElementsAre("b"));
}

TEST_F(EngineTest, MaxParallelIsABound) {
  for (int i = 0; i < 6; ++i) Db(absl::StrCat("t", i), {kAge});
  std::string dbs;
  for (int i = 0; i < 6; ++i) {
    absl::StrAppend(&dbs, "      - {name: t", i, ", url: \"sqlite:///t", i, ".db\"}\n");
    alembic_.Block(absl::StrCat("t", i));
  }
  Start("  - name: prod\n    max_parallel: 2\n    batch_size: 6\n    databases:\n" + dbs);
  std::string id = Launch();
  ASSERT_TRUE(alembic_.WaitStarted("t0"));
  ASSERT_TRUE(alembic_.WaitStarted("t1"));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(alembic_.calls().size(), 2u);  // two at once, the third waits
  for (int i = 0; i < 6; ++i) alembic_.Release(absl::StrCat("t", i));
  ASSERT_TRUE(WaitFor(id, "succeeded"));
  EXPECT_EQ(alembic_.max_running(), 2);
}

TEST_F(EngineTest, PauseLetsRunningStepsFinishResumeGoesOnAbortStops) {
  for (const char* t : {"a", "b", "c"}) Db(t, {kAge});
  alembic_.Block("a");
  alembic_.Block("c");
  Start(R"(
  - name: prod
    max_parallel: 1
    on_failure: leave
    databases:
      - {name: a, url: "sqlite:///a.db"}
      - {name: b, url: "sqlite:///b.db"}
      - {name: c, url: "sqlite:///c.db"}
)");
  std::string id = Launch();
  ASSERT_TRUE(alembic_.WaitStarted("a"));
  ASSERT_TRUE(engine_->Pause(id, "erin").ok());
  EXPECT_EQ(StateOf(id), "paused");
  alembic_.Release("a");
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_THAT(alembic_.calls(), ElementsAre("a"));  // b does not start while paused
  EXPECT_EQ(NameOf(Step(*engine_->Get(id), "a").state), "succeeded");
  ASSERT_TRUE(engine_->Resume(id, "erin").ok());
  ASSERT_TRUE(alembic_.WaitStarted("c"));
  ASSERT_TRUE(engine_->Abort(id, "erin").ok());
  ASSERT_TRUE(WaitFor(id, "aborted"));
  Rollout r = *engine_->Get(id);
  EXPECT_EQ(NameOf(Step(r, "b").state), "succeeded");
  EXPECT_EQ(NameOf(Step(r, "c").state), "failed");
  EXPECT_THAT(Step(r, "c").error, HasSubstr("stopped by abort"));
  // Rolled back as on_failure says (leave), not "restored" from a backup
  // that on_failure: leave never took.
  EXPECT_EQ(Step(r, "c").rollback, "left");
  EXPECT_THAT(Rows(dir_ + "/c.db"), ElementsAre(kAge));
  // Controls after the end are refused.
  EXPECT_EQ(engine_->Pause(id, "erin").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(engine_->Resume(id, "erin").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(EngineTest, ControlsAfterAbortAreRefused) {
  Db("a", {kAge});
  Db("b", {kAge});
  alembic_.BlockStubbornly("a");
  Start(R"(
  - name: prod
    approval: required
    max_parallel: 1
    on_failure: leave
    databases:
      - {name: a, url: "sqlite:///a.db"}
      - {name: b, url: "sqlite:///b.db"}
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "awaiting_approval"));
  ASSERT_TRUE(engine_->Approve(id, "ann").ok());
  ASSERT_TRUE(alembic_.WaitStarted("a"));
  ASSERT_TRUE(engine_->Abort(id, "ann").ok());
  // Still running its Alembic, but aborted: nothing more may be asked of it.
  for (absl::Status s : {engine_->Pause(id, "bob"), engine_->Resume(id, "bob"),
                         engine_->Approve(id, "bob")}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_THAT(s.message(), HasSubstr("is being aborted"));
  }
  alembic_.Release("a");
  ASSERT_TRUE(WaitFor(id, "aborted"));
  EXPECT_EQ(NameOf(Step(*engine_->Get(id), "b").state), "skipped");
  EXPECT_THAT(alembic_.calls(), ElementsAre("a"));
}

// The SQLite file is replaced while its step runs (someone restores a copy
// over it): the step fails saying so, and nothing is verified or restored
// on the replacement, whose rows stay as they came.
TEST_F(EngineTest, AFileReplacedDuringItsStepIsNeitherVerifiedNorRestored) {
  Db("a", {kAge});
  Db("other", {"3f2a1b9c0d11"});
  alembic_.Block("a");
  Start(R"(
  - name: prod
    on_failure: restore
    databases: [{name: a, url: "sqlite:///a.db"}]
)");
  std::string id = Launch();
  ASSERT_TRUE(alembic_.WaitStarted("a"));
  fs::rename(dir_ + "/other.db", dir_ + "/a.db");  // the copy put in its place
  alembic_.Release("a");
  ASSERT_TRUE(WaitFor(id, "halted"));
  const Rollout rollout = *engine_->Get(id);  // the step refers into it
  const RolloutStep& step = Step(rollout, "a");
  EXPECT_EQ(NameOf(step.state), "failed");
  EXPECT_THAT(step.error, HasSubstr("was replaced by another file since lockstep locked it"));
  EXPECT_EQ(step.rollback, "left");
  // The fake Alembic wrote the new file (a real one may have written the
  // old inode); either way no backup was restored over it.
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kHead));
}

// The state store refuses writes (another process holds its write lock; a
// full disk looks the same): lockstepd stops acting. The rollout halts, no
// new step, rollout or approval happens, and the store still says what it
// last recorded. Once it takes writes again the halt is recorded, and a
// restart follows the store: nothing is resumed behind anyone's back.
TEST_F(EngineTest, AStateStoreThatRefusesWritesStopsEveryAction) {
  Db("a", {kAge});
  Db("b", {kAge});
  alembic_.Block("a");
  Start(R"(
  - name: prod
    max_parallel: 1
    on_failure: leave
    databases:
      - {name: a, url: "sqlite:///a.db"}
      - {name: b, url: "sqlite:///b.db"}
)");
  std::string id = Launch();
  ASSERT_TRUE(alembic_.WaitStarted("a"));
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/state.db").c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  alembic_.Release("a");
  ASSERT_TRUE(WaitFor(id, "halted"));
  EXPECT_THAT(alembic_.calls(), ElementsAre("a"));  // b never started
  EXPECT_THAT(engine_->StoreError(), HasSubstr("lockstepd cannot write its state store"));
  EXPECT_EQ(NameOf(store_->LoadRollout(id)->state), "running");  // the halt is not recorded yet
  RolloutRequest req;
  req.target = "heads";
  EXPECT_FALSE(engine_->Start(req).ok());
  EXPECT_FALSE(engine_->CheckStore().ok());

  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  ASSERT_TRUE(engine_->CheckStore().ok());
  EXPECT_EQ(engine_->StoreError(), "");
  EXPECT_EQ(NameOf(store_->LoadRollout(id)->state), "halted");
  EXPECT_EQ(NameOf(Step(*store_->LoadRollout(id), "a").state), "succeeded");  // what a really did

  engine_->Stop();
  engine_.reset();
  StartEngine();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_THAT(alembic_.calls(), ElementsAre("a"));  // the restart resumed nothing
  std::string again = Launch();
  ASSERT_TRUE(WaitFor(again, "succeeded"));
  EXPECT_THAT(alembic_.calls(), ElementsAre("a", "b"));
}

// A rollout left by a killed lockstepd, its step in `phase`, the database
// holding `rows`: what Recover makes of it.
struct SettleCase {
  std::string phase;
  std::vector<std::string> rows;
  std::string state;     // the step's state after Recover (and the rollout's end)
  std::string contains;  // in the step's error or the recovered event
};
void PrintTo(const SettleCase& c, std::ostream* os) {
  *os << "phase " << c.phase << ", rows " << ::testing::PrintToString(c.rows) << " -> " << c.state;
}

// What a lockstepd killed in `phase` of its one step (ENV/DB from kAge to
// kHead) had written ahead of its action.
Rollout Crashed(const std::string& id, const std::string& env, const std::string& db,
                const std::string& phase) {
  Rollout r;
  r.id = id;
  r.target = "heads";
  r.target_revisions = {kHead};
  r.state = RolloutState::kRunning;
  r.created_at = r.updated_at = absl::Now();
  RolloutStage st;
  st.environment = env;
  st.state = StageState::kRunning;
  st.on_failure = FailurePolicy::kLeave;
  r.stages.push_back(st);
  RolloutStep s;
  s.environment = env;
  s.database = db;
  s.from = {kAge};
  s.expected = {kHead};
  s.path = {"b5d1e7f3a033", "c2e4a6b8d055", kHead};
  s.state = StepState::kRunning;
  s.phase = *ParseName<StepPhase>(phase);
  s.attempts = 1;
  r.steps.push_back(s);
  return r;
}

// A process in a group of its own, like a step's Alembic: `sleep 60`.
int Sleeper() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  return pid;
}

// After a restart, the old step's Alembic is killed only if its stored pid
// still names that process: a pid now used by something else (after a
// reboot, or another lockstepd's Alembic) is left alone.
TEST_F(EngineTest, SettleKillsOnlyTheProcessItStarted) {
  Db("a", {kHead});
  Db("b", {kHead});
  Start(R"(
  - name: one
    databases: [{name: a, url: "sqlite:///a.db"}]
  - name: two
    databases: [{name: b, url: "sqlite:///b.db"}]
)");
  const int ours = Sleeper();
  const int unrelated = Sleeper();
  ASSERT_GT(ours, 0);
  ASSERT_GT(unrelated, 0);
  ASSERT_FALSE(ProcessIdentity(ours).empty());
  Rollout r1 = Crashed("r-ours", "one", "a", "alembic");
  r1.steps[0].pid = ours;
  r1.steps[0].pid_identity = ProcessIdentity(ours);
  Rollout r2 = Crashed("r-unrelated", "two", "b", "alembic");
  r2.steps[0].pid = unrelated;
  // The number of a process that started at another moment (tick 1 of this
  // boot): not the one running under that number now.
  const std::string id = ProcessIdentity(unrelated);
  r2.steps[0].pid_identity = id.substr(0, id.find('/')) + "/1";
  ASSERT_TRUE(store_->SaveRollout(r1).ok());
  ASSERT_TRUE(store_->SaveRollout(r2).ok());
  engine_->Stop();
  engine_.reset();
  StartEngine();
  ASSERT_TRUE(WaitFor("r-ours", "succeeded"));
  ASSERT_TRUE(WaitFor("r-unrelated", "succeeded"));
  int status = 0;
  EXPECT_EQ(::waitpid(ours, &status, 0), ours);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_EQ(::waitpid(unrelated, &status, WNOHANG), 0);  // still running
  ::kill(unrelated, SIGKILL);
  ::waitpid(unrelated, &status, 0);
}

class EngineSettleTest : public EngineTest, public ::testing::WithParamInterface<SettleCase> {};

TEST_P(EngineSettleTest, SettlesFromWhatTheDatabaseHolds) {
  const SettleCase& c = GetParam();
  Db("app", c.rows);
  Start(R"(
  - name: prod
    on_failure: leave
    databases: [{name: app, url: "sqlite:///app.db"}]
)");
  ASSERT_TRUE(store_->SaveRollout(Crashed("r-crashed", "prod", "app", c.phase)).ok());
  engine_->Stop();
  engine_.reset();
  StartEngine();
  // One failed step is past max_failures 0: the rollout halts.
  const std::string end = c.state == "failed" ? "halted" : "succeeded";
  ASSERT_TRUE(WaitFor("r-crashed", end));
  Rollout after = *engine_->Get("r-crashed");
  EXPECT_EQ(NameOf(after.steps[0].state), c.state);
  std::string said = after.steps[0].error;
  absl::StatusOr<std::vector<RolloutEvent>> events = store_->Events("r-crashed", 0, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  for (const RolloutEvent& e : *events) said += "\n" + e.message;
  EXPECT_THAT(said, HasSubstr(c.contains));
  EXPECT_EQ(Rows(dir_ + "/app.db"),
            c.state == "failed" ? c.rows : std::vector<std::string>{kHead});  // rows sorted
}

INSTANTIATE_TEST_SUITE_P(
    EveryPhase, EngineSettleTest,
    ::testing::Values(
        // Killed before Alembic ran: at its start, retried (the fake runs it).
        SettleCase{"lock", {kAge}, "succeeded", "will retry"},
        SettleCase{"backup", {kAge}, "succeeded", "will retry"},
        // Alembic had finished: verified at the target, not run again.
        SettleCase{"alembic", {kHead}, "succeeded", "settled after a restart"},
        SettleCase{"verify", {kHead}, "succeeded", "settled after a restart"},
        // Somewhere else on the path with no backup to go back to.
        SettleCase{"alembic", {kAge, "c2e4a6b8d055"}, "failed", "needs attention"},
        // It had failed and was being rolled back; back at its start.
        SettleCase{"rollback", {kAge}, "failed", "it is back at its start"}),
    [](const ::testing::TestParamInfo<SettleCase>& info) {
      return absl::StrCat(info.param.phase, "_", info.index);
    });

// A migration that fails half-way under `on_failure: downgrade`: Alembic
// is run back to where the database started, and the step says so.
TEST_F(EngineTest, OnFailureDowngradeRunsAlembicBackToTheStart) {
  Db("a", {kAge});
  alembic_.FailHalfway("a", {kAge, "b5d1e7f3a033"});
  Start(R"(
  - name: prod
    on_failure: downgrade
    databases: [{name: a, url: "sqlite:///a.db"}]
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "halted"));
  Rollout r = *engine_->Get(id);
  EXPECT_EQ(NameOf(Step(r, "a").state), "failed");
  EXPECT_EQ(Step(r, "a").rollback, "downgraded");
  EXPECT_THAT(alembic_.downgrades(), ElementsAre(absl::StrCat("a to ", kAge)));
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kAge));
}

// on_failure: downgrade whose downgrade fails too: the step says both, with
// what the database holds, and nothing is claimed undone.
TEST_F(EngineTest, ADowngradeThatFailsToUndoAFailedStepIsSaid) {
  Db("a", {kAge});
  alembic_.FailHalfway("a", {"b5d1e7f3a033"});
  alembic_.FailDowngrade("a");
  Start(R"(
  - name: prod
    on_failure: downgrade
    databases: [{name: a, url: "sqlite:///a.db"}]
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "halted"));
  Rollout r = *engine_->Get(id);
  EXPECT_EQ(NameOf(Step(r, "a").state), "failed");
  EXPECT_THAT(Step(r, "a").error, HasSubstr("no such table: x"));
  EXPECT_THAT(Step(r, "a").rollback, HasSubstr("downgrade_failed: Alembic "));
  EXPECT_THAT(Step(r, "a").rollback,
              HasSubstr("cannot be undone, the database holds [b5d1e7f3a033]"));
  EXPECT_THAT(alembic_.downgrades(), ElementsAre(absl::StrCat("a to ", kAge)));
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre("b5d1e7f3a033"));  // left, and said
}

// A migration that fails half-way under `on_failure: restore` on SQLite
// (no transactional DDL): the step's backup is put back, and the database
// holds what it held before, partial changes included.
TEST_F(EngineTest, OnFailureRestorePutsTheBackupBackAfterAHalfwayFailure) {
  Db("a", {kAge});
  Sql(dir_ + "/a.db", "CREATE TABLE kept (x INTEGER)");
  alembic_.FailHalfway("a", {"b5d1e7f3a033"});
  Start(R"(
  - name: prod
    on_failure: restore
    databases: [{name: a, url: "sqlite:///a.db"}]
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "halted"));
  Rollout r = *engine_->Get(id);
  EXPECT_EQ(NameOf(Step(r, "a").state), "failed");
  EXPECT_EQ(Step(r, "a").rollback, "restored");
  EXPECT_NE(Step(r, "a").backup_id, 0);
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kAge));
  Sql(dir_ + "/a.db", "SELECT x FROM kept");  // the backup's table is there again
  EXPECT_THAT(EventKinds(id), ::testing::Contains("rolled_back"));
}

// A restore that succeeded but whose result is not what the backup holds
// (a writer that ignores lockstep's lock moved the rows right after it):
// the step says the restore failed and what the database holds, never
// "restored".
TEST_F(EngineTest, ARestoreWhoseResultIsNotTheBackupIsSaidToHaveFailed) {
  Db("a", {kAge});
  alembic_.FailHalfway("a", {"b5d1e7f3a033"});
  std::vector<std::unique_ptr<Driver>> drivers;
  drivers.push_back(std::make_unique<RestoreThenOverwrittenDriver>("c2e4a6b8d055"));
  engine_drivers_ = std::make_shared<Drivers>(std::move(drivers));
  Start(R"(
  - name: prod
    on_failure: restore
    databases: [{name: a, url: "sqlite:///a.db"}]
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "halted"));
  Rollout r = *engine_->Get(id);
  EXPECT_EQ(NameOf(Step(r, "a").state), "failed");
  EXPECT_EQ(Step(r, "a").rollback, "restore_failed: after the restore it holds [c2e4a6b8d055]");
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre("c2e4a6b8d055"));
  EXPECT_THAT(EventKinds(id), ::testing::Contains("rolled_back"));
}

// Alembic exits 0 but the version rows are not the planned ones (an
// env.py that swallowed an error, a migration that moved the rows by hand):
// exit codes are claims too. The step fails naming what the database holds,
// and on_failure puts the backup back.
TEST_F(EngineTest, AnAlembicThatExitsZeroShortOfItsTargetFailsTheStep) {
  Db("a", {kAge});
  alembic_.Lie("a");
  Start(R"(
  - name: prod
    on_failure: restore
    databases: [{name: a, url: "sqlite:///a.db"}]
)");
  std::string id = Launch();
  ASSERT_TRUE(WaitFor(id, "halted"));
  Rollout r = *engine_->Get(id);
  EXPECT_EQ(NameOf(Step(r, "a").state), "failed");
  EXPECT_EQ(Step(r, "a").error, absl::StrCat("Alembic exited 0 but the database holds [", kAge,
                                             ", b5d1e7f3a033], not the planned [", kHead, "]"));
  EXPECT_EQ(Step(r, "a").rollback, "restored");
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kAge));
}

// A lockstepd killed while Alembic ran on SQLite, the database back at its
// start rows but with part of the migration's DDL left: the restarted one
// puts the step's backup back before it retries, so the retry starts from
// what the backup holds, not from half a migration.
TEST_F(EngineTest, SettleRestoresASqliteStepFromItsBackupBeforeRetrying) {
  Db("a", {kAge});
  Start(R"(
  - name: prod
    on_failure: leave
    databases: [{name: a, url: "sqlite:///a.db"}]
)");
  const int64_t backup_id = BackupBeforeTheCrash("prod/a", {kAge});
  ASSERT_NE(backup_id, 0);
  // Then half a migration: a table, no new version row.
  Sql(dir_ + "/a.db", "CREATE TABLE half_done (x INTEGER)");
  Rollout crashed = Crashed("r-half", "prod", "a", "alembic");
  crashed.steps[0].backup_id = backup_id;
  ASSERT_TRUE(store_->SaveRollout(crashed).ok());
  engine_->Stop();
  engine_.reset();
  StartEngine();
  ASSERT_TRUE(WaitFor("r-half", "succeeded"));
  std::vector<std::string> messages;
  absl::StatusOr<std::vector<RolloutEvent>> events = store_->Events("r-half", 0, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  for (const RolloutEvent& e : *events) messages.push_back(e.message);
  EXPECT_THAT(messages, ::testing::Contains(HasSubstr("restored from its backup; will retry")));
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kHead));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(std::string(dir_ + "/a.db").c_str(), &db), SQLITE_OK);
  EXPECT_NE(sqlite3_exec(db, "SELECT x FROM half_done", nullptr, nullptr, nullptr), SQLITE_OK)
      << "the half-done table outlived the restore";
  sqlite3_close(db);
}

// A crash after Alembic committed part of a step's path (SQLite: one
// revision done, the next one's DDL maybe half there): the step's backup
// puts it back at its start and the step runs again, to the end; without a
// backup to go back to, a person looks (nothing is guessed).
TEST_F(EngineTest, SettleBringsAStepCutOffPartWayAlongItsPathToTheEnd) {
  Db("a", {kAge});
  Db("b", {kAge});
  Start(R"(
  - name: prod
    on_failure: leave
    databases:
      - {name: a, url: "sqlite:///a.db"}
      - {name: b, url: "sqlite:///b.db"}
)");
  const int64_t backup_id = BackupBeforeTheCrash("prod/a", {kAge});
  ASSERT_NE(backup_id, 0);
  // Alembic committed b5d1e7f3a033 (orders), then died inside the next one.
  for (const char* db : {"a", "b"}) {
    Sql(absl::StrCat(dir_, "/", db, ".db"),
        "CREATE TABLE orders (id INTEGER PRIMARY KEY); "
        "INSERT INTO alembic_version VALUES ('b5d1e7f3a033'); "
        "CREATE TABLE half_done (x INTEGER)");
  }
  Rollout crashed = Crashed("r-mid", "prod", "a", "alembic");
  crashed.stages[0].max_failures = 1;  // b's failure does not stop a
  crashed.steps[0].backup_id = backup_id;
  RolloutStep no_backup = crashed.steps[0];
  no_backup.index = 1;
  no_backup.database = "b";
  no_backup.backup_id = 0;
  crashed.steps.push_back(no_backup);
  ASSERT_TRUE(store_->SaveRollout(crashed).ok());
  engine_->Stop();
  engine_.reset();
  StartEngine();
  ASSERT_TRUE(WaitFor("r-mid", "failed"));  // b failed; within max_failures, a went on
  std::vector<std::string> messages;
  absl::StatusOr<std::vector<RolloutEvent>> events = store_->Events("r-mid", 0, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  for (const RolloutEvent& e : *events) messages.push_back(e.message);
  EXPECT_THAT(messages, ::testing::Contains(
                            HasSubstr(absl::StrCat("cut off at [", kAge,
                                                   ", b5d1e7f3a033] on its path; restored from "
                                                   "its backup to [",
                                                   kAge, "]; will retry"))));
  absl::StatusOr<Rollout> r = engine_->Get("r-mid");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(NameOf(Step(*r, "a").state), "succeeded");
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kHead));
  EXPECT_EQ(NameOf(Step(*r, "b").state), "failed");
  EXPECT_THAT(Step(*r, "b").error,
              HasSubstr("and has no backup to go back to (its DDL is not transactional)"));
  EXPECT_THAT(Rows(dir_ + "/b.db"), ElementsAre(kAge, "b5d1e7f3a033"));  // left as it was
}

// A reapply (down, then up again) cut off by a crash: its rows cannot say
// how far it got (they may already read as its start and end), so Settle
// puts the backup back whatever they say, and the step runs again.
TEST_F(EngineTest, SettleRestoresAReapplyCutOffMidwayAndRunsItAgain) {
  Db("a", {kHead});
  Start(R"(
  - name: prod
    on_failure: leave
    databases: [{name: a, url: "sqlite:///a.db"}]
)");
  const int64_t backup_id = BackupBeforeTheCrash("prod/a", {kHead});
  ASSERT_NE(backup_id, 0);
  // Down and most of the way up again: the rows already read as the start.
  Sql(dir_ + "/a.db", "CREATE TABLE half_done (x INTEGER)");
  Rollout crashed = Crashed("r-again", "prod", "a", "alembic");
  crashed.kind = "reapply";
  crashed.target = kHead;
  crashed.steps[0].from = crashed.steps[0].expected = {kHead};
  crashed.steps[0].path = {kHead, kHead};
  crashed.steps[0].backup_id = backup_id;
  ASSERT_TRUE(store_->SaveRollout(crashed).ok());
  engine_->Stop();
  engine_.reset();
  StartEngine();
  ASSERT_TRUE(WaitFor("r-again", "succeeded")) << engine_->Get("r-again")->reason;
  std::vector<std::string> messages;
  absl::StatusOr<std::vector<RolloutEvent>> events = store_->Events("r-again", 0, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  for (const RolloutEvent& e : *events) messages.push_back(e.message);
  EXPECT_THAT(
      messages,
      ::testing::Contains(HasSubstr("a reapply the restart cut off; restored from its backup to")));
  EXPECT_THAT(alembic_.downgrades(), ElementsAre(absl::StrCat("a to ", kHead, "-1")));
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kHead));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(std::string(dir_ + "/a.db").c_str(), &db), SQLITE_OK);
  EXPECT_NE(sqlite3_exec(db, "SELECT x FROM half_done", nullptr, nullptr, nullptr), SQLITE_OK)
      << "the half-done table outlived the restore";
  sqlite3_close(db);
}

// `lockstep downgrade ENV/DB --to REV`: one database, a backup first; then
// `lockstep restore` puts that backup back (with --yes, as the database
// changed since), taking a safety backup of what it held, and a restore
// of that safety backup without --yes is refused with nothing written.
TEST_F(EngineTest, DowngradeWithABackupThenRestoreIt) {
  Db("a", {kAge});
  Start(R"(
  - name: prod
    databases: [{name: a, url: "sqlite:///a.db"}]
)");
  clock_.Advance(absl::Hours(24));  // backups are stamped on the engine's clock, not the wall's
  absl::StatusOr<Rollout> down = engine_->Downgrade("prod", "a", kUsers, "oncall");
  ASSERT_TRUE(down.ok()) << down.status();
  ASSERT_TRUE(WaitFor(down->id, "succeeded")) << engine_->Get(down->id)->reason;
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kUsers));
  Rollout r = *engine_->Get(down->id);
  EXPECT_EQ(r.kind, "downgrade");
  const int64_t backup_id = Step(r, "a").backup_id;
  ASSERT_NE(backup_id, 0);
  absl::StatusOr<std::vector<Backup>> backups = engine_->Backups("prod", "a", 10);
  ASSERT_TRUE(backups.ok()) << backups.status();
  ASSERT_EQ(backups->size(), 1u);
  EXPECT_THAT((*backups)[0].revisions, ElementsAre(kAge));
  EXPECT_GE((*backups)[0].created_at, clock_.Now() - absl::Minutes(1));

  absl::StatusOr<RestoreResult> refused = engine_->Restore(backup_id, "oncall", false);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kUsers));
  absl::StatusOr<RestoreResult> restored = engine_->Restore(backup_id, "oncall", true);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(restored->changed);
  EXPECT_THAT(restored->revisions, ElementsAre(kAge));
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kAge));
  EXPECT_EQ(restored->restored.restored_by, "oncall");
  EXPECT_EQ(restored->safety.safety_for, backup_id);
  EXPECT_THAT(restored->safety.revisions, ElementsAre(kUsers));
  // Undo it: the safety backup, refused without --yes (the database changed).
  absl::StatusOr<RestoreResult> undo = engine_->Restore(restored->safety.id, "oncall", false);
  EXPECT_EQ(undo.status().code(), absl::StatusCode::kFailedPrecondition) << undo.status();
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kAge));
}

// In an environment whose approval policy holds changes, a restore is a
// one-step rollout of kind "restore" that waits for its approvals (four
// eyes: not the requester's own), then puts the backup back after a safety
// backup; a restore that would be refused at once is refused before anyone
// is asked.
TEST_F(EngineTest, ARestoreFollowsItsEnvironmentsApprovalPolicy) {
  Db("a", {kAge});
  Start(R"(
  - name: prod
    approval: {required: true, approvals: 2, distinct_from_requester: true}
    databases: [{name: a, url: "sqlite:///a.db"}]
)");
  absl::StatusOr<Rollout> down = engine_->Downgrade("prod", "a", kUsers, "oncall");
  ASSERT_TRUE(down.ok()) << down.status();
  ASSERT_TRUE(WaitFor(down->id, "awaiting_approval"));
  ASSERT_TRUE(engine_->Approve(down->id, "dave").ok());
  ASSERT_TRUE(engine_->Approve(down->id, "erin").ok());
  ASSERT_TRUE(WaitFor(down->id, "succeeded")) << engine_->Get(down->id)->reason;
  const int64_t backup_id = Step(*engine_->Get(down->id), "a").backup_id;
  ASSERT_NE(backup_id, 0);

  // The database changed since the backup: refused now without --yes.
  absl::StatusOr<Rollout> refused = engine_->RequestRestore(backup_id, "oncall", false);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("changed since backup"));

  absl::StatusOr<Rollout> restore = engine_->RequestRestore(backup_id, "oncall", true);
  ASSERT_TRUE(restore.ok()) << restore.status();
  EXPECT_EQ(restore->kind, "restore");
  EXPECT_EQ(restore->target, absl::StrCat("backup ", backup_id));
  ASSERT_TRUE(WaitFor(restore->id, "awaiting_approval"));
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kUsers));  // nothing restored yet
  EXPECT_EQ(engine_->Approve(restore->id, "oncall").code(), absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(engine_->Approve(restore->id, "dave").ok());
  EXPECT_EQ(StateOf(restore->id), "awaiting_approval");
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kUsers));
  ASSERT_TRUE(engine_->Approve(restore->id, "erin").ok());
  ASSERT_TRUE(WaitFor(restore->id, "succeeded")) << engine_->Get(restore->id)->reason;
  EXPECT_THAT(Rows(dir_ + "/a.db"), ElementsAre(kAge));
  Rollout done = *engine_->Get(restore->id);
  EXPECT_EQ(done.stages[0].approved_by, "dave, erin");
  EXPECT_THAT(done.reason, HasSubstr("prod/a now holds"));
  EXPECT_THAT(done.reason, HasSubstr(kAge));
  const RolloutStep& step = Step(done, "a");
  ASSERT_NE(step.backup_id, 0);  // the safety backup: restoring it undoes this
  absl::StatusOr<Backup> safety = store_->GetBackup(step.backup_id);
  ASSERT_TRUE(safety.ok()) << safety.status();
  EXPECT_EQ(safety->safety_for, backup_id);
  EXPECT_THAT(safety->revisions, ElementsAre(kUsers));
  absl::StatusOr<Backup> restored = store_->GetBackup(backup_id);
  EXPECT_EQ(restored->restored_by, "oncall");
}

// One clock: a change the reconciler records is as old as the engine's
// clock says. (With the wall clock in the reconciler and a fake one a year
// behind in the engine, every change lay in the engine's future and the
// promotion soak never ended.)
TEST_F(EngineTest, APromotionSoakIsMeasuredOnTheEnginesClock) {
  clock_.Advance(-absl::Hours(24 * 365));
  StartDevThenProd();
  ASSERT_TRUE(reconciler_->Refresh().ok());
  Sql(dir_ + "/dev.db", absl::StrCat("UPDATE alembic_version SET version_num = '", kHead, "'"));
  ASSERT_TRUE(reconciler_->Refresh().ok());  // dev reached heads: a change, seen now
  RolloutRequest req;
  req.environments = {"prod"};
  auto has_promotion = [](const RolloutPlan& plan) {
    for (const PlanProblem& p : plan.problems) {
      if (p.code == "promotion") return true;
    }
    return false;
  };
  absl::StatusOr<RolloutPlan> plan = engine_->Plan(req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(has_promotion(*plan));  // dev has soaked 0 of its 10m
  clock_.Advance(absl::Minutes(11));
  plan = engine_->Plan(req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(has_promotion(*plan)) << plan->BlockingStatus();
}

}  // namespace
}  // namespace lockstep::daemon
