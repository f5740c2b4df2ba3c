#include "client/online_commands.h"

#include <grpcpp/grpcpp.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <tuple>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/json_writer.h"
#include "client/offline_commands.h"
#include "client/online_common.h"
#include "client/rollout_commands.h"
#include "daemon/schema/schema.h"
#include "lockstep/v1/lockstep.grpc.pb.h"
#include "lockstep/v1/wire_names.h"

namespace lockstep::client {
namespace {

using v1::WireName;

// A schema that was not judged (an older lockstepd sends no state) reads
// "unknown", as one that could not be.
std::string SchemaWord(v1::SchemaState s) {
  return s == v1::SCHEMA_STATE_UNSPECIFIED ? "unknown" : WireName(s);
}

std::string Colored(const Context& c, const std::string& state) {
  if (!c.color) return state;
  static const std::map<std::string, const char*> kColors = {
      {"current", "\033[32m"},           {"behind", "\033[33m"},     {"ahead", "\033[35m"},
      {"diverged", "\033[35m"},          {"orphaned", "\033[31m"},   {"uninitialized", "\033[36m"},
      {"version_rows_lost", "\033[31m"}, {"unreachable", "\033[31m"},
      {"match", "\033[32m"},             {"drift", "\033[31m"}};
  auto it = kColors.find(state);
  return it == kColors.end() ? state : absl::StrCat(it->second, state, "\033[0m");
}

void WriteDatabase(JsonWriter& w, const v1::Database& d) {
  auto list = [](const auto& repeated) { return std::vector<std::string>(repeated.begin(), repeated.end()); };
  w.BeginObject();
  w.Key("environment").String(d.environment());
  w.Key("database").String(d.database());
  w.Key("state").String(WireName(d.state()));
  w.Key("revisions").StringArray(list(d.revisions()));
  w.Key("pending").StringArray(list(d.pending()));
  w.Key("reason").String(d.reason());
  w.Key("orphaned").StringArray(list(d.orphaned()));
  w.Key("beyond").StringArray(list(d.beyond()));
  w.Key("url").String(d.url());
  w.Key("labels").BeginObject();
  std::map<std::string, std::string> labels(d.labels().begin(), d.labels().end());
  for (const auto& [k, v] : labels) w.Key(k).String(v);
  w.EndObject();
  w.Key("check_outcome").String(d.check_outcome());
  w.Key("check_error").String(d.check_error());
  w.Key("last_check").String(Time(d.last_check()));
  w.Key("last_change").String(Time(d.last_change()));
  w.Key("discovered").Bool(d.discovered());
  const v1::SchemaCheck& sc = d.schema();
  w.Key("schema").BeginObject();
  w.Key("state").String(SchemaWord(sc.state())).Key("reason").String(sc.reason());
  w.Key("fingerprint").String(sc.fingerprint());
  w.Key("differences").BeginArray();
  for (const v1::SchemaDifference& x : sc.differences()) {
    w.BeginObject().Key("kind").String(x.kind()).Key("name").String(x.name());
    w.Key("change").String(x.change()).Key("expected").String(x.expected());
    w.Key("found").String(x.found()).EndObject();
  }
  w.EndArray().Key("checked_at").String(Time(sc.checked_at()));
  // The revision its schema is exactly (or, failing that, closest to):
  // null unless its version rows cannot be trusted.
  auto revision_or_null = [&](const char* key, const auto& revisions) {
    w.Key(key);
    if (revisions.empty()) {
      w.Null();
    } else {
      w.String(absl::StrJoin(revisions, " "));
    }
  };
  revision_or_null("matches_revision", sc.matches_revisions());
  revision_or_null("closest_revision", sc.closest_revisions());
  w.Key("closest_differences").Int(sc.closest_differences());
  w.EndObject();
  w.Key("changed_revisions").BeginArray();
  for (const v1::ChangedRevision& x : d.changed_revisions()) {
    w.BeginObject().Key("revision").String(x.revision());
    w.Key("applied_sha256").String(x.applied_sha256());
    w.Key("current_sha256").String(x.current_sha256());
    w.Key("cosmetic").Bool(x.cosmetic()).Key("baseline").Bool(x.baseline());
    w.Key("applied_at").String(Time(x.applied_at())).EndObject();
  }
  w.EndArray();
  w.EndObject();
}

// "e9a8c6b4d244 changed after it was applied (sha256 1a2b3c4d5e6f then,
// 3c4d5e6f7a8b now; only comments or spacing)".
std::string DescribeChange(const v1::ChangedRevision& x) {
  return absl::StrCat(
      x.revision(), " changed after it was ", x.baseline() ? "first seen applied, " : "applied, ",
      Time(x.applied_at()), ": sha256 ", x.applied_sha256().substr(0, 12), "… then, ",
      x.current_sha256().substr(0, 12), "… now",
      x.cosmetic() ? " (only comments, docstrings or spacing: the code is the same)" : "");
}

// "table orders missing", in the daemon's words (schema.h Describe).
// Who changed a database's rows, as the daemon worked it out: a step of a
// rollout (which kind), a restore, or nothing lockstep did.
std::string ChangeCause(const v1::RevisionChange& ch) {
  if (ch.first_seen()) return "";
  if (ch.restored_backup() != 0) {  // with the rollout it waited in, if any
    return absl::StrCat("restore of backup ", ch.restored_backup(),
                        ch.restored_by().empty() ? "" : " by ", ch.restored_by(),
                        ch.rollout_id().empty() ? "" : ", ", ch.rollout_id());
  }
  if (!ch.rollout_id().empty()) return absl::StrCat(ch.rollout_kind(), " ", ch.rollout_id());
  return "not by lockstep";
}

std::string DescribeDifference(const v1::SchemaDifference& d) {
  return daemon::Describe({d.kind(), d.name(), d.change(), d.expected(), d.found()});
}

// The whole (filtered) fleet, a page at a time: a reply of 100,000
// databases would not fit in one message.
int GetFleet(Context& c, v1::Lockstep::Stub& stub, v1::GetFleetRequest req,
             v1::GetFleetResponse* resp) {
  constexpr int kPage = 2000;
  req.set_page_size(kPage);
  int rc = Call(c, stub, &v1::Lockstep::Stub::GetFleet, req, resp, kReadSeconds);
  while (rc == kExitOk && !resp->next_page_token().empty()) {
    req.set_page_token(resp->next_page_token());
    v1::GetFleetResponse page;
    rc = Call(c, stub, &v1::Lockstep::Stub::GetFleet, req, &page, kReadSeconds);
    for (v1::Database& d : *page.mutable_databases()) *resp->add_databases() = std::move(d);
    resp->set_next_page_token(page.next_page_token());
  }
  return rc;
}

int Status(Context& c, v1::Lockstep::Stub& stub) {
  v1::GetFleetRequest req;
  if (!c.args.positional.empty()) req.set_environment(c.args.positional[0]);
  req.set_not_clean(c.args.Flag("not-clean"));
  if (std::optional<std::string> state = c.args.Option("state")) {
    std::optional<v1::DatabaseState> wanted = v1::ParseWireName<v1::DatabaseState>(*state);
    if (!wanted || *wanted == v1::DATABASE_STATE_UNSPECIFIED) {
      c.err << "lockstep status: --state '" << *state
            << "' is no state; states: current, behind, ahead, diverged, orphaned, "
               "uninitialized, version_rows_lost, unreachable\n";
      return kExitUsage;
    }
    req.set_state(*wanted);
  }
  v1::GetFleetResponse resp;
  int rc = GetFleet(c, stub, req, &resp);
  if (rc != kExitOk) return rc;
  bool clean = true;
  // Clean: every database current, and none whose schema drifted.
  for (const v1::Database& d : resp.databases()) {
    clean &=
        d.state() == v1::DATABASE_STATE_CURRENT && d.schema().state() != v1::SCHEMA_STATE_DRIFT;
  }
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("refreshed_at").String(Time(resp.refreshed_at()));
    w.Key("graph").BeginObject();
    w.Key("heads").StringArray({resp.graph().heads().begin(), resp.graph().heads().end()});
    w.Key("broken").Bool(resp.graph().broken()).Key("error").String(resp.graph().error());
    w.EndObject();
    w.Key("state_store_error").String(resp.state_store_error());
    w.Key("environments").BeginArray();
    for (const v1::Environment& e : resp.environments()) {
      w.BeginObject().Key("name").String(e.name()).Key("after").String(e.after());
      w.Key("target").String(e.target()).Key("databases").Int(e.database_count());
      w.Key("in_lockstep").Bool(e.in_lockstep());
      w.Key("promotion_violations")
          .StringArray({e.promotion_violations().begin(), e.promotion_violations().end()});
      w.EndObject();
    }
    w.EndArray().Key("databases").BeginArray();
    for (const v1::Database& d : resp.databases()) WriteDatabase(w, d);
    w.EndArray().Key("clean").Bool(clean).EndObject();
    c.out << w.Finish();
  } else {
    c.out << "heads: " << absl::StrJoin(resp.graph().heads(), ", ") << "    refreshed "
          << Time(resp.refreshed_at()) << "\n";
    if (resp.graph().broken()) c.out << "scripts do not load (last good graph in use): " << resp.graph().error() << "\n";
    if (!resp.state_store_error().empty()) {
      c.out << "NOT ACTING: " << resp.state_store_error()
            << "; rollouts are halted and none starts until it can\n";
    }
    c.out << "\n";
    std::vector<std::vector<std::string>> rows = {
        {"ENVIRONMENT", "DATABASE", "STATE", "SCHEMA", "REVISIONS", "PENDING", "REASON"}};
    std::vector<std::vector<std::string>> shown = rows;
    std::vector<const v1::Database*> drifted;
    for (const v1::Database& d : resp.databases()) {
      const std::string schema = SchemaWord(d.schema().state());
      std::vector<std::string> r = {d.environment(),
                                    d.database(),
                                    WireName(d.state()),
                                    schema,
                                    d.revisions().empty() ? "-" : absl::StrJoin(d.revisions(), ","),
                                    std::to_string(d.pending_size()),
                                    d.reason()};
      rows.push_back(r);
      r[2] = Colored(c, WireName(d.state()));
      r[3] = Colored(c, schema);
      shown.push_back(r);
      if (schema == "drift") drifted.push_back(&d);
    }
    PrintTable(c.out, rows, shown);
    for (const v1::Database* d : drifted) {
      c.out << "\n" << d->environment() << "/" << d->database() << ": schema drift: "
            << d->schema().reason();
    }
    if (!drifted.empty()) c.out << "\n";
    std::map<std::string, int> edited;  // revision -> databases
    for (const v1::Database& d : resp.databases()) {
      for (const v1::ChangedRevision& x : d.changed_revisions())
        edited[x.revision()] += !x.cosmetic();
    }
    for (const auto& [revision, databases] : edited) {
      if (databases == 0) continue;
      c.out << "\nrevision " << revision << " was edited after it was applied to "
            << Plural(databases, "database") << " (lockstep validate)\n";
    }
    for (const v1::Environment& e : resp.environments()) {
      if (!e.in_lockstep()) {
        // Why, in counts: the revision sets, then the databases whose rows
        // are unknown or meaningless.
        std::vector<std::string> why;
        if (e.revision_sets_size() > 1) {
          why.push_back(absl::StrCat(e.revision_sets_size(), " different revision sets"));
        }
        for (const char* state : {"orphaned", "version_rows_lost", "unreachable"}) {
          auto it = e.by_state().find(state);
          if (it != e.by_state().end() && it->second > 0) {
            why.push_back(absl::StrCat(Plural(it->second, "database"), " ", state));
          }
        }
        c.out << "\n" << e.name() << ": not in lockstep (" << absl::StrJoin(why, "; ") << ")";
      }
      if (e.promotion_violations_size() > 0) {
        c.out << "\n" << e.name() << ": promotion order: " << absl::StrJoin(e.promotion_violations(), ", ")
              << " applied before every " << e.after() << " database has them";
      }
      for (const std::string& de : e.discover_errors()) c.out << "\n" << e.name() << ": discover: " << de;
    }
    if (!resp.environments().empty()) c.out << "\n";
  }
  return c.args.Flag("check") && !clean ? kExitNotClean : kExitOk;
}

// Exit 0 when the schemas are the same, kExitNotClean (3) when they differ.
int Diff(Context& c, v1::Lockstep::Stub& stub) {
  if (c.args.positional.size() != 1 || c.args.positional[0].find('/') == std::string::npos) {
    c.err << "lockstep diff: expects ENV/NAME\n";
    return kExitUsage;
  }
  const std::string& arg = c.args.positional[0];
  v1::DiffSchemaRequest req;
  req.set_environment(arg.substr(0, arg.find('/')));
  req.set_database(arg.substr(arg.find('/') + 1));
  if (std::optional<std::string> against = c.args.Option("against")) req.set_against(*against);
  v1::DiffSchemaResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::DiffSchema, req, &resp, kChangeSeconds);
  if (rc != kExitOk) return rc;
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("database").String(arg).Key("against").String(resp.against());
    w.Key("found_fingerprint").String(resp.found_fingerprint());
    w.Key("against_fingerprint").String(resp.against_fingerprint());
    w.Key("differences").BeginArray();
    for (const v1::SchemaDifference& x : resp.differences()) {
      w.BeginObject().Key("kind").String(x.kind()).Key("name").String(x.name());
      w.Key("change").String(x.change()).Key("expected").String(x.expected());
      w.Key("found").String(x.found()).EndObject();
    }
    w.EndArray().EndObject();
    c.out << w.Finish();
  } else if (resp.differences().empty()) {
    c.out << arg << ": the same schema as " << resp.against() << "\n";
  } else {
    c.out << arg << " against " << resp.against() << ": " << resp.differences_size()
          << " difference" << (resp.differences_size() == 1 ? "" : "s") << "\n";
    for (const v1::SchemaDifference& x : resp.differences()) {
      c.out << "  " << DescribeDifference(x) << "\n";
    }
  }
  return resp.differences().empty() ? kExitOk : kExitNotClean;
}

int Db(Context& c, v1::Lockstep::Stub& stub) {
  if (c.args.positional.size() != 1 || c.args.positional[0].find('/') == std::string::npos) {
    c.err << "lockstep db: expects ENV/NAME\n";
    return kExitUsage;
  }
  const std::string& arg = c.args.positional[0];
  v1::GetDatabaseRequest req;
  req.set_environment(arg.substr(0, arg.find('/')));
  req.set_database(arg.substr(arg.find('/') + 1));
  v1::GetDatabaseResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::GetDatabase, req, &resp, kReadSeconds);
  if (rc != kExitOk) return rc;
  const v1::Database& d = resp.database();
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("database");
    WriteDatabase(w, d);
    w.Key("changes").BeginArray();
    for (const v1::RevisionChange& ch : resp.changes()) {
      w.BeginObject().Key("from").StringArray({ch.from().begin(), ch.from().end()});
      w.Key("to").StringArray({ch.to().begin(), ch.to().end()});
      w.Key("observed_at").String(Time(ch.observed_at()));
      w.Key("first_seen").Bool(ch.first_seen());
      w.Key("rollout_id").String(ch.rollout_id());
      w.Key("rollout_kind").String(ch.rollout_kind());
      w.Key("restored_backup").Int(ch.restored_backup());
      w.Key("restored_by").String(ch.restored_by());
      w.Key("cause").String(ChangeCause(ch)).EndObject();
    }
    w.EndArray().EndObject();
    c.out << w.Finish();
    return kExitOk;
  }
  c.out << d.environment() << "/" << d.database() << "  " << Colored(c, WireName(d.state())) << "\n"
        << "  url:        " << d.url() << "\n"
        << "  revisions:  " << (d.revisions().empty() ? "-" : absl::StrJoin(d.revisions(), ", "))
        << "\n"
        << "  pending:    " << (d.pending().empty() ? "-" : absl::StrJoin(d.pending(), ", "))
        << "\n"
        << "  reason:     " << d.reason() << "\n"
        << "  checked:    " << Time(d.last_check()) << " (" << d.check_outcome() << ")\n"
        << "  changed:    " << Time(d.last_change()) << "\n"
        << "  schema:     " << Colored(c, SchemaWord(d.schema().state())) << ": "
        << d.schema().reason() << "\n";
  for (const v1::SchemaDifference& x : d.schema().differences()) {
    c.out << "    " << DescribeDifference(x) << "\n";
  }
  if (!d.schema().matches_revisions().empty()) {
    c.out << "  matches:    " << absl::StrJoin(d.schema().matches_revisions(), " ")
          << " exactly (what Alembic builds for it)\n";
  } else if (!d.schema().closest_revisions().empty()) {
    c.out << "  closest:    " << absl::StrJoin(d.schema().closest_revisions(), " ") << " ("
          << d.schema().closest_differences() << " difference"
          << (d.schema().closest_differences() == 1 ? "" : "s") << ")\n";
  }
  for (const v1::ChangedRevision& x : d.changed_revisions()) {
    c.out << "  file:       " << DescribeChange(x) << "\n";
  }
  if (!d.schema().fingerprint().empty()) {
    c.out << "  fingerprint: " << d.schema().fingerprint() << " (checked " << Time(d.schema().checked_at())
          << ")\n";
  }
  if (!d.labels().empty()) {
    std::map<std::string, std::string> labels(d.labels().begin(), d.labels().end());
    std::vector<std::string> kv;
    for (const auto& [k, v] : labels) kv.push_back(k + "=" + v);
    c.out << "  labels:     " << absl::StrJoin(kv, ", ") << "\n";
  }
  c.out << "  history (observed changes, newest first):\n";
  for (const v1::RevisionChange& ch : resp.changes()) {
    const std::string to = ch.to().empty() ? "no version rows" : absl::StrJoin(ch.to(), ",");
    c.out << "    " << Time(ch.observed_at()) << "  ";
    if (ch.first_seen()) {
      c.out << "first seen holding " << to << "\n";
      continue;
    }
    c.out << (ch.from().empty() ? "no version rows" : absl::StrJoin(ch.from(), ",")) << " -> " << to
          << "  (" << ChangeCause(ch) << ")\n";
  }
  return kExitOk;
}

// Like Flyway's validate: every revision file that changed after it was
// applied, with the databases that applied it. Exit 3 on an edit; a change
// in comments or spacing only is shown and does not fail.
int Validate(Context& c, v1::Lockstep::Stub& stub) {
  v1::GetFleetRequest req;
  if (!c.args.positional.empty()) req.set_environment(c.args.positional[0]);
  v1::GetFleetResponse resp;
  int rc = GetFleet(c, stub, req, &resp);
  if (rc != kExitOk) return rc;
  struct Finding {
    std::string revision, applied, current;
    bool cosmetic = false;
    std::vector<std::string> databases;
  };
  std::map<std::tuple<std::string, std::string, std::string>, Finding> findings;
  bool edited = false;
  for (const v1::Database& d : resp.databases()) {
    for (const v1::ChangedRevision& x : d.changed_revisions()) {
      Finding& f = findings[{x.revision(), x.applied_sha256(), x.current_sha256()}];
      f = {x.revision(), x.applied_sha256(), x.current_sha256(), x.cosmetic(),
           std::move(f.databases)};
      f.databases.push_back(d.environment() + "/" + d.database());
      edited |= !x.cosmetic();
    }
  }
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("findings").BeginArray();
    for (const auto& [key, f] : findings) {
      w.BeginObject().Key("revision").String(f.revision);
      w.Key("applied_sha256").String(f.applied).Key("current_sha256").String(f.current);
      w.Key("change").String(f.cosmetic ? "cosmetic" : "edited");
      w.Key("databases").StringArray(f.databases).EndObject();
    }
    w.EndArray().Key("clean").Bool(!edited).EndObject();
    c.out << w.Finish();
  } else if (findings.empty()) {
    c.out << "every revision file is as it was when applied ("
          << Plural(resp.databases_size(), "database") << ")\n";
  } else {
    for (const auto& [key, f] : findings) {
      c.out << f.revision << (f.cosmetic ? " changed in comments or spacing only" : " changed")
            << " after it was applied to "
            << Plural(static_cast<int>(f.databases.size()), "database") << ": sha256 "
            << f.applied.substr(0, 12) << "… then, " << f.current.substr(0, 12) << "… now\n  "
            << absl::StrJoin(f.databases, ", ") << "\n";
    }
    if (edited) {
      c.out << "\nAn applied revision's file no longer says what ran: put it back, or make the "
               "change a new revision.\n";
    }
  }
  return edited ? kExitNotClean : kExitOk;
}

int Refresh(Context& c, v1::Lockstep::Stub& stub) {
  v1::RefreshResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::Refresh, v1::RefreshRequest(), &resp, kChangeSeconds);
  if (rc != kExitOk) return rc;
  double took = static_cast<double>(resp.took().seconds()) + resp.took().nanos() / 1e9;
  if (c.json) {
    c.out << JsonWriter().BeginObject().Key("refreshed_at").String(Time(resp.refreshed_at()))
                 .Key("databases").Int(resp.databases()).Key("took_ms").Int(static_cast<long>(took * 1000))
                 .EndObject().Finish();
  } else {
    c.out << "refreshed " << Plural(resp.databases(), "database") << " in "
          << static_cast<long>(took * 1000) << " ms\n";
  }
  return kExitOk;
}

int WhoAmI(Context& c, v1::Lockstep::Stub& stub) {
  v1::WhoAmIResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::WhoAmI, v1::WhoAmIRequest(), &resp, kReadSeconds);
  if (rc != kExitOk) return rc;
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("authentication").Bool(resp.authentication());
    if (resp.authentication()) {
      w.Key("subject").String(resp.subject()).Key("method").String(resp.method());
      w.Key("groups").StringArray({resp.groups().begin(), resp.groups().end()});
    }
    w.Key("access").BeginObject();
    for (const v1::EnvironmentAccess& a : resp.access()) {
      w.Key(a.environment()).StringArray({a.permissions().begin(), a.permissions().end()});
    }
    c.out << w.EndObject().EndObject().Finish();
    return kExitOk;
  }
  if (!resp.authentication()) {
    c.out << "lockstepd at " << c.server
          << " runs without authentication: every caller may do everything, and --actor is "
             "only a label\n";
    return kExitOk;
  }
  c.out << "subject: " << resp.subject() << " (" << resp.method() << ")\n";
  c.out << "groups:  " << (resp.groups().empty() ? "none" : absl::StrJoin(resp.groups(), ", "))
        << "\n\n";
  std::vector<std::vector<std::string>> rows = {{"ENVIRONMENT", "MAY"}};
  for (const v1::EnvironmentAccess& a : resp.access()) {
    rows.push_back({a.environment(),
                    a.permissions().empty() ? "nothing" : absl::StrJoin(a.permissions(), ", ")});
  }
  PrintTable(c.out, rows, rows);
  return kExitOk;
}

// `lockstep token create --subject S [--groups G,..]`: a random token and
// the tokens file's line for it (its sha256); lockstepd is not asked.
int TokenCreate(Context& c) {
  if (c.args.positional.size() != 1 || c.args.positional[0] != "create") {
    c.err << "lockstep token: the action is 'create' (lockstep token create --subject NAME)\n";
    return kExitUsage;
  }
  std::optional<std::string> subject = c.args.Option("subject");
  if (!subject || subject->empty()) {
    c.err << "lockstep token create: --subject NAME is required (who the token stands for)\n";
    return kExitUsage;
  }
  const std::string groups = c.args.Option("groups").value_or("");
  for (const std::string& word : {*subject, groups}) {
    if (word.find_first_of(" \t\r\n#") != std::string::npos) {
      c.err << "lockstep token create: --subject and --groups take no spaces or '#'\n";
      return kExitUsage;
    }
  }
  unsigned char random[32];
  if (RAND_bytes(random, sizeof random) != 1) return Fail(c, "no random bytes from OpenSSL");
  const std::string token = "lst_" + absl::BytesToHexString(absl::string_view(
                                         reinterpret_cast<char*>(random), sizeof random));
  // The hash lockstepd looks tokens up by (daemon/rpc/access.h TokenHash).
  std::string line = absl::StrCat("sha256:", daemon::Sha256Hex(token), " ", *subject);
  if (!groups.empty()) absl::StrAppend(&line, " ", groups);
  if (c.json) {
    c.out << JsonWriter()
                 .BeginObject()
                 .Key("token")
                 .String(token)
                 .Key("line")
                 .String(line)
                 .EndObject()
                 .Finish();
  } else {
    c.out << "token for " << *subject << " (shown only now; lockstepd keeps its hash only):\n  "
          << token << "\nline for the tokens file (server.auth.tokens_file; lockstepd reads it "
          << "again on SIGHUP):\n  " << line << "\n";
  }
  return kExitOk;
}

}  // namespace

int RunOnlineCommand(const CliArgs& args, std::ostream& out, std::ostream& err) {
  Context c{args, out, err, false, false, ""};
  std::string output = args.Option("output").value_or("text");
  if (output != "text" && output != "json") {
    err << "lockstep " << args.command << ": -o takes 'text' or 'json'\n";
    return kExitUsage;
  }
  c.json = output == "json";
  c.color = !c.json && ::isatty(1) && std::getenv("NO_COLOR") == nullptr;
  if (args.command == "token") return TokenCreate(c);
  c.server = Server(args);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials = ChannelCredentials(args);
  absl::StatusOr<std::string> token = Token(args);
  for (const absl::Status& s : {credentials.status(), token.status()}) {
    if (!s.ok()) {
      err << "lockstep " << args.command << ": " << s.message() << "\n";
      return kExitUsage;
    }
  }
  auto channel = OpenChannel(c.server, *credentials, *token);
  auto stub = v1::Lockstep::NewStub(channel);
  if (args.command == "status") return Status(c, *stub);
  if (args.command == "db") return Db(c, *stub);
  if (args.command == "diff") return Diff(c, *stub);
  if (args.command == "validate") return Validate(c, *stub);
  if (args.command == "refresh") return Refresh(c, *stub);
  if (args.command == "whoami") return WhoAmI(c, *stub);
  return RunRolloutCommand(c, *stub);
}

}  // namespace lockstep::client
