#include "config/change_window.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lockstep::config {
namespace {

using ::testing::HasSubstr;

// `text` ("2026-12-11 16:00") in `zone`.
absl::Time At(const std::string& text, const std::string& zone = "UTC") {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone(zone, &tz));
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime("%Y-%m-%d %H:%M", text, tz, &t, &err)) << err;
  return t;
}

// 2026-12-11 is a Friday.
TEST(ChangeWindowTest, AWeekendFreezeInItsTimeZone) {
  auto w = ParseChangeWindow(ChangeWindow::Kind::kDeny, "Fri 16:00-Mon 08:00", "Europe/Berlin");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE(Inside(*w, At("2026-12-11 15:59", "Europe/Berlin")));
  EXPECT_TRUE(Inside(*w, At("2026-12-11 16:00", "Europe/Berlin")));
  EXPECT_TRUE(Inside(*w, At("2026-12-12 12:00", "Europe/Berlin")));
  EXPECT_TRUE(Inside(*w, At("2026-12-14 07:59", "Europe/Berlin")));
  EXPECT_FALSE(Inside(*w, At("2026-12-14 08:00", "Europe/Berlin")));
  // 15:30 UTC on that Friday is 16:30 in Berlin: frozen.
  EXPECT_TRUE(Inside(*w, At("2026-12-11 15:30")));
  EXPECT_EQ(NextOpen({*w}, At("2026-12-12 12:00", "Europe/Berlin")),
            At("2026-12-14 08:00", "Europe/Berlin"));
  const std::vector<ChangeWindow> windows = {*w};  // `by` points into it
  const ChangeWindow* by = nullptr;
  EXPECT_FALSE(WindowsOpen(windows, At("2026-12-12 12:00"), &by));
  ASSERT_NE(by, nullptr);
  EXPECT_EQ(by->Describe(), "deny Fri 16:00-Mon 08:00 (Europe/Berlin)");
}

TEST(ChangeWindowTest, AllowWindowsAndNightsPastMidnight) {
  auto office = ParseChangeWindow(ChangeWindow::Kind::kAllow, "Mon-Thu 09:00-17:00", "");
  auto night = ParseChangeWindow(ChangeWindow::Kind::kDeny, "daily 22:00-06:00", "UTC");
  ASSERT_TRUE(office.ok()) << office.status();
  ASSERT_TRUE(night.ok()) << night.status();
  EXPECT_TRUE(WindowsOpen({*office}, At("2026-12-08 10:00")));   // Tuesday
  EXPECT_FALSE(WindowsOpen({*office}, At("2026-12-11 10:00")));  // Friday
  EXPECT_EQ(NextOpen({*office}, At("2026-12-11 10:00")), At("2026-12-14 09:00"));
  EXPECT_TRUE(Inside(*night, At("2026-12-08 23:00")));
  EXPECT_TRUE(Inside(*night, At("2026-12-09 05:59")));
  EXPECT_FALSE(Inside(*night, At("2026-12-09 06:00")));
  EXPECT_TRUE(Inside(*night, At("2026-12-14 01:00")));  // Sunday's night wraps into Monday
  EXPECT_EQ(NextOpen({*night}, At("2026-12-08 23:00")), At("2026-12-09 06:00"));
  // Both: open only inside office hours and outside the night.
  EXPECT_EQ(NextOpen({*office, *night}, At("2026-12-08 18:00")), At("2026-12-09 09:00"));
  auto weekend = ParseChangeWindow(ChangeWindow::Kind::kDeny, "Sat,Sun 00:00-24:00", "UTC");
  ASSERT_TRUE(weekend.ok()) << weekend.status();
  EXPECT_TRUE(Inside(*weekend, At("2026-12-13 23:59")));
  EXPECT_FALSE(Inside(*weekend, At("2026-12-14 00:00")));
}

TEST(ChangeWindowTest, BadSchedulesAndZonesAreNamed) {
  for (const char* s : {"Fri 16:00", "Xyz 10:00-11:00", "Mon 25:00-26:00", "Mon 10:00-10:00",
                        "Fri 16:00-Mon", "whenever"}) {
    auto w = ParseChangeWindow(ChangeWindow::Kind::kDeny, s, "UTC");
    ASSERT_FALSE(w.ok()) << s;
    EXPECT_THAT(w.status().message(), HasSubstr(absl::StrCat("cannot read schedule '", s, "'")));
  }
  auto zone = ParseChangeWindow(ChangeWindow::Kind::kDeny, "daily 01:00-02:00", "Mars/Base");
  ASSERT_FALSE(zone.ok());
  EXPECT_THAT(zone.status().message(), HasSubstr("unknown time zone 'Mars/Base'"));
}

}  // namespace
}  // namespace lockstep::config
