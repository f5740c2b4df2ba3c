#include "daemon/rpc/watch_hub.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "daemon/rpc/lockstep_service.h"
#include "daemon/rpc/proto_convert.h"

namespace lockstep::daemon {
namespace {

// Output lines wake nobody in the engine (a step printing 20,000 lines would
// otherwise wake every watcher 20,000 times): the hub looks for them, and
// for any other event, this often.
constexpr auto kTick = std::chrono::milliseconds(100);
// Events a stream is handed at a time: what a reader that does not read
// holds lockstepd's memory with (an output line's message is ~100 bytes).
constexpr int kBatch = 64;

v1::RolloutEvent ToProto(const std::string& id, const RolloutEvent& e, v1::RolloutState state) {
  v1::RolloutEvent out;
  out.set_rollout_id(id);
  out.set_seq(e.seq);
  SetTime(e.at, out.mutable_at());
  out.set_kind(ToWire(e.kind));
  out.set_environment(e.environment);
  out.set_database(e.database);
  out.set_message(e.message);
  out.set_rollout_state(state);
  // Every field is valid UTF-8 already (the engine made each event's text
  // valid when it was emitted; the id was checked, kinds and states are
  // lockstep's own): no reflection walk per event and watcher.
  return out;
}

// A stream refused before it started.
class Refused final : public grpc::ServerWriteReactor<v1::RolloutEvent> {
 public:
  explicit Refused(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

class WatchHub::Stream final : public grpc::ServerWriteReactor<v1::RolloutEvent> {
 public:
  Stream(WatchHub* hub, std::string id, int64_t after, std::function<void()> on_done)
      : id(std::move(id)), after(after), hub_(hub), on_done_(std::move(on_done)) {}

  // The hub's thread only, while it polls this stream.
  const std::string id;
  int64_t after;  // the last event handed to Send
  // The hub's, under its mu_: in the list the hub's thread is working
  // through (a stream is in at most one of idle_, fresh_ and that list).
  bool due = false;
  std::optional<RolloutState> ended_as;  // the hub's thread only

  // Writes `batch` one message at a time; then, if `last`, ends the stream
  // (OK), else asks the hub for more. An empty batch must be `last`.
  void Send(std::vector<v1::RolloutEvent> batch, bool last) {
    MutexLock lock(mu_);
    if (ended_) return;
    batch_ = std::move(batch);
    next_ = 0;
    last_ = last;
    if (batch_.empty()) return FinishLocked(grpc::Status::OK);
    WriteLocked();
  }

  // Ends the stream with `status` once any write in flight is done.
  void End(const grpc::Status& status) {
    MutexLock lock(mu_);
    if (ended_) return;
    if (writing_) {
      pending_ = status;
      return;
    }
    FinishLocked(status);
  }

  bool ended() {
    MutexLock lock(mu_);
    return ended_;
  }

 private:
  void OnWriteDone(bool ok) override {
    {
      MutexLock lock(mu_);
      writing_ = false;
      if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "watcher went away"));
      if (pending_) return FinishLocked(*pending_);
      if (++next_ < batch_.size()) return WriteLocked();
      if (last_) return FinishLocked(grpc::Status::OK);
      batch_.clear();
    }
    hub_->Idle(this);  // a reader catching up asks again at once
  }

  void OnCancel() override {
    MutexLock lock(mu_);
    // A write in flight fails and ends the stream in OnWriteDone.
    if (!writing_ && !ended_)
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "watcher went away"));
  }

  void OnDone() override {
    hub_->Gone(this);
    on_done_();
    delete this;
  }

  void WriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    // No buffer hint: a hinted write may not complete until a later write
    // flushes it, and the next write waits for this one to complete.
    StartWrite(&batch_[next_]);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ended_ = true;
    Finish(status);
  }

  WatchHub* hub_;
  std::function<void()> on_done_;
  Mutex mu_;
  std::vector<v1::RolloutEvent> batch_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  bool last_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> pending_ ABSL_GUARDED_BY(mu_);
};

WatchHub::WatchHub(RolloutEngine* engine) : engine_(engine), thread_([this] { Loop(); }) {}

WatchHub::~WatchHub() { Stop(); }

grpc::ServerWriteReactor<v1::RolloutEvent>* WatchHub::Open(std::string id, int64_t after_seq,
                                                           std::function<void()> on_done) {
  auto* s = new Stream(this, std::move(id), after_seq, std::move(on_done));
  {
    MutexLock lock(mu_);
    all_.insert(s);
    if (stopping_) {
      s->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "lockstepd is shutting down"));
      return s;
    }
    fresh_.push_back(s);
  }
  wake_.notify_all();
  return s;
}

grpc::ServerWriteReactor<v1::RolloutEvent>* WatchHub::Refuse(const grpc::Status& status) {
  return new Refused(status);
}

void WatchHub::Stop() {
  {
    MutexLock lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      for (Stream* s : all_)
        s->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "lockstepd is shutting down"));
    }
  }
  wake_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void WatchHub::Idle(Stream* s) {
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    fresh_.push_back(s);
  }
  wake_.notify_all();
}

void WatchHub::Gone(Stream* s) {
  MutexLock lock(mu_);
  wake_.wait(lock.native(), [&] {
    mu_.AssertHeld();  // the wait holds it while it asks
    return polling_ != s;
  });
  all_.erase(s);
  idle_.erase(std::remove(idle_.begin(), idle_.end(), s), idle_.end());
  fresh_.erase(std::remove(fresh_.begin(), fresh_.end(), s), fresh_.end());
}

void WatchHub::Loop() {
  uint64_t seen = 0;
  while (true) {
    {
      MutexLock lock(mu_);
      wake_.wait_for(lock.native(), kTick, [&] {
        mu_.AssertHeld();
        return stopping_ || !fresh_.empty();
      });
      if (stopping_) return;
    }
    const uint64_t now = engine_->EventsEmitted();
    std::vector<Stream*> due;
    {
      MutexLock lock(mu_);
      due.swap(fresh_);
      if (now != seen) {
        due.insert(due.end(), idle_.begin(), idle_.end());
        idle_.clear();
      }
      for (Stream* s : due) s->due = true;
    }
    seen = now;
    for (Stream* s : due) Poll(s);
  }
}

// Hands `s` its next batch, or ends it; true when there is nothing yet.
bool WatchHub::Read(Stream* s) {
  bool active = false;
  RolloutState state = RolloutState::kPlanned;
  absl::StatusOr<std::vector<RolloutEvent>> events =
      engine_->ReadEvents(s->id, s->after, kBatch, &active, &state);
  if (events.ok() && !active) {
    if (!s->ended_as) {  // read once: an ended rollout's state stays
      absl::StatusOr<RolloutState> now = engine_->StateOf(s->id);  // NOT_FOUND: no such rollout
      if (!now.ok())
        events = now.status();
      else
        s->ended_as = *now;
    }
    if (s->ended_as) state = *s->ended_as;
  }
  if (!events.ok()) {
    s->End(ToGrpc(events.status()));
    return false;
  }
  const bool finished = !active && events->size() < static_cast<size_t>(kBatch);
  if (events->empty() && !finished) return true;
  if (!events->empty()) s->after = events->back().seq;
  std::vector<v1::RolloutEvent> batch;
  batch.reserve(events->size());
  for (const RolloutEvent& e : *events) batch.push_back(ToProto(s->id, e, ToWire(state)));
  s->Send(std::move(batch), finished);
  return false;
}

void WatchHub::Poll(Stream* s) {
  {
    MutexLock lock(mu_);
    // Gone since it was due (and maybe another stream has its address now).
    if (!all_.count(s) || !s->due) return;
    s->due = false;
    polling_ = s;
  }
  const bool waiting = Read(s);
  {
    MutexLock lock(mu_);
    if (waiting && !s->ended()) idle_.push_back(s);
    polling_ = nullptr;
  }
  wake_.notify_all();  // a Gone waiting for this stream
}

}  // namespace lockstep::daemon
