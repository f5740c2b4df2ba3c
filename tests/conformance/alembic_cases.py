"""The graph cases from Alembic's own test suite (tests/test_revision.py and
tests/test_version_traversal.py), as listed in shared/ALEMBIC.md, plus graphs
on which Alembic 1.8.1 itself crashes. Each entry: name -> list of
(id, down_revisions, branch_labels, depends_on), and identifiers to exercise.
"""

CASES = {
    "linear": [("a", [], [], []), ("b", ["a"], [], []), ("c", ["b"], [], [])],
    "two_heads": [("a", [], [], []), ("b", ["a"], [], []), ("c1", ["b"], [], []),
                  ("c2", ["b"], [], [])],
    "diamond": [("a", [], [], []), ("b1", ["a"], [], []), ("b2", ["a"], [], []),
                ("c", ["b1", "b2"], [], []), ("d", ["c"], [], [])],
    "labels": [("a", [], ["abranch"], []), ("b", ["a"], [], []),
               ("somelongername", ["b"], [], []), ("c", ["somelongername"], [], []),
               ("d", [], [], []), ("e", ["d"], ["ebranch"], []),
               ("someothername", ["e"], [], []), ("f", ["someothername"], [], [])],
    "branch_walk": [("a", [], [], []), ("b1", ["a"], [], []), ("b2", ["a"], [], []),
                    ("c1", ["b1"], [], []), ("d11", ["c1"], [], []), ("d12", ["c1"], [], [])],
    "big_branch": [("a", [], [], []), ("b1", ["a"], [], []), ("b2", ["a"], [], []),
                   ("cb1", ["b1"], [], []), ("cb2", ["b2"], [], []),
                   ("d1cb1", ["cb1"], [], []), ("d2cb1", ["cb1"], [], []),
                   ("d1cb2", ["cb2"], [], []), ("d2cb2", ["cb2"], [], []),
                   ("d3cb2", ["cb2"], [], []), ("d1d2cb2", ["d1cb2", "d2cb2"], [], [])],
    "merge_walk": [("a1", [], [], []), ("a2", ["a1"], [], []), ("a3", ["a2"], [], []),
                   ("b1", ["a3"], [], []), ("b2", ["a3"], [], []), ("cb1", ["b1"], [], []),
                   ("cb2", ["b2"], [], []), ("db1", ["cb1"], [], []), ("db2", ["cb2"], [], []),
                   ("e1b1", ["db1"], [], []), ("fe1b1", ["e1b1"], [], []),
                   ("e2b1", ["db1"], [], []), ("e2b2", ["db2"], [], []),
                   ("merge", ["e2b1", "e2b2"], [], [])],
    "three_roots": [("base1", [], ["b_1"], []), ("a1a", ["base1"], [], []),
                    ("a1b", ["base1"], [], []), ("b1a", ["a1a"], [], []),
                    ("b1b", ["a1b"], [], ["a3"]), ("base2", [], ["b_2"], []),
                    ("a2", ["base2"], [], []), ("b2", ["a2"], [], []),
                    ("c2", ["b2"], [], ["a3"]), ("d2", ["c2"], [], []),
                    ("base3", [], ["b_3"], []), ("a3", ["base3"], [], []),
                    ("b3", ["a3"], [], [])],
    "linear5": [("a", [], [], []), ("b", ["a"], [], []), ("c", ["b"], [], []),
                ("d", ["c"], [], []), ("e", ["d"], [], [])],
    "merge_rows": [("a1", [], [], []), ("a2", ["a1"], [], []), ("b1", ["a1"], [], []),
                   ("b2", ["b1"], [], ["a2"]), ("c", ["b2"], [], []), ("d", ["b2"], [], []),
                   ("e", ["c", "d"], [], [])],
    # depends_on across a merge: Alembic 1.8.1 crashes in _delete_version.
    "dep_across_merge": [("a", [], [], []), ("b", ["a"], [], []), ("c", ["a"], [], ["b"]),
                         ("d", ["b", "c"], [], []), ("e", ["d"], [], [])],
    "dep_on_label": [("r1", [], ["core"], []), ("r2", ["r1"], [], []),
                     ("p1", [], ["plugin"], ["core"]), ("p2", ["p1"], [], ["r2"])],
}

# Identifiers tried with `show`, as history bounds and as upgrade targets.
IDENTS = {
    "linear": ["head", "heads", "base", "c", "-1", "-2", "b+1", "c-2", "+1", "zz"],
    "two_heads": ["head", "heads", "c1", "c2", "b", "-1"],
    "diamond": ["c", "b1", "d", "heads", "d-1", "a+1"],
    "labels": ["ebranch@head", "ebranch@base", "ebranch@-2", "ebranch@+2", "ebranch@some",
               "abranch@some", "ebranch@sos", "ebranch@b", "e@d", "x@d", "abranch@heads",
               "ebranch@heads", "abranch", "ebranch", "somelongername", "some", "heads",
               "head", "b_x@head"],
    "branch_walk": ["heads", "b2", "d11", "c1", "b1@head"],
    "big_branch": ["d1d2cb2", "d2cb2", "b1", "d1cb1", "heads", "cb2"],
    "merge_walk": ["merge", "b1", "a1", "heads", "fe1b1", "merge-3"],
    "three_roots": ["heads", "b_2@head", "b_1@heads", "b_3@base", "b_2@+1", "b1b", "c2"],
    "linear5": ["+2", "b+2", "d-2", "-2", "c-2", "e", "base", "a"],
    "merge_rows": ["b2", "e", "heads", "c", "d"],
    "dep_across_merge": ["heads", "d", "c", "b", "e"],
    "dep_on_label": ["heads", "plugin@head", "core@head", "p2", "r2", "core@base"],
}
