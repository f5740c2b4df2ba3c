#include "daemon/process/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "daemon/model/utf8.h"

extern char** environ;

namespace lockstep::daemon {
namespace {

constexpr size_t kMaxOutput = 64 * 1024;
constexpr size_t kMaxLine = 4 * 1024;  // one output line passed to on_line
// How long output is still read after the run is over, for what it wrote
// last; then whatever still holds the output open is killed.
constexpr absl::Duration kDrain = absl::Milliseconds(250);

constexpr size_t kMaxLog = 256 * 1024 * 1024;  // of one run's output log

// The whole output of a run (with the output of the step's earlier runs,
// ProcessSpec::earlier_output), in a file, once it outgrows kMaxOutput.
class OutputLog {
 public:
  OutputLog(const ProcessSpec& spec, ProcessResult* result)
      : path_(spec.output_log),
        earlier_(spec.earlier_output_in_log ? "" : spec.earlier_output),
        append_(spec.earlier_output_in_log),
        result_(result) {}
  ~OutputLog() {
    if (fd_ >= 0) ::close(fd_);
  }
  OutputLog(const OutputLog&) = delete;
  OutputLog& operator=(const OutputLog&) = delete;

  // `chunk` was just appended to result->output, which held `total` bytes
  // so far in all.
  void Add(absl::string_view chunk, size_t total) {
    if (path_.empty() || failed_ || (!append_ && earlier_.size() + total <= kMaxOutput)) return;
    if (fd_ < 0) {
      // Until now the whole output is still in result->output (it is only
      // cut when it reaches twice kMaxOutput).
      if (!Open()) return;
      Write(earlier_);
      Write(result_->output);
      return;
    }
    Write(chunk);
  }

 private:
  bool Open() {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append_ ? O_APPEND : O_TRUNC),
                 0600);
    if (fd_ < 0) return Fail(absl::StrCat("cannot create ", path_, ": ", std::strerror(errno)));
    result_->output_log = path_;
    return true;
  }

  void Write(absl::string_view data) {
    if (written_ + data.size() > kMaxLog) {
      data = data.substr(0, kMaxLog - written_);
      WriteAll(data);
      WriteAll("\n[lockstep: the output log stops here, at 256 MiB]\n");
      Fail(absl::StrCat(path_, " holds the first 256 MiB of the output only"));
      return;
    }
    WriteAll(data);
  }

  void WriteAll(absl::string_view data) {
    while (!data.empty() && !failed_) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        Fail(absl::StrCat("writing ", path_, " failed after ", written_,
                          " bytes: ", std::strerror(errno)));
        return;
      }
      written_ += static_cast<size_t>(n);
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  bool Fail(const std::string& why) {
    failed_ = true;
    if (result_->output_log_error.empty()) result_->output_log_error = why;
    return false;
  }

  std::string path_;
  std::string earlier_;  // written first (a log this run creates)
  bool append_;          // the step's earlier runs created the log
  ProcessResult* result_;
  int fd_ = -1;
  size_t written_ = 0;
  bool failed_ = false;
};

// Keeps the last `max` bytes of `s`, starting on a character boundary.
void KeepTail(std::string* s, size_t max) {
  *s = std::string(CutUtf8Front(*s, max));
}

std::vector<std::string> MergedEnvironment(const std::vector<std::string>& extra) {
  std::map<std::string, std::string> vars;
  auto add = [&](const std::string& kv) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos) return;
    vars[kv.substr(0, eq)] = kv;
  };
  for (char** e = environ; *e != nullptr; ++e) add(*e);
  for (const std::string& kv : extra) add(kv);
  std::vector<std::string> out;
  for (auto& [k, kv] : vars) out.push_back(std::move(kv));
  return out;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string ProcessResult::Describe() const {
  if (!start_error.empty()) return start_error;
  std::string out =
      signal != 0 ? absl::StrCat("killed by signal ", signal) : absl::StrCat("exit ", exit_code);
  if (timed_out) absl::StrAppend(&out, " (timed out after ", absl::FormatDuration(took), ")");
  if (cancelled) absl::StrAppend(&out, " (stopped on request)");
  return out;
}

void ProcessResult::SetStatus(int wait_status) {
  if (WIFEXITED(wait_status)) {
    exit_code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    signal = WTERMSIG(wait_status);
  }
}

std::string ProcessIdentity(int pid) {
  if (pid <= 0) return "";
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return "";
  // Fields after the command's closing parenthesis start at field 3
  // (state); field 22 is the start time in clock ticks since boot.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return "";
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && (rest >> field); ++i) {
    if (i == 3 && field == "Z") return "";  // a zombie is not running anything
    if (i == 22) {
      std::ifstream boot("/proc/sys/kernel/random/boot_id");
      std::string boot_id;
      std::getline(boot, boot_id);
      return absl::StrCat(boot_id, "/", field);
    }
  }
  return "";
}

// One reader of /proc/PID/stat: a process is alive when it has an identity
// (it exists and is not a zombie).
bool ProcessAlive(int pid) { return !ProcessIdentity(pid).empty(); }

std::string RunTokenEntry(const std::string& token) { return "LOCKSTEP_RUN=" + token; }

int SignalRunTree(int pgid, const std::string& token, int sig, int spare) {
  // By token first, so that the count includes the group's members (they
  // carry it too); then the group, for one that cleared its environment.
  auto group = absl::MakeCleanup([&] {
    if (pgid > 0) ::kill(-pgid, sig);
  });
  if (token.empty()) return 0;
  const std::string entry = RunTokenEntry(token);
  const int self = ::getpid();
  std::set<int> signalled;
  for (int round = 0; round < 5; ++round) {
    bool found = false;
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) break;
    while (struct dirent* e = ::readdir(proc)) {
      int pid = 0;
      if (!absl::SimpleAtoi(e->d_name, &pid) || pid == self || pid == spare) continue;
      if (sig == SIGKILL && signalled.count(pid) > 0) continue;
      // Another user's process cannot be read, and is not ours to stop.
      std::ifstream in(absl::StrCat("/proc/", pid, "/environ"), std::ios::binary);
      std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      bool marked = false;
      for (absl::string_view var : absl::StrSplit(env, '\0')) marked = marked || var == entry;
      if (!marked) continue;
      if (::kill(pid, sig) == 0 && signalled.insert(pid).second) found = true;
    }
    ::closedir(proc);
    if (!found) break;
  }
  return static_cast<int>(signalled.size());
}

void SuperviseOutput(int read_fd, const Supervised& who, const ProcessSpec& spec,
                     absl::Time start, const std::atomic<bool>* cancel,
                     const std::function<void(const std::string& line)>& on_line,
                     ProcessResult* out) {
  ProcessResult& result = *out;
  std::string pending;    // the line being read, at most kMaxLine bytes of it
  bool overlong = false;  // the line being read was cut; skip to its end
  OutputLog log(spec, &result);
  size_t total = 0;
  auto emit = [&](absl::string_view chunk) {
    result.output.append(chunk.data(), chunk.size());
    total += chunk.size();
    log.Add(chunk, total);
    if (result.output.size() > 2 * kMaxOutput) KeepTail(&result.output, kMaxOutput);
    while (!chunk.empty()) {
      size_t nl = chunk.find('\n');
      absl::string_view part = chunk.substr(0, nl);
      if (!overlong) pending.append(part.data(), part.size());
      if (pending.size() > kMaxLine) {
        // One line as long as a whole output would be one event as large
        // as a reply may be: pass its start on, drop the rest.
        if (on_line && !overlong) {
          on_line(absl::StrCat(std::string(CutUtf8(pending, kMaxLine)), " … (line cut at ", kMaxLine,
                               " bytes)"));
        }
        overlong = true;
        pending.clear();
      }
      if (nl == absl::string_view::npos) break;
      if (on_line && !overlong) on_line(pending);
      pending.clear();
      overlong = false;
      chunk.remove_prefix(nl + 1);
    }
  };
  absl::Time term_sent = absl::InfiniteFuture();
  absl::Time done_at = absl::InfiniteFuture();  // when done_fd said the run is over
  bool killed = false;
  char buf[8192];
  while (true) {
    const bool watch_done = who.done_fd >= 0 && done_at == absl::InfiniteFuture();
    struct pollfd p[2] = {{read_fd, POLLIN, 0}, {who.done_fd, POLLIN, 0}};
    int r = ::poll(p, watch_done ? 2 : 1, 100);
    if (r > 0 && p[0].revents != 0) {
      ssize_t n = ::read(read_fd, buf, sizeof(buf));
      if (n > 0) {
        emit(absl::string_view(buf, static_cast<size_t>(n)));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        break;  // EOF: the run and everything it started closed the output
      }
    }
    const absl::Time now = absl::Now();
    if (watch_done && r > 0 && p[1].revents != 0) done_at = now;
    // The run is over, but something it started (a background child) still
    // holds its output open: the step ends with the run; the caller kills
    // what is left (LeftBehind).
    if (now - done_at > kDrain) break;
    bool stop = (cancel != nullptr && cancel->load()) || now - start > spec.timeout;
    if (stop && term_sent == absl::InfiniteFuture()) {
      if (cancel != nullptr && cancel->load()) {
        result.cancelled = true;
      } else {
        result.timed_out = true;
      }
      SignalRunTree(who.pgid, spec.run_token, SIGTERM);
      term_sent = now;
    } else if (!killed && now - term_sent > spec.grace) {
      SignalRunTree(who.pgid, spec.run_token, SIGKILL);
      killed = true;
    }
  }
  ::close(read_fd);
  if (!pending.empty() && !overlong && on_line) on_line(pending);
  if (result.output.size() > kMaxOutput) KeepTail(&result.output, kMaxOutput);
}

namespace {

// What the child of SpawnChild reads (and, on failure, writes): it shares
// this memory with its parent until it execs.
struct ChildArgs {
  char* const* argv;
  char* const* envp;
  const char* cwd;  // null: stay
  int output_fd;
  int fd3;
  int stdin_fd;
  pid_t parent;
  int failed_errno = 0;  // set when the child could not get to exec
  bool failed_at_cwd = false;
  int report_fd = -1;  // kSharedMemory false: where the child writes the two above
};

// ThreadSanitizer cannot follow a child that runs on the parent's memory
// (CLONE_VM): its build spawns with fork's semantics instead, the child
// reporting a failure before exec through a close-on-exec pipe.
#if defined(__SANITIZE_THREAD__)
constexpr bool kSharedMemory = false;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kSharedMemory = false;
#else
constexpr bool kSharedMemory = true;
#endif
#else
constexpr bool kSharedMemory = true;
#endif

// Runs in the child, on its own stack, before exec: system calls only.
int ChildMain(void* raw) {
  ChildArgs& a = *static_cast<ChildArgs*>(raw);
  auto fail = [&](bool at_cwd) {
    a.failed_errno = errno;
    a.failed_at_cwd = at_cwd;
    if (a.report_fd >= 0) {
      const int report[2] = {a.failed_errno, at_cwd ? 1 : 0};
      ssize_t wrote = ::write(a.report_fd, report, sizeof report);
      (void)wrote;
    }
    ::_exit(127);
  };
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != a.parent) ::_exit(127);  // the parent died before prctl
  ::setpgid(0, 0);
  // CLONE_VM without CLONE_SIGHAND: this table of handlers is the child's
  // own. A handler of lockstepd's must not run here, nor survive exec.
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction sa;
    if (::sigaction(sig, nullptr, &sa) == 0 && sa.sa_handler != SIG_DFL &&
        sa.sa_handler != SIG_IGN) {
      sa.sa_handler = SIG_DFL;
      sa.sa_flags = 0;
      ::sigaction(sig, &sa, nullptr);
    }
  }
  if (a.stdin_fd >= 0) {
    ::dup2(a.stdin_fd, 0);
  } else if (int null = ::open("/dev/null", O_RDONLY); null > 0) {
    ::dup2(null, 0);
    if (null > 2) ::close(null);  // not for the program
  }
  if (a.output_fd >= 0) {
    ::dup2(a.output_fd, 1);
    ::dup2(a.output_fd, 2);
  }
  if (a.fd3 >= 0) ::dup2(a.fd3, 3);  // dup2 clears FD_CLOEXEC on the copy
  if (a.cwd != nullptr && ::chdir(a.cwd) != 0) fail(true);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execvpe(a.argv[0], a.argv, a.envp);
  fail(false);
  return 127;
}

}  // namespace

absl::StatusOr<int> SpawnChild(const ChildSetup& setup) {
  if (setup.argv.empty()) return absl::InvalidArgumentError("no command to run");
  std::vector<std::string> argv_strings = setup.argv;
  std::vector<std::string> env_strings = MergedEnvironment(setup.env);
  std::vector<char*> argv = Pointers(argv_strings);
  std::vector<char*> envp = Pointers(env_strings);
  ChildArgs args;
  args.argv = argv.data();
  args.envp = envp.data();
  args.cwd = setup.cwd.empty() ? nullptr : setup.cwd.c_str();
  args.output_fd = setup.output_fd;
  args.fd3 = setup.fd3;
  args.stdin_fd = setup.stdin_fd;
  args.parent = ::getpid();
  // The child's stack; it returns to us once the child has exec'd or exited.
  constexpr size_t kStack = 256 * 1024;
  void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (stack == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot start ", setup.argv[0], ": ", std::strerror(errno)));
  }
  // No signal may reach the child before it has reset its handlers.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  int report[2] = {-1, -1};
  if (!kSharedMemory && ::pipe2(report, O_CLOEXEC) == 0) args.report_fd = report[1];
  pid_t pid = ::clone(ChildMain, static_cast<char*>(stack) + kStack,
                      kSharedMemory ? CLONE_VM | CLONE_VFORK | SIGCHLD : SIGCHLD, &args);
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::munmap(stack, kStack);
  if (report[1] >= 0) {
    ::close(report[1]);
    int got[2] = {0, 0};
    ssize_t n;
    while ((n = ::read(report[0], got, sizeof got)) < 0 && errno == EINTR) {
    }
    if (n == sizeof got) {  // nothing (EOF at exec) when it got there
      args.failed_errno = got[0];
      args.failed_at_cwd = got[1] != 0;
    }
    ::close(report[0]);
  }
  if (pid < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot start ", setup.argv[0], ": ", std::strerror(clone_errno)));
  }
  if (args.failed_errno != 0) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return absl::FailedPreconditionError(absl::StrCat(
        args.failed_at_cwd ? "cannot enter " + setup.cwd : "cannot execute " + setup.argv[0], ": ",
        std::strerror(args.failed_errno)));
  }
  return pid;
}

ProcessSpec WithRunToken(ProcessSpec spec) {
  if (spec.run_token.empty()) {
    static std::atomic<uint64_t> runs{0};
    spec.run_token = absl::StrCat(::getpid(), "-", absl::ToUnixNanos(absl::Now()), "-", ++runs);
  }
  spec.env.push_back(RunTokenEntry(spec.run_token));
  return spec;
}

ProcessResult RunProcess(const ProcessSpec& given, const std::atomic<bool>* cancel,
                         const std::function<void(int pid)>& on_start,
                         const std::function<void(const std::string& line)>& on_line) {
  const ProcessSpec spec = WithRunToken(given);
  ProcessResult result;
  const absl::Time start = absl::Now();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    result.start_error = absl::StrCat("cannot create a pipe: ", std::strerror(errno));
    return result;
  }
  ChildSetup child;
  child.argv = spec.argv;
  child.env = spec.env;
  child.cwd = spec.cwd;
  child.output_fd = fds[1];
  if (!spec.stdin_path.empty()) {
    child.stdin_fd = ::open(spec.stdin_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (child.stdin_fd < 0) {
      result.start_error =
          absl::StrCat("cannot open ", spec.stdin_path, ": ", std::strerror(errno));
      ::close(fds[0]);
      ::close(fds[1]);
      return result;
    }
  }
  absl::StatusOr<int> spawned = SpawnChild(child);
  ::close(fds[1]);
  if (child.stdin_fd >= 0) ::close(child.stdin_fd);
  if (!spawned.ok()) {
    ::close(fds[0]);
    result.start_error = std::string(spawned.status().message());
    return result;
  }
  const int pid = *spawned;
  if (on_start) on_start(pid);

  // Readable once the child exits (Linux 5.3+; without it, EOF ends the run).
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  SuperviseOutput(fds[0], Supervised{.pgid = pid, .done_fd = pidfd}, spec, start, cancel,
                  on_line, &result);
  if (pidfd >= 0) ::close(pidfd);
  // Exited but not reaped: its group id cannot name another group yet.
  siginfo_t info;
  while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
  }
  LeftBehind(SignalRunTree(pid, spec.run_token, SIGKILL), on_line, &result);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.SetStatus(status);
  result.took = absl::Now() - start;
  return result;
}

void LeftBehind(int stopped, const std::function<void(const std::string& line)>& on_line,
                ProcessResult* result) {
  if (stopped == 0) return;
  std::string line = absl::StrCat("lockstep: killed ", stopped, stopped == 1 ? " process" : " processes",
                                  " the run left running after it ended");
  result->output.append(line + "\n");
  if (on_line) on_line(line);
}

}  // namespace lockstep::daemon
