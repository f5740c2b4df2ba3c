#include "client/cli_args.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace lockstep::client {
namespace {

struct Spec {
  const char* long_name;
  char short_name;
  bool takes_value;
};

constexpr Spec kSpecs[] = {
    {"config", 'c', true},        {"scripts", 0, true},       {"name", 'n', true},
    {"output", 'o', true},        {"rev-range", 'r', true},   {"from", 0, true},
    {"server", 0, true},          {"verbose", 'v', false},    {"resolve-dependencies", 0, false},
    {"help", 'h', false},         {"check", 0, false},        {"downgrade", 0, false},
    {"to", 0, true},              {"env", 0, true},           {"db", 0, true},
    {"watch", 0, false},          {"wait", 0, false},         {"override-promotion", 0, false},
    {"actor", 0, true},           {"limit", 0, true},         {"allow-lint", 0, true},
    {"yes", 0, false},
};

const Spec* FindLong(const std::string& name) {
  for (const Spec& s : kSpecs) {
    if (name == s.long_name) return &s;
  }
  return nullptr;
}

const Spec* FindShort(char c) {
  for (const Spec& s : kSpecs) {
    if (s.short_name == c) return &s;
  }
  return nullptr;
}

}  // namespace

std::optional<std::string> CliArgs::Option(const std::string& name) const {
  auto it = options.find(name);
  if (it == options.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<CliArgs> ParseCliArgs(int argc, char** argv) {
  CliArgs out;
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    const Spec* spec = nullptr;
    std::optional<std::string> inline_value;
    if (!only_positional && arg == "--") {
      only_positional = true;
      continue;
    }
    // A lone "-N" is a relative revision, not an option.
    bool looks_numeric = arg.size() > 1 && arg[0] == '-' && std::isdigit(static_cast<unsigned char>(arg[1]));
    if (!only_positional && absl::StartsWith(arg, "--")) {
      std::string name = arg.substr(2);
      size_t eq = name.find('=');
      if (eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      spec = FindLong(name);
      if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown option '--", name, "'"));
    } else if (!only_positional && arg.size() >= 2 && arg[0] == '-' && !looks_numeric) {
      spec = FindShort(arg[1]);
      if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown option '", arg, "'"));
      if (arg.size() > 2) {
        if (!spec->takes_value) {
          return absl::InvalidArgumentError(absl::StrCat("option '-", std::string(1, arg[1]),
                                                         "' takes no value"));
        }
        inline_value = arg.substr(2);
      }
    }
    if (spec == nullptr) {
      if (out.command.empty()) {
        out.command = arg;
      } else {
        out.positional.push_back(arg);
      }
      continue;
    }
    if (!spec->takes_value) {
      if (inline_value.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat("option '--", spec->long_name, "' takes no value"));
      }
      out.flags.insert(spec->long_name);
      continue;
    }
    if (!inline_value.has_value()) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("option '--", spec->long_name, "' needs a value"));
      }
      inline_value = argv[++i];
    }
    out.options[spec->long_name] = *inline_value;
  }
  return out;
}

}  // namespace lockstep::client
