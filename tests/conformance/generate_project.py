"""Generates random Alembic projects for conformance tests.

Each project is a real Alembic script directory (alembic.ini, env.py,
versions/) whose revision files use the literal forms seen in practice:
plain, u'' and double-quoted strings, annotations (`str`, `Union[...]`,
`str | None`), tuples and lists over several lines with comments and trailing
commas, parenthesised strings, empty tuples, and legacy hex file names without
a `revision` variable. The graph has linear runs, branch points, merges,
several roots, branch labels and depends_on (on ids and on labels).

The generated env.py records every step Alembic runs (through
on_version_apply) into config.attributes["steps"], so a test can compare the
exact path and the version rows after each step.
"""
import os
import random
import textwrap

ENV_PY = '''\
from alembic import context
from sqlalchemy import create_engine

config = context.config


def on_apply(ctx, step, heads, run_args):
    config.attributes.setdefault("steps", []).append(
        (step.up_revision_id, "upgrade" if step.is_upgrade else "downgrade", sorted(heads)))


if context.is_offline_mode():
    context.configure(url=config.attributes["url"], literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(config.attributes["url"])
    with engine.connect() as connection:
        context.configure(connection=connection, on_version_apply=on_apply,
                          transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
'''

INI = '''\
[alembic]
script_location = %(here)s
'''


def _quote(rng, s):
    return rng.choice(["'%s'", '"%s"', "u'%s'", 'u"%s"']) % s


def _render_value(rng, name, values, scalar_ok=True, quirks=True):
    """Renders `name = value` for a list of strings in a random literal form."""
    annotation = rng.choice([
        "", "", "", ": str", ": Union[str, None]", ": Union[str, Sequence[str], None]",
        ": str | None", ": Optional[Union[str, Tuple[str, ...]]]",
    ])
    if name == "revision":
        return "revision%s = %s" % (rng.choice(["", "", ": str"]), _quote(rng, values[0]))
    if not values:
        empties = ["None", "None", "None", "()", "[]"]
        # To Alembic '' is None only for down_revision. As a label it is a real
        # (duplicate-prone) label, and `depends_on = ''` stops a root from being
        # a "real" base, which can make Alembic report a dependency cycle.
        if name == "down_revision" or (quirks and name == "depends_on") or (
                quirks and rng.random() < 0.02):
            empties.append("''")
        literal = rng.choice(empties)
    elif len(values) == 1 and scalar_ok and rng.random() < 0.7:
        literal = rng.choice(["%s", "(%s)", "%s  # the parent"]) % _quote(rng, values[0])
    else:
        items = [_quote(rng, v) for v in values]
        open_, close = rng.choice([("(", ")"), ("[", "]")])
        style = rng.randrange(3)
        if style == 0:
            literal = open_ + ", ".join(items) + ("," if len(items) == 1 and open_ == "(" else "") + close
        elif style == 1:
            body = "".join("    %s,  # item %d\n" % (it, n) for n, it in enumerate(items))
            literal = open_ + "\n" + body + close
        else:
            literal = open_ + "\n    # merged revisions\n    " + ",\n    ".join(items) + \
                ("," if len(items) == 1 and open_ == "(" else "") + "\n" + close
    return "%s%s = %s" % (name, annotation, literal)


def _docstring(rng, message, rev, down):
    revises = ", ".join(down)
    kind = rng.randrange(6)
    if kind == 0:
        return ""
    if kind == 1:
        return '"""%s"""\n' % message
    if kind == 2:
        return "'''%s\n\nLonger description of %s.\nSecond line.\n'''\n" % (message, rev)
    if kind == 3:
        return 'r"""  %s  \n\n  Indented body \\d (raw)\n"""\n' % message
    return ('"""%s\n\nRevision ID: %s\nRevises: %s\nCreate Date: 2026-11-01 10:00:00\n\n"""\n'
            % (message, rev, revises))


def _revision_file(rng, rev, down, labels, deps, message, legacy, quirks=True):
    lines = ["# -*- coding: utf-8 -*-"] if rng.random() < 0.1 else []
    doc = _docstring(rng, message, rev, down)
    out = "\n".join(lines) + ("\n" if lines else "") + doc
    out += "from typing import Optional, Sequence, Tuple, Union\n\nfrom alembic import op\nimport sqlalchemy as sa\n\n"
    if rng.random() < 0.2:
        out += "# down_revision = 'not_this_one'\n"
    out += "# revision identifiers, used by Alembic.\n"
    parts = []
    if not legacy:
        parts.append(_render_value(rng, "revision", [rev]))
    parts.append(_render_value(rng, "down_revision", down))
    if labels or rng.random() < 0.6:
        parts.append(_render_value(rng, "branch_labels", labels, quirks=quirks))
    if deps or rng.random() < 0.6:
        parts.append(_render_value(rng, "depends_on", deps, quirks=quirks))
    if rng.random() < 0.3:
        rng.shuffle(parts)
    out += "\n".join(parts) + "\n\n\n"
    body = rng.choice(["pass", "pass", 'op.execute("SELECT \'revision = x\'")',
                       "# nothing to do\n    pass"])
    out += "def upgrade() -> None:\n    %s\n\n\ndef downgrade() -> None:\n    pass\n" % body
    return out


def generate(path, seed, size, quirks=True):
    """Writes a project with `size` revisions under `path`; returns metadata.

    With quirks, a few files use forms that make Alembic refuse the project
    (e.g. `branch_labels = ''` twice); benchmarks turn them off."""
    rng = random.Random(seed)
    os.makedirs(os.path.join(path, "versions"), exist_ok=True)
    with open(os.path.join(path, "alembic.ini"), "w") as f:
        f.write(INI)
    with open(os.path.join(path, "env.py"), "w") as f:
        f.write(ENV_PY)
    revs = []      # ids in creation order
    parents = {}   # id -> list
    labels = {}    # label -> id
    deps_of = {}
    tips = []
    used = set()
    label_count = 0
    p_branch = rng.choice([0.02, 0.08, 0.2])
    p_merge = rng.choice([0.05, 0.2, 0.4])
    p_dep = rng.choice([0.0, 0.03, 0.1])
    p_root = rng.choice([0.0, 0.01, 0.03])
    for n in range(size):
        rev = "%012x" % rng.getrandbits(48)
        while rev in used or any(rev.startswith(l) for l in labels):
            rev = "%012x" % rng.getrandbits(48)
        used.add(rev)
        if not revs or rng.random() < p_root:
            down = []
        elif len(tips) > 1 and rng.random() < p_merge:
            k = 2 if rng.random() < 0.85 or len(tips) < 3 else 3
            down = rng.sample(tips, k)
        elif rng.random() < p_branch:
            down = [rng.choice(revs)]
        else:
            down = [tips[-1] if rng.random() < 0.7 else rng.choice(tips)]
        my_labels = []
        if (not down or (down and rng.random() < 0.15)) and rng.random() < 0.5:
            label_count += 1
            label = rng.choice(["feature", "tenant", "billing", "audit", "lbl"]) + "_%d" % label_count
            my_labels = [label]
            labels[label] = rev
        deps = []
        if revs and rng.random() < p_dep:
            ancestors = set()
            todo = list(down)
            while todo:
                r = todo.pop()
                if r in ancestors:
                    continue
                ancestors.add(r)
                todo.extend(parents[r])
            candidates = [r for r in revs if r not in ancestors]
            if candidates:
                target = rng.choice(candidates)
                by_label = [l for l, r in labels.items() if r == target]
                deps = [by_label[0] if by_label and rng.random() < 0.5 else target]
        revs.append(rev)
        parents[rev] = down
        deps_of[rev] = deps
        for d in down:
            if d in tips:
                tips.remove(d)
        tips.append(rev)
        legacy = rng.random() < 0.02
        message = rng.choice(["add table", "alter column", "merge heads", "create index",
                              "backfill data", "empty message"]) + " %d" % n
        name = ("%s.py" % rev) if legacy else ("%s_%s.py" % (rev, message.replace(" ", "_")))
        with open(os.path.join(path, "versions", name), "w") as f:
            f.write(_revision_file(rng, rev, down, my_labels, deps, message, legacy, quirks))
    # Files Alembic ignores.
    open(os.path.join(path, "versions", "__init__.py"), "w").close()
    with open(os.path.join(path, "versions", "README"), "w") as f:
        f.write("not a revision\n")
    return {"revisions": revs, "parents": parents, "labels": labels, "deps": deps_of}


def write_cases(path, cases):
    """Writes a hand-made project: cases is a list of (id, down, labels, deps)."""
    os.makedirs(os.path.join(path, "versions"), exist_ok=True)
    with open(os.path.join(path, "alembic.ini"), "w") as f:
        f.write(INI)
    with open(os.path.join(path, "env.py"), "w") as f:
        f.write(ENV_PY)
    for rev, down, labels, deps in cases:
        body = textwrap.dedent('''\
            """%s"""
            revision = %r
            down_revision = %r
            branch_labels = %r
            depends_on = %r


            def upgrade():
                pass


            def downgrade():
                pass
            ''') % ("rev " + rev, rev, tuple(down) if len(down) > 1 else (down[0] if down else None),
                    tuple(labels) if labels else None,
                    tuple(deps) if len(deps) > 1 else (deps[0] if deps else None))
        with open(os.path.join(path, "versions", "%s_.py" % rev), "w") as f:
            f.write(body)
    revs = [c[0] for c in cases]
    return {"revisions": revs, "parents": {c[0]: list(c[1]) for c in cases},
            "labels": {l: c[0] for c in cases for l in c[2]},
            "deps": {c[0]: list(c[3]) for c in cases}}
