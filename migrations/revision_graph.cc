#include "migrations/revision_graph.h"

#include <algorithm>
#include <functional>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "migrations/revision_error.h"

namespace lockstep::migrations {
namespace {

void AppendUnique(RevisionGraph::Edges* v, int x) {
  if (std::find(v->begin(), v->end(), x) == v->end()) v->push_back(x);
}

// Marks every node reachable from `starts` through `edges`.
template <typename Starts, typename EdgesOf>
std::vector<char> Reach(const Starts& starts, const EdgesOf& edges, int n) {
  std::vector<char> seen(n, 0);
  std::vector<int> todo(starts.begin(), starts.end());
  while (!todo.empty()) {
    int r = todo.back();
    todo.pop_back();
    if (seen[r]) continue;
    seen[r] = 1;
    for (int x : edges(r)) {
      if (!seen[x]) todo.push_back(x);
    }
  }
  return seen;
}

}  // namespace

bool RevisionGraph::Node::HasLabel(absl::string_view label) const {
  return std::binary_search(labels.begin(), labels.end(), label);
}

absl::StatusOr<RevisionGraph> RevisionGraph::Build(std::vector<RevisionFile> files,
                                                   std::vector<std::string>* warnings) {
  RevisionGraph g;
  g.files_ = std::move(files);
  g.nodes_.reserve(g.files_.size());
  g.index_.reserve(g.files_.size() * 2);
  for (const RevisionFile& f : g.files_) {
    const std::string& id = f.revision;
    for (const std::string& d : f.down_revisions) {
      if (d == id) {
        return GenericRevisionError(absl::StrCat("Self-loop is detected in revisions (", id, ")"));
      }
    }
    for (const std::string& d : f.depends_on) {
      if (d == id) {
        return GenericRevisionError(
            absl::StrCat("Dependency self-loop is detected in revisions (", id, ")"));
      }
    }
    auto [it, inserted] = g.index_.try_emplace(id, static_cast<int>(g.nodes_.size()));
    if (!inserted) {
      if (warnings) warnings->push_back(absl::StrCat("Revision ", id, " is present more than once"));
      g.nodes_[it->second].file = &f;  // the later file wins, in the earlier place
      continue;
    }
    g.keys_.emplace_back(id, it->second);
    Node node;
    node.file = &f;
    g.nodes_.push_back(std::move(node));
  }
  // Branch labels share the id namespace.
  for (int i = 0; i < g.size(); ++i) {
    for (const std::string& label : g.nodes_[i].file->branch_labels) {
      auto [it, inserted] = g.index_.try_emplace(label, i);
      if (!inserted) {
        return GenericRevisionError(absl::StrCat("Branch name '", label, "' in revision ", g.id(i),
                                                 " already used by revision ",
                                                 g.id(it->second)));
      }
      g.keys_.emplace_back(label, i);
    }
  }
  absl::Status linked = g.Link();
  if (!linked.ok()) return linked;
  absl::Status acyclic = g.DetectCycles();
  if (!acyclic.ok()) return acyclic;
  g.PropagateLabels();
  return g;
}

namespace {

// Alembic's error for a `field` (down_revision, depends_on) of `from` that
// names no revision, located at the file that says it.
absl::Status MissingReference(const char* field, const std::string& missing,
                              const std::string& from, const std::string& path) {
  return WithFileLocation(
      GenericRevisionError(absl::StrCat("Revision ", missing, " referenced from ", from,
                                        " is not present (", field, " in ", path, ")")),
      {path, 0, absl::StrCat(field, " ", missing, " of ", from, " is not a revision of this project")});
}

}  // namespace

absl::Status RevisionGraph::Link() {
  const int n = size();
  for (int i = 0; i < n; ++i) {
    Node& node = nodes_[i];
    // `depends_on = ''` declares no dependency (it only keeps the revision
    // from being a "real" base, as in Alembic).
    const std::vector<std::string> no_deps;
    for (const std::string& dep : node.file->has_dependencies() ? node.file->depends_on : no_deps) {
      auto it = index_.find(dep);
      if (it == index_.end()) {
        return MissingReference("depends_on", dep, id(i), node.file->path);
      }
      AppendUnique(&node.resolved_deps, it->second);
    }
    for (const std::string& d : node.file->down_revisions) {
      auto it = index_.find(d);
      if (it == index_.end()) {
        return MissingReference("down_revision", d, id(i), node.file->path);
      }
      // Alembic looks parents up in a map that includes branch labels.
      AppendUnique(&node.down, it->second);
    }
    node.all_down = node.down;
    for (int d : node.resolved_deps) AppendUnique(&node.all_down, d);
  }
  for (int i = 0; i < n; ++i) {
    for (int d : nodes_[i].all_down) {
      AppendUnique(&nodes_[d].all_next, i);
      if (std::find(nodes_[i].down.begin(), nodes_[i].down.end(), d) != nodes_[i].down.end()) {
        AppendUnique(&nodes_[d].next, i);
      }
    }
  }
  // A dependency already declared by an ancestor (by down_revision) is not a
  // direct edge of its own.
  for (int i = 0; i < n; ++i) {
    Node& node = nodes_[i];
    if (!node.resolved_deps.empty()) {
      std::vector<char> implied(n, 0);
      std::vector<char> anc =
          Reach(node.down, [this](int r) -> const Edges& { return nodes_[r].down; }, n);
      for (int a = 0; a < n; ++a) {
        if (anc[a] && a != i) {
          for (int d : nodes_[a].resolved_deps) implied[d] = 1;
        }
      }
      for (int d : node.resolved_deps) {
        if (!implied[d]) node.normalized_deps.push_back(d);
      }
    }
    node.normalized_down = node.down;
    for (int d : node.normalized_deps) AppendUnique(&node.normalized_down, d);
  }
  for (int i = 0; i < n; ++i) {
    const Node& node = nodes_[i];
    if (node.is_head()) heads_.push_back(i);
    if (node.is_real_head()) real_heads_.push_back(i);
    if (node.is_base()) bases_.push_back(i);
    if (node.is_real_base()) real_bases_.push_back(i);
  }
  return absl::OkStatus();
}

absl::Status RevisionGraph::DetectCycles() const {
  const int n = size();
  if (n == 0) return absl::OkStatus();
  auto all_ids = [&] {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) ids.push_back(id(i));
    return absl::StrJoin(ids, ", ");
  };
  auto check = [&](const std::vector<int>& tops, const std::vector<int>& roots, bool deps,
                   const char* kind) -> absl::Status {
    if (tops.empty() || roots.empty()) {
      return GenericRevisionError(absl::StrCat(kind, " is detected in revisions (", all_ids(), ")"));
    }
    std::vector<char> from_top =
        Reach(tops, [&](int r) -> const Edges& {
          return deps ? nodes_[r].all_down : nodes_[r].down;
        }, n);
    std::vector<char> from_root =
        Reach(roots, [&](int r) -> const Edges& {
          return deps ? nodes_[r].all_next : nodes_[r].next;
        }, n);
    std::vector<std::string> cut;
    for (int i = 0; i < n; ++i) {
      if (!(from_top[i] && from_root[i])) cut.push_back(id(i));
    }
    if (cut.empty()) return absl::OkStatus();
    std::sort(cut.begin(), cut.end());
    return GenericRevisionError(
        absl::StrCat(kind, " is detected in revisions (", absl::StrJoin(cut, ", "), ")"));
  };
  absl::Status s = check(heads_, bases_, false, "Cycle");
  if (!s.ok()) return s;
  return check(real_heads_, real_bases_, true, "Dependency cycle");
}

void RevisionGraph::PropagateLabels() {
  const int n = size();
  // Label names as small ids; each node's set as a sorted vector of ids.
  absl::flat_hash_map<std::string, int> ids;
  std::vector<std::string> names;
  std::vector<std::vector<int>> declared(n);
  for (int i = 0; i < n; ++i) {
    for (const std::string& label : nodes_[i].file->branch_labels) {
      auto [it, inserted] = ids.try_emplace(label, static_cast<int>(names.size()));
      if (inserted) names.push_back(label);
      declared[i].push_back(it->second);
    }
    std::sort(declared[i].begin(), declared[i].end());
  }
  if (names.empty()) return;
  auto merge = [](std::vector<int>* into, const std::vector<int>& from) {
    std::vector<int> out;
    out.reserve(into->size() + from.size());
    std::set_union(into->begin(), into->end(), from.begin(), from.end(), std::back_inserter(out));
    *into = std::move(out);
  };

  // A revision carries the labels of every ancestor by down_revision (each
  // labelled revision labels all its descendants): one pass in topological
  // order, parents first.
  std::vector<std::vector<int>> labels(n);
  std::vector<int> waiting(n);
  std::vector<int> ready;
  for (int i = 0; i < n; ++i) {
    waiting[i] = static_cast<int>(nodes_[i].down.size());
    if (waiting[i] == 0) ready.push_back(i);
  }
  while (!ready.empty()) {
    int i = ready.back();
    ready.pop_back();
    merge(&labels[i], declared[i]);
    for (int child : nodes_[i].next) {
      merge(&labels[child], labels[i]);
      if (--waiting[child] == 0) ready.push_back(child);
    }
  }
  // Linear ancestors take a label too, down to a branch or merge point, but
  // only when the line from its head down to the labelled revision is itself
  // linear: Alembic walks down from the last descendant it visited and stops
  // at the first branch point or merge point.
  for (int i = 0; i < n; ++i) {
    if (declared[i].empty() || nodes_[i].down.empty()) continue;
    bool linear = true;
    for (int cur = i;;) {
      const Node& c = nodes_[cur];
      if (c.is_real_branch_point() || c.is_merge_point()) {
        linear = false;
        break;
      }
      if (c.next.empty()) break;
      cur = c.next[0];
    }
    if (!linear) continue;
    for (int p = nodes_[i].down[0];;) {
      const Node& pn = nodes_[p];
      if (pn.is_real_branch_point() || pn.is_merge_point()) break;
      merge(&labels[p], declared[i]);
      if (pn.down.empty()) break;
      p = pn.down[0];
    }
  }
  for (int i = 0; i < n; ++i) {
    std::vector<std::string>& out = nodes_[i].labels;
    out.reserve(labels[i].size());
    for (int id : labels[i]) out.push_back(names[id]);
    std::sort(out.begin(), out.end());
  }
}

std::optional<int> RevisionGraph::Find(absl::string_view key) const {
  auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> RevisionGraph::Ids(const std::vector<int>& nodes) const {
  std::vector<std::string> out;
  out.reserve(nodes.size());
  for (int i : nodes) out.push_back(id(i));
  return out;
}

std::vector<std::string> RevisionGraph::Ids(const Edges& nodes) const {
  return Ids(std::vector<int>(nodes.begin(), nodes.end()));
}

}  // namespace lockstep::migrations
