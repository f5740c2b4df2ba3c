// Who calls lockstepd, and what they may do where (deny by default).
//
// Authentication is on when the inventory sets server.auth (bearer tokens,
// looked up by their sha256 in the tokens file) or server.tls.client_ca
// (the client certificate's CN is the subject). Off, every caller is
// anonymous and may do everything: the loopback quick start.
//
// Example:
//   absl::StatusOr<Identity> who = Authenticate(inv, "Bearer lst_...", "");
//   absl::Status ok = Authorize(inv, *who, Permission::kOperate, {"dev", "prod"});
//   // PERMISSION_DENIED: "alice may not operate on prod: no access binding
//   // gives alice (or group:release) operator or admin there"
#ifndef LOCKSTEP_DAEMON_RPC_ACCESS_H_
#define LOCKSTEP_DAEMON_RPC_ACCESS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "config/inventory.h"

namespace lockstep::daemon {

enum class Permission { kRead, kOperate, kApprove, kRestore };
inline constexpr Permission kAllPermissions[] = {Permission::kRead, Permission::kOperate,
                                                 Permission::kApprove, Permission::kRestore};
// "read", "operate", "approve", "restore".
absl::string_view PermissionName(Permission p);
// Whether `role` (config::kRoles) grants `p`; every role reads.
bool RoleGrants(absl::string_view role, Permission p);

struct Identity {
  bool anonymous = true;  // authentication is off
  std::string subject;
  std::vector<std::string> groups;
  std::string method;  // "token" or "certificate"
};

// The caller from its "authorization" header ("Bearer TOKEN"; may be
// empty) and its verified client certificate's CN (may be empty). With
// authentication off: anonymous. On, and neither names a known subject:
// UNAUTHENTICATED (never echoing the token).
absl::StatusOr<Identity> Authenticate(const config::Inventory& inv, absl::string_view authorization,
                                      absl::string_view cert_cn);

// Whether `who` holds `p` on environment `env`.
bool Allows(const config::Inventory& inv, const Identity& who, Permission p,
            const std::string& env);

// OK when `who` holds `p` on every one of `envs`; else PERMISSION_DENIED
// naming the first environment it lacks. No environment (a call about the
// project, e.g. its graph): `p` on at least one environment.
absl::Status Authorize(const config::Inventory& inv, const Identity& who, Permission p,
                       const std::vector<std::string>& envs);
// OK when `who` holds `p` on at least one of `envs` (none: of the inventory's).
absl::Status AuthorizeAny(const config::Inventory& inv, const Identity& who, Permission p,
                          const std::vector<std::string>& envs);

// The hex sha256 of `token`: what the tokens file lists.
std::string TokenHash(absl::string_view token);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_ACCESS_H_
