// The SQLite driver. All SQLite::Exception stop here.
#include "daemon/drivers/sqlite_driver.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <SQLiteCpp/Backup.h>
#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "daemon/drivers/backup_files.h"
#include "daemon/drivers/sqlite_lock.h"

namespace lockstep::daemon {
namespace {

std::string QuoteIdent(absl::string_view s) {
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\"", "\"\""}}), "\"");
}

// Copies one SQLite database into another (created if missing) with the
// online backup API.
void SqliteCopy(const std::string& from, const std::string& to) {
  SQLite::Database src(from, SQLite::OPEN_READONLY, 10000);
  SQLite::Database dst(to, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, 10000);
  SQLite::Backup backup(dst, src);
  backup.executeStep();
}

// Every table's row count; SQLite's own tables (sqlite_sequence, ...) are
// bookkeeping, not data.
TableCounts SqliteCounts(const std::string& path) {
  SQLite::Database db(path, SQLite::OPEN_READONLY, 10000);
  std::vector<std::string> names;
  SQLite::Statement q(db,
                      "SELECT name FROM sqlite_master WHERE type = 'table' "
                      "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'");
  while (q.executeStep()) names.push_back(q.getColumn(0).getString());
  TableCounts out;
  for (const std::string& n : names) {
    out[n] = db.execAndGet(absl::StrCat("SELECT COUNT(*) FROM ", QuoteIdent(n))).getInt64();
  }
  return out;
}

// Holds the flock until destroyed.
class SqliteLock : public DatabaseLock {
 public:
  explicit SqliteLock(std::unique_ptr<SqliteFileLock> file) : file_(std::move(file)) {}
  bool created() const override { return file_->created(); }

 private:
  std::unique_ptr<SqliteFileLock> file_;
};

class SqliteDriver : public Driver {
 public:
  explicit SqliteDriver(const ReaderOptions& o) : options_(o) {}

  config::Dialect dialect() const override { return config::Dialect::kSqlite; }

  absl::StatusOr<std::unique_ptr<DatabaseLock>> Lock(const VersionTarget& target,
                                                     const config::DatabaseUrl& url,
                                                     absl::Duration /*connect_timeout*/,
                                                     IfMissing if_missing) override {
    absl::StatusOr<std::unique_ptr<SqliteFileLock>> file = SqliteFileLock::Acquire(
        url.database, if_missing == IfMissing::kCreate ? SqliteFileLock::IfMissing::kCreate
                                                       : SqliteFileLock::IfMissing::kRefuse);
    if (absl::IsAborted(file.status())) {
      return absl::FailedPreconditionError(
          absl::StrCat(target.name, " is locked by another rollout or lockstepd (",
                       file.status().message(), ")"));
    }
    if (!file.ok()) {
      return absl::Status(file.status().code(),
                          absl::StrCat("cannot lock ", target.name, ": ", file.status().message()));
    }
    return std::make_unique<SqliteLock>(*std::move(file));
  }

  absl::StatusOr<Backup> TakeBackup(const VersionTarget& target, const config::DatabaseUrl& url,
                                    const std::string& dir, absl::Duration /*timeout*/) override {
    absl::StatusOr<BackupFile> file = NewBackupFile(target.name, dir, ".sqlite3", absl::Now());
    if (!file.ok()) return file.status();
    try {
      SqliteCopy(url.database, file->partial);
    } catch (const std::exception& e) {
      ::unlink(file->partial.c_str());
      return absl::FailedPreconditionError(
          absl::StrCat("backup of ", target.name, " failed: ", e.what()));
    }
    return FinishBackupFile(*std::move(file));
  }

  absl::Status RestoreBackup(const Backup& backup, const config::DatabaseUrl& url,
                             absl::Duration /*timeout*/) override {
    try {
      SqliteCopy(backup.path, url.database);
    } catch (const std::exception& e) {
      return absl::FailedPreconditionError(absl::StrCat(
          "restore of ", backup.environment, "/", backup.database, " failed: ", e.what()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<BackupComparison> CompareWithBackup(const Backup& backup,
                                                     const config::DatabaseUrl& url,
                                                     std::vector<std::string> rows_now,
                                                     absl::Duration /*connect_timeout*/,
                                                     absl::Duration /*timeout*/) override {
    TableCounts now, then;
    try {
      now = SqliteCounts(url.database);
      then = SqliteCounts(backup.path);
    } catch (const std::exception& e) {
      return absl::FailedPreconditionError(absl::StrCat("cannot compare ", backup.environment, "/",
                                                        backup.database, " with backup ",
                                                        backup.id, ": ", e.what()));
    }
    return CompareTableCounts(backup, std::move(rows_now), now, then);
  }

  bool RepairAfterKilledWriter(const VersionTarget& target, const VersionRead& read) override {
    // A read-only connection cannot roll a hot journal back (ReadRows says
    // "readonly database"); any writer does, on its first statement.
    if (read.outcome != ReadOutcome::kError ||
        read.error.find("readonly database") == std::string::npos) {
      return false;
    }
    try {
      SQLite::Database db(target.url.database, SQLite::OPEN_READWRITE, 10000);
      db.exec("SELECT count(*) FROM sqlite_master");
    } catch (const std::exception&) {
      return false;
    }
    return true;
  }

  std::vector<std::string> ChildEnvironment(const config::DatabaseUrl&) const override {
    return {};  // the file's path is in the URL Alembic gets
  }

 protected:
  VersionRead ReadRows(const VersionTarget& t) override {
    VersionRead out;
    const std::string& path = t.url.database;
    if (path == ":memory:") {
      out.outcome = ReadOutcome::kError;
      out.error = "an in-memory SQLite database (sqlite://) cannot be watched";
      return out;
    }
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      out.outcome = errno == EACCES ? ReadOutcome::kPermissionDenied : ReadOutcome::kUnreachable;
      out.error = absl::StrCat(path, ": ", std::strerror(errno));
      return out;
    }
    if (::access(path.c_str(), R_OK) != 0) {
      out.outcome = ReadOutcome::kPermissionDenied;
      out.error = absl::StrCat(path, ": ", std::strerror(errno));
      return out;
    }
    try {
      SQLite::Database db(path, SQLite::OPEN_READONLY,
                          static_cast<int>(absl::ToInt64Milliseconds(options_.statement_timeout)));
      std::string table = QuoteIdent(t.version_table);
      if (!t.version_table_schema.empty()) {
        table = absl::StrCat(QuoteIdent(t.version_table_schema), ".", table);
      }
      SQLite::Statement q(db, absl::StrCat("SELECT version_num FROM ", table));
      while (q.executeStep()) out.rows.push_back(q.getColumn(0).getString());
      out.outcome = ReadOutcome::kOk;
    } catch (const SQLite::Exception& e) {
      out.error = absl::StrCat(path, ": ", e.what());
      int code = e.getErrorCode() & 0xff;
      if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
        out.outcome = ReadOutcome::kTimedOut;
        out.error = absl::StrCat(path, ": timed out after ",
                                 absl::FormatDuration(options_.statement_timeout),
                                 " waiting for a lock (", e.what(), ")");
      } else if (absl::StrContains(e.what(), "no such table")) {
        out.outcome = ReadOutcome::kNoTable;
      } else if (code == SQLITE_PERM || code == SQLITE_AUTH) {
        out.outcome = ReadOutcome::kPermissionDenied;
      } else if (code == SQLITE_CANTOPEN) {
        out.outcome = ReadOutcome::kUnreachable;
      } else if (e.getExtendedErrorCode() == SQLITE_READONLY_ROLLBACK) {
        out.outcome = ReadOutcome::kError;
        out.error = absl::StrCat(path, ": attempt to write a readonly database: it has a hot "
                                 "journal (a writer died mid-transaction), which the next "
                                 "writer rolls back");
      } else {
        out.outcome = ReadOutcome::kError;  // e.g. "file is not a database"
      }
    } catch (const std::exception& e) {
      out.outcome = ReadOutcome::kError;
      out.error = absl::StrCat(path, ": ", e.what());
    }
    return out;
  }

 private:
  const ReaderOptions options_;
};

}  // namespace

std::unique_ptr<Driver> MakeSqliteDriver(const ReaderOptions& options) {
  return std::make_unique<SqliteDriver>(options);
}

}  // namespace lockstep::daemon
