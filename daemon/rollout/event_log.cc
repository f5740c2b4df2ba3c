#include "daemon/rollout/event_log.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace lockstep::daemon {

EventLog::EventLog(StateStore* store, std::function<void(const absl::Status&)> on_error,
                   absl::Duration flush_every)
    : store_(store), on_error_(std::move(on_error)), flush_every_(flush_every) {
  writer_ = std::thread([this] { WriterLoop(); });
}

EventLog::~EventLog() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  queued_cv_.notify_all();
  writer_.join();
  (void)Flush();  // what was appended after the writer's last batch
}

void EventLog::WriterLoop() {
  MutexLock lock(mu_);
  while (!stopping_) {
    queued_cv_.wait(lock.native(), [&] {
      mu_.AssertHeld();
      return stopping_ || !queue_.empty();
    });
    if (stopping_) break;
    // Gather what comes in the next flush_every into one transaction.
    queued_cv_.wait_for(lock.native(), absl::ToChronoNanoseconds(flush_every_), [&] {
      mu_.AssertHeld();
      return stopping_;
    });
    lock.unlock();
    // A failed batch stays queued for the next one; the owner hears of it
    // here, with no lock of this log held.
    if (absl::Status written = Flush(); !written.ok() && on_error_) on_error_(written);
    lock.lock();
  }
}

absl::StatusOr<EventLog::Log*> EventLog::LogOf(const std::string& rollout_id) {
  auto it = logs_.find(rollout_id);
  if (it != logs_.end()) return &it->second;
  mu_.unlock();  // the store is read once per rollout, without holding readers up
  absl::StatusOr<int64_t> last = store_->LastEventSeq(rollout_id);
  mu_.lock();
  if (!last.ok()) return last.status();
  it = logs_.find(rollout_id);  // another thread may have read it meanwhile
  if (it == logs_.end()) {
    it = logs_.emplace(rollout_id, Log{}).first;
    it->second.last_seq = it->second.written_seq = *last;
  }
  return &it->second;
}

absl::Status EventLog::Append(const std::string& rollout_id, RolloutEvent* event, bool durable) {
  {
    MutexLock lock(mu_);
    absl::StatusOr<Log*> found = LogOf(rollout_id);
    if (!found.ok()) return found.status();
    Log& log = **found;
    if (!durable && queued_output_ >= kMaxQueued) {
      ++log.dropped;  // the store does not keep up (or refuses writes)
      return absl::OkStatus();
    }
    if (log.dropped > 0) {
      RolloutEvent gap{++log.last_seq,
                       event->at,
                       EventKind::kOutput,
                       event->environment,
                       event->database,
                       absl::StrCat("lockstep: ", log.dropped,
                                    " output lines were dropped here: the state store did not "
                                    "keep up")};
      log.dropped = 0;
      log.recent.push_back(gap);
      queue_.push_back({rollout_id, gap});
    }
    event->seq = ++log.last_seq;
    log.recent.push_back(*event);
    queue_.push_back({rollout_id, *event});
    if (event->kind == EventKind::kOutput) ++queued_output_;
  }
  if (durable) return Flush();
  queued_cv_.notify_one();
  return absl::OkStatus();
}

absl::Status EventLog::Flush() {
  MutexLock writing(write_mu_);
  std::vector<Queued> batch;
  {
    MutexLock lock(mu_);
    batch.swap(queue_);
  }
  if (batch.empty()) return absl::OkStatus();
  std::vector<std::pair<std::string, RolloutEvent>> rows;
  rows.reserve(batch.size());
  for (const Queued& q : batch) rows.emplace_back(q.rollout_id, q.event);
  absl::Status written = store_->WriteEvents(rows);
  MutexLock lock(mu_);
  if (!written.ok()) {
    // Tried again with the next batch, ahead of what came meanwhile.
    queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()),
                  std::make_move_iterator(batch.end()));
  } else {
    for (const Queued& q : batch) {
      if (q.event.kind == EventKind::kOutput) --queued_output_;
      Log& log = logs_[q.rollout_id];
      log.written_seq = std::max(log.written_seq, q.event.seq);
    }
    for (auto it = logs_.begin(); it != logs_.end();) {
      Trim(it->second);
      it = it->second.forget && it->second.written_seq == it->second.last_seq ? logs_.erase(it)
                                                                             : std::next(it);
    }
  }
  return written;
}

void EventLog::Trim(Log& log) {
  // Written events are a prefix of `recent` (batches are written in order)
  // and every unwritten one is in it: those are the last last_seq - written_seq.
  const size_t unwritten = static_cast<size_t>(log.last_seq - log.written_seq);
  while (log.recent.size() > kKeepWritten + unwritten) log.recent.pop_front();
}

absl::StatusOr<std::vector<RolloutEvent>> EventLog::Read(const std::string& rollout_id,
                                                         int64_t after_seq, int limit) {
  std::vector<RolloutEvent> out;
  {
    MutexLock lock(mu_);
    auto it = logs_.find(rollout_id);
    if (it != logs_.end() && !it->second.recent.empty() &&
        after_seq + 1 >= it->second.recent.front().seq) {
      for (const RolloutEvent& e : it->second.recent) {
        if (e.seq <= after_seq) continue;
        if (static_cast<int>(out.size()) >= limit) break;
        out.push_back(e);
      }
      return out;
    }
  }
  // Older than what memory holds: those are all in the store.
  return store_->Events(rollout_id, after_seq, limit);
}

void EventLog::Forget(const std::string& rollout_id) {
  MutexLock lock(mu_);
  auto it = logs_.find(rollout_id);
  if (it == logs_.end()) return;
  if (it->second.written_seq == it->second.last_seq) {
    logs_.erase(it);
  } else {
    it->second.forget = true;
  }
}

}  // namespace lockstep::daemon
