#!/usr/bin/python3
"""Benchmark: `watch` streams attached while a step prints a lot.

    /usr/bin/python3 tests/bench/bench_watchers.py --build build

One SQLite database, one migration that prints --lines lines (default
20,000) to stdout. Figures, side by side:
  - `alembic upgrade` by hand: its wall time (what the migration costs);
  - lockstepd running that step with no watcher, with --watchers streams
    (default 150, each its own connection, as `lockstep watch` clients are)
    that never read, and with as many that read everything: the step's
    Alembic time (alembic_ms: how long Alembic, and the database locks it
    holds, lived) and the whole step (step_started -> verified). (The
    readers are threads of this one Python process: how fast they receive
    is bound by its interpreter lock, not by lockstepd, so it is not shown.)
A watcher must never make Alembic itself slower: it holds the database's
locks while it runs.
Then what --idle streams (default 1,000) that wait on a rollout
(awaiting approval) cost lockstepd: threads and resident memory added (issue 12's target:
<= 20 threads and <= 50 MB for 1,000).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
from lockstepd import Lockstepd, grpc_stubs, wire_name  # noqa: E402
from pgserver import free_port  # noqa: E402

HEAD = "e9a8c6b4d244"
LOUD = '''"""prints a lot

Revision ID: 10ad10ad10ad
Revises: e9a8c6b4d244
"""
import sys

from alembic import op

revision = "10ad10ad10ad"
down_revision = "e9a8c6b4d244"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("CREATE TABLE loud (n INTEGER)")
    for i in range(%d):
        print("row %%d of the backfill: id=%%d status=ok" %% (i, i * 7))
    sys.stdout.flush()


def downgrade():
    op.execute("DROP TABLE loud")
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--watchers", type=int, default=150)
    ap.add_argument("--idle", type=int, default=1000)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    work = tempfile.mkdtemp(prefix="lockstep-watch-bench-")
    try:
        project = os.path.join(work, "project")
        shutil.copytree(os.path.join(ROOT, "migrations", "example"), project)
        with open(os.path.join(project, "versions", "10ad10ad10ad_loud.py"), "w") as f:
            f.write(LOUD % args.lines)
        ini = os.path.join(project, "alembic.ini")
        template = os.path.join(work, "template.db")
        subprocess.run(["/usr/bin/alembic", "-c", ini, "-x", "url=sqlite:///" + template,
                        "upgrade", HEAD], check=True, capture_output=True)
        db = os.path.join(work, "t1.db")
        print("one step printing %d lines (%s -> 10ad10ad10ad), SQLite" % (args.lines, HEAD))
        shutil.copy(template, db)
        t0 = time.time()
        subprocess.run(["/usr/bin/alembic", "-c", ini, "-x", "url=sqlite:///" + db, "upgrade",
                        "heads"], check=True, capture_output=True)
        print("  %-40s %7.0f ms" % ("alembic upgrade by hand", (time.time() - t0) * 1000))
        pb2, pb2_grpc = grpc_stubs(os.path.join(work, "stubs"))
        for watchers, reading in ((0, False), (args.watchers, False), (args.watchers, True)):
            shutil.copy(template, db)
            alembic_ms, step_ms = run(build, work, ini, db, watchers, reading, pb2, pb2_grpc)
            label = "lockstepd, no watcher" if watchers == 0 else \
                "lockstepd, %d watchers %s" % (watchers, "reading" if reading else "not reading")
            print("  %-40s %7.0f ms Alembic   %7.0f ms whole step" % (label, alembic_ms, step_ms))
            sys.stdout.flush()
        shutil.copy(template, db)
        threads, rss_mb = idle_cost(build, work, ini, db, args.idle, pb2, pb2_grpc)
        print("%d idle WatchRollout streams: lockstepd +%d threads, +%.1f MB resident"
              % (args.idle, threads, rss_mb))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def drain(call):
    """Reads a watch stream to its end (or until it is cancelled)."""
    import grpc
    try:
        for _ in call:
            pass
    except grpc.RpcError:
        pass


def start(build, work, ini, db, tag, caps="", approval="none"):
    grpc_port, metrics_port = free_port(), free_port()
    config = os.path.join(work, "fleet-%s.yaml" % tag)
    with open(config, "w") as f:
        f.write("""
server: {listen: "127.0.0.1:%d", metrics_listen: "127.0.0.1:%d", state: state-%s.db,
     poll_interval: 1h %s}
project: {alembic_ini: %s, alembic_command: [/usr/bin/alembic]}
environments:
  - name: dev
    on_failure: leave
    approval: %s
    databases: [{name: t1, url: "sqlite:///%s"}]
""" % (grpc_port, metrics_port, tag, caps, ini, approval, db))
    return Lockstepd(build, config, "127.0.0.1:%d" % grpc_port).start()


def footprint(pid):
    """(threads, resident MB) of a process."""
    with open("/proc/%d/status" % pid) as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024.0


def idle_cost(build, work, ini, db, n, pb2, pb2_grpc):
    """Threads and memory that n streams waiting on a rollout add (it waits
    for an approval, so nothing is emitted while they are counted)."""
    import grpc
    d = start(build, work, ini, db, "idle",
              ", max_watch_streams: %d, max_watch_streams_per_client: %d" % (n, n), "required")
    channels = [grpc.insecure_channel(d.server) for _ in range(10)]
    try:
        r = json.loads(d.cli("rollout", "--to", "heads", "-o", "json").stdout)
        time.sleep(1)
        threads0, rss0 = footprint(d.proc.pid)
        calls = [pb2_grpc.LockstepStub(channels[i % 10]).WatchRollout(
            pb2.WatchRolloutRequest(id=r["id"]), timeout=600) for i in range(n)]
        for call in calls:
            next(call)  # open, and served its first event
        time.sleep(1)
        threads1, rss1 = footprint(d.proc.pid)
        for call in calls:
            call.cancel()
        return threads1 - threads0, rss1 - rss0
    finally:
        for ch in channels:
            ch.close()
        d.stop()


def run(build, work, ini, db, watchers, reading, pb2, pb2_grpc):
    import grpc
    d = start(build, work, ini, db, "%d-%s" % (watchers, reading),
              ", max_watch_streams: %d, max_watch_streams_per_client: %d"
              % (watchers + 1, watchers + 1))
    channels, threads = [], []
    try:
        # Paused first, so that every watcher is attached before Alembic runs.
        r = json.loads(d.cli("rollout", "--to", "heads", "-o", "json").stdout)
        d.cli("pause", r["id"])
        calls = []
        for _ in range(watchers):
            ch = grpc.insecure_channel(d.server)
            channels.append(ch)
            call = pb2_grpc.LockstepStub(ch).WatchRollout(pb2.WatchRolloutRequest(id=r["id"]),
                                                          timeout=600)
            calls.append(call)
            if reading:
                t = threading.Thread(target=drain, args=(call,), daemon=True)
                t.start()
                threads.append(t)
        time.sleep(1)
        d.cli("resume", r["id"])
        done = json.loads(d.cli("watch", r["id"], "-o", "json", timeout=600).stdout)
        assert done["state"] == "succeeded", done

        step = done["steps"][0]
        for call in calls:  # the readers' catching up is this Python's, not lockstepd's
            call.cancel()
        for t in threads:
            t.join(timeout=60)
        started = verified = None
        stub = pb2_grpc.LockstepStub(grpc.insecure_channel(d.server))
        for e in stub.WatchRollout(pb2.WatchRolloutRequest(id=r["id"]), timeout=120):
            t = e.at.seconds * 1000 + e.at.nanos / 1e6
            kind = wire_name(pb2.EventKind, e.kind)
            if kind == "step_started":
                started = t
            elif kind == "verified":
                verified = t
        return step["alembic_ms"], verified - started
    finally:
        for ch in channels:
            ch.close()
        d.stop()


if __name__ == "__main__":
    main()
