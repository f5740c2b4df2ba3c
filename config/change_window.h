// Change windows: when an environment's databases may be migrated.
//
// A window is a weekly schedule in a time zone, either a freeze ("deny":
// no step starts inside it) or an opening ("allow": with any allow window,
// steps start only inside one). Schedules:
//   "Fri 16:00-Mon 08:00"    from one day and time to another (may wrap the week)
//   "Mon-Thu 09:00-17:00"    those days, between those times (17:00-06:00 runs
//   "Sat,Sun 00:00-24:00"    past midnight into the next day); "daily" is Mon-Sun
//
// Example:
//   absl::StatusOr<ChangeWindow> w = ParseChangeWindow(
//       ChangeWindow::Kind::kDeny, "Fri 16:00-Mon 08:00", "Europe/Berlin");
//   bool open = WindowsOpen({*w}, absl::Now());
//   absl::Time next = NextOpen({*w}, absl::Now());  // when steps may start again
#ifndef LOCKSTEP_CONFIG_CHANGE_WINDOW_H_
#define LOCKSTEP_CONFIG_CHANGE_WINDOW_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lockstep::config {

struct ChangeWindow {
  enum class Kind { kAllow, kDeny };
  Kind kind = Kind::kDeny;
  std::string schedule;  // as written
  std::string timezone;  // as written ("UTC" when not given)
  absl::TimeZone zone;
  // Minutes of the week (Monday 00:00 local = 0) it covers: [first, second),
  // second may pass 7 * 1440 (the week wraps).
  std::vector<std::pair<int, int>> spans;

  // "deny Fri 16:00-Mon 08:00 (Europe/Berlin)"
  std::string Describe() const;
};

// The window, or INVALID_ARGUMENT saying what is wrong with the schedule
// or the time zone.
absl::StatusOr<ChangeWindow> ParseChangeWindow(ChangeWindow::Kind kind, const std::string& schedule,
                                               const std::string& timezone);

// Whether `t` is inside `w`.
bool Inside(const ChangeWindow& w, absl::Time t);

// Whether a step may start at `t`: inside no deny window, and inside an
// allow window when there are any. `*closed_by` (when given) is set to the
// window that keeps it closed: an element of `windows`, valid while it is.
bool WindowsOpen(const std::vector<ChangeWindow>& windows, absl::Time t,
                 const ChangeWindow** closed_by = nullptr);

// The first minute at or after `t` when WindowsOpen holds; `t` itself when
// open now; InfiniteFuture when never within the next 8 days.
absl::Time NextOpen(const std::vector<ChangeWindow>& windows, absl::Time t);

}  // namespace lockstep::config

#endif  // LOCKSTEP_CONFIG_CHANGE_WINDOW_H_
