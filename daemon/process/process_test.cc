#include "daemon/process/process.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "daemon/model/utf8.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ProcessTest, CapturesLinesExitCodeAndEnvironment) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "echo one; echo \"two $LOCKSTEP_T\" >&2; exit 3"};
  spec.env = {"LOCKSTEP_T=secret-in-env"};
  spec.cwd = "/tmp";
  std::vector<std::string> lines;
  int pid = 0;
  ProcessResult r = RunProcess(
      spec, nullptr, [&](int p) { pid = p; }, [&](const std::string& l) { lines.push_back(l); });
  EXPECT_GT(pid, 0);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(lines, ElementsAre("one", "two secret-in-env"));
  EXPECT_EQ(r.Describe(), "exit 3");
}

// A program reads a file as its standard input (the mariadb client
// replaying a dump); without one it reads /dev/null; a file that cannot be
// opened is a start error, and nothing runs.
TEST(ProcessTest, StandardInputIsTheGivenFileOrNothing) {
  const std::string path = ::testing::TempDir() + "/stdin-" + std::to_string(::getpid());
  std::ofstream(path) << "first line\nsecond line\n";
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "wc -l"};
  spec.stdin_path = path;
  ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.output, "2\n");
  spec.stdin_path.clear();
  EXPECT_EQ(RunProcess(spec, nullptr, nullptr, nullptr).output, "0\n");
  spec.stdin_path = path + ".missing";
  ProcessResult missing = RunProcess(spec, nullptr, nullptr, nullptr);
  EXPECT_THAT(missing.start_error, HasSubstr("cannot open " + path + ".missing"));
  std::filesystem::remove(path);
}

// One long line (a migration printing a blob) is one event, not 1 MB of
// it: its start, marked, then the next lines as they are. The output kept
// is its last 64 KiB, cut on a character boundary.
TEST(ProcessTest, AnOverlongLineIsCutAndTheOutputKeepsWholeCharacters) {
  ProcessSpec spec;
  // 300,000 two-byte characters (é) without a newline, then two lines.
  spec.argv = {"/usr/bin/python3", "-c",
               "import sys; sys.stdout.write('\u00e9' * 300000 + 'x\\nnext\\nlast'); "
               "sys.stdout.flush()"};
  spec.env = {"PYTHONIOENCODING=utf-8"};
  std::vector<std::string> lines;
  ProcessResult r =
      RunProcess(spec, nullptr, nullptr, [&](const std::string& l) { lines.push_back(l); });
  ASSERT_EQ(r.exit_code, 0) << r.output.substr(0, 200);
  ASSERT_THAT(lines, ::testing::SizeIs(3));
  EXPECT_LE(lines[0].size(), 4096u + 40u);
  EXPECT_THAT(lines[0], HasSubstr("(line cut at 4096 bytes)"));
  EXPECT_TRUE(IsValidUtf8(lines[0]));
  EXPECT_EQ(lines[1], "next");
  EXPECT_EQ(lines[2], "last");
  EXPECT_LE(r.output.size(), 64u * 1024u);
  EXPECT_TRUE(IsValidUtf8(r.output));
  EXPECT_TRUE(absl::EndsWith(r.output, "x\nnext\nlast"));
}

// Output past the 64 KiB kept goes, all of it and byte for byte (an
// overlong line included), to the output log; a short output writes no file.
TEST(ProcessTest, AnOutputLongerThanItsTailIsWhollyInItsLog) {
  const std::string dir = ::testing::TempDir() + "/output-log-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  ProcessSpec spec;
  spec.output_log = dir + "/r-1/step-0.log";
  spec.argv = {"/usr/bin/python3", "-c",
               "import sys\n"
               "for i in range(20000): print('line', i)\n"
               "sys.stdout.write('y' * 100000 + '\\nend\\n')"};
  ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
  ASSERT_EQ(r.exit_code, 0) << r.output.substr(0, 200);
  EXPECT_EQ(r.output_log, spec.output_log);
  EXPECT_EQ(r.output_log_error, "");
  std::ifstream in(spec.output_log, std::ios::binary);
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string expected;
  for (int i = 0; i < 20000; ++i) absl::StrAppend(&expected, "line ", i, "\n");
  absl::StrAppend(&expected, std::string(100000, 'y'), "\nend\n");
  EXPECT_EQ(log.size(), expected.size());
  EXPECT_TRUE(log == expected);
  EXPECT_LE(r.output.size(), 64u * 1024u);
  EXPECT_TRUE(absl::EndsWith(expected, r.output));

  ProcessSpec small = spec;
  small.output_log = dir + "/r-1/step-1.log";
  small.argv = {"/bin/sh", "-c", "echo short"};
  ProcessResult s = RunProcess(small, nullptr, nullptr, nullptr);
  EXPECT_EQ(s.output, "short\n");
  EXPECT_EQ(s.output_log, "");
  EXPECT_FALSE(std::filesystem::exists(small.output_log));
  std::filesystem::remove_all(dir);
}

// A step of several runs (a reapply) keeps one log with all their output:
// the run that outgrows the tail starts it with what the earlier ones
// printed, and the runs after it add to its end.
TEST(ProcessTest, TheRunsOfOneStepShareOneWholeLog) {
  const std::string dir = ::testing::TempDir() + "/output-log-runs-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  auto print = [](char c, int n) {
    return std::vector<std::string>{"/usr/bin/python3", "-c",
                                    absl::StrCat("print('", std::string(1, c), "' * ", n, ")")};
  };
  ProcessSpec spec;
  spec.output_log = dir + "/r-1/step-0.log";
  spec.argv = print('a', 40000);  // the downgrade: shorter than the tail, no log
  ProcessResult first = RunProcess(spec, nullptr, nullptr, nullptr);
  ASSERT_EQ(first.exit_code, 0);
  EXPECT_EQ(first.output_log, "");

  spec.argv = print('b', 40000);  // together past 64 KiB: the log starts
  spec.earlier_output = first.output;
  ProcessResult second = RunProcess(spec, nullptr, nullptr, nullptr);
  ASSERT_EQ(second.exit_code, 0);
  EXPECT_EQ(second.output_log, spec.output_log);

  spec.argv = print('c', 10);  // after a logged run: added at the end
  spec.earlier_output = second.output;
  spec.earlier_output_in_log = true;
  ProcessResult third = RunProcess(spec, nullptr, nullptr, nullptr);
  ASSERT_EQ(third.exit_code, 0);
  EXPECT_EQ(third.output_log, spec.output_log);

  std::ifstream in(spec.output_log, std::ios::binary);
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(log == absl::StrCat(std::string(40000, 'a'), "\n", std::string(40000, 'b'), "\n",
                                  std::string(10, 'c'), "\n"))
      << log.size() << " bytes";
  std::filesystem::remove_all(dir);
}

// A log that cannot be written does not fail the run; the result says why.
TEST(ProcessTest, AnOutputLogThatCannotBeWrittenIsSaidNotFatal) {
  ProcessSpec spec;
  spec.output_log = "/proc/no-such-folder/step-0.log";
  spec.argv = {"/usr/bin/python3", "-c", "print('z' * 200000)"};
  ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output_log, "");
  EXPECT_THAT(r.output_log_error, HasSubstr("cannot create /proc/no-such-folder/step-0.log"));
  EXPECT_TRUE(absl::EndsWith(r.output, "zzz\n"));
}

TEST(ProcessTest, TimeoutStopsTheWholeGroup) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "sleep 30 & sleep 30; echo never"};
  spec.timeout = absl::Milliseconds(300);
  spec.grace = absl::Milliseconds(500);
  absl::Time start = absl::Now();
  ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, 15);
  EXPECT_THAT(r.Describe(), HasSubstr("timed out"));
}

TEST(ProcessTest, CancelStopsIt) {
  ProcessSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  std::atomic<bool> cancel{false};
  std::thread t([&] {
    absl::SleepFor(absl::Milliseconds(200));
    cancel = true;
  });
  ProcessResult r = RunProcess(spec, &cancel, nullptr, nullptr);
  t.join();
  EXPECT_TRUE(r.cancelled);
  EXPECT_FALSE(r.ok());
}

// Whether `pid` stops running within a few seconds (it was killed).
bool Ends(int pid) {
  for (int i = 0; i < 50; ++i) {
    if (!ProcessAlive(pid)) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

// The first line of `output` as a pid (the test scripts echo $! first).
int FirstPid(const std::string& output) {
  int pid = 0;
  EXPECT_TRUE(absl::SimpleAtoi(output.substr(0, output.find('\n')), &pid)) << output;
  return pid;
}

// A migration that starts a background child which inherits Alembic's
// output: the run ends when Alembic exits (it used to last until the child
// closed the pipe, 60 s here), and the child is killed, saying so.
TEST(ProcessTest, ABackgroundChildHoldingTheOutputDoesNotHoldTheRun) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "sleep 60 & echo $!; echo done"};
  std::vector<std::string> lines;
  absl::Time start = absl::Now();
  ProcessResult r =
      RunProcess(spec, nullptr, nullptr, [&](const std::string& l) { lines.push_back(l); });
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  const int child = FirstPid(r.output);
  EXPECT_TRUE(Ends(child));
  EXPECT_THAT(lines, ::testing::Contains("done"));
  EXPECT_THAT(r.output, HasSubstr("lockstep: killed 1 process the run left running after it ended"));
}

// One that detached itself (its own session, output elsewhere) does not
// escape either: its environment still carries the run's token.
TEST(ProcessTest, ADetachedDescendantIsKilledWhenTheRunEnds) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $!"};
  ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(Ends(FirstPid(r.output)));
  EXPECT_THAT(r.output, HasSubstr("killed 1 process"));
}

// Timeout and cancel reach descendants that left the process group.
TEST(ProcessTest, TimeoutAndCancelKillDescendantsOutsideTheGroup) {
  for (bool by_cancel : {false, true}) {
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $!; sleep 60"};
    spec.timeout = by_cancel ? absl::InfiniteDuration() : absl::Milliseconds(500);
    spec.grace = absl::Milliseconds(500);
    std::atomic<bool> cancel{false};
    std::thread t([&] {
      absl::SleepFor(absl::Milliseconds(500));
      if (by_cancel) cancel = true;
    });
    absl::Time start = absl::Now();
    ProcessResult r = RunProcess(spec, &cancel, nullptr, nullptr);
    t.join();
    EXPECT_LT(absl::Now() - start, absl::Seconds(20));
    EXPECT_EQ(by_cancel ? r.cancelled : r.timed_out, true) << r.Describe();
    EXPECT_TRUE(Ends(FirstPid(r.output))) << (by_cancel ? "cancel" : "timeout");
  }
}

// SignalRunTree finds a run's processes by their token, and nothing else.
TEST(ProcessTest, SignalRunTreeMatchesTheWholeTokenOnly) {
  ProcessSpec spec;
  spec.argv = {"/bin/sleep", "60"};
  spec.env = {RunTokenEntry("run-12")};
  ChildSetup setup;
  setup.argv = spec.argv;
  setup.env = spec.env;
  absl::StatusOr<int> pid = SpawnChild(setup);
  ASSERT_TRUE(pid.ok()) << pid.status();
  // The parent of a vfork-like clone runs on while exec is still setting up
  // the child's environment: wait until /proc shows it.
  for (int i = 0; i < 100; ++i) {
    std::ifstream in(absl::StrCat("/proc/", *pid, "/environ"));
    std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (env.find(RunTokenEntry("run-12")) != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(SignalRunTree(0, "run-1", SIGKILL), 0);  // a prefix is another run
  EXPECT_EQ(SignalRunTree(0, "run-12", SIGKILL, *pid), 0);  // spared
  EXPECT_TRUE(ProcessAlive(*pid));
  EXPECT_EQ(SignalRunTree(0, "run-12", SIGKILL), 1);
  int status = 0;
  ::waitpid(*pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status));
}

TEST(ProcessTest, MissingCommandIsAClearError) {
  ProcessSpec spec;
  spec.argv = {"/no/such/alembic", "upgrade"};
  ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.start_error, "cannot execute /no/such/alembic: No such file or directory");
  EXPECT_EQ(r.Describe(), r.start_error);
}

TEST(ProcessTest, MissingWorkingFolderIsAClearError) {
  ProcessSpec spec;
  spec.argv = {"/bin/true"};
  spec.cwd = "/no/such/folder";
  ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
  EXPECT_EQ(r.start_error, "cannot enter /no/such/folder: No such file or directory");
}

TEST(ProcessTest, ChildHasItsOwnGroupAndNoBlockedSignals) {
  // lockstepd blocks signals for its sigwait thread; the child must not.
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, &old), 0);
  ProcessSpec spec;
  spec.argv = {"/bin/grep", "-E", "^SigBlk", "/proc/self/status"};  // not a shell: dash clears it
  pid_t pgid = 0;
  int pid = 0;
  std::vector<std::string> lines;
  ProcessResult r = RunProcess(
      spec, nullptr,
      [&](int p) {
        pid = p;
        pgid = ::getpgid(p);
      },
      [&](const std::string& l) { lines.push_back(l); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  EXPECT_TRUE(r.ok()) << r.Describe() << r.output;
  EXPECT_EQ(pgid, pid);
  EXPECT_THAT(lines, ElementsAre("SigBlk:\t0000000000000000"));
}

TEST(ProcessTest, StdinIsDevNullAndNothingElseLeaks) {
  // Descriptors this test process passes on to any child (not close-on-exec).
  std::set<std::string> inherited = {"0", "1", "2"};
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::string fd = entry.path().filename();
    int flags = ::fcntl(std::stoi(fd), F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC)) inherited.insert(fd);
  }
  ProcessSpec spec;
  spec.argv = {"/bin/ls", "/proc/self/fd"};
  std::vector<std::string> extra;
  ProcessResult r = RunProcess(spec, nullptr, nullptr, [&](const std::string& fd) {
    if (!inherited.count(fd)) extra.push_back(fd);
  });
  EXPECT_TRUE(r.ok()) << r.Describe() << r.output;
  EXPECT_EQ(extra.size(), 1u) << "besides ls's own listing: " << ::testing::PrintToString(extra);
  // The child's stdin, as the child sees it.
  spec.argv = {"/usr/bin/readlink", "/proc/self/fd/0"};
  std::vector<std::string> lines;
  r = RunProcess(spec, nullptr, nullptr, [&](const std::string& l) { lines.push_back(l); });
  EXPECT_THAT(lines, ElementsAre("/dev/null"));
}

// That a child dies with lockstepd (PR_SET_PDEATHSIG) is tested for real in
// tests/e2e/test_rollout.py: kill -9 of lockstepd, then no Alembic is left.

}  // namespace
}  // namespace lockstep::daemon
