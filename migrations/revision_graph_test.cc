#include "migrations/revision_graph.h"

#include "migrations/test_util.h"

namespace lockstep::migrations {
namespace {

using ::testing::ElementsAre;
using testing::BuildGraph;
using testing::Rev;

TEST(RevisionGraphTest, LinearHeadsAndBases) {
  auto g = BuildGraph({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(g->Ids(g->heads()), ElementsAre("c"));
  EXPECT_THAT(g->Ids(g->bases()), ElementsAre("a"));
  EXPECT_FALSE(g->node(1).is_branch_point());
}

TEST(RevisionGraphTest, BranchAndMergePoints) {
  auto g = BuildGraph({{"a", {}}, {"b1", {"a"}}, {"b2", {"a"}}, {"c", {"b1", "b2"}}});
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->node(0).is_branch_point());
  EXPECT_TRUE(g->node(3).is_merge_point());
  EXPECT_THAT(g->Ids(g->heads()), ElementsAre("c"));
}

TEST(RevisionGraphTest, DependedOnHeadIsEffectiveNotReal) {
  // b1b depends on a3: a3's line is a head by down_revision, but not a
  // "real" head.
  auto g = BuildGraph({{"x", {}}, {"a3", {"x"}}, {"r", {}}, {"b1b", {"r"}, {}, {"a3"}}});
  ASSERT_TRUE(g.ok());
  EXPECT_THAT(g->Ids(g->heads()), ElementsAre("a3", "b1b"));
  EXPECT_THAT(g->Ids(g->real_heads()), ElementsAre("b1b"));
  EXPECT_TRUE(g->node(1).is_head());
  EXPECT_FALSE(g->node(1).is_real_head());
}

TEST(RevisionGraphTest, LabelsPropagateToDescendantsAndLinearAncestors) {
  // ALEMBIC.md case 4.
  auto g = BuildGraph(testing::LabelsCase());
  ASSERT_TRUE(g.ok());
  EXPECT_THAT(g->node(*g->Find("c")).labels, ElementsAre("abranch"));
  // d is a linear ancestor of e and gets its label.
  EXPECT_THAT(g->node(*g->Find("d")).labels, ElementsAre("ebranch"));
  EXPECT_THAT(g->node(*g->Find("f")).labels, ElementsAre("ebranch"));
}

TEST(RevisionGraphTest, LabelStopsAtBranchPoint) {
  auto g = BuildGraph({{"a", {}}, {"b", {"a"}}, {"c1", {"b"}, {"one"}}, {"c2", {"b"}}});
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->node(*g->Find("b")).labels.empty());
  EXPECT_THAT(g->node(*g->Find("c1")).labels, ElementsAre("one"));
}

TEST(RevisionGraphTest, MissingParentIsAnError) {
  auto g = BuildGraph({{"a", {}}, {"b", {"zz"}}});
  EXPECT_EQ(g.status().message(),
            "Revision zz referenced from b is not present (down_revision in /versions/b_.py)");
}

TEST(RevisionGraphTest, CycleIsDetected) {
  auto g = BuildGraph({{"a", {}}, {"b", {"a", "d"}}, {"c", {"b"}}, {"d", {"c"}}, {"e", {"a"}}});
  EXPECT_EQ(g.status().message(), "Cycle is detected in revisions (b, c, d)");
}

TEST(RevisionGraphTest, CycleWithoutBaseNamesAll) {
  auto g = BuildGraph({{"a", {"b"}}, {"b", {"a"}}});
  EXPECT_EQ(g.status().message(), "Cycle is detected in revisions (a, b)");
}

TEST(RevisionGraphTest, DependencyCycleIsDetected) {
  auto g = BuildGraph({{"a", {}}, {"b", {"a"}, {}, {"c"}}, {"c", {"a"}, {}, {"b"}}});
  EXPECT_EQ(g.status().message(), "Dependency cycle is detected in revisions (a, b, c)");
}

TEST(RevisionGraphTest, SelfLoops) {
  EXPECT_EQ(BuildGraph({{"a", {"a"}}}).status().message(),
            "Self-loop is detected in revisions (a)");
  EXPECT_EQ(BuildGraph({{"a", {}, {}, {"a"}}}).status().message(),
            "Dependency self-loop is detected in revisions (a)");
}

TEST(RevisionGraphTest, DuplicateLabel) {
  auto g = BuildGraph({{"r1", {}, {"x"}}, {"r2", {"r1"}, {"x"}}});
  EXPECT_EQ(g.status().message(), "Branch name 'x' in revision r2 already used by revision r1");
}

TEST(RevisionGraphTest, LabelMayNotShadowAnId) {
  auto g = BuildGraph({{"r1", {}}, {"r2", {"r1"}, {"r1"}}});
  EXPECT_EQ(g.status().message(), "Branch name 'r1' in revision r2 already used by revision r1");
}

TEST(RevisionGraphTest, DuplicateIdWarnsAndLaterFileWins) {
  std::vector<RevisionFile> files(2);
  files[0].revision = files[1].revision = "a";
  files[1].doc = "second";
  std::vector<std::string> warnings;
  auto g = RevisionGraph::Build(files, &warnings);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->size(), 1);
  EXPECT_EQ(g->node(0).file->doc, "second");
  EXPECT_THAT(warnings, ElementsAre("Revision a is present more than once"));
}

TEST(RevisionGraphTest, RedundantDependencyIsNormalisedAway) {
  // c depends on a, which its parent b already depends on.
  auto g = BuildGraph({{"a", {}}, {"x", {}}, {"b", {"x"}, {}, {"a"}}, {"c", {"b"}, {}, {"a"}}});
  ASSERT_TRUE(g.ok());
  EXPECT_THAT(g->Ids(g->node(*g->Find("c")).normalized_down), ElementsAre("b"));
  EXPECT_THAT(g->Ids(g->node(*g->Find("b")).normalized_down), ElementsAre("x", "a"));
}

}  // namespace
}  // namespace lockstep::migrations
