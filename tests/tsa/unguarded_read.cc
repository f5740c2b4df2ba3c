// Must NOT compile with -Wthread-safety -Werror=thread-safety: it reads a
// member guarded by a Mutex (daemon/model/mutex.h) without holding it.
// deploy/scripts/test.sh checks that it fails, so that the analysis that
// checks the daemon's annotations is known to be switched on and working.
#include "daemon/model/mutex.h"

namespace lockstep::daemon {

class Counter {
 public:
  int Read() const { return count_; }  // the violation: mu_ is not held

 private:
  mutable Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

int Use() { return Counter().Read(); }

}  // namespace lockstep::daemon
