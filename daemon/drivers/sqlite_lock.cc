#include "daemon/drivers/sqlite_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lockstep::daemon {
namespace {

// The database files this process holds a SqliteFileLock on, by (device,
// inode). Process-wide on purpose: it mirrors a per-process kernel fact (the
// POSIX locks SQLite connections of this process hold, which closing any
// descriptor of the file would drop), so Acquire must not even open a file
// another thread of this process has locked.
struct HeldFiles {
  std::mutex mu;
  std::set<std::pair<dev_t, ino_t>> held;  // guarded by mu
};

HeldFiles& Held() {
  static HeldFiles* held = new HeldFiles();
  return *held;
}

std::string SlurpOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// "pid 1234 (python3)", or who else it may be.
std::string DescribeHolder(dev_t dev, ino_t ino) {
  const pid_t pid = FlockHolderIn(SlurpOrEmpty("/proc/locks"), dev, ino);
  if (pid == 0) return "a process /proc/locks does not show";
  if (pid == ::getpid()) return absl::StrCat("this lockstepd (pid ", pid, ")");
  std::string comm(absl::StripAsciiWhitespace(SlurpOrEmpty(absl::StrCat("/proc/", pid, "/comm"))));
  return absl::StrCat("pid ", pid, comm.empty() ? "" : absl::StrCat(" (", comm, ")"));
}

// Unlocks, then closes. close() alone does not release a flock while a copy
// of the descriptor lives on: a child another thread is starting (clone,
// then exec) holds copies of all of them until its exec, and the lock
// belongs to the open file description they share. LOCK_UN releases it for
// every copy, so the next Acquire of the file does not find it held by
// "this lockstepd".
void ReleaseAndClose(int fd) {
  ::flock(fd, LOCK_UN);
  ::close(fd);
}

absl::Status Unavailable(const std::string& what, const std::string& path) {
  return absl::UnavailableError(
      absl::StrCat("cannot ", what, " ", path, ": ", std::strerror(errno)));
}

// Removes the lock file older lockstepd versions made beside the database,
// unless one of them holds it now. Only a best effort at living with them:
// an older lockstepd does not see the new lock (and makes its file again),
// so a fleet runs one version of lockstepd.
absl::Status RemoveLegacyLockFile(const std::string& path) {
  const std::string legacy = LegacyLockFileOf(path);
  const int fd = ::open(legacy.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return absl::OkStatus();  // none (or not ours to touch)
  absl::Status status;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    struct stat st {};
    ::fstat(fd, &st);
    status = absl::AbortedError(absl::StrCat("flock on ", legacy, " held by ",
                                             DescribeHolder(st.st_dev, st.st_ino),
                                             ": a lockstepd older than this one is working on it"));
    ::close(fd);
  } else {
    ::unlink(legacy.c_str());
    ReleaseAndClose(fd);
  }
  return status;
}

}  // namespace

absl::Status SqliteFileLock::StillNamesTheLockedFile() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    return absl::AbortedError(absl::StrCat(path_, " is gone since lockstep locked it (",
                                           std::strerror(errno), "); nothing was written to it"));
  }
  if (st.st_dev != dev_ || st.st_ino != ino_) {
    return absl::AbortedError(absl::StrCat(
        path_, " was replaced by another file since lockstep locked it; lockstep writes "
               "nothing to the new file (no restore): look at both"));
  }
  return absl::OkStatus();
}

std::string LegacyLockFileOf(const std::string& sqlite_path) {
  return sqlite_path + ".lockstep-lock";
}

pid_t FlockHolderIn(const std::string& proc_locks, dev_t dev, ino_t ino) {
  // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters read
  // "1: -> FLOCK ...". The device is MAJOR:MINOR in hex.
  for (absl::string_view line : absl::StrSplit(proc_locks, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 6 || f[1] != "FLOCK") continue;
    unsigned int major_dev = 0, minor_dev = 0;
    unsigned long inode = 0;  // NOLINT(runtime/int): the kernel prints %lu
    int pid = 0;
    if (std::sscanf(std::string(f[5]).c_str(), "%x:%x:%lu", &major_dev, &minor_dev, &inode) != 3 ||
        std::sscanf(std::string(f[4]).c_str(), "%d", &pid) != 1) {
      continue;
    }
    if (major_dev == major(dev) && minor_dev == minor(dev) && inode == ino && pid > 0) return pid;
  }
  return 0;
}

absl::StatusOr<std::unique_ptr<SqliteFileLock>> SqliteFileLock::Acquire(const std::string& path,
                                                                        IfMissing if_missing) {
  HeldFiles& table = Held();
  std::lock_guard<std::mutex> guard(table.mu);
  // Up to three tries: the file may be replaced or removed between open()
  // and flock(), and a lock on an inode the path no longer names is no lock.
  for (int attempt = 0; attempt < 3; ++attempt) {
    bool created = false;
    int fd = -1;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (errno != ENOENT) return Unavailable("stat", path);
      if (if_missing == IfMissing::kRefuse) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the SQLite file ", path, " does not exist (lockstep does not create it)"));
      }
      fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0 && errno == EEXIST) continue;
      created = fd >= 0;
    } else {
      if (table.held.count({st.st_dev, st.st_ino}) > 0) {
        return absl::AbortedError(
            absl::StrCat("flock on ", path, " held by another rollout in this lockstepd"));
      }
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) continue;
    }
    if (fd < 0) return Unavailable("open", path);
    struct stat locked {};
    if (::fstat(fd, &locked) != 0) {
      absl::Status error = Unavailable("stat", path);
      ::close(fd);
      return error;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      absl::Status error =
          errno == EWOULDBLOCK
              ? absl::AbortedError(absl::StrCat("flock on ", path, " held by ",
                                                DescribeHolder(locked.st_dev, locked.st_ino)))
              : Unavailable("flock", path);
      ::close(fd);  // someone else's file now (even one we created): never removed
      return error;
    }
    struct stat now {};
    if (::stat(path.c_str(), &now) != 0 || now.st_dev != locked.st_dev ||
        now.st_ino != locked.st_ino) {
      ReleaseAndClose(fd);
      continue;
    }
    absl::Status legacy = RemoveLegacyLockFile(path);
    if (!legacy.ok()) {
      if (created) ::unlink(path.c_str());  // still empty, still locked
      ReleaseAndClose(fd);
      return legacy;
    }
    std::unique_ptr<SqliteFileLock> lock(new SqliteFileLock());
    lock->path_ = path;
    lock->fd_ = fd;
    lock->dev_ = locked.st_dev;
    lock->ino_ = locked.st_ino;
    lock->created_ = created;
    table.held.insert({lock->dev_, lock->ino_});
    return lock;
  }
  return absl::UnavailableError(absl::StrCat("cannot lock ", path, ": it kept being replaced"));
}

SqliteFileLock::~SqliteFileLock() {
  if (fd_ < 0) return;
  HeldFiles& table = Held();
  std::lock_guard<std::mutex> guard(table.mu);
  if (created_) {
    // Still empty and still the file at path: nothing was restored into it,
    // so leave the folder as it was. Removed while still locked.
    struct stat st {
    }, now{};
    if (::fstat(fd_, &st) == 0 && st.st_size == 0 && ::stat(path_.c_str(), &now) == 0 &&
        now.st_dev == dev_ && now.st_ino == ino_) {
      ::unlink(path_.c_str());
    }
  }
  ReleaseAndClose(fd_);
  table.held.erase({dev_, ino_});
}

std::string FlockHolderOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  if (FlockHolderIn(SlurpOrEmpty("/proc/locks"), st.st_dev, st.st_ino) == 0) return "";
  return DescribeHolder(st.st_dev, st.st_ino);
}

}  // namespace lockstep::daemon
