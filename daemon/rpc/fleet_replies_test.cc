#include "daemon/rpc/fleet_replies.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace lockstep::daemon {
namespace {

// A reply is built once per snapshot and request, however many ask for it
// meanwhile; a new snapshot or another request builds again.
TEST(FleetRepliesTest, OneBuildPerSnapshotAndRequestSharedByEveryReader) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> built{0};
  FleetReplies replies(
      [&](const v1::GetFleetRequest& req, const FleetSnapshot& s, v1::GetFleetResponse* resp) {
        ++built;
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return release; });  // the others arrive meanwhile
        resp->add_databases()->set_database(s.databases.at(0).name + "/" + req.environment());
        return grpc::Status::OK;
      });
  auto first = std::make_shared<FleetSnapshot>();
  first->databases.resize(1);
  first->databases[0].name = "t1";
  v1::GetFleetRequest prod;
  prod.set_environment("prod");

  std::atomic<int> answered{0};
  std::vector<std::string> seen(10);
  std::vector<std::thread> readers;
  for (int i = 0; i < 10; ++i) {
    readers.emplace_back([&, i] {
      replies.Get(first, prod.SerializeAsString(), prod, [&, i](const FleetReplies::Reply& r) {
        ASSERT_TRUE(r.status.ok());
        seen[i] = *r.bytes;
        ++answered;
      });
    });
  }
  while (built == 0) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(answered, 10);
  EXPECT_EQ(built, 1);
  EXPECT_EQ(replies.builds(), 1);
  v1::GetFleetResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(seen[9]));
  EXPECT_EQ(parsed.databases(0).database(), "t1/prod");
  for (const std::string& s : seen) EXPECT_EQ(s, seen[0]);

  // Another request, then a new snapshot: each built once more.
  v1::GetFleetRequest all;
  std::string got;
  replies.Get(first, all.SerializeAsString(), all,
              [&](const FleetReplies::Reply& r) { got = *r.bytes; });
  EXPECT_EQ(replies.builds(), 2);
  auto second = std::make_shared<FleetSnapshot>(*first);
  second->databases[0].name = "t2";
  replies.Get(second, prod.SerializeAsString(), prod,
              [&](const FleetReplies::Reply& r) { got = *r.bytes; });
  EXPECT_EQ(replies.builds(), 3);
  ASSERT_TRUE(parsed.ParseFromString(got));
  EXPECT_EQ(parsed.databases(0).database(), "t2/prod");
  replies.Get(second, prod.SerializeAsString(), prod, [](const FleetReplies::Reply&) {});
  EXPECT_EQ(replies.builds(), 3);
}

// A refused request is answered with its status, and shared the same way.
TEST(FleetRepliesTest, AnErrorIsTheReplyToo) {
  FleetReplies replies([](const v1::GetFleetRequest&, const FleetSnapshot&, v1::GetFleetResponse*) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no environment named 'qa'");
  });
  auto snapshot = std::make_shared<FleetSnapshot>();
  v1::GetFleetRequest qa;
  qa.set_environment("qa");
  for (int i = 0; i < 2; ++i) {
    grpc::Status status;
    replies.Get(snapshot, qa.SerializeAsString(), qa,
                [&](const FleetReplies::Reply& r) { status = r.status; });
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(status.error_message(), "no environment named 'qa'");
  }
  EXPECT_EQ(replies.builds(), 1);
}

// Many different requests keep a bounded number of replies: the first ones
// asked are built again once the room went to others.
TEST(FleetRepliesTest, ManyDifferentRequestsKeepABoundedNumber) {
  FleetReplies replies(
      [](const v1::GetFleetRequest& req, const FleetSnapshot&, v1::GetFleetResponse* resp) {
        resp->add_databases()->set_database(req.environment());
        return grpc::Status::OK;
      });
  auto snapshot = std::make_shared<FleetSnapshot>();
  auto ask = [&](int i) {
    v1::GetFleetRequest req;
    req.set_environment("env" + std::to_string(i));
    replies.Get(snapshot, req.SerializeAsString(), req, [](const FleetReplies::Reply&) {});
  };
  for (int i = 0; i < 1000; ++i) ask(i);
  EXPECT_EQ(replies.builds(), 1000);
  ask(999);  // the last one asked is kept
  EXPECT_EQ(replies.builds(), 1000);
  ask(0);  // the first one is not any more
  EXPECT_EQ(replies.builds(), 1001);
}

// The slice holds its bytes alive after the reply that made them is gone.
TEST(FleetRepliesTest, ASharedSliceKeepsItsBytes) {
  grpc::Slice slice = SharedSlice(std::make_shared<const std::string>("abc"));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(slice.begin()), slice.size()), "abc");
}

}  // namespace
}  // namespace lockstep::daemon
