#!/usr/bin/python3
"""Benchmark: a rollout of migrations/example to N SQLite tenant databases,
side by side with the shell loop teams run today.

    /usr/bin/python3 tests/bench/bench_rollout.py --build build

lockstepd runs Alembic either as a process per database (alembic_runner:
process, the default) or in warm Python workers that imported Alembic once
(alembic_runner: warm; timed once lockstepd has started them).

Every database starts at 7c4e2d8a9b22 (users + age) and goes to heads (three
revisions: the orders branch, status, the merge). Figures:
  - `for db in ...; do alembic -x url=... upgrade heads; done`: wall time;
  - the same Alembic runs through `xargs -P 1` and `xargs -P 4`: what this
    machine itself gains from four Alembic processes at once, the ceiling
    for lockstep's max_parallel 4 against 1;
  - lockstepd with max_parallel 1, 4 and 8 (batch_size = N, no backups, so
    the same work as the loop): wall time from StartRollout to the end, and
    lockstep's own overhead per step = step time (lock, read, Alembic,
    verify, state writes) minus the Alembic process's own wall time and
    minus the time it queued for a start-up slot (shown beside it:
    server.alembic_startup_slots, one per CPU by default).
The databases are copies of one made by real Alembic, reset before each run.
"""
import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
from lockstepd import Lockstepd  # noqa: E402
from pgserver import free_port  # noqa: E402

INI = os.path.join(ROOT, "migrations", "example", "alembic.ini")
START = "7c4e2d8a9b22"



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--databases", type=int, default=100)
    ap.add_argument("--parallel", default="1,4,8")
    ap.add_argument("--runners", default="process,warm")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    work = tempfile.mkdtemp(prefix="lockstep-rollout-bench-")
    try:
        template = os.path.join(work, "template.db")
        subprocess.run(["/usr/bin/alembic", "-c", INI, "-x", "url=sqlite:///" + template,
                        "upgrade", START], check=True, capture_output=True)
        names = ["tenant-%03d" % i for i in range(args.databases)]
        paths = [os.path.join(work, n + ".db") for n in names]

        def reset():
            for p in paths:
                shutil.copy(template, p)

        print("rollout of migrations/example (%s -> heads, 3 revisions) to %d SQLite databases"
              % (START, len(paths)))
        reset()
        loop = "for db in %s; do /usr/bin/alembic -c %s -x url=sqlite:///$db upgrade heads " \
               "> /dev/null 2>&1 || exit 1; done" % (" ".join(paths), INI)
        t0 = time.time()
        subprocess.run(["bash", "-c", loop], check=True)
        shell = time.time() - t0
        print("  %-34s %8.1f s   (%.0f ms per database)" % ("shell loop of alembic upgrade heads",
                                                             shell, shell * 1000 / len(paths)))
        # The same Alembic runs without lockstep, one at a time and four at
        # once: what this machine itself gains from running four at once.
        def xargs(parallel):
            reset()
            t0 = time.time()
            subprocess.run("printf '%%s\\n' %s | xargs -P %d -I{} /usr/bin/alembic -c %s "
                           "-x url=sqlite:///{} upgrade heads > /dev/null 2>&1"
                           % (" ".join(paths), parallel, INI), shell=True, check=True)
            return time.time() - t0
        xargs1, xargs4 = xargs(1), xargs(4)
        machine = xargs1 / xargs4
        print("  %-34s %8.1f s   (%.2fx the loop)" % ("xargs -P 1 alembic upgrade heads", xargs1,
                                                     shell / xargs1))
        print("  %-34s %8.1f s   (%.2fx the loop; %.2fx xargs -P 1: this machine's own gain"
              " from 4 at once)" % ("xargs -P 4 alembic upgrade heads", xargs4, shell / xargs4,
                                    machine))

        for runner in args.runners.split(","):
            run_lockstep(build, work, names, paths, reset, shell, machine, runner,
                         [int(p) for p in args.parallel.split(",")])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_lockstep(build, work, names, paths, reset, shell, machine, runner, parallels):
    """lockstepd with the given Alembic runner at each max_parallel."""
    results = {}
    for parallel in parallels:
        reset()
        grpc_port, metrics_port = free_port(), free_port()
        config = os.path.join(work, "fleet-%d-%s.yaml" % (parallel, runner))
        with open(config, "w") as f:
            f.write("""
server: {listen: "127.0.0.1:%d", metrics_listen: "127.0.0.1:%d", state: state-%d-%s.db,
     poll_interval: 1h}
project: {alembic_ini: %s, alembic_command: [/usr/bin/alembic], alembic_runner: %s,
      python: /usr/bin/python3}
environments:
  - name: tenants
    batch_size: %d
    max_parallel: %d
    on_failure: leave
    databases:
%s""" % (grpc_port, metrics_port, parallel, runner, INI, runner, len(paths), parallel,
                "".join('      - {name: %s, url: "sqlite:///%s"}\n' % (n, p)
                        for n, p in zip(names, paths))))
        # A fresh state store and log each run (a rerun must not find the
        # previous run's "ready" line).
        for stale in glob.glob(os.path.join(work, "state-%d-%s.db*" % (parallel, runner))) + \
                glob.glob(config + ".log"):
            os.remove(stale)
        d = Lockstepd(build, config, "127.0.0.1:%d" % grpc_port).start()
        try:
            # lockstepd is long-running: the warm runner starts its workers
            # once, at start; a rollout then finds them ready.
            deadline = time.time() + 60
            while runner == "warm" and "warm Alembic runner ready" not in d.log():
                assert time.time() < deadline, d.log()
                time.sleep(0.1)
            t0 = time.time()
            p = d.cli("rollout", "--to", "heads", "--watch", "-o", "json", timeout=3600)
            wall = time.time() - t0
            r = json.loads(p.stdout)
            assert r["state"] == "succeeded", r["reason"]
            # Step time from the daemon's own clock: started -> finished is
            # second-resolution in the API, so use the event log instead.
            overhead = []
            for s in r["steps"]:
                assert s["state"] == "succeeded", s
            step_ms, waited_ms = step_durations(d, r["id"])
            for s in r["steps"]:
                db = s["database"]
                overhead.append(step_ms[db] - s["alembic_ms"] - waited_ms.get(db, 0))
            results[parallel] = (wall, statistics.median(overhead), max(overhead))
            print("  %-34s %8.1f s   (%.2fx the loop)   overhead per step: median %.0f ms, max %.0f ms;"
                  " start-up slot wait: mean %.0f ms"
                  % ("lockstep %s, max_parallel %d" % (runner, parallel), wall, shell / wall,
                     statistics.median(overhead), max(overhead),
                     sum(waited_ms.values()) / len(r["steps"])))
        finally:
            d.stop()
    if 1 in results and 4 in results:
        print("  %s: max_parallel 4 vs 1: %.2fx faster (the same runs under xargs: %.2fx)"
              % (runner, results[1][0] / results[4][0], machine))


def step_durations(d, rollout_id):
    """Milliseconds from step_started to verified, per database, from the
    event stream (millisecond timestamps, via the gRPC API); and the time
    each step queued for an Alembic start-up slot (startup_slot events; not
    lockstep's own work but the host's CPUs being shared out)."""
    from lockstepd import grpc_stubs, wire_name
    import grpc
    pb2, pb2_grpc = grpc_stubs(os.path.join(os.path.dirname(d.config), "stubs"))
    stub = pb2_grpc.LockstepStub(grpc.insecure_channel(d.server))
    started, out, waited = {}, {}, {}
    for e in stub.WatchRollout(pb2.WatchRolloutRequest(id=rollout_id), timeout=60):
        t = e.at.seconds * 1000 + e.at.nanos / 1e6
        kind = wire_name(pb2.EventKind, e.kind)
        if kind == "step_started":
            started[e.database] = t
        elif kind == "verified":
            out[e.database] = t - started[e.database]
        elif kind == "startup_slot":
            waited[e.database] = int(re.match(r"waited (\d+) ms", e.message).group(1))
    return out, waited


if __name__ == "__main__":
    main()
