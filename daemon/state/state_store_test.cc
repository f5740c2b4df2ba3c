#include "daemon/state/state_store.h"

#include <unistd.h>

#include <filesystem>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lockstep-state-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/state.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  CheckRecord Check(const std::string& db, std::vector<std::string> rows, bool known, int t) {
    return {db, "prod", known, std::move(rows), known ? "current" : "unreachable", known ? "ok" : "unreachable",
            known ? "" : "refused", absl::FromUnixSeconds(1000 + t)};
  }
  std::string dir_, path_;
};

TEST_F(StateStoreTest, RecordsChangesAndSurvivesReopen) {
  {
    auto store = StateStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {"r1"}, true, 0)}).ok());
    ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {"r1"}, true, 1)}).ok());   // no change
    ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {}, false, 2)}).ok());      // unreachable
    ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {"r2"}, true, 3)}).ok());   // by hand
  }
  auto store = StateStore::Open(path_);
  ASSERT_TRUE(store.ok());
  auto changes = (*store)->Changes("prod/a", 10);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_THAT((*changes)[0].from, ElementsAre("r1"));
  EXPECT_THAT((*changes)[0].to, ElementsAre("r2"));
  EXPECT_EQ((*changes)[0].observed_at, absl::FromUnixSeconds(1003));
  EXPECT_THAT((*changes)[1].from, IsEmpty());
  auto last = (*store)->LastChecks();
  ASSERT_TRUE(last.ok());
  EXPECT_THAT(last->at("prod/a").revisions, ElementsAre("r2"));
  EXPECT_EQ(last->at("prod/a").changed_at, absl::FromUnixSeconds(1003));
}

TEST_F(StateStoreTest, UnreachableKeepsLastKnownRevisions) {
  auto store = StateStore::Open(path_);
  ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {"r1"}, true, 0)}).ok());
  ASSERT_TRUE((*store)->RecordChecks({Check("prod/a", {}, false, 5)}).ok());
  auto last = (*store)->LastChecks();
  EXPECT_THAT(last->at("prod/a").revisions, ElementsAre("r1"));
  EXPECT_EQ(last->at("prod/a").outcome, "unreachable");
  EXPECT_EQ(last->at("prod/a").checked_at, absl::FromUnixSeconds(1005));
}

TEST_F(StateStoreTest, RefusesANewerSchema) {
  {
    SQLite::Database db(path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA user_version = 99");
  }
  EXPECT_THAT(StateStore::Open(path_).status().message(), HasSubstr("schema version 99, newer"));
}

TEST_F(StateStoreTest, UnwritablePathIsAClearError) {
  EXPECT_THAT(StateStore::Open(dir_ + "/no/such/dir/state.db").status().message(),
              HasSubstr("cannot open the state store"));
}

}  // namespace
}  // namespace lockstep::daemon
