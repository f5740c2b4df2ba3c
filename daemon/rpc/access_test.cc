#include "daemon/rpc/access.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lockstep::daemon {
namespace {

using ::testing::HasSubstr;

config::Inventory Fleet() {
  config::Inventory inv;
  inv.authentication = true;
  inv.server.auth = config::AuthConfig{"/t"};
  for (const char* name : {"dev", "staging", "prod-eu", "prod-us"}) {
    config::EnvironmentConfig e;
    e.name = name;
    inv.environments.push_back(e);
  }
  inv.tokens[TokenHash("tok-alice")] = {"alice", {"release"}};
  inv.tokens[TokenHash("tok-dora")] = {"dora", {"dba"}};
  inv.access.push_back({{"group:release"}, "operator", {"dev", "staging"}});
  inv.access.push_back({{"group:dba"}, "approver", {"prod-*"}});
  inv.access.push_back({{"dora"}, "restorer", {"prod-eu"}});
  return inv;
}

TEST(AccessTest, RolesGrantWhatTheyNameAndAllRead) {
  for (const char* role : config::kRoles) EXPECT_TRUE(RoleGrants(role, Permission::kRead)) << role;
  EXPECT_TRUE(RoleGrants("operator", Permission::kOperate));
  EXPECT_FALSE(RoleGrants("operator", Permission::kApprove));
  EXPECT_FALSE(RoleGrants("approver", Permission::kOperate));
  EXPECT_FALSE(RoleGrants("viewer", Permission::kRestore));
  for (Permission p : kAllPermissions) EXPECT_TRUE(RoleGrants("admin", p));
}

TEST(AccessTest, TokensAreLookedUpByHashAndNeverEchoed) {
  config::Inventory inv = Fleet();
  absl::StatusOr<Identity> alice = Authenticate(inv, "Bearer tok-alice", "");
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->subject, "alice");
  EXPECT_EQ(alice->method, "token");
  absl::StatusOr<Identity> wrong = Authenticate(inv, "Bearer tok-mallory", "");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(wrong.status().message(), ::testing::Not(HasSubstr("tok-mallory")));
  EXPECT_EQ(Authenticate(inv, "Basic xyz", "").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Authenticate(inv, "", "").status().code(), absl::StatusCode::kUnauthenticated);
  absl::StatusOr<Identity> cert = Authenticate(inv, "", "release-bot");
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->subject, "release-bot");
  EXPECT_EQ(cert->method, "certificate");
  // Authentication off: anonymous, allowed everything.
  config::Inventory open;
  absl::StatusOr<Identity> anyone = Authenticate(open, "", "");
  ASSERT_TRUE(anyone.ok());
  EXPECT_TRUE(anyone->anonymous);
  EXPECT_TRUE(Authorize(open, *anyone, Permission::kRestore, {"prod"}).ok());
}

TEST(AccessTest, BindingsByGroupSubjectAndPattern) {
  config::Inventory inv = Fleet();
  Identity alice = *Authenticate(inv, "Bearer tok-alice", "");
  Identity dora = *Authenticate(inv, "Bearer tok-dora", "");
  EXPECT_TRUE(Authorize(inv, alice, Permission::kOperate, {"dev", "staging"}).ok());
  absl::Status s = Authorize(inv, alice, Permission::kOperate, {"dev", "prod-eu"});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("alice may not operate on prod-eu: no access binding gives "
                                     "alice, group:release the role operator (or admin) there"));
  EXPECT_TRUE(Authorize(inv, dora, Permission::kApprove, {"prod-eu", "prod-us"}).ok());
  EXPECT_TRUE(Allows(inv, dora, Permission::kRestore, "prod-eu"));
  EXPECT_FALSE(Allows(inv, dora, Permission::kRestore, "prod-us"));
  EXPECT_FALSE(Allows(inv, dora, Permission::kRead, "dev"));
  // No environment named: the permission somewhere will do.
  EXPECT_TRUE(Authorize(inv, alice, Permission::kRead, {}).ok());
  EXPECT_THAT(Authorize(inv, alice, Permission::kRestore, {}).message(),
              HasSubstr("alice may not restore in any environment"));
  EXPECT_TRUE(AuthorizeAny(inv, dora, Permission::kApprove, {"dev", "prod-us"}).ok());
  EXPECT_FALSE(AuthorizeAny(inv, alice, Permission::kApprove, {"dev", "prod-us"}).ok());
  // An identity that did not authenticate gets nothing once it is on.
  EXPECT_FALSE(Allows(inv, Identity{}, Permission::kRead, "dev"));
}

}  // namespace
}  // namespace lockstep::daemon
