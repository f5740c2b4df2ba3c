#!/usr/bin/python3
"""Benchmark: a full schema check of a fleet by lockstepd, side by side with
what teams script today.

    /usr/bin/python3 tests/bench/bench_schema.py --build build

The fleet: --sqlite SQLite files, --postgres PostgreSQL databases in one
local cluster and --mysql MariaDB databases on one server (both started
here), at the example project's revisions (a seed per revision made by real
Alembic; the rest are copies, clones with CREATE DATABASE ... TEMPLATE, or
the seed's dump replayed). project.shadow_postgresql and shadow_mysql point
at the same servers, so every dialect is judged against what Alembic
builds. Figures:
  - lockstepd: `lockstep refresh` (the Refresh RPC re-reads every schema and
    judges it; median of 5 warm passes), and the first pass (which also
    builds the expected schemas with Alembic);
  - the script: `sqlite3 FILE .schema`, `pg_dump --schema-only` and
    `mariadb-dump --no-data` per database, each compared with a reference
    dump of its revision (the seed's), in a shell-like loop of processes.
Every database must read `match`; the script must find no difference either.

Expected schemas: lockstepd's time building them (Alembic on shadow
databases, every revision set of the fleet on every dialect: the metric
lockstep_expected_schema_build_seconds) side by side with doing the same by
hand: per revision set and dialect, an empty database, `alembic upgrade` to
the set, `sqlite3 .schema` or `pg_dump --schema-only`, the database dropped.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_support import INI, ROOT, STATES, alembic, build_fleet, build_mysql_fleet  # noqa: E402
from mariadbserver import MariadbServer  # noqa: E402
from pgserver import PgServer, free_port  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--sqlite", type=int, default=1000)
    ap.add_argument("--postgres", type=int, default=200)
    ap.add_argument("--mysql", type=int, default=200)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    work = tempfile.mkdtemp(prefix="lockstep-schema-bench-")
    pg = PgServer({"max_connections": args.postgres + 50})
    pg.__enter__()
    my = MariadbServer().__enter__()
    proc = None
    try:
        seeds, sqlite_files, pg_names = build_fleet(work, pg, args.sqlite, args.postgres)
        my_names = build_mysql_fleet(my, args.mysql)
        grpc_port, metrics_port = free_port(), free_port()
        with open(os.path.join(work, "fleet.yaml"), "w") as f:
            f.write("""
server: {listen: 127.0.0.1:%d, metrics_listen: 127.0.0.1:%d, state: state.db,
         poll_interval: 1h, schema_interval: 1h, max_concurrent_checks: 32,
         max_connections_per_server: %d}
project: {alembic_ini: %s, shadow_postgresql: "%s", shadow_mysql: "%s"}
environments:
  - name: sqlite
    databases: [{discover: {glob: "tenants/*.db"}}]
  - name: postgres
    databases:
      - discover: {url: "%s", query: "SELECT datname FROM pg_database WHERE datname LIKE 'tenant_%%'"}
  - name: mysql
    databases:
      - discover: {url: "%s", query: "SHOW DATABASES LIKE 'tenant\\\\_%%'"}
""" % (grpc_port, metrics_port, args.postgres + 8, INI, pg.url("postgres"), my.url("mysql"),
       pg.url("postgres"), my.url("mysql")))
        started = time.perf_counter()
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
        # The first pass: version rows, then every schema, after building the
        # expected schemas (5 revision sets x 2 dialects, with Alembic).
        while True:
            fleet = stub.GetFleet(pb2.GetFleetRequest(), timeout=30)
            if fleet.databases and all(d.schema.reason != "its schema is being read"
                                       for d in fleet.databases):
                break
            time.sleep(0.1)
        first = time.perf_counter() - started
        passes = []
        for _ in range(5):
            t = time.perf_counter()
            stub.Refresh(pb2.RefreshRequest(), timeout=300)
            passes.append(time.perf_counter() - t)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port,
                                         timeout=10).read().decode()
        built = [l for l in metrics.splitlines()
                 if l.startswith(("lockstep_expected_schema_build_seconds ",
                                  'lockstep_expected_schemas{how="built"}'))]
        build_s = float(next(l for l in built if l.startswith("lockstep_expected_schema_build"))
                        .split()[-1])
        builds = int(float(next(l for l in built if l.startswith("lockstep_expected_schemas"))
                           .split()[-1]))
        fleet = stub.GetFleet(pb2.GetFleetRequest(), timeout=30)
        verdicts = {}
        for d in fleet.databases:
            name = wire_name(pb2.SchemaState, d.schema.state)
            verdicts[name] = verdicts.get(name, 0) + 1
        assert verdicts == {"match": args.sqlite + args.postgres + args.mysql}, verdicts

        # What teams script: a dump per database, compared with the reference
        # dump of its revision.
        bindir = pg.bindir

        def pg_dump(db):
            out = subprocess.run([os.path.join(bindir, "pg_dump"), "--schema-only", "-h",
                                  "127.0.0.1", "-p", str(pg.port), "-U", "postgres", db],
                                 capture_output=True, text=True, check=True).stdout
            # Comments, and the random key newer pg_dumps put in \restrict lines.
            return "\n".join(l for l in out.splitlines()
                             if not l.startswith(("--", "\\restrict", "\\unrestrict")))

        def sqlite_schema(path):
            return subprocess.run(["sqlite3", path, ".schema"], capture_output=True, text=True,
                                  check=True).stdout

        def my_dump(db):
            out = subprocess.run(["mariadb-dump", "--no-defaults", "--socket=" + my.socket,
                                  "-uroot", "--no-data", "--skip-comments", db],
                                 capture_output=True, text=True, check=True).stdout
            return out.replace("AUTO_INCREMENT=", "")

        ref_sqlite = [sqlite_schema(p) for p in seeds]
        ref_my = [my_dump("mtpl_%d" % i) for i in range(len(STATES))]
        ref_pg = [pg_dump("tpl_%d" % i) for i in range(len(STATES))]
        t = time.perf_counter()
        differ = 0
        for path, i in sqlite_files:
            differ += sqlite_schema(path) != ref_sqlite[i]
        sqlite_t = time.perf_counter() - t
        t = time.perf_counter()
        for db, i in pg_names:
            differ += pg_dump(db) != ref_pg[i]
        pg_t = time.perf_counter() - t
        t = time.perf_counter()
        for db, i in my_names:
            differ += my_dump(db) != ref_my[i]
        my_t = time.perf_counter() - t
        script = sqlite_t + pg_t + my_t

        # The expected schemas by hand: an empty database per revision set
        # and dialect, Alembic up to the set, the schema dumped.
        t = time.perf_counter()
        for i, target in enumerate(STATES):
            path = os.path.join(work, "by-hand-%d.db" % i)
            alembic("sqlite:///" + path, "upgrade", target)
            sqlite_schema(path)
            os.remove(path)
            pg.create_database("by_hand_%d" % i)
            alembic(pg.url("by_hand_%d" % i), "upgrade", target)
            pg_dump("by_hand_%d" % i)
            pg.psql('DROP DATABASE "by_hand_%d"' % i)
            my.sql("CREATE DATABASE by_hand_%d" % i)
            alembic(my.url("by_hand_%d" % i), "upgrade", target)
            my_dump("by_hand_%d" % i)
            my.sql("DROP DATABASE by_hand_%d" % i)
        by_hand = time.perf_counter() - t

        full = statistics.median(passes)
        total = args.sqlite + args.postgres + args.mysql
        print("fleet: %d databases (%d SQLite, %d PostgreSQL, %d MariaDB); lockstepd: %s; the "
              "script: %d differing" % (total, args.sqlite, args.postgres, args.mysql,
                             ", ".join("%s %d" % kv for kv in sorted(verdicts.items())), differ))
        print("%-58s %10s %12s" % ("", "wall", "vs lockstepd"))
        print("%-58s %8.0f ms %11s" % ("lockstepd: lockstep refresh, every schema read and judged",
                                       full * 1e3, "1.0x"))
        print("%-58s %8.0f ms %11s" % ("lockstepd: first pass (builds the expected schemas too)",
                                       first * 1e3, ""))
        print("%-58s %8.0f ms %11s" % ("script: sqlite3 .schema per file, compared",
                                       sqlite_t * 1e3, ""))
        print("%-58s %8.0f ms %11s" % ("script: pg_dump --schema-only per database, compared",
                                       pg_t * 1e3, ""))
        print("%-58s %8.0f ms %11s" % ("script: mariadb-dump --no-data per database, compared",
                                       my_t * 1e3, ""))
        print("%-58s %8.0f ms %10.1fx" % ("script: all three", script * 1e3, script / full))
        print()
        print("%-58s %8.0f ms %11s" % ("expected schemas: lockstepd, %d built with Alembic" % builds,
                                       build_s * 1e3, "1.0x"))
        print("%-58s %8.0f ms %10.1fx" % ("expected schemas: by hand, %d upgrades and dumps"
                                          % (3 * len(STATES)), by_hand * 1e3, by_hand / build_s))
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=10)
        pg.__exit__(None, None, None)
        my.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
