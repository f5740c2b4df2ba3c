"""End to end: lockstepd as a process, asked by the lockstep CLI, by an
independent gRPC client (stubs generated from our .proto at test time) and by
a metrics scrape. Real SQLite files and a real PostgreSQL server, migrated
with real Alembic.

Run: LOCKSTEP_BUILD=build python3 -m unittest tests/e2e/test_daemon.py
"""
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
from pgserver import PgServer, free_port  # noqa: E402
from lockstepd import grpc_stubs  # noqa: E402

BUILD = os.path.abspath(os.environ.get("LOCKSTEP_BUILD", os.path.join(ROOT, "build")))
LOCKSTEPD = os.path.join(BUILD, "daemon", "lockstepd")
LOCKSTEP = os.path.join(BUILD, "client", "lockstep")
HEAD = "e9a8c6b4d244"
AGE = "7c4e2d8a9b22"
SECRET = "s3cr3t-Pw-e2e"


class DaemonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="lockstep-e2e-")
        cls.project = os.path.join(cls.dir, "project")
        shutil.copytree(os.path.join(ROOT, "migrations", "example"), cls.project)
        cls.ini = os.path.join(cls.project, "alembic.ini")
        cls.pg = PgServer().__enter__()
        cls.pg.create_database("prod_app")
        cls.pg.psql("CREATE ROLE app LOGIN PASSWORD '%s'" % SECRET)
        cls.pg.psql("ALTER DATABASE prod_app OWNER TO app")
        # Password auth for 'app' (the server trusts 'postgres' locally).
        cls.alembic(cls.pg.url("prod_app", "app", SECRET), "upgrade", AGE)
        cls.alembic("sqlite:///%s/dev.db" % cls.dir, "upgrade", "heads")
        cls.alembic("sqlite:///%s/staging.db" % cls.dir, "upgrade", AGE)
        cls.grpc_port, cls.metrics_port = free_port(), free_port()
        cls.config = os.path.join(cls.dir, "fleet.yaml")
        cls.write_config()
        env = dict(os.environ, PROD_PW=SECRET)
        cls.log_path = os.path.join(cls.dir, "lockstepd.log")
        cls.log = open(cls.log_path, "w")
        cls.proc = subprocess.Popen([LOCKSTEPD, "--config", cls.config, "--log-format", "json"],
                                    stdout=cls.log, stderr=subprocess.STDOUT, env=env)
        cls.server = "127.0.0.1:%d" % cls.grpc_port
        deadline = time.time() + 20
        while time.time() < deadline:
            if cls.cli("status", check=False).returncode in (0, 3):
                break
            time.sleep(0.2)
        cls.pb2, cls.pb2_grpc = grpc_stubs(os.path.join(cls.dir, "stubs"))

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.kill()
        cls.log.close()
        cls.pg.__exit__(None, None, None)
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def write_config(cls, extra=""):
        with open(cls.config, "w") as f:
            f.write("""
server:
  listen: 127.0.0.1:%d
  metrics_listen: 127.0.0.1:%d
  state: state.db
  poll_interval: 1h
project:
  alembic_ini: project/alembic.ini
environments:
  - name: dev
    databases: [{name: app, url: "sqlite:///dev.db", labels: {team: core}}]
  - name: staging
    after: dev
    databases: [{name: app, url: "sqlite:///staging.db"}]
  - name: prod
    after: staging
    databases:
      - {name: app, url: "postgresql://app@127.0.0.1:%d/prod_app", password_env: PROD_PW}
%s""" % (cls.grpc_port, cls.metrics_port, cls.pg.port, extra))

    @classmethod
    def alembic(cls, url, *args):
        subprocess.run(["/usr/bin/alembic", "-c", cls.ini, "-x", "url=" + url] + list(args),
                       check=True, capture_output=True)

    @classmethod
    def cli(cls, *args, check=True):
        p = subprocess.run([LOCKSTEP, "--server", cls.server] + list(args), capture_output=True,
                           text=True)
        if check and p.returncode not in (0, 3):
            raise AssertionError("lockstep %s: %s %s" % (args, p.stdout, p.stderr))
        return p

    def status(self):
        return {(d["environment"], d["database"]): d
                for d in json.loads(self.cli("status", "-o", "json").stdout)["databases"]}

    def test_1_status_states_and_check(self):
        s = self.status()
        self.assertEqual(s[("dev", "app")]["state"], "current")
        self.assertEqual(s[("staging", "app")]["state"], "behind")
        self.assertEqual(s[("staging", "app")]["pending"], ["b5d1e7f3a033", "c2e4a6b8d055", HEAD])
        self.assertEqual(s[("prod", "app")]["state"], "behind")
        self.assertEqual(s[("prod", "app")]["revisions"], [AGE])
        self.assertEqual(self.cli("status", "--check").returncode, 3)
        self.assertEqual(self.cli("status", "dev", "--check").returncode, 0)
        text = self.cli("status").stdout
        self.assertIn("staging      app       behind", text)

    def test_2_manual_upgrade_is_noticed_and_recorded(self):
        self.alembic("sqlite:///%s/staging.db" % self.dir, "upgrade", "heads")
        self.assertEqual(self.cli("refresh").returncode, 0)
        self.assertEqual(self.status()[("staging", "app")]["state"], "current")
        db = json.loads(self.cli("db", "staging/app", "-o", "json").stdout)
        self.assertEqual(db["changes"][0]["from"], [AGE])
        self.assertEqual(db["changes"][0]["to"], [HEAD])

    def test_3_new_revision_file_is_picked_up(self):
        path = os.path.join(self.project, "versions", "a0b1c2d3e4f5_add_nickname.py")
        with open(path, "w") as f:
            f.write("revision = 'a0b1c2d3e4f5'\ndown_revision = '%s'\n"
                    "def upgrade():\n    pass\ndef downgrade():\n    pass\n" % HEAD)
        try:
            self.cli("refresh")
            s = self.status()
            self.assertEqual(s[("dev", "app")]["state"], "behind")
            self.assertEqual(s[("dev", "app")]["pending"], ["a0b1c2d3e4f5"])
        finally:
            os.remove(path)
            self.cli("refresh")
        self.assertEqual(self.status()[("dev", "app")]["state"], "current")

    def test_4_grpc_client_health_and_bad_requests(self):
        import grpc
        channel = grpc.insecure_channel(self.server)
        stub = self.pb2_grpc.LockstepStub(channel)
        fleet = stub.GetFleet(self.pb2.GetFleetRequest(labels={"team": "core"}), timeout=5)
        self.assertEqual([(d.environment, d.database) for d in fleet.databases], [("dev", "app")])
        with self.assertRaises(grpc.RpcError) as e:
            stub.GetFleet(self.pb2.GetFleetRequest(state=99), timeout=5)  # no such state
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("states: current, behind", e.exception.details())
        behind = stub.GetFleet(self.pb2.GetFleetRequest(state=self.pb2.DATABASE_STATE_BEHIND), timeout=5)
        self.assertTrue(behind.databases)
        self.assertEqual({d.state for d in behind.databases}, {self.pb2.DATABASE_STATE_BEHIND})
        with self.assertRaises(grpc.RpcError) as e:
            stub.GetDatabase(self.pb2.GetDatabaseRequest(environment="prod", database="nope"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as e:
            stub.GetDatabase(self.pb2.GetDatabaseRequest(environment="dev", database="app",
                                                         history_limit=-1), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("history_limit must be 0", e.exception.details())
        with self.assertRaises(grpc.RpcError) as e:
            stub.GetHistory(self.pb2.GetHistoryRequest(range="zzzz:"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("Can't locate revision identified by 'zzzz'", e.exception.details())
        history = stub.GetHistory(self.pb2.GetHistoryRequest(), timeout=5)
        self.assertEqual(history.revisions[0].revision, HEAD)
        # grpc.health.v1.Health/Check with an empty request: SERVING is field 1 = 1.
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda _: b"",
                                    response_deserializer=lambda b: b)
        self.assertEqual(check(None, timeout=5), b"\x08\x01")

    def test_5_metrics(self):
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                      timeout=5).read().decode()
        # dev/app is clean (current): no series of its own by default
        # (server.metrics_per_database: not_clean); prod/app is behind.
        self.assertNotIn('database="app",environment="dev"', body)
        self.assertIn('lockstep_environment_databases{environment="dev",state="current"} 1', body)
        self.assertIn('lockstep_environment_databases{environment="prod",state="behind"} 1', body)
        self.assertIn('lockstep_database_up{database="app",environment="prod"} 1', body)
        self.assertIn('lockstep_database_state{database="app",environment="prod",state="behind"} 1', body)
        self.assertIn('lockstep_database_info{database="app",environment="prod",revision="%s"} 1' % AGE, body)
        self.assertIn("lockstep_graph_heads 1", body)
        self.assertIn("lockstep_check_duration_seconds_bucket", body)
        self.assertIn('lockstep_database_pending_revisions{database="app",environment="prod"} 3', body)
        # Which lockstepd answers: its version and commit, as --version says.
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip() or "unknown"
        for binary, name in ((LOCKSTEPD, "lockstepd"),
                             (os.path.join(BUILD, "client", "lockstep"), "lockstep")):
            version = subprocess.run([binary, "--version"], capture_output=True, text=True)
            self.assertEqual(version.returncode, 0, version.stderr)
            self.assertRegex(version.stdout, r"^%s \d+\.\d+\.\d+ \(commit %s\)\n$" % (name, commit))
        number = version.stdout.split()[1]
        self.assertIn('lockstep_build_info{commit="%s",version="%s"} 1' % (commit, number), body)

    def test_6_sighup_with_a_broken_file_keeps_the_old_config(self):
        with open(self.config) as f:
            good = f.read()
        with open(self.config, "w") as f:
            f.write(good.replace("poll_interval: 1h", "poll_interval: soon"))
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30  # until the reload was judged, not for a time
        while time.time() < deadline:
            with open(self.log_path) as f:
                if "reload of %s rejected" % self.config in f.read():
                    break
            time.sleep(0.1)
        with open(self.config, "w") as f:
            f.write(good)
        self.assertIsNone(self.proc.poll())  # still running, still serving
        self.assertEqual(self.cli("status").returncode, 0)
        with open(self.log_path) as f:
            log = f.read()
        self.assertIn("reload of %s rejected" % self.config, log)
        self.assertIn("server.poll_interval: bad duration 'soon'", log)
        for line in log.splitlines():
            json.loads(line)  # every log line is a JSON object

    def test_6b_sighup_with_a_good_file_takes_effect(self):
        with open(self.config) as f:
            good = f.read()
        shutil.copy(os.path.join(self.dir, "dev.db"), os.path.join(self.dir, "dev2.db"))
        self.write_config("""  - name: qa
    after: dev
    databases: [{name: app, url: "sqlite:///dev2.db"}]
""")
        try:
            self.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while time.time() < deadline and ("qa", "app") not in self.status():
                time.sleep(0.2)
            self.assertEqual(self.status()[("qa", "app")]["state"], "current")
        finally:
            with open(self.config, "w") as f:
                f.write(good)
            self.proc.send_signal(signal.SIGHUP)

    def test_4c_watch_gives_up_on_an_unavailable_server(self):
        # A wrong --server: watch says it reconnects, then fails with the
        # connection error after --retry-for, instead of hanging.
        port = free_port()
        start = time.time()
        p = subprocess.run([LOCKSTEP, "--server", "127.0.0.1:%d" % port, "watch", "r-x",
                            "--retry-for", "2s"], capture_output=True, text=True, timeout=60)
        took = time.time() - start
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("lockstepd at 127.0.0.1:%d is unavailable; reconnecting for up to 2s "
                      "(--retry-for)" % port, p.stderr)
        self.assertIn("127.0.0.1:%d" % port, p.stdout + p.stderr)
        self.assertGreaterEqual(took, 2)
        self.assertLess(took, 20)
        bad = subprocess.run([LOCKSTEP, "--server", self.server, "watch", "r-x",
                              "--retry-for", "soon"], capture_output=True, text=True)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--retry-for takes a duration (60s, 5m) or seconds, not 'soon'", bad.stderr)

    def test_4b_reflection_lists_the_service(self):
        import grpc
        channel = grpc.insecure_channel(self.server)
        info = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        # ServerReflectionRequest{list_services: ""} is field 7, an empty string.
        replies = list(info(iter([b"\x3a\x00"]), timeout=5))
        self.assertIn(b"lockstep.v1.Lockstep", replies[0])
        self.assertIn(b"grpc.health.v1.Health", replies[0])

    def test_7_no_secret_anywhere(self):
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port).read().decode()
        outputs = [body, self.cli("status", "-o", "json").stdout, self.cli("db", "prod/app").stdout]
        with open(self.log_path) as f:
            outputs.append(f.read())
        for out in outputs:
            self.assertNotIn(SECRET, out)
        self.assertIn("postgresql://app@127.0.0.1", self.cli("db", "prod/app").stdout)

    def test_7b_a_second_lockstepd_on_the_same_address_is_refused(self):
        # gRPC would share the port (SO_REUSEPORT) and split the requests.
        other = os.path.join(self.dir, "other.yaml")
        with open(self.config) as f:
            text = f.read()
        with open(other, "w") as f:
            f.write(text.replace("state: state.db", "state: other-state.db")
                    .replace("127.0.0.1:%d\n  state" % self.metrics_port, "127.0.0.1:0\n  state"))
        p = subprocess.run([LOCKSTEPD, "--config", other], capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, PROD_PW=SECRET))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("cannot listen for gRPC on 127.0.0.1:%d (in use by another process" %
                      self.grpc_port, p.stdout + p.stderr)
        # Port 0: the system picks one, and the log says which.
        with open(other, "w") as f:
            f.write(text.replace("state: state.db", "state: other-state.db")
                    .replace("listen: 127.0.0.1:%d" % self.grpc_port, "listen: 127.0.0.1:0")
                    .replace("metrics_listen: 127.0.0.1:%d" % self.metrics_port,
                             "metrics_listen: 127.0.0.1:%d" % free_port()))
        proc = subprocess.Popen([LOCKSTEPD, "--config", other], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PROD_PW=SECRET))
        try:
            line = ""
            deadline = time.time() + 20
            while "serving gRPC on" not in line and time.time() < deadline:
                line = proc.stdout.readline()
            self.assertRegex(line, r"serving gRPC on 127\.0\.0\.1:[1-9][0-9]+ ")
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def test_7c_a_second_lockstepd_on_the_same_state_store_is_refused(self):
        # Other addresses, the same state store: refused before it reads
        # the store, so it never settles the first one's running steps.
        other = os.path.join(self.dir, "same-state.yaml")
        with open(self.config) as f:
            text = f.read()
        with open(other, "w") as f:
            f.write(text.replace("listen: 127.0.0.1:%d" % self.grpc_port, "listen: 127.0.0.1:0")
                    .replace("metrics_listen: 127.0.0.1:%d" % self.metrics_port,
                             "metrics_listen: 127.0.0.1:%d" % free_port()))
        p = subprocess.run([LOCKSTEPD, "--config", other], capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, PROD_PW=SECRET))
        self.assertNotEqual(p.returncode, 0)
        out = p.stdout + p.stderr
        self.assertIn("the state store %s is in use: flock on %s held by pid %d" %
                      (os.path.join(self.dir, "state.db"), os.path.join(self.dir, "state.db"),
                       self.proc.pid), out)
        self.assertIn("one lockstepd per state store", out)
        self.assertEqual(self.cli("rollouts").returncode, 0)  # the first one still serves

    def test_8_sigterm_stops_within_bound(self):
        start = time.time()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.assertLess(time.time() - start, 6)
        self.assertEqual(self.proc.returncode, 0)


class StatesTellTheTruthTest(unittest.TestCase):
    """Lost version rows, in_lockstep with unknown or meaningless rows, and
    messages that count right: SQLite only, on its own lockstepd."""

    @classmethod
    def setUpClass(cls):
        from lockstepd import Lockstepd
        cls.dir = tempfile.mkdtemp(prefix="lockstep-states-")
        cls.project = os.path.join(cls.dir, "project")
        shutil.copytree(os.path.join(ROOT, "migrations", "example"), cls.project)
        cls.ini = os.path.join(cls.project, "alembic.ini")
        for name, rev in (("a", "heads"), ("b", "heads"), ("c", AGE), ("x", "heads"),
                          ("q1", "heads"), ("solo", AGE)):
            subprocess.run(["/usr/bin/alembic", "-c", cls.ini, "-x",
                            "url=sqlite:///%s/%s.db" % (cls.dir, name), "upgrade", rev],
                           check=True, capture_output=True)
        with sqlite3.connect(os.path.join(cls.dir, "fresh.db")) as c:
            c.execute("CREATE TABLE t (x)")
        grpc_port, cls.metrics_port = free_port(), free_port()
        config = os.path.join(cls.dir, "fleet.yaml")
        with open(config, "w") as f:
            f.write("""
server:
  listen: 127.0.0.1:%d
  metrics_listen: 127.0.0.1:%d
  state: state.db
  poll_interval: 1h
project:
  alembic_ini: project/alembic.ini
environments:
  - name: dev
    databases: [{name: x, url: "sqlite:///x.db"}]
  - name: prod
    databases:
      - {name: a, url: "sqlite:///a.db"}
      - {name: b, url: "sqlite:///b.db"}
      - {name: c, url: "sqlite:///c.db"}
      - {name: fresh, url: "sqlite:///fresh.db"}
  - name: qa
    databases:
      - {name: q1, url: "sqlite:///q1.db"}
      - {name: gone, url: "sqlite:///missing.db"}
  - name: solo
    databases: [{name: app, url: "sqlite:///solo.db"}]
""" % (grpc_port, cls.metrics_port))
        cls.d = Lockstepd(BUILD, config, "127.0.0.1:%d" % grpc_port).start()
        # Someone empties prod/b's version table after lockstep saw it at head.
        with sqlite3.connect(os.path.join(cls.dir, "b.db")) as c:
            c.execute("DELETE FROM alembic_version")
        cls.refresh = cls.d.cli("refresh").stdout

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def status(self):
        return json.loads(self.d.cli("status", "-o", "json", check=False).stdout)

    def test_1_rows_seen_before_are_lost_not_never_migrated(self):
        dbs = {(d["environment"], d["database"]): d for d in self.status()["databases"]}
        b = dbs[("prod", "b")]
        self.assertEqual(b["state"], "version_rows_lost")
        self.assertRegex(b["reason"], r"^no version rows now; held %s until "
                         r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(lockstep saw it\)" % HEAD)
        self.assertEqual(b["pending"], [])
        self.assertEqual(dbs[("prod", "fresh")]["state"], "uninitialized")
        self.assertIn("never migrated", dbs[("prod", "fresh")]["reason"])
        self.assertIn("version_rows_lost", self.d.cli("status", check=False).stdout)
        # The history line it is judged on; no "<none> -> <none>" for fresh.
        history = self.d.cli("db", "prod/b").stdout
        self.assertRegex(history, r"\d\dZ  %s -> no version rows  \(not by lockstep\)" % HEAD)
        self.assertNotIn("<none> -> <none>", self.d.cli("db", "prod/fresh").stdout)
        fresh = json.loads(self.d.cli("db", "prod/fresh", "-o", "json").stdout)
        self.assertEqual(fresh["changes"], [])
        # A rollout refuses it: a person decides.
        p = self.d.cli("plan", "--env", "prod", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("prod/b: no version rows now; held %s until" % HEAD, p.stdout + p.stderr)
        plan = json.loads(self.d.cli("plan", "--env", "prod", "-o", "json", check=False).stdout)
        self.assertIn({"database": "prod/b", "code": "version_rows_lost"},
                      [{k: p[k] for k in ("database", "code")} for p in plan["problems"]])
        self.assertIn("restore a backup or `alembic stamp` the revisions it really holds; "
                      "lockstep will not migrate it from nothing: which to do is a person's "
                      "decision", p.stdout + p.stderr)

    def test_2_unknown_or_meaningless_rows_are_not_in_lockstep(self):
        envs = {e["name"]: e for e in self.status()["environments"]}
        self.assertTrue(envs["dev"]["in_lockstep"])
        self.assertFalse(envs["prod"]["in_lockstep"])
        self.assertFalse(envs["qa"]["in_lockstep"])  # one revision set, one database unreachable
        text = self.d.cli("status", check=False).stdout
        self.assertIn("prod: not in lockstep (3 different revision sets; "
                      "1 database version_rows_lost)", text)
        self.assertIn("qa: not in lockstep (1 database unreachable)", text)
        self.assertNotIn("dev: not in lockstep", text)
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                      timeout=5).read().decode()
        self.assertIn('lockstep_environment_in_lockstep{environment="qa"} 0', body)
        self.assertIn('lockstep_environment_in_lockstep{environment="dev"} 1', body)
        self.assertIn('lockstep_database_state{database="b",environment="prod",'
                      'state="version_rows_lost"} 1', body)

    def test_3_messages_count_right(self):
        self.assertRegex(self.refresh, r"^refreshed 8 databases in \d+ ms")
        plan = self.d.cli("plan", "--env", "solo").stdout
        self.assertIn("plan: upgrade to heads (%s), 1 database\n" % HEAD, plan)
        self.assertIn("3 revisions", plan)

    def test_3b_pages_and_filters(self):
        from lockstepd import grpc_stubs
        import grpc
        pb2, pb2_grpc = grpc_stubs(os.path.join(self.dir, "stubs"))
        stub = pb2_grpc.LockstepStub(grpc.insecure_channel(self.d.server))
        whole = [(d.environment, d.database) for d in stub.GetFleet(pb2.GetFleetRequest(),
                                                                    timeout=10).databases]
        self.assertEqual(len(whole), 8)
        paged, token, pages = [], "", 0
        while True:
            r = stub.GetFleet(pb2.GetFleetRequest(page_size=2, page_token=token), timeout=10)
            self.assertEqual(len(r.environments), 4)  # every page has them
            paged += [(d.environment, d.database) for d in r.databases]
            pages += 1
            token = r.next_page_token
            if not token:
                break
        self.assertEqual(paged, whole)  # in order, none twice, none left out
        self.assertEqual(pages, 4)  # 8 databases, 2 a page: no empty last page
        with self.assertRaises(grpc.RpcError) as e:
            stub.GetFleet(pb2.GetFleetRequest(page_size=2, page_token="garbage"), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as e:
            stub.GetFleet(pb2.GetFleetRequest(page_size=-1), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # Not clean: everything but the current databases whose schema is right.
        dirty = json.loads(self.d.cli("status", "--not-clean", "-o", "json",
                                      check=False).stdout)["databases"]
        names = {(d["environment"], d["database"]) for d in dirty}
        self.assertIn(("prod", "b"), names)
        self.assertIn(("prod", "fresh"), names)
        self.assertNotIn(("dev", "x"), names)
        self.assertTrue(all(d["state"] != "current" or d["schema"]["state"] == "drift"
                            for d in dirty))
        lost = json.loads(self.d.cli("status", "--state", "version_rows_lost", "-o", "json",
                                     check=False).stdout)["databases"]
        self.assertEqual([(d["environment"], d["database"]) for d in lost], [("prod", "b")])
        p = self.d.cli("status", "--state", "sideways", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--state 'sideways' is no state", p.stderr)

    def test_4_a_restarted_lockstepd_still_knows_the_rows_were_lost(self):
        self.d.stop()
        self.d.start()
        dbs = {(d["environment"], d["database"]): d for d in self.status()["databases"]}
        self.assertEqual(dbs[("prod", "b")]["state"], "version_rows_lost")
        self.assertEqual(dbs[("prod", "fresh")]["state"], "uninitialized")

    def test_5_a_version_row_that_is_not_utf8_leaves_every_reply_readable(self):
        # A Latin-1 byte in a version row (bytes from the database): replies
        # carry it as U+FFFD instead of becoming unreadable for the client.
        with sqlite3.connect(os.path.join(self.dir, "solo.db")) as c:
            c.execute("UPDATE alembic_version SET version_num = CAST(X'636166E9' AS TEXT)")
        self.d.cli("refresh")
        dbs = {(d["environment"], d["database"]): d for d in self.status()["databases"]}
        solo = dbs[("solo", "app")]
        self.assertEqual(solo["state"], "orphaned")
        self.assertEqual(solo["revisions"], ["caf\ufffd"])
        self.assertIn("caf\ufffd", self.d.cli("status", check=False).stdout)
        history = json.loads(self.d.cli("db", "solo/app", "-o", "json").stdout)
        self.assertIn(["caf\ufffd"], [c["to"] for c in history["changes"]])
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                      timeout=5).read()
        self.assertIn('revision="caf\ufffd"', body.decode("utf-8"))

    def test_6_a_state_store_deleted_underneath_stops_lockstepd_acting(self):
        # Deleted while lockstepd runs: an alarm in status, and no rollout
        # starts (it would be recorded nowhere); put back, all is well.
        state = os.path.join(self.dir, "state.db")
        os.rename(state, state + ".away")
        try:
            text = self.d.cli("status", check=False).stdout
            self.assertIn("NOT ACTING: the state store file %s is gone (deleted while lockstepd "
                          "runs)" % state, text)
            self.assertIn("is gone (deleted while lockstepd runs)",
                          self.status()["state_store_error"])
            p = self.d.cli("rollout", "--to", "heads", "--env", "solo", check=False)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("no rollout starts until it can", p.stdout + p.stderr)
            self.assertEqual(self.rollouts_health(), b"\x08\x02")  # NOT_SERVING
        finally:
            os.rename(state + ".away", state)
        self.d.cli("refresh")  # tries the store again (so does every poll)
        self.assertEqual(self.status()["state_store_error"], "")
        self.assertNotIn("NOT ACTING", self.d.cli("status", check=False).stdout)
        self.assertEqual(self.rollouts_health(), b"\x08\x01")  # SERVING
        self.assertIn("rollouts are halted and none starts until it can", self.d.log())
        self.assertIn("the state store takes writes again", self.d.log())

    def rollouts_health(self):
        # grpc.health.v1.Health/Check{service}: status is field 1 (1 SERVING, 2 NOT_SERVING).
        import grpc
        name = b"lockstep.v1.Lockstep/rollouts"
        with grpc.insecure_channel(self.d.server) as channel:
            check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                        request_serializer=lambda _: b"\x0a" + bytes([len(name)]) + name,
                                        response_deserializer=lambda b: b)
            return check(None, timeout=5)

class WatchFleet(unittest.TestCase):
    """lockstepd on one SQLite database of an approval-gated environment,
    with the watch caps CAPS."""

    CAPS = ""

    def setUp(self):
        from lockstepd import Lockstepd
        self.dir = tempfile.mkdtemp(prefix="lockstep-watch-caps-")
        shutil.copytree(os.path.join(ROOT, "migrations", "example"),
                        os.path.join(self.dir, "project"))
        subprocess.run(["/usr/bin/alembic", "-c", os.path.join(self.dir, "project", "alembic.ini"),
                        "-x", "url=sqlite:///%s/a.db" % self.dir, "upgrade", AGE],
                       check=True, capture_output=True)
        grpc_port = free_port()
        config = os.path.join(self.dir, "fleet.yaml")
        with open(config, "w") as f:
            f.write("""
server: {listen: "127.0.0.1:%d", metrics_listen: "127.0.0.1:%d", state: state.db,
         poll_interval: 1h %s}
project: {alembic_ini: project/alembic.ini, alembic_command: [/usr/bin/alembic]}
environments:
  - name: prod
    approval: required
    databases: [{name: a, url: "sqlite:///a.db"}]
""" % (grpc_port, free_port(), self.CAPS))
        self.d = Lockstepd(BUILD, config, "127.0.0.1:%d" % grpc_port).start()

    def tearDown(self):
        self.d.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class WatchCapsTest(WatchFleet):
    """One client may hold server.max_watch_streams_per_client WatchRollout
    streams; one more is refused with RESOURCE_EXHAUSTED while the others go
    on being served."""

    CAPS = ", max_watch_streams: 10, max_watch_streams_per_client: 2"

    def test_one_stream_too_many_is_refused_and_the_others_are_served(self):
        from lockstepd import grpc_stubs, wire_name
        import grpc
        pb2, pb2_grpc = grpc_stubs(os.path.join(self.dir, "stubs"))
        stub = pb2_grpc.LockstepStub(grpc.insecure_channel(self.d.server))
        out = self.d.cli("rollout", "--to", "heads", "-o", "json").stdout
        rid = json.loads(out)["id"]
        held = [stub.WatchRollout(pb2.WatchRolloutRequest(id=rid), timeout=60) for _ in range(2)]
        for stream in held:
            self.assertEqual(wire_name(pb2.EventKind, next(stream).kind), "rollout_started")
        extra = stub.WatchRollout(pb2.WatchRolloutRequest(id=rid), timeout=60)
        with self.assertRaises(grpc.RpcError) as e:
            next(extra)
        self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("server.max_watch_streams_per_client", e.exception.details())
        # The two held streams go on to the end of the rollout.
        self.d.cli("approve", rid, "--actor", "alice")
        for stream in held:
            kinds = [wire_name(pb2.EventKind, ev.kind) for ev in stream]
            self.assertEqual(kinds[-1], "rollout_finished", kinds)
        # Places are given back when streams end.
        again = stub.WatchRollout(pb2.WatchRolloutRequest(id=rid), timeout=60)
        self.assertEqual(wire_name(pb2.EventKind, next(again).kind), "rollout_started")
        again.cancel()


class ManyWatchersTest(WatchFleet):
    """A WatchRollout stream holds no server thread (gRPC's callback API and
    one hub thread): 300 held streams, most of them never read, add few
    threads; every stream that reads gets the whole rollout, and lockstepd
    stops promptly with them open."""

    CAPS = ", max_watch_streams: 1000, max_watch_streams_per_client: 1000"
    STREAMS = 300

    def threads(self):
        return len(os.listdir("/proc/%d/task" % self.d.proc.pid))

    def test_held_streams_hold_no_threads(self):
        from lockstepd import grpc_stubs, wire_name
        import grpc
        pb2, pb2_grpc = grpc_stubs(os.path.join(self.dir, "stubs"))
        rid = json.loads(self.d.cli("rollout", "--to", "heads", "-o", "json").stdout)["id"]
        before = self.threads()
        channels = [grpc.insecure_channel(self.d.server) for _ in range(4)]
        stubs = [pb2_grpc.LockstepStub(c) for c in channels]
        streams = [stubs[i % 4].WatchRollout(pb2.WatchRolloutRequest(id=rid), timeout=120)
                   for i in range(self.STREAMS)]
        # Every stream is open and has had its first event.
        for stream in streams:
            self.assertEqual(wire_name(pb2.EventKind, next(stream).kind), "rollout_started")
        held = self.threads()
        self.assertLess(held - before, 20, "%d threads before, %d with %d streams"
                        % (before, held, self.STREAMS))
        # The rollout runs with all of them attached; ten read it to the end.
        self.d.cli("approve", rid, "--actor", "alice")
        for stream in streams[:10]:
            kinds = [wire_name(pb2.EventKind, ev.kind) for ev in stream]
            self.assertEqual(kinds[-1], "rollout_finished", kinds)
            self.assertIn("verified", kinds)
        # A new watcher of the ended rollout gets all of it, and ends.
        late = [wire_name(pb2.EventKind, ev.kind)
                for ev in stubs[0].WatchRollout(pb2.WatchRolloutRequest(id=rid), timeout=60)]
        self.assertEqual(late[0], "rollout_started")
        self.assertEqual(late[-1], "rollout_finished")
        # lockstepd stops with the rest still open (their messages unread).
        start = time.time()
        self.d.stop()
        self.assertLess(time.time() - start, 10)
        self.assertEqual(self.d.proc.returncode, 0, self.d.log()[-2000:])
        for c in channels:
            c.close()


if __name__ == "__main__":
    unittest.main()


class PollingTest(unittest.TestCase):
    """The poll loop itself (the other tests poll once an hour and ask for a
    refresh): with poll_interval 1s and nobody asking, a change made by hand
    is seen, and the schema verdicts follow from the schema pass on its own
    thread; GetGraph answers from the same project."""

    def test_changes_by_hand_are_seen_and_judged_without_asking(self):
        from lockstepd import Lockstepd
        import grpc
        work = tempfile.mkdtemp(prefix="lockstep-poll-")
        self.addCleanup(shutil.rmtree, work, True)
        shutil.copytree(os.path.join(ROOT, "migrations", "example"), os.path.join(work, "project"))
        ini = os.path.join(work, "project", "alembic.ini")

        def alembic(db, *args):
            subprocess.run(["/usr/bin/alembic", "-c", ini, "-x",
                            "url=sqlite:///%s/%s.db" % (work, db)] + list(args),
                           check=True, capture_output=True)
        for db in ("a", "b", "c"):
            alembic(db, "upgrade", AGE)
        grpc_port = free_port()
        config = os.path.join(work, "fleet.yaml")
        with open(config, "w") as f:
            f.write("""
server: {listen: "127.0.0.1:%d", metrics_listen: "127.0.0.1:%d", state: state.db,
         poll_interval: 1s, schema_interval: 1h}
project: {alembic_ini: project/alembic.ini}
environments:
  - name: prod
    databases:
      - {name: a, url: "sqlite:///a.db"}
      - {name: b, url: "sqlite:///b.db"}
      - {name: c, url: "sqlite:///c.db"}
""" % (grpc_port, free_port()))
        d = Lockstepd(BUILD, config, "127.0.0.1:%d" % grpc_port).start()
        self.addCleanup(d.stop)

        def databases():
            out = json.loads(d.cli("status", "-o", "json", check=False).stdout or "{}")
            return {x["database"]: x for x in out.get("databases", [])}

        def wait(predicate, what):
            deadline = time.time() + 60
            while time.time() < deadline:
                dbs = databases()
                if dbs and predicate(dbs):
                    return dbs
                time.sleep(0.2)
            self.fail("timed out waiting for " + what + ": " + json.dumps(databases())[:2000])

        judged = lambda x: x["schema"]["state"] == "match"  # noqa: E731
        wait(lambda dbs: all(judged(x) for x in dbs.values()), "every schema judged at start")
        # By hand, nobody asking lockstepd: an upgrade, and a table dropped.
        alembic("a", "upgrade", "heads")
        with sqlite3.connect(os.path.join(work, "c.db")) as conn:
            conn.execute("CREATE TABLE by_hand (id INTEGER)")
        dbs = wait(lambda dbs: dbs["a"]["revisions"] == [HEAD] and judged(dbs["a"]),
                   "the upgrade by hand seen and its schema judged")
        self.assertEqual(dbs["a"]["state"], "current")
        self.assertEqual(dbs["b"]["state"], "behind")
        # c's rows did not change: its schema is read at schema_interval (1h),
        # so its verdict stands until then (or `lockstep refresh`).
        self.assertEqual(dbs["c"]["schema"]["state"], "match")
        self.assertIn("refreshed 3 databases", d.log())

        pb2, pb2_grpc = grpc_stubs(os.path.join(work, "stubs"))
        stub = pb2_grpc.LockstepStub(grpc.insecure_channel(d.server))
        graph = stub.GetGraph(pb2.GetGraphRequest(), timeout=10)
        self.assertEqual(list(graph.heads), [HEAD])
        self.assertEqual(len(graph.revisions), 5)
        self.assertIn("3f2a1b9c0d11", graph.bases)
