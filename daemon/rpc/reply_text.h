// Every reply leaves lockstepd as valid UTF-8.
//
// Protobuf's parser refuses a string field that is not UTF-8, so a client
// handed one bad byte (a revision id read from a database, a Latin-1 file
// name, Alembic's output cut mid-character) cannot read the reply at all:
// `rollouts` failed for as long as such a rollout was listed and `watch`
// never ended. Handlers return through FinishReply and Watch writes through
// it, so no string field, at any depth, leaves unchecked.
#ifndef LOCKSTEP_DAEMON_RPC_REPLY_TEXT_H_
#define LOCKSTEP_DAEMON_RPC_REPLY_TEXT_H_

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

namespace lockstep::daemon {

// Replaces, in every string field of `reply` at any depth (lists and maps
// included), each byte that is not part of valid UTF-8 with U+FFFD. Cheap
// when everything is valid: one scan per string, no copy.
void MakeValidUtf8(google::protobuf::Message* reply);

// MakeValidUtf8(reply), then OK: the last line of a handler.
inline grpc::Status FinishReply(google::protobuf::Message* reply) {
  MakeValidUtf8(reply);
  return grpc::Status::OK;
}

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_REPLY_TEXT_H_
