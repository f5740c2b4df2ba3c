// No reply larger than a client accepts.
//
// gRPC clients refuse a message over 4 MiB unless told otherwise (the
// lockstep CLI, grpcurl, a script's default channel): "Received message
// larger than max". A rollout's steps each keep up to 64 KiB of Alembic's
// output, so one rollout of a hundred tenants, or a list of rollouts, went
// over, and `rollout ID`, `rollouts` and `watch` failed for as long as it
// was listed. FitRolloutReply leaves step output out of such a reply until
// it fits, saying so in each step it cut; `lockstep watch ID` replays every
// line from the event log.
#ifndef LOCKSTEP_DAEMON_RPC_REPLY_SIZE_H_
#define LOCKSTEP_DAEMON_RPC_REPLY_SIZE_H_

#include <cstddef>
#include <vector>

#include <google/protobuf/message.h>

#include "lockstep/v1/lockstep.pb.h"

namespace lockstep::daemon {

// 4 MiB less room for framing and what the handler adds after.
constexpr size_t kMaxReplyBytes = 4 * 1024 * 1024 - 256 * 1024;

// While `reply` is larger than `budget`: the output of steps that
// succeeded is left out first; then the others keep their last 4 KiB; then
// no step keeps any. A cut output starts with a line saying what was left
// out. Returns how many step outputs were cut.
int FitRolloutReply(const google::protobuf::Message& reply,
                    const std::vector<v1::Rollout*>& rollouts, size_t budget = kMaxReplyBytes);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_REPLY_SIZE_H_
