// The gRPC service: a thin adapter from lockstep.v1 to the reconciler and
// the rollout engine. Each
// method converts the request, calls the core, converts the result; the
// only logic here is filtering and status-code mapping. Thread-safe; it
// shares the reconciler (a Refresh may outlive its RPC); the store must
// outlive it.
#ifndef LOCKSTEP_DAEMON_RPC_LOCKSTEP_SERVICE_H_
#define LOCKSTEP_DAEMON_RPC_LOCKSTEP_SERVICE_H_

#include <map>
#include <string>

#include "daemon/core/reconciler.h"
#include "daemon/model/mutex.h"
#include "daemon/rollout/engine.h"
#include "daemon/rpc/access.h"
#include "daemon/rpc/fleet_replies.h"
#include "daemon/rpc/watch_hub.h"
#include "daemon/state/state_store.h"
#include "lockstep/v1/lockstep.grpc.pb.h"

namespace lockstep::daemon {

// WatchRollout (no thread per stream, see watch_hub.h) and GetFleet (raw
// bytes: one serialized reply per snapshot and request, see
// fleet_replies.h) are served by gRPC's callback API; every other method
// is synchronous.
class LockstepService final
    : public lockstep::v1::Lockstep::WithCallbackMethod_WatchRollout<
          lockstep::v1::Lockstep::WithRawCallbackMethod_GetFleet<lockstep::v1::Lockstep::Service>> {
 public:
  LockstepService(std::shared_ptr<Reconciler> reconciler, StateStore* store, RolloutEngine* engine)
      : reconciler_(std::move(reconciler)),
        store_(store),
        engine_(engine),
        fleet_replies_([](const v1::GetFleetRequest& req, const FleetSnapshot& s,
                          v1::GetFleetResponse* resp) { return BuildFleet(&req, &s, resp); }),
        watches_(engine) {}

  // Ends every WatchRollout stream (UNAVAILABLE) and refuses new ones; for
  // shutting down, before the server is.
  void StopWatches() { watches_.Stop(); }

  grpc::ServerUnaryReactor* GetFleet(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::Status GetDatabase(grpc::ServerContext* ctx, const v1::GetDatabaseRequest* req,
                           v1::GetDatabaseResponse* resp) override;
  grpc::Status Refresh(grpc::ServerContext* ctx, const v1::RefreshRequest* req,
                       v1::RefreshResponse* resp) override;
  grpc::Status GetGraph(grpc::ServerContext* ctx, const v1::GetGraphRequest* req,
                        v1::GetGraphResponse* resp) override;
  grpc::Status GetHistory(grpc::ServerContext* ctx, const v1::GetHistoryRequest* req,
                          v1::GetHistoryResponse* resp) override;

  // Rollouts and backups (rollout_service.cc).
  grpc::Status PlanRollout(grpc::ServerContext* ctx, const v1::StartRolloutRequest* req,
                           v1::PlanRolloutResponse* resp) override;
  grpc::Status StartRollout(grpc::ServerContext* ctx, const v1::StartRolloutRequest* req,
                            v1::RolloutResponse* resp) override;
  grpc::ServerWriteReactor<v1::RolloutEvent>* WatchRollout(
      grpc::CallbackServerContext* ctx, const v1::WatchRolloutRequest* req) override;
  grpc::Status ApproveRollout(grpc::ServerContext* ctx, const v1::RolloutActionRequest* req,
                              v1::RolloutResponse* resp) override;
  grpc::Status PauseRollout(grpc::ServerContext* ctx, const v1::RolloutActionRequest* req,
                            v1::RolloutResponse* resp) override;
  grpc::Status ResumeRollout(grpc::ServerContext* ctx, const v1::RolloutActionRequest* req,
                             v1::RolloutResponse* resp) override;
  grpc::Status AbortRollout(grpc::ServerContext* ctx, const v1::RolloutActionRequest* req,
                            v1::RolloutResponse* resp) override;
  grpc::Status ListRollouts(grpc::ServerContext* ctx, const v1::ListRolloutsRequest* req,
                            v1::ListRolloutsResponse* resp) override;
  grpc::Status GetRollout(grpc::ServerContext* ctx, const v1::GetRolloutRequest* req,
                          v1::RolloutResponse* resp) override;
  grpc::Status DiffSchema(grpc::ServerContext* ctx, const v1::DiffSchemaRequest* req,
                          v1::DiffSchemaResponse* resp) override;
  grpc::Status Stamp(grpc::ServerContext* ctx, const v1::StampRequest* req,
                     v1::RolloutResponse* resp) override;
  grpc::Status Reapply(grpc::ServerContext* ctx, const v1::ReapplyRequest* req,
                       v1::RolloutResponse* resp) override;
  grpc::Status Downgrade(grpc::ServerContext* ctx, const v1::DowngradeRequest* req,
                         v1::RolloutResponse* resp) override;
  grpc::Status ListBackups(grpc::ServerContext* ctx, const v1::ListBackupsRequest* req,
                           v1::ListBackupsResponse* resp) override;
  grpc::Status RestoreBackup(grpc::ServerContext* ctx, const v1::RestoreBackupRequest* req,
                             v1::RestoreBackupResponse* resp) override;
  grpc::Status WhoAmI(grpc::ServerContext* ctx, const v1::WhoAmIRequest* req,
                      v1::WhoAmIResponse* resp) override;
  grpc::Status ListAudit(grpc::ServerContext* ctx, const v1::ListAuditRequest* req,
                         v1::ListAuditResponse* resp) override;

  // The audit interceptor's sink (audit_interceptor.h): fills in who
  // called (from `ctx`), from where and when, then keeps `record` in the
  // state store and appends it to server.audit_log when set.
  void Record(const grpc::ServerContextBase& ctx, AuditRecord record);

 private:
  // Who calls (access.h): from the "authorization" header and the verified
  // client certificate; UNAUTHENTICATED when authentication is on and
  // neither names a known subject.
  absl::StatusOr<Identity> Caller(const grpc::ServerContextBase& ctx) const;
  // Caller(), when they hold `p` on every one of `envs` (none: on some
  // environment); PERMISSION_DENIED otherwise.
  absl::StatusOr<Identity> Allow(const grpc::ServerContextBase& ctx, Permission p,
                                 const std::vector<std::string>& envs) const;
  // Allow() on every environment of rollout `id` (on_any: on one of them);
  // NOT_FOUND when there is no such rollout.
  absl::StatusOr<Identity> AllowOnRollout(const grpc::ServerContextBase& ctx, Permission p,
                                          const std::string& id, bool on_any = false) const;

  grpc::Status Act(const grpc::ServerContextBase& ctx, const v1::RolloutActionRequest& req,
                   absl::Status (RolloutEngine::*action)(const std::string&, const std::string&),
                   v1::RolloutResponse* resp);

  // Takes a place for one more WatchRollout stream of `client` (its peer
  // address without the port), or says why not; LeaveWatch gives it back.
  grpc::Status EnterWatch(const std::string& client);
  void LeaveWatch(const std::string& client);

  static grpc::Status BuildFleet(const v1::GetFleetRequest* req, const FleetSnapshot* s,
                                 v1::GetFleetResponse* resp);

  std::shared_ptr<Reconciler> reconciler_;
  StateStore* store_;
  RolloutEngine* engine_;  // outlives the service
  Mutex audit_mu_;         // one audit_log line at a time
  Mutex watch_mu_;
  int watchers_ ABSL_GUARDED_BY(watch_mu_) = 0;
  std::map<std::string, int> watchers_by_client_ ABSL_GUARDED_BY(watch_mu_);
  FleetReplies fleet_replies_;
  WatchHub watches_;  // last: its streams call LeaveWatch
};

// absl::Status -> grpc::Status, code by code (the one place this is done).
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_LOCKSTEP_SERVICE_H_
