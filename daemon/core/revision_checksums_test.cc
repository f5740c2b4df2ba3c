#include "daemon/core/revision_checksums.h"

#include <gtest/gtest.h>

#include <map>

#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

constexpr char kFile[] = R"py("""add orders

Revision ID: b5d1e7f3a033
Revises: 7c4e2d8a9b22
"""
from alembic import op
import sqlalchemy as sa

revision = "b5d1e7f3a033"
down_revision = "7c4e2d8a9b22"


def upgrade():
    # the orders table
    op.create_table("orders", sa.Column("id", sa.Integer(), primary_key=True))
    if False:
        op.drop_table("users")
)py";

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

TEST(ChecksumOfTest, CommentsDocstringsAndSpacingAreNotCode) {
  const FileChecksum before = ChecksumOf(kFile);
  for (const std::string& cosmetic : {
           Replace(kFile, "# the orders table", "# the orders table, created empty"),
           Replace(kFile, "add orders\n", "add the orders table\n"),
           Replace(kFile, "import sqlalchemy as sa\n", "import sqlalchemy as sa   \n\n\n"),
           Replace(kFile, "sa.Column(\"id\", sa.Integer()", "sa.Column( \"id\" ,sa.Integer( )"),
           Replace(kFile, "primary_key=True))", "primary_key=True)  )  # one column"),
           Replace(kFile, "sa.Column(\"id\"", "\n        sa.Column(\"id\""),
       }) {
    const FileChecksum after = ChecksumOf(cosmetic);
    EXPECT_NE(after.sha256, before.sha256) << cosmetic;
    EXPECT_EQ(after.code_sha256, before.code_sha256) << CodeOf(kFile) << "\n---\n"
                                                     << CodeOf(cosmetic);
  }
  for (const std::string& edit : {
           Replace(kFile, "\"orders\"", "\"order\""),
           Replace(kFile, "\"orders\"", "'orders'"),
           Replace(kFile, "import sqlalchemy as sa", "importsqlalchemy as sa"),
           // A comment sign inside a string is the string's.
           Replace(kFile, "\"id\"", "\"id # key\""),
           // Indentation is code: the drop moves out of the `if`.
           Replace(kFile, "        op.drop_table", "    op.drop_table"),
           Replace(kFile, "    # the orders table\n", "    '''not a docstring''' + x\n"),
       }) {
    EXPECT_NE(ChecksumOf(edit).code_sha256, before.code_sha256) << edit;
  }
  EXPECT_EQ(ChecksumOf(kFile), before);  // stable
}

TEST(ChecksumOfTest, TheCodeTextKeepsIndentationAndTokens) {
  EXPECT_EQ(CodeOf("x = 1  # c\n\n\"\"\"doc\n\"\"\"\ndef f( a ,\n      b ):\n    return a  \n"),
            "x=1\ndef f(a,b):\n    return a\n");
  EXPECT_EQ(CodeOf("s = r'a # b' \\\n  + 'c'\n"), "s=r'a # b'+'c'\n");
}

TEST(ChecksumSetTest, TheBodyParsesBack) {
  ChecksumSet set;
  set["a1"] = {{"11", "12"}, absl::FromUnixSeconds(100), true};
  set["b2"] = {{"21", "22"}, absl::FromUnixSeconds(200), false};
  absl::StatusOr<ChecksumSet> back = ParseChecksumSet(ChecksumSetBody(set));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ(back->at("a1").checksum.sha256, "11");
  EXPECT_TRUE(back->at("a1").baseline);
  EXPECT_EQ(back->at("b2").at, absl::FromUnixSeconds(200));
  EXPECT_FALSE(back->at("b2").baseline);
  absl::StatusOr<ChecksumSet> bad = ParseChecksumSet("a1 11 12 oops applied\n");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 1"), std::string::npos);
}

class ChecksumLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = StateStore::Open(tmp_.path() + "/state.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  CurrentChecksumFn Files() {
    return [this](const std::string& revision) -> std::optional<FileChecksum> {
      auto it = files_.find(revision);
      if (it == files_.end()) return std::nullopt;
      return ChecksumOf(it->second);
    };
  }
  lockstep::testing::TempDir tmp_{"lockstep-checksums"};
  std::unique_ptr<StateStore> store_;
  std::map<std::string, std::string> files_ = {{"a1", "x = 1\n"}, {"b2", "y = 2\n"}};
  const absl::Time t0_ = absl::FromUnixSeconds(1000);
};

TEST_F(ChecksumLedgerTest, AFileChangedAfterItWasAppliedIsFoundAfterARestartToo) {
  {
    ChecksumLedger ledger;
    ASSERT_TRUE(ledger.Load(store_.get()).ok());
    ledger.BeginPass();
    // First sight: a baseline, nothing changed.
    EXPECT_TRUE(ledger.Observe("prod/t1", {"a1", "b2"}, Files(), t0_).empty());
    EXPECT_TRUE(ledger.Observe("prod/t2", {"a1"}, Files(), t0_).empty());
    ASSERT_TRUE(ledger.Save(store_.get()).ok());
  }
  files_["a1"] = "x = 10\n";        // an edit
  files_["b2"] = "y = 2  # two\n";  // a comment only
  ChecksumLedger ledger;            // a restart: what was applied comes from the store
  ASSERT_TRUE(ledger.Load(store_.get()).ok());
  ledger.BeginPass();
  std::vector<ChangedRevision> t1 = ledger.Observe("prod/t1", {"a1", "b2"}, Files(), t0_);
  ASSERT_EQ(t1.size(), 2u);
  EXPECT_EQ(t1[0].revision, "a1");
  EXPECT_FALSE(t1[0].cosmetic);
  EXPECT_TRUE(t1[0].baseline);
  EXPECT_EQ(t1[0].applied_sha256, ChecksumOf("x = 1\n").sha256);
  EXPECT_EQ(t1[0].current_sha256, ChecksumOf("x = 10\n").sha256);
  EXPECT_EQ(t1[0].applied_at, t0_);
  EXPECT_EQ(t1[1].revision, "b2");
  EXPECT_TRUE(t1[1].cosmetic);
  // t2 reaches b2 only now: its baseline is the file as it is now.
  std::vector<ChangedRevision> t2 = ledger.Observe("prod/t2", {"a1", "b2"}, Files(), t0_);
  ASSERT_EQ(t2.size(), 1u);
  EXPECT_EQ(t2[0].revision, "a1");
  // A database first seen now takes the files as they are.
  EXPECT_TRUE(ledger.Observe("prod/t3", {"a1", "b2"}, Files(), t0_).empty());
}

TEST_F(ChecksumLedgerTest, AStepRecordsWhatItRanAndADowngradeForgetsIt) {
  ChecksumLedger ledger;
  ASSERT_TRUE(ledger.Load(store_.get()).ok());
  ledger.BeginPass();
  ledger.Observe("dev/app", {"a1", "b2"}, Files(), t0_);
  files_["b2"] = "y = 3\n";
  ledger.BeginPass();
  ASSERT_EQ(ledger.Observe("dev/app", {"a1", "b2"}, Files(), t0_).size(), 1u);
  // Downgraded off b2, then upgraded again with the file as it is now.
  ledger.Applied("dev/app", {"b2"}, false, Files(), t0_ + absl::Seconds(1));
  ledger.Applied("dev/app", {"b2"}, true, Files(), t0_ + absl::Seconds(2));
  ledger.BeginPass();
  EXPECT_TRUE(ledger.Observe("dev/app", {"a1", "b2"}, Files(), t0_).empty());
  files_["b2"] = "y = 4\n";
  ledger.BeginPass();
  std::vector<ChangedRevision> changed = ledger.Observe("dev/app", {"a1", "b2"}, Files(), t0_);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_FALSE(changed[0].baseline);  // a step ran it
  EXPECT_EQ(changed[0].applied_at, t0_ + absl::Seconds(2));
  ASSERT_TRUE(ledger.Save(store_.get()).ok());
  absl::StatusOr<ChecksumSets> stored = store_->LoadChecksums();
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->of.size(), 1u);
  EXPECT_EQ(stored->bodies.size(), 1u);  // sets no database holds are dropped
}

TEST_F(ChecksumLedgerTest, DatabasesThatAppliedTheSameFilesShareOneSet) {
  ChecksumLedger ledger;
  ASSERT_TRUE(ledger.Load(store_.get()).ok());
  ledger.BeginPass();
  for (int i = 0; i < 500; ++i) ledger.Observe("prod/t" + std::to_string(i), {"a1"}, Files(), t0_);
  ASSERT_TRUE(ledger.Save(store_.get()).ok());
  absl::StatusOr<ChecksumSets> stored = store_->LoadChecksums();
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->of.size(), 500u);
  EXPECT_EQ(stored->bodies.size(), 1u);
}

}  // namespace
}  // namespace lockstep::daemon
