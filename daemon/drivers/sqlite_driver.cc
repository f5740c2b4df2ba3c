// The SQLite driver. All SQLite::Exception stop here.
#include "daemon/drivers/sqlite_driver.h"

#include <SQLiteCpp/Backup.h>
#include <SQLiteCpp/SQLiteCpp.h>
#include <glob.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "daemon/drivers/backup_files.h"
#include "daemon/drivers/sqlite_lock.h"
#include "daemon/drivers/sqlite_schema.h"

namespace lockstep::daemon {
namespace {

// A tenant's name from its file: the file name without .db, .sqlite or .sqlite3.
std::string FileStem(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  for (const char* ext : {".sqlite3", ".sqlite", ".db"}) {
    if (absl::EndsWith(base, ext)) return base.substr(0, base.size() - strlen(ext));
  }
  return base;
}

std::string QuoteIdent(absl::string_view s) {
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\"", "\"\""}}), "\"");
}

// The target's version table, quoted for SQL (schema-qualified when set).
std::string VersionTableSql(const VersionTarget& t) {
  std::string table = QuoteIdent(t.version_table);
  if (!t.version_table_schema.empty()) {
    table = absl::StrCat(QuoteIdent(t.version_table_schema), ".", table);
  }
  return table;
}

// A digest of what a SQLite database holds: its schema and every row of
// every table, in storage order (a copy made by the backup API has the same
// pages, so the same order). Two databases with the same digest hold the
// same data, whatever their file headers or WAL state say.
std::string ContentDigest(SQLite::Database& db) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  auto add = [&](const void* data, size_t n) {
    const uint64_t size = n;
    EVP_DigestUpdate(ctx.get(), &size, sizeof size);  // lengths keep values apart
    EVP_DigestUpdate(ctx.get(), data, n);
  };
  std::vector<std::string> tables;
  SQLite::Statement schema(
      db, "SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name");
  while (schema.executeStep()) {
    for (int i = 0; i < 4; ++i) {
      const std::string v = schema.getColumn(i).getString();
      add(v.data(), v.size());
    }
    if (schema.getColumn(0).getString() == "table") tables.push_back(schema.getColumn(1));
  }
  for (const std::string& t : tables) {
    if (absl::StartsWith(t, "sqlite_")) continue;  // SQLite's own bookkeeping
    SQLite::Statement rows(db, absl::StrCat("SELECT * FROM ", QuoteIdent(t)));
    while (rows.executeStep()) {
      for (int i = 0; i < rows.getColumnCount(); ++i) {
        SQLite::Column c = rows.getColumn(i);
        const int type = c.getType();
        add(&type, sizeof type);
        add(c.getBlob(), static_cast<size_t>(c.getBytes()));
      }
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

// Copies one SQLite database into another (created if missing) with the
// online backup API, through SQLite's own locking: while another connection
// (an application's transaction, a hand-run Alembic) holds a lock on either
// side, it waits, up to `lock_wait`, then fails; it never reports a copy it
// did not make (it steps until SQLITE_DONE).
//
// `check_copy` (a backup: `to` is lockstepd's own new file): the copy's
// page count and content digest must then be the source's, both read in
// the one read transaction the copy was made in, so applications writing to
// the source meanwhile cannot make them differ. A restore writes into the
// live database, where an application may write right after; the caller
// re-reads its version rows instead.
absl::Status SqliteCopy(const std::string& from, const std::string& to, absl::Duration lock_wait,
                        bool check_copy) {
  // Each attempt waits briefly in SQLite's busy handler; the loop below
  // keeps the whole wait within lock_wait.
  const int busy_ms =
      static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(lock_wait), 0, 100));
  SQLite::Database src(from, SQLite::OPEN_READONLY, busy_ms);
  SQLite::Database dst(to, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, busy_ms);
  std::optional<SQLite::Transaction> snapshot;
  if (check_copy) {
    snapshot.emplace(src);  // BEGIN: the copy and the check see one state
    src.execAndGet("SELECT count(*) FROM sqlite_master");  // takes the read lock now
  }
  {
    SQLite::Backup backup(dst, src);
    const absl::Time deadline = absl::Now() + lock_wait;
    while (true) {
      const int rc = backup.executeStep(-1);  // throws on errors but these
      if (rc == SQLITE_DONE) break;
      if (rc == SQLITE_OK) continue;
      // SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock.
      if (absl::Now() >= deadline) {
        return absl::UnavailableError(absl::StrCat(
            "another connection held a lock on ", rc == SQLITE_LOCKED ? from : to, " for ",
            absl::FormatDuration(lock_wait),
            " (server.lock_wait): an application's open transaction or a running Alembic; "
            "nothing was copied"));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  if (!check_copy) return absl::OkStatus();
  const int64_t pages_from = src.execAndGet("PRAGMA page_count").getInt64();
  const int64_t pages_to = dst.execAndGet("PRAGMA page_count").getInt64();
  // An empty (0-byte) file is an empty database; its copy gets a header page.
  const bool both_empty = pages_from == 0 && pages_to <= 1;
  if ((pages_from != pages_to && !both_empty) || ContentDigest(src) != ContentDigest(dst)) {
    return absl::DataLossError(absl::StrCat(
        "the copy of ", from, " into ", to, " does not hold what the original holds (",
        pages_to, " pages, not ", pages_from, ", or other content)"));
  }
  return absl::OkStatus();  // the snapshot's read transaction ends (rolled back) here
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
  absl::Status Check() const override { return file_->StillNamesTheLockedFile(); }
  std::vector<std::string> Witness() const override {
    return {absl::StrCat("LOCKSTEP_TARGET_FILE=", file_->device(), ":", file_->inode())};
  }

 private:
  std::unique_ptr<SqliteFileLock> file_;
};

// How a database file and its -wal and -journal companions looked, by
// stat(2): a write to any of them changes its size, mtime or ctime (a copy
// put over the file with its old mtime still moves the ctime, which no one
// can set), a replaced file has a new inode.
struct FileStamp {
  struct One {
    ino_t ino = 0;
    off_t size = -1;  // -1: absent
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const One&) const = default;
  };
  One main, wal, journal;
  bool operator==(const FileStamp&) const = default;

  static One Of(const struct stat& st) {
    return One{st.st_ino, st.st_size,
               static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
               static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec};
  }
  static One Of(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 ? Of(st) : One{};
  }
  int64_t newest_ns() const {
    return std::max({main.mtime_ns, main.ctime_ns, wal.mtime_ns, wal.ctime_ns, journal.mtime_ns,
                     journal.ctime_ns});
  }
};

// Version rows read from SQLite files, kept while the files do not change:
// a pass over 100,000 tenant files that did not change stats them instead
// of opening each. A file changed less than a second before it was read is
// read again next time (file times are as coarse as the kernel's tick, so
// a second write in the same tick may leave them as they were: git's
// "racily clean" index entries, handled the same way).
class SqliteReadCache {
 public:
  std::optional<VersionRead> Find(const std::string& path, const std::string& table,
                                  const FileStamp& stamp) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(path);
    if (it == entries_.end() || it->second.table != table || !(it->second.stamp == stamp) ||
        stamp.newest_ns() >= it->second.read_at_ns - kRacy) {
      return std::nullopt;
    }
    return it->second.read;
  }
  // `read_at_ns`: the wall clock before `stamp` was taken.
  void Keep(const std::string& path, const std::string& table, const FileStamp& stamp,
            int64_t read_at_ns, const VersionRead& read) {
    std::lock_guard<std::mutex> lock(mu_);
    if (read.outcome == ReadOutcome::kOk || read.outcome == ReadOutcome::kNoTable) {
      entries_[path] = Entry{table, stamp, read_at_ns, read};
    } else {
      entries_.erase(path);
    }
  }
  void Forget(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.erase(path);
  }

 private:
  static constexpr int64_t kRacy = 1000000000;  // 1 s
  struct Entry {
    std::string table;
    FileStamp stamp;
    int64_t read_at_ns;
    VersionRead read;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
};

int64_t WallNanos() { return absl::ToUnixNanos(absl::Now()); }

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
    absl::Status copied;
    try {
      copied = SqliteCopy(url.database, file->partial, options_.lock_wait, /*check_copy=*/true);
    } catch (const std::exception& e) {
      copied = absl::UnknownError(e.what());
    }
    if (!copied.ok()) {
      ::unlink(file->partial.c_str());
      return absl::FailedPreconditionError(
          absl::StrCat("backup of ", target.name, " failed: ", copied.message()));
    }
    return FinishBackupFile(*std::move(file));
  }

  absl::Status RestoreBackup(const Backup& backup, const config::DatabaseUrl& url,
                             absl::Duration /*timeout*/) override {
    absl::Status copied;
    try {
      copied = SqliteCopy(backup.path, url.database, options_.lock_wait, /*check_copy=*/false);
    } catch (const std::exception& e) {
      copied = absl::UnknownError(e.what());
    }
    if (!copied.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "restore of ", backup.environment, "/", backup.database, " failed: ", copied.message()));
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

  absl::StatusOr<SchemaSnapshot> ReadSchema(const VersionTarget& t,
                                            const SchemaFilter& filter) override {
    const std::string& path = t.url.database;
    // lockstep's flock (sqlite_lock.h) on the file, before and after the
    // read: held at neither, no step of any lockstepd ran during it.
    std::string locked_by = FlockHolderOf(path);
    try {
      SQLite::Database db(path, SQLite::OPEN_READONLY,
                          static_cast<int>(absl::ToInt64Milliseconds(options_.statement_timeout)));
      // One read transaction: the schema and the version rows at one instant.
      SQLite::Transaction read(db, SQLite::TransactionBehavior::DEFERRED);
      SchemaSnapshot out;
      out.schema = ReadSqliteSchema(db, filter);
      const std::string table = VersionTableSql(t);
      SQLite::Statement exists(
          db, absl::StrCat("SELECT 1 FROM ",
                           t.version_table_schema.empty() ? std::string("main")
                                                          : QuoteIdent(t.version_table_schema),
                           ".sqlite_master WHERE type = 'table' AND name = ?"));
      exists.bind(1, t.version_table);
      if (exists.executeStep()) {
        SQLite::Statement q(db, absl::StrCat("SELECT version_num FROM ", table));
        while (q.executeStep()) out.rows.push_back(q.getColumn(0).getString());
        std::sort(out.rows.begin(), out.rows.end());
      }
      read.commit();
      out.locked_by = locked_by.empty() ? FlockHolderOf(path) : locked_by;
      return out;
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat(path, ": cannot read its schema: ", e.what()));
    }
  }

  bool transactional_ddl() const override {
    return false;  // Alembic: "Will assume non-transactional DDL"
  }

  // A glob's files; each named by its file name without .db/.sqlite/.sqlite3.
  absl::StatusOr<std::vector<Discovered>> Discover(const config::DiscoverRule& rule) override {
    glob_t g;
    std::vector<Discovered> out;
    int rc = ::glob(rule.glob.c_str(), 0, nullptr, &g);
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) {
        Discovered d;
        d.file = g.gl_pathv[i];
        d.name = FileStem(d.file);
        d.url.dialect = config::Dialect::kSqlite;
        d.url.database = d.file;
        out.push_back(std::move(d));
      }
    }
    ::globfree(&g);
    if (rc != 0 && rc != GLOB_NOMATCH) {
      return absl::UnavailableError(absl::StrCat("cannot expand ", rule.glob));
    }
    std::sort(out.begin(), out.end(),
              [](const Discovered& a, const Discovered& b) { return a.file < b.file; });
    return out;
  }

  absl::StatusOr<config::DatabaseUrl> CreateScratch(const config::ProjectConfig&) override {
    std::string dir = (std::filesystem::temp_directory_path() / "lockstep-shadow-XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot create a folder for a scratch database: ", std::strerror(errno)));
    }
    config::DatabaseUrl url;
    url.dialect = config::Dialect::kSqlite;
    url.database = dir + "/shadow.db";
    return url;
  }

  absl::Status DropScratch(const config::ProjectConfig&,
                           const config::DatabaseUrl& scratch) override {
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(scratch.database).parent_path(), ec);
    if (ec) return absl::UnavailableError(absl::StrCat("cannot remove ", scratch.database, ": ", ec.message()));
    return absl::OkStatus();
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
    const int64_t read_at = WallNanos();
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      out.outcome = errno == EACCES ? ReadOutcome::kPermissionDenied : ReadOutcome::kUnreachable;
      out.error = absl::StrCat(path, ": ", std::strerror(errno));
      cache_.Forget(path);
      return out;
    }
    if (::access(path.c_str(), R_OK) != 0) {
      out.outcome = ReadOutcome::kPermissionDenied;
      out.error = absl::StrCat(path, ": ", std::strerror(errno));
      cache_.Forget(path);
      return out;
    }
    const std::string table = VersionTableSql(t);
    const FileStamp stamp{FileStamp::Of(st), FileStamp::Of(path + "-wal"),
                          FileStamp::Of(path + "-journal")};
    if (std::optional<VersionRead> kept = cache_.Find(path, table, stamp)) return *kept;
    ReadFile(path, table, &out);
    cache_.Keep(path, table, stamp, read_at, out);
    return out;
  }

 private:
  void ReadFile(const std::string& path, const std::string& table, VersionRead* result) {
    VersionRead& out = *result;
    try {
      SQLite::Database db(path, SQLite::OPEN_READONLY,
                          static_cast<int>(absl::ToInt64Milliseconds(options_.statement_timeout)));
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
  }

  const ReaderOptions options_;
  SqliteReadCache cache_;
};

}  // namespace

std::unique_ptr<Driver> MakeSqliteDriver(const ReaderOptions& options) {
  return std::make_unique<SqliteDriver>(options);
}

}  // namespace lockstep::daemon
