#include "migrations/resolver.h"

#include "migrations/revision_error.h"
#include "migrations/test_util.h"
#include "migrations/traversal.h"

namespace lockstep::migrations {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::BuildGraph;
using testing::Rev;

class ResolverTest : public ::testing::Test {
 protected:
  void Use(const std::vector<Rev>& revs) {
    auto g = BuildGraph(revs);
    ASSERT_TRUE(g.ok()) << g.status();
    graph_ = std::make_unique<RevisionGraph>(*std::move(g));
    resolver_ = std::make_unique<Resolver>(graph_.get());
  }

  std::vector<std::string> Get(const std::string& id) {
    auto refs = resolver_->GetRevisions(id);
    EXPECT_TRUE(refs.ok()) << refs.status();
    std::vector<std::string> out;
    if (!refs.ok()) return out;
    for (const RevRef& r : *refs) out.push_back(r.is_rev() ? graph_->id(r.idx) : "<none>");
    return out;
  }

  std::string Error(const std::string& id) {
    auto refs = resolver_->GetRevisions(id);
    return refs.ok() ? "ok" : std::string(refs.status().message());
  }

  // `history -r lower:upper` order ("walk upper..lower").
  std::vector<std::string> Walk(const std::string& upper, const std::string& lower) {
    IterateOptions o;
    o.inclusive = true;
    o.assert_relative_length = false;
    auto revs = IterateRevisions(*resolver_, RevisionSpec::Identifier(upper),
                                 RevisionSpec::Identifier(lower), o);
    if (!revs.ok()) return {std::string(revs.status().message())};
    return graph_->Ids(*revs);
  }

  std::unique_ptr<RevisionGraph> graph_;
  std::unique_ptr<Resolver> resolver_;
};

TEST_F(ResolverTest, Case1Linear) {
  Use({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}});
  EXPECT_THAT(Get("head"), ElementsAre("c"));
  EXPECT_THAT(Get("heads"), ElementsAre("c"));
  EXPECT_THAT(Get("base"), IsEmpty());
}

TEST_F(ResolverTest, Case2MultipleHeads) {
  Use({{"a", {}}, {"b", {"a"}}, {"c1", {"b"}}, {"c2", {"b"}}});
  EXPECT_EQ(Error("head"), "Multiple heads are present for given argument 'head'; c1, c2");
  EXPECT_THAT(Get("heads"), ElementsAre("c1", "c2"));
  auto status = resolver_->GetRevisions("head").status();
  EXPECT_EQ(CommandErrorMessage(status),
            "Multiple head revisions are present for given argument 'head'; please specify a "
            "specific target revision, '<branchname>@head' to narrow to a specific head, or "
            "'heads' for all heads");
}

TEST_F(ResolverTest, Case3Diamond) {
  Use({{"a", {}}, {"b1", {"a"}}, {"b2", {"a"}}, {"c", {"b1", "b2"}}, {"d", {"c"}}});
  EXPECT_THAT(Walk("d", "a"), ElementsAre("d", "c", "b1", "b2", "a"));
}

TEST_F(ResolverTest, Case4Labels) {
  Use(testing::LabelsCase());
  EXPECT_THAT(Walk("heads", "ebranch@base"), ElementsAre("f", "someothername", "e", "d"));
  EXPECT_THAT(Walk("ebranch@head", "base"), ElementsAre("f", "someothername", "e", "d"));
  EXPECT_THAT(Walk("heads", "ebranch@-2"), ElementsAre("f", "someothername", "e"));
  EXPECT_THAT(Walk("ebranch@+2", "base"), ElementsAre("e", "d"));
  EXPECT_THAT(Get("ebranch@some"), ElementsAre("someothername"));
  EXPECT_THAT(Get("abranch@some"), ElementsAre("somelongername"));
  EXPECT_EQ(Error("ebranch@sos"),
            "No such revision or branch 'sos'; please ensure at least four characters are "
            "present for partial revision identifier matches");
  EXPECT_EQ(Error("ebranch@b"), "Revision b is not a member of branch 'ebranch'");
  EXPECT_THAT(Get("e@d"), ElementsAre("d"));
  EXPECT_EQ(Error("x@d"), "No such branch: 'x'");
  EXPECT_THAT(Get("abranch@heads"), ElementsAre("c"));
  EXPECT_THAT(graph_->Ids(graph_->bases()), ElementsAre("a", "d"));
  // The command layer's wording names the argument.
  EXPECT_EQ(CommandErrorMessage(resolver_->GetRevisions("x@d").status()),
            "Can't locate revision identified by 'x'");
}

TEST_F(ResolverTest, Case5BranchWalk) {
  Use({{"a", {}}, {"b1", {"a"}}, {"b2", {"a"}}, {"c1", {"b1"}}, {"d11", {"c1"}}, {"d12", {"c1"}}});
  EXPECT_THAT(Walk("heads", "base"), ElementsAre("b2", "d11", "d12", "c1", "b1", "a"));
}

TEST_F(ResolverTest, Case6BigBranch) {
  Use({{"a", {}}, {"b1", {"a"}}, {"b2", {"a"}}, {"cb1", {"b1"}}, {"cb2", {"b2"}},
       {"d1cb1", {"cb1"}}, {"d2cb1", {"cb1"}}, {"d1cb2", {"cb2"}}, {"d2cb2", {"cb2"}},
       {"d3cb2", {"cb2"}}, {"d1d2cb2", {"d1cb2", "d2cb2"}}});
  EXPECT_THAT(Walk("d1d2cb2", "a"), ElementsAre("d1d2cb2", "d1cb2", "d2cb2", "cb2", "b2", "a"));
  EXPECT_THAT(Walk("b1", "d1cb1"), ElementsAre("Revision d1cb1 is not an ancestor of revision b1"));
  EXPECT_THAT(Walk("d2cb2", "b1"), ElementsAre("Revision b1 is not an ancestor of revision d2cb2"));
  // walk [d1cb1, d2cb2, d3cb2]..b2: d1cb1 is left out, it does not descend
  // from b2.
  IterateOptions o;
  o.inclusive = true;
  auto revs = IterateRevisions(*resolver_, RevisionSpec::Rows({"d1cb1", "d2cb2", "d3cb2"}),
                               RevisionSpec::Identifier("b2"), o);
  ASSERT_TRUE(revs.ok()) << revs.status();
  EXPECT_THAT(graph_->Ids(*revs), ElementsAre("d2cb2", "d3cb2", "cb2", "b2"));
}

TEST_F(ResolverTest, Case7MergeWalk) {
  Use({{"a1", {}}, {"a2", {"a1"}}, {"a3", {"a2"}}, {"b1", {"a3"}}, {"b2", {"a3"}},
       {"cb1", {"b1"}}, {"cb2", {"b2"}}, {"db1", {"cb1"}}, {"db2", {"cb2"}}, {"e1b1", {"db1"}},
       {"fe1b1", {"e1b1"}}, {"e2b1", {"db1"}}, {"e2b2", {"db2"}}, {"merge", {"e2b1", "e2b2"}}});
  EXPECT_THAT(Walk("merge", "a1"), ElementsAre("merge", "e2b1", "db1", "cb1", "b1", "e2b2", "db2",
                                               "cb2", "b2", "a3", "a2", "a1"));
  EXPECT_THAT(Walk("merge", "b1"), ElementsAre("merge", "e2b1", "db1", "cb1", "b1"));
}

TEST_F(ResolverTest, Case8ThreeRoots) {
  Use({{"base1", {}, {"b_1"}}, {"a1a", {"base1"}}, {"a1b", {"base1"}}, {"b1a", {"a1a"}},
       {"b1b", {"a1b"}, {}, {"a3"}}, {"base2", {}, {"b_2"}}, {"a2", {"base2"}}, {"b2", {"a2"}},
       {"c2", {"b2"}, {}, {"a3"}}, {"d2", {"c2"}}, {"base3", {}, {"b_3"}}, {"a3", {"base3"}},
       {"b3", {"a3"}}});
  EXPECT_THAT(Get("heads"), ElementsAre("b1a", "b1b", "d2", "b3"));
  EXPECT_THAT(Walk("b_2@head", "base"), ElementsAre("d2", "c2", "b2", "a2", "base2", "a3", "base3"));
}

TEST_F(ResolverTest, Case9Relative) {
  Use({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}, {"d", {"c"}}, {"e", {"d"}}});
  auto up = [&](std::vector<std::string> rows, const std::string& target) {
    auto refs = resolver_->ParseUpgradeTarget(rows, target, true);
    if (!refs.ok()) return std::string(refs.status().message());
    return graph_->id((*refs)[0].idx);
  };
  EXPECT_EQ(up({"a"}, "+2"), "c");
  EXPECT_EQ(up({"a"}, "b+2"), "d");
  EXPECT_EQ(up({"a"}, "d-2"), "b");
  EXPECT_EQ(up({"b"}, "-2"), "Relative revision -2 didn't produce 2 migrations");
  EXPECT_EQ(up({"a"}, "+9"), "Relative revision +9 didn't produce 9 migrations");
}

TEST_F(ResolverTest, PrefixesAndAmbiguity) {
  Use({{"abcd1111", {}}, {"abcd2222", {"abcd1111"}}, {"ffff0000", {"abcd2222"}}});
  EXPECT_THAT(Get("ffff"), ElementsAre("ffff0000"));
  EXPECT_EQ(Error("abcd"), "Multiple revisions start with 'abcd': 'abcd1111', 'abcd2222'...");
  EXPECT_THAT(Get("ff"), ElementsAre("ffff0000"));  // keys > 3 chars match short prefixes
  EXPECT_EQ(Error("zz"),
            "No such revision or branch 'zz'; please ensure at least four characters are "
            "present for partial revision identifier matches");
  EXPECT_EQ(Error("zzzzz"), "No such revision or branch 'zzzzz'");
}

TEST(MatchRelativeTest, Forms) {
  auto m = MatchRelative("ebranch@head-2");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(*m->branch, "ebranch");
  EXPECT_EQ(*m->symbol, "head");
  EXPECT_EQ(m->steps, -2);
  m = MatchRelative("+3");
  ASSERT_TRUE(m.has_value());
  EXPECT_FALSE(m->symbol.has_value());
  EXPECT_EQ(m->steps, 3);
  EXPECT_FALSE(MatchRelative("abc").has_value());
  EXPECT_FALSE(MatchRelative("12").has_value());
}

}  // namespace
}  // namespace lockstep::migrations
