// Running a child process (Alembic, pg_dump, pg_restore) the way a rollout
// needs it: output captured line by line, a timeout, cancellation, and no
// orphan left behind when lockstepd dies (the child gets SIGKILL when the
// thread that started it goes away: PR_SET_PDEATHSIG).
//
// Secrets go in `env`, never in `argv` (argv is visible to every local user
// in /proc and in `ps`).
#ifndef LOCKSTEP_DAEMON_PROCESS_PROCESS_H_
#define LOCKSTEP_DAEMON_PROCESS_PROCESS_H_

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lockstep::daemon {

struct ProcessSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=value", added to (and overriding) lockstepd's own
  std::string cwd;               // empty: lockstepd's
  std::string stdin_path;        // read as its standard input; empty: /dev/null
  absl::Duration timeout = absl::InfiniteDuration();
  absl::Duration grace = absl::Seconds(5);  // between SIGTERM and SIGKILL
  // Marks every process of this run, whatever it does to its process group
  // or session: `LOCKSTEP_RUN=<run_token>` in its environment, which its
  // descendants inherit (a migration's background child, a daemon that
  // double-forked). Empty: RunProcess makes a unique one.
  std::string run_token;
  // Where the whole output goes once it outgrows the 64 KiB kept in
  // ProcessResult::output (created then, with its folder; nothing is
  // written for a shorter output). Empty: the rest is dropped.
  std::string output_log;
  // A step of several runs (a reapply: its downgrade, then its upgrade):
  // what the earlier runs printed, so that `output_log` holds the step's
  // whole output. If they wrote the log already (`earlier_output_in_log`),
  // this run adds to its end; else the log, once the output of all the runs
  // outgrows 64 KiB, is created starting with `earlier_output`.
  std::string earlier_output;
  bool earlier_output_in_log = false;
};

// The environment entry that marks the processes of run `token`.
std::string RunTokenEntry(const std::string& token);

// Sends `sig` to process group `pgid` (0: none) and to every process whose
// environment carries RunTokenEntry(token) (empty: none), except `spare`
// (a warm worker that ran the step and lives on). Repeats the search while
// it finds new ones (a process forking while it is signalled), a few
// times. Returns how many processes it signalled by their token.
int SignalRunTree(int pgid, const std::string& token, int sig, int spare = 0);

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal or not started
  int signal = 0;
  bool timed_out = false;
  bool cancelled = false;
  std::string start_error;  // could not be started (e.g. no such command)
  std::string output;       // stdout and stderr interleaved, the last 64 KiB
  // ProcessSpec::output_log when the whole output was written there (the
  // output was longer than `output` holds); else empty.
  std::string output_log;
  std::string output_log_error;  // why it could not be (fully) written
  absl::Duration took;

  bool ok() const { return exit_code == 0 && start_error.empty(); }
  // exit_code or signal from a waitpid() status.
  void SetStatus(int wait_status);
  // "exit 1", "killed by signal 9 after the 30m timeout", ...
  std::string Describe() const;
};

// `spec` with a run token (a new one if it has none) and its entry in env.
ProcessSpec WithRunToken(ProcessSpec spec);

// After a run: `stopped` processes it left running were killed; says so in
// its output (and to on_line) when there were any.
void LeftBehind(int stopped, const std::function<void(const std::string& line)>& on_line,
                ProcessResult* result);

// Runs `spec` to the end: until the child exits and nothing it started
// holds its output open (what does is killed, see SuperviseOutput), and
// kills what it left running (SignalRunTree), saying so in its output.
// `cancel` (may be null) is polled every 100 ms; when it turns true the run
// (its group and every process with its token) gets SIGTERM, then SIGKILL
// after the grace time; the timeout does the same.
// `on_start` gets the pid once the child runs; `on_line` every output line
// (a line over 4 KiB: its start, marked as cut).
ProcessResult RunProcess(const ProcessSpec& spec, const std::atomic<bool>* cancel,
                         const std::function<void(int pid)>& on_start,
                         const std::function<void(const std::string& line)>& on_line);

// What SuperviseOutput watches besides the output.
struct Supervised {
  int pgid = 0;      // the run's process group (0: none of its own)
  int done_fd = -1;  // readable once the run is over (a pidfd, a worker's
                     // socket); -1: only EOF on the output ends it
};

// The part of RunProcess after the child started: reads its output from
// `read_fd` (closed here) until EOF, or until `who.done_fd` says the run is
// over: then what is already written is read (briefly), and no more (a
// background child may hold the output open; the caller kills it). The timeout and cancellation signal the whole run (SignalRunTree:
// the group and every process with the run's token). Fills output,
// timed_out, cancelled.
void SuperviseOutput(int read_fd, const Supervised& who, const ProcessSpec& spec,
                     absl::Time start, const std::atomic<bool>* cancel,
                     const std::function<void(const std::string& line)>& on_line,
                     ProcessResult* result);

// How SpawnChild starts a child.
struct ChildSetup {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH
  std::vector<std::string> env;   // "KEY=value", added to (and overriding) lockstepd's own
  std::string cwd;                // empty: lockstepd's
  int output_fd = -1;             // stdout and stderr; -1: lockstepd's
  int fd3 = -1;                   // installed as fd 3 when set
  int stdin_fd = -1;              // its standard input; -1: /dev/null
};

// Starts `setup` in its own process group, stdin /dev/null (or stdin_fd), with SIGKILL
// when the calling thread ends (PR_SET_PDEATHSIG), every signal unblocked
// and at its default.
// The child shares lockstepd's memory until it execs (clone with CLONE_VM |
// CLONE_VFORK, as posix_spawn does): a fork of the multi-threaded daemon
// would copy its page tables and leave every thread to fault its pages back
// in after each start. Errors (no such command, no such folder) come back
// here, with errno's text, and no child is left.
absl::StatusOr<int> SpawnChild(const ChildSetup& setup);

// Whether process `pid` exists (and is not a zombie of ours).
bool ProcessAlive(int pid);
// What tells the process `pid` is from any later one with the same number:
// this boot's id and the process's start time ("<boot_id>/<ticks>"); empty
// when no such process runs. Stored beside a child's pid, so that a
// restarted lockstepd kills its old Alembic and never an unrelated process
// that got the number after a reboot or a long time.
std::string ProcessIdentity(int pid);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_PROCESS_PROCESS_H_
