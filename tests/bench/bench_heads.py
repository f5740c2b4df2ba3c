#!/usr/bin/python3
"""Benchmark: `lockstep heads` vs `alembic heads` vs `cat` of every revision
file (the floor: reading the bytes), on projects of 1,000 and 10,000
revisions in two shapes, side by side in one run: "linear" (Alembic's file
template, one line with a branch merged back every hundred revisions: most
teams' history) and "branchy" (the conformance generator: many branches,
merges, labels and dependencies).

    /usr/bin/python3 tests/bench/bench_heads.py --lockstep build/client/lockstep

Each command runs after one warm-up (page cache hot); figures are the median
of --runs runs (Alembic: fewer on 10,000 revisions, it takes seconds). Peak
RSS is lockstep's, from wait4().
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conformance"))
import generate_project  # noqa: E402


TEMPLATE = '''"""%(message)s

Revision ID: %(rev)s
Revises: %(down)s
Create Date: 2026-11-01 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = %(rev)r
down_revision: Union[str, None] = %(down_repr)s
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("events", sa.Column("c%(n)d", sa.Integer(), nullable=True))
    op.create_index("ix_events_c%(n)d", "events", ["c%(n)d"])


def downgrade() -> None:
    op.drop_index("ix_events_c%(n)d", table_name="events")
    op.drop_column("events", "c%(n)d")
'''


def linear_project(path, size):
    """A history as most teams have it: Alembic's template, one long line
    with a short-lived branch merged back every hundred revisions."""
    import random
    rng = random.Random(size)
    os.makedirs(os.path.join(path, "versions"))
    with open(os.path.join(path, "alembic.ini"), "w") as f:
        f.write("[alembic]\nscript_location = %(here)s\n")
    prev = None
    for n in range(size):
        rev = "%012x" % rng.getrandbits(48)
        down = prev
        if n % 100 == 99 and n > 2:
            down = (prev, side)  # merge the side branch back
        if n % 100 == 50:
            side = rev
            down = prev_prev
        text = TEMPLATE % {"message": "change %d" % n, "rev": rev, "n": n,
                           "down": ", ".join(down) if isinstance(down, tuple) else (down or ""),
                           "down_repr": repr(down)}
        with open(os.path.join(path, "versions", "%s_change_%d.py" % (rev, n)), "w") as f:
            f.write(text)
        if n % 100 != 50:
            prev_prev, prev = prev, rev


def timed(argv, shell=False):
    start = time.perf_counter()
    p = subprocess.Popen(argv, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (argv, p.stderr.read().decode()))
    return elapsed, usage.ru_maxrss / 1024.0


def measure(argv, runs, shell=False):
    timed(argv, shell)  # warm-up
    results = [timed(argv, shell) for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lockstep", default="build/client/lockstep")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--alembic-runs", type=int, default=3)
    args = ap.parse_args()
    lockstep = os.path.abspath(args.lockstep)
    work = tempfile.mkdtemp(prefix="lockstep-bench-")
    rows = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            for shape in ("linear", "branchy"):
                path = os.path.join(work, "%s%d" % (shape, size))
                if shape == "linear":
                    linear_project(path, size)
                else:
                    generate_project.generate(path, 42, size, quirks=False)
                ini = os.path.join(path, "alembic.ini")
                cat_cmd = "cat %s/versions/*.py > /dev/null" % path
                cat_t, _ = measure(cat_cmd, args.runs, shell=True)
                ls_t, ls_rss = measure([lockstep, "-c", ini, "heads"], args.runs)
                al_t, _ = measure(["/usr/bin/alembic", "-c", ini, "heads"],
                                  args.alembic_runs if size > 2000 else args.runs)
                rows.append((size, shape, ls_t, al_t, cat_t, ls_rss))
                shutil.rmtree(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%-10s %-8s %14s %14s %12s %11s %8s %13s" % (
        "revisions", "shape", "lockstep heads", "alembic heads", "cat files", "vs alembic",
        "vs cat", "lockstep RSS"))
    for size, shape, ls_t, al_t, cat_t, rss in rows:
        print("%-10d %-8s %11.1f ms %11.1f ms %9.1f ms %10.1fx %7.2fx %10.1f MB"
              % (size, shape, ls_t * 1e3, al_t * 1e3, cat_t * 1e3, al_t / ls_t, ls_t / cat_t, rss))


if __name__ == "__main__":
    main()
