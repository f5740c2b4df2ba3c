// How lockstep finds the Python of a project's Alembic, and reads what
// Alembic's `current` printed. (The entry point itself runs against the real
// Alembic in tests/e2e/test_env_py.py.)
#include "daemon/rollout/alembic_entry.h"

#include <sys/stat.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon/rollout/alembic_output.h"
#include "migrations/test_util.h"
#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class EntryInterpreterTest : public ::testing::Test {
 protected:
  std::string Script(const std::string& name, const std::string& text) {
    std::string path = tmp_.path() + "/" + name;
    std::ofstream(path) << text;
    ::chmod(path.c_str(), 0755);
    return path;
  }
  static config::ProjectConfig Project(std::vector<std::string> command,
                                       std::string working_dir = "") {
    config::ProjectConfig p;
    p.alembic_command = std::move(command);
    p.working_dir = std::move(working_dir);
    return p;
  }
  lockstep::testing::TempDir tmp_{"lockstep-entry"};
};

TEST_F(EntryInterpreterTest, AVirtualenvLauncherRunsOnItsOwnPython) {
  std::string pip = Script("alembic",
                           "#!/srv/app/.venv/bin/python3\n# -*- coding: utf-8 -*-\nimport re\n"
                           "import sys\nfrom alembic.config import main\nif __name__ == "
                           "'__main__':\n    sys.exit(main())\n");
  EXPECT_THAT(EntryInterpreter(Project({pip})), ElementsAre("/srv/app/.venv/bin/python3"));
  // Relative to the working folder, as the process runner starts it.
  EXPECT_THAT(EntryInterpreter(Project({"./alembic"}, tmp_.path())),
              ElementsAre("/srv/app/.venv/bin/python3"));
}

TEST_F(EntryInterpreterTest, DebiansLauncherAndEnvShebangs) {
  std::string debian = Script(
      "debian-alembic",
      "#!/usr/bin/python3\n# EASY-INSTALL-ENTRY-SCRIPT: 'alembic==1.8.1','console_scripts',"
      "'alembic'\nimport sys\nsys.exit(load_entry_point('alembic==1.8.1', 'console_scripts', "
      "'alembic')())\n");
  EXPECT_THAT(EntryInterpreter(Project({debian})), ElementsAre("/usr/bin/python3"));
  std::string env = Script("env-alembic",
                           "#!/usr/bin/env python3\nfrom alembic.config import main\nmain()\n");
  EXPECT_THAT(EntryInterpreter(Project({env})), ElementsAre("/usr/bin/env", "python3"));
}

TEST_F(EntryInterpreterTest, PythonDashMAlembic) {
  EXPECT_THAT(EntryInterpreter(Project({"/opt/py/bin/python", "-m", "alembic"})),
              ElementsAre("/opt/py/bin/python"));
}

TEST_F(EntryInterpreterTest, WrappersRunAsWritten) {
  std::string sh = Script("wrapper", "#!/bin/sh\nexec /usr/bin/alembic \"$@\"\n");
  EXPECT_THAT(EntryInterpreter(Project({sh})), IsEmpty());
  std::string py = Script("migrate", "#!/usr/bin/python3\nimport subprocess\n");
  EXPECT_THAT(EntryInterpreter(Project({py})), IsEmpty());
  EXPECT_THAT(EntryInterpreter(Project({"poetry", "run", "alembic"})), IsEmpty());
  EXPECT_THAT(EntryInterpreter(Project({tmp_.path() + "/missing"})), IsEmpty());
}

TEST_F(EntryInterpreterTest, TheWarmRunnerTakesProjectPythonFirst) {
  config::ProjectConfig p = Project({"poetry", "run", "alembic"});
  EXPECT_THAT(WarmInterpreter(p), ElementsAre("python3"));
  p.python = "/opt/py/bin/python";
  EXPECT_THAT(WarmInterpreter(p), ElementsAre("/opt/py/bin/python"));
}

TEST(CurrentRevisionsTest, TakesRevisionLinesNotLogLinesOrEnvPyPrints) {
  auto g = migrations::testing::BuildGraph(
      {{"a1", {}}, {"b2", {"a1"}}, {"c3", {"a1"}}, {"head", {"b2", "c3"}}});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(CurrentRevisions("INFO  [alembic.runtime.migration] Context impl SQLiteImpl.\n"
                               "INFO  [alembic.runtime.migration] Will assume non-transactional DDL.\n"
                               "c3 (head)\n"
                               "b2\n"
                               "a1 is what env.py printed\n"
                               "nosuchrev (head)\n",
                               *g),
              ElementsAre("b2", "c3"));
  EXPECT_THAT(CurrentRevisions("head (head) (mergepoint)\n", *g), ElementsAre("head"));
  EXPECT_THAT(CurrentRevisions("INFO  [alembic.runtime.migration] Context impl SQLiteImpl.\n", *g),
              IsEmpty());
}

TEST(CheckCurrentTest, SaysWhichDatabaseEnvPyReaches) {
  auto g = migrations::testing::BuildGraph({{"a1", {}}, {"b2", {"a1"}}});
  ASSERT_TRUE(g.ok()) << g.status();
  ProcessResult run;
  run.exit_code = 0;
  run.output = "b2 (head)\n";
  absl::StatusOr<std::string> same = CheckCurrent(run, "prod/t1", {"b2"}, *g);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(*same, "Alembic's `current` through this runner reports [b2], what prod/t1 holds");
  absl::StatusOr<std::string> other = CheckCurrent(run, "prod/t1", {}, *g);
  EXPECT_EQ(
      other.status().message(),
      "env.py connects to another database than prod/t1 (Alembic's `current` reports [b2], "
      "the database holds [] (no version rows)); nothing was run; see docs/rollouts.md, 'Your "
      "env.py'");
  run.exit_code = 1;
  run.output = "lockstep: env.py connected to sqlite:////x.db, which is not prod/t1\n";
  EXPECT_THAT(std::string(CheckCurrent(run, "prod/t1", {"b2"}, *g).status().message()),
              ::testing::HasSubstr("failed (nothing was run): exit 1: lockstep: env.py connected"));
}

}  // namespace
}  // namespace lockstep::daemon
