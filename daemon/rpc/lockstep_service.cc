#include "daemon/rpc/lockstep_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "daemon/model/utf8.h"
#include "daemon/rpc/proto_convert.h"
#include "daemon/rpc/reply_text.h"
#include "daemon/rpc/request_bounds.h"
#include "migrations/resolver.h"
#include "migrations/revision_error.h"
#include "migrations/traversal.h"

namespace lockstep::daemon {
namespace {

// Names come from the database: any bytes, made valid UTF-8 here.
void ToProto(const SchemaDifference& x, v1::SchemaDifference* p) {
  p->set_kind(x.kind);
  p->set_name(ValidUtf8(x.name));
  p->set_change(x.change);
  p->set_expected(ValidUtf8(x.expected));
  p->set_found(ValidUtf8(x.found));
}

void ToProto(const DatabaseStatus& d, v1::Database* out) {
  out->set_environment(d.environment);
  out->set_database(d.name);
  out->set_url(d.url);
  for (const auto& [k, v] : d.labels) (*out->mutable_labels())[k] = v;
  out->set_state(ToWire(d.state));
  out->set_reason(d.reason);
  Copy(d.revisions, out->mutable_revisions());
  Copy(d.pending, out->mutable_pending());
  Copy(d.orphaned, out->mutable_orphaned());
  Copy(d.beyond, out->mutable_beyond());
  out->set_check_outcome(d.check_outcome);
  out->set_check_error(d.check_error);
  SetDuration(d.check_duration, out->mutable_check_duration());
  SetTime(d.last_check, out->mutable_last_check());
  SetTime(d.last_change, out->mutable_last_change());
  out->set_discovered(d.discovered);
  v1::SchemaCheck* schema = out->mutable_schema();
  schema->set_state(ToWire(d.schema.state));
  schema->set_reason(d.schema.reason);
  schema->set_fingerprint(d.schema.fingerprint);
  for (const SchemaDifference& x : d.schema.differences) ToProto(x, schema->add_differences());
  SetTime(d.schema.checked_at, schema->mutable_checked_at());
  Copy(d.schema.matches_revisions, schema->mutable_matches_revisions());
  Copy(d.schema.closest_revisions, schema->mutable_closest_revisions());
  schema->set_closest_differences(d.schema.closest_differences);
  for (const ChangedRevision& c : d.changed_revisions) {
    v1::ChangedRevision* out_c = out->add_changed_revisions();
    out_c->set_revision(c.revision);
    out_c->set_applied_sha256(c.applied_sha256);
    out_c->set_current_sha256(c.current_sha256);
    out_c->set_cosmetic(c.cosmetic);
    SetTime(c.applied_at, out_c->mutable_applied_at());
    out_c->set_baseline(c.baseline);
  }
}

void ToProto(const GraphStatus& g, v1::GraphStatus* out) {
  Copy(g.heads, out->mutable_heads());
  out->set_revisions(g.revisions);
  out->set_broken(g.broken);
  out->set_error(g.error);
  SetTime(g.loaded_at, out->mutable_loaded_at());
}

void ToProto(const migrations::RevisionGraph& g, int i, v1::Revision* out) {
  const migrations::RevisionGraph::Node& n = g.node(i);
  out->set_revision(n.id());
  Copy(n.file->down_revisions, out->mutable_down_revisions());
  Copy(n.file->depends_on, out->mutable_depends_on());
  Copy(n.labels, out->mutable_branch_labels());
  out->set_doc(n.file->doc);
  out->set_path(n.file->path);
  out->set_is_head(n.is_head());
  out->set_is_branch_point(n.is_branch_point());
  out->set_is_merge_point(n.is_merge_point());
}

// Who a verified client certificate names: its CN, else its first email,
// then DNS subject alternative name that is a valid subject (a URI such as
// a SPIFFE id is not one: subjects have no ':' or '/'); empty: none.
std::string CertificateSubject(const grpc::AuthContext& auth) {
  for (const char* property : {"x509_common_name", "peer_email", "peer_dns"}) {
    for (const grpc::string_ref& value : auth.FindPropertyValues(property)) {
      std::string name(value.data(), value.size());
      if (config::IsValidSubject(name)) return name;
    }
  }
  return "";
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), ValidUtf8(std::string(status.message())));
}

absl::StatusOr<Identity> LockstepService::Caller(const grpc::ServerContextBase& ctx) const {
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  absl::string_view authorization;
  const auto& metadata = ctx.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  std::string subject;
  // gRPC has verified the certificate against tls.client_ca (required then).
  if (inv->server.tls && !inv->server.tls->client_ca.empty() && ctx.auth_context()) {
    subject = CertificateSubject(*ctx.auth_context());
  }
  return Authenticate(*inv, authorization, subject);
}

absl::StatusOr<Identity> LockstepService::Allow(const grpc::ServerContextBase& ctx, Permission p,
                                                const std::vector<std::string>& envs) const {
  absl::StatusOr<Identity> who = Caller(ctx);
  if (!who.ok()) return who.status();
  if (absl::Status s = Authorize(*reconciler_->inventory(), *who, p, envs); !s.ok()) return s;
  return who;
}

absl::StatusOr<Identity> LockstepService::AllowOnRollout(const grpc::ServerContextBase& ctx,
                                                         Permission p, const std::string& id,
                                                         bool on_any) const {
  absl::StatusOr<Identity> who = Caller(ctx);
  if (!who.ok()) return who.status();
  if (who->anonymous) return who;
  absl::StatusOr<Rollout> r = engine_->Get(id);
  if (!r.ok()) {
    // Whether a rollout exists is itself something to read.
    if (absl::Status s = Authorize(*reconciler_->inventory(), *who, Permission::kRead, {});
        !s.ok()) {
      return s;
    }
    return r.status();
  }
  std::vector<std::string> envs;
  for (const RolloutStage& s : r->stages) envs.push_back(s.environment);
  const config::Inventory& inv = *reconciler_->inventory();
  absl::Status allowed = on_any ? AuthorizeAny(inv, *who, p, envs) : Authorize(inv, *who, p, envs);
  if (!allowed.ok()) return allowed;
  return who;
}

void LockstepService::Record(const grpc::ServerContextBase& ctx, AuditRecord r) {
  absl::StatusOr<Identity> who = Caller(ctx);
  r.method = !who.ok() ? "none" : who->anonymous ? "anonymous" : who->method;
  if (who.ok()) r.subject = who->subject;
  r.peer = ctx.peer();
  r.at = absl::Now();
  absl::Status stored = store_->AddAudit(&r);  // a store that refuses writes shows in GetFleet
  (void)stored;
  const std::string& path = reconciler_->inventory()->server.audit_log;
  if (path.empty()) return;
  nlohmann::json line = {
      {"id", r.id},           {"at", absl::FormatTime(r.at, absl::UTCTimeZone())},
      {"subject", r.subject}, {"method", r.method},
      {"peer", r.peer},       {"rpc", r.rpc},
      {"request", r.request}, {"code", r.code},
      {"message", r.message}};
  const std::string text =
      line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  MutexLock lock(audit_mu_);
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  ssize_t wrote = ::write(fd, text.data(), text.size());  // one write: lines never interleave
  (void)wrote;
  ::close(fd);
}

grpc::Status LockstepService::ListAudit(grpc::ServerContext* ctx, const v1::ListAuditRequest* req,
                                        v1::ListAuditResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  std::vector<std::string> all;
  for (const config::EnvironmentConfig& e : reconciler_->inventory()->environments) {
    all.push_back(e.name);
  }
  if (auto who = Allow(*ctx, Permission::kRead, all); !who.ok()) return ToGrpc(who.status());
  if (req->limit() < 0)
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "limit must be >= 0");
  absl::Time since = absl::InfinitePast();
  if (req->has_since()) since = absl::FromUnixSeconds(req->since().seconds());
  absl::StatusOr<std::vector<AuditRecord>> records =
      store_->Audit(since, req->subject(), req->limit() > 0 ? req->limit() : 100);
  if (!records.ok()) return ToGrpc(records.status());
  for (const AuditRecord& r : *records) {
    v1::AuditEntry* e = resp->add_entries();
    e->set_id(r.id);
    SetTime(r.at, e->mutable_at());
    e->set_subject(ValidUtf8(r.subject));
    e->set_method(r.method);
    e->set_peer(ValidUtf8(r.peer));
    e->set_rpc(r.rpc);
    e->set_request(ValidUtf8(r.request));
    e->set_code(r.code);
    e->set_message(ValidUtf8(r.message));
  }
  return FinishReply(resp);
}

grpc::Status LockstepService::WhoAmI(grpc::ServerContext* ctx, const v1::WhoAmIRequest*,
                                     v1::WhoAmIResponse* resp) {
  absl::StatusOr<Identity> who = Caller(*ctx);
  if (!who.ok()) return ToGrpc(who.status());
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  resp->set_authentication(inv->authentication);
  resp->set_subject(ValidUtf8(who->subject));
  for (const std::string& g : who->groups) resp->add_groups(ValidUtf8(g));
  resp->set_method(who->method);
  for (const config::EnvironmentConfig& e : inv->environments) {
    v1::EnvironmentAccess* a = resp->add_access();
    a->set_environment(e.name);
    for (Permission p : kAllPermissions) {
      if (Allows(*inv, *who, p, e.name)) a->add_permissions(std::string(PermissionName(p)));
    }
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* LockstepService::GetFleet(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  grpc::Slice whole;
  v1::GetFleetRequest req;
  if (!request->DumpToSingleSlice(&whole).ok() ||
      !req.ParseFromArray(whole.begin(), static_cast<int>(whole.size()))) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "the request is not a lockstep.v1.GetFleetRequest"));
    return reactor;
  }
  if (grpc::Status s = CheckRequestBounds(req); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  // A reader of some environments only gets those (and asking for another
  // by name is refused): the filter goes into the request, so replies are
  // still shared by everyone who may read the same.
  std::vector<std::string> asked;
  if (!req.environment().empty()) asked.push_back(req.environment());
  absl::StatusOr<Identity> who = Allow(*ctx, Permission::kRead, asked);
  if (!who.ok()) {
    reactor->Finish(ToGrpc(who.status()));
    return reactor;
  }
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  std::string key(reinterpret_cast<const char*>(whole.begin()), whole.size());
  if (!req.readable_environments().empty() || !who->anonymous) {
    req.clear_readable_environments();
    bool all = true;
    std::vector<std::string> readable;
    for (const config::EnvironmentConfig& e : inv->environments) {
      if (Allows(*inv, *who, Permission::kRead, e.name)) {
        readable.push_back(e.name);
      } else {
        all = false;
      }
    }
    if (!all) Copy(readable, req.mutable_readable_environments());
    key = req.SerializeAsString();
  }
  fleet_replies_.Get(reconciler_->Snapshot(), key, req,
                     [this, reactor, response](const FleetReplies::Reply& reply) {
                       if (!reply.status.ok()) return reactor->Finish(reply.status);
                       std::vector<grpc::Slice> slices{SharedSlice(reply.bytes)};
                       // Checked per call (a stat of the file, never a write), so status
                       // says at once when the store was deleted or replaced. Serialized
                       // messages concatenate as a merge: the field is appended.
                       absl::Status store = engine_->CheckStore(/*retry_writes=*/false);
                       if (!store.ok()) {
                         v1::GetFleetResponse tail;
                         tail.set_state_store_error(ValidUtf8(std::string(store.message())));
                         slices.emplace_back(tail.SerializeAsString());
                       }
                       *response = grpc::ByteBuffer(slices.data(), slices.size());
                       reactor->Finish(grpc::Status::OK);
                     });
  return reactor;
}

// The reply to `*req` from snapshot `s`, but its state_store_error (GetFleet
// adds it per call): built once per snapshot and request (FleetReplies).
grpc::Status LockstepService::BuildFleet(const v1::GetFleetRequest* req, const FleetSnapshot* s,
                                         v1::GetFleetResponse* resp) {
  std::optional<DatabaseState> wanted;
  if (req->state() != v1::DATABASE_STATE_UNSPECIFIED) {
    wanted = FromWire<DatabaseState>(req->state());
    if (!wanted) {
      std::vector<std::string> names;
      for (const auto& [state, name] : AllOf<DatabaseState>()) names.emplace_back(name);
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("unknown state ", static_cast<int>(req->state()),
                                       "; states: ", absl::StrJoin(names, ", ")));
    }
  }
  std::set<std::string> readable(req->readable_environments().begin(),
                                 req->readable_environments().end());
  auto hidden = [&](const std::string& env) { return !readable.empty() && !readable.count(env); };
  bool env_found = req->environment().empty();
  for (const EnvironmentStatus& e : s->environments) {
    if (!req->environment().empty() && e.name != req->environment()) continue;
    if (hidden(e.name)) continue;
    env_found = true;
    v1::Environment* out = resp->add_environments();
    out->set_name(e.name);
    out->set_after(e.after);
    out->set_target(e.target);
    out->set_database_count(e.databases);
    out->set_in_lockstep(e.in_lockstep);
    for (const auto& [k, v] : e.by_state) (*out->mutable_by_state())[std::string(NameOf(k))] = v;
    for (const auto& set : e.revision_sets) Copy(set, out->add_revision_sets()->mutable_revisions());
    Copy(e.promotion_violations, out->mutable_promotion_violations());
    Copy(e.discover_errors, out->mutable_discover_errors());
  }
  if (!env_found) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no environment named '", req->environment(), "'"));
  }
  if (req->page_size() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size must be >= 0");
  }
  // A page token is "<environment's position>:<database name>" of the last
  // database sent: the next page starts after it in the fleet's order (the
  // inventory's, which a refresh keeps).
  std::map<std::string, int> position;
  for (size_t i = 0; i < s->environments.size(); ++i) {
    position[s->environments[i].name] = static_cast<int>(i);
  }
  std::optional<std::pair<int, std::string>> after;
  if (!req->page_token().empty()) {
    std::pair<std::string, std::string> parts =
        absl::StrSplit(req->page_token(), absl::MaxSplits(':', 1));
    int env = 0;
    if (!absl::SimpleAtoi(parts.first, &env) || parts.second.empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "page_token is not one a GetFleet reply gave");
    }
    after = std::make_pair(env, parts.second);
  }
  int sent = 0;
  std::pair<int, std::string> last_sent;
  for (const DatabaseStatus& d : s->databases) {
    const std::pair<int, std::string> place(position[d.environment], ValidUtf8(d.name));
    if (after) {  // still before the page's start
      if (place == *after) after.reset();
      continue;
    }
    if (!req->environment().empty() && d.environment != req->environment()) continue;
    if (hidden(d.environment)) continue;
    if (wanted && d.state != *wanted) continue;
    if (req->not_clean() && d.clean()) continue;
    bool labels_match = true;
    for (const auto& [k, v] : req->labels()) {
      auto it = d.labels.find(k);
      if (it == d.labels.end() || it->second != v) labels_match = false;
    }
    if (!labels_match) continue;
    if (req->page_size() > 0 && sent == req->page_size()) {
      resp->set_next_page_token(absl::StrCat(last_sent.first, ":", last_sent.second));
      break;
    }
    ToProto(d, resp->add_databases());
    ++sent;
    last_sent = place;
  }
  if (after) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "the database the last page ended at has left the fleet since; "
                        "start again without a page_token");
  }
  ToProto(s->graph, resp->mutable_graph());
  SetTime(s->refreshed_at, resp->mutable_refreshed_at());
  return FinishReply(resp);
}

grpc::Status LockstepService::DiffSchema(grpc::ServerContext* ctx, const v1::DiffSchemaRequest* req,
                                         v1::DiffSchemaResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  if (req->environment().empty() || req->database().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "environment and database are required (ENV/NAME)");
  }
  std::vector<std::string> envs = {req->environment()};
  if (size_t slash = req->against().find('/'); slash != std::string::npos) {
    envs.push_back(req->against().substr(0, slash));  // another database's schema
  }
  if (auto who = Allow(*ctx, Permission::kRead, envs); !who.ok()) return ToGrpc(who.status());
  absl::StatusOr<Reconciler::SchemaComparison> c = reconciler_->CompareSchema(
      absl::StrCat(req->environment(), "/", req->database()), req->against());
  if (!c.ok()) return ToGrpc(c.status());
  resp->set_against(ValidUtf8(c->against));
  resp->set_found_fingerprint(c->found_fingerprint);
  resp->set_against_fingerprint(c->against_fingerprint);
  for (const SchemaDifference& x : c->differences) ToProto(x, resp->add_differences());
  return grpc::Status::OK;
}

grpc::Status LockstepService::GetDatabase(grpc::ServerContext* ctx,
                                          const v1::GetDatabaseRequest* req,
                                          v1::GetDatabaseResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  if (req->environment().empty() || req->database().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "environment and database are required (ENV/NAME)");
  }
  if (auto who = Allow(*ctx, Permission::kRead, {req->environment()}); !who.ok()) {
    return ToGrpc(who.status());
  }
  std::shared_ptr<const FleetSnapshot> s = reconciler_->Snapshot();
  const DatabaseStatus* d = s->Find(req->environment(), req->database());
  if (d == nullptr) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no database ", req->environment(), "/", req->database(),
                                     " in the inventory (lockstep status lists them)"));
  }
  ToProto(*d, resp->mutable_database());
  if (req->history_limit() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("history_limit must be 0 (the default, 50) or more, not ",
                                     req->history_limit()));
  }
  int limit = req->history_limit() > 0 ? req->history_limit() : 50;
  absl::StatusOr<std::vector<RevisionChange>> changes = store_->Changes(d->key(), limit);
  if (!changes.ok()) return ToGrpc(changes.status());
  for (const RevisionChange& c : *changes) {
    v1::RevisionChange* out = resp->add_changes();
    Copy(c.from, out->mutable_from());
    Copy(c.to, out->mutable_to());
    SetTime(c.observed_at, out->mutable_observed_at());
    out->set_first_seen(c.first_seen);
    out->set_rollout_id(c.rollout_id);
    out->set_rollout_kind(c.rollout_kind);
    out->set_restored_backup(c.restored_backup);
    out->set_restored_by(ValidUtf8(c.restored_by));
  }
  return FinishReply(resp);
}

grpc::Status LockstepService::Refresh(grpc::ServerContext* ctx, const v1::RefreshRequest*,
                                      v1::RefreshResponse* resp) {
  if (auto who = Allow(*ctx, Permission::kOperate, {}); !who.ok()) return ToGrpc(who.status());
  // The pass runs on its own thread so that the caller's deadline is kept;
  // a pass that outlives it completes anyway and shows in GetFleet.
  auto done = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> result = done->get_future();
  std::shared_ptr<Reconciler> r = reconciler_;  // kept alive by the thread
  // A person asking for a check means every schema too, not only the
  // version rows (whose change alone makes a schema be read again).
  r->RequestSchemaPass();
  std::thread([r, done] { done->set_value(r->Refresh()); }).detach();
  while (result.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (ctx->IsCancelled() || std::chrono::system_clock::now() > ctx->deadline()) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          "the refresh is still running; its result will show in GetFleet");
    }
  }
  absl::Status status = result.get();
  // A refresh also tries the state store again (writes included).
  absl::Status store = engine_->CheckStore();
  (void)store;  // GetFleet shows it
  std::shared_ptr<const FleetSnapshot> s = reconciler_->Snapshot();
  SetTime(s->refreshed_at, resp->mutable_refreshed_at());
  SetDuration(s->refresh_duration, resp->mutable_took());
  resp->set_databases(static_cast<int32_t>(s->databases.size()));
  return ToGrpc(status);
}

grpc::Status LockstepService::GetGraph(grpc::ServerContext* ctx, const v1::GetGraphRequest*,
                                       v1::GetGraphResponse* resp) {
  if (auto who = Allow(*ctx, Permission::kRead, {}); !who.ok()) return ToGrpc(who.status());
  std::shared_ptr<const migrations::Project> p = reconciler_->project();
  const migrations::RevisionGraph& g = p->graph();
  for (int i = 0; i < g.size(); ++i) ToProto(g, i, resp->add_revisions());
  Copy(g.Ids(g.heads()), resp->mutable_heads());
  Copy(g.Ids(g.bases()), resp->mutable_bases());
  ToProto(reconciler_->Snapshot()->graph, resp->mutable_status());
  return FinishReply(resp);
}

grpc::Status LockstepService::GetHistory(grpc::ServerContext* ctx, const v1::GetHistoryRequest* req,
                                         v1::GetHistoryResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  if (auto who = Allow(*ctx, Permission::kRead, {}); !who.ok()) return ToGrpc(who.status());
  std::string base = "base", head = "heads";
  if (!req->range().empty()) {
    std::vector<std::string> parts = absl::StrSplit(req->range(), ':');
    if (parts.size() != 2) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "History range requires [start]:[end], [start]:, or :[end]");
    }
    if (!parts[0].empty()) base = parts[0];
    if (!parts[1].empty()) head = parts[1];
  }
  std::shared_ptr<const migrations::Project> p = reconciler_->project();
  migrations::Resolver resolver(&p->graph());
  migrations::IterateOptions o;
  o.inclusive = true;
  o.assert_relative_length = false;
  absl::StatusOr<std::vector<int>> revs = migrations::IterateRevisions(
      resolver, migrations::RevisionSpec::Identifier(head), migrations::RevisionSpec::Identifier(base), o);
  if (!revs.ok()) {
    migrations::CommandErrorContext c;
    c.start = base;
    c.end = head;
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        migrations::CommandErrorMessage(revs.status(), c));
  }
  for (int i : *revs) ToProto(p->graph(), i, resp->add_revisions());
  return FinishReply(resp);
}

}  // namespace lockstep::daemon
