#include "daemon/drivers/sqlite_lock.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using IfMissing = SqliteFileLock::IfMissing;

class SqliteLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SQLite::Database db(db_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE alembic_version (version_num TEXT PRIMARY KEY)");
  }
  std::vector<std::string> Files() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(tmp_.path())) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  lockstep::testing::TempDir tmp_{"lockstep-sqlite-lock"};
  std::string db_ = tmp_.path() + "/app.db";
};

TEST_F(SqliteLockTest, LocksTheFileItselfAndLeavesNothingBehind) {
  {
    absl::StatusOr<std::unique_ptr<SqliteFileLock>> lock =
        SqliteFileLock::Acquire(db_, IfMissing::kRefuse);
    ASSERT_TRUE(lock.ok()) << lock.status();
    EXPECT_FALSE((*lock)->created());
    // Another open file description of the same file cannot flock it...
    int fd = ::open(db_.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_NE(::flock(fd, LOCK_EX | LOCK_NB), 0);
    ::close(fd);
    // ...while SQLite's own (fcntl) locks are unaffected.
    SQLite::Database db(db_, SQLite::OPEN_READWRITE);
    db.exec("INSERT INTO alembic_version VALUES ('r1')");
  }
  EXPECT_THAT(Files(), ElementsAre("app.db"));
  int fd = ::open(db_.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);  // released
  ::close(fd);
}

TEST_F(SqliteLockTest, SecondLockInThisProcessIsRefusedWithoutOpeningTheFile) {
  absl::StatusOr<std::unique_ptr<SqliteFileLock>> first =
      SqliteFileLock::Acquire(db_, IfMissing::kRefuse);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<SqliteFileLock>> second =
      SqliteFileLock::Acquire(db_, IfMissing::kRefuse);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(second.status().message(), HasSubstr("held by another rollout in this lockstepd"));
  first->reset();
  EXPECT_TRUE(SqliteFileLock::Acquire(db_, IfMissing::kRefuse).ok());
}

// A child forked by another thread (to run Alembic) holds a copy of every
// descriptor until it execs, the lock's open file description among them.
// Releasing the lock must release it for that copy too, or the next step on
// the database finds it "held by this lockstepd" (a flake seen in CI).
TEST_F(SqliteLockTest, ReleaseHoldsEvenWhileAForkedChildHasTheDescriptor) {
  absl::StatusOr<std::unique_ptr<SqliteFileLock>> lock =
      SqliteFileLock::Acquire(db_, IfMissing::kRefuse);
  ASSERT_TRUE(lock.ok()) << lock.status();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    ::close(ready[1]);  // tells the parent the copy exists
    ::pause();          // holds the copied descriptors until killed
    ::_exit(0);
  }
  ::close(ready[1]);
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 0);
  ::close(ready[0]);
  lock->reset();
  absl::StatusOr<std::unique_ptr<SqliteFileLock>> again =
      SqliteFileLock::Acquire(db_, IfMissing::kRefuse);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_F(SqliteLockTest, HolderInAnotherProcessIsNamed) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int fd = ::open(db_.c_str(), O_RDONLY);
    ::flock(fd, LOCK_EX);
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  char x;
  ASSERT_EQ(::read(ready[0], &x, 1), 1);
  absl::StatusOr<std::unique_ptr<SqliteFileLock>> lock =
      SqliteFileLock::Acquire(db_, IfMissing::kRefuse);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_EQ(lock.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(lock.status().message(),
              HasSubstr(absl::StrCat("flock on ", db_, " held by pid ", child, " (")));
  // Its lock died with it.
  EXPECT_TRUE(SqliteFileLock::Acquire(db_, IfMissing::kRefuse).ok());
}

TEST_F(SqliteLockTest, MissingFileIsRefusedAndNothingIsCreated) {
  const std::string gone = tmp_.path() + "/gone.db";
  absl::StatusOr<std::unique_ptr<SqliteFileLock>> lock =
      SqliteFileLock::Acquire(gone, IfMissing::kRefuse);
  EXPECT_EQ(lock.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(lock.status().message(), HasSubstr(gone + " does not exist"));
  EXPECT_THAT(Files(), ElementsAre("app.db"));
}

TEST_F(SqliteLockTest, MissingFileCreatedForARestoreIsRemovedWhenNothingWasWritten) {
  const std::string gone = tmp_.path() + "/gone.db";
  {
    absl::StatusOr<std::unique_ptr<SqliteFileLock>> lock =
        SqliteFileLock::Acquire(gone, IfMissing::kCreate);
    ASSERT_TRUE(lock.ok()) << lock.status();
    EXPECT_TRUE((*lock)->created());
    EXPECT_THAT(Files(), ElementsAre("app.db", "gone.db"));
  }
  EXPECT_THAT(Files(), ElementsAre("app.db"));
  {
    absl::StatusOr<std::unique_ptr<SqliteFileLock>> lock =
        SqliteFileLock::Acquire(gone, IfMissing::kCreate);
    ASSERT_TRUE(lock.ok()) << lock.status();
    SQLite::Database db(gone, SQLite::OPEN_READWRITE);  // what a restore does
    db.exec("CREATE TABLE alembic_version (version_num TEXT PRIMARY KEY)");
  }
  EXPECT_THAT(Files(), ElementsAre("app.db", "gone.db"));
}

TEST_F(SqliteLockTest, LegacyLockFileIsRemovedUnlessAnOlderLockstepdHoldsIt) {
  const std::string legacy = LegacyLockFileOf(db_);
  EXPECT_EQ(legacy, db_ + ".lockstep-lock");
  std::ofstream(legacy).close();
  int fd = ::open(legacy.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  absl::StatusOr<std::unique_ptr<SqliteFileLock>> lock =
      SqliteFileLock::Acquire(db_, IfMissing::kRefuse);
  EXPECT_EQ(lock.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(lock.status().message(),
              HasSubstr(absl::StrCat("flock on ", legacy, " held by this lockstepd (pid ")));
  EXPECT_THAT(lock.status().message(), HasSubstr("a lockstepd older than this one"));
  EXPECT_THAT(Files(), ElementsAre("app.db", "app.db.lockstep-lock"));
  ::close(fd);

  lock = SqliteFileLock::Acquire(db_, IfMissing::kRefuse);
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_THAT(Files(), ElementsAre("app.db"));
}

TEST(FlockHolderInTest, FindsTheWriterOfThatInodeAndSkipsWaitersAndOtherLocks) {
  const std::string locks =
      "1: POSIX  ADVISORY  WRITE 11 00:2d:77 1073741824 1073741824\n"
      "2: FLOCK  ADVISORY  WRITE 22 00:2d:78 0 EOF\n"
      "2: -> FLOCK  ADVISORY  WRITE 33 00:2d:77 0 EOF\n"
      "3: FLOCK  ADVISORY  WRITE 44 103:02:77 0 EOF\n"
      "4: FLOCK  ADVISORY  WRITE 55 00:2d:77 0 EOF\n";
  EXPECT_EQ(FlockHolderIn(locks, makedev(0, 0x2d), 77), 55);
  EXPECT_EQ(FlockHolderIn(locks, makedev(0x103, 2), 77), 44);
  EXPECT_EQ(FlockHolderIn(locks, makedev(0, 0x2d), 79), 0);
  EXPECT_EQ(FlockHolderIn("", makedev(0, 0x2d), 77), 0);
}

}  // namespace
}  // namespace lockstep::daemon
