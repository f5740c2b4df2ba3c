// Size bounds on every request, checked before a handler looks at it.
//
// A client (or an attacker) can send a 3 MB "target" or a million database
// filters; the planner would chew on them for seconds and echo them back in
// errors larger than a client accepts. Every string field of a request is
// an identifier, a pattern, a name or an actor: short by nature.
#ifndef LOCKSTEP_DAEMON_RPC_REQUEST_BOUNDS_H_
#define LOCKSTEP_DAEMON_RPC_REQUEST_BOUNDS_H_

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

namespace lockstep::daemon {

inline constexpr size_t kMaxRequestString = 512;     // bytes, any string field
inline constexpr int kMaxRequestListEntries = 1000;  // any repeated or map field

// INVALID_ARGUMENT naming the field and its size (never its content) when a
// string field of `request`, at any depth, is longer than kMaxRequestString
// or a repeated field has more than kMaxRequestListEntries entries; OK
// otherwise.
grpc::Status CheckRequestBounds(const google::protobuf::Message& request);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_REQUEST_BOUNDS_H_
