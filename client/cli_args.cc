#include "client/cli_args.h"

#include <algorithm>
#include <memory>
#include <string_view>

#include <CLI/CLI.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lockstep::client {
namespace {

constexpr char kOffline[] =
    "Offline commands (read the project like Alembic: -c, --scripts or --inventory):";
constexpr char kOnline[] =
    "Online commands (ask lockstepd at --server ADDR, else $LOCKSTEP_SERVER,\n"
    "else 127.0.0.1:50051):";
// The global options, in three groups: help shows a command the group of
// its kind and the common one.
constexpr char kProjectOptions[] = "Project options (offline commands):";
constexpr char kConnectionOptions[] = "Connection options (online commands):";
constexpr char kCommonOptions[] = "Options of every command (before or after it):";
constexpr char kExitCodes[] =
    "Exit codes: 0 ok, 1 error, 2 usage, 3 findings/not clean; rollout --watch,\n"
    "watch and downgrade: 0 succeeded, 4 failed, 5 halted, 6 awaiting approval,\n"
    "7 aborted.\n";

// Small wrappers over CLI11's builders, so that each definition below reads
// as one line: names, value name, help.
// A value the command uses when the option is not given is its
// `default_value`: ParseCliArgs fills it in and help shows it, so the two
// cannot disagree.
CLI::Option* Value(CLI::App* app, const std::string& names, const std::string& value_name,
                   const std::string& help, const std::string& default_value = "") {
  CLI::Option* o = app->add_option(names, CLI::callback_t(), help)->type_name(value_name);
  if (!default_value.empty()) o->default_str(default_value);
  return o;
}

CLI::Option* Flag(CLI::App* app, const std::string& names, const std::string& help) {
  return app->add_flag(names, help)->disable_flag_override();
}

// The command's one argument (positional); `required` or optional.
CLI::Option* Argument(CLI::App* app, const std::string& name, bool required,
                      const std::string& help) {
  CLI::Option* o = app->add_option(name, CLI::callback_t(), help);
  return required ? o->required() : o;
}

void AddActor(CLI::App* c) {
  Value(c, "--actor", "NAME",
        "who does it, recorded (default: $LOCKSTEP_ACTOR, else your account@host)");
}

// What `plan` and `rollout` both take: the request for a rollout. A plan
// changes nothing and defaults to heads; a rollout changes databases, and
// where to is said, never defaulted.
void AddRolloutRequest(CLI::App* c, bool start) {
  if (start) {
    Value(c, "--to", "REV", "the target, required to start one: heads, a revision, orders@head");
  } else {
    Value(c, "--to", "REV", "the target", "heads");
  }
  Value(c, "--env", "E,..", "only these environments");
  Value(c, "--db", "F,..", "only these databases (NAME or ENV/NAME filters)");
  Flag(c, "--override-promotion", "go ahead although the promotion order forbids it");
  Value(c, "--override-window", "REASON",
        "start steps outside the environments' change windows (admin; recorded)");
  Value(c, "--allow-lint", "CODE,..", "go ahead despite lint findings of these codes");
  Flag(c, "--allow-drift", "migrate databases whose schema drifted (recorded)");
  AddActor(c);
}

void AddControl(CLI::App* c) {
  Argument(c, "ID", true, "the rollout");
  AddActor(c);
}

void AddLimit(CLI::App* c) { Value(c, "--limit", "N", "at most N"); }

void AddRetryFor(CLI::App* c) {
  Value(c, "--retry-for", "DURATION",
        "while following, reconnect to an unavailable lockstepd this long, then fail", "60s");
}

// Every command: where the overview lists it, its one-line description and
// its arguments and options. The overview lists them in this order.
struct CommandDef {
  const char* name;
  const char* group;  // "": not listed
  const char* description;
  void (*add)(CLI::App*);
};

constexpr CommandDef kCommands[] = {
    {"heads", kOffline, "show current heads",
     [](CLI::App* c) {
       Flag(c, "--resolve-dependencies", "treat dependencies as down revisions (as Alembic)");
     }},
    {"branches", kOffline, "show branch points", [](CLI::App*) {}},
    {"history", kOffline, "list revisions, newest first",
     [](CLI::App* c) {
       Value(c, "-r,--rev-range", "START:END", "only these (base:heads, ae10:, -3:, :label@head)");
     }},
    {"show", kOffline, "show one revision (or several: heads)",
     [](CLI::App* c) { Argument(c, "REV", true, "a revision identifier"); }},
    {"lint", kOffline, "report problems; exit 3 on findings", [](CLI::App*) {}},
    {"path", kOffline,
     "the steps and version-table changes `alembic upgrade|downgrade TARGET` runs",
     [](CLI::App* c) {
       Argument(c, "TARGET", true, "what to upgrade (or downgrade) to");
       Value(c, "--from", "R1,R2", "the version rows the database holds (default: none)");
       Flag(c, "--downgrade", "what `alembic downgrade TARGET` runs");
     }},
    {"status", kOnline, "where every database stands",
     [](CLI::App* c) {
       Argument(c, "ENV", false, "only this environment");
       Flag(c, "--check", "exit 3 unless every database is current");
       Flag(c, "--not-clean", "only databases that are not current, or whose schema drifted");
       Value(c, "--state", "STATE", "only databases in this state (current, behind, ...)");
     }},
    {"db", kOnline, "one database and its revision history",
     [](CLI::App* c) { Argument(c, "ENV/NAME", true, "the database"); }},
    {"diff", kOnline,
     "a database's schema against what its version rows claim, a revision, or another database",
     [](CLI::App* c) {
       Argument(c, "ENV/NAME", true, "the database (its schema is read now)");
       Value(c, "--against", "ENV/NAME|REV",
             "another database of the same dialect, or a revision, heads or base (default: what "
             "Alembic builds for its own version rows)");
     }},
    {"validate", kOnline, "revision files changed after they were applied (exit 3 on an edit)",
     [](CLI::App* c) { Argument(c, "ENV", false, "only this environment"); }},
    {"refresh", kOnline, "check every database now", [](CLI::App*) {}},
    {"plan", kOnline, "the rollout plan and what blocks it; changes nothing",
     [](CLI::App* c) { AddRolloutRequest(c, false); }},
    {"rollout", kOnline, "start a rollout (--to REV), or show one (ID)",
     [](CLI::App* c) {
       Argument(c, "ID", false, "the rollout to show");
       AddRolloutRequest(c, true);
       Flag(c, "--watch", "follow it to the end (exit code: how it ended)");
       Flag(c, "--wait", "the same as --watch");
       AddRetryFor(c);
     }},
    {"watch", kOnline, "follow a rollout (past events first)",
     [](CLI::App* c) {
       Argument(c, "ID", true, "the rollout");
       AddRetryFor(c);
     }},
    {"rollouts", kOnline, "the newest rollouts", AddLimit},
    {"approve", kOnline, "approve a rollout waiting for approval", AddControl},
    {"pause", kOnline, "pause a rollout", AddControl},
    {"resume", kOnline, "resume a paused rollout", AddControl},
    {"abort", kOnline, "abort a rollout", AddControl},
    {"downgrade", kOnline, "one database, with a backup first, followed to the end",
     [](CLI::App* c) {
       Argument(c, "ENV/NAME", true, "the database");
       Value(c, "--to", "REV", "the revision to downgrade to")->required();
       AddActor(c);
       AddRetryFor(c);
     }},
    {"reapply", kOnline,
     "run a database's migrations again from REV (downgrade REV-1, upgrade back), with a backup; "
     "restored unless the schema is then right",
     [](CLI::App* c) {
       Argument(c, "ENV/NAME", true, "the database");
       Argument(c, "REV", false, "the first revision to run again (default: its version row)");
       AddActor(c);
       AddRetryFor(c);
     }},
    {"stamp", kOnline,
     "write a database's version rows (after a backup) when its schema is that revision's",
     [](CLI::App* c) {
       Argument(c, "ENV/NAME", true, "the database");
       Argument(c, "REV", true, "a revision, heads or base");
       Flag(c, "--force", "stamp even though the schema is not REV's (needs --reason)");
       Value(c, "--reason", "TEXT", "why --force: recorded with the stamp");
       AddActor(c);
       AddRetryFor(c);
     }},
    {"backups", kOnline, "the backup catalog, newest first",
     [](CLI::App* c) {
       Argument(c, "ENV[/NAME]", false, "only this environment or database");
       AddLimit(c);
     }},
    {"restore", kOnline,
     "put a backup back, after a safety backup of what is there (where approval is required, "
     "once approved)",
     [](CLI::App* c) {
       Argument(c, "ID", true, "the backup (lockstep backups lists them)");
       Flag(c, "--yes", "even though the database changed since the backup");
       AddActor(c);
       AddRetryFor(c);  // where approval is required, it is followed as a rollout
     }},
    {"audit", kOnline, "the audit log: calls that changed something, and refused ones",
     [](CLI::App* c) {
       Value(c, "--since", "DURATION", "only the last DURATION (24h, 30m)");
       Value(c, "--subject", "NAME", "only this subject's calls");
       AddLimit(c);
     }},
    {"whoami", kOnline, "who lockstepd thinks you are, and what you may do where",
     [](CLI::App*) {}},
    {"token", kOnline,
     "token create: print a new random token and its line for the tokens file "
     "(server.auth.tokens_file); lockstepd is not asked",
     [](CLI::App* c) {
       Argument(c, "ACTION", true, "create");
       Value(c, "--subject", "NAME", "who the token stands for (required)");
       Value(c, "--groups", "G,..", "the subject's groups, for access bindings (group:NAME)");
     }},
    {"help", "", "this help, or one command's",
     [](CLI::App* c) { Argument(c, "COMMAND", false, "the command"); }},
};

// The app with its global options; AddCommands() adds the commands.
std::unique_ptr<CLI::App> Globals() {
  auto app = std::make_unique<CLI::App>("", "lockstep");
  // Inherited by the commands added below.
  app->set_help_flag("-h,--help", "this help (lockstep COMMAND --help: one command's)");
  app->fallthrough();             // a global option after the command reaches the app
  app->allow_extras();            // unknown words are reported by ParseCliArgs, naming the command
  app->require_subcommand(0, 1);  // a command name after the command is an argument
  app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app->footer(kExitCodes);

  Value(app.get(), "-c,--config", "FILE",
        "alembic.ini (default: $ALEMBIC_CONFIG, else $LOCKSTEP_INVENTORY's project, else "
        "./alembic.ini)")
      ->group(kProjectOptions);
  Value(app.get(), "--scripts", "DIR", "a script directory instead of an ini file")
      ->group(kProjectOptions);
  Value(app.get(), "--inventory", "FILE",
        "lockstepd's inventory: its project (alembic_ini or scripts, ini_section) "
        "(default: $LOCKSTEP_INVENTORY)")
      ->group(kProjectOptions);
  Value(app.get(), "-n,--name", "SECTION", "the ini section (default: alembic)")
      ->group(kProjectOptions);
  Value(app.get(), "--server", "ADDR",
        "lockstepd's gRPC address (default: $LOCKSTEP_SERVER, else 127.0.0.1:50051)")
      ->group(kConnectionOptions);
  Value(app.get(), "--tls-ca", "FILE",
        "talk TLS, trusting this CA for lockstepd's certificate (default: $LOCKSTEP_TLS_CA)")
      ->group(kConnectionOptions);
  Value(app.get(), "--tls-cert", "FILE",
        "a client certificate, for a lockstepd that requires one (default: $LOCKSTEP_TLS_CERT)")
      ->group(kConnectionOptions);
  Value(app.get(), "--tls-key", "FILE", "its private key (default: $LOCKSTEP_TLS_KEY)")
      ->group(kConnectionOptions);
  Value(app.get(), "--token-file", "FILE",
        "a file holding the token to present to lockstepd (default: the token in "
        "$LOCKSTEP_TOKEN)")
      ->group(kConnectionOptions);
  Value(app.get(), "-o,--output", "FORMAT", "text (default) or json")->group(kCommonOptions);
  Flag(app.get(), "-v,--verbose",
       "more detail: heads, branches and history as Alembic's -v; rollout --watch, "
       "watch and downgrade add Alembic's output lines")
      ->group(kCommonOptions);
  Flag(app.get(), "--version", "print lockstep's version and the commit it was built from")
      ->group(kCommonOptions);
  return app;
}

// Every command (`only` empty) or just the command `only`: parsing needs only
// the command given, and building all of them costs ~90 us, a few per cent
// of `lockstep heads` on a small project.
void AddCommands(CLI::App* app, const std::string& only) {
  for (const CommandDef& d : kCommands) {
    if (!only.empty() && only != d.name) continue;
    CLI::App* c = app->add_subcommand(d.name, d.description);
    c->group(d.group);
    d.add(c);
  }
}

// Everything: for help, and for error messages that look across commands.
std::unique_ptr<CLI::App> Definitions() {
  std::unique_ptr<CLI::App> app = Globals();
  AddCommands(app.get(), "");
  return app;
}

// The command word in argv, skipping global options and their values; ""
// when there is none, or it is no command.
std::string FindCommand(const CLI::App& globals, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") return "";
    if (arg.size() < 2 || arg[0] != '-') {
      for (const CommandDef& d : kCommands) {
        if (arg == d.name) return d.name;
      }
      return "";
    }
    // "--config=x", "-cx": the value is in the word.
    if (arg.find('=') != std::string_view::npos || (arg[1] != '-' && arg.size() > 2)) continue;
    const CLI::Option* o = globals.get_option_no_throw(std::string(arg));
    if (o != nullptr && o->get_expected_max() > 0) ++i;
  }
  return "";
}

// ---- Help, generated from the definitions ----------------------------------

constexpr size_t kColumn = 38;  // where descriptions start
constexpr size_t kWidth = 79;

// "-c, --config FILE"
std::string OptionName(const CLI::Option* o) {
  std::string s;
  for (const std::string& n : o->get_snames()) absl::StrAppend(&s, s.empty() ? "" : ", ", "-", n);
  for (const std::string& n : o->get_lnames()) absl::StrAppend(&s, s.empty() ? "" : ", ", "--", n);
  if (o->get_expected_max() > 0) absl::StrAppend(&s, " ", o->get_type_name());
  return s;
}

// How the option stands in a synopsis: "[--to REV]", "--to REV", "[--yes]".
std::string Synopsis(const CLI::Option* o) {
  if (o->get_positional()) {
    return o->get_required() ? o->get_name() : absl::StrCat("[", o->get_name(), "]");
  }
  std::string s = o->get_snames().empty() ? absl::StrCat("--", o->get_lnames().front())
                                          : absl::StrCat("-", o->get_snames().front());
  if (o->get_expected_max() > 0) absl::StrAppend(&s, " ", o->get_type_name());
  return o->get_required() ? s : absl::StrCat("[", s, "]");
}

// "  name ARG [--opt V] ..." wrapped at kWidth, continuation lines under the
// first argument; then `description` at kColumn (on a line of its own when
// the synopsis reaches it), wrapped at kWidth.
void AppendEntry(std::string* out, const std::string& head, const std::vector<std::string>& words,
                 const std::string& description) {
  std::string line = absl::StrCat("  ", head);
  const size_t indent = line.size() + 1;
  for (const std::string& w : words) {
    if (line.size() + 1 + w.size() > kWidth) {
      absl::StrAppend(out, line, "\n");
      line = std::string(indent, ' ') + w;
    } else {
      absl::StrAppend(&line, " ", w);
    }
  }
  if (line.size() + 2 > kColumn) {
    absl::StrAppend(out, line, "\n");
    line.clear();
  }
  line.resize(kColumn, ' ');
  bool first = true;
  for (absl::string_view word : absl::StrSplit(description, ' ', absl::SkipEmpty())) {
    if (!first && line.size() + 1 + word.size() > kWidth) {
      absl::StrAppend(out, line, "\n");
      line = std::string(kColumn, ' ');
      first = true;
    }
    absl::StrAppend(&line, first ? "" : " ", word);
    first = false;
  }
  absl::StrAppend(out, line, "\n");
}

std::vector<const CLI::Option*> Options(const CLI::App& app, bool positional) {
  std::vector<const CLI::Option*> out;
  for (const CLI::Option* o : app.get_options()) {
    if (o->get_positional() == positional && o != app.get_help_ptr()) out.push_back(o);
  }
  return out;
}

std::vector<std::string> CommandSynopsis(const CLI::App& command) {
  std::vector<std::string> words;
  for (const CLI::Option* o : Options(command, true)) words.push_back(Synopsis(o));
  for (const CLI::Option* o : Options(command, false)) words.push_back(Synopsis(o));
  return words;
}

// An option's help line: its description, and the default the parser
// fills in when there is one.
std::string Describe(const CLI::Option* o) {
  if (o->get_default_str().empty()) return o->get_description();
  return absl::StrCat(o->get_description(), " (default: ", o->get_default_str(), ")");
}

// The global options of `group`; the help flag goes with the common ones.
void AppendGlobalOptions(std::string* out, const CLI::App& app, const std::string& group) {
  absl::StrAppend(out, group, "\n");
  for (const CLI::Option* o : Options(app, false)) {
    if (o->get_group() == group) AppendEntry(out, OptionName(o), {}, Describe(o));
  }
  if (group == kCommonOptions) {
    AppendEntry(out, OptionName(app.get_help_ptr()), {}, app.get_help_ptr()->get_description());
  }
}

std::string Overview(const CLI::App& app) {
  std::string out =
      "usage: lockstep [options] COMMAND [ARGS]   (lockstep COMMAND --help: its own)\n";
  std::string group;
  for (const CLI::App* c : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (c->get_group().empty()) continue;
    if (c->get_group() != group) {
      group = c->get_group();
      absl::StrAppend(&out, "\n", group, "\n");
    }
    AppendEntry(&out, c->get_name(), CommandSynopsis(*c), c->get_description());
  }
  for (const char* group : {kProjectOptions, kConnectionOptions, kCommonOptions}) {
    absl::StrAppend(&out, "\n");
    AppendGlobalOptions(&out, app, group);
  }
  absl::StrAppend(&out, "\n", app.get_footer());
  return out;
}

std::string CommandHelp(const CLI::App& app, const CLI::App& command) {
  std::string out;
  std::vector<std::string> words = {command.get_name()};
  for (const std::string& w : CommandSynopsis(command)) words.push_back(w);
  std::string line = "usage: lockstep";
  for (const std::string& w : words) {
    if (line.size() + 1 + w.size() > kWidth) {
      absl::StrAppend(&out, line, "\n");
      line = std::string(16, ' ') + w;
    } else {
      absl::StrAppend(&line, " ", w);
    }
  }
  absl::StrAppend(&out, line, "\n\n", command.get_description(), "\n");
  if (auto args = Options(command, true); !args.empty()) {
    absl::StrAppend(&out, "\nArguments:\n");
    for (const CLI::Option* o : args) AppendEntry(&out, o->get_name(), {}, o->get_description());
  }
  if (auto opts = Options(command, false); !opts.empty()) {
    absl::StrAppend(&out, "\nOptions:\n");
    for (const CLI::Option* o : opts) AppendEntry(&out, OptionName(o), {}, Describe(o));
  }
  // The global options this command reads: the project's (offline) or the
  // connection's (online), then those of every command.
  if (command.get_group() != kOnline) {
    absl::StrAppend(&out, "\n");
    AppendGlobalOptions(&out, app, kProjectOptions);
  }
  if (command.get_group() != kOffline) {
    absl::StrAppend(&out, "\n");
    AppendGlobalOptions(&out, app, kConnectionOptions);
  }
  absl::StrAppend(&out, "\n");
  AppendGlobalOptions(&out, app, kCommonOptions);
  return out;
}

// ---- Usage errors, naming the option and the command ------------------------

// True when some command (or the app) declares `--name` / `-n`.
bool AnyCommandTakes(const CLI::App& app, const std::string& name) {
  auto declares = [&](const CLI::App& a) {
    for (const CLI::Option* o : a.get_options()) {
      if (!o->get_positional() && o->check_name(name)) return true;
    }
    return false;
  };
  if (declares(app)) return true;
  for (const CLI::App* c : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (declares(*c)) return true;
  }
  return false;
}

std::string Hint(const std::string& command) {
  return command.empty() ? "(lockstep --help)" : absl::StrCat("(lockstep ", command, " --help)");
}

// A word CLI11 left over (allow_extras): an unknown command, an extra
// argument, or an option the command does not take. `argv` tells whether it
// stood before the command.
std::string UnexpectedWord(const CLI::App& app, const std::string& command, const std::string& word,
                           const std::vector<std::string>& argv) {
  const std::string hint = Hint(command);
  const bool is_option = word.size() > 1 && word[0] == '-';
  if (!is_option) {
    if (command.empty()) return absl::StrCat("unknown command '", word, "' ", hint);
    return absl::StrCat(command, ": unexpected argument '", word, "' ", hint);
  }
  std::string name = word.substr(0, word.find('='));
  if (!absl::StartsWith(name, "--")) name = name.substr(0, 2);  // -xVALUE
  if (command.empty() || !AnyCommandTakes(app, name)) {
    return absl::StrCat(command, command.empty() ? "" : ": ", "unknown option '", name, "' ", hint);
  }
  auto at = [&](const std::string& w) {
    return std::find(argv.begin(), argv.end(), w) - argv.begin();
  };
  if (at(word) < at(command)) {
    return absl::StrCat("option '", name, "' belongs after the command: lockstep ", command, " ",
                        name);
  }
  return absl::StrCat(command, " does not take option '", name, "' ", hint);
}

// CLI11's own message, with the command in front and a pointer to its help:
// "restore: ID is required (lockstep restore --help)".
std::string ParseErrorMessage(const std::string& command, const CLI::ParseError& e) {
  std::string what = e.what();
  constexpr absl::string_view kOverride = " was given a disallowed flag override";
  if (absl::EndsWith(what, kOverride)) {  // --verbose=1
    what = absl::StrCat("option '--", what.substr(0, what.size() - kOverride.size()),
                        "' takes no value");
  }
  return absl::StrCat(command, command.empty() ? "" : ": ", what, " ", Hint(command));
}

}  // namespace

std::optional<std::string> CliArgs::Option(const std::string& name) const {
  auto it = options.find(name);
  if (it == options.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<CliArgs> ParseCliArgs(int argc, char** argv) {
  // Only the command given; all of them when it is not clear which (then
  // the parse fails and the error message needs them anyway).
  std::unique_ptr<CLI::App> app = Globals();
  AddCommands(app.get(), FindCommand(*app, argc, argv));
  CliArgs out;
  auto command_of = [&]() -> const CLI::App* {
    std::vector<CLI::App*> parsed = app->get_subcommands();
    return parsed.empty() ? nullptr : parsed.front();
  };
  try {
    app->parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out.help = true;
    if (const CLI::App* c = command_of()) out.command = c->get_name();
    return out;
  } catch (const CLI::ParseError& e) {
    const CLI::App* c = command_of();
    return absl::InvalidArgumentError(ParseErrorMessage(c ? c->get_name() : "", e));
  }
  const CLI::App* command = command_of();
  if (command != nullptr) out.command = command->get_name();
  for (const std::string& word : app->remaining(true)) {
    if (word == "--") continue;  // CLI11 passes the end-of-options mark on
    return absl::InvalidArgumentError(UnexpectedWord(
        *Definitions(), out.command, word, std::vector<std::string>(argv + 1, argv + argc)));
  }
  for (const CLI::App* a : {static_cast<const CLI::App*>(app.get()), command}) {
    if (a == nullptr) continue;
    for (const CLI::Option* o : a->get_options()) {
      if (o->count() == 0 && !o->get_default_str().empty()) {
        out.options[o->get_single_name()] = o->get_default_str();  // as its help says
      }
      if (o->count() == 0 || o == a->get_help_ptr()) continue;
      if (o->get_positional()) {
        for (const std::string& r : o->results()) out.positional.push_back(r);
      } else if (o->get_expected_max() == 0) {
        out.flags.insert(o->get_single_name());
      } else {
        out.options[o->get_single_name()] = o->results().back();
      }
    }
  }
  if (out.command == "help") {
    out.help = true;
    out.command = out.positional.empty() ? "" : out.positional.front();
    out.positional.clear();
    if (!out.command.empty() && HelpText(out.command).empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown command '", out.command, "' (lockstep --help)"));
    }
  }
  return out;
}

std::string HelpText(const std::string& command) {
  std::unique_ptr<CLI::App> app = Definitions();
  if (command.empty()) return Overview(*app);
  for (const CLI::App* c : app->get_subcommands([](const CLI::App*) { return true; })) {
    if (c->get_name() == command) return CommandHelp(*app, *c);
  }
  return "";
}

}  // namespace lockstep::client
