#include "daemon/drivers/restore_check.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lockstep::daemon {
namespace {

std::string VersionRowsText(const std::vector<std::string>& rows) {
  return rows.empty() ? "none" : absl::StrJoin(rows, ",");
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

BackupComparison CompareTableCounts(const Backup& backup, std::vector<std::string> rows_now,
                                    const TableCounts& now, const TableCounts& then) {
  BackupComparison out;
  out.rows_now = std::move(rows_now);
  out.rows_in_backup = backup.revisions;
  std::sort(out.rows_now.begin(), out.rows_now.end());
  std::sort(out.rows_in_backup.begin(), out.rows_in_backup.end());
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
