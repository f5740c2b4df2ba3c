#include "client/cli_args.h"

#include <gtest/gtest.h>

#include <vector>

namespace lockstep::client {
namespace {

absl::StatusOr<CliArgs> Parse(std::vector<std::string> args) {
  std::vector<char*> argv = {const_cast<char*>("lockstep")};
  for (std::string& a : args) argv.push_back(a.data());
  return ParseCliArgs(static_cast<int>(argv.size()), argv.data());
}

TEST(CliArgsTest, OptionsBeforeAndAfterTheCommand) {
  auto a = Parse({"-c", "x.ini", "history", "-r", "a:b", "--verbose", "-o", "json"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "history");
  EXPECT_EQ(*a->Option("config"), "x.ini");
  EXPECT_EQ(*a->Option("rev-range"), "a:b");
  EXPECT_EQ(*a->Option("output"), "json");
  EXPECT_TRUE(a->Flag("verbose"));
  EXPECT_FALSE(a->Flag("resolve-dependencies"));
}

TEST(CliArgsTest, InlineValuesAndRelativeRevisions) {
  auto a = Parse({"--config=y.ini", "show", "-1"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a->Option("config"), "y.ini");
  ASSERT_EQ(a->positional.size(), 1u);
  EXPECT_EQ(a->positional[0], "-1");  // a relative revision, not an option
  a = Parse({"history", "--rev-range=-2:", "-cz.ini"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a->Option("rev-range"), "-2:");
  EXPECT_EQ(*a->Option("config"), "z.ini");
  a = Parse({"show", "--", "--weird"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->positional[0], "--weird");
}

TEST(CliArgsTest, Errors) {
  EXPECT_EQ(Parse({"heads", "--bogus"}).status().message(), "unknown option '--bogus'");
  EXPECT_EQ(Parse({"heads", "-x"}).status().message(), "unknown option '-x'");
  EXPECT_EQ(Parse({"heads", "-c"}).status().message(), "option '--config' needs a value");
  EXPECT_EQ(Parse({"heads", "--verbose=1"}).status().message(), "option '--verbose' takes no value");
}

}  // namespace
}  // namespace lockstep::client
