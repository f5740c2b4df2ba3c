#include "daemon/rpc/reply_text.h"

#include <gtest/gtest.h>

#include "daemon/model/utf8.h"
#include "lockstep/v1/lockstep.pb.h"

namespace lockstep::daemon {
namespace {

TEST(ReplyTextTest, EveryStringFieldAtAnyDepthBecomesValidUtf8) {
  v1::GetFleetResponse reply;
  v1::Database* db = reply.add_databases();
  db->set_database("t1");
  db->set_reason("version row caf\xe9 is not defined");
  db->add_revisions("caf\xe9");
  db->add_revisions("e9a8c6b4d244");
  (*db->mutable_labels())["team"] = "\xff";
  v1::Environment* env = reply.add_environments();
  env->add_revision_sets()->add_revisions("a\xc3");

  // Unreadable as it is: the client's parser refuses it.
  std::string wire;
  ASSERT_TRUE(reply.SerializeToString(&wire));
  v1::GetFleetResponse parsed;
  EXPECT_FALSE(parsed.ParseFromString(wire));

  ASSERT_TRUE(FinishReply(&reply).ok());
  ASSERT_TRUE(reply.SerializeToString(&wire));
  ASSERT_TRUE(parsed.ParseFromString(wire));
  const v1::Database& d = parsed.databases(0);
  EXPECT_EQ(d.database(), "t1");
  EXPECT_EQ(d.reason(), "version row caf\xef\xbf\xbd is not defined");
  EXPECT_EQ(d.revisions(0), "caf\xef\xbf\xbd");
  EXPECT_EQ(d.revisions(1), "e9a8c6b4d244");
  EXPECT_EQ(d.labels().at("team"), "\xef\xbf\xbd");
  EXPECT_EQ(parsed.environments(0).revision_sets(0).revisions(0), "a\xef\xbf\xbd");
}

}  // namespace
}  // namespace lockstep::daemon
