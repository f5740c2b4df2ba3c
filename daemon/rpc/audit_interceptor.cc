#include "daemon/rpc/audit_interceptor.h"

#include <string>

#include "daemon/model/utf8.h"

namespace lockstep::daemon {
namespace {

using grpc::experimental::InterceptionHookPoints;

constexpr size_t kRequestChars = 300;  // the request in short

// The request in protobuf's one-line text form, cut short; `message` is
// the deserialized request of `rpc` (gRPC hands it over untyped).
std::string Summarize(absl::string_view rpc, void* message) {
  if (message == nullptr) return "";
  auto text = [](const google::protobuf::Message* m) {
    std::string s = m->ShortDebugString();
    if (s.size() > kRequestChars) s = s.substr(0, kRequestChars) + "…";
    return ValidUtf8(s);
  };
  if (rpc == "StartRollout") return text(static_cast<v1::StartRolloutRequest*>(message));
  if (rpc == "ApproveRollout" || rpc == "PauseRollout" || rpc == "ResumeRollout" ||
      rpc == "AbortRollout") {
    return text(static_cast<v1::RolloutActionRequest*>(message));
  }
  if (rpc == "Downgrade") return text(static_cast<v1::DowngradeRequest*>(message));
  if (rpc == "Stamp") return text(static_cast<v1::StampRequest*>(message));
  if (rpc == "Reapply") return text(static_cast<v1::ReapplyRequest*>(message));
  if (rpc == "RestoreBackup") return text(static_cast<v1::RestoreBackupRequest*>(message));
  return "";
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

class AuditInterceptor : public grpc::experimental::Interceptor {
 public:
  AuditInterceptor(LockstepService* service, grpc::experimental::ServerRpcInfo* info)
      : service_(service), ctx_(info->server_context()) {
    absl::string_view method = info->method() ? info->method() : "";
    rpc_ = std::string(method.substr(method.rfind('/') + 1));  // "/lockstep.v1.Lockstep/X"
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        IsMutatingRpc(rpc_)) {
      request_ = Summarize(rpc_, methods->GetRecvMessage());
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        ctx_ != nullptr) {
      grpc::Status status = methods->GetSendStatus();
      const grpc::StatusCode code = status.error_code();
      if (IsMutatingRpc(rpc_) || code == grpc::StatusCode::UNAUTHENTICATED ||
          code == grpc::StatusCode::PERMISSION_DENIED) {
        AuditRecord r;
        r.rpc = rpc_;
        r.request = request_;
        r.code = CodeName(code);
        r.message = status.error_message().substr(0, 500);
        service_->Record(*ctx_, std::move(r));
      }
    }
    methods->Proceed();
  }

 private:
  LockstepService* service_;
  grpc::ServerContextBase* ctx_;
  std::string rpc_;
  std::string request_;
};

}  // namespace

bool IsMutatingRpc(absl::string_view rpc) {
  for (const char* m :
       {"StartRollout", "ApproveRollout", "PauseRollout", "ResumeRollout", "AbortRollout",
        "Downgrade", "Stamp", "Reapply", "RestoreBackup", "Refresh"}) {
    if (rpc == m) return true;
  }
  return false;
}

grpc::experimental::Interceptor* AuditInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new AuditInterceptor(service_, info);
}

}  // namespace lockstep::daemon
