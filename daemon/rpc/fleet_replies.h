// GetFleet replies built once per snapshot and request, and shared by every
// reader as serialized bytes. On a release day fifty people and scripts ask
// for the same status at once: building the reply (converting every
// database, checking every string is UTF-8) and serializing it once per
// refresh, not once per caller, keeps the CPU for the refresh itself.
//
// Readers that ask while the reply they want is being built wait for it
// without holding a thread (their `done` runs on the builder's thread).
#ifndef LOCKSTEP_DAEMON_RPC_FLEET_REPLIES_H_
#define LOCKSTEP_DAEMON_RPC_FLEET_REPLIES_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/model/fleet.h"
#include "daemon/model/mutex.h"
#include "lockstep/v1/lockstep.pb.h"

namespace lockstep::daemon {

class FleetReplies {
 public:
  struct Reply {
    grpc::Status status;
    std::shared_ptr<const std::string> bytes;  // the serialized reply, when OK
  };
  using Build = std::function<grpc::Status(const v1::GetFleetRequest&, const FleetSnapshot&,
                                           v1::GetFleetResponse*)>;

  explicit FleetReplies(Build build) : build_(std::move(build)) {}

  // Calls `done` with the reply to `request` (whose serialized form is
  // `key`) against `snapshot`: at once when it was built before, else when
  // it is (built once, however many ask for it meanwhile).
  void Get(std::shared_ptr<const FleetSnapshot> snapshot, const std::string& key,
           const v1::GetFleetRequest& request, std::function<void(const Reply&)> done);

  // Replies built since start (how tests see that replies are shared).
  int builds();

 private:
  // Replies kept for the newest snapshot: past this many different
  // requests (filters, pages), or this many bytes in all, built ones go to
  // make room (a client sending many different requests costs memory
  // bounded by this, not by the fleet times its requests).
  static constexpr size_t kKept = 256;
  static constexpr size_t kKeptBytes = 64 << 20;
  struct Entry {
    std::shared_ptr<const FleetSnapshot> snapshot;  // keeps its address unique
    int seq = 0;                                    // the order they were built in
    std::optional<Reply> reply;
    std::vector<std::function<void(const Reply&)>> waiting;
  };
  using Key = std::pair<const FleetSnapshot*, std::string>;
  void Evict(const FleetSnapshot* newest) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Build build_;
  Mutex mu_;
  std::map<Key, Entry> entries_ ABSL_GUARDED_BY(mu_);
  int builds_ ABSL_GUARDED_BY(mu_) = 0;
};

// `bytes` as one slice of a ByteBuffer, without a copy (the slice holds a
// reference to them).
grpc::Slice SharedSlice(std::shared_ptr<const std::string> bytes);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_FLEET_REPLIES_H_
