#include "migrations/computed_headers.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "migrations/python_launcher.h"
#include "migrations/revision_error.h"

extern char** environ;

namespace lockstep::migrations {
namespace {

constexpr absl::Duration kImportTimeout = absl::Minutes(2);

// argv: SYS_PATH... -- FILE...; prints, per file, fields separated by \x1f
// and ended by \x1e: the path, then "ok" and, per header, N (None), S (a
// string) or T (a tuple or list), a count and the strings; or "error" and
// Python's one-line error. What a module prints goes to stderr.
constexpr const char* kImporter = R"py(
import importlib.util, os, re, sys, traceback
out = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="surrogateescape")
os.dup2(2, 1)
sep = sys.argv.index("--")
sys.path[0:0] = sys.argv[1:sep]
def norm(name, v):
    if v is None:
        return ["N", "0"]
    if isinstance(v, str):
        return ["S", "1", v]
    if isinstance(v, (tuple, list)) and all(isinstance(x, str) for x in v):
        return ["T", str(len(v))] + list(v)
    raise TypeError("%s is %r: not a string, None, or a tuple or list of strings" % (name, v))
for path in sys.argv[sep + 1:]:
    try:
        spec = importlib.util.spec_from_file_location(re.sub(r"\W", "_", os.path.basename(path)), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fields = [path, "ok"]
        for attr in ("revision", "down_revision", "branch_labels", "depends_on"):
            if attr in ("revision", "down_revision") and not hasattr(module, attr):
                raise AttributeError("the module has no '%s' once imported" % attr)
            fields += norm(attr, getattr(module, attr, None))
    except BaseException as e:
        fields = [path, "error", "".join(traceback.format_exception_only(type(e), e)).strip()]
    out.write("\x1f".join(fields) + "\x1e")
out.flush()
)py";

struct Header {
  std::string revision;
  std::vector<std::string> down, labels, depends;
};

std::mutex cache_mu;
std::map<std::string, Header>& Cache() {
  static auto* cache = new std::map<std::string, Header>();
  return *cache;
}

// Runs `argv`, returning its stdout; `err` gets its stderr (the last 4 KiB).
absl::StatusOr<std::string> Run(const std::vector<std::string>& argv, const std::string& cwd,
                                std::string* err) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError(std::strerror(errno));
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return absl::InternalError(std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (spawned != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", argv[0], ": ", std::strerror(spawned)));
  }
  std::string out;
  const absl::Time deadline = absl::Now() + kImportTimeout;
  struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  bool timed_out = false;
  char buf[8192];
  while (open_fds > 0) {
    const int left = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (left <= 0) {
      timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, left) < 0 && errno != EINTR) break;
    for (struct pollfd& p : fds) {
      if (p.fd < 0 || p.revents == 0) continue;
      ssize_t n = ::read(p.fd, buf, sizeof buf);
      if (n > 0) {
        (p.fd == out_pipe[0] ? out : *err).append(buf, static_cast<size_t>(n));
        if (err->size() > 8192) err->erase(0, err->size() - 4096);
      } else if (n == 0 || errno != EINTR) {
        p.fd = -1;
        --open_fds;
      }
    }
  }
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(
        "importing took longer than ", absl::FormatDuration(kImportTimeout), "; stopped"));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        argv[0], " failed (", WIFEXITED(status) ? absl::StrCat("exit ", WEXITSTATUS(status))
                                                : absl::StrCat("signal ", WTERMSIG(status)),
        ")"));
  }
  return out;
}

// One file's record from kImporter, after its path and "ok".
absl::StatusOr<Header> ParseHeader(const std::vector<std::string>& f) {
  Header h;
  size_t k = 2;
  std::vector<std::string>* lists[] = {nullptr, &h.down, &h.labels, &h.depends};
  for (int attr = 0; attr < 4; ++attr) {
    size_t n = 0;
    if (k + 1 >= f.size() || !absl::SimpleAtoi(f[k + 1], &n) || k + 2 + n > f.size()) {
      return absl::InternalError("the importer's answer is cut short");
    }
    const std::string kind = f[k];
    std::vector<std::string> values(f.begin() + static_cast<long>(k + 2),
                                     f.begin() + static_cast<long>(k + 2 + n));
    k += 2 + n;
    if (attr == 0) {
      if (kind != "S") {
        return absl::InvalidArgumentError(
            "'revision' must be a single string (Alembic fails on a tuple, list or None)");
      }
      h.revision = values[0];
      continue;
    }
    // A lone "" down_revision is None, as in the static reader.
    if (attr == 1 && kind == "S" && values[0].empty()) values.clear();
    *lists[attr] = std::move(values);
  }
  return h;
}

absl::Status FileError(const ComputedFile& c, const std::string& why) {
  const RevisionFile& f = *c.file;
  const int line = f.computed.empty() ? 0 : f.computed.front().second;
  const std::string message =
      absl::StrCat("its header is computed (", f.computed.front().first,
                   " is not a literal), and importing it with Python as Alembic does failed: ",
                   why);
  return WithFileLocation(absl::InvalidArgumentError(absl::StrCat(f.path, ":", line, ": ", message)),
                          {f.path, line, message});
}

void Apply(const Header& h, ComputedFile* c) {
  RevisionFile& f = *c->file;
  f.revision = h.revision;
  f.down_revisions = h.down;
  f.branch_labels = h.labels;
  f.depends_on = h.depends;
  absl::Status id = VerifyRevisionId(f.revision);
  if (!id.ok()) {
    c->status = FileError(*c, std::string(id.message()));
    return;
  }
  f.computed.clear();
}

}  // namespace

void ComputeHeaders(const std::vector<std::string>& python, const ScriptLocation& location,
                    std::vector<ComputedFile>* files) {
  std::vector<ComputedFile*> todo;
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    for (ComputedFile& c : *files) {
      auto it = Cache().find(c.source);
      if (it != Cache().end()) {
        Apply(it->second, &c);
      } else {
        todo.push_back(&c);
      }
    }
  }
  if (todo.empty()) return;
  std::vector<std::string> argv = python;
  if (argv.empty()) {
    const char* env = std::getenv("LOCKSTEP_PYTHON");
    argv = env != nullptr && *env != '\0'
               ? std::vector<std::string>(absl::StrSplit(env, ' ', absl::SkipEmpty()))
               : DefaultPython();
  }
  const std::vector<std::string> interpreter = argv;
  argv.insert(argv.end(), {"-c", kImporter});
  argv.insert(argv.end(), location.sys_path.begin(), location.sys_path.end());
  argv.push_back("--");
  for (ComputedFile* c : todo) argv.push_back(c->file->path);
  std::string err;
  absl::StatusOr<std::string> out = Run(argv, location.cwd, &err);
  std::map<std::string, std::vector<std::string>> answers;  // path -> fields
  if (out.ok()) {
    for (absl::string_view record : absl::StrSplit(*out, '\x1e', absl::SkipEmpty())) {
      std::vector<std::string> fields = absl::StrSplit(record, '\x1f');
      if (fields.size() >= 2) answers[fields[0]] = std::move(fields);
    }
  }
  std::string last_err(absl::StripAsciiWhitespace(err));
  if (size_t nl = last_err.rfind('\n'); nl != std::string::npos) last_err = last_err.substr(nl + 1);
  std::lock_guard<std::mutex> lock(cache_mu);
  for (ComputedFile* c : todo) {
    auto it = answers.find(c->file->path);
    if (it == answers.end()) {
      std::string why = out.ok() ? "Python gave no answer for it"
                                 : std::string(out.status().message());
      if (!last_err.empty()) why = absl::StrCat(why, ": ", last_err);
      c->status =
          FileError(*c, absl::StrCat(why, " (Python: ", absl::StrJoin(interpreter, " "), ")"));
      continue;
    }
    const std::vector<std::string>& f = it->second;
    if (f[1] != "ok") {
      c->status = FileError(*c, f.size() > 2 ? f[2] : "an unknown error");
      continue;
    }
    absl::StatusOr<Header> h = ParseHeader(f);
    if (!h.ok()) {
      c->status = FileError(*c, std::string(h.status().message()));
      continue;
    }
    Cache()[c->source] = *h;
    Apply(*h, c);
  }
}

}  // namespace lockstep::migrations
