#include "daemon/rollout/alembic_output.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/model/utf8.h"

namespace lockstep::daemon {
namespace {

constexpr size_t kMaxLength = 300;

// Lines that follow the error but say nothing about it: SQLAlchemy's footer
// and statement echo, PostgreSQL's position marker, traceback frames.
bool IsNoise(absl::string_view line) {
  if (absl::StripAsciiWhitespace(line).empty()) return true;
  if (line[0] == ' ' || line[0] == '\t') return true;
  for (absl::string_view prefix :
       {"(Background on this error", "[SQL:", "[parameters:", "LINE ", "Traceback ("}) {
    if (absl::StartsWith(line, prefix)) return true;
  }
  return false;
}

// "KeyError: ...", "sqlite3.OperationalError: ...", "alembic.util.exc.CommandError: ...":
// a dotted Python name, a colon, a space.
bool IsExceptionLine(absl::string_view line) {
  size_t colon = line.find(": ");
  if (colon == 0 || colon == absl::string_view::npos) return false;
  for (char c : line.substr(0, colon)) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.') return false;
  }
  return !absl::ascii_isdigit(static_cast<unsigned char>(line[0]));
}

// "sqlalchemy.exc.X: (driver.Error) message" -> "driver.Error: message".
std::string Unwrap(absl::string_view line) {
  if (absl::StartsWith(line, "sqlalchemy.")) {
    absl::string_view rest = line.substr(line.find(": ") + 2);
    if (absl::ConsumePrefix(&rest, "(")) {
      size_t close = rest.find(") ");
      if (close != absl::string_view::npos) {
        return absl::StrCat(rest.substr(0, close), ": ", rest.substr(close + 2));
      }
    }
  }
  return std::string(line);
}

std::string Shorten(std::string line) {
  if (line.size() > kMaxLength) line = absl::StrCat(std::string(CutUtf8(line, kMaxLength)), "…");
  return line;
}

}  // namespace

std::string ErrorLine(absl::string_view output) {
  std::vector<absl::string_view> lines = absl::StrSplit(output, '\n');
  std::string fallback;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    absl::string_view line = absl::StripTrailingAsciiWhitespace(*it);
    if (IsNoise(line)) continue;
    if (absl::ConsumePrefix(&line, "FAILED: ")) return Shorten(std::string(line));
    if (IsExceptionLine(line)) return Shorten(Unwrap(line));
    // Alembic's own log lines ("INFO  [alembic.runtime.migration] ...") are
    // progress, not the error; anything else printed last may be (a
    // SystemExit message from env.py).
    if (fallback.empty() && !absl::StartsWith(line, "INFO ") && !absl::StartsWith(line, "ERROR [")) {
      fallback = std::string(line);
    }
  }
  return Shorten(fallback);
}

std::string AlembicFailure(const ProcessResult& run) {
  std::string why = run.start_error.empty() ? ErrorLine(run.output) : "";
  return why.empty() ? run.Describe() : absl::StrCat(run.Describe(), ": ", why);
}

std::vector<std::string> CurrentRevisions(absl::string_view output,
                                          const migrations::RevisionGraph& graph) {
  std::vector<std::string> revisions;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    const size_t space = line.find(' ');
    absl::string_view id = line.substr(0, space);
    absl::string_view rest = space == absl::string_view::npos ? "" : line.substr(space + 1);
    // What follows the id is only Alembic's markers: " (head)", " (branchpoint)" ...
    bool markers = true;
    for (absl::string_view m : absl::StrSplit(rest, ' ', absl::SkipEmpty())) {
      markers = markers && (m.front() == '(' || m.back() == ')');
    }
    std::optional<int> node = graph.Find(id);
    if (markers && node && graph.id(*node) == id) revisions.emplace_back(id);
  }
  std::sort(revisions.begin(), revisions.end());
  return revisions;
}

std::string RowsText(const std::vector<std::string>& rows) {
  return rows.empty() ? "[] (no version rows)" : absl::StrCat("[", absl::StrJoin(rows, ", "), "]");
}

}  // namespace lockstep::daemon
