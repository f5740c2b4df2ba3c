// The audit log's gRPC edge: a server interceptor that sees every call's
// method, request and final status, and hands the ones worth keeping to
// LockstepService::Record: every call of an RPC that changes something
// (whatever its result), and any call refused with UNAUTHENTICATED or
// PERMISSION_DENIED. Reads that succeed are not recorded.
#ifndef LOCKSTEP_DAEMON_RPC_AUDIT_INTERCEPTOR_H_
#define LOCKSTEP_DAEMON_RPC_AUDIT_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include "absl/strings/string_view.h"
#include "daemon/rpc/lockstep_service.h"

namespace lockstep::daemon {

// Whether `rpc` ("StartRollout") changes something (always audited).
bool IsMutatingRpc(absl::string_view rpc);

class AuditInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit AuditInterceptorFactory(LockstepService* service) : service_(service) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  LockstepService* service_;  // outlives the server
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_AUDIT_INTERCEPTOR_H_
