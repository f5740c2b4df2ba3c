// The online rollout and backup commands: plan, rollout, watch, rollouts,
// approve, pause, resume, abort, downgrade, backups, restore.
#ifndef LOCKSTEP_CLIENT_ROLLOUT_COMMANDS_H_
#define LOCKSTEP_CLIENT_ROLLOUT_COMMANDS_H_

#include "client/online_common.h"
#include "lockstep/v1/lockstep.grpc.pb.h"

namespace lockstep::client {

int RunRolloutCommand(Context& c, v1::Lockstep::Stub& stub);

}  // namespace lockstep::client

#endif  // LOCKSTEP_CLIENT_ROLLOUT_COMMANDS_H_
