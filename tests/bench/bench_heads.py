#!/usr/bin/python3
"""Benchmark: `lockstep heads` vs `alembic heads` vs `cat` of every revision
file (the floor: reading the bytes), on generated projects of 1,000 and
10,000 revisions, side by side in one run.

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
            path = os.path.join(work, "p%d" % size)
            generate_project.generate(path, 42, size, quirks=False)
            ini = os.path.join(path, "alembic.ini")
            cat_cmd = "cat %s/versions/*.py > /dev/null" % path
            cat_t, _ = measure(cat_cmd, args.runs, shell=True)
            ls_t, ls_rss = measure([lockstep, "-c", ini, "heads"], args.runs)
            al_t, _ = measure(["/usr/bin/alembic", "-c", ini, "heads"],
                              args.alembic_runs if size > 2000 else args.runs)
            rows.append((size, ls_t, al_t, cat_t, ls_rss))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%-10s %14s %14s %12s %12s %12s %16s" % ("revisions", "lockstep heads", "alembic heads",
                                                  "cat files", "vs alembic", "vs cat",
                                                  "lockstep RSS"))
    for size, ls_t, al_t, cat_t, rss in rows:
        print("%-10d %12.1f ms %12.1f ms %9.1f ms %11.1fx %11.2fx %13.1f MB"
              % (size, ls_t * 1e3, al_t * 1e3, cat_t * 1e3, al_t / ls_t, ls_t / cat_t, rss))


if __name__ == "__main__":
    main()
