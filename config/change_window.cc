#include "config/change_window.h"

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace lockstep::config {
namespace {

constexpr int kDay = 24 * 60;
constexpr int kWeek = 7 * kDay;
constexpr std::array<const char*, 7> kDays = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

// "Mon" -> 0 ... "Sun" -> 6; -1 when not a day.
int DayIndex(absl::string_view word) {
  const std::string w = absl::AsciiStrToLower(word);
  for (size_t i = 0; i < kDays.size(); ++i) {
    if (w.size() >= 3 && absl::string_view(kDays[i]) == absl::string_view(w).substr(0, 3)) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

// "09:30" -> 570; "24:00" -> 1440; -1 when not a time.
int Minutes(absl::string_view text) {
  std::pair<absl::string_view, absl::string_view> hm = absl::StrSplit(text, ':');
  int h = 0, m = 0;
  if (hm.first.size() != 2 || hm.second.size() != 2 || !absl::SimpleAtoi(hm.first, &h) ||
      !absl::SimpleAtoi(hm.second, &m) || h < 0 || m < 0 || m > 59 || h > 24 ||
      (h == 24 && m != 0)) {
    return -1;
  }
  return h * 60 + m;
}

// "Mon-Thu", "Sat,Sun", "Fri", "daily" -> day indexes; empty when bad.
std::vector<int> Days(absl::string_view text) {
  std::vector<int> out;
  if (absl::AsciiStrToLower(text) == "daily") return {0, 1, 2, 3, 4, 5, 6};
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::pair<absl::string_view, absl::string_view> range = absl::StrSplit(part, '-');
    int from = DayIndex(range.first);
    int to = range.second.empty() ? from : DayIndex(range.second);
    if (from < 0 || to < 0) return {};
    for (int d = from;; d = (d + 1) % 7) {
      out.push_back(d);
      if (d == to) break;
    }
  }
  return out;
}

// Minute of the week of `t` in `zone`.
int MinuteOfWeek(absl::Time t, absl::TimeZone zone) {
  const absl::CivilMinute m = absl::ToCivilMinute(t, zone);
  const int weekday = (static_cast<int>(absl::GetWeekday(absl::CivilDay(m))) + 7) % 7;  // Mon = 0
  return weekday * kDay + m.hour() * 60 + m.minute();
}

}  // namespace

std::string ChangeWindow::Describe() const {
  return absl::StrCat(kind == Kind::kDeny ? "deny " : "allow ", schedule, " (", timezone, ")");
}

absl::StatusOr<ChangeWindow> ParseChangeWindow(ChangeWindow::Kind kind, const std::string& schedule,
                                               const std::string& timezone) {
  ChangeWindow w;
  w.kind = kind;
  w.schedule = schedule;
  w.timezone = timezone.empty() ? "UTC" : timezone;
  if (!absl::LoadTimeZone(w.timezone, &w.zone)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown time zone '", w.timezone, "' (an IANA name, e.g. Europe/Berlin)"));
  }
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read schedule '", schedule,
                     "': expected DAY HH:MM-DAY HH:MM (Fri 16:00-Mon 08:00) or DAYS HH:MM-HH:MM "
                     "(Mon-Thu 09:00-17:00, Sat,Sun 00:00-24:00, daily 22:00-06:00)"));
  };
  std::vector<absl::string_view> words =
      absl::StrSplit(schedule, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (words.size() == 3) {  // "Fri 16:00-Mon 08:00": words Fri, 16:00-Mon, 08:00
    std::pair<absl::string_view, absl::string_view> mid = absl::StrSplit(words[1], '-');
    const int d1 = DayIndex(words[0]), d2 = DayIndex(mid.second);
    const int t1 = Minutes(mid.first), t2 = Minutes(words[2]);
    if (d1 < 0 || d2 < 0 || t1 < 0 || t2 < 0 || words[0].size() > 9) return bad();
    const int start = d1 * kDay + t1;
    int end = d2 * kDay + t2;
    if (end <= start) end += kWeek;
    w.spans.push_back({start, end});
    return w;
  }
  if (words.size() != 2) return bad();
  std::vector<int> days = Days(words[0]);
  std::pair<absl::string_view, absl::string_view> times = absl::StrSplit(words[1], '-');
  const int t1 = Minutes(times.first), t2 = Minutes(times.second);
  if (days.empty() || t1 < 0 || t2 < 0 || t1 == t2) return bad();
  for (int d : days) {
    const int start = d * kDay + t1;
    const int end = d * kDay + t2 + (t2 < t1 ? kDay : 0);  // past midnight: into the next day
    w.spans.push_back({start, end});
  }
  return w;
}

bool Inside(const ChangeWindow& w, absl::Time t) {
  const int m = MinuteOfWeek(t, w.zone);
  for (const auto& [start, end] : w.spans) {
    if ((m >= start && m < end) || (m + kWeek >= start && m + kWeek < end)) return true;
  }
  return false;
}

bool WindowsOpen(const std::vector<ChangeWindow>& windows, absl::Time t,
                 const ChangeWindow** closed_by) {
  const ChangeWindow* first_allow = nullptr;
  bool allowed = true;
  for (const ChangeWindow& w : windows) {
    if (w.kind == ChangeWindow::Kind::kDeny && Inside(w, t)) {
      if (closed_by) *closed_by = &w;
      return false;
    }
    if (w.kind == ChangeWindow::Kind::kAllow) {
      if (!first_allow) {
        first_allow = &w;
        allowed = false;
      }
      allowed = allowed || Inside(w, t);
    }
  }
  if (!allowed && closed_by) *closed_by = first_allow;
  return allowed;
}

absl::Time NextOpen(const std::vector<ChangeWindow>& windows, absl::Time t) {
  if (WindowsOpen(windows, t)) return t;
  // Every window edge is on a minute: the first open minute is found by
  // walking minutes (8 days of them at most; time zones' shifts included).
  absl::Time m = absl::FromUnixSeconds((absl::ToUnixSeconds(t) / 60 + 1) * 60);
  for (int i = 0; i < 8 * kDay; ++i, m += absl::Minutes(1)) {
    if (WindowsOpen(windows, m)) return m;
  }
  return absl::InfiniteFuture();
}

}  // namespace lockstep::config
