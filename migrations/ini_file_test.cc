#include "migrations/ini_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lockstep::migrations {
namespace {

using ::testing::HasSubstr;

TEST(IniFileTest, InterpolationContinuationAndComments) {
  auto ini = IniFile::Parse(R"(# comment
[alembic]
Script_Location = %(here)s/migrations
; another comment
version_locations = %(here)s/a
    %(here)s/b

    %(here)s/c
pct = 100%%
)", "alembic.ini");
  ASSERT_TRUE(ini.ok()) << ini.status();
  ini->SetDefault("here", "/p");
  EXPECT_EQ(**ini->Get("alembic", "script_location"), "/p/migrations");
  EXPECT_EQ(**ini->Get("alembic", "version_locations"), "/p/a\n/p/b\n\n/p/c");
  EXPECT_EQ(**ini->Get("alembic", "pct"), "100%");
  EXPECT_FALSE(ini->Get("alembic", "missing")->has_value());
}

TEST(IniFileTest, ErrorsNameTheLine) {
  EXPECT_THAT(IniFile::Parse("[a]\nx = 1\nx = 2\n", "f.ini").status().message(),
              HasSubstr("f.ini:3: option 'x' in section 'a' already exists"));
  EXPECT_THAT(IniFile::Parse("x = 1\n", "f.ini").status().message(),
              HasSubstr("f.ini:1: an option comes before any [section] header"));
  EXPECT_THAT(IniFile::Parse("[a]\njunk\n", "f.ini").status().message(),
              HasSubstr("f.ini:2: expected 'key = value'"));
  auto ini = IniFile::Parse("[a]\nx = %(nope)s\n", "f.ini");
  ASSERT_TRUE(ini.ok());
  EXPECT_THAT(ini->Get("a", "x").status().message(), HasSubstr("bad interpolation variable 'nope'"));
}

TEST(IniFileTest, DefaultSectionAndColonDelimiter) {
  auto ini = IniFile::Parse("[DEFAULT]\nroot: /srv\n[alembic]\nscript_location: %(root)s/m\n", "f");
  ASSERT_TRUE(ini.ok());
  EXPECT_EQ(**ini->Get("alembic", "script_location"), "/srv/m");
}

}  // namespace
}  // namespace lockstep::migrations
