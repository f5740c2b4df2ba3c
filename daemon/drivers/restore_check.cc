#include "daemon/drivers/restore_check.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <limits>
#include <map>
#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "daemon/process/process.h"

namespace lockstep::daemon {
namespace {

using TableCounts = std::map<std::string, int64_t>;

std::string VersionRowsText(const std::vector<std::string>& rows) {
  return rows.empty() ? "none" : absl::StrJoin(rows, ",");
}

std::string SqliteQuote(const std::string& name) {
  return absl::StrCat("\"", absl::StrReplaceAll(name, {{"\"", "\"\""}}), "\"");
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
    out[n] = db.execAndGet(absl::StrCat("SELECT COUNT(*) FROM ", SqliteQuote(n))).getInt64();
  }
  return out;
}

TableCounts PostgresCounts(const config::DatabaseUrl& url, absl::Duration connect_timeout,
                           absl::Duration timeout) {
  pqxx::connection c(absl::StrCat(url.LibpqConninfo(), " connect_timeout=",
                                  std::max<int64_t>(2, absl::ToInt64Seconds(connect_timeout)),
                                  " application_name=lockstepd-restore-check"));
  pqxx::read_transaction tx(c);
  // COUNT(*) reads every row: bounded like the restore it precedes (0, no
  // bound, past what statement_timeout can hold).
  const int64_t ms = absl::ToInt64Milliseconds(timeout);
  tx.exec(absl::StrCat("SET LOCAL statement_timeout = ",
                       ms > std::numeric_limits<int32_t>::max() ? 0 : std::max<int64_t>(1, ms)));
  // Ordinary tables only: what pg_dump writes a COPY block for.
  pqxx::result tables = tx.exec(R"sql(
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%')sql");
  TableCounts out;
  for (const auto& row : tables) {
    const std::string name = row[0].as<std::string>();
    out[name] = tx.exec(absl::StrCat("SELECT COUNT(*) FROM ", name))[0][0].as<int64_t>();
  }
  return out;
}

// Counts the rows of each COPY block `pg_restore --data-only` prints: one
// line per row (COPY's text format escapes newlines inside values) up to
// the "\." that ends the block.
class CopyCounter {
 public:
  void Line(const std::string& line) {
    if (!table_.empty()) {
      if (line == "\\.") {
        table_.clear();
      } else {
        ++counts_[table_];
      }
      return;
    }
    if (!absl::StartsWith(line, "COPY ")) return;
    size_t end = line.find(" (");
    if (end == std::string::npos) end = line.find(" FROM stdin;");
    if (end == std::string::npos) return;
    table_ = line.substr(5, end - 5);
    counts_[table_];  // an empty table is still a table
  }
  const TableCounts& counts() const { return counts_; }

 private:
  std::string table_;  // inside this table's COPY block, when not empty
  TableCounts counts_;
};

absl::StatusOr<TableCounts> PostgresBackupCounts(const Backup& backup, absl::Duration timeout) {
  ProcessSpec spec;
  spec.argv = {"pg_restore", "--data-only", "--file=-", backup.path};
  spec.timeout = timeout;
  CopyCounter counter;
  ProcessResult r =
      RunProcess(spec, nullptr, nullptr, [&](const std::string& l) { counter.Line(l); });
  if (!r.ok()) {
    // The output is mostly the backup's data: only its end says why.
    const std::string tail =
        r.output.size() > 500 ? r.output.substr(r.output.size() - 500) : r.output;
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read backup ", backup.id, ": pg_restore ", r.Describe(), ": ", tail));
  }
  return counter.counts();
}

std::string CountText(int64_t n, bool now) {
  if (n < 0) return now ? "not there now" : "not in the backup";
  return now ? absl::StrCat(n, n == 1 ? " row now" : " rows now")
             : absl::StrCat(n, " in the backup");
}

}  // namespace

std::vector<std::string> BackupComparison::Describe() const {
  std::vector<std::string> out;
  if (rows_now != rows_in_backup) {
    out.push_back(absl::StrCat("version rows: ", VersionRowsText(rows_now), " now, ",
                               VersionRowsText(rows_in_backup), " in the backup"));
  }
  for (const TableCountDiff& t : tables) {
    out.push_back(absl::StrCat(t.table, ": ", CountText(t.rows_now, true), ", ",
                               CountText(t.rows_in_backup, false)));
  }
  if (unchanged_tables > 0) {
    out.push_back(absl::StrCat(unchanged_tables,
                               unchanged_tables == 1 ? " other table has" : " other tables have",
                               " as many rows as in the backup"));
  }
  return out;
}

absl::StatusOr<BackupComparison> CompareWithBackup(const Backup& backup,
                                                   const config::DatabaseUrl& url,
                                                   std::vector<std::string> rows_now,
                                                   absl::Duration connect_timeout,
                                                   absl::Duration timeout) {
  BackupComparison out;
  out.rows_now = std::move(rows_now);
  out.rows_in_backup = backup.revisions;
  std::sort(out.rows_now.begin(), out.rows_now.end());
  std::sort(out.rows_in_backup.begin(), out.rows_in_backup.end());
  TableCounts now, then;
  const std::string name = absl::StrCat(backup.environment, "/", backup.database);
  if (url.dialect == config::Dialect::kSqlite) {
    try {
      now = SqliteCounts(url.database);
      then = SqliteCounts(backup.path);
    } catch (const std::exception& e) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot compare ", name, " with backup ", backup.id, ": ", e.what()));
    }
  } else {
    try {
      now = PostgresCounts(url, connect_timeout, timeout);
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("cannot count the rows of ", name, "'s tables: ", e.what()));
    }
    absl::StatusOr<TableCounts> counted = PostgresBackupCounts(backup, timeout);
    if (!counted.ok()) return counted.status();
    then = *std::move(counted);
  }
  // Both maps are sorted by name: walk them together.
  auto a = now.begin();
  auto b = then.begin();
  while (a != now.end() || b != then.end()) {
    TableCountDiff d;
    if (b == then.end() || (a != now.end() && a->first < b->first)) {
      d = {a->first, a->second, -1};
      ++a;
    } else if (a == now.end() || b->first < a->first) {
      d = {b->first, -1, b->second};
      ++b;
    } else {
      d = {a->first, a->second, b->second};
      ++a;
      ++b;
    }
    if (d.rows_now == d.rows_in_backup) {
      ++out.unchanged_tables;
    } else {
      out.tables.push_back(std::move(d));
    }
  }
  return out;
}

}  // namespace lockstep::daemon
