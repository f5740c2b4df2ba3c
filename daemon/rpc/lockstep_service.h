// The gRPC service: a thin adapter from lockstep.v1 to the reconciler. Each
// method converts the request, calls the core, converts the result; the
// only logic here is filtering and status-code mapping. Thread-safe; it
// shares the reconciler (a Refresh may outlive its RPC); the store must
// outlive it.
#ifndef LOCKSTEP_DAEMON_RPC_LOCKSTEP_SERVICE_H_
#define LOCKSTEP_DAEMON_RPC_LOCKSTEP_SERVICE_H_

#include "daemon/core/reconciler.h"
#include "daemon/state/state_store.h"
#include "lockstep/v1/lockstep.grpc.pb.h"

namespace lockstep::daemon {

class LockstepService final : public lockstep::v1::Lockstep::Service {
 public:
  LockstepService(std::shared_ptr<Reconciler> reconciler, StateStore* store)
      : reconciler_(std::move(reconciler)), store_(store) {}

  grpc::Status GetFleet(grpc::ServerContext* ctx, const v1::GetFleetRequest* req,
                        v1::GetFleetResponse* resp) override;
  grpc::Status GetDatabase(grpc::ServerContext* ctx, const v1::GetDatabaseRequest* req,
                           v1::GetDatabaseResponse* resp) override;
  grpc::Status Refresh(grpc::ServerContext* ctx, const v1::RefreshRequest* req,
                       v1::RefreshResponse* resp) override;
  grpc::Status GetGraph(grpc::ServerContext* ctx, const v1::GetGraphRequest* req,
                        v1::GetGraphResponse* resp) override;
  grpc::Status GetHistory(grpc::ServerContext* ctx, const v1::GetHistoryRequest* req,
                          v1::GetHistoryResponse* resp) override;

 private:
  std::shared_ptr<Reconciler> reconciler_;
  StateStore* store_;
};

// absl::Status -> grpc::Status, code by code (the one place this is done).
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_LOCKSTEP_SERVICE_H_
