// The lock lockstep holds on a SQLite database while it changes it (a step,
// a restore): flock(LOCK_EX | LOCK_NB) on the database file itself.
//
// Why the file itself: it leaves nothing behind (no "<file>.lockstep-lock"
// beside the database, as lockstep used up to now), and every lockstepd
// finds it whatever its state store is, so two daemons on one database
// exclude each other. flock() locks die with the open file description, so
// a killed lockstepd never leaves a database locked (the descriptor is
// O_CLOEXEC: Alembic children do not inherit it).
//
// Why it does not get in SQLite's way: on Linux, flock() locks and the POSIX
// fcntl() byte-range locks SQLite takes are separate lock types that never
// conflict, so Alembic (or any application) reads and writes the database
// normally while lockstep holds the flock; only another flock() on the file
// is refused. tests/e2e/test_rollout.py runs Alembic on a database whose
// flock is held to prove it. Two caveats:
//   * NFS emulates flock() with a whole-file fcntl() lock, which would block
//     SQLite's own locks. SQLite on NFS is unsafe anyway; do not do it.
//   * POSIX locks belong to the process, and closing any descriptor of a
//     file drops all of them. So this lock never opens a second descriptor
//     on a file this process already holds (the in-process table below), and
//     a lockstepd thread reading the database (the version watcher) while
//     the lock is released may lose its read lock: at worst that read is
//     wrong or fails, and the next poll reads again. Nothing lockstepd
//     writes to a database runs outside the lock.
//
// The file stays the same inode for as long as it is locked: SQLite writes
// in place, and RestoreBackup writes through SQLite's backup API into the
// file, never by renaming another file over it. Acquire checks that the path
// still names the inode it locked, and retries when the file was replaced
// between open() and flock().
#ifndef LOCKSTEP_DAEMON_DRIVERS_SQLITE_LOCK_H_
#define LOCKSTEP_DAEMON_DRIVERS_SQLITE_LOCK_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace lockstep::daemon {

class SqliteFileLock {
 public:
  // What Acquire does when the database file does not exist.
  enum class IfMissing {
    // Refuses (FAILED_PRECONDITION) and creates nothing: a step has nothing
    // to migrate (the plan reports such a database as unreachable).
    kRefuse,
    // Creates the file empty (SQLite reads an empty file as an empty
    // database) and locks it: a restore into a file that is gone. If the file
    // is still empty when the lock is released, it is removed again.
    kCreate,
  };

  // Locks `path` without waiting. ABORTED when something else holds it (the
  // message names the holder when /proc/locks says who: another rollout of
  // this lockstepd, or a pid and its command), or when a lockstepd older than
  // this one holds the file's legacy "<path>.lockstep-lock"; a legacy lock
  // file nobody holds is removed. FAILED_PRECONDITION when the file is
  // missing and `if_missing` is kRefuse. UNAVAILABLE on I/O errors.
  //
  // Thread-safe. Locks are per open file, so a second Acquire of the same
  // file in this process is refused too.
  static absl::StatusOr<std::unique_ptr<SqliteFileLock>> Acquire(const std::string& path,
                                                                 IfMissing if_missing);
  // Releases the lock (and removes the file if Acquire created it and it is
  // still empty).
  ~SqliteFileLock();
  SqliteFileLock(const SqliteFileLock&) = delete;
  SqliteFileLock& operator=(const SqliteFileLock&) = delete;

  // Whether Acquire created the file (it was missing; IfMissing::kCreate).
  bool created() const { return created_; }
  // The file locked.
  dev_t device() const { return dev_; }
  ino_t inode() const { return ino_; }
  // OK while the path still names the file locked (same device and inode);
  // ABORTED when the file was replaced, moved or deleted since.
  absl::Status StillNamesTheLockedFile() const;

 private:
  SqliteFileLock() = default;

  // Constant after construction.
  std::string path_;
  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  bool created_ = false;
};

// The pid holding a flock() on the file (dev, ino) according to the text of
// /proc/locks, or 0 when it lists none (or the holder is in another PID
// namespace). Exposed for tests.
pid_t FlockHolderIn(const std::string& proc_locks, dev_t dev, ino_t ino);

// Who holds a flock() on the file at `path` ("pid 1234 (lockstepd)"), or
// "" when nobody does (or it cannot be stat'ed). Takes no lock itself.
std::string FlockHolderOf(const std::string& path);

// The legacy lock file of a database file, which lockstep no longer makes.
std::string LegacyLockFileOf(const std::string& sqlite_path);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_SQLITE_LOCK_H_
