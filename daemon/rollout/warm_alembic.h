// Alembic without paying Python's start-up on every database: one Python
// process (the "zygote") imports Alembic and SQLAlchemy once; each step is a
// fork of it that runs `alembic.config.main(argv)` — Alembic's own command
// line, env.py and all, in a fresh process — with its output on a pipe
// lockstepd owns, its environment and working folder set, and SIGKILL when
// the zygote (and so lockstepd) dies. Saves ~0.35 s of CPU per database.
//
// Opt in with `project.alembic_runner: warm` (`project.python` names the
// interpreter whose Alembic is used; `alembic_command` is then not used).
//
// Protocol: a SOCK_SEQPACKET socket pair. lockstepd sends one JSON request
// per step with the write end of a fresh pipe attached (SCM_RIGHTS); the
// zygote answers "started <id> <pid>" and, when the child ends,
// "exit <id> <waitpid status>" (or "error <id> <message>").
//
// Thread-safe: many steps at once.
#ifndef LOCKSTEP_DAEMON_ROLLOUT_WARM_ALEMBIC_H_
#define LOCKSTEP_DAEMON_ROLLOUT_WARM_ALEMBIC_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "daemon/rollout/process.h"

namespace lockstep::daemon {

class WarmAlembic {
 public:
  // Starts the zygote and waits until it has imported Alembic.
  static absl::StatusOr<std::unique_ptr<WarmAlembic>> Start(const std::string& python);
  ~WarmAlembic();  // closes the socket: the zygote exits, its children get SIGKILL

  // False once the zygote has gone (killed, crashed): start a new one.
  bool alive();

  // Like RunProcess; spec.argv is Alembic's arguments (no command name).
  ProcessResult Run(const ProcessSpec& spec, const std::atomic<bool>* cancel,
                    const std::function<void(int pid)>& on_start,
                    const std::function<void(const std::string& line)>& on_line);

 private:
  struct Reply {
    int pid = 0;
    bool exited = false;
    int status = 0;
    std::string error;
  };
  WarmAlembic() = default;
  void ForkZygote(const std::string& python, int child_end);
  void ReadReplies();

  int sock_ = -1;
  int zygote_pid_ = 0;  // guarded by mu_
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<uint64_t, Reply> replies_;  // guarded by mu_
  uint64_t next_id_ = 1;               // guarded by mu_
  bool ready_ = false;                 // guarded by mu_: Alembic imported
  bool dead_ = false;                  // guarded by mu_: the zygote is gone
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_WARM_ALEMBIC_H_
