// Command-line parsing for `lockstep`: global options may stand before or
// after the command; unknown options are usage errors (exit 2).
#ifndef LOCKSTEP_CLIENT_CLI_ARGS_H_
#define LOCKSTEP_CLIENT_CLI_ARGS_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lockstep::client {

struct CliArgs {
  std::string command;
  std::vector<std::string> positional;          // after the command
  std::map<std::string, std::string> options;   // long name -> value
  std::set<std::string> flags;                  // long names of boolean flags

  bool Flag(const std::string& name) const { return flags.count(name) > 0; }
  std::optional<std::string> Option(const std::string& name) const;
};

// Parses argv[1..]. Options taking a value: --config/-c, --scripts, --name/-n,
// --output/-o, --rev-range/-r, --from, --server. Flags: --verbose/-v,
// --resolve-dependencies, --help/-h, --check, --downgrade.
absl::StatusOr<CliArgs> ParseCliArgs(int argc, char** argv);

}  // namespace lockstep::client

#endif  // LOCKSTEP_CLIENT_CLI_ARGS_H_
