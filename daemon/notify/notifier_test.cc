#include "daemon/notify/notifier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace lockstep::daemon {
namespace {

using ::testing::Contains;
using ::testing::Pair;

TEST(WebhookTest, HmacIsRfc4231) {
  // RFC 4231, test case 2.
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

NotifyEvent AnEvent() {
  StateStore::PositionedEvent e;
  e.position = 42;
  e.rollout_id = "r-20261208-050000-abcd";
  e.rollout_kind = "upgrade";
  e.rollout_target = "heads";
  e.created_by = "dora";
  e.event.seq = 7;
  e.event.at = absl::FromUnixSeconds(1796000000);
  e.event.kind = EventKind::kStepFailed;
  e.event.environment = "prod";
  e.event.database = "tenant-a";
  e.event.message = "Alembic exited 1";
  return FromRollout(e);
}

TEST(WebhookTest, JsonBodyNamesTheEventAndItsRolloutAndIsSigned) {
  config::NotifyConfig hook;
  hook.name = "oncall";
  WebhookRequest r = BuildWebhookRequest(hook, AnEvent(), "s3cret");
  nlohmann::json body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["delivery"], "r42");
  EXPECT_EQ(body["event"], "step_failed");
  EXPECT_EQ(body["webhook"], "oncall");
  EXPECT_EQ(body["rollout"]["id"], "r-20261208-050000-abcd");
  EXPECT_EQ(body["rollout"]["created_by"], "dora");
  EXPECT_EQ(body["rollout"]["seq"], 7);
  EXPECT_EQ(body["environment"], "prod");
  EXPECT_EQ(body["database"], "tenant-a");
  EXPECT_EQ(body["message"], "Alembic exited 1");
  EXPECT_EQ(body["at"], "2026-11-30T00:53:20.000Z");
  EXPECT_THAT(r.headers, Contains(Pair("X-Lockstep-Event", "step_failed")));
  EXPECT_THAT(r.headers, Contains(Pair("X-Lockstep-Delivery", "r42")));
  EXPECT_THAT(r.headers,
              Contains(Pair("X-Lockstep-Signature", "sha256=" + HmacSha256Hex("s3cret", r.body))));
}

TEST(WebhookTest, SlackTextAndNoSignatureWithoutASecret) {
  config::NotifyConfig hook;
  hook.format = "slack";
  WebhookRequest r = BuildWebhookRequest(hook, AnEvent(), "");
  EXPECT_EQ(nlohmann::json::parse(r.body),
            nlohmann::json({{"text",
                             "lockstep: step_failed in r-20261208-050000-abcd (upgrade to heads) "
                             "prod/tenant-a: Alembic exited 1"}}));
  for (const auto& [name, value] : r.headers) EXPECT_NE(name, "X-Lockstep-Signature");
}

TEST(WebhookTest, AFleetEventHasNoRollout) {
  StateStore::FleetEvent f{7,    absl::FromUnixSeconds(1796000000), "schema_drift", "prod",
                           "t1", "table orders is missing"};
  config::NotifyConfig hook;
  nlohmann::json body = nlohmann::json::parse(BuildWebhookRequest(hook, FromFleet(f), "").body);
  EXPECT_EQ(body["delivery"], "f7");
  EXPECT_EQ(body["event"], "schema_drift");
  EXPECT_TRUE(body["rollout"].is_null());
  hook.format = "slack";
  EXPECT_EQ(nlohmann::json::parse(BuildWebhookRequest(hook, FromFleet(f), "").body)["text"],
            "lockstep: schema_drift prod/t1: table orders is missing");
}

TEST(WebhookTest, EveryNotifyEventIsARolloutEventOrAFleetOne) {
  for (const std::string name : config::kNotifyEvents) {
    EXPECT_TRUE(ParseName<EventKind>(name).has_value() || name == "checksum_changed") << name;
  }
  for (const char* name : config::kDefaultNotifyEvents) {
    EXPECT_THAT(std::vector<std::string>(std::begin(config::kNotifyEvents),
                                         std::end(config::kNotifyEvents)),
                Contains(std::string(name)));
  }
}

}  // namespace
}  // namespace lockstep::daemon
