// Rollout events on their way to the state store, so that a step printing
// 20,000 lines never waits on the store, or on the people watching it.
//
// Every event is numbered (seq, per rollout) and kept in memory the moment
// it is appended: readers (`watch`, `rollout ID`) see it at once. Events are
// written to the state store in batches, one transaction each, by a writer
// thread, at most `flush_every` after they were appended. An event that is
// part of the write-ahead record (step_started, verified, ...: anything but
// Alembic's output lines) is appended `durable`: it returns once it, and
// every event appended before it, is in the store. So a killed lockstepd
// loses at most the last `flush_every` of output lines, never a state event.
//
// Readers take events from memory while they are there (the newest
// kKeepWritten written events of each rollout, and every one not written
// yet), older ones from the store: a hundred `watch` streams do not read the
// store the step is writing to, and a reader that falls behind reads the
// store in batches, at its own pace, holding nothing up.
//
// When the store refuses a batch, its events stay queued (and readable);
// the next batch tries again. A durable Append returns the error; the
// writer thread gives it to `on_error` (called with no lock of the log held). At most kMaxQueued
// output lines wait; past that they are dropped, and the next event says how
// many.
//
// Thread-safe.
#ifndef LOCKSTEP_DAEMON_ROLLOUT_EVENT_LOG_H_
#define LOCKSTEP_DAEMON_ROLLOUT_EVENT_LOG_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/model/mutex.h"
#include "daemon/model/rollout.h"
#include "daemon/state/state_store.h"

namespace lockstep::daemon {

class EventLog {
 public:
  static constexpr size_t kKeepWritten = 2000;  // per rollout, for readers
  static constexpr size_t kMaxQueued = 100000;  // output lines waiting, over all rollouts

  // `store` must outlive the log. `on_error` gets the writer thread's
  // failed writes.
  EventLog(StateStore* store, std::function<void(const absl::Status&)> on_error,
           absl::Duration flush_every = absl::Milliseconds(50));
  ~EventLog();  // writes what is queued, then stops the writer
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Numbers `event` (one after the rollout's last, in memory or stored) and
  // keeps it. `durable`: returns once it and everything appended before it
  // is written, with the store's error if that failed (the event is still
  // kept, and readable). Otherwise it returns at once.
  absl::Status Append(const std::string& rollout_id, RolloutEvent* event, bool durable);

  // The events after `after_seq`, at most `limit`, in order.
  absl::StatusOr<std::vector<RolloutEvent>> Read(const std::string& rollout_id, int64_t after_seq,
                                                 int limit);

  // Writes everything queued now; the store's error if that failed.
  absl::Status Flush();

  // A finished rollout: its events leave memory once they are written.
  void Forget(const std::string& rollout_id);

 private:
  struct Log {
    int64_t last_seq = 0;             // the newest event's seq
    int64_t written_seq = 0;          // every event up to here is in the store
    std::deque<RolloutEvent> recent;  // the newest events, all unwritten ones among them
    int64_t dropped = 0;              // output lines dropped since the last kept event
    bool forget = false;              // drop once written
  };
  struct Queued {
    std::string rollout_id;
    RolloutEvent event;
  };

  // The rollout's log, its last seq read from the store the first time
  // (mu_ is let go meanwhile, so that readers are not held up).
  absl::StatusOr<Log*> LogOf(const std::string& rollout_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Trim(Log& log) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);  // keeps kKeepWritten written events
  void WriterLoop();

  StateStore* store_;
  std::function<void(const absl::Status&)> on_error_;
  const absl::Duration flush_every_;

  Mutex write_mu_;  // one batch at a time, in the order they were queued
  Mutex mu_;        // below write_mu_ when both are held
  std::condition_variable queued_cv_;
  std::map<std::string, Log> logs_ ABSL_GUARDED_BY(mu_);
  std::vector<Queued> queue_ ABSL_GUARDED_BY(mu_);  // appended, not yet written
  size_t queued_output_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_EVENT_LOG_H_
