// LockstepService's rollout and backup methods: proto <-> core types.
#include "absl/strings/str_cat.h"
#include "daemon/rpc/lockstep_service.h"
#include "daemon/rpc/proto_convert.h"
#include "daemon/rpc/reply_size.h"
#include "daemon/rpc/reply_text.h"
#include "daemon/rpc/request_bounds.h"

namespace lockstep::daemon {
namespace {

void ToProto(const RolloutStage& s, v1::RolloutStage* out) {
  out->set_environment(s.environment);
  out->set_state(ToWire(s.state));
  SetDuration(s.soak, out->mutable_soak());
  out->set_approval_required(s.approval_required);
  out->set_batch_size(s.batch_size);
  out->set_max_parallel(s.max_parallel);
  out->set_max_failures(s.max_failures);
  out->set_on_failure(ToWire(s.on_failure));
  out->set_backup_required(s.backup_required);
  out->set_failures(s.failures);
  out->set_approved_by(s.approved_by);
  SetTime(s.approved_at, out->mutable_approved_at());
  SetTime(s.started_at, out->mutable_started_at());
  SetTime(s.finished_at, out->mutable_finished_at());
  SetDuration(s.canary_soak, out->mutable_canary_soak());
  out->set_canary_approval_required(s.canary_approval_required);
  out->set_canary_approved_by(s.canary_approved_by);
  SetTime(s.canary_approved_at, out->mutable_canary_approved_at());
  out->set_approvals_required(s.approvals_required);
  Copy(s.approvers, out->mutable_approvers());
  out->set_distinct_from_requester(s.distinct_from_requester);
}

void ToProto(const RolloutStep& s, v1::RolloutStep* out) {
  out->set_index(s.index);
  out->set_environment(s.environment);
  out->set_database(s.database);
  out->set_wave(s.wave);
  out->set_canary(s.canary);
  Copy(s.from, out->mutable_from());
  Copy(s.expected, out->mutable_expected());
  Copy(s.path, out->mutable_path());
  out->set_state(ToWire(s.state));
  out->set_phase(ToWire(s.phase));
  out->set_error(s.error);
  out->set_rollback(s.rollback);
  out->set_output(s.output);
  out->set_output_log(s.output_log);
  out->set_exit_code(s.exit_code);
  out->set_backup_id(s.backup_id);
  out->set_attempts(s.attempts);
  SetDuration(s.alembic_time, out->mutable_alembic_duration());
  SetTime(s.started_at, out->mutable_started_at());
  SetTime(s.finished_at, out->mutable_finished_at());
}

void ToProto(const Rollout& r, v1::Rollout* out) {
  out->set_id(r.id);
  out->set_kind(r.kind);
  out->set_target(r.target);
  Copy(r.target_revisions, out->mutable_target_revisions());
  out->set_state(ToWire(r.state));
  out->set_reason(r.reason);
  out->set_created_by(r.created_by);
  out->set_override_promotion(r.override_promotion);
  out->set_override_reason(r.override_reason);
  out->set_override_window(r.override_window);
  SetTime(r.created_at, out->mutable_created_at());
  SetTime(r.updated_at, out->mutable_updated_at());
  SetTime(r.finished_at, out->mutable_finished_at());
  for (const RolloutStage& s : r.stages) ToProto(s, out->add_stages());
  for (const RolloutStep& s : r.steps) ToProto(s, out->add_steps());
}

void ToProto(const Backup& b, v1::Backup* out) {
  out->set_id(b.id);
  out->set_environment(b.environment);
  out->set_database(b.database);
  Copy(b.revisions, out->mutable_revisions());
  out->set_path(b.path);
  out->set_size_bytes(b.size_bytes);
  out->set_sha256(b.sha256);
  SetTime(b.created_at, out->mutable_created_at());
  out->set_rollout_id(b.rollout_id);
  SetDuration(b.took, out->mutable_took());
  out->set_safety_for(b.safety_for);
  out->set_note(b.note);
  out->set_restored_by(b.restored_by);
  SetTime(b.restored_at, out->mutable_restored_at());
}

RolloutRequest FromProto(const v1::StartRolloutRequest& req) {
  RolloutRequest r;
  r.target = req.target().empty() ? "heads" : req.target();
  r.environments.assign(req.environments().begin(), req.environments().end());
  r.databases.assign(req.databases().begin(), req.databases().end());
  r.override_promotion = req.override_promotion();
  r.allow_lint.assign(req.allow_lint().begin(), req.allow_lint().end());
  r.allow_drift = req.allow_drift();
  r.override_window = req.override_window();
  r.requested_by = req.actor();
  return r;
}

void ToProto(const PlanProblem& p, v1::PlanProblem* out) {
  out->set_database(p.database);
  out->set_code(p.code);
  out->set_message(p.message);
}

grpc::Status Reply(const absl::StatusOr<Rollout>& r, v1::RolloutResponse* resp) {
  if (!r.ok()) return ToGrpc(r.status());
  ToProto(*r, resp->mutable_rollout());
  FitRolloutReply(*resp, {resp->mutable_rollout()});
  return FinishReply(resp);
}

grpc::Status RequireId(const std::string& id) {
  if (id.empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "id is required");
  return grpc::Status::OK;
}

// Who acted: the authenticated subject, else the label the client sent
// (--actor; authentication off).
std::string Actor(const Identity& who, const std::string& label) {
  return who.anonymous ? label : who.subject;
}

// The environments a rollout request covers: those it names, else all.
std::vector<std::string> Scope(const config::Inventory& inv, const v1::StartRolloutRequest& req) {
  std::vector<std::string> envs(req.environments().begin(), req.environments().end());
  if (envs.empty()) {
    for (const config::EnvironmentConfig& e : inv.environments) envs.push_back(e.name);
  }
  return envs;
}

}  // namespace

// Pause, resume, abort: the action (operate on every environment of the
// rollout), then the rollout as it is now.
grpc::Status LockstepService::Act(const grpc::ServerContextBase& ctx,
                                  const v1::RolloutActionRequest& req,
                                  absl::Status (RolloutEngine::*action)(const std::string&,
                                                                        const std::string&),
                                  v1::RolloutResponse* resp) {
  if (grpc::Status s = RequireId(req.id()); !s.ok()) return s;
  absl::StatusOr<Identity> who = AllowOnRollout(ctx, Permission::kOperate, req.id());
  if (!who.ok()) return ToGrpc(who.status());
  absl::Status s = (engine_->*action)(req.id(), Actor(*who, req.actor()));
  if (!s.ok()) return ToGrpc(s);
  return Reply(engine_->Get(req.id()), resp);
}

grpc::Status LockstepService::PlanRollout(grpc::ServerContext* ctx,
                                          const v1::StartRolloutRequest* req,
                                          v1::PlanRolloutResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  absl::StatusOr<Identity> who =
      Allow(*ctx, Permission::kRead, Scope(*reconciler_->inventory(), *req));
  if (!who.ok()) return ToGrpc(who.status());
  RolloutRequest request = FromProto(*req);
  request.requested_by = Actor(*who, req->actor());
  absl::StatusOr<RolloutPlan> plan = engine_->Plan(request);
  if (!plan.ok()) return ToGrpc(plan.status());
  ToProto(plan->rollout, resp->mutable_plan());
  for (const PlanProblem& p : plan->problems) ToProto(p, resp->add_problems());
  for (const PlanProblem& p : plan->overridden) ToProto(p, resp->add_overridden());
  Copy(plan->notes, resp->mutable_notes());
  return FinishReply(resp);
}

grpc::Status LockstepService::StartRollout(grpc::ServerContext* ctx,
                                           const v1::StartRolloutRequest* req,
                                           v1::RolloutResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  if (req->target().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "target is required to start a rollout (e.g. heads)");
  }
  const std::vector<std::string> scope = Scope(*reconciler_->inventory(), *req);
  absl::StatusOr<Identity> who = Allow(*ctx, Permission::kOperate, scope);
  if (!who.ok()) return ToGrpc(who.status());
  if (!req->override_window().empty()) {  // an admin's call: every permission there
    for (Permission p : kAllPermissions) {
      if (absl::Status s = Authorize(*reconciler_->inventory(), *who, p, scope); !s.ok()) {
        return ToGrpc(absl::PermissionDeniedError(
            absl::StrCat("overriding change windows needs admin: ", s.message())));
      }
    }
  }
  RolloutRequest request = FromProto(*req);
  request.requested_by = Actor(*who, req->actor());
  return Reply(engine_->Start(request), resp);
}

// "ipv4:10.0.0.7:53412" -> "ipv4:10.0.0.7"; "ipv6:[::1]:5000" -> "ipv6:[::1]".
static std::string ClientOf(const std::string& peer) {
  const size_t colon = peer.rfind(':');
  const size_t first = peer.find(':');
  return colon == std::string::npos || colon == first ? peer : peer.substr(0, colon);
}

grpc::Status LockstepService::EnterWatch(const std::string& client) {
  const config::ServerConfig& server = reconciler_->inventory()->server;
  MutexLock lock(watch_mu_);
  int& mine = watchers_by_client_[client];
  if (watchers_ >= server.max_watch_streams) {
    if (mine == 0) watchers_by_client_.erase(client);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat(watchers_,
                                     " watch streams are open, the most lockstepd "
                                     "serves (server.max_watch_streams); try again later"));
  }
  if (mine >= server.max_watch_streams_per_client) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat(client.rfind("subject ", 0) == 0 ? client : "this client", " has ", mine,
                     " watch streams open, the most one "
                     "client may (server.max_watch_streams_per_client)"));
  }
  ++mine;
  ++watchers_;
  return grpc::Status::OK;
}

void LockstepService::LeaveWatch(const std::string& client) {
  MutexLock lock(watch_mu_);
  --watchers_;
  if (--watchers_by_client_[client] <= 0) watchers_by_client_.erase(client);
}

grpc::ServerWriteReactor<v1::RolloutEvent>* LockstepService::WatchRollout(
    grpc::CallbackServerContext* ctx, const v1::WatchRolloutRequest* req) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return WatchHub::Refuse(s);
  if (grpc::Status s = RequireId(req->id()); !s.ok()) return WatchHub::Refuse(s);
  absl::StatusOr<Identity> who = AllowOnRollout(*ctx, Permission::kRead, req->id());
  if (!who.ok()) return WatchHub::Refuse(ToGrpc(who.status()));
  // Streams hold no thread, but each holds memory and a place in the hub's
  // polls: bounded, in all and per client (its subject when authentication
  // is on, else its address).
  std::string client = who->anonymous ? ClientOf(ctx->peer()) : "subject " + who->subject;
  if (grpc::Status s = EnterWatch(client); !s.ok()) return WatchHub::Refuse(s);
  return watches_.Open(req->id(), req->after_seq(),
                       [this, client = std::move(client)] { LeaveWatch(client); });
}

// Approve needs `approve` on the environment whose gate waits (the engine
// asks, under its lock, for the very stage it would approve).
grpc::Status LockstepService::ApproveRollout(grpc::ServerContext* ctx,
                                             const v1::RolloutActionRequest* req,
                                             v1::RolloutResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  if (grpc::Status s = RequireId(req->id()); !s.ok()) return s;
  absl::StatusOr<Identity> who =
      AllowOnRollout(*ctx, Permission::kApprove, req->id(), /*on_any=*/true);
  if (!who.ok()) return ToGrpc(who.status());
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  absl::Status s =
      engine_->Approve(req->id(), Actor(*who, req->actor()), [&](const std::string& environment) {
        return Authorize(*inv, *who, Permission::kApprove, {environment});
      });
  if (!s.ok()) return ToGrpc(s);
  return Reply(engine_->Get(req->id()), resp);
}

grpc::Status LockstepService::PauseRollout(grpc::ServerContext* ctx,
                                           const v1::RolloutActionRequest* req,
                                           v1::RolloutResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  return Act(*ctx, *req, &RolloutEngine::Pause, resp);
}

grpc::Status LockstepService::ResumeRollout(grpc::ServerContext* ctx,
                                            const v1::RolloutActionRequest* req,
                                            v1::RolloutResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  return Act(*ctx, *req, &RolloutEngine::Resume, resp);
}

grpc::Status LockstepService::AbortRollout(grpc::ServerContext* ctx,
                                           const v1::RolloutActionRequest* req,
                                           v1::RolloutResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  return Act(*ctx, *req, &RolloutEngine::Abort, resp);
}

grpc::Status LockstepService::ListRollouts(grpc::ServerContext* ctx,
                                           const v1::ListRolloutsRequest* req,
                                           v1::ListRolloutsResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  absl::StatusOr<Identity> who = Allow(*ctx, Permission::kRead, {});
  if (!who.ok()) return ToGrpc(who.status());
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  if (req->limit() < 0)
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "limit must be >= 0");
  absl::StatusOr<std::vector<Rollout>> list = engine_->List(req->limit() > 0 ? req->limit() : 20);
  if (!list.ok()) return ToGrpc(list.status());
  std::vector<v1::Rollout*> rollouts;
  for (const Rollout& r : *list) {
    std::vector<std::string> envs;
    for (const RolloutStage& s : r.stages) envs.push_back(s.environment);
    if (!Authorize(*inv, *who, Permission::kRead, envs).ok()) continue;  // not theirs to see
    ToProto(r, resp->add_rollouts());
    rollouts.push_back(resp->mutable_rollouts(resp->rollouts_size() - 1));
  }
  FitRolloutReply(*resp, rollouts);
  return FinishReply(resp);
}

grpc::Status LockstepService::GetRollout(grpc::ServerContext* ctx, const v1::GetRolloutRequest* req,
                                         v1::RolloutResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  if (grpc::Status s = RequireId(req->id()); !s.ok()) return s;
  if (auto who = AllowOnRollout(*ctx, Permission::kRead, req->id()); !who.ok()) {
    return ToGrpc(who.status());
  }
  return Reply(engine_->Get(req->id()), resp);
}

grpc::Status LockstepService::Downgrade(grpc::ServerContext* ctx, const v1::DowngradeRequest* req,
                                        v1::RolloutResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  if (req->environment().empty() || req->database().empty() || req->target().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "environment, database and target are required");
  }
  absl::StatusOr<Identity> who = Allow(*ctx, Permission::kOperate, {req->environment()});
  if (!who.ok()) return ToGrpc(who.status());
  return Reply(engine_->Downgrade(req->environment(), req->database(), req->target(),
                                  Actor(*who, req->actor())),
               resp);
}

grpc::Status LockstepService::Stamp(grpc::ServerContext* ctx, const v1::StampRequest* req,
                                    v1::RolloutResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  if (req->environment().empty() || req->database().empty() || req->revision().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "environment, database and revision are required");
  }
  if (req->force() && req->reason().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "force needs a reason: it is recorded with the stamp");
  }
  absl::StatusOr<Identity> who = Allow(*ctx, Permission::kOperate, {req->environment()});
  if (!who.ok()) return ToGrpc(who.status());
  return Reply(engine_->Stamp(req->environment(), req->database(), req->revision(),
                              Actor(*who, req->actor()), req->force() ? req->reason() : ""),
               resp);
}

grpc::Status LockstepService::Reapply(grpc::ServerContext* ctx, const v1::ReapplyRequest* req,
                                      v1::RolloutResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  if (req->environment().empty() || req->database().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "environment and database are required");
  }
  absl::StatusOr<Identity> who = Allow(*ctx, Permission::kOperate, {req->environment()});
  if (!who.ok()) return ToGrpc(who.status());
  return Reply(engine_->Reapply(req->environment(), req->database(), req->revision(),
                                Actor(*who, req->actor())),
               resp);
}

grpc::Status LockstepService::ListBackups(grpc::ServerContext* ctx,
                                          const v1::ListBackupsRequest* req,
                                          v1::ListBackupsResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  std::vector<std::string> asked;
  if (!req->environment().empty()) asked.push_back(req->environment());
  absl::StatusOr<Identity> who = Allow(*ctx, Permission::kRead, asked);
  if (!who.ok()) return ToGrpc(who.status());
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  if (req->limit() < 0)
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "limit must be >= 0");
  absl::StatusOr<std::vector<Backup>> list =
      engine_->Backups(req->environment(), req->database(), req->limit() > 0 ? req->limit() : 50);
  if (!list.ok()) return ToGrpc(list.status());
  for (const Backup& b : *list) {
    if (Allows(*inv, *who, Permission::kRead, b.environment)) ToProto(b, resp->add_backups());
  }
  return FinishReply(resp);
}

grpc::Status LockstepService::RestoreBackup(grpc::ServerContext* ctx,
                                            const v1::RestoreBackupRequest* req,
                                            v1::RestoreBackupResponse* resp) {
  if (grpc::Status s = CheckRequestBounds(*req); !s.ok()) return s;
  if (req->id() <= 0)
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a backup id is required");
  absl::StatusOr<Identity> who = Caller(*ctx);
  if (!who.ok()) return ToGrpc(who.status());
  absl::StatusOr<Backup> backup = store_->GetBackup(req->id());
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  if (!who->anonymous) {
    if (!backup.ok()) {
      if (absl::Status s = Authorize(*inv, *who, Permission::kRead, {}); !s.ok()) return ToGrpc(s);
      return ToGrpc(backup.status());
    }
    if (absl::Status s = Authorize(*inv, *who, Permission::kRestore, {backup->environment});
        !s.ok()) {
      return ToGrpc(s);
    }
  }
  // A protected environment's approval policy holds a restore as it holds
  // a rollout: it waits as a one-step rollout of kind "restore".
  const config::EnvironmentConfig* env =
      backup.ok() ? inv->FindEnvironment(backup->environment) : nullptr;
  if (env != nullptr && env->approval_required) {
    absl::StatusOr<Rollout> waiting =
        engine_->RequestRestore(req->id(), Actor(*who, req->actor()), req->yes());
    if (!waiting.ok()) return ToGrpc(waiting.status());
    ToProto(*waiting, resp->mutable_rollout());
    return FinishReply(resp);
  }
  absl::StatusOr<RestoreResult> r =
      engine_->Restore(req->id(), Actor(*who, req->actor()), req->yes());
  if (!r.ok()) return ToGrpc(r.status());
  ToProto(r->restored, resp->mutable_backup());
  if (r->safety.id != 0) ToProto(r->safety, resp->mutable_safety_backup());
  Copy(r->revisions, resp->mutable_revisions());
  resp->set_changed(r->changed);
  return FinishReply(resp);
}

}  // namespace lockstep::daemon
