// Command-line parsing for `lockstep`, on CLI11: every command declares its
// own options and arguments (cli_args.cc), and `--help` is generated from the
// same declarations. Global options (-c, --scripts, --inventory, -n, -o, --server, -v) may
// stand before or after the command; an option the command does not take is
// a usage error (exit 2).
#ifndef LOCKSTEP_CLIENT_CLI_ARGS_H_
#define LOCKSTEP_CLIENT_CLI_ARGS_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lockstep::client {

// One parsed command line. Options and flags are keyed by their long name
// ("config", "rev-range"), whether given before or after the command.
struct CliArgs {
  std::string command;                         // "" when none was given
  std::vector<std::string> positional;         // the command's arguments
  std::map<std::string, std::string> options;  // long name -> value (the last one given)
  std::set<std::string> flags;                 // long names of boolean flags given
  // --help / -h / `lockstep help [COMMAND]`: print HelpText(command), exit 0.
  bool help = false;

  bool Flag(const std::string& name) const { return flags.count(name) > 0; }
  std::optional<std::string> Option(const std::string& name) const;
};

// Parses argv[1..]. Usage errors (an unknown command, an option the command
// does not take, a missing value or argument) are InvalidArgument, with a
// message naming the option and the command.
absl::StatusOr<CliArgs> ParseCliArgs(int argc, char** argv);

// `lockstep --help` (command "": every command with a one-line description,
// the global options, the exit codes) or `lockstep COMMAND --help` (its
// arguments and options, then the global options). "" for an unknown command.
std::string HelpText(const std::string& command);

}  // namespace lockstep::client

#endif  // LOCKSTEP_CLIENT_CLI_ARGS_H_
