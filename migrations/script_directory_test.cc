#include "migrations/script_directory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "migrations/project.h"
#include "tests/support/temp_dir.h"

namespace lockstep::migrations {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ScriptDirectoryTest : public ::testing::Test {
 protected:
  void Write(const std::string& rel, const std::string& text) {
    fs::path p = fs::path(root_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  void Rev(const std::string& dir, const std::string& id, const std::string& down) {
    Write(dir + "/" + id + "_x.py",
          "revision = '" + id + "'\ndown_revision = " + (down.empty() ? "None" : "'" + down + "'") + "\n");
  }
  std::vector<std::string> LoadedIds(const ScriptLocation& loc) {
    auto loaded = LoadScripts(loc);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    std::vector<std::string> ids;
    if (loaded.ok()) {
      for (const RevisionFile& f : loaded->files) ids.push_back(f.revision);
    }
    return ids;
  }

  lockstep::testing::TempDir tmp_{"lockstep-sd"};
  std::string root_ = tmp_.path();
};

TEST_F(ScriptDirectoryTest, DefaultVersionsFolderSortedAndFiltered) {
  Write("alembic.ini", "[alembic]\nscript_location = %(here)s/mig\n");
  Rev("mig/versions", "bbbb", "aaaa");
  Rev("mig/versions", "aaaa", "");
  Write("mig/versions/__init__.py", "");
  Write("mig/versions/.#lock.py", "junk");
  Write("mig/versions/notes.txt", "junk");
  auto loc = LocateScriptsFromIni(root_ + "/alembic.ini", "/");
  ASSERT_TRUE(loc.ok()) << loc.status();
  EXPECT_EQ(loc->script_dir, root_ + "/mig");
  EXPECT_THAT(LoadedIds(*loc), ElementsAre("aaaa", "bbbb"));
}

// A FIFO (or socket, or dangling link) named *.py would block every reader
// until someone writes to it: never opened, said in a warning.
TEST_F(ScriptDirectoryTest, SpecialFilesAreSkippedWithAWarning) {
  Write("alembic.ini", "[alembic]\nscript_location = %(here)s/mig\n");
  Rev("mig/versions", "aaaa", "");
  Rev("mig/versions", "bbbb", "aaaa");
  ASSERT_EQ(::mkfifo((root_ + "/mig/versions/cccc_fifo.py").c_str(), 0644), 0);
  fs::create_symlink(root_ + "/nowhere.py", root_ + "/mig/versions/dddd_dangling.py");
  auto loc = LocateScriptsFromIni(root_ + "/alembic.ini", "/");
  ASSERT_TRUE(loc.ok()) << loc.status();
  auto loaded = LoadScripts(*loc);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::vector<std::string> ids;
  for (const RevisionFile& f : loaded->files) ids.push_back(f.revision);
  EXPECT_THAT(ids, ElementsAre("aaaa", "bbbb"));
  EXPECT_THAT(loaded->warnings,
              ElementsAre(HasSubstr("cccc_fifo.py is a FIFO, not a revision file; skipped"),
                          HasSubstr("dddd_dangling.py is a dangling link, not a revision file")));
}

TEST_F(ScriptDirectoryTest, VersionLocationsEverySeparator) {
  Rev("one", "aaaa", "");
  Rev("two", "bbbb", "aaaa");
  for (const std::string& spec :
       {std::string("version_locations = %(here)s/one %(here)s/two %(here)s/missing"),
        std::string("version_locations = %(here)s/one, %(here)s/two"),
        std::string("version_path_separator = os\nversion_locations = %(here)s/one:%(here)s/two"),
        std::string("version_path_separator = ;\nversion_locations = %(here)s/one;%(here)s/two"),
        std::string("path_separator = newline\nversion_locations =\n  %(here)s/one\n  %(here)s/two")}) {
    Write("alembic.ini", "[alembic]\nscript_location = %(here)s\n" + spec + "\n");
    auto loc = LocateScriptsFromIni(root_ + "/alembic.ini", "/");
    ASSERT_TRUE(loc.ok()) << loc.status() << " for " << spec;
    EXPECT_THAT(LoadedIds(*loc), ElementsAre("aaaa", "bbbb")) << spec;
  }
  Write("alembic.ini", "[alembic]\nscript_location = %(here)s\nversion_path_separator = |\n"
                       "version_locations = a|b\n");
  EXPECT_THAT(LocateScriptsFromIni(root_ + "/alembic.ini", "/").status().message(),
              HasSubstr("'|' is not a valid value for version_path_separator"));
}

TEST_F(ScriptDirectoryTest, RecursiveVersionLocations) {
  Write("alembic.ini", "[alembic]\nscript_location = %(here)s\nrecursive_version_locations = true\n");
  Rev("versions", "aaaa", "");
  Rev("versions/2026/nov", "bbbb", "aaaa");
  Rev("versions/__pycache__", "cccc", "aaaa");
  auto loc = LocateScriptsFromIni(root_ + "/alembic.ini", "/");
  ASSERT_TRUE(loc.ok());
  EXPECT_THAT(LoadedIds(*loc), ElementsAre("aaaa", "bbbb"));
}

TEST_F(ScriptDirectoryTest, RelativeScriptLocationIsRelativeToWorkingDirectory) {
  Write("alembic.ini", "[alembic]\nscript_location = mig\n");
  Rev("mig/versions", "aaaa", "");
  auto loc = LocateScriptsFromIni(root_ + "/alembic.ini", root_);
  ASSERT_TRUE(loc.ok()) << loc.status();
  EXPECT_EQ(loc->version_locations[0], root_ + "/mig/versions");
  auto elsewhere = LocateScriptsFromIni(root_ + "/alembic.ini", "/");
  EXPECT_THAT(elsewhere.status().message(), HasSubstr("Path doesn't exist: '/mig'"));
}

TEST_F(ScriptDirectoryTest, ConfigErrors) {
  EXPECT_EQ(LocateScriptsFromIni(root_ + "/nope.ini", "/").status().message(),
            "No config file '" + root_ + "/nope.ini' found, or file has no '[alembic]' section");
  Write("alembic.ini", "[other]\nx = 1\n");
  EXPECT_THAT(LocateScriptsFromIni(root_ + "/alembic.ini", "/").status().message(),
              HasSubstr("has no '[alembic]' section"));
  Write("alembic.ini", "[alembic]\nsqlalchemy.url = x\n");
  EXPECT_EQ(LocateScriptsFromIni(root_ + "/alembic.ini", "/").status().message(),
            "No 'script_location' key found in configuration.");
}

TEST_F(ScriptDirectoryTest, BrokenFileFailsLoadOrIsListed) {
  Write("alembic.ini", "[alembic]\nscript_location = %(here)s\n");
  Rev("versions", "aaaa", "");
  Write("versions/bbbb_x.py", "revision = 'bbbb'\ndown_revision = 'aa' + no_such_name\n");
  ProjectSource source;
  source.config_file = root_ + "/alembic.ini";
  auto p = Project::Load(source);
  EXPECT_THAT(p.status().message(), HasSubstr(root_ + "/versions/bbbb_x.py:2:"));
  EXPECT_THAT(p.status().message(), HasSubstr("NameError: name 'no_such_name' is not defined"));
  auto tolerant = Project::Load(source, true);
  ASSERT_TRUE(tolerant.ok());
  EXPECT_EQ(tolerant->file_errors().size(), 1u);
  EXPECT_EQ(tolerant->graph().size(), 1);
}

// OpenStack Neutron's layout: expand/contract branches whose labels come
// from a module (`branch_labels = (cli.EXPAND_BRANCH,)`). Alembic imports the
// file to know them; so does the loader, with prepend_sys_path, once per
// file content.
TEST_F(ScriptDirectoryTest, ComputedHeadersAreReadByImportingTheFile) {
  Write("alembic.ini", "[alembic]\nscript_location = %(here)s/mig\nprepend_sys_path = .\n");
  Write("branches/__init__.py", "");
  Write("branches/cli.py", "EXPAND_BRANCH = 'expand'\nCONTRACT_BRANCH = 'contract'\n"
                           "def rev(n):\n    return 'r%04d' % n\n");
  Rev("mig/versions", "base0", "");
  Write("mig/versions/e1_expand.py",
        "\"\"\"expand\n\nRevision ID: r0001\n\"\"\"\nfrom alembic import op\n"
        "from branches import cli\n\nrevision = cli.rev(1)\ndown_revision = 'base0'\n"
        "branch_labels = (cli.EXPAND_BRANCH,)\n\ndef upgrade():\n    op.create_table('x')\n");
  Write("mig/versions/c1_contract.py",
        "from branches import cli\nprint('imported!')\nrevision = 'c0001'\n"
        "down_revision = 'base0'\nbranch_labels = [cli.CONTRACT_BRANCH]\n"
        "depends_on = (cli.rev(1),)\n");
  ProjectSource source;
  source.config_file = root_ + "/alembic.ini";
  source.cwd = root_;
  source.python = {"/usr/bin/python3"};
  auto p = Project::Load(source);
  ASSERT_TRUE(p.ok()) << p.status();
  const RevisionGraph& g = p->graph();
  ASSERT_EQ(g.size(), 3);
  std::map<std::string, const RevisionFile*> by_id;
  for (int i = 0; i < g.size(); ++i) by_id[g.id(i)] = g.node(i).file;
  ASSERT_TRUE(by_id.count("r0001") && by_id.count("c0001"));
  EXPECT_THAT(by_id["r0001"]->branch_labels, ElementsAre("expand"));
  EXPECT_THAT(by_id["r0001"]->down_revisions, ElementsAre("base0"));
  EXPECT_EQ(by_id["r0001"]->doc, "expand");  // the static reader's facts stay
  EXPECT_EQ(by_id["r0001"]->upgrade_is_empty, false);
  EXPECT_THAT(by_id["c0001"]->branch_labels, ElementsAre("contract"));
  EXPECT_THAT(by_id["c0001"]->depends_on, ElementsAre("r0001"));

  // Known contents are not imported again: a Python that cannot run is not
  // needed for them.
  source.python = {"/nonexistent/python"};
  auto again = Project::Load(source);
  ASSERT_TRUE(again.ok()) << again.status();
  // A changed file is imported again, and a failure names the file, the line
  // of the computed value and Python's error.
  Write("mig/versions/c1_contract.py",
        "from branches import cli\nrevision = 'c0001'\ndown_revision = 'base0'\n"
        "branch_labels = [cli.NO_SUCH_BRANCH]\n");
  source.python = {"/usr/bin/python3"};
  auto broken = Project::Load(source);
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.status().message(),
              HasSubstr(root_ + "/mig/versions/c1_contract.py:4: its header is computed "
                        "(branch_labels is not a literal), and importing it with Python as "
                        "Alembic does failed: AttributeError: module 'branches.cli' has no "
                        "attribute 'NO_SUCH_BRANCH'"));
  source.python = {"/nonexistent/python"};
  Write("mig/versions/c1_contract.py",
        "from branches import cli\nrevision = 'c0001'\ndown_revision = 'base0'\n"
        "branch_labels = [cli.CONTRACT_BRANCH, 'x']\n");
  auto no_python = Project::Load(source);
  ASSERT_FALSE(no_python.ok());
  EXPECT_THAT(no_python.status().message(),
              HasSubstr("cannot run /nonexistent/python: No such file or directory"));
}

TEST(AbsPathTest, NormalisesLikePython) {
  EXPECT_EQ(AbsPath("a/./b/../c", "/x"), "/x/a/c");
  EXPECT_EQ(AbsPath("/a//b/", "/x"), "/a/b");
  EXPECT_EQ(AbsPath("", "/x/y"), "/x/y");
}

}  // namespace
}  // namespace lockstep::migrations
