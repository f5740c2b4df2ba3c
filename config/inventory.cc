#include "config/inventory.h"

#include <fnmatch.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "config/database_identity.h"

namespace lockstep::config {

// Environment and database names appear in `ENV/NAME` arguments, metric
// labels, backup folders and JSON: one pattern for all of them, so that
// none is ambiguous, a path or invalid UTF-8.
namespace {
bool IsNameLike(const std::string& name, bool at_allowed) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  if (!absl::ascii_isalnum(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
        !(at_allowed && c == '@')) {
      return false;
    }
  }
  return true;
}
}  // namespace

bool IsValidName(const std::string& name) { return IsNameLike(name, false); }
bool IsValidSubject(const std::string& subject) { return IsNameLike(subject, true); }

std::string Printable(const std::string& text) {
  std::string shown = text.substr(0, 64);
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  return text.size() > 64 ? shown + "..." : shown;
}

namespace {

// The inventory's folder as an absolute, normalized path. Every relative path
// in the file is resolved against it once, here: lockstepd hands paths on to
// Alembic (which runs in `working_dir`), to pg_dump and to the state store, and
// none of them must depend on the folder lockstepd was started from.
std::string AbsoluteDirOf(const std::string& file) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(file, ec);
  if (ec) abs = file;
  return abs.lexically_normal().parent_path().string();
}

std::string Resolve(const std::string& base, const std::string& p) {
  if (p.empty()) return p;
  return (std::filesystem::path(base) / p).lexically_normal().string();
}

// "host:port", "[v6]:port": the port a number from 0 (any free port) to 65535.
bool IsValidListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) return false;
  int port = 0;
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &port)) return false;
  return port >= 0 && port <= 65535 && listen.find_first_of(" /") == std::string::npos;
}

int EditDistance(const std::string& a, const std::string& b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Walks the YAML tree, collecting every error with its position and key path.
class Loader {
 public:
  Loader(std::string file) : file_(std::move(file)), base_(AbsoluteDirOf(file_)) {}

  absl::StatusOr<Inventory> Load(const std::string& text) {
    YAML::Node root;
    if (absl::Status s = Parse(text, &root); !s.ok()) return s;
    Inventory inv;
    inv.path = file_;
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_, ": expected a mapping with server, project and environments"));
    }
    Keys(root, "", {"server", "project", "environments", "access", "notify"});
    if (root["server"]) Server(root["server"], &inv.server);
    inv.server.state = Resolve(base_, inv.server.state);
    inv.server.backup_dir = Resolve(base_, inv.server.backup_dir);
    inv.server.output_dir = Resolve(base_, inv.server.output_dir);
    if (!inv.server.audit_log.empty()) inv.server.audit_log = Resolve(base_, inv.server.audit_log);
    if (root["project"]) {
      Project(root["project"], &inv.project);
    } else {
      Error(root, "project", "is required (alembic_ini or scripts)");
    }
    if (root["environments"]) {
      Environments(root["environments"], inv);
    } else {
      Error(root, "environments", "is required: at least one environment");
    }
    Access(root, inv);
    if (root["notify"]) Notify(root["notify"], inv);
    if (!errors_.empty()) {
      return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
    }
    return inv;
  }

  // Only the project's source (the rest of the inventory is not read: its
  // secrets need not be at hand where offline commands run).
  absl::StatusOr<ProjectConfig> LoadProject(const std::string& text) {
    YAML::Node root;
    if (absl::Status s = Parse(text, &root); !s.ok()) return s;
    ProjectConfig pr;
    if (!root.IsMap() || !root["project"]) {
      Error(root, "project", "is required (alembic_ini or scripts)");
    } else if (!root["project"].IsMap()) {
      Error(root["project"], "project", "expected a mapping");
    } else {
      ProjectSource(root["project"], &pr);
    }
    if (!errors_.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
    return pr;
  }

 private:
  YAML::Node auth_node_;  // server.auth.tokens_file, for its errors

  absl::Status Parse(const std::string& text, YAML::Node* root) {
    try {
      *root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
    }
    return absl::OkStatus();
  }

  void Error(const YAML::Node& n, const std::string& path, const std::string& message) {
    YAML::Mark m = n.Mark();
    std::string where = m.line >= 0 ? absl::StrCat(file_, ":", m.line + 1, ":", m.column + 1)
                                     : file_;
    errors_.push_back(absl::StrCat(where, ": ", path.empty() ? "" : path + ": ", message));
  }

  static std::string Join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  // Reports unknown and duplicate keys of a mapping.
  bool Keys(const YAML::Node& n, const std::string& path, const std::set<std::string>& allowed) {
    if (!n.IsMap()) {
      Error(n, path, "expected a mapping");
      return false;
    }
    std::set<std::string> seen;
    for (const auto& kv : n) {
      std::string key = kv.first.Scalar();
      if (!seen.insert(key).second) {
        Error(kv.first, Join(path, key), "duplicate key");
        continue;
      }
      if (!allowed.count(key)) {
        std::string hint;
        for (const std::string& a : allowed) {
          if (EditDistance(key, a) <= 2) hint = absl::StrCat(" (did you mean '", a, "'?)");
        }
        Error(kv.first, Join(path, key),
              absl::StrCat("unknown key", hint, "; expected one of: ", absl::StrJoin(allowed, ", ")));
      }
    }
    return true;
  }

  std::optional<std::string> Str(const YAML::Node& parent, const std::string& key,
                                 const std::string& path) {
    YAML::Node n = parent[key];
    if (!n) return std::nullopt;
    if (!n.IsScalar()) {
      Error(n, Join(path, key), "expected a string");
      return std::nullopt;
    }
    return n.Scalar();
  }

  void Int(const YAML::Node& parent, const std::string& key, const std::string& path, int* out,
           int min) {
    std::optional<std::string> s = Str(parent, key, path);
    if (!s) return;
    int v = 0;
    if (!absl::SimpleAtoi(*s, &v) || v < min) {
      Error(parent[key], Join(path, key), absl::StrCat("expected a whole number >= ", min));
      return;
    }
    *out = v;
  }

  void Duration(const YAML::Node& parent, const std::string& key, const std::string& path,
                absl::Duration* out) {
    std::optional<std::string> s = Str(parent, key, path);
    if (!s) return;
    std::optional<absl::Duration> d = ParseDurationText(*s);
    if (!d || *d < absl::ZeroDuration()) {
      Error(parent[key], Join(path, key),
            absl::StrCat("bad duration '", *s, "' (examples: 30s, 10m, 1h30m, 250ms)"));
      return;
    }
    *out = *d;
  }

  // windows: [{kind: deny|allow, schedule: "Fri 16:00-Mon 08:00", timezone}].
  void Windows(const YAML::Node& e, const std::string& path, EnvironmentConfig* env) {
    YAML::Node n = e["windows"];
    if (!n) return;
    if (!n.IsSequence()) {
      Error(n, Join(path, "windows"), "expected a list of {kind, schedule, timezone}");
      return;
    }
    for (size_t i = 0; i < n.size(); ++i) {
      const std::string p = absl::StrCat(path, ".windows[", i, "]");
      if (!n[i].IsMap()) {
        Error(n[i], p, "expected a mapping {kind: deny|allow, schedule, timezone}");
        continue;
      }
      if (!Keys(n[i], p, {"kind", "schedule", "timezone"})) continue;
      ChangeWindow::Kind kind = ChangeWindow::Kind::kDeny;
      std::optional<std::string> k = Str(n[i], "kind", p);
      if (!k || (*k != "deny" && *k != "allow")) {
        Error(n[i]["kind"] ? n[i]["kind"] : n[i], p + ".kind",
              "expected deny (a freeze) or allow (steps start only inside such windows)");
        continue;
      }
      if (*k == "allow") kind = ChangeWindow::Kind::kAllow;
      std::optional<std::string> schedule = Str(n[i], "schedule", p);
      if (!schedule) {
        Error(n[i], p + ".schedule", "is required, e.g. \"Fri 16:00-Mon 08:00\"");
        continue;
      }
      absl::StatusOr<ChangeWindow> w =
          ParseChangeWindow(kind, *schedule, Str(n[i], "timezone", p).value_or("UTC"));
      if (!w.ok()) {
        Error(n[i], p, std::string(w.status().message()));
        continue;
      }
      env->windows.push_back(*std::move(w));
    }
  }

  // `approval: required|none`, or {required, approvals,
  // distinct_from_requester} (required defaults to true there).
  void Approval(const YAML::Node& e, const std::string& path, EnvironmentConfig* env) {
    YAML::Node n = e["approval"];
    if (!n || !n.IsMap()) {
      Required(e, "approval", path, &env->approval_required);
      return;
    }
    const std::string p = Join(path, "approval");
    if (!Keys(n, p, {"required", "approvals", "distinct_from_requester"})) return;
    env->approval_required = true;
    Required(n, "required", p, &env->approval_required);
    Int(n, "approvals", p, &env->approvals, 1);
    if (auto v = Str(n, "distinct_from_requester", p)) {
      if (*v != "true" && *v != "false") {
        Error(n["distinct_from_requester"], p + ".distinct_from_requester",
              "expected true or false");
      }
      env->distinct_from_requester = *v == "true";
    }
    if (!env->approval_required && (n["approvals"] || n["distinct_from_requester"])) {
      Error(n, p, "approvals and distinct_from_requester need required: true");
    }
  }

  // `approval: required|none` or a boolean.
  void Required(const YAML::Node& parent, const std::string& key, const std::string& path,
                bool* out) {
    std::optional<std::string> s = Str(parent, key, path);
    if (!s) return;
    std::string v = absl::AsciiStrToLower(*s);
    if (v == "required" || v == "true" || v == "yes") {
      *out = true;
    } else if (v == "none" || v == "false" || v == "no" || v == "optional") {
      *out = false;
    } else {
      Error(parent[key], Join(path, key), "expected 'required' or 'none'");
    }
  }

  std::map<std::string, std::string> Labels(const YAML::Node& parent, const std::string& path) {
    std::map<std::string, std::string> out;
    YAML::Node n = parent["labels"];
    if (!n) return out;
    if (!n.IsMap()) {
      Error(n, Join(path, "labels"), "expected a mapping of label: value");
      return out;
    }
    for (const auto& kv : n) {
      if (!kv.second.IsScalar()) {
        Error(kv.second, Join(path, "labels." + kv.first.Scalar()), "expected a string");
        continue;
      }
      out[kv.first.Scalar()] = kv.second.Scalar();
    }
    return out;
  }

  void Server(const YAML::Node& n, ServerConfig* s) {
    const std::string p = "server";
    if (!Keys(n, p,
              {"listen",
               "metrics_listen",
               "state",
               "poll_interval",
               "max_concurrent_checks",
               "max_connections_per_server",
               "connect_timeout",
               "statement_timeout",
               "log_format",
               "backup_dir",
               "backup_keep",
               "alembic_startup_slots",
               "lock_wait",
               "output_dir",
               "schema_interval",
               "max_watch_streams",
               "max_watch_streams_per_client",
               "metrics_per_database",
               "tls",
               "auth",
               "audit_log",
               "insecure"})) {
      return;
    }
    for (auto [key, out] : {std::pair{"listen", &s->listen}, {"metrics_listen", &s->metrics_listen}}) {
      std::optional<std::string> v = Str(n, key, p);
      if (!v) continue;
      if (!IsValidListen(*v)) {
        Error(n[key], Join(p, key),
              absl::StrCat("expected HOST:PORT with a port from 0 to 65535, not '", *v, "'"));
      }
      *out = *v;
    }
    if (auto v = Str(n, "state", p)) s->state = *v;
    if (auto v = Str(n, "backup_dir", p)) s->backup_dir = *v;
    if (auto v = Str(n, "output_dir", p)) s->output_dir = *v;
    if (auto v = Str(n, "audit_log", p)) s->audit_log = *v;
    Int(n, "backup_keep", p, &s->backup_keep, 1);
    Int(n, "alembic_startup_slots", p, &s->alembic_startup_slots, 0);
    Duration(n, "poll_interval", p, &s->poll_interval);
    if (s->poll_interval < absl::Seconds(1)) Error(n["poll_interval"], p + ".poll_interval", "must be at least 1s");
    Int(n, "max_concurrent_checks", p, &s->max_concurrent_checks, 1);
    Int(n, "max_connections_per_server", p, &s->max_connections_per_server, 1);
    Int(n, "max_watch_streams", p, &s->max_watch_streams, 1);
    Int(n, "max_watch_streams_per_client", p, &s->max_watch_streams_per_client, 1);
    Duration(n, "connect_timeout", p, &s->connect_timeout);
    Duration(n, "statement_timeout", p, &s->statement_timeout);
    Duration(n, "lock_wait", p, &s->lock_wait);
    Duration(n, "schema_interval", p, &s->schema_interval);
    if (auto v = Str(n, "metrics_per_database", p)) {
      if (*v != "not_clean" && *v != "all" && *v != "none") {
        Error(n["metrics_per_database"], p + ".metrics_per_database",
              "expected 'not_clean', 'all' or 'none'");
      }
      s->metrics_per_database = *v;
    }
    if (auto v = Str(n, "log_format", p)) {
      if (*v != "text" && *v != "json") {
        Error(n["log_format"], p + ".log_format", "expected 'text' or 'json'");
      } else {
        s->log_format = *v;
      }
    }
    if (auto v = Str(n, "insecure", p)) {
      if (*v != "true" && *v != "false") {
        Error(n["insecure"], p + ".insecure", "expected true or false");
      }
      s->insecure = *v == "true";
    }
    if (YAML::Node tls = n["tls"]) Tls(tls, s);
    if (YAML::Node auth = n["auth"]) Auth(auth, s);
    const bool authenticated = s->auth || (s->tls && !s->tls->client_ca.empty());
    if (!s->insecure && !IsLoopbackListen(s->listen) && (!s->tls || !authenticated)) {
      Error(n["listen"] ? n["listen"] : n, p + ".listen",
            absl::StrCat("lockstepd would serve ", s->listen,
                         !s->tls ? " in plaintext" : " without authentication",
                         " to anyone who reaches it: set server.tls {cert, key} and "
                         "server.auth.tokens_file (or tls.client_ca to require client "
                         "certificates), or server.insecure: true to accept that"));
    }
  }

  // server.auth: {tokens_file}; the file is read now (and at every reload).
  void Auth(const YAML::Node& n, ServerConfig* s) {
    const std::string p = "server.auth";
    if (!n.IsMap()) {
      Error(n, p, "expected a mapping {tokens_file}");
      return;
    }
    if (!Keys(n, p, {"tokens_file"})) return;
    std::optional<std::string> file = Str(n, "tokens_file", p);
    if (!file) {
      Error(n, p + ".tokens_file", "is required (the file `lockstep token create` lines go in)");
      return;
    }
    if (file->empty()) return;  // as docs/reference.md shows: no tokens
    s->auth = AuthConfig{Resolve(base_, *file)};
    auth_node_ = n["tokens_file"];
  }

  // The tokens file: "sha256:<hex> SUBJECT [GROUP,...]" per line; '#'
  // starts a comment. Errors name the file and line, never a line's text
  // (a token pasted by mistake must not reach a log).
  void Tokens(Inventory& inv) {
    const std::string& path = inv.server.auth->tokens_file;
    std::ifstream in(path);
    if (!in) {
      Error(auth_node_, "server.auth.tokens_file", absl::StrCat("cannot read ", path));
      return;
    }
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      if (size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
      std::vector<std::string> fields =
          absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
      if (fields.empty()) continue;
      auto bad = [&](const std::string& what) {
        errors_.push_back(absl::StrCat(path, ":", number, ": ", what));
      };
      static constexpr char kPrefix[] = "sha256:";
      const std::string lower = absl::AsciiStrToLower(fields[0]);
      absl::string_view digest = lower;
      if (fields.size() < 2 || fields.size() > 3 || !absl::ConsumePrefix(&digest, kPrefix) ||
          digest.size() != 64 || !std::all_of(digest.begin(), digest.end(), [](char c) {
            return absl::ascii_isxdigit(c);
          })) {
        bad("expected 'sha256:<64 hex digits> SUBJECT [GROUP,...]' (lockstep token create "
            "prints such a line)");
        continue;
      }
      TokenSubject who{fields[1], {}};
      if (!IsValidSubject(who.subject) || absl::StartsWith(who.subject, "group:")) {
        bad(absl::StrCat("bad subject '", Printable(who.subject), "': ", kSubjectPatternText));
        continue;
      }
      if (fields.size() == 3) {
        who.groups = absl::StrSplit(fields[2], ',', absl::SkipEmpty());
        for (const std::string& g : who.groups) {
          if (!IsValidSubject(g)) bad(absl::StrCat("bad group '", Printable(g), "'"));
        }
      }
      if (!inv.tokens.emplace(std::string(digest), std::move(who)).second) {
        bad("the same token hash is listed twice");
      }
    }
  }

  // access: [{subjects, role, environments}], checked against the
  // environments; needs authentication, and authentication needs it.
  void Access(const YAML::Node& root, Inventory& inv) {
    inv.authentication = inv.server.auth || (inv.server.tls && !inv.server.tls->client_ca.empty());
    if (inv.server.auth) Tokens(inv);
    YAML::Node n = root["access"];
    if (!n) {
      if (inv.authentication) {
        Error(root, "access",
              "is required with authentication (server.auth or tls.client_ca): access is "
              "denied by default, so without bindings nobody could do anything");
      }
      return;
    }
    if (!inv.authentication) {
      Error(n, "access",
            "needs authentication to know who calls: set server.auth.tokens_file or "
            "server.tls.client_ca");
      return;
    }
    if (!n.IsSequence() || n.size() == 0) {
      Error(n, "access", "expected a list of {subjects, role, environments}");
      return;
    }
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node b = n[i];
      const std::string p = absl::StrCat("access[", i, "]");
      if (!b.IsMap()) {
        Error(b, p, "expected a mapping {subjects, role, environments}");
        continue;
      }
      if (!Keys(b, p, {"subjects", "role", "environments"})) continue;
      AccessBinding binding;
      binding.line = b.Mark().line + 1;
      binding.subjects = NameList(b, "subjects", p);
      for (const std::string& subject : binding.subjects) {
        absl::string_view name = subject;
        absl::ConsumePrefix(&name, "group:");
        if (!IsValidSubject(std::string(name))) {
          Error(b["subjects"], p + ".subjects",
                absl::StrCat("bad subject '", Printable(subject), "': ", kSubjectPatternText,
                             " (a group as group:NAME)"));
        }
      }
      if (std::optional<std::string> role = Str(b, "role", p)) {
        if (std::find(std::begin(kRoles), std::end(kRoles), *role) == std::end(kRoles)) {
          Error(b["role"], p + ".role",
                absl::StrCat("unknown role '", Printable(*role),
                             "'; roles: viewer, operator, approver, restorer, admin"));
        }
        binding.role = *role;
      } else {
        Error(b, p + ".role", "is required: viewer, operator, approver, restorer or admin");
      }
      binding.environments = NameList(b, "environments", p);
      PatternsMatch(b["environments"], p + ".environments", binding.environments,
                    inv.EnvironmentNames(), "environment");
      inv.access.push_back(std::move(binding));
    }
  }

  // A non-empty list of strings at parent[key].
  std::vector<std::string> NameList(const YAML::Node& parent, const std::string& key,
                                    const std::string& path) {
    std::vector<std::string> out;
    YAML::Node n = parent[key];
    if (!n || !n.IsSequence() || n.size() == 0) {
      Error(n ? n : parent, Join(path, key), "expected a non-empty list");
      return out;
    }
    for (const auto& item : n) {
      if (!item.IsScalar()) {
        Error(item, Join(path, key), "expected a string");
        continue;
      }
      out.push_back(item.Scalar());
    }
    return out;
  }

  // server.tls: {cert, key, client_ca}; every file must be readable now.
  void Tls(const YAML::Node& n, ServerConfig* s) {
    const std::string p = "server.tls";
    if (!n.IsMap()) {
      Error(n, p, "expected a mapping {cert, key, client_ca}");
      return;
    }
    if (!Keys(n, p, {"cert", "key", "client_ca"})) return;
    // All empty (as docs/reference.md shows): no TLS.
    bool any = false;
    for (const char* key : {"cert", "key", "client_ca"}) {
      std::optional<std::string> v = Str(n, key, p);
      any = any || (v && !v->empty());
    }
    if (!any) return;
    TlsConfig tls;
    bool ok = true;
    for (auto [key, out, required] :
         {std::tuple{"cert", &tls.cert, true}, std::tuple{"key", &tls.key, true},
          std::tuple{"client_ca", &tls.client_ca, false}}) {
      std::optional<std::string> v = Str(n, key, p);
      if (!v || v->empty()) {
        if (required) {
          Error(n, Join(p, key), "is required (a PEM file)");
          ok = false;
        }
        continue;
      }
      *out = Resolve(base_, *v);
      std::ifstream in(*out);
      if (!in) {
        Error(n[key], Join(p, key), absl::StrCat("cannot read ", *out));
        ok = false;
      }
    }
    if (ok) s->tls = std::move(tls);
  }

  // schema_scope: database | version_table_schema.
  std::optional<SchemaScope> Scope(const YAML::Node& n, const std::string& p) {
    std::optional<std::string> v = Str(n, "schema_scope", p);
    if (!v) return std::nullopt;
    if (*v == "database") return SchemaScope::kDatabase;
    if (*v == "version_table_schema") return SchemaScope::kVersionTableSchema;
    Error(n["schema_scope"], p + ".schema_scope",
          absl::StrCat("'", Printable(*v), "' is not one of database, version_table_schema"));
    return std::nullopt;
  }

  // Where the scripts are: what `lockstep --inventory` reads too.
  void ProjectSource(const YAML::Node& n, ProjectConfig* pr) {
    const std::string p = "project";
    if (auto v = Str(n, "alembic_ini", p)) pr->alembic_ini = Resolve(base_, *v);
    if (auto v = Str(n, "scripts", p)) pr->scripts = Resolve(base_, *v);
    if (pr->alembic_ini.empty() == pr->scripts.empty()) {
      Error(n, p, "set exactly one of alembic_ini or scripts");
    }
    if (auto v = Str(n, "ini_section", p)) pr->ini_section = *v;
  }

  void Project(const YAML::Node& n, ProjectConfig* pr) {
    const std::string p = "project";
    if (!Keys(n, p,
              {"alembic_ini", "scripts", "ini_section", "version_table", "version_table_schema",
               "schema_scope", "alembic_command", "working_dir", "step_timeout", "alembic_runner",
               "python", "schema_ignore", "shadow_postgresql", "shadow_mysql", "verify_schema"})) {
      return;
    }
    ProjectSource(n, pr);
    if (auto v = Str(n, "version_table", p)) pr->version_table = *v;
    if (auto v = Str(n, "version_table_schema", p)) pr->version_table_schema = *v;
    if (auto v = Scope(n, p)) pr->schema_scope = *v;
    pr->working_dir = base_;
    if (auto v = Str(n, "working_dir", p)) pr->working_dir = Resolve(base_, *v);
    Duration(n, "step_timeout", p, &pr->step_timeout);
    if (auto v = Str(n, "alembic_runner", p)) {
      if (*v != "process" && *v != "warm") {
        Error(n["alembic_runner"], p + ".alembic_runner", "expected 'process' or 'warm'");
      } else {
        pr->alembic_runner = *v;
      }
    }
    if (auto v = Str(n, "python", p)) pr->python = *v;
    if (auto v = Str(n, "verify_schema", p)) {
      if (*v != "fail" && *v != "warn" && *v != "off") {
        Error(n["verify_schema"], p + ".verify_schema", "expected 'fail', 'warn' or 'off'");
      } else {
        pr->verify_schema = *v;
      }
    }
    for (auto [key, dialect, field] :
         {std::tuple{"shadow_postgresql", Dialect::kPostgresql, &pr->shadow_postgresql},
          std::tuple{"shadow_mysql", Dialect::kMysql, &pr->shadow_mysql}}) {
      std::optional<std::string> v = Str(n, key, p);
      if (!v || v->empty()) continue;  // "" (as docs/reference.md shows): none
      const std::string where = absl::StrCat(p, ".", key);
      absl::StatusOr<DatabaseUrl> url = ParseDatabaseUrl(*v, base_);
      if (!url.ok()) {
        Error(n[key], where, std::string(url.status().message()));
      } else if (url->dialect != dialect) {
        Error(n[key], where,
              absl::StrCat("expected a ", DialectName(dialect),
                           ":// URL of a server where lockstepd may create databases"));
      } else {
        *field = *url;
      }
    }
    if (YAML::Node ignore = n["schema_ignore"]) {
      if (!ignore.IsSequence()) {
        Error(ignore, p + ".schema_ignore", "expected a list of name patterns, e.g. [audit_*]");
      } else {
        for (const auto& i : ignore) pr->schema_ignore.push_back(i.Scalar());
      }
    }
    if (YAML::Node cmd = n["alembic_command"]) {
      if (!cmd.IsSequence() || cmd.size() == 0) {
        Error(cmd, p + ".alembic_command", "expected a non-empty list, e.g. [alembic]");
      } else {
        pr->alembic_command.clear();
        for (const auto& c : cmd) pr->alembic_command.push_back(c.Scalar());
      }
    }
  }

  // {what}_env / {what}_file: where a secret comes from, checked now.
  void Secret(const YAML::Node& n, const std::string& path, SecretRef* s,
              const std::string& what = "password") {
    const std::string env_key = what + "_env", file_key = what + "_file";
    if (auto v = Str(n, env_key, path)) {
      s->env = *v;
      if (std::getenv(v->c_str()) == nullptr) {
        Error(n[env_key], Join(path, env_key),
              absl::StrCat("environment variable ", *v, " is not set"));
      }
    }
    if (auto v = Str(n, file_key, path)) {
      s->file = Resolve(base_, *v);
      std::ifstream f(s->file);
      if (!f) {
        Error(n[file_key], Join(path, file_key), absl::StrCat("cannot read ", s->file));
      }
    }
    if (!s->env.empty() && !s->file.empty()) {
      Error(n, path, absl::StrCat("set ", env_key, " or ", file_key, ", not both"));
    }
  }

  // Patterns of `n` that match none of `names`, as errors at `path`.
  template <typename Names>
  void PatternsMatch(const YAML::Node& n, const std::string& path,
                     const std::vector<std::string>& patterns, const Names& names,
                     const std::string& what) {
    for (const std::string& pattern : patterns) {
      bool matched = false;
      for (const auto& name : names) {
        matched = matched || ::fnmatch(pattern.c_str(), std::string(name).c_str(), 0) == 0;
      }
      if (!matched) {
        Error(n, path, absl::StrCat("'", Printable(pattern), "' matches no ", what));
      }
    }
  }

  // notify: [{name, url, events, environments, format, secret_env, secret_file}].
  void Notify(const YAML::Node& n, Inventory& inv) {
    if (!n.IsSequence()) {
      Error(n, "notify", "expected a list of {name, url, events, environments, format}");
      return;
    }
    const std::vector<std::string> environment_names = inv.EnvironmentNames();
    std::set<std::string> names;
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node w = n[i];
      const std::string p = absl::StrCat("notify[", i, "]");
      if (!Keys(w, p,
                {"name", "url", "events", "environments", "format", "secret_env", "secret_file"})) {
        continue;
      }
      NotifyConfig c;
      c.line = w.Mark().line + 1;
      c.name = Str(w, "name", p).value_or(absl::StrCat("webhook-", i + 1));
      if (!names.insert(c.name).second) {
        Error(w["name"] ? w["name"] : w, Join(p, "name"),
              absl::StrCat("'", Printable(c.name), "' names another webhook too"));
      }
      if (std::optional<std::string> url = Str(w, "url", p)) {
        c.url = *url;
        if (!absl::StartsWith(c.url, "http://") && !absl::StartsWith(c.url, "https://")) {
          // The URL is not repeated: a Slack webhook's URL is its credential.
          Error(w["url"], Join(p, "url"), "expected an http:// or https:// URL");
        }
      } else {
        Error(w, Join(p, "url"), "is required");
      }
      if (w["events"]) {
        c.events = NameList(w, "events", p);
        PatternsMatch(w["events"], Join(p, "events"), c.events, kNotifyEvents,
                      absl::StrCat("event (events: ", absl::StrJoin(kNotifyEvents, ", "), ")"));
      } else {
        c.events.assign(std::begin(kDefaultNotifyEvents), std::end(kDefaultNotifyEvents));
      }
      if (w["environments"]) {
        c.environments = NameList(w, "environments", p);
        PatternsMatch(w["environments"], Join(p, "environments"), c.environments, environment_names,
                      "environment");
      }
      if (std::optional<std::string> format = Str(w, "format", p)) {
        if (*format != "json" && *format != "slack") {
          Error(w["format"], Join(p, "format"),
                absl::StrCat("unknown format '", Printable(*format), "'; json or slack"));
        }
        c.format = *format;
      }
      Secret(w, p, &c.secret, "secret");
      inv.notify.push_back(std::move(c));
    }
  }

  std::optional<DatabaseUrl> Url(const YAML::Node& n, const std::string& path) {
    std::optional<std::string> text = Str(n, "url", path);
    if (!text) {
      Error(n, path, "url is required");
      return std::nullopt;
    }
    absl::StatusOr<DatabaseUrl> url = ParseDatabaseUrl(*text, base_);
    if (!url.ok()) {
      Error(n["url"], Join(path, "url"), std::string(url.status().message()));
      return std::nullopt;
    }
    return *url;
  }

  void Environments(const YAML::Node& n, Inventory& inv) {
    if (!n.IsSequence() || n.size() == 0) {
      Error(n, "environments", "expected a non-empty list");
      return;
    }
    std::vector<EnvironmentConfig> envs;
    std::map<std::string, YAML::Node> nodes;
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node e = n[i];
      std::string p = absl::StrCat("environments[", i, "]");
      if (!Keys(e, p,
                {"name", "after", "soak", "approval", "backup", "canary", "canary_soak",
                 "canary_approval", "windows", "batch_size", "max_parallel", "max_failures",
                 "on_failure", "target", "databases"})) {
        continue;
      }
      EnvironmentConfig env;
      std::optional<std::string> name = Str(e, "name", p);
      if (!name || name->empty()) {
        Error(e, p, "name is required");
        continue;
      }
      env.name = *name;
      if (!IsValidName(env.name)) {
        Error(e["name"], p + ".name", absl::StrCat("'", Printable(env.name), "' is not a valid name: ",
                                                   kNamePatternText));
        continue;
      }
      p = absl::StrCat("environments[", env.name, "]");
      if (nodes.count(env.name)) {
        Error(e["name"], p, "duplicate environment name");
        continue;
      }
      nodes[env.name] = e;
      if (auto v = Str(e, "after", p)) env.after = *v;
      Duration(e, "soak", p, &env.soak);
      Approval(e, p, &env);
      Windows(e, p, &env);
      Required(e, "backup", p, &env.backup_required);
      Int(e, "batch_size", p, &env.batch_size, 1);
      Int(e, "max_parallel", p, &env.max_parallel, 1);
      Int(e, "max_failures", p, &env.max_failures, 0);
      if (auto v = Str(e, "target", p)) env.target = *v;
      if (auto v = Str(e, "on_failure", p)) {
        if (*v == "restore") {
          env.on_failure = FailurePolicy::kRestore;
        } else if (*v == "downgrade") {
          env.on_failure = FailurePolicy::kDowngrade;
        } else if (*v == "leave") {
          env.on_failure = FailurePolicy::kLeave;
        } else {
          Error(e["on_failure"], p + ".on_failure", "expected restore, downgrade or leave");
        }
      }
      if (YAML::Node c = e["canary"]) {
        if (c.IsScalar()) {
          env.canary.push_back(c.Scalar());
        } else if (c.IsSequence()) {
          for (const auto& x : c) env.canary.push_back(x.Scalar());
        } else {
          Error(c, p + ".canary", "expected a database name or a list of names");
        }
      }
      Duration(e, "canary_soak", p, &env.canary_soak);
      Required(e, "canary_approval", p, &env.canary_approval_required);
      if (env.canary.empty() && (e["canary_soak"] || e["canary_approval"])) {
        Error(e[e["canary_soak"] ? "canary_soak" : "canary_approval"], p,
              "canary_soak and canary_approval need canary (the databases that go first)");
      }
      Databases(e, p, inv.project, &env);
      std::set<std::string> names;
      for (const DatabaseConfig& d : env.databases) names.insert(d.name);
      if (env.discover.empty()) {
        for (const std::string& c : env.canary) {
          if (!names.count(c)) Error(e["canary"], p + ".canary", "no database named '" + c + "'");
        }
      }
      envs.push_back(std::move(env));
    }
    // `after` must name an environment, without cycles; order by it.
    for (const EnvironmentConfig& env : envs) {
      if (!env.after.empty() && !nodes.count(env.after)) {
        Error(nodes[env.name]["after"], "environments[" + env.name + "].after",
              "no environment named '" + env.after + "'");
      }
    }
    std::vector<EnvironmentConfig> ordered;
    std::set<std::string> placed;
    while (ordered.size() < envs.size()) {
      bool progress = false;
      for (EnvironmentConfig& env : envs) {
        if (placed.count(env.name)) continue;
        if (env.after.empty() || placed.count(env.after) || !nodes.count(env.after)) {
          placed.insert(env.name);
          ordered.push_back(env);
          progress = true;
        }
      }
      if (!progress) {
        std::vector<std::string> cycle;
        for (const EnvironmentConfig& env : envs) {
          if (!placed.count(env.name)) cycle.push_back(env.name);
        }
        Error(nodes[cycle[0]], "environments", "promotion order has a cycle through: " +
                                                   absl::StrJoin(cycle, " -> "));
        break;
      }
    }
    inv.environments = std::move(ordered);
    DuplicateDatabases(inv);
  }

  // One database listed twice (in one environment or two) would be checked
  // and migrated twice, possibly by two rollouts at once: an error naming
  // both entries (DatabaseIdentity says what "the same" is). lockstepd's own
  // files are never fleet databases.
  void DuplicateDatabases(const Inventory& inv) {
    std::map<std::string, std::string> seen;  // identity -> "env/name (line N)"
    OwnFiles own(inv.server);
    for (const EnvironmentConfig& env : inv.environments) {
      for (const DatabaseConfig& db : env.databases) {
        const DatabaseUrl& u = db.url;
        const std::string entry = absl::StrCat(env.name, "/", db.name);
        const std::string at =
            absl::StrCat(file_, ":", db.line, ": environments[", env.name, "].databases: ");
        if (u.dialect == Dialect::kSqlite) {
          if (std::string why = own.Reason(u.database); !why.empty()) {
            errors_.push_back(absl::StrCat(at, entry, " is ", u.database, ", but ", why,
                                           "; lockstepd never migrates its own files"));
            continue;
          }
        }
        std::string identity = DatabaseIdentity(u, db.version_table_schema, db.version_table);
        if (identity.empty()) continue;
        auto [it, fresh] =
            seen.emplace(identity, absl::StrCat(entry, " (", file_, ":", db.line, ")"));
        if (!fresh) {
          errors_.push_back(absl::StrCat(at, entry, " is the same database as ", it->second, ": ",
                                         u.Redacted(), "; list each database once"));
        }
      }
    }
  }

  void Databases(const YAML::Node& e, const std::string& env_path, const ProjectConfig& project,
                 EnvironmentConfig* env) {
    YAML::Node list = e["databases"];
    if (!list) {
      Error(e, env_path, "databases is required");
      return;
    }
    if (!list.IsSequence()) {
      Error(list, env_path + ".databases", "expected a list");
      return;
    }
    std::set<std::string> names;
    for (size_t i = 0; i < list.size(); ++i) {
      const YAML::Node d = list[i];
      std::string p = absl::StrCat(env_path, ".databases[", i, "]");
      if (d.IsMap() && d["discover"]) {
        DiscoverRule rule;
        rule.environment = env->name;
        rule.line = d.Mark().line + 1;
        Keys(d, p, {"discover", "labels"});
        YAML::Node disc = d["discover"];
        std::string dp = p + ".discover";
        if (!Keys(disc, dp, {"url", "query", "glob", "password_env", "password_file"})) continue;
        rule.labels = Labels(d, p);
        if (auto g = Str(disc, "glob", dp)) {
          rule.glob = Resolve(base_, *g);
          if (disc["url"] || disc["query"]) Error(disc, dp, "glob takes no url or query");
        } else {
          rule.url = Url(disc, dp);
          if (auto q = Str(disc, "query", dp)) {
            rule.query = *q;
          } else {
            Error(disc, dp, "query is required with url (it lists database names)");
          }
          if (rule.url && rule.url->dialect == Dialect::kSqlite) {
            Error(disc["url"], dp + ".url",
                  "discover queries need a postgresql or mysql URL (SQLite files: glob)");
          }
        }
        Secret(disc, dp, &rule.secret);
        env->discover.push_back(std::move(rule));
        continue;
      }
      if (!Keys(d, p,
                {"name", "url", "labels", "version_table", "version_table_schema", "schema_scope",
                 "password_env", "password_file"})) {
        continue;
      }
      DatabaseConfig db;
      db.environment = env->name;
      db.line = d.Mark().line + 1;
      std::optional<std::string> name = Str(d, "name", p);
      if (!name || name->empty()) {
        Error(d, p, "name is required");
        continue;
      }
      db.name = *name;
      if (!IsValidName(db.name)) {
        Error(d["name"], p + ".name",
              absl::StrCat("'", Printable(db.name), "' is not a valid name: ", kNamePatternText));
      }
      if (!names.insert(db.name).second) {
        Error(d["name"], p + ".name", "duplicate database name '" + db.name + "' in " + env->name);
      }
      std::optional<DatabaseUrl> url = Url(d, p);
      if (url) db.url = *url;
      db.labels = Labels(d, p);
      db.version_table = Str(d, "version_table", p).value_or(project.version_table);
      db.version_table_schema =
          Str(d, "version_table_schema", p).value_or(project.version_table_schema);
      if (std::optional<SchemaScope> scope = Scope(d, p)) {
        db.schema_scope = *scope;
        if (*scope == SchemaScope::kVersionTableSchema && url &&
            url->dialect != Dialect::kPostgresql) {
          Error(d["schema_scope"], p + ".schema_scope",
                "version_table_schema scopes PostgreSQL databases only (a MySQL database is "
                "already one schema; SQLite has none)");
        }
      } else if (url && url->dialect == Dialect::kPostgresql) {
        db.schema_scope = project.schema_scope;
      }
      if (db.schema_scope == SchemaScope::kVersionTableSchema && db.version_table_schema.empty()) {
        Error(d, p,
              "schema_scope: version_table_schema needs a version_table_schema (the tenant's "
              "schema)");
      }
      Secret(d, p, &db.secret);
      env->databases.push_back(std::move(db));
    }
  }

  std::string file_;
  std::string base_;
  std::vector<std::string> errors_;
};

}  // namespace

const EnvironmentConfig* Inventory::FindEnvironment(const std::string& name) const {
  for (const EnvironmentConfig& e : environments) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::vector<std::string> Inventory::EnvironmentNames() const {
  std::vector<std::string> names;
  for (const EnvironmentConfig& e : environments) names.push_back(e.name);
  return names;
}

std::optional<absl::Duration> ParseDurationText(const std::string& text) {
  std::string t(absl::StripAsciiWhitespace(text));
  double seconds = 0;
  if (absl::SimpleAtod(t, &seconds)) return absl::Seconds(seconds);
  absl::Duration d;
  if (absl::ParseDuration(t, &d)) return d;
  return std::nullopt;
}

absl::StatusOr<Inventory> ParseInventory(const std::string& yaml, const std::string& path) {
  return Loader(path).Load(yaml);
}

namespace {
absl::StatusOr<std::string> ReadInventoryFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the inventory file"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}
}  // namespace

absl::StatusOr<Inventory> LoadInventory(const std::string& path) {
  absl::StatusOr<std::string> text = ReadInventoryFile(path);
  if (!text.ok()) return text.status();
  return ParseInventory(*text, path);
}

absl::StatusOr<ProjectConfig> LoadInventoryProject(const std::string& path) {
  absl::StatusOr<std::string> text = ReadInventoryFile(path);
  if (!text.ok()) return text.status();
  return Loader(path).LoadProject(*text);
}

bool MatchesAnyPattern(const std::vector<std::string>& patterns, const std::string& name) {
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) {
    return ::fnmatch(p.c_str(), name.c_str(), 0) == 0;
  });
}

bool IsLoopbackListen(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::StatusOr<std::optional<std::string>> ResolvePassword(const DatabaseUrl& url,
                                                           const SecretRef& secret,
                                                           const std::string& what) {
  if (!secret.env.empty()) {
    const char* v = std::getenv(secret.env.c_str());
    if (v == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "password for ", what, ": environment variable ", secret.env, " is not set"));
    }
    return std::optional<std::string>(v);
  }
  if (!secret.file.empty()) {
    std::ifstream f(secret.file);
    if (!f) {
      return absl::FailedPreconditionError(
          absl::StrCat("password for ", what, ": cannot read ", secret.file));
    }
    std::string pw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    while (!pw.empty() && (pw.back() == '\n' || pw.back() == '\r')) pw.pop_back();
    return std::optional<std::string>(pw);
  }
  return url.password;
}

}  // namespace lockstep::config
