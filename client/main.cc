// `lockstep`: the command-line client. Offline commands read an Alembic
// project directly; online commands (added with the daemon) talk gRPC.
#include <iostream>

#include "client/cli_args.h"
#include "client/offline_commands.h"

namespace {

constexpr char kUsage[] = R"(usage: lockstep [options] COMMAND [ARGS]

Offline commands (read alembic.ini like Alembic, or --scripts DIR):
  heads [--resolve-dependencies] [-v]   show current heads
  branches [-v]                         show branch points
  history [-r START:END] [-v]           list revisions, newest first
  show REV                              show one revision (or several: heads)
  lint                                  report problems; exit 3 on findings
  path TARGET [--from R1,R2] [--downgrade]
                                        the steps and version-table changes
                                        `alembic upgrade|downgrade TARGET` runs

Options:
  -c, --config FILE     alembic.ini (default: $ALEMBIC_CONFIG or ./alembic.ini)
  --scripts DIR         a script directory instead of an ini file
  -n, --name SECTION    the ini section (default: alembic)
  -o, --output FORMAT   text (default) or json
  -h, --help            this help

Exit codes: 0 ok, 1 error, 2 usage, 3 findings/not clean.
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace lockstep::client;
  absl::StatusOr<CliArgs> args = ParseCliArgs(argc, argv);
  if (!args.ok()) {
    std::cerr << "lockstep: " << args.status().message() << "\n" << kUsage;
    return kExitUsage;
  }
  if (args->Flag("help") || args->command.empty() || args->command == "help") {
    std::cout << kUsage;
    return args->command.empty() && !args->Flag("help") ? kExitUsage : kExitOk;
  }
  if (IsOfflineCommand(args->command)) return RunOfflineCommand(*args, std::cout, std::cerr);
  std::cerr << "lockstep: unknown command '" << args->command << "'\n" << kUsage;
  return kExitUsage;
}
