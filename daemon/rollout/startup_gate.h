// How many Alembic runs may be starting at once on lockstepd's host.
//
// Alembic's start-up is CPU work: Python imports Alembic, SQLAlchemy and the
// project's env.py (~0.4 s of CPU a process on the benchmark machines)
// before it connects. Started four at once on two cores they only take
// turns, and every switch between them costs (much more on VMs, where a
// switch between address spaces is a trip to the hypervisor): measured with
// `xargs -P`, 16 `alembic upgrade` runs take ~1.6x less time two at a time
// than one at a time, but only ~1.3x four at a time.
//
// The gate lets at most `slots` runs be in that phase at once. A run leaves
// it at its first output line (Alembic logs "Context impl ..." once it has
// connected) or after `window`, whichever comes first, so migrations that
// then wait on their database (a long index build on a remote PostgreSQL)
// still overlap as far as max_parallel allows.
#ifndef LOCKSTEP_DAEMON_ROLLOUT_STARTUP_GATE_H_
#define LOCKSTEP_DAEMON_ROLLOUT_STARTUP_GATE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>

#include "absl/time/time.h"
#include "daemon/model/mutex.h"

namespace lockstep::daemon {

class StartupGate {
 public:
  explicit StartupGate(absl::Duration window = absl::Seconds(5)) : window_(window) {}

  // Waits until fewer than `slots` runs are starting (slots < 1: no limit).
  // Returns a ticket for Leave, or 0 when `cancel` turned true meanwhile.
  uint64_t Enter(int slots, const std::atomic<bool>* cancel);
  // The run with `ticket` is past its start-up. Idempotent.
  void Leave(uint64_t ticket);

  // Runs counted as starting now (for tests and logs).
  int starting() const;

 private:
  // Forgets runs that entered more than `window_` ago.
  void Expire(absl::Time now);

  const absl::Duration window_;
  mutable Mutex mu_;
  std::condition_variable left_;
  std::map<uint64_t, absl::Time> starting_;  // ticket -> when it entered
  uint64_t next_ticket_ = 1;
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_STARTUP_GATE_H_
