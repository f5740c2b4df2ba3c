#!/usr/bin/python3
"""Benchmark: tenants as schemas of one PostgreSQL database, read by
lockstepd in batches, side by side with the same tenants read one at a
time and with how teams script it today.

    /usr/bin/python3 tests/bench/bench_tenant_schemas.py --build build

One local PostgreSQL cluster (started here), one database `app` with
--tenants schemas t0000, t0001, ..., each with its own alembic_version (the
example project's revisions in turn; one in 50 has no version table yet).
The inventory lists each tenant with `version_table_schema`. Figures:
  - lockstepd, batched: the tenants share a database and a user, so one
    connection reads up to 50 version tables in two statements;
  - lockstepd, one at a time: the same tenants, each with its own URL (an
    application_name per tenant), so no two can share a batch;
  - a Python loop with SQLAlchemy: one engine, one connection, one SELECT
    per tenant's version table.
Each lockstepd figure is the median of 5 Refresh RPCs after its first pass.
With --rtt-ms, every client reaches PostgreSQL through a proxy here that
holds each chunk for half that in each direction: a server in another zone
or region, where round trips, not the server's work, are the cost.
"""
import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_support import ROOT, STATES  # noqa: E402
from pgserver import PgServer, free_port  # noqa: E402

REVISIONS = [s for s in STATES if s != "heads"] + ["e9a8c6b4d244"]


def start_delay_proxy(target_port, rtt_ms):
    """A TCP proxy on a free port to 127.0.0.1:target_port that delays every
    chunk by rtt_ms / 2 each way (in order); returns its port."""
    port = free_port()
    delay = rtt_ms / 2000.0

    async def pipe(reader, writer):
        queue = asyncio.Queue()

        async def send():
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                queue.put_nowait((time.monotonic() + delay, data))
        finally:
            queue.put_nowait((0, None))
            await sender

    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w),
                             return_exceptions=True)

    ready = threading.Event()

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", port))
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return port


def refresh_times(build, work, inventory, pb2, pb2_grpc, grpc_port):
    """Medians of five Refresh RPCs on a lockstepd started on `inventory`,
    and the states it reports."""
    import grpc
    from lockstepd import wire_name
    path = os.path.join(work, "fleet.yaml")
    with open(path, "w") as f:
        f.write(inventory)
    state = os.path.join(work, "state.db")
    if os.path.exists(state):
        os.remove(state)
    proc = subprocess.Popen([os.path.join(build, "daemon", "lockstepd"), "--config", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        channel = grpc.insecure_channel("127.0.0.1:%d" % grpc_port)
        grpc.channel_ready_future(channel).result(timeout=20)
        stub = pb2_grpc.LockstepStub(channel)
        while not stub.GetFleet(pb2.GetFleetRequest(), timeout=10).databases:
            time.sleep(0.1)
        took = []
        for _ in range(5):
            r = stub.Refresh(pb2.RefreshRequest(), timeout=120)
            took.append(r.took.seconds + r.took.nanos / 1e9)
        states = {}
        for d in stub.GetFleet(pb2.GetFleetRequest(), timeout=10).databases:
            name = wire_name(pb2.DatabaseState, d.state)
            states[name] = states.get(name, 0) + 1
        channel.close()
        return statistics.median(took), states
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--rtt-ms", type=float, default=0.0,
                    help="round trip added between every client and PostgreSQL")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    work = tempfile.mkdtemp(prefix="lockstep-schemas-bench-")
    pg = PgServer({"max_connections": 100})
    pg.__enter__()
    try:
        print("building %d tenant schemas..." % args.tenants, flush=True)
        pg.create_database("app")
        sql = []
        for n in range(args.tenants):
            s = "t%04d" % n
            sql.append("CREATE SCHEMA %s;" % s)
            if n % 50 == 49:
                continue  # never migrated
            sql.append("CREATE TABLE %s.alembic_version (version_num varchar(32) PRIMARY KEY);" % s)
            sql.append("INSERT INTO %s.alembic_version VALUES ('%s');"
                       % (s, REVISIONS[n % len(REVISIONS)]))
        for i in range(0, len(sql), 600):  # psql -c: an argument has a size limit
            pg.psql("\n".join(sql[i:i + 600]), "app")

        from test_daemon import grpc_stubs
        pb2, pb2_grpc = grpc_stubs(os.path.join(work, "stubs"))
        grpc_port, metrics_port = free_port(), free_port()
        head = """
server: {listen: 127.0.0.1:%d, metrics_listen: 127.0.0.1:%d, state: state.db,
         poll_interval: 1h, schema_interval: 0, max_concurrent_checks: 8,
         max_connections_per_server: 8}
project: {scripts: %s}
environments:
  - name: prod
    databases:
""" % (grpc_port, metrics_port, os.path.join(ROOT, "migrations", "example"))
        url = pg.url("app")
        if args.rtt_ms > 0:
            url = url.replace(":%d/" % pg.port, ":%d/" % start_delay_proxy(pg.port, args.rtt_ms))
        batched = head + "".join(
            '      - {name: t%04d, url: "%s", version_table_schema: t%04d}\n' % (n, url, n)
            for n in range(args.tenants))
        sep = "&" if "?" in url else "?"
        alone = head + "".join(
            '      - {name: t%04d, url: "%s%sapplication_name=t%04d", version_table_schema: t%04d}\n'
            % (n, url, sep, n, n) for n in range(args.tenants))
        t_batched, states = refresh_times(build, work, batched, pb2, pb2_grpc, grpc_port)
        t_alone, states_alone = refresh_times(build, work, alone, pb2, pb2_grpc, grpc_port)
        assert states == states_alone, (states, states_alone)

        loop = subprocess.run([sys.executable, "-c", r"""
import sys, time
from sqlalchemy import create_engine, text
url, n = sys.argv[1], int(sys.argv[2])
e = create_engine(url)
t = time.perf_counter()
with e.connect() as c:
    for i in range(n):
        s = "t%04d" % i
        exists = c.execute(text("SELECT to_regclass(:t)"), {"t": s + ".alembic_version"}).scalar()
        if exists:
            rows = [r[0] for r in c.execute(text("SELECT version_num FROM %s.alembic_version" % s))]
print(time.perf_counter() - t)
""", url, str(args.tenants)], capture_output=True, text=True, check=True)
        loop_t = float(loop.stdout.strip())

        print("%d tenants as schemas of one database (%s); round trip %s"
              % (args.tenants, ", ".join("%s %d" % kv for kv in sorted(states.items())),
                 "%.1f ms added" % args.rtt_ms if args.rtt_ms else "local"))
        print("%-58s %9s %13s" % ("", "wall", "vs batched"))
        print("%-58s %6.1f ms %12s" % ("lockstepd refresh, batched (median of 5)", t_batched * 1e3,
                                       "1.0x"))
        print("%-58s %6.1f ms %11.1fx" % ("lockstepd refresh, one tenant at a time (median of 5)",
                                          t_alone * 1e3, t_alone / t_batched))
        print("%-58s %6.1f ms %11.1fx" % ("Python loop, SQLAlchemy, one connection, 2 SELECTs each",
                                          loop_t * 1e3, loop_t / t_batched))
    finally:
        pg.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
