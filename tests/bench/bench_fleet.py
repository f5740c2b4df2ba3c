#!/usr/bin/python3
"""Benchmark: one full refresh of a fleet by lockstepd, side by side with how
teams script it today.

    /usr/bin/python3 tests/bench/bench_fleet.py --build build

The fleet: --sqlite SQLite files, --postgres PostgreSQL databases in one
local cluster and --mysql MariaDB databases on one server (both started
here), at mixed revisions of migrations/example. A few databases per
revision are made with real Alembic; the rest are copies (SQLite, MariaDB:
its dump replayed) or clones (CREATE DATABASE ... TEMPLATE). Figures:
  - lockstepd: a full refresh (Refresh RPC, median of 5), GetFleet latency
    (median of 50), lockstepd peak RSS;
  - a Python loop reading alembic_version with SQLAlchemy (psycopg2,
    PyMySQL), one engine per URL, in all and per dialect;
  - `alembic current` on a sample, extrapolated to the fleet.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_support import INI, ROOT, alembic, build_fleet, build_mysql_fleet, sqlalchemy_loop  # noqa: E402,E501
from mariadbserver import MariadbServer  # noqa: E402
from pgserver import PgServer, free_port  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--sqlite", type=int, default=1000)
    ap.add_argument("--postgres", type=int, default=200)
    ap.add_argument("--mysql", type=int, default=200)
    ap.add_argument("--sample", type=int, default=20)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    work = tempfile.mkdtemp(prefix="lockstep-fleet-bench-")
    # One pooled connection per database needs room on the server.
    pg = PgServer({"max_connections": args.postgres + 50})
    pg.__enter__()
    my = MariadbServer().__enter__()
    proc = None
    try:
        build_fleet(work, pg, args.sqlite, args.postgres)
        build_mysql_fleet(my, args.mysql)
        grpc_port, metrics_port = free_port(), free_port()
        with open(os.path.join(work, "fleet.yaml"), "w") as f:
            f.write("""
server: {listen: 127.0.0.1:%d, metrics_listen: 127.0.0.1:%d, state: state.db,
         poll_interval: 1h, max_concurrent_checks: 32, max_connections_per_server: %d}
project: {alembic_ini: %s}
environments:
  - name: sqlite
    databases: [{discover: {glob: "tenants/*.db"}}]
  - name: postgres
    databases:
      - discover: {url: "%s", query: "SELECT datname FROM pg_database WHERE datname LIKE 'tenant_%%'"}
  - name: mysql
    databases:
      - discover: {url: "%s", query: "SHOW DATABASES LIKE 'tenant\\\\_%%'"}
""" % (grpc_port, metrics_port, args.postgres + 8, INI, pg.url("postgres"), my.url("mysql")))
        proc = subprocess.Popen([os.path.join(build, "daemon", "lockstepd"), "--config",
                                 os.path.join(work, "fleet.yaml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import grpc
        from test_daemon import grpc_stubs
        from lockstepd import wire_name
        pb2, pb2_grpc = grpc_stubs(os.path.join(work, "stubs"))
        channel = grpc.insecure_channel("127.0.0.1:%d" % grpc_port)
        grpc.channel_ready_future(channel).result(timeout=20)
        stub = pb2_grpc.LockstepStub(channel)
        # The daemon's own first pass (at start) opens every connection; wait
        # for it, then time five warm passes and one with no pooled connections.
        while not stub.GetFleet(pb2.GetFleetRequest(), timeout=10).databases:
            time.sleep(0.1)
        import urllib.request
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port).read().decode()
        cold = float([l.split()[1] for l in metrics.splitlines()
                      if l.startswith("lockstep_refresh_duration_seconds ")][0])
        refreshes = []
        for _ in range(5):
            r = stub.Refresh(pb2.RefreshRequest(), timeout=120)
            refreshes.append(r.took.seconds + r.took.nanos / 1e9)
        total = r.databases
        getfleet = []
        for _ in range(50):
            t = time.perf_counter()
            fleet = stub.GetFleet(pb2.GetFleetRequest(), timeout=10)
            getfleet.append(time.perf_counter() - t)
        assert len(fleet.databases) == total
        states = {}
        for d in fleet.databases:
            name = wire_name(pb2.DatabaseState, d.state)
            states[name] = states.get(name, 0) + 1
        with open("/proc/%d/status" % proc.pid) as f:
            rss = [l for l in f if l.startswith("VmHWM")][0].split()[1]

        urls = ["sqlite:///" + os.path.join(work, "tenants", n)
                for n in sorted(os.listdir(os.path.join(work, "tenants")))]
        pg_urls = [pg.url("tenant_%03d" % n) for n in range(args.postgres)]
        my_urls = [my.url("tenant_%03d" % n) for n in range(args.mysql)]
        loop_by = {"sqlite": sqlalchemy_loop(urls) if urls else 0.0,
                   "postgresql": sqlalchemy_loop(pg_urls) if pg_urls else 0.0,
                   "mysql": sqlalchemy_loop(my_urls) if my_urls else 0.0}
        urls += pg_urls + my_urls
        loop_t = sum(loop_by.values())
        by_env = {}
        for d in fleet.databases:
            by_env[d.environment] = by_env.get(d.environment, 0) + 1
        sample = urls[:: max(1, len(urls) // args.sample)][: args.sample]
        t = time.perf_counter()
        for u in sample:
            alembic(u, "current")
        current_t = (time.perf_counter() - t) / len(sample) * len(urls)

        refresh = statistics.median(refreshes)
        print("fleet: %d databases (%s)" % (total, ", ".join("%s %d" % kv for kv in sorted(states.items()))))
        print("%-44s %10s %12s" % ("", "wall", "vs lockstepd"))
        print("%-44s %8.0f ms %11s" % ("lockstepd full refresh (warm, median of 5)", refresh * 1e3, "1.0x"))
        print("%-44s %8.0f ms %11s" % ("lockstepd first refresh (opens every connection)",
                                       cold * 1e3, ""))
        print("%-44s %8.0f ms %10.1fx" % ("Python loop, SQLAlchemy, one engine per URL", loop_t * 1e3,
                                          loop_t / refresh))
        for dialect, env in (("sqlite", "sqlite"), ("postgresql", "postgres"), ("mysql", "mysql")):
            print("%-44s %8.0f ms" % ("  of which %s (%d databases)" % (dialect, by_env.get(env, 0)),
                                      loop_by[dialect] * 1e3))
        print("%-44s %8.0f ms %10.1fx" % ("alembic current (sample of %d, extrapolated)" % len(sample),
                                          current_t * 1e3, current_t / refresh))
        print("GetFleet for %d databases: median %.1f ms, max %.1f ms; lockstepd peak RSS %.1f MB"
              % (total, statistics.median(getfleet) * 1e3, max(getfleet) * 1e3, int(rss) / 1024))
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=10)
        pg.__exit__(None, None, None)
        my.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
