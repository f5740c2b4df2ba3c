#include "client/offline_commands.h"

#include <cstdlib>
#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/json_writer.h"
#include "config/inventory.h"
#include "migrations/format.h"
#include "migrations/lint.h"
#include "migrations/migration_plan.h"
#include "migrations/project.h"
#include "migrations/resolver.h"
#include "migrations/revision_error.h"
#include "migrations/traversal.h"

namespace lockstep::client {
namespace {

using migrations::CommandErrorContext;
using migrations::CommandErrorMessage;
using migrations::Project;
using migrations::Resolver;
using migrations::RevisionGraph;
using migrations::RevRef;

struct Context {
  const CliArgs& args;
  std::ostream& out;
  std::ostream& err;
  bool json = false;
};

int Fail(Context& c, const std::string& message) {
  c.err << "FAILED: " << message << "\n";
  if (c.json) c.out << JsonWriter().BeginObject().Key("error").String(message).EndObject().Finish();
  return kExitError;
}

int Usage(Context& c, const std::string& message) {
  c.err << "lockstep " << c.args.command << ": " << message << "\n";
  return kExitUsage;
}

// The project: --scripts, -c, --inventory (its project), $ALEMBIC_CONFIG,
// $LOCKSTEP_INVENTORY, else ./alembic.ini, the first that is given. -n
// names the ini section over the inventory's ini_section.
absl::StatusOr<migrations::ProjectSource> SourceFrom(const CliArgs& args) {
  auto env = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  };
  migrations::ProjectSource s;
  std::optional<std::string> inventory;  // read below
  if (auto scripts = args.Option("scripts")) {
    s.scripts_dir = *scripts;
  } else if (auto config = args.Option("config")) {
    s.config_file = *config;
  } else if (auto flag = args.Option("inventory")) {
    inventory = flag;
  } else if (auto alembic_config = env("ALEMBIC_CONFIG")) {
    s.config_file = *alembic_config;
  } else if (auto variable = env("LOCKSTEP_INVENTORY")) {
    inventory = variable;
  } else {
    s.config_file = "alembic.ini";
  }
  if (inventory) {
    absl::StatusOr<config::ProjectConfig> project = config::LoadInventoryProject(*inventory);
    if (!project.ok()) return project.status();
    s.config_file = project->alembic_ini;
    s.scripts_dir = project->scripts;
    s.section = project->ini_section;
  }
  if (auto name = args.Option("name")) s.section = *name;
  return s;
}

void WriteRevision(JsonWriter& w, const RevisionGraph& g, int i) {
  const RevisionGraph::Node& n = g.node(i);
  w.BeginObject();
  w.Key("revision").String(n.id());
  w.Key("down_revisions").StringArray(n.file->down_revisions);
  w.Key("depends_on").StringArray(n.file->depends_on);
  w.Key("branch_labels").StringArray(n.labels);
  w.Key("doc").String(n.file->doc);
  w.Key("path").String(n.file->path);
  w.Key("is_head").Bool(n.is_head());
  w.Key("is_effective_head").Bool(n.is_head() && !n.is_real_head());
  w.Key("is_base").Bool(n.is_base());
  w.Key("is_branch_point").Bool(n.is_branch_point());
  w.Key("is_merge_point").Bool(n.is_merge_point());
  w.Key("children").StringArray(g.Ids(n.next));
  w.EndObject();
}

int PrintRevisions(Context& c, const RevisionGraph& g, const std::vector<int>& revs,
                   const char* key, const std::function<std::string(int)>& text) {
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key(key).BeginArray();
    for (int i : revs) WriteRevision(w, g, i);
    w.EndArray().EndObject();
    c.out << w.Finish();
  } else {
    for (int i : revs) c.out << text(i) << "\n";
  }
  return kExitOk;
}


int Heads(Context& c, const Project& p) {
  const RevisionGraph& g = p.graph();
  const std::vector<int>& heads =
      c.args.Flag("resolve-dependencies") ? g.real_heads() : g.heads();
  bool verbose = c.args.Flag("verbose");
  return PrintRevisions(c, g, heads, "heads", [&](int i) {
    return verbose ? migrations::FormatLogEntry(g, i) : migrations::FormatHeadLine(g, i);
  });
}

int History(Context& c, const Project& p) {
  std::string base = "base", head = "heads";
  CommandErrorContext ctx;
  if (auto range = c.args.Option("rev-range")) {
    std::string r(absl::StripAsciiWhitespace(*range));
    std::vector<std::string> parts = absl::StrSplit(r, ':');
    if (parts.size() != 2) {
      return Fail(c, "History range requires [start]:[end], [start]:, or :[end]");
    }
    if (!parts[0].empty()) base = parts[0];
    if (!parts[1].empty()) head = parts[1];
    if (base == "current" || head == "current") {
      return Fail(c, "'current' needs a database; ask the daemon (lockstep db ENV/NAME) or run "
                     "alembic history -r with a connection");
    }
  }
  ctx.start = base;
  ctx.end = head;
  Resolver resolver(&p.graph());
  migrations::IterateOptions options;
  options.inclusive = true;
  options.assert_relative_length = false;
  absl::StatusOr<std::vector<int>> revs =
      migrations::IterateRevisions(resolver, migrations::RevisionSpec::Identifier(head),
                                   migrations::RevisionSpec::Identifier(base), options);
  if (!revs.ok()) return Fail(c, CommandErrorMessage(revs.status(), ctx));
  const RevisionGraph& g = p.graph();
  bool verbose = c.args.Flag("verbose");
  return PrintRevisions(c, g, *revs, "revisions", [&](int i) {
    return verbose ? migrations::FormatLogEntry(g, i) : migrations::FormatHistoryLine(g, i);
  });
}

int Branches(Context& c, const Project& p) {
  Resolver resolver(&p.graph());
  migrations::IterateOptions options;
  options.inclusive = true;
  options.assert_relative_length = false;
  CommandErrorContext ctx;
  ctx.start = "base";
  ctx.end = "heads";
  absl::StatusOr<std::vector<int>> revs =
      migrations::IterateRevisions(resolver, migrations::RevisionSpec::Identifier("heads"),
                                   migrations::RevisionSpec::Identifier("base"), options);
  if (!revs.ok()) return Fail(c, CommandErrorMessage(revs.status(), ctx));
  const RevisionGraph& g = p.graph();
  std::vector<int> points;
  for (int i : *revs) {
    if (g.node(i).is_branch_point()) points.push_back(i);
  }
  bool verbose = c.args.Flag("verbose");
  return PrintRevisions(c, g, points, "branch_points", [&](int i) {
    return migrations::FormatBranchBlock(g, i, verbose);
  });
}

int Show(Context& c, const Project& p) {
  if (c.args.positional.size() != 1) return Usage(c, "expects one revision: lockstep show REV");
  const std::string& rev = c.args.positional[0];
  if (rev == "current") {
    return Fail(c, "'current' needs a database; ask the daemon (lockstep db ENV/NAME)");
  }
  Resolver resolver(&p.graph());
  absl::StatusOr<std::vector<RevRef>> refs = resolver.GetRevisions(rev);
  if (!refs.ok()) return Fail(c, CommandErrorMessage(refs.status()));
  std::vector<int> revs;
  for (const RevRef& r : *refs) {
    if (!r.is_rev()) return Fail(c, absl::StrCat("'", rev, "' does not name a revision"));
    revs.push_back(r.idx);
  }
  const RevisionGraph& g = p.graph();
  return PrintRevisions(c, g, revs, "revisions",
                        [&](int i) { return migrations::FormatLogEntry(g, i); });
}

int Path(Context& c, const Project& p) {
  if (c.args.positional.size() != 1) {
    return Usage(c, "expects a target: lockstep path TARGET [--from REV,REV] [--downgrade]");
  }
  const std::string& target = c.args.positional[0];
  std::vector<std::string> rows;
  if (auto from = c.args.Option("from")) {
    for (absl::string_view r : absl::StrSplit(*from, ',', absl::SkipEmpty())) {
      rows.emplace_back(absl::StripAsciiWhitespace(r));
    }
  }
  Resolver resolver(&p.graph());
  bool down = c.args.Flag("downgrade");
  absl::StatusOr<std::vector<migrations::MigrationStep>> steps =
      down ? migrations::PlanDowngrade(resolver, rows, target)
           : migrations::PlanUpgrade(resolver, rows, target);
  if (!steps.ok()) {
    return Fail(c, CommandErrorMessage(steps.status(),
                                       down ? migrations::DowngradeErrorContext(target)
                                            : migrations::UpgradeErrorContext(target)));
  }
  const RevisionGraph& g = p.graph();
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("steps").BeginArray();
    for (const migrations::MigrationStep& s : *steps) {
      w.BeginObject();
      w.Key("revision").String(g.id(s.revision));
      w.Key("direction").String(s.upgrade ? "upgrade" : "downgrade");
      w.Key("doc").String(g.node(s.revision).file->doc);
      w.Key("changes").BeginArray();
      for (const migrations::VersionChange& ch : s.changes) {
        w.BeginObject();
        using K = migrations::VersionChange::Kind;
        w.Key("op").String(ch.kind == K::kInsert ? "insert" : ch.kind == K::kDelete ? "delete"
                                                                                      : "update");
        w.Key("from").String(ch.from);
        w.Key("to").String(ch.to);
        w.EndObject();
      }
      w.EndArray();
      w.Key("rows_after").StringArray(s.rows_after);
      w.EndObject();
    }
    w.EndArray().EndObject();
    c.out << w.Finish();
    return kExitOk;
  }
  for (const migrations::MigrationStep& s : *steps) {
    const RevisionGraph::Node& n = g.node(s.revision);
    std::string parents = n.file->down_revisions.empty()
                              ? ""
                              : absl::StrJoin(n.file->down_revisions, ", ");
    // Exactly the lines of `alembic upgrade/downgrade --sql`.
    if (s.upgrade) {
      c.out << "-- Running upgrade " << parents << " -> " << n.id() << "\n";
    } else {
      c.out << "-- Running downgrade " << n.id() << " -> " << parents << "\n";
    }
    for (const migrations::VersionChange& ch : s.changes) c.out << ch.ToSql() << ";\n";
  }
  return kExitOk;
}

int Lint(Context& c) {
  absl::StatusOr<migrations::ProjectSource> from = SourceFrom(c.args);
  if (!from.ok()) return Fail(c, std::string(from.status().message()));
  const migrations::ProjectSource& source = *from;
  absl::StatusOr<Project> p = Project::Load(source, /*tolerate_file_errors=*/true);
  std::vector<migrations::LintFinding> findings;
  if (!p.ok()) {
    findings.push_back(migrations::LoadFailureFinding(
        source.scripts_dir.empty() ? source.config_file : source.scripts_dir, p.status(),
        CommandErrorMessage(p.status())));
  } else {
    findings = migrations::LintProject(*p);
  }
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("findings").BeginArray();
    for (const migrations::LintFinding& f : findings) {
      w.BeginObject().Key("path").String(f.path).Key("line").Int(f.line);
      w.Key("code").String(f.code).Key("message").String(f.message).EndObject();
    }
    w.EndArray().EndObject();
    c.out << w.Finish();
  } else {
    for (const migrations::LintFinding& f : findings) {
      c.out << f.path;
      if (f.line > 0) c.out << ":" << f.line;
      c.out << ": " << f.code << ": " << f.message << "\n";
    }
    if (findings.empty()) c.out << "no findings\n";
  }
  return findings.empty() ? kExitOk : kExitNotClean;
}

}  // namespace

bool IsOfflineCommand(const std::string& command) {
  static const char* kCommands[] = {"heads", "branches", "history", "show", "lint", "path"};
  for (const char* k : kCommands) {
    if (command == k) return true;
  }
  return false;
}

bool IsOnlineCommand(const std::string& command) {
  static const char* kCommands[] = {
      "status",   "db",      "diff",     "refresh", "plan",   "rollout",   "watch",
      "rollouts", "approve", "pause",    "resume",  "abort",  "downgrade", "stamp",
      "backups",  "restore", "validate", "reapply", "whoami", "token",     "audit"};
  for (const char* k : kCommands) {
    if (command == k) return true;
  }
  return false;
}

int RunOfflineCommand(const CliArgs& args, std::ostream& out, std::ostream& err) {
  Context c{args, out, err};
  std::string output = args.Option("output").value_or("text");
  if (output != "text" && output != "json") return Usage(c, "-o takes 'text' or 'json'");
  c.json = output == "json";
  if (args.command == "lint") return Lint(c);
  if (args.command != "show" && args.command != "path" && !args.positional.empty()) {
    return Usage(c, absl::StrCat("unexpected argument '", args.positional[0], "'"));
  }
  absl::StatusOr<migrations::ProjectSource> source = SourceFrom(args);
  if (!source.ok()) return Fail(c, std::string(source.status().message()));
  absl::StatusOr<Project> p = Project::Load(*source);
  if (!p.ok()) return Fail(c, CommandErrorMessage(p.status()));
  for (const std::string& w : p->warnings()) err << "WARNING: " << w << "\n";
  if (args.command == "heads") return Heads(c, *p);
  if (args.command == "history") return History(c, *p);
  if (args.command == "branches") return Branches(c, *p);
  if (args.command == "show") return Show(c, *p);
  return Path(c, *p);
}

}  // namespace lockstep::client
