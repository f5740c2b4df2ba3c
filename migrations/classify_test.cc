#include "migrations/classify.h"

#include "migrations/test_util.h"

namespace lockstep::migrations {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::BuildGraph;

class ClassifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto g = BuildGraph({{"a", {}}, {"b", {"a"}}, {"c1", {"b"}}, {"c2", {"b"}}, {"m", {"c1", "c2"}}});
    ASSERT_TRUE(g.ok());
    graph_ = std::make_unique<RevisionGraph>(*std::move(g));
    resolver_ = std::make_unique<Resolver>(graph_.get());
  }
  std::unique_ptr<RevisionGraph> graph_;
  std::unique_ptr<Resolver> resolver_;
};

TEST_F(ClassifyTest, States) {
  Classification c = ClassifyRows(*resolver_, {"m"});
  EXPECT_EQ(c.state, RevisionState::kCurrent);

  c = ClassifyRows(*resolver_, {"b"});
  EXPECT_EQ(c.state, RevisionState::kBehind);
  // Alembic's order: its topological sort runs from the head down and is
  // reversed for upgrades, so the later sibling comes first.
  EXPECT_THAT(c.pending, ElementsAre("c2", "c1", "m"));
  EXPECT_THAT(c.reason, HasSubstr("3 revisions pending"));

  c = ClassifyRows(*resolver_, {});
  EXPECT_EQ(c.state, RevisionState::kUninitialized);
  EXPECT_EQ(c.pending.size(), 5u);

  c = ClassifyRows(*resolver_, {"deadbeef"});
  EXPECT_EQ(c.state, RevisionState::kOrphaned);
  EXPECT_THAT(c.orphaned, ElementsAre("deadbeef"));

  c = ClassifyRows(*resolver_, {"m"}, "c1");
  EXPECT_EQ(c.state, RevisionState::kAhead);
  EXPECT_THAT(c.beyond, ElementsAre("m", "c2"));

  c = ClassifyRows(*resolver_, {"c2"}, "c1");
  EXPECT_EQ(c.state, RevisionState::kDiverged);
}

}  // namespace
}  // namespace lockstep::migrations
