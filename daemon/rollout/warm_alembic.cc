#include "daemon/rollout/warm_alembic.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "daemon/rollout/alembic_entry.h"

namespace lockstep::daemon {
namespace {

// One worker. fd 3 is its end of the socket pair; lockstepd already made it
// its own process group and set PR_SET_PDEATHSIG.
constexpr char kWorker[] = R"py(# lockstep warm Alembic runner
import json, os, socket, sys, traceback
sock = socket.socket(fileno=3)
import alembic.config, alembic.command, sqlalchemy  # the expensive part, once
for name in ("sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql", "psycopg2",
             "alembic.runtime.migration", "alembic.ddl.sqlite", "alembic.ddl.postgresql",
             "logging.config"):
    try:
        __import__(name)
    except Exception:
        pass
null = os.open("/dev/null", os.O_RDWR)
os.dup2(null, 0)
os.dup2(null, 1)
home_err = os.dup(2)  # lockstepd's stderr, between steps
# What alembic.config.main does per call, minus rebuilding the argparse tree
# of every command (a third of a short step): parse_args keeps no state.
cli = alembic.config.CommandLine(prog="alembic")
sys.stdout.reconfigure(line_buffering=True)
sock.send(b"ready")
while True:
    try:
        data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 1)
    except OSError:
        break
    if not data:
        break
    req = json.loads(data)
    env, cwd, argv = dict(os.environ), os.getcwd(), sys.argv
    os.dup2(fds[0], 1)
    os.dup2(fds[0], 2)
    os.close(fds[0])
    code = 0
    try:
        os.environ.update(req["env"])
        if req["cwd"]:
            os.chdir(req["cwd"])
        sys.argv = ["alembic"] + req["argv"]
        lockstep_alembic(req["argv"], cli)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os.dup2(null, 1)
        os.dup2(home_err, 2)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        sys.argv = argv
    sock.send(("exit %d" % (code & 0xFF)).encode())
)py";

// The worker's request: {"argv": [...], "env": {...}, "cwd": "..."}.
std::string Request(const ProcessSpec& spec) {
  nlohmann::json env = nlohmann::json::object();
  for (const std::string& kv : spec.env) {
    size_t eq = kv.find('=');
    env[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
  }
  nlohmann::json request = {{"argv", spec.argv}, {"env", env}, {"cwd", spec.cwd}};
  return request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Sends `text` with `fd` attached.
bool SendWithFd(int sock, const std::string& text, int fd) {
  struct iovec iov = {const_cast<char*>(text.data()), text.size()};
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
  std::memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL) >= 0;
}

// One message, waiting at most `timeout_ms`; "" on EOF, error or timeout.
std::string Receive(int sock, int timeout_ms) {
  struct pollfd p = {sock, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return "";
  char buf[256];
  ssize_t n;
  do {
    n = ::recv(sock, buf, sizeof buf, 0);
  } while (n < 0 && errno == EINTR);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<WarmAlembic>> WarmAlembic::Start(std::vector<std::string> python,
                                                                int max_workers) {
  std::unique_ptr<WarmAlembic> w(new WarmAlembic());
  w->python_ = std::move(python);
  w->max_workers_ = std::max(1, max_workers);
  w->spawner_ = std::thread([raw = w.get()] { raw->SpawnerLoop(); });
  absl::StatusOr<Worker> first = w->Spawn();
  if (!first.ok()) return first.status();
  MutexLock lock(w->mu_);
  w->idle_.push_back(*first);
  return w;
}

WarmAlembic::~WarmAlembic() {
  Stop();
  if (spawner_.joinable()) spawner_.join();
  std::vector<Worker> idle;
  std::vector<int> pids;
  {
    MutexLock lock(mu_);
    idle.swap(idle_);
    pids = all_pids_;
  }
  for (const Worker& w : idle) Kill(w);
  for (int pid : pids) {  // a worker still busy (its step was not stopped first)
    if (::kill(pid, SIGKILL) == 0) ::waitpid(pid, nullptr, 0);
  }
}

void WarmAlembic::Kill(const Worker& w) {
  ::kill(-w.pid, SIGKILL);
  ::close(w.sock);
  ::waitpid(w.pid, nullptr, 0);
}

absl::StatusOr<WarmAlembic::Worker> WarmAlembic::Spawn() {
  SpawnRequest req;
  MutexLock lock(mu_);
  // Once stopping, the spawner serves no request (it may have ended
  // already): a request queued now would wait forever.
  if (stopping_) return absl::UnavailableError("lockstepd is shutting down");
  spawn_queue_.push_back(&req);
  changed_.notify_all();
  changed_.wait(lock.native(), [&] { return req.done; });
  return req.result;
}

// Workers are started here, on a thread that lives as long as the pool:
// PR_SET_PDEATHSIG fires when the forking *thread* ends, not the process.
void WarmAlembic::SpawnerLoop() {
  while (true) {
    SpawnRequest* req;
    {
      MutexLock lock(mu_);
      changed_.wait(lock.native(), [&] {
        mu_.AssertHeld();
        return stopping_ || !spawn_queue_.empty();
      });
      if (stopping_) {
        // Every request still queued is answered, so no Spawn() waits on.
        for (SpawnRequest* r : spawn_queue_) {
          r->result = absl::UnavailableError("lockstepd is shutting down");
          r->done = true;
        }
        spawn_queue_.clear();
        changed_.notify_all();
        return;
      }
      req = spawn_queue_.front();
      spawn_queue_.pop_front();
    }
    absl::StatusOr<Worker> result = absl::UnknownError("");
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
      result = absl::InternalError(absl::StrCat("socketpair: ", std::strerror(errno)));
    } else {
      ChildSetup worker;
      worker.argv = python_;
      worker.argv.insert(worker.argv.end(),
                         {"-c", absl::StrCat("_LOCKSTEP_WORKER = True\n", kAlembicEntry, kWorker)});
      worker.fd3 = sv[1];
      absl::StatusOr<int> pid = SpawnChild(worker);
      ::close(sv[1]);
      if (!pid.ok()) {
        ::close(sv[0]);
        result = absl::FailedPreconditionError(
            absl::StrCat("cannot start a warm Alembic worker: ", pid.status().message(),
                         "; check project.python, or use project.alembic_runner: process"));
      } else if (Receive(sv[0], 60000) != "ready") {
        Kill({*pid, sv[0]});
        result = absl::FailedPreconditionError(absl::StrCat(
            "cannot start a warm Alembic worker with ", absl::StrJoin(python_, " "),
            " (is Alembic installed for it?); or use project.alembic_runner: process"));
      } else {
        result = Worker{*pid, sv[0]};
      }
    }
    MutexLock lock(mu_);
    if (result.ok()) all_pids_.push_back(result->pid);
    req->result = std::move(result);
    req->done = true;
    changed_.notify_all();
  }
}

void WarmAlembic::Stop() {
  MutexLock lock(mu_);
  stopping_ = true;
  changed_.notify_all();
}

absl::Status WarmAlembic::Prewarm(int n) {
  while (true) {
    {
      MutexLock lock(mu_);
      if (stopping_ || static_cast<int>(idle_.size()) + busy_ >= std::min(n, max_workers_)) {
        return absl::OkStatus();
      }
      ++busy_;  // counted while it starts
    }
    absl::StatusOr<Worker> w = Spawn();
    MutexLock lock(mu_);
    --busy_;
    if (!w.ok()) return w.status();
    idle_.push_back(*w);
    changed_.notify_all();
  }
}

ProcessResult WarmAlembic::Run(const ProcessSpec& given, const std::atomic<bool>* cancel,
                               const std::function<void(int pid)>& on_start,
                               const std::function<void(const std::string& line)>& on_line) {
  const ProcessSpec spec = WithRunToken(given);  // marks what the step starts
  ProcessResult result;
  const absl::Time start = absl::Now();
  Worker w;
  bool spawn = false;
  {
    MutexLock lock(mu_);
    changed_.wait(lock.native(), [&] {
      mu_.AssertHeld();
      return !idle_.empty() || busy_ < max_workers_ || stopping_;
    });
    if (stopping_) {
      result.start_error = "lockstepd is shutting down";
      return result;
    }
    ++busy_;
    if (!idle_.empty()) {
      w = idle_.back();
      idle_.pop_back();
    } else {
      spawn = true;
    }
  }
  auto release = [&](bool keep) {
    MutexLock lock(mu_);
    --busy_;
    if (keep) {
      idle_.push_back(w);
    } else {
      all_pids_.erase(std::remove(all_pids_.begin(), all_pids_.end(), w.pid), all_pids_.end());
    }
    changed_.notify_all();
  };
  if (spawn) {
    absl::StatusOr<Worker> fresh = Spawn();
    if (!fresh.ok()) {
      release(false);
      result.start_error = std::string(fresh.status().message());
      return result;
    }
    w = *fresh;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    release(true);
    result.start_error = absl::StrCat("cannot create a pipe: ", std::strerror(errno));
    return result;
  }
  bool sent = SendWithFd(w.sock, Request(spec), fds[1]);
  ::close(fds[1]);
  if (!sent) {
    ::close(fds[0]);
    Kill(w);
    release(false);
    result.start_error = "the warm Alembic worker is gone";
    return result;
  }
  if (on_start) on_start(w.pid);
  // The worker answers on its socket when the step is over (or dies):
  // output a background child keeps open does not hold the step.
  SuperviseOutput(fds[0], Supervised{.pgid = w.pid, .done_fd = w.sock}, spec, start, cancel,
                  on_line, &result);
  // The worker closes the pipe, then answers; a stopped one answers nothing.
  std::string reply = Receive(w.sock, 10000);
  int code = 0;
  if (reply.rfind("exit ", 0) == 0 && absl::SimpleAtoi(reply.substr(5), &code) &&
      !result.cancelled && !result.timed_out) {
    result.exit_code = code;
    // What the step started and left running goes; the worker stays.
    LeftBehind(SignalRunTree(0, spec.run_token, SIGKILL, w.pid), on_line, &result);
    release(true);
  } else {
    SignalRunTree(w.pid, spec.run_token, SIGKILL);
    int status = 0;
    while (::waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
    }
    ::close(w.sock);
    result.SetStatus(status);
    release(false);
  }
  result.took = absl::Now() - start;
  return result;
}

}  // namespace lockstep::daemon
