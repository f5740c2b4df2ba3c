// The revision graph of one Alembic project: Alembic's RevisionMap, built
// once and then read-only.
//
// Nodes are indexed 0..size()-1 in load order (sorted file names). Identifier
// resolution and traversal live in resolver.h and traversal.h; this class
// holds the structure and the facts Alembic derives at load time: heads and
// "real" heads (which also count depends_on), bases, branch/merge points,
// normalised dependencies and propagated branch labels.
//
// Thread-safe for concurrent reads.
#ifndef LOCKSTEP_MIGRATIONS_REVISION_GRAPH_H_
#define LOCKSTEP_MIGRATIONS_REVISION_GRAPH_H_

#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "migrations/revision_file.h"

namespace lockstep::migrations {

class RevisionGraph {
 public:
  using Edges = absl::InlinedVector<int, 2>;

  struct Node {
    const RevisionFile* file = nullptr;  // owned by the graph
    // Edges, by node index. Inline storage: most revisions have one parent
    // and one child, and a heap block per edge list costs more than the rest
    // of the graph on large projects.
    Edges down;             // parents by down_revision, as written
    Edges resolved_deps;    // depends_on resolved to revisions
    Edges normalized_deps;  // resolved_deps not already implied by an ancestor
    Edges normalized_down;  // down + normalized_deps, de-duplicated
    Edges all_down;         // down + resolved_deps, de-duplicated
    Edges next;             // children by down_revision, load order
    Edges all_next;         // children by down_revision or depends_on
    std::vector<std::string> labels;   // effective branch labels, sorted

    const std::string& id() const { return file->revision; }
    bool is_head() const { return next.empty(); }
    bool is_real_head() const { return all_next.empty(); }
    bool is_base() const { return down.empty(); }
    bool is_real_base() const { return down.empty() && file->depends_on.empty(); }
    bool is_branch_point() const { return next.size() > 1; }
    bool is_real_branch_point() const { return all_next.size() > 1; }
    bool is_merge_point() const { return down.size() > 1; }
    bool HasLabel(absl::string_view label) const;
  };

  // Builds the graph from files in load order. Fails, in Alembic's words,
  // on self-loops, duplicate branch labels, unknown parents or dependencies
  // and cycles. A revision id defined twice is a warning (as in Alembic): the
  // later file wins.
  static absl::StatusOr<RevisionGraph> Build(std::vector<RevisionFile> files,
                                             std::vector<std::string>* warnings = nullptr);

  int size() const { return static_cast<int>(nodes_.size()); }
  const Node& node(int i) const { return nodes_[i]; }
  const std::string& id(int i) const { return nodes_[i].file->revision; }

  // The node a revision id or a declared branch label names, exactly.
  std::optional<int> Find(absl::string_view key) const;
  // Every key (ids in load order, then labels in declaration order) with its
  // node; Alembic matches partial identifiers against this list.
  const std::vector<std::pair<std::string, int>>& keys() const { return keys_; }

  const std::vector<int>& heads() const { return heads_; }            // by down_revision
  const std::vector<int>& real_heads() const { return real_heads_; }  // also by depends_on
  const std::vector<int>& bases() const { return bases_; }
  const std::vector<int>& real_bases() const { return real_bases_; }

  std::vector<std::string> Ids(const std::vector<int>& nodes) const;
  std::vector<std::string> Ids(const Edges& nodes) const;

  // Move-only: nodes point into files_, whose buffer a move keeps.
  RevisionGraph(RevisionGraph&&) = default;
  RevisionGraph& operator=(RevisionGraph&&) = default;
  RevisionGraph(const RevisionGraph&) = delete;
  RevisionGraph& operator=(const RevisionGraph&) = delete;

 private:
  RevisionGraph() = default;

  absl::Status Link();
  absl::Status DetectCycles() const;
  void PropagateLabels();

  std::vector<RevisionFile> files_;  // every file loaded, in load order
  std::vector<Node> nodes_;
  absl::flat_hash_map<std::string, int> index_;  // ids and labels
  std::vector<std::pair<std::string, int>> keys_;
  std::vector<int> heads_, real_heads_, bases_, real_bases_;
};

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_REVISION_GRAPH_H_
