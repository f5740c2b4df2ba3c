// SQLite version reads through SQLiteCpp. All SQLite::Exception stop here.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "daemon/drivers/version_reader.h"

namespace lockstep::daemon {
namespace {

std::string QuoteIdent(absl::string_view s) {
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\"", "\"\""}}), "\"");
}

class SqliteReader : public VersionReader {
 public:
  explicit SqliteReader(const ReaderOptions& o) : options_(o) {}

 private:
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

  const ReaderOptions options_;
};

}  // namespace

std::unique_ptr<VersionReader> MakeSqliteReader(const ReaderOptions& options) {
  return std::make_unique<SqliteReader>(options);
}

}  // namespace lockstep::daemon
