#include "migrations/format.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lockstep::migrations {
namespace {

std::string DownRevisions(const RevisionFile& f) {
  return f.down_revisions.empty() ? "<base>" : absl::StrJoin(f.down_revisions, ", ");
}

std::string HeadIndicators(const RevisionGraph::Node& n) {
  std::string out;
  if (n.is_real_head()) out += " (head)";
  if (n.is_head() && !n.is_real_head()) out += " (effective head)";
  return out;
}

// `_head_only` with include_branches=True.
std::string HeadOnly(const RevisionGraph& g, int i, bool include_doc, bool include_parents,
                     bool tree_indicators) {
  const RevisionGraph::Node& n = g.node(i);
  std::string text = n.id();
  if (include_parents) {
    if (n.file->has_dependencies()) {
      text = absl::StrCat(DownRevisions(*n.file), " (", absl::StrJoin(n.file->depends_on, ", "),
                          ") -> ", text);
    } else {
      text = absl::StrCat(DownRevisions(*n.file), " -> ", text);
    }
  }
  if (!n.labels.empty()) absl::StrAppend(&text, " (", absl::StrJoin(n.labels, ", "), ")");
  text += HeadIndicators(n);
  if (tree_indicators) {
    if (n.is_branch_point()) text += " (branchpoint)";
    if (n.is_merge_point()) text += " (mergepoint)";
  }
  if (include_doc) absl::StrAppend(&text, ", ", n.file->doc);
  return text;
}

// Python's str.splitlines() for the line breaks found in docstrings.
std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\r' || c == '\n' || c == '\v' || c == '\f' || (c >= '\x1c' && c <= '\x1e')) {
      if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      out.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    cur.push_back(c);
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

}  // namespace

std::string FormatHeadLine(const RevisionGraph& g, int i) {
  return HeadOnly(g, i, /*include_doc=*/false, /*include_parents=*/false,
                  /*tree_indicators=*/false);
}

std::string FormatHistoryLine(const RevisionGraph& g, int i) {
  return HeadOnly(g, i, /*include_doc=*/true, /*include_parents=*/true, /*tree_indicators=*/true);
}

std::string FormatLogEntry(const RevisionGraph& g, int i) {
  const RevisionGraph::Node& n = g.node(i);
  std::string entry = absl::StrCat("Rev: ", n.id(), n.is_head() ? " (head)" : "",
                                   n.is_branch_point() ? " (branchpoint)" : "",
                                   n.is_merge_point() ? " (mergepoint)" : "", "\n");
  absl::StrAppend(&entry, n.is_merge_point() ? "Merges: " : "Parent: ", DownRevisions(*n.file),
                  "\n");
  if (n.file->has_dependencies()) {
    absl::StrAppend(&entry, "Also depends on: ", absl::StrJoin(n.file->depends_on, ", "), "\n");
  }
  if (n.is_branch_point()) {
    absl::StrAppend(&entry, "Branches into: ", absl::StrJoin(g.Ids(n.next), ", "), "\n");
  }
  if (!n.labels.empty()) {
    absl::StrAppend(&entry, "Branch names: ", absl::StrJoin(n.labels, ", "), "\n");
  }
  absl::StrAppend(&entry, "Path: ", n.file->path, "\n");
  std::vector<std::string> lines;
  for (const std::string& line : SplitLines(n.file->long_doc)) lines.push_back("    " + line);
  absl::StrAppend(&entry, "\n", absl::StrJoin(lines, "\n"), "\n");
  return entry;
}

std::string FormatBranchBlock(const RevisionGraph& g, int i, bool verbose) {
  const RevisionGraph::Node& n = g.node(i);
  std::string head = verbose ? FormatLogEntry(g, i) : HeadOnly(g, i, false, false, true);
  std::vector<std::string> children;
  std::string pad(n.id().size(), ' ');
  for (int c : n.next) {
    children.push_back(absl::StrCat(pad, " -> ", HeadOnly(g, c, verbose, false, true)));
  }
  return absl::StrCat(head, "\n", absl::StrJoin(children, "\n"), "\n");
}

}  // namespace lockstep::migrations
