// libFuzzer target: graphs and identifiers. The input describes a small
// graph (each revision picks parents, labels and dependencies among earlier
// or later ones, so cycles and missing parents occur) followed by
// identifiers; building, resolving, walking and planning must never crash.
#include <cstdint>
#include <string>
#include <vector>

#include "migrations/classify.h"
#include "migrations/format.h"
#include "migrations/migration_plan.h"
#include "migrations/resolver.h"
#include "migrations/revision_graph.h"
#include "migrations/traversal.h"

namespace {

class Bytes {
 public:
  Bytes(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool empty() const { return i_ >= n_; }
  uint8_t Next() { return i_ < n_ ? d_[i_++] : 0; }
  std::string Rest() {
    std::string s(reinterpret_cast<const char*>(d_ + i_), n_ - i_);
    i_ = n_;
    return s;
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t i_ = 0;
};

std::string Id(int i) { return "r" + std::to_string(i) + "abcd"; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep::migrations;
  Bytes in(data, size);
  int n = 1 + in.Next() % 24;
  std::vector<RevisionFile> files(n);
  for (int i = 0; i < n; ++i) {
    RevisionFile& f = files[i];
    f.revision = Id(i);
    f.path = "/fuzz/" + f.revision + ".py";
    uint8_t shape = in.Next();
    int parents = shape % 4 == 3 ? 2 : (i == 0 || shape % 7 == 0 ? 0 : 1);
    for (int p = 0; p < parents; ++p) {
      int target = in.Next() % (shape & 0x80 ? n + 1 : std::max(i, 1));
      f.down_revisions.push_back(target == n ? "missing" : Id(target));
    }
    if (shape & 0x10) f.branch_labels.push_back("L" + std::to_string(in.Next() % 6));
    if (shape & 0x20) f.depends_on.push_back(Id(in.Next() % n));
  }
  auto graph = RevisionGraph::Build(files);
  if (!graph.ok()) return 0;
  Resolver resolver(&*graph);
  std::string idents = in.Rest();
  std::vector<std::string> words = {"heads", "head", "base", "-1", "+2", "L1@head", "L2@-1",
                                    Id(0), Id(n - 1) + "-1", "r1ab", "L0@" + Id(1)};
  size_t start = 0;
  for (size_t k = 0; k <= idents.size(); ++k) {
    if (k == idents.size() || idents[k] == ' ') {
      if (k > start) words.push_back(idents.substr(start, k - start));
      start = k + 1;
    }
  }
  for (int i = 0; i < graph->size(); ++i) {
    (void)FormatHistoryLine(*graph, i);
    (void)FormatLogEntry(*graph, i);
  }
  for (size_t a = 0; a < words.size() && a < 16; ++a) {
    (void)resolver.GetRevisions(words[a]);
    (void)PlanUpgrade(resolver, {}, words[a]);
    std::vector<std::string> rows = {Id(static_cast<int>(a) % n)};
    (void)PlanUpgrade(resolver, rows, words[a]);
    (void)PlanDowngrade(resolver, rows, words[a]);
    (void)ClassifyRows(resolver, rows);
    IterateOptions o;
    o.inclusive = true;
    o.assert_relative_length = false;
    (void)IterateRevisions(resolver, RevisionSpec::Identifier(words[a]),
                           RevisionSpec::Identifier(words[(a + 1) % words.size()]), o);
  }
  return 0;
}
