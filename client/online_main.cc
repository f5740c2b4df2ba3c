// `lockstep-online`: the gRPC commands of `lockstep` (status, plan, rollout...).
// `lockstep` executes it in place so that the offline commands never pay
// gRPC's start-up cost; it can also be run directly.
#include <iostream>

#include "client/cli_args.h"
#include "client/offline_commands.h"
#include "client/online_commands.h"

int main(int argc, char** argv) {
  using namespace lockstep::client;
  absl::StatusOr<CliArgs> args = ParseCliArgs(argc, argv);
  if (!args.ok()) {
    std::cerr << "lockstep: " << args.status().message() << "\n";
    return kExitUsage;
  }
  if (args->help) {
    std::cout << HelpText(args->command);
    return kExitOk;
  }
  if (!IsOnlineCommand(args->command)) {
    std::cerr << "lockstep-online: runs the online commands; see lockstep --help\n";
    return kExitUsage;
  }
  return RunOnlineCommand(*args, std::cout, std::cerr);
}
