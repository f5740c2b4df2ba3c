// One entry of the audit log: a call that changed something (or tried to),
// or one that was refused for want of credentials or permission.
#ifndef LOCKSTEP_DAEMON_MODEL_AUDIT_H_
#define LOCKSTEP_DAEMON_MODEL_AUDIT_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace lockstep::daemon {

struct AuditRecord {
  int64_t id = 0;  // set by the store
  absl::Time at = absl::InfinitePast();
  std::string subject;  // who (authenticated); "" when unknown or authentication is off
  std::string method;   // "token", "certificate", "anonymous" (authentication off), "none"
  std::string peer;     // the client's address, e.g. "ipv4:10.0.0.7:53412"
  std::string rpc;      // e.g. "StartRollout"
  std::string request;  // the request in short (no secrets: no request carries one)
  std::string code;     // "OK", "PERMISSION_DENIED", ...
  std::string message;  // the error's message, cut short; "" when OK
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_MODEL_AUDIT_H_
