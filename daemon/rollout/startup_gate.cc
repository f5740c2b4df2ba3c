#include "daemon/rollout/startup_gate.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace lockstep::daemon {

void StartupGate::Expire(absl::Time now) {
  for (auto it = starting_.begin(); it != starting_.end();) {
    it = now - it->second >= window_ ? starting_.erase(it) : std::next(it);
  }
}

uint64_t StartupGate::Enter(int slots, const std::atomic<bool>* cancel) {
  MutexLock lock(mu_);
  while (true) {
    if (cancel != nullptr && cancel->load()) return 0;
    absl::Time now = absl::Now();
    Expire(now);
    if (slots < 1 || static_cast<int>(starting_.size()) < slots) {
      uint64_t ticket = next_ticket_++;
      starting_[ticket] = now;
      return ticket;
    }
    // Wake when a run leaves, the oldest one's window ends, or to look at
    // `cancel` again.
    absl::Duration wait = absl::Milliseconds(100);
    for (const auto& [ticket, entered] : starting_) {
      wait = std::min(wait, entered + window_ - now);
    }
    left_.wait_for(lock.native(), absl::ToChronoNanoseconds(std::max(wait, absl::Milliseconds(1))));
  }
}

void StartupGate::Leave(uint64_t ticket) {
  MutexLock lock(mu_);
  if (starting_.erase(ticket) > 0) left_.notify_all();
}

int StartupGate::starting() const {
  MutexLock lock(mu_);
  absl::Time now = absl::Now();
  int n = 0;
  for (const auto& [ticket, entered] : starting_) n += now - entered < window_ ? 1 : 0;
  return n;
}

}  // namespace lockstep::daemon
