#include "client/cli_args.h"

#include <gtest/gtest.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace lockstep::client {
namespace {

absl::StatusOr<CliArgs> Parse(std::vector<std::string> args) {
  std::vector<char*> argv = {const_cast<char*>("lockstep")};
  for (std::string& a : args) argv.push_back(a.data());
  return ParseCliArgs(static_cast<int>(argv.size()), argv.data());
}

std::string Error(std::vector<std::string> args) {
  absl::StatusOr<CliArgs> a = Parse(std::move(args));
  EXPECT_FALSE(a.ok());
  if (a.ok()) return "";
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(a.status().message());
}

TEST(CliArgsTest, GlobalOptionsBeforeAndAfterTheCommand) {
  auto a = Parse({"-c", "x.ini", "history", "-r", "a:b", "--verbose", "-o", "json"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "history");
  EXPECT_EQ(*a->Option("config"), "x.ini");
  EXPECT_EQ(*a->Option("rev-range"), "a:b");
  EXPECT_EQ(*a->Option("output"), "json");
  EXPECT_TRUE(a->Flag("verbose"));
  EXPECT_FALSE(a->Flag("resolve-dependencies"));
  EXPECT_FALSE(a->help);

  a = Parse({"heads", "--scripts", "dir", "-n", "second", "--server", "h:1", "-v",
             "--resolve-dependencies"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a->Option("scripts"), "dir");
  EXPECT_EQ(*a->Option("name"), "second");
  EXPECT_EQ(*a->Option("server"), "h:1");
  EXPECT_TRUE(a->Flag("verbose"));
  EXPECT_TRUE(a->Flag("resolve-dependencies"));
  EXPECT_TRUE(a->positional.empty());

  a = Parse({"--server=h:2", "-v", "status", "prod", "--check"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "status");
  EXPECT_EQ(*a->Option("server"), "h:2");
  EXPECT_EQ(a->positional, std::vector<std::string>{"prod"});
  EXPECT_TRUE(a->Flag("check"));
}

TEST(CliArgsTest, InlineValuesAndRelativeRevisions) {
  auto a = Parse({"--config=y.ini", "show", "-1"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a->Option("config"), "y.ini");
  ASSERT_EQ(a->positional.size(), 1u);
  EXPECT_EQ(a->positional[0], "-1");  // a relative revision, not an option
  a = Parse({"history", "--rev-range=-2:", "-cz.ini"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a->Option("rev-range"), "-2:");
  EXPECT_EQ(*a->Option("config"), "z.ini");
  a = Parse({"history", "-r", "-3:"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a->Option("rev-range"), "-3:");
  a = Parse({"show", "--", "--weird"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->positional[0], "--weird");
}

TEST(CliArgsTest, ACommandNameAsAnArgument) {
  auto a = Parse({"show", "heads"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "show");
  EXPECT_EQ(a->positional, std::vector<std::string>{"heads"});
  a = Parse({"path", "heads", "--from", "a,b", "--downgrade"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->positional, std::vector<std::string>{"heads"});
  EXPECT_EQ(*a->Option("from"), "a,b");
  EXPECT_TRUE(a->Flag("downgrade"));
}

TEST(CliArgsTest, EveryCommandsOwnOptions) {
  auto a = Parse({"rollout", "--to", "heads", "--env", "a,b", "--db", "x", "--override-promotion",
                  "--allow-lint", "empty-upgrade", "--wait", "--actor", "carol"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a->Option("to"), "heads");
  EXPECT_EQ(*a->Option("env"), "a,b");
  EXPECT_EQ(*a->Option("db"), "x");
  EXPECT_EQ(*a->Option("allow-lint"), "empty-upgrade");
  EXPECT_EQ(*a->Option("actor"), "carol");
  EXPECT_TRUE(a->Flag("override-promotion"));
  EXPECT_TRUE(a->Flag("wait"));
  EXPECT_FALSE(a->Flag("watch"));

  a = Parse({"rollout", "r-1"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->positional, std::vector<std::string>{"r-1"});

  a = Parse({"restore", "4", "--yes", "--actor", "alice"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->positional, std::vector<std::string>{"4"});
  EXPECT_TRUE(a->Flag("yes"));
  EXPECT_EQ(*a->Option("actor"), "alice");

  a = Parse({"downgrade", "prod/app", "--to", "ae10"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a->Option("to"), "ae10");

  a = Parse({"stamp", "prod/app", "ae10", "--force", "--reason", "restored by hand"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->positional, (std::vector<std::string>{"prod/app", "ae10"}));
  EXPECT_TRUE(a->Flag("force"));
  EXPECT_EQ(*a->Option("reason"), "restored by hand");
  EXPECT_FALSE(Parse({"stamp", "prod/app"}).ok());  // REV is required

  for (const char* limited : {"rollouts", "backups"}) {
    a = Parse({limited, "--limit", "5"});
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(*a->Option("limit"), "5");
  }
  for (const char* control : {"approve", "pause", "resume", "abort"}) {
    a = Parse({control, "r-1", "--actor", "oncall"});
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->command, control);
    EXPECT_EQ(*a->Option("actor"), "oncall");
  }
  // The last value given wins, as before.
  a = Parse({"plan", "--to", "a", "--to", "b"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a->Option("to"), "b");
}

TEST(CliArgsTest, AnOptionOfAnotherCommandNamesBoth) {
  EXPECT_EQ(Error({"heads", "--to", "x"}),
            "heads does not take option '--to' (lockstep heads --help)");
  EXPECT_EQ(Error({"status", "--yes"}),
            "status does not take option '--yes' (lockstep status --help)");
  EXPECT_EQ(Error({"plan", "--watch"}),
            "plan does not take option '--watch' (lockstep plan --help)");
  EXPECT_EQ(Error({"heads", "--bogus"}), "heads: unknown option '--bogus' (lockstep heads --help)");
  EXPECT_EQ(Error({"heads", "-x"}), "heads: unknown option '-x' (lockstep heads --help)");
  EXPECT_EQ(Error({"--bogus", "heads"}), "heads: unknown option '--bogus' (lockstep heads --help)");
  EXPECT_EQ(Error({"--bogus"}), "unknown option '--bogus' (lockstep --help)");
  EXPECT_EQ(Error({"--to", "x", "rollout"}),
            "option '--to' belongs after the command: lockstep rollout --to");
}

TEST(CliArgsTest, OtherUsageErrors) {
  EXPECT_EQ(Error({"frobnicate"}), "unknown command 'frobnicate' (lockstep --help)");
  EXPECT_EQ(Error({"heads", "extra"}),
            "heads: unexpected argument 'extra' (lockstep heads --help)");
  EXPECT_EQ(Error({"show", "a", "b"}), "show: unexpected argument 'b' (lockstep show --help)");
  EXPECT_TRUE(absl::StrContains(Error({"show"}), "REV is required")) << Error({"show"});
  EXPECT_TRUE(absl::StrContains(Error({"downgrade", "prod/app"}), "--to is required"));
  EXPECT_TRUE(absl::StartsWith(Error({"heads", "-c"}), "heads: "));
  EXPECT_TRUE(absl::StrContains(Error({"heads", "-c"}), "--config"));
  EXPECT_EQ(Error({"heads", "--verbose=1"}),
            "heads: option '--verbose' takes no value (lockstep heads --help)");
}

TEST(CliArgsTest, HelpWherever) {
  auto a = Parse({"--help"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->help);
  EXPECT_EQ(a->command, "");
  for (std::vector<std::string> args : {std::vector<std::string>{"rollout", "--help"},
                                        {"-h", "rollout"},
                                        {"help", "rollout"},
                                        {"-c", "x.ini", "rollout", "-h"}}) {
    a = Parse(args);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(a->help);
    EXPECT_EQ(a->command, "rollout");
  }
  a = Parse({"show", "--help"});  // before its required REV is checked
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->help);
  EXPECT_EQ(Error({"help", "frobnicate"}), "unknown command 'frobnicate' (lockstep --help)");
}

TEST(CliArgsTest, HelpListsEveryOptionOfTheCommand) {
  const std::string rollout = HelpText("rollout");
  for (const char* o : {"--to REV", "--env", "--db", "--override-promotion", "--allow-lint",
                        "--actor NAME", "--watch", "--wait", "ID",
                        // and the global ones an online command reads
                        "-o, --output FORMAT", "--server ADDR", "--token-file FILE",
                        "-v, --verbose", "-h, --help"}) {
    EXPECT_TRUE(absl::StrContains(rollout, o)) << o << " missing from\n" << rollout;
  }
  // Its own options first, then the connection's, then every command's;
  // the project's are an offline command's, not shown here.
  EXPECT_LT(rollout.find("--to REV "), rollout.find("Connection options"));
  EXPECT_LT(rollout.find("Connection options"), rollout.find("Options of every command"));
  for (const char* o : {"-c, --config FILE", "--scripts DIR", "--inventory", "-n, --name"}) {
    EXPECT_FALSE(absl::StrContains(rollout, o)) << o << " in\n" << rollout;
  }
  const std::string heads = HelpText("heads");
  for (const char* o : {"-c, --config FILE", "--scripts DIR", "--inventory FILE",
                        "-n, --name SECTION", "-o, --output FORMAT"}) {
    EXPECT_TRUE(absl::StrContains(heads, o)) << o << " missing from\n" << heads;
  }
  EXPECT_FALSE(absl::StrContains(heads, "--server")) << heads;
  EXPECT_TRUE(absl::StartsWith(rollout, "usage: lockstep rollout [ID] [--to REV]")) << rollout;
  EXPECT_TRUE(absl::StrContains(HelpText("history"), "-r, --rev-range START:END"));
  EXPECT_TRUE(
      absl::StrContains(HelpText("downgrade"), "usage: lockstep downgrade ENV/NAME --to REV"));
  EXPECT_EQ(HelpText("frobnicate"), "");
}

// A default the help shows is the one the parser fills in: plan's --to is
// heads; rollout's --to has none (a rollout is refused without it), and its
// help does not claim one.
TEST(CliArgsTest, DefaultsComeFromTheDefinitionsHelpShows) {
  auto plan = Parse({"plan"});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->Option("to").value_or("none"), "heads");
  EXPECT_TRUE(absl::StrContains(HelpText("plan"), "(default: heads)")) << HelpText("plan");
  auto rollout = Parse({"rollout"});
  ASSERT_TRUE(rollout.ok()) << rollout.status();
  EXPECT_FALSE(rollout->Option("to").has_value());
  EXPECT_FALSE(absl::StrContains(HelpText("rollout"), "(default: heads)")) << HelpText("rollout");
  EXPECT_TRUE(absl::StrContains(HelpText("rollout"), "required to start one"));
  auto watch = Parse({"watch", "r-1"});
  ASSERT_TRUE(watch.ok()) << watch.status();
  EXPECT_EQ(watch->Option("retry-for").value_or("none"), "60s");
  EXPECT_TRUE(absl::StrContains(HelpText("watch"), "(default: 60s)")) << HelpText("watch");
}

TEST(CliArgsTest, OverviewListsEveryCommandThenGlobalOptionsThenExitCodes) {
  const std::string help = HelpText("");
  for (const char* line :
       {"  heads [--resolve-dependencies]", "  history [-r START:END]", "  show REV", "  lint",
        "  path TARGET [--from R1,R2] [--downgrade]", "  status [ENV] [--check]", "  db ENV/NAME",
        "  refresh", "  watch ID", "  rollouts [--limit N]", "  approve ID [--actor NAME]",
        "  downgrade ENV/NAME --to REV [--actor NAME]", "  backups [ENV[/NAME]] [--limit N]",
        "  restore ID [--yes] [--actor NAME]"}) {
    EXPECT_TRUE(absl::StrContains(help, line)) << line << " missing from\n" << help;
  }
  EXPECT_FALSE(absl::StrContains(help, "  help"));
  const size_t commands = help.find("Offline commands");
  const size_t options = help.find("Project options");
  EXPECT_LT(options, help.find("Connection options"));
  EXPECT_LT(help.find("Connection options"), help.find("Options of every command"));
  const size_t exits = help.find("Exit codes");
  EXPECT_LT(commands, options);
  EXPECT_LT(options, exits);
  EXPECT_NE(exits, std::string::npos);
  for (absl::string_view line : absl::StrSplit(help, '\n')) {
    EXPECT_LE(line.size(), 79u) << line;
  }
}

}  // namespace
}  // namespace lockstep::client
