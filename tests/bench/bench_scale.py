#!/usr/bin/python3
"""Benchmark: status that stays fresh at scale (issue 12).

    /usr/bin/python3 tests/bench/bench_scale.py --build build

1. Readers: --fleet SQLite files (default 2,000), poll_interval 10s, and
   --readers clients (default 50, each its own connection) calling GetFleet
   for the whole fleet, back to back, for --seconds (default 60): first as
   threads of a compiled client (tests/bench/fleet_load.cc) that keeps each
   reply's bytes unparsed (the least a client can take from the two cores
   it shares with lockstepd), then parsing them, then as Python processes. Figures: GetFleet latency p50/p99, how far apart refreshes
   ended (the target: never later than the interval + 1 s), lockstepd's RSS.
2. Size: for each of --sizes (default 20,000 and 100,000) SQLite files, one
   `discover: {glob}` rule: the first pass, two later passes, RSS, the
   number of series on /metrics, how long lockstepd takes to stop when
   SIGTERM arrives during a pass; side by side, a Python loop reading
   alembic_version with SQLAlchemy (one engine per file), on --loop-sample
   files and extrapolated to the fleet.
Files are copies of a few made by the real Alembic (bench_support).
"""
import argparse
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_support import INI, ROOT, STATES, alembic, sqlalchemy_loop  # noqa: E402
from lockstepd import grpc_stubs  # noqa: E402
from pgserver import free_port  # noqa: E402


def make_files(work, count):
    """work/tenants/t000000.db ... up to `count` files (kept between sizes)."""
    tenants = os.path.join(work, "tenants")
    os.makedirs(tenants, exist_ok=True)
    seeds = []
    for i, target in enumerate(STATES):
        path = os.path.join(work, "seed%d.db" % i)
        if not os.path.exists(path):
            alembic("sqlite:///" + path, "upgrade", target)
        seeds.append(path)
    have = len(os.listdir(tenants))
    for n in range(have, count):
        # The first 2,000 at every revision in turn; past them, as in a
        # real tenant fleet, nearly all current (one in a hundred behind).
        seed = n % len(seeds) if n < 2000 or n % 100 == 0 else len(seeds) - 1
        shutil.copy(seeds[seed], os.path.join(tenants, "t%06d.db" % n))
    return tenants


class Daemon:
    def __init__(self, build, work, tag, poll_interval):
        self.grpc_port, self.metrics_port = free_port(), free_port()
        self.config = os.path.join(work, "fleet-%s.yaml" % tag)
        with open(self.config, "w") as f:
            f.write("""
server: {listen: 127.0.0.1:%d, metrics_listen: 127.0.0.1:%d, state: state-%s.db,
         poll_interval: %s, schema_interval: 0}
project: {alembic_ini: %s}
environments:
  - name: tenants
    databases: [{discover: {glob: "tenants/*.db"}}]
""" % (self.grpc_port, self.metrics_port, tag, poll_interval, INI))
        self.log = open(os.path.join(work, "lockstepd-%s.log" % tag), "w")
        self.proc = subprocess.Popen([os.path.join(build, "daemon", "lockstepd"), "--config",
                                      self.config], stdout=self.log, stderr=subprocess.STDOUT)
        self.server = "127.0.0.1:%d" % self.grpc_port

    def metrics(self):
        return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                      timeout=30).read().decode()

    def metric(self, name):
        for line in self.metrics().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def wait_first_pass(self, pb2, pb2_grpc, timeout=600):
        """The first pass's duration, once it is published (asked with a
        one-database page, not the whole fleet or /metrics)."""
        import grpc
        stub = pb2_grpc.LockstepStub(grpc.insecure_channel(self.server))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("lockstepd exited %d" % self.proc.returncode)
            try:
                page = stub.GetFleet(pb2.GetFleetRequest(page_size=1), timeout=10)
                # The metrics follow the snapshot a moment later.
                took = self.metric("lockstep_refresh_duration_seconds") \
                    if page.refreshed_at.seconds else None
                if took:
                    return took
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise SystemExit("no first pass in %d s" % timeout)

    def cpu_seconds(self):
        """User and system CPU time lockstepd has used."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory(self):
        """(VmRSS, VmHWM) in MB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            fields = dict(line.split(":", 1) for line in f)
        return (int(fields["VmRSS"].split()[0]) / 1024.0,
                int(fields["VmHWM"].split()[0]) / 1024.0)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.log.close()


def reader(server, stubs_dir, seconds, out):
    import grpc
    sys.path.insert(0, stubs_dir)  # made once by the parent
    from lockstep.v1 import lockstep_pb2 as pb2, lockstep_pb2_grpc as pb2_grpc
    stub = pb2_grpc.LockstepStub(grpc.insecure_channel(
        server, options=[("grpc.max_receive_message_length", 64 << 20)]))
    latencies, end = [], time.time() + seconds
    while time.time() < end:
        t = time.perf_counter()
        stub.GetFleet(pb2.GetFleetRequest(), timeout=60)
        latencies.append(time.perf_counter() - t)
    out.put(latencies)


def python_clients(args, server, stubs_dir):
    """--readers Python processes: their latencies in s, sorted."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=reader, args=(server, stubs_dir, args.seconds, out))
             for _ in range(args.readers)]
    for p in procs:
        p.start()
    latencies = []
    for _ in procs:
        latencies += out.get(timeout=args.seconds + 300)
    for p in procs:
        p.join()
    latencies.sort()
    return latencies


def compiled_clients(args, build, server, mode):
    """--readers threads of lockstep_fleet_load (C++, a connection each);
    mode "parse" parses each reply, "raw" keeps its bytes."""
    run = subprocess.run([os.path.join(build, "tests", "lockstep_fleet_load"), server,
                          str(args.readers), str(args.seconds), mode],
                         capture_output=True, text=True, timeout=args.seconds + 300)
    if run.returncode != 0:
        raise SystemExit("lockstep_fleet_load failed: %s" % run.stderr)
    return json.loads(run.stdout)


def readers(args, build, work):
    """The same daemon read by compiled clients that do not parse the reply,
    by compiled clients that do, then by Python processes."""
    make_files(work, args.fleet)
    d = Daemon(build, work, "readers", "10s")
    try:
        stubs_dir = os.path.join(work, "stubs")
        pb2, pb2_grpc = grpc_stubs(stubs_dir)
        d.wait_first_pass(pb2, pb2_grpc)
        import grpc
        probe = pb2_grpc.LockstepStub(grpc.insecure_channel(d.server))
        for kind in ("raw", "parse", "python"):
            ends, stop = [], threading.Event()

            def watch_refreshes():
                last = None
                while not stop.is_set():
                    # When the newest snapshot was taken, from a one-database
                    # page (a /metrics scrape would cost lockstepd more).
                    try:
                        page = probe.GetFleet(pb2.GetFleetRequest(page_size=1), timeout=30)
                        at = page.refreshed_at.seconds + page.refreshed_at.nanos / 1e9
                    except grpc.RpcError:
                        at = None
                    if at and at != last:
                        ends.append(at)
                        last = at
                    time.sleep(0.5)
            watcher = threading.Thread(target=watch_refreshes)
            watcher.start()
            cpu0 = d.cpu_seconds()
            if kind != "python":
                r = compiled_clients(args, build, d.server, kind)
                calls, p50, p99, top = r["calls"], r["p50_ms"], r["p99_ms"], r["max_ms"]
                clients = "%d C++ client threads (lockstep_fleet_load %s: %.1f CPU-s, %d KB" \
                    " replies)" % (args.readers, kind, r["cpu_seconds"], r["reply_bytes"] // 1024)
            else:
                latencies = python_clients(args, d.server, stubs_dir)
                calls = len(latencies)
                p50, p99, top = (latencies[calls // 2] * 1e3, latencies[int(calls * 0.99)] * 1e3,
                                 latencies[-1] * 1e3)
                clients = "%d Python client processes" % args.readers
            cpu = d.cpu_seconds() - cpu0
            stop.set()
            watcher.join()
            rss, hwm = d.memory()
            gaps = [b - a for a, b in zip(ends, ends[1:])]
            print("%d SQLite databases, %s calling GetFleet for %d s: %d calls" % (
                args.fleet, clients, args.seconds, calls))
            print("  GetFleet latency: p50 %.0f ms, p99 %.0f ms, max %.0f ms" % (p50, p99, top))
            print("  refreshes ended %s s apart (poll_interval 10 s; longest %.1f s)" % (
                ", ".join("%.1f" % g for g in gaps), max(gaps) if gaps else float("nan")))
            print("  lockstepd RSS %.1f MB (peak %.1f MB); lockstepd's CPU %.1f s in all,"
                  " %.2f ms a call (the rest of the 2 cores' time is the clients')" % (
                      rss, hwm, cpu, cpu / max(1, calls) * 1e3), flush=True)
    finally:
        d.stop()


def sqlalchemy_sample(tenants, sample):
    """The SQLAlchemy loop over `sample` of the files, extrapolated to all."""
    names = sorted(os.listdir(tenants))
    picked = names[:: max(1, len(names) // sample)][:sample]
    took = sqlalchemy_loop(["sqlite:///" + os.path.join(tenants, n) for n in picked])
    return took / len(picked) * len(names)


def size(args, build, work, count):
    import grpc
    t = time.perf_counter()
    tenants = make_files(work, count)
    print("%d SQLite databases (files made in %.0f s)" % (count, time.perf_counter() - t),
          flush=True)
    d = Daemon(build, work, "size-%d" % count, "1h")
    try:
        pb2, pb2_grpc = grpc_stubs(os.path.join(work, "stubs"))
        first = d.wait_first_pass(pb2, pb2_grpc)
        stub = pb2_grpc.LockstepStub(grpc.insecure_channel(d.server))
        later = []
        for _ in range(2):
            r = stub.Refresh(pb2.RefreshRequest(), timeout=600)
            later.append(r.took.seconds + r.took.nanos / 1e9)
        series = sum(1 for line in d.metrics().splitlines() if line and line[0] != "#")
        rss, hwm = d.memory()
        # SIGTERM during a pass: a Refresh in flight, then the signal.
        call = stub.Refresh.future(pb2.RefreshRequest(), timeout=600)
        time.sleep(min(0.5, later[-1] / 3))
        t = time.perf_counter()
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=120)
        stopped = time.perf_counter() - t
        try:
            call.result()
            during = "the pass had ended"
        except grpc.RpcError as e:
            during = "the pass was interrupted: %s" % e.code().name
        loop = sqlalchemy_sample(tenants, args.loop_sample)
        print("  lockstepd first pass %.1f s, later passes %s s" % (
            first, ", ".join("%.1f" % x for x in later)))
        print("  Python loop, SQLAlchemy, one engine per file: %.1f s (%d files, extrapolated)"
              " = %.1fx a later pass" % (loop, args.loop_sample, loop / max(later)))
        print("  RSS %.0f MB (peak %.0f MB), %d series on /metrics" % (rss, hwm, series))
        print("  SIGTERM during a pass: stopped in %.2f s (%s)" % (stopped, during), flush=True)
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--fleet", type=int, default=2000)
    ap.add_argument("--readers", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--loop-sample", type=int, default=2000)
    ap.add_argument("--skip-readers", action="store_true")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    work = tempfile.mkdtemp(prefix="lockstep-scale-bench-")
    try:
        if not args.skip_readers:
            readers(args, build, work)
        for count in [int(x) for x in args.sizes.split(",") if x]:
            size(args, build, work, count)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
