#include <algorithm>

#include "absl/strings/str_cat.h"
#include "daemon/drivers/driver.h"
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

}  // namespace lockstep::daemon
