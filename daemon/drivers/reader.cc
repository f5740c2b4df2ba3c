#include <glob.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "daemon/drivers/driver.h"
#include "daemon/drivers/postgres_driver.h"
#include "daemon/drivers/version_reader.h"

namespace lockstep::daemon {

absl::string_view ReadOutcomeName(ReadOutcome outcome) {
  switch (outcome) {
    case ReadOutcome::kOk: return "ok";
    case ReadOutcome::kNoTable: return "no_table";
    case ReadOutcome::kUnreachable: return "unreachable";
    case ReadOutcome::kPermissionDenied: return "permission_denied";
    case ReadOutcome::kTimedOut: return "timed_out";
    case ReadOutcome::kError: return "error";
  }
  return "error";
}

std::unique_ptr<VersionReader> MakeReader(const ReaderOptions& options) {
  return MakeDrivers(options);
}

absl::StatusOr<std::vector<std::string>> DiscoverDatabases(const config::DiscoverRule& rule,
                                                           const ReaderOptions& options) {
  if (!rule.glob.empty()) {
    glob_t g;
    std::vector<std::string> out;
    int rc = ::glob(rule.glob.c_str(), 0, nullptr, &g);
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    }
    ::globfree(&g);
    if (rc != 0 && rc != GLOB_NOMATCH) {
      return absl::UnavailableError(absl::StrCat("cannot expand ", rule.glob));
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  config::DatabaseUrl url = *rule.url;
  absl::StatusOr<std::optional<std::string>> pw =
      config::ResolvePassword(url, rule.secret, absl::StrCat(rule.environment, " discover"));
  if (!pw.ok()) return pw.status();
  url.password = *pw;
  return ListPostgresDatabases(url, rule.query, options);
}

}  // namespace lockstep::daemon
