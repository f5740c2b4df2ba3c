// std::mutex, annotated for clang's thread-safety analysis
// (-Wthread-safety, run in CI by deploy/scripts/test.sh): libstdc++'s own
// mutex carries no annotations, so a member marked ABSL_GUARDED_BY(mu_)
// with a plain std::mutex is not checked. These are thin wrappers; they
// still work with std::condition_variable through native().
//
// Example:
//   Mutex mu_;
//   int count_ ABSL_GUARDED_BY(mu_) = 0;
//   void Add() {
//     MutexLock lock(mu_);
//     ++count_;                            // checked: mu_ is held
//     cv_.wait(lock.native(), [&] { return count_ > 1; });
//   }
//   void AddLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { ++count_; }
#ifndef LOCKSTEP_DAEMON_MODEL_MUTEX_H_
#define LOCKSTEP_DAEMON_MODEL_MUTEX_H_

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace lockstep::daemon {

class ABSL_LOCKABLE Mutex {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // Tells the analysis that the caller holds it (a lambda run under a lock
  // the analysis cannot follow, e.g. a condition variable's predicate).
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// std::unique_lock for Mutex: held from construction to destruction,
// except between unlock() and lock().
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : lock_(mu.mu_) {}
  ~MutexLock() ABSL_UNLOCK_FUNCTION() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { lock_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { lock_.unlock(); }
  // For std::condition_variable waits (which release and retake it).
  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_MODEL_MUTEX_H_
