// Small helpers shared by the state store's files: how lists and times are
// stored, and the one place SQLiteCpp's exceptions become a Status.
#ifndef LOCKSTEP_DAEMON_STATE_STORE_UTIL_H_
#define LOCKSTEP_DAEMON_STATE_STORE_UTIL_H_

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace lockstep::daemon::store_util {

// Revision lists are stored comma-separated (revision ids never hold commas).
inline std::string Join(const std::vector<std::string>& v) { return absl::StrJoin(v, ","); }
inline std::vector<std::string> Split(const std::string& s) {
  return absl::StrSplit(s, ',', absl::SkipEmpty());
}
// "Never" (InfinitePast) is stored as INT64_MIN and read back as "never".
inline int64_t Micros(absl::Time t) {
  return t == absl::InfinitePast() ? INT64_MIN : absl::ToUnixMicros(t);
}
inline absl::Time FromMicros(int64_t us) {
  return us == INT64_MIN ? absl::InfinitePast() : absl::FromUnixMicros(us);
}

template <typename F>
absl::Status Guard(const char* what, F&& f) {
  try {
    f();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("state store: ", what, ": ", e.what()));
  }
}

}  // namespace lockstep::daemon::store_util

#endif  // LOCKSTEP_DAEMON_STATE_STORE_UTIL_H_
