#include "daemon/rollout/warm_alembic.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace lockstep::daemon {
namespace {

// The zygote. fd 3 is its end of the socket pair.
constexpr char kZygote[] = R"py(# lockstep warm Alembic runner
import ctypes, json, os, signal, socket, sys, threading, traceback
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
sock = socket.socket(fileno=3)
import alembic.config, alembic.command, sqlalchemy  # the expensive part, once
for name in ("sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql", "psycopg2",
             "alembic.runtime.migration", "alembic.ddl.sqlite", "alembic.ddl.postgresql"):
    try:
        __import__(name)
    except Exception:
        pass
# Children share the zygote's memory copy-on-write; keep the collector from
# touching (and so copying) every inherited object.
import gc
gc.collect()
gc.freeze()
lock = threading.Lock()
zygote = os.getpid()

def reply(text):
    with lock:
        sock.send(text.encode())

def wait_for(rid, pid):
    _, status = os.waitpid(pid, 0)
    reply("exit %s %d" % (rid, status))

def child(req, out_fd):
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote:
        os._exit(127)
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    sock.close()
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.environ.update(req["env"])
    if req["cwd"]:
        os.chdir(req["cwd"])
    sys.argv = ["alembic"] + req["argv"]
    code = 0
    try:
        alembic.config.main(argv=req["argv"], prog="alembic")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)

reply("ready 0 0")
while True:
    try:
        data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 1)
    except OSError:
        break
    if not data:
        break
    req = json.loads(data)
    if len(fds) != 1:
        reply("error %s no-pipe" % req["id"])
        continue
    pid = os.fork()
    if pid == 0:
        try:
            child(req, fds[0])
        except BaseException:
            os._exit(127)
    os.close(fds[0])
    reply("started %s %d" % (req["id"], pid))
    threading.Thread(target=wait_for, args=(req["id"], pid), daemon=True).start()
)py";

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += absl::StrCat("\\u00", absl::Hex(c, absl::kZeroPad2));
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string JsonList(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + JsonString(v[i]);
  return out + "]";
}

}  // namespace

absl::StatusOr<std::unique_ptr<WarmAlembic>> WarmAlembic::Start(const std::string& python) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return absl::InternalError(absl::StrCat("socketpair: ", std::strerror(errno)));
  }
  std::unique_ptr<WarmAlembic> w(new WarmAlembic());
  w->sock_ = sv[0];
  // The zygote dies with the thread that forks it (PR_SET_PDEATHSIG), so it
  // is forked by the reader thread, which lives as long as this object.
  w->reader_ = std::thread([raw = w.get(), python, child_end = sv[1]] {
    raw->ForkZygote(python, child_end);
    raw->ReadReplies();
  });
  std::unique_lock<std::mutex> lock(w->mu_);
  w->changed_.wait_for(lock, std::chrono::seconds(60), [&] { return w->ready_ || w->dead_; });
  if (!w->ready_) {
    lock.unlock();
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot start the warm Alembic runner with ", python,
        " (is Alembic installed for it?); use project.alembic_runner: process"));
  }
  return w;
}

void WarmAlembic::ForkZygote(const std::string& python, int child_end) {
  const std::string exec_error = absl::StrCat("lockstepd: cannot execute ", python, "\n");
  std::vector<std::string> args = {python, "-c", kZygote};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(child_end, 3);  // dup2 clears FD_CLOEXEC on the copy
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvp(argv[0], argv.data());
    ssize_t ignored = ::write(2, exec_error.data(), exec_error.size());
    (void)ignored;
    ::_exit(127);
  }
  ::close(child_end);  // the zygote's end: EOF on ours once it is gone
  std::lock_guard<std::mutex> lock(mu_);
  zygote_pid_ = pid > 0 ? pid : 0;
}

WarmAlembic::~WarmAlembic() {
  int zygote;
  {
    std::lock_guard<std::mutex> lock(mu_);
    zygote = zygote_pid_;
  }
  if (zygote > 0) ::kill(zygote, SIGKILL);  // its children get SIGKILL too
  if (sock_ >= 0) ::shutdown(sock_, SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
  if (sock_ >= 0) ::close(sock_);
  if (zygote > 0) ::waitpid(zygote, nullptr, 0);
}

void WarmAlembic::ReadReplies() {
  char buf[512];
  while (true) {
    ssize_t n = ::recv(sock_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::vector<std::string> parts = absl::StrSplit(std::string(buf, static_cast<size_t>(n)), ' ');
    uint64_t id = 0;
    int value = 0;
    std::lock_guard<std::mutex> lock(mu_);
    if (parts[0] == "ready") {
      ready_ = true;
      changed_.notify_all();
      continue;
    }
    if (parts.size() < 3 || !absl::SimpleAtoi(parts[1], &id)) continue;
    Reply& r = replies_[id];
    if (parts[0] == "started" && absl::SimpleAtoi(parts[2], &value)) {
      r.pid = value;
    } else if (parts[0] == "exit" && absl::SimpleAtoi(parts[2], &value)) {
      r.exited = true;
      r.status = value;
    } else {
      r.error = parts[2];
    }
    changed_.notify_all();
  }
  std::lock_guard<std::mutex> lock(mu_);
  dead_ = true;
  changed_.notify_all();
}

bool WarmAlembic::alive() {
  std::lock_guard<std::mutex> lock(mu_);
  return !dead_;
}

ProcessResult WarmAlembic::Run(const ProcessSpec& spec, const std::atomic<bool>* cancel,
                               const std::function<void(int pid)>& on_start,
                               const std::function<void(const std::string& line)>& on_line) {
  ProcessResult result;
  const absl::Time start = absl::Now();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    result.start_error = absl::StrCat("cannot create a pipe: ", std::strerror(errno));
    return result;
  }
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    replies_[id];
  }
  std::string env = "{";
  for (size_t i = 0; i < spec.env.size(); ++i) {
    size_t eq = spec.env[i].find('=');
    env += (i ? "," : "") + JsonString(spec.env[i].substr(0, eq)) + ":" +
           JsonString(spec.env[i].substr(eq + 1));
  }
  env += "}";
  const std::string request = absl::StrCat("{\"id\":\"", id, "\",\"argv\":", JsonList(spec.argv),
                                           ",\"env\":", env, ",\"cwd\":", JsonString(spec.cwd), "}");
  struct iovec iov = {const_cast<char*>(request.data()), request.size()};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  struct cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cm), &fds[1], sizeof(int));
  ssize_t sent = ::sendmsg(sock_, &msg, MSG_NOSIGNAL);
  ::close(fds[1]);
  if (sent < 0) {
    ::close(fds[0]);
    result.start_error = absl::StrCat("the warm Alembic runner is gone: ", std::strerror(errno));
    return result;
  }
  int pid = 0;
  {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return dead_ || replies_[id].pid > 0 || !replies_[id].error.empty(); });
    pid = replies_[id].pid;
    if (pid == 0) {
      result.start_error = absl::StrCat("the warm Alembic runner did not start a process",
                                        replies_[id].error.empty() ? "" : ": " + replies_[id].error);
      replies_.erase(id);
      ::close(fds[0]);
      return result;
    }
  }
  if (on_start) on_start(pid);
  SuperviseOutput(fds[0], pid, spec, start, cancel, on_line, &result);
  {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return dead_ || replies_[id].exited; });
    if (replies_[id].exited) {
      result.SetStatus(replies_[id].status);
    } else {
      result.signal = SIGKILL;  // the zygote died with it
    }
    replies_.erase(id);
  }
  result.took = absl::Now() - start;
  return result;
}

}  // namespace lockstep::daemon
