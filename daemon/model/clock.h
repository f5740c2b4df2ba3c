// Time as the rollout engine sees it: read it, and wait on a condition
// variable until a moment. Injected, so tests drive soaks, canary soaks and
// timeouts with a FakeClock instead of waiting for them.
//
// Example:
//   FakeClock clock(absl::Now());
//   RolloutEngine engine(reconciler, store, reader, {}, {.clock = &clock});
//   ...                                   // the rollout soaks for 10m
//   clock.Advance(absl::Minutes(10));     // and goes on at once
#ifndef LOCKSTEP_DAEMON_MODEL_CLOCK_H_
#define LOCKSTEP_DAEMON_MODEL_CLOCK_H_

#include <condition_variable>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/model/mutex.h"

namespace lockstep::daemon {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // With `lock` held: waits on `cv` until notified or until Now() reaches
  // `deadline`. May return early; callers re-check what they wait for.
  virtual void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                         absl::Time deadline) const = 0;
};

// The wall clock.
class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 absl::Time deadline) const override {
    cv.wait_until(lock, absl::ToChronoTime(deadline));
  }
};

// A clock that moves only when told to. Waiters poll it every millisecond
// of real time, so Advance() needs no access to their condition variables.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start) : now_(start) {}
  absl::Time Now() const override {
    MutexLock l(mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    MutexLock l(mu_);
    now_ += d;
  }
  void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 absl::Time deadline) const override {
    if (Now() >= deadline) return;
    cv.wait_for(lock, std::chrono::milliseconds(1));
  }

 private:
  // Our std::mutex, not absl::Mutex: ThreadSanitizer sees through it
  // (Debian's absl is not built with TSan).
  mutable Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_MODEL_CLOCK_H_
