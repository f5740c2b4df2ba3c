#include "daemon/model/utf8.h"

#include <gtest/gtest.h>

namespace lockstep::daemon {
namespace {

TEST(Utf8Test, ValidTextIsKept) {
  for (const char* s : {"", "abc", "h\xc3\xa9llo", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xef\xbf\xbd"}) {
    EXPECT_TRUE(IsValidUtf8(s)) << s;
    EXPECT_EQ(ValidUtf8(s), s);
  }
}

TEST(Utf8Test, InvalidBytesBecomeReplacementCharacters) {
  EXPECT_EQ(ValidUtf8("caf\xe9"), "caf\xef\xbf\xbd");         // Latin-1
  EXPECT_EQ(ValidUtf8("a\xc3"), "a\xef\xbf\xbd");             // cut inside é
  EXPECT_EQ(ValidUtf8("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");  // overlong '/'
  EXPECT_EQ(ValidUtf8("\xed\xa0\x80"),                          // a surrogate
            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(ValidUtf8("\xf4\x90\x80\x80x"),  // past U+10FFFF
            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx");
  for (const char* s : {"caf\xe9", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xff"}) {
    EXPECT_FALSE(IsValidUtf8(s)) << s;
    EXPECT_TRUE(IsValidUtf8(ValidUtf8(s)));
  }
}

TEST(Utf8Test, CutNeverSplitsACharacter) {
  const std::string s = "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";  // h é € 😀: 1+2+3+4 bytes
  EXPECT_EQ(CutUtf8(s, 100), s);
  EXPECT_EQ(CutUtf8(s, 1), "h");
  EXPECT_EQ(CutUtf8(s, 2), "h");
  EXPECT_EQ(CutUtf8(s, 3), "h\xc3\xa9");
  EXPECT_EQ(CutUtf8(s, 5), "h\xc3\xa9");
  EXPECT_EQ(CutUtf8(s, 6), "h\xc3\xa9\xe2\x82\xac");
  EXPECT_EQ(CutUtf8(s, 9), "h\xc3\xa9\xe2\x82\xac");
  for (size_t n = 0; n <= s.size(); ++n) {
    EXPECT_TRUE(IsValidUtf8(CutUtf8(s, n))) << n;
    EXPECT_TRUE(IsValidUtf8(CutUtf8Front(s, n))) << n;
    EXPECT_LE(CutUtf8Front(s, n).size(), n);
  }
  EXPECT_EQ(CutUtf8Front(s, 4), "\xf0\x9f\x98\x80");
  EXPECT_EQ(CutUtf8Front(s, 6), "\xf0\x9f\x98\x80");
  EXPECT_EQ(CutUtf8Front(s, 7), "\xe2\x82\xac\xf0\x9f\x98\x80");
}

TEST(Utf8Test, LogSafeLinesCannotBeForged) {
  EXPECT_EQ(LogSafe("approved by alice"), "approved by alice");
  EXPECT_EQ(LogSafe("bob\n2026-12-06 10:00:00.000 info rollout r-1 approved by root"),
            "bob\n    2026-12-06 10:00:00.000 info rollout r-1 approved by root");
  EXPECT_EQ(LogSafe("a\rb\x1b[31mc\x7f"), "a\\x0db\\x1b[31mc\\x7f");
  EXPECT_EQ(LogSafe("caf\xe9\tx"), "caf\xef\xbf\xbd\tx");
}

}  // namespace
}  // namespace lockstep::daemon
