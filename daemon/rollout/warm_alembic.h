// Alembic without paying Python's start-up on every database: a pool of
// Python worker processes that imported Alembic and SQLAlchemy once. A
// worker runs one step at a time through lockstep's Alembic entry point
// (alembic_entry.h: Alembic's own command line, your env.py) — with its stdout/stderr on a pipe lockstepd
// owns, the step's environment and working folder set (and put back after);
// then it waits for the next step. A step costs ~25 ms of Python instead of
// ~450 ms for a new `alembic` process.
//
// Opt in with `project.alembic_runner: warm` (`project.python` names the
// interpreter, else the one running alembic_command; WarmInterpreter). Workers are their own
// process groups: stopping a step (abort, timeout) kills its worker, and a
// new one is started for the next step. Workers get SIGKILL when lockstepd
// dies (PR_SET_PDEATHSIG, set from a thread that lives as long as the pool).
//
// Protocol, per worker: a SOCK_SEQPACKET socket pair. lockstepd sends one
// JSON request with the write end of a fresh pipe attached (SCM_RIGHTS);
// the worker answers "exit <code>" once it has closed the pipe.
//
// Thread-safe: up to `max_workers` steps at once (more wait for a worker).
#ifndef LOCKSTEP_DAEMON_ROLLOUT_WARM_ALEMBIC_H_
#define LOCKSTEP_DAEMON_ROLLOUT_WARM_ALEMBIC_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/model/mutex.h"
#include "daemon/process/process.h"

namespace lockstep::daemon {

class WarmAlembic {
 public:
  // Starts one worker (and so checks that `python`, an interpreter and its
  // arguments, can import Alembic).
  static absl::StatusOr<std::unique_ptr<WarmAlembic>> Start(std::vector<std::string> python,
                                                            int max_workers = 16);
  ~WarmAlembic();  // kills the workers

  // Starts workers until `n` are idle or busy (at most max_workers), so the
  // first steps do not pay Python's start-up. Blocks until they are ready.
  absl::Status Prewarm(int n);

  // Starts no more workers and refuses new steps (shutdown). Idempotent.
  void Stop();

  // Like RunProcess; spec.argv is Alembic's arguments (no command name).
  ProcessResult Run(const ProcessSpec& spec, const std::atomic<bool>* cancel,
                    const std::function<void(int pid)>& on_start,
                    const std::function<void(const std::string& line)>& on_line);

 private:
  struct Worker {
    int pid = 0;
    int sock = -1;
  };
  WarmAlembic() = default;
  // Forks a worker on the spawner thread and waits until it has imported
  // Alembic; an error names why.
  absl::StatusOr<Worker> Spawn();
  void SpawnerLoop();
  static void Kill(const Worker& w);

  std::vector<std::string> python_;
  int max_workers_ = 16;
  Mutex mu_;
  std::condition_variable changed_;
  std::vector<Worker> idle_ ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int> all_pids_ ABSL_GUARDED_BY(mu_);  // for the destructor
  // Spawn requests for the spawner thread.
  struct SpawnRequest {
    bool done = false;
    absl::StatusOr<Worker> result = absl::UnknownError("not spawned");
  };
  std::deque<SpawnRequest*> spawn_queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread spawner_;
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_WARM_ALEMBIC_H_
