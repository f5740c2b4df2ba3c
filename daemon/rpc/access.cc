#include "daemon/rpc/access.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "daemon/schema/schema.h"  // Sha256Hex

namespace lockstep::daemon {

absl::string_view PermissionName(Permission p) {
  switch (p) {
    case Permission::kRead:
      return "read";
    case Permission::kOperate:
      return "operate";
    case Permission::kApprove:
      return "approve";
    case Permission::kRestore:
      return "restore";
  }
  return "?";
}

bool RoleGrants(absl::string_view role, Permission p) {
  if (role == "admin" || p == Permission::kRead) return role != "";
  return (role == "operator" && p == Permission::kOperate) ||
         (role == "approver" && p == Permission::kApprove) ||
         (role == "restorer" && p == Permission::kRestore);
}

std::string TokenHash(absl::string_view token) { return Sha256Hex(std::string(token)); }

absl::StatusOr<Identity> Authenticate(const config::Inventory& inv, absl::string_view authorization,
                                      absl::string_view cert_cn) {
  if (!inv.authentication) return Identity{};
  if (!authorization.empty()) {
    absl::string_view token = authorization;
    if (!absl::ConsumePrefix(&token, "Bearer ") && !absl::ConsumePrefix(&token, "bearer ")) {
      return absl::UnauthenticatedError(
          "the authorization header is not 'Bearer TOKEN' (lockstep sends it from --token-file "
          "or $LOCKSTEP_TOKEN)");
    }
    token = absl::StripAsciiWhitespace(token);
    if (inv.server.auth) {
      auto it = inv.tokens.find(TokenHash(token));
      if (it != inv.tokens.end()) {
        return Identity{false, it->second.subject, it->second.groups, "token"};
      }
    }
    return absl::UnauthenticatedError(
        "the token is not in lockstepd's tokens file (mistyped, or revoked)");
  }
  if (!cert_cn.empty()) return Identity{false, std::string(cert_cn), {}, "certificate"};
  return absl::UnauthenticatedError(
      "no credentials: lockstepd requires a token (--token-file or $LOCKSTEP_TOKEN) or a "
      "client certificate (--tls-cert and --tls-key)");
}

namespace {

bool Names(const config::AccessBinding& b, const Identity& who) {
  for (const std::string& s : b.subjects) {
    absl::string_view group = s;
    if (absl::ConsumePrefix(&group, "group:")) {
      if (std::find(who.groups.begin(), who.groups.end(), group) != who.groups.end()) return true;
    } else if (s == who.subject) {
      return true;
    }
  }
  return false;
}

bool Covers(const config::AccessBinding& b, const std::string& env) {
  return config::MatchesAnyPattern(b.environments, env);
}

}  // namespace

bool Allows(const config::Inventory& inv, const Identity& who, Permission p,
            const std::string& env) {
  if (who.anonymous) return !inv.authentication;
  for (const config::AccessBinding& b : inv.access) {
    if (RoleGrants(b.role, p) && Names(b, who) && Covers(b, env)) return true;
  }
  return false;
}

namespace {

absl::Status Denied(const Identity& who, Permission p, const std::string& where) {
  std::vector<std::string> roles;
  for (const char* role : config::kRoles) {
    if (RoleGrants(role, p) && absl::string_view(role) != "admin") roles.push_back(role);
  }
  std::string as = who.subject;
  for (const std::string& g : who.groups) absl::StrAppend(&as, ", group:", g);
  return absl::PermissionDeniedError(absl::StrCat(
      who.subject, " may not ", PermissionName(p), " ", where, ": no access binding gives ", as,
      " the role ", absl::StrJoin(roles, " or "), " (or admin) there"));
}

}  // namespace

absl::Status Authorize(const config::Inventory& inv, const Identity& who, Permission p,
                       const std::vector<std::string>& envs) {
  if (envs.empty()) return AuthorizeAny(inv, who, p, envs);
  if (who.anonymous && !inv.authentication) return absl::OkStatus();
  for (const std::string& env : envs) {
    if (!Allows(inv, who, p, env)) return Denied(who, p, "on " + env);
  }
  return absl::OkStatus();
}

absl::Status AuthorizeAny(const config::Inventory& inv, const Identity& who, Permission p,
                          const std::vector<std::string>& envs) {
  if (who.anonymous && !inv.authentication) return absl::OkStatus();
  std::vector<std::string> all;
  for (const config::EnvironmentConfig& e : inv.environments) all.push_back(e.name);
  const std::vector<std::string>& among = envs.empty() ? all : envs;
  for (const std::string& env : among) {
    if (Allows(inv, who, p, env)) return absl::OkStatus();
  }
  return Denied(who, p, envs.empty() ? "in any environment" : "on " + absl::StrJoin(envs, " or "));
}

}  // namespace lockstep::daemon
