// WatchRollout streams without a thread each. A stream is a gRPC callback
// reactor (it holds no thread while it waits); one hub thread finds the
// streams with events to send: every 100 ms it looks whether the engine
// emitted any event (RolloutEngine::EventsEmitted; the engine wakes nobody,
// so a step printing 20,000 lines costs the hub nothing per line), reads the
// next batch for each stream that is not writing, and hands the batch to the
// stream, whose writes then go on from gRPC's own completion threads. A
// stream that finished a batch is read again at once (a reader catching up).
//
// A slow reader holds back only itself: while its writes are outstanding it
// asks for nothing, and when it is done it reads on from where it was (the
// engine keeps every event: memory first, then the state store). Alembic's
// output is never waited on by a watcher.
#ifndef LOCKSTEP_DAEMON_RPC_WATCH_HUB_H_
#define LOCKSTEP_DAEMON_RPC_WATCH_HUB_H_

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "daemon/model/mutex.h"
#include "daemon/rollout/engine.h"
#include "lockstep/v1/lockstep.pb.h"

namespace lockstep::daemon {

class WatchHub {
 public:
  explicit WatchHub(RolloutEngine* engine);
  ~WatchHub();  // Stop()s
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // A stream of rollout `id`'s events after `after_seq`. `on_done` runs
  // once, when gRPC is done with the stream (whatever ended it).
  grpc::ServerWriteReactor<v1::RolloutEvent>* Open(std::string id, int64_t after_seq,
                                                   std::function<void()> on_done);
  // A stream that ends at once with `status`.
  static grpc::ServerWriteReactor<v1::RolloutEvent>* Refuse(const grpc::Status& status);

  // Ends every stream (UNAVAILABLE: shutting down) and refuses new ones.
  void Stop();

  class Stream;  // watch_hub.cc

 private:
  void Loop();
  void Poll(Stream* s);
  bool Read(Stream* s);
  // Streams call these (with their own lock not held).
  void Idle(Stream* s);
  void Gone(Stream* s);

  RolloutEngine* engine_;
  Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Stream*> idle_ ABSL_GUARDED_BY(mu_);   // not writing: poll these
  std::vector<Stream*> fresh_ ABSL_GUARDED_BY(mu_);  // poll at once, new events or not
  std::unordered_set<Stream*> all_ ABSL_GUARDED_BY(mu_);
  Stream* polling_ ABSL_GUARDED_BY(mu_) = nullptr;  // Gone waits while it is
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_WATCH_HUB_H_
