#include "daemon/rollout/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace lockstep::daemon {
namespace {

constexpr size_t kMaxOutput = 64 * 1024;

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

bool ProcessAlive(int pid) {
  if (pid <= 0) return false;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return false;
  size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

void SuperviseOutput(int read_fd, int pid, const ProcessSpec& spec, absl::Time start,
                     const std::atomic<bool>* cancel,
                     const std::function<void(const std::string& line)>& on_line,
                     ProcessResult* out) {
  ProcessResult& result = *out;
  std::string pending;
  auto emit = [&](absl::string_view chunk) {
    result.output.append(chunk.data(), chunk.size());
    if (result.output.size() > 2 * kMaxOutput)
      result.output.erase(0, result.output.size() - kMaxOutput);
    pending.append(chunk.data(), chunk.size());
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      if (on_line) on_line(pending.substr(0, nl));
      pending.erase(0, nl + 1);
    }
  };
  absl::Time term_sent = absl::InfiniteFuture();
  bool killed = false;
  char buf[8192];
  while (true) {
    struct pollfd p = {read_fd, POLLIN, 0};
    int r = ::poll(&p, 1, 100);
    if (r > 0) {
      ssize_t n = ::read(read_fd, buf, sizeof(buf));
      if (n > 0) {
        emit(absl::string_view(buf, static_cast<size_t>(n)));
        continue;
      }
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
        break;  // EOF: child (and heirs) done
    }
    const absl::Time now = absl::Now();
    bool stop = (cancel != nullptr && cancel->load()) || now - start > spec.timeout;
    if (stop && term_sent == absl::InfiniteFuture()) {
      if (cancel != nullptr && cancel->load()) {
        result.cancelled = true;
      } else {
        result.timed_out = true;
      }
      ::kill(-pid, SIGTERM);
      term_sent = now;
    } else if (!killed && now - term_sent > spec.grace) {
      ::kill(-pid, SIGKILL);
      killed = true;
    }
  }
  ::close(read_fd);
  if (!pending.empty() && on_line) on_line(pending);
  if (result.output.size() > kMaxOutput) result.output.erase(0, result.output.size() - kMaxOutput);
}

ProcessResult RunProcess(const ProcessSpec& spec, const std::atomic<bool>* cancel,
                         const std::function<void(int pid)>& on_start,
                         const std::function<void(const std::string& line)>& on_line) {
  ProcessResult result;
  const absl::Time start = absl::Now();
  if (spec.argv.empty()) {
    result.start_error = "no command to run";
    return result;
  }
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls.
  std::vector<std::string> argv_strings = spec.argv;
  std::vector<std::string> env_strings = MergedEnvironment(spec.env);
  std::vector<char*> argv = Pointers(argv_strings);
  std::vector<char*> envp = Pointers(env_strings);
  std::string exec_error = absl::StrCat("lockstepd: cannot execute ", spec.argv[0], "\n");
  std::string chdir_error = absl::StrCat("lockstepd: cannot enter ", spec.cwd, "\n");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    result.start_error = absl::StrCat("cannot create a pipe: ", std::strerror(errno));
    return result;
  }
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    result.start_error = absl::StrCat("cannot fork: ", std::strerror(errno));
    ::close(fds[0]);
    ::close(fds[1]);
    return result;
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    ::setpgid(0, 0);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // lockstepd blocks signals for its sigwait thread
    if (!spec.cwd.empty() && ::chdir(spec.cwd.c_str()) != 0) {
      ssize_t ignored = ::write(2, chdir_error.data(), chdir_error.size());
      (void)ignored;
      ::_exit(127);
    }
    ::execvpe(argv[0], argv.data(), envp.data());
    ssize_t ignored = ::write(2, exec_error.data(), exec_error.size());
    (void)ignored;
    ::_exit(127);
  }
  ::close(fds[1]);
  if (on_start) on_start(pid);

  SuperviseOutput(fds[0], pid, spec, start, cancel, on_line, &result);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.SetStatus(status);
  result.took = absl::Now() - start;
  return result;
}

}  // namespace lockstep::daemon
