// The `lockstep` commands that read an Alembic project and no database:
// heads, branches, history, show, lint and path. Text output matches
// Alembic's byte for byte; `-o json` gives stable field names.
#ifndef LOCKSTEP_CLIENT_OFFLINE_COMMANDS_H_
#define LOCKSTEP_CLIENT_OFFLINE_COMMANDS_H_

#include <ostream>

#include "client/cli_args.h"

namespace lockstep::client {

// Exit codes shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotClean = 3;
// `rollout --watch` and `watch`: how the rollout ended (or that it waits).
inline constexpr int kExitRolloutFailed = 4;
inline constexpr int kExitRolloutHalted = 5;
inline constexpr int kExitAwaitingApproval = 6;
inline constexpr int kExitRolloutAborted = 7;

// True for the commands this file runs.
bool IsOfflineCommand(const std::string& command);
// True for the commands lockstep-online runs over gRPC (status, db, refresh).
// Here, not beside them, so that `lockstep` can route without linking gRPC.
bool IsOnlineCommand(const std::string& command);

// Runs one offline command; writes results to `out` and errors to `err`.
int RunOfflineCommand(const CliArgs& args, std::ostream& out, std::ostream& err);

}  // namespace lockstep::client

#endif  // LOCKSTEP_CLIENT_OFFLINE_COMMANDS_H_
