// The `lockstep` commands that ask lockstepd over gRPC: status, db, refresh.
// The server comes from --server, else $LOCKSTEP_SERVER, else
// 127.0.0.1:50051.
#ifndef LOCKSTEP_CLIENT_ONLINE_COMMANDS_H_
#define LOCKSTEP_CLIENT_ONLINE_COMMANDS_H_

#include <ostream>

#include "client/cli_args.h"

namespace lockstep::client {

int RunOnlineCommand(const CliArgs& args, std::ostream& out, std::ostream& err);

}  // namespace lockstep::client

#endif  // LOCKSTEP_CLIENT_ONLINE_COMMANDS_H_
