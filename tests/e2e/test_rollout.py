"""End to end: rollouts. lockstepd as a process, driven by the lockstep CLI,
moving real SQLite files and real PostgreSQL databases with real Alembic.

Covers: a three-environment rollout (canary, waves, soak, promotion gate,
approval); a migration failing half-way (SQLite keeps the partial DDL and is
restored from its backup; PostgreSQL rolls back); the target lock (flock on
the SQLite file held by another process, with Alembic still free to run; a
legacy .lockstep-lock; a second lockstepd; a PostgreSQL session);
kill -9 of lockstepd mid-wave and a restart (every step applied exactly
once, no Alembic left behind); abort during a long migration; downgrade;
restore (refused without --yes when the database changed; a safety backup
first; who restored), and a corrupted backup refused.

Run: LOCKSTEP_BUILD=build python3 -m unittest -v tests/e2e/test_rollout.py
"""
import hashlib
import json
import os
import shutil
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
from lockstepd import Lockstepd, alive, cmdline  # noqa: E402
from pgserver import PgServer, free_port  # noqa: E402

BUILD = os.path.abspath(os.environ.get("LOCKSTEP_BUILD", os.path.join(ROOT, "build")))
HEAD = "e9a8c6b4d244"   # the example project's head (a merge)
AGE = "7c4e2d8a9b22"    # users + age
USERS = "3f2a1b9c0d11"  # users only
SECRET = "rollout-Pw-9x"
ADVISORY_KEY = 0x6C6F636B73746570  # "lockstep": the key every lockstepd locks with

# Extra revisions on top of the example project, for failures and slowness.
FAILING = '''"""a migration that fails half-way

Revision ID: f0a11f0a11f0
Revises: e9a8c6b4d244
"""
from alembic import op
import sqlalchemy as sa

revision = "f0a11f0a11f0"
down_revision = "e9a8c6b4d244"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("SELECT no_such_column FROM users")


def downgrade():
    op.drop_table("half_done")
'''

SLOW = '''"""a slow migration that logs each run

Revision ID: 5105105105aa
Revises: e9a8c6b4d244
"""
import os
import time

from alembic import op

revision = "5105105105aa"
down_revision = "e9a8c6b4d244"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("CREATE TABLE IF NOT EXISTS run_log (rev TEXT)")
    # A write first: the sleep below runs inside an open transaction, so a
    # kill leaves SQLite a hot journal to roll back.
    op.execute("CREATE TABLE IF NOT EXISTS heartbeat (at TEXT)")
    op.execute("INSERT INTO heartbeat VALUES ('started')")
    slow = op.get_bind().engine.url.database + ".slow"
    if os.path.exists(slow):
        with open(slow) as f:
            time.sleep(float(f.read()))
    op.execute("INSERT INTO run_log VALUES ('5105105105aa')")


def downgrade():
    op.execute("DROP TABLE run_log")
    op.execute("DROP TABLE heartbeat")
'''


BACKGROUND = '''"""a migration that leaves a child running, holding Alembic's output

Revision ID: b9b9b9b9b9b9
Revises: e9a8c6b4d244
"""
import subprocess

from alembic import op

revision = "b9b9b9b9b9b9"
down_revision = "e9a8c6b4d244"
branch_labels = None
depends_on = None


def upgrade():
    child = subprocess.Popen(["sleep", "300"])  # inherits stdout and stderr
    op.execute("CREATE TABLE bg_child (pid INTEGER)")
    op.execute("INSERT INTO bg_child VALUES (%d)" % child.pid)


def downgrade():
    op.execute("DROP TABLE bg_child")
'''

CHATTY = '''"""a migration that prints 5,000 lines (about 390 KB)

Revision ID: c4a77e4c4a77
Revises: e9a8c6b4d244
"""
import sys

from alembic import op

revision = "c4a77e4c4a77"
down_revision = "e9a8c6b4d244"
branch_labels = None
depends_on = None


def upgrade():
    for i in range(5000):
        print("copied batch %05d of 05000" % i + " ." * 25, file=sys.stderr if i % 2 else sys.stdout)
    op.execute("CREATE TABLE chatty (id INTEGER)")


def downgrade():
    op.execute("DROP TABLE chatty")
'''


def sqlite_rows(path, sql="SELECT version_num FROM alembic_version"):
    with sqlite3.connect(path) as c:
        return sorted(r[0] for r in c.execute(sql))


def sqlite_tables(path):
    return sqlite_rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")


class Fleet:
    """A temp folder with a copy of the example project (plus extra
    revisions), databases made with real Alembic, an inventory, a lockstepd."""

    def __init__(self, extra_revisions=()):
        self.dir = tempfile.mkdtemp(prefix="lockstep-rollout-")
        self.project = os.path.join(self.dir, "project")
        shutil.copytree(os.path.join(ROOT, "migrations", "example"), self.project)
        for name, text in extra_revisions:
            with open(os.path.join(self.project, "versions", name), "w") as f:
                f.write(text)
        self.ini = os.path.join(self.project, "alembic.ini")
        self.daemons = []

    def alembic(self, url, *args, check=True):
        return subprocess.run(["/usr/bin/alembic", "-c", self.ini, "-x", "url=" + url] + list(args),
                              check=check, capture_output=True, text=True)

    def sqlite(self, name, revision):
        path = os.path.join(self.dir, name + ".db")
        if revision:
            self.alembic("sqlite:///" + path, "upgrade", revision)
        return path

    def daemon(self, environments, state="state.db", env=None, name="fleet",
               alembic_command="/usr/bin/alembic", runner="process", server_extra="",
               step_timeout="2m", project_extra=""):
        grpc_port, metrics_port = free_port(), free_port()
        config = os.path.join(self.dir, name + ".yaml")
        with open(config, "w") as f:
            f.write("""
server:
  listen: 127.0.0.1:%d
  metrics_listen: 127.0.0.1:%d
  state: %s
  poll_interval: 1h
  backup_dir: backups
  backup_keep: 3
%sproject:
  alembic_ini: project/alembic.ini
  alembic_command: [%s]
  alembic_runner: %s
  python: /usr/bin/python3
  step_timeout: %s
%senvironments:
%s""" % (grpc_port, metrics_port, state, server_extra, alembic_command, runner, step_timeout,
       project_extra, environments))
        d = Lockstepd(BUILD, config, "127.0.0.1:%d" % grpc_port, env=env).start()
        d.metrics_port = metrics_port
        self.daemons.append(d)
        return d

    def close(self):
        for d in self.daemons:
            if d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def rollout_json(d, *args):
    p = d.cli(*args, "-o", "json", check=False)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else None


def steps_by_db(rollout):
    return {(s["environment"], s["database"]): s for s in rollout["steps"]}


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


class ThreeEnvironmentRolloutTest(unittest.TestCase):
    """dev (SQLite) -> staging (PostgreSQL, soak) -> prod (SQLite tenants:
    canary, waves, approval, backups)."""

    @classmethod
    def setUpClass(cls):
        cls.f = Fleet()
        cls.pg = PgServer().__enter__()
        cls.pg.create_database("staging_app")
        cls.pg.psql("CREATE ROLE app LOGIN PASSWORD '%s'" % SECRET)
        cls.pg.psql("ALTER DATABASE staging_app OWNER TO app")
        cls.staging_url = cls.pg.url("staging_app", "app", SECRET)
        cls.f.alembic(cls.staging_url, "upgrade", AGE)
        cls.dev = cls.f.sqlite("dev", AGE)
        cls.tenants = {t: cls.f.sqlite("prod-" + t, AGE) for t in ("t1", "t2", "t3", "t4", "t5")}
        # Alembic through a wrapper that records what it was given.
        cls.wrapper = os.path.join(cls.f.dir, "recording-alembic")
        with open(cls.wrapper, "w") as f:
            f.write('#!/bin/sh\nprintf "%%s\\n" "$*" >> "%s/argv.log"\n'
                    'printf "PGPASSWORD=%%s DATABASE_URL=%%s\\n" "$PGPASSWORD" "$DATABASE_URL" >> "%s/env.log"\n'
                    'exec /usr/bin/alembic "$@"\n' % (cls.f.dir, cls.f.dir))
        os.chmod(cls.wrapper, 0o755)
        cls.d = cls.f.daemon("""
  - name: dev
    databases: [{name: app, url: "sqlite:///dev.db"}]
  - name: staging
    after: dev
    soak: 2s
    databases:
      - {name: app, url: "postgresql://app@127.0.0.1:%d/staging_app", password_env: STAGING_PW}
  - name: prod
    after: staging
    approval: required
    backup: required
    canary: [t3]
    batch_size: 2
    max_parallel: 2
    databases:
%s""" % (cls.pg.port, "".join('      - {name: %s, url: "sqlite:///prod-%s.db"}\n' % (t, t)
                              for t in cls.tenants)), env={"STAGING_PW": SECRET},
                             alembic_command=cls.wrapper)

    @classmethod
    def tearDownClass(cls):
        cls.f.close()
        cls.pg.__exit__(None, None, None)

    def test_1_plan_shows_stages_and_changes_nothing(self):
        rc, plan = rollout_json(self.d, "plan", "--to", "heads")
        self.assertEqual(rc, 0, plan)
        # A plan, not a rollout: no id, no state, nothing that happened yet.
        self.assertEqual(sorted(plan), ["blocked", "kind", "notes", "overridden", "problems",
                                        "stages", "steps", "target", "target_revisions"])
        self.assertNotIn("state", plan["steps"][0])
        self.assertNotIn("state", plan["stages"][0])
        self.assertEqual([s["environment"] for s in plan["stages"]], ["dev", "staging", "prod"])
        prod = [s for s in plan["steps"] if s["environment"] == "prod"]
        self.assertEqual([(s["database"], s["wave"], s["canary"]) for s in prod],
                         [("t3", 0, True), ("t1", 1, False), ("t2", 1, False),
                          ("t4", 2, False), ("t5", 2, False)])
        self.assertEqual(prod[0]["path"], ["b5d1e7f3a033", "c2e4a6b8d055", HEAD])
        self.assertEqual(prod[0]["expected"], [HEAD])
        self.assertEqual(sqlite_rows(self.dev), [AGE])
        self.assertEqual(rollout_json(self.d, "rollouts")[1]["rollouts"], [])
        # Promotion: prod alone is refused while staging lacks the target ...
        p = self.d.cli("plan", "--to", "heads", "--env", "prod", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("promotion: prod comes after staging, but staging/app does not hold heads", p.stderr)
        rc, blocked = rollout_json(self.d, "plan", "--to", "heads", "--env", "prod")
        self.assertEqual(rc, 1)
        self.assertTrue(blocked["blocked"])
        self.assertEqual(blocked["problems"], [{
            "database": "", "code": "promotion",
            "message": "prod comes after staging, but staging/app does not hold heads yet (3 pending)"}])
        self.assertEqual(len(blocked["steps"]), 5)  # what it would do, once unblocked
        # ... unless overridden, which is said in the plan.
        rc, plan = rollout_json(self.d, "plan", "--to", "heads", "--env", "prod", "--override-promotion")
        self.assertEqual(rc, 0)
        self.assertFalse(plan["blocked"])
        self.assertEqual([p["code"] for p in plan["overridden"]], ["promotion"])
        self.assertIn("staging/app does not hold heads", plan["overridden"][0]["message"])
        # Unknown targets and environments name what is wrong.
        p = self.d.cli("plan", "--to", "nosuchrev", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("target 'nosuchrev'", p.stderr)
        self.assertIn("Can't locate revision identified by 'nosuchrev'", p.stderr)
        p = self.d.cli("plan", "--env", "qa", check=False)
        self.assertIn("no environment 'qa'", p.stderr)

    def test_2_rollout_soaks_waits_for_approval_then_completes(self):
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--watch", "--actor", "ci-bot")
        self.assertEqual(rc, 6, r)  # awaiting approval
        self.assertEqual(r["state"], "awaiting_approval")
        self.assertEqual(r["created_by"], "ci-bot")
        self.assertEqual(sqlite_rows(self.dev), [HEAD])
        staging_rows = self.pg.psql("SELECT version_num FROM alembic_version", db="staging_app")
        self.assertEqual(staging_rows.split(), [HEAD])
        for t, path in self.tenants.items():
            self.assertEqual(sqlite_rows(path), [AGE], t)  # nothing in prod before approval
        # Prod's tenants are behind: they have their own series now (a clean
        # database has none, server.metrics_per_database: not_clean).
        behind_metrics = urllib.request.urlopen(
            "http://127.0.0.1:%d/metrics" % self.d.metrics_port).read().decode()
        stages = {s["environment"]: s for s in r["stages"]}
        self.assertEqual(stages["dev"]["state"], "succeeded")
        self.assertEqual(stages["staging"]["state"], "succeeded")
        # staging started only after dev had soaked for 2 s.
        dev_done = stages["dev"]["finished_at"]
        staging_start = stages["staging"]["started_at"]
        self.assertGreaterEqual(time.mktime(time.strptime(staging_start, "%Y-%m-%dT%H:%M:%SZ")) -
                                time.mktime(time.strptime(dev_done, "%Y-%m-%dT%H:%M:%SZ")), 1)
        # A second rollout on these environments is refused while this one is active.
        p = self.d.cli("rollout", "--to", "heads", "--env", "prod", "--override-promotion", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("already has an active rollout", p.stderr)

        # Paused and resumed while it waits, it waits again (not "running").
        self.d.cli("pause", r["id"])
        self.assertEqual(rollout_json(self.d, "rollout", r["id"])[1]["state"], "paused")
        self.d.cli("resume", r["id"])
        self.assertEqual(rollout_json(self.d, "rollout", r["id"])[1]["state"], "awaiting_approval")
        self.d.cli("approve", r["id"], "--actor", "alice")
        rc, done = rollout_json(self.d, "watch", r["id"])
        self.assertEqual(rc, 0, done)
        self.assertEqual(done["state"], "succeeded")
        prod_stage = [s for s in done["stages"] if s["environment"] == "prod"][0]
        self.assertEqual(prod_stage["approved_by"], "alice")
        for t, path in self.tenants.items():
            self.assertEqual(sqlite_rows(path), [HEAD], t)
        # Canary first, alone; then waves of 2, never more than 2 at once.
        steps = [s for s in done["steps"] if s["environment"] == "prod"]
        canary = steps[0]
        self.assertEqual(canary["database"], "t3")
        for s in steps[1:]:
            self.assertGreaterEqual(s["started_at"], canary["finished_at"])
        waves = {}
        for s in steps:
            waves.setdefault(s["wave"], []).append(s)
        for w in sorted(waves)[1:]:
            prev_end = max(s["finished_at"] for s in waves[w - 1])
            self.assertTrue(all(s["started_at"] >= prev_end for s in waves[w]))
        # Every prod step took a backup, catalogued with a checksum of the real file.
        backups = rollout_json(self.d, "backups", "prod")[1]["backups"]
        self.assertEqual(sorted(b["database"] for b in backups), sorted(self.tenants))
        for b in backups:
            self.assertEqual(b["revisions"], [AGE])
            with open(b["path"], "rb") as f:
                data = f.read()
            self.assertEqual(b["size_bytes"], len(data))
            self.assertEqual(b["sha256"], hashlib.sha256(data).hexdigest())
            self.assertEqual(sqlite_rows(b["path"]), [AGE])
        # A late watcher gets every event again, in order.
        text = self.d.cli("watch", r["id"]).stdout
        for kind in ("rollout_started", "soaking", "awaiting_approval", "approved", "backup_taken",
                     "verified", "rollout_finished"):
            self.assertIn("  " + kind + "  ", text)
        self.assertLess(text.index("awaiting_approval"), text.index("approved"))
        # Status agrees; metrics count what happened.
        fleet = json.loads(self.d.cli("status", "-o", "json").stdout)
        self.assertTrue(all(db["state"] == "current" for db in fleet["databases"]), fleet)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.d.metrics_port).read().decode()
        self.assertIn('lockstep_rollouts_total{result="succeeded"} 1', metrics)
        self.assertIn('lockstep_rollout_steps_total{environment="prod",result="succeeded"} 5', metrics)
        self.assertIn("lockstep_rollouts_active 0", metrics)
        self.assertIn('lockstep_backup_size_bytes_count{environment="prod"} 5', metrics)
        self.assertNotIn(SECRET, metrics)
        # Now every database is clean: no per-database series, counts only.
        self.assertNotIn("lockstep_database_up{", metrics)
        self.assertIn('lockstep_environment_databases{environment="prod",state="current"} 5',
                      metrics)
        # Every metric the shipped alert rules use is one lockstepd exports
        # (the per-database ones while some database is not clean).
        import re
        with open(os.path.join(ROOT, "deploy", "prometheus", "lockstep-alerts.yml")) as f:
            used = set(re.findall(r"\b(lockstep_[a-z_]+)", f.read()))
        exported = set(re.findall(r"^(lockstep_[a-z_]+)", metrics + behind_metrics, re.M))
        self.assertTrue(used, "no metrics found in the alert rules")
        self.assertEqual(used - exported, set())
        self.assertNotIn(SECRET, self.d.log())
        self.assertNotIn(SECRET, self.d.cli("rollout", r["id"], "-o", "json").stdout)
        # The password reached Alembic through its environment, never its argv.
        with open(os.path.join(self.f.dir, "argv.log")) as f:
            argv = f.read()
        with open(os.path.join(self.f.dir, "env.log")) as f:
            env = f.read()
        self.assertNotIn(SECRET, argv)
        self.assertIn("-x url=postgresql://app@127.0.0.1:%d/staging_app upgrade heads" % self.pg.port, argv)
        self.assertIn("PGPASSWORD=" + SECRET, env)

    def test_3_downgrade_one_database_with_backup_then_restore(self):
        rc, r = rollout_json(self.d, "downgrade", "prod/t1", "--to", AGE)
        # prod's approval policy holds a downgrade as it holds a rollout.
        self.assertEqual(rc, 6, r)
        self.assertEqual(r["state"], "awaiting_approval")
        self.assertEqual(sqlite_rows(self.tenants["t1"]), [HEAD])
        self.d.cli("approve", r["id"], "--actor", "oncall")
        rc, r = rollout_json(self.d, "watch", r["id"])
        self.assertEqual(rc, 0, r)
        self.assertEqual(r["kind"], "downgrade")
        self.assertEqual(r["stages"][0]["approved_by"], "oncall")
        step = r["steps"][0]
        self.assertIn(AGE, step["expected"])
        self.assertEqual(sqlite_rows(self.tenants["t1"]), step["expected"])  # what Alembic left
        self.assertNotEqual(step["expected"], [HEAD])
        backup_id = r["steps"][0]["backup_id"]
        self.assertGreater(backup_id, 0)
        self.d.cli("refresh")
        # Restoring the backup taken before the downgrade brings HEAD back;
        # prod's approval policy holds a restore as it holds a downgrade.
        rc, restore = rollout_json(self.d, "restore", str(backup_id), "--yes", "--actor", "dora")
        self.assertEqual(rc, 6, restore)
        self.assertEqual((restore["kind"], restore["target"]), ("restore", "backup %d" % backup_id))
        self.assertEqual(restore["state"], "awaiting_approval")
        self.assertEqual(sqlite_rows(self.tenants["t1"]), step["expected"])  # nothing yet
        self.d.cli("approve", restore["id"], "--actor", "oncall")
        rc, restore = rollout_json(self.d, "watch", restore["id"])
        self.assertEqual(rc, 0, restore)
        self.assertEqual(restore["reason"], "prod/t1 now holds [%s]" % HEAD)
        self.assertEqual(restore["stages"][0]["approved_by"], "oncall")
        safety = restore["steps"][0]["backup_id"]
        self.assertGreater(safety, backup_id)
        self.assertEqual(sqlite_rows(self.tenants["t1"]), [HEAD])
        backups = {b["id"]: b for b in rollout_json(self.d, "backups", "prod/t1")[1]["backups"]}
        self.assertEqual(backups[backup_id]["restored_by"], "dora")
        self.assertEqual(backups[safety]["safety_for"], backup_id)
        # Its history names what changed it each time: the rollout of
        # test_2, this downgrade, this restore.
        self.d.cli("refresh")
        history = self.d.cli("db", "prod/t1").stdout
        self.assertRegex(history, r"-> %s  \(restore of backup %d by dora, %s\)" % (
            HEAD, backup_id, restore["id"]))
        self.assertRegex(history, r"%s -> \S+  \(downgrade %s\)" % (HEAD, r["id"]))
        self.assertRegex(history, r"-> %s  \(upgrade r-\d{8}-\d{6}-[0-9a-f]{4}\)" % HEAD)
        self.assertRegex(history, r"\d\dZ  first seen holding \S+\n")
        changes = json.loads(self.d.cli("db", "prod/t1", "-o", "json").stdout)["changes"]
        self.assertEqual((changes[0]["restored_backup"], changes[0]["restored_by"]),
                         (backup_id, "dora"))
        self.assertEqual((changes[1]["rollout_id"], changes[1]["rollout_kind"]),
                         (r["id"], "downgrade"))
        self.assertTrue(changes[-1]["first_seen"])

    def test_5_postgresql_backup_restores_with_pg_restore(self):
        backups = rollout_json(self.d, "backups", "staging/app")[1]["backups"]
        self.assertEqual(len(backups), 1)
        self.assertTrue(backups[0]["path"].endswith(".pgdump"))
        rc, out = rollout_json(self.d, "restore", str(backups[0]["id"]), "--yes")
        self.assertEqual(rc, 0, out)
        self.assertEqual(out["revisions"], [AGE])
        self.assertEqual(self.pg.psql("SELECT version_num FROM alembic_version", db="staging_app").split(),
                         [AGE])
        tables = self.pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                              db="staging_app").split()
        self.assertNotIn("orders", tables)  # created by a revision after AGE
        self.assertIn("users", tables)

    def test_6_bad_requests_get_clear_grpc_errors(self):
        import grpc
        from lockstepd import grpc_stubs
        pb2, pb2_grpc = grpc_stubs(os.path.join(self.f.dir, "stubs"))
        stub = pb2_grpc.LockstepStub(grpc.insecure_channel(self.d.server))
        cases = [
            (lambda: stub.GetRollout(pb2.GetRolloutRequest(id="r-nope"), timeout=5),
             grpc.StatusCode.NOT_FOUND, "no rollout 'r-nope'"),
            (lambda: stub.ApproveRollout(pb2.RolloutActionRequest(id=""), timeout=5),
             grpc.StatusCode.INVALID_ARGUMENT, "id is required"),
            (lambda: list(stub.WatchRollout(pb2.WatchRolloutRequest(id="r-nope"), timeout=5)),
             grpc.StatusCode.NOT_FOUND, "no rollout"),
            (lambda: stub.Downgrade(pb2.DowngradeRequest(environment="prod"), timeout=5),
             grpc.StatusCode.INVALID_ARGUMENT, "required"),
            (lambda: stub.Downgrade(pb2.DowngradeRequest(environment="prod", database="t9",
                                                         target=AGE), timeout=30),
             grpc.StatusCode.NOT_FOUND, "no database 'prod/t9'"),
            (lambda: stub.RestoreBackup(pb2.RestoreBackupRequest(id=0), timeout=5),
             grpc.StatusCode.INVALID_ARGUMENT, "backup id"),
            (lambda: stub.StartRollout(pb2.StartRolloutRequest(target="heads", databases=["zz*"]),
                                       timeout=30),
             grpc.StatusCode.INVALID_ARGUMENT, "matches no database"),
            (lambda: stub.StartRollout(pb2.StartRolloutRequest(environments=["prod"]), timeout=30),
             grpc.StatusCode.INVALID_ARGUMENT, "target is required"),
            # Oversize input is refused at once, named, never echoed.
            (lambda: stub.PlanRollout(pb2.StartRolloutRequest(target="x" * 600), timeout=5),
             grpc.StatusCode.INVALID_ARGUMENT, "target is 600 bytes; at most 512"),
            (lambda: stub.PlanRollout(pb2.StartRolloutRequest(databases=["t*"] * 5000), timeout=5),
             grpc.StatusCode.INVALID_ARGUMENT, "databases has 5000 entries; at most 1000"),
            (lambda: stub.GetFleet(pb2.GetFleetRequest(labels={"k": "v" * 900}), timeout=5),
             grpc.StatusCode.INVALID_ARGUMENT, "labels[0].value is 900 bytes"),
            (lambda: stub.PlanRollout(pb2.StartRolloutRequest(target="x" * 3_000_000), timeout=5),
             grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
        ]
        # Starting without --to is a usage error: a rollout is never defaulted.
        p = self.d.cli("rollout", "--env", "prod", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--to REV is required", p.stderr)
        for call, code, text in cases:
            with self.assertRaises(grpc.RpcError) as e:
                call()
            self.assertEqual(e.exception.code(), code, e.exception.details())
            self.assertIn(text, e.exception.details())
        finished = rollout_json(self.d, "rollouts")[1]["rollouts"][-1]["id"]
        with self.assertRaises(grpc.RpcError) as e:
            stub.PauseRollout(pb2.RolloutActionRequest(id=finished), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("has already ended", e.exception.details())
        self.assertIsNone(self.d.proc.poll())  # still serving

    def test_4_corrupted_backup_is_refused(self):
        backups = rollout_json(self.d, "backups", "prod/t2")[1]["backups"]
        b = backups[0]
        with open(b["path"], "r+b") as f:
            f.seek(200)
            f.write(b"\x00garbage\x00")
        before = sqlite_rows(self.tenants["t2"])
        p = self.d.cli("restore", str(b["id"]), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("backup %d is corrupted" % b["id"], p.stderr)
        self.assertIn("Refusing to restore it", p.stderr)
        self.assertEqual(sqlite_rows(self.tenants["t2"]), before)
        p = self.d.cli("restore", "999999", check=False)
        self.assertIn("no backup 999999", p.stderr)


class FailureAndLockTest(unittest.TestCase):
    """A migration that fails half-way, on SQLite and PostgreSQL; locks."""
    runner = "process"

    @classmethod
    def setUpClass(cls):
        cls.f = Fleet([("f0a11f0a11f0_fails.py", FAILING)])
        cls.pg = PgServer().__enter__()
        cls.pg.create_database("prod_app")
        cls.pg_url = cls.pg.url("prod_app")
        cls.f.alembic(cls.pg_url, "upgrade", HEAD)
        cls.lite = cls.f.sqlite("lite", HEAD)
        cls.other = cls.f.sqlite("other", HEAD)
        cls.envs = """
  - name: pg
    databases: [{name: app, url: "postgresql://postgres@127.0.0.1:%d/prod_app"}]
  - name: lite
    max_failures: 0
    max_parallel: 1
    databases:
      - {name: a-lite, url: "sqlite:///lite.db"}
      - {name: b-other, url: "sqlite:///other.db"}
  - name: locks
    databases: [{name: app, url: "sqlite:///locked.db"}]
  - name: dg
    on_failure: downgrade
    databases: [{name: app, url: "sqlite:///dg.db"}]
""" % cls.pg.port
        cls.locked = cls.f.sqlite("locked", HEAD)
        cls.dg = cls.f.sqlite("dg", HEAD)
        cls.d = cls.f.daemon(cls.envs, runner=cls.runner)

    @classmethod
    def tearDownClass(cls):
        cls.f.close()
        cls.pg.__exit__(None, None, None)

    def test_1_sqlite_partial_ddl_is_restored_from_backup(self):
        # Real Alembic on a copy: the failure leaves the table behind on SQLite.
        probe = os.path.join(self.f.dir, "probe.db")
        shutil.copy(self.lite, probe)
        self.assertNotEqual(self.f.alembic("sqlite:///" + probe, "upgrade", "heads", check=False).returncode, 0)
        self.assertIn("half_done", sqlite_tables(probe))
        self.assertEqual(sqlite_rows(probe), [HEAD])

        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--env", "lite", "--watch")
        self.assertEqual(rc, 5, r)  # halted: max_failures 0
        steps = steps_by_db(r)
        failed = steps[("lite", "a-lite")]
        self.assertEqual(failed["state"], "failed")
        # The cause, from Alembic's output, in every view of the rollout.
        cause = "sqlite3.OperationalError: no such column: no_such_column"
        self.assertIn("Alembic exit 1: " + cause + "; the version rows are unchanged", failed["error"])
        self.assertEqual(failed["rollback"], "restored")
        self.assertEqual(failed["exit_code"], 1)
        self.assertIn(cause, r["reason"])
        for view in (("rollout", r["id"]), ("watch", r["id"]), ("rollouts",)):
            self.assertIn(cause, self.d.cli(*view, check=False).stdout, view)
        self.assertNotIn("half_done", sqlite_tables(self.lite))
        self.assertEqual(sqlite_rows(self.lite), [HEAD])
        skipped = steps[("lite", "b-other")]
        self.assertEqual(skipped["state"], "skipped")
        self.assertIn("halted: 1 failed in lite, more than max_failures 0", skipped["error"])
        self.assertEqual(sqlite_rows(self.other), [HEAD])

    def test_2_postgresql_rolls_back(self):
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--env", "pg", "--watch")
        self.assertEqual(rc, 5, r)
        step = r["steps"][0]
        self.assertEqual(step["state"], "failed")
        self.assertIn("psycopg2.errors.UndefinedColumn: column \"no_such_column\" does not exist",
                      step["error"])
        self.assertEqual(step["rollback"], "rolled_back")
        tables = self.pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                              db="prod_app").split()
        self.assertNotIn("half_done", tables)
        self.assertEqual(self.pg.psql("SELECT version_num FROM alembic_version", db="prod_app").split(),
                         [HEAD])

    def test_2b_on_failure_downgrade_runs_alembic_back_to_the_start(self):
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--env", "dg", "--watch")
        self.assertEqual(rc, 5, r)
        step = r["steps"][0]
        self.assertEqual(step["rollback"], "downgraded")
        self.assertEqual(step["backup_id"], 0)  # no backup: not required, policy is downgrade
        self.assertEqual(sqlite_rows(self.dg), [HEAD])

    def test_3_lock_held_by_another_process_refuses_the_step(self):
        import fcntl
        # The lock is flock() on the database file itself.
        with open(self.locked, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            rc, r = rollout_json(self.d, "downgrade", "locks/app", "--to", AGE)
            # flock() does not get in SQLite's way: real Alembic moves the
            # database while the flock is held.
            self.f.alembic("sqlite:///" + self.locked, "downgrade", "base")
            self.assertNotIn("users", sqlite_tables(self.locked))
            self.f.alembic("sqlite:///" + self.locked, "upgrade", HEAD)
        self.assertEqual(rc, 5, r)
        error = r["steps"][0]["error"]
        self.assertIn("locks/app is locked by another rollout or lockstepd (flock on %s held by "
                      "pid %d (" % (self.locked, os.getpid()), error)
        self.assertEqual(r["steps"][0]["backup_id"], 0)  # refused before anything was done
        self.assertEqual(sqlite_rows(self.locked), [HEAD])
        self.assertFalse(os.path.exists(self.locked + ".lockstep-lock"))

    def test_3b_legacy_lock_file_is_removed_and_no_lock_file_is_left_anywhere(self):
        import fcntl
        legacy = self.locked + ".lockstep-lock"  # what lockstepd made up to now
        with open(legacy, "w") as held:
            # Held: a lockstepd older than this one is at work; refused.
            fcntl.flock(held, fcntl.LOCK_EX)
            rc, r = rollout_json(self.d, "downgrade", "locks/app", "--to", AGE)
        self.assertEqual(rc, 5, r)
        self.assertIn("is locked by another rollout or lockstepd (flock on %s held by pid %d"
                      % (legacy, os.getpid()), r["steps"][0]["error"])
        self.assertIn("a lockstepd older than this one", r["steps"][0]["error"])
        self.assertEqual(sqlite_rows(self.locked), [HEAD])
        # Not held: removed, and the step runs.
        rc, r = rollout_json(self.d, "downgrade", "locks/app", "--to", AGE)
        self.assertEqual(rc, 0, r)
        self.assertEqual(sqlite_rows(self.locked), r["steps"][0]["expected"])
        self.assertIn(AGE, r["steps"][0]["expected"])
        self.assertFalse(os.path.exists(legacy))
        # Steps ran on most SQLite databases of this fleet by now: the old
        # lock left a file beside each.
        left = [os.path.join(d, n) for d, _, names in os.walk(self.f.dir) for n in names
                if n.endswith(".lockstep-lock")]
        self.assertEqual(left, [])

    def test_4_postgresql_advisory_lock_held_elsewhere(self):
        holder = subprocess.Popen(
            [os.path.join(self.pg.bindir, "psql"), "-X", "-h", "127.0.0.1", "-p", str(self.pg.port),
             "-U", "postgres", "-d", "prod_app", "-c",
             "SELECT pg_advisory_lock(%d); SELECT pg_sleep(60)" % ADVISORY_KEY],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: self.pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
                                          db="prod_app").strip() == "1", what="the advisory lock")
            rc, r = rollout_json(self.d, "downgrade", "pg/app", "--to", AGE)
        finally:
            holder.kill()
            holder.wait()
        self.assertEqual(rc, 5, r)
        self.assertIn("advisory lock", r["steps"][0]["error"])
        self.assertEqual(self.pg.psql("SELECT version_num FROM alembic_version", db="prod_app").split(),
                         [HEAD])



class CrashAndAbortTest(unittest.TestCase):
    """kill -9 of lockstepd mid-wave; a second lockstepd; abort."""
    runner = "process"

    @classmethod
    def setUpClass(cls):
        cls.f = Fleet([("5105105105aa_slow.py", SLOW)])
        cls.tenants = {}
        cls.pristine = cls.f.sqlite("pristine", HEAD)
        for t in ("t1", "t2", "t3", "t4", "t5", "t6"):
            cls.tenants[t] = cls.f.sqlite(t, HEAD)
            with open(cls.tenants[t] + ".slow", "w") as f:
                f.write("1.5")
        cls.long = cls.f.sqlite("long", HEAD)
        with open(cls.long + ".slow", "w") as f:
            f.write("60")
        cls.envs = """
  - name: tenants
    batch_size: 6
    max_parallel: 2
    databases:
%s  - name: long
    databases: [{name: app, url: "sqlite:///long.db"}]
""" % "".join('      - {name: %s, url: "sqlite:///%s.db"}\n' % (t, t) for t in cls.tenants)
        cls.d = cls.f.daemon(cls.envs, runner=cls.runner)

    @classmethod
    def tearDownClass(cls):
        cls.f.close()

    def get(self, d, rid):
        return rollout_json(d, "rollout", rid)[1]

    def start_tenants_rollout(self, reset=False):
        """Starts a rollout of the tenants to heads (reset: from copies of the
        pristine database first); returns its id."""
        if reset:
            for path in self.tenants.values():
                shutil.copy(self.pristine, path)
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--env", "tenants")
        self.assertEqual(rc, 0, r)
        return r["id"]

    def alembic_children(self):
        """Alembic processes of this test's lockstepd still alive: run
        directly or forked by a warm runner (not the runners themselves)."""
        return [p for p in self.d.descendants() if "warm Alembic runner" not in cmdline(p)]

    def test_1_kill9_mid_wave_then_restart_applies_each_step_once(self):
        rid = self.start_tenants_rollout()

        def mid_wave():
            steps = self.get(self.d, rid)["steps"]
            done = sum(s["state"] == "succeeded" for s in steps)
            running = [s for s in steps if s["state"] == "running" and s["phase"] == "alembic"]
            return done >= 2 and running
        wait_for(mid_wave, what="two steps done and one inside Alembic")

        def inside_transaction():
            return [t for t, path in self.tenants.items() if os.path.exists(path + "-journal")]
        wait_for(inside_transaction, what="a migration inside its write transaction")
        orphans = self.d.kill9()
        hot = inside_transaction()
        # Alembic does not outlive lockstepd (PR_SET_PDEATHSIG).
        self.assertTrue(orphans, "lockstepd had no children: nothing to check")
        wait_for(lambda: not alive(orphans), timeout=10, what="Alembic children to die")
        self.d.start()
        rc, done = rollout_json(self.d, "watch", rid)
        self.assertEqual(rc, 0, done)
        self.assertEqual(done["state"], "succeeded")
        for t, path in self.tenants.items():
            self.assertEqual(sqlite_rows(path), ["5105105105aa"], t)
            self.assertEqual(sqlite_rows(path, "SELECT rev FROM run_log"), ["5105105105aa"], t)
        self.assertTrue(any(s["attempts"] == 2 for s in done["steps"]), done["steps"])
        self.assertTrue(hot, "the kill left no hot journal: the test lost its point")
        events = self.d.cli("watch", rid).stdout
        self.assertIn("recovered", events)
        self.assertIn("restored from its backup; will retry", events)

    def test_2_second_lockstepd_refused_then_abort_during_long_migration(self):
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--env", "long")
        self.assertEqual(rc, 0, r)
        rid = r["id"]
        wait_for(lambda: self.get(self.d, rid)["steps"][0]["phase"] == "alembic",
                 what="the long step inside Alembic")
        # Alembic is inside the migration's sleep once its write transaction
        # is open (the heartbeat row comes first).
        wait_for(lambda: os.path.exists(self.long + "-journal"),
                 what="the long migration inside its write transaction")
        other = self.f.daemon(self.envs, state="second-state.db", name="second", runner=self.runner)
        rc, r2 = rollout_json(other, "rollout", "--to", "heads", "--env", "long", "--watch")
        self.assertEqual(rc, 5, r2)
        # A different state store, the same database: the flock on the file
        # names the lockstepd that runs the migration.
        self.assertIn("long/app is locked by another rollout or lockstepd (flock on %s held by "
                      "pid %d (lockstepd))" % (self.long, self.d.proc.pid), r2["steps"][0]["error"])
        self.assertEqual(r2["steps"][0]["backup_id"], 0)
        other.stop()

        started = time.time()
        self.d.cli("abort", rid, "--actor", "oncall")
        rc, done = rollout_json(self.d, "watch", rid)
        self.assertLess(time.time() - started, 30)
        self.assertEqual(rc, 7, done)
        self.assertEqual(done["state"], "aborted")
        step = done["steps"][0]
        self.assertEqual(step["state"], "failed")
        self.assertIn("stopped by abort", step["error"])
        self.assertEqual(step["rollback"], "restored")
        self.assertEqual(sqlite_rows(self.long), [HEAD])
        self.assertNotIn("run_log", sqlite_tables(self.long))  # the partial DDL is gone
        self.assertIn("rollout aborted by oncall", self.d.cli("watch", rid, check=False).stdout)
        self.assertFalse(self.alembic_children())

    def test_3_pause_lets_running_steps_finish_and_starts_no_new_ones(self):
        rid = self.start_tenants_rollout(reset=True)
        wait_for(lambda: any(s["state"] == "running" for s in self.get(self.d, rid)["steps"]),
                 what="a running step")
        self.d.cli("pause", rid, "--actor", "oncall")
        wait_for(lambda: not any(s["state"] == "running" for s in self.get(self.d, rid)["steps"]),
                 what="running steps to finish")
        paused = self.get(self.d, rid)
        self.assertEqual(paused["state"], "paused")
        done = sum(s["state"] == "succeeded" for s in paused["steps"])
        self.assertGreaterEqual(done, 1)
        self.assertLess(done, 6)
        time.sleep(2.5)  # longer than a step: nothing new may start
        self.assertEqual(sum(s["state"] != "pending" for s in self.get(self.d, rid)["steps"]), done)
        self.d.cli("resume", rid)
        rc, end = rollout_json(self.d, "watch", rid)
        self.assertEqual(rc, 0, end)
        for t, path in self.tenants.items():
            self.assertEqual(sqlite_rows(path, "SELECT rev FROM run_log"), ["5105105105aa"], t)
        events = self.d.cli("watch", rid).stdout
        self.assertIn("paused by oncall", events)
        self.assertIn("resumed by", events)

    def test_4_sigterm_mid_step_then_restart_settles_it(self):
        rid = self.start_tenants_rollout(reset=True)
        wait_for(lambda: any(s["phase"] == "alembic" for s in self.get(self.d, rid)["steps"]),
                 what="a step inside Alembic")
        started = time.time()
        orphans = self.d.stop()  # SIGTERM
        self.assertLess(time.time() - started, 6)
        self.assertTrue(orphans, "lockstepd had no children: nothing to check")
        wait_for(lambda: not alive(orphans), timeout=10, what="Alembic children to die")
        self.d.start()
        rc, end = rollout_json(self.d, "watch", rid)
        self.assertEqual(rc, 0, end)
        for t, path in self.tenants.items():
            self.assertEqual(sqlite_rows(path), ["5105105105aa"], t)
            self.assertEqual(sqlite_rows(path, "SELECT rev FROM run_log"), ["5105105105aa"], t)


class RestoreCrashTest(unittest.TestCase):
    """kill -9 of lockstepd while an approved restore runs: at its next start
    the restore runs again, whole, and the database ends as the backup holds
    it; no partial backup file is left."""

    @classmethod
    def setUpClass(cls):
        cls.f = Fleet()
        cls.db = cls.f.sqlite("big", AGE)
        # 120 MB that does not compress: copying it (the safety backup, then
        # the restore) takes long enough to be caught in the middle.
        con = sqlite3.connect(cls.db)
        con.execute("CREATE TABLE ballast (n INTEGER PRIMARY KEY, b BLOB)")
        con.executemany("INSERT INTO ballast (b) VALUES (randomblob(?))", [(1 << 20,)] * 120)
        con.commit()
        con.close()
        cls.d = cls.f.daemon("""
  - name: prod
    approval: required
    backup: required
    databases: [{name: big, url: "sqlite:///big.db"}]
""", project_extra="  schema_ignore: [ballast]\n")  # not Alembic's table

    @classmethod
    def tearDownClass(cls):
        cls.f.close()

    def approved(self, rid):
        self.d.cli("approve", rid, "--actor", "oncall")
        rc, r = rollout_json(self.d, "watch", rid)
        self.assertEqual(rc, 0, r)
        return r

    def test_kill9_mid_restore_then_restart_restores_again(self):
        rc, up = rollout_json(self.d, "rollout", "--to", "heads", "--env", "prod")
        self.assertIn(rc, (0, 6), up)
        backup_id = self.approved(up["id"])["steps"][0]["backup_id"]  # taken at AGE
        self.assertGreater(backup_id, 0)
        self.assertEqual(sqlite_rows(self.db), [HEAD])
        self.d.cli("refresh")
        rc, restore = rollout_json(self.d, "restore", str(backup_id), "--yes", "--actor", "dora")
        self.assertEqual(rc, 6, restore)
        rid = restore["id"]
        self.d.cli("approve", rid, "--actor", "oncall")
        wait_for(lambda: rollout_json(self.d, "rollout", rid)[1]["steps"][0]["state"] == "running",
                 timeout=30, what="the restore step to start")
        self.d.kill9()
        self.d.start()
        rc, done = rollout_json(self.d, "watch", rid)
        self.assertEqual(rc, 0, done)
        self.assertEqual(done["state"], "succeeded")
        events = self.d.cli("watch", rid).stdout
        # The kill landed inside the step: the next lockstepd ran it again.
        self.assertIn("lockstepd stopped during this restore; it runs again from the start", events)
        self.assertEqual(sqlite_rows(self.db), [AGE])
        con = sqlite3.connect(self.db)
        try:
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            self.assertEqual(con.execute("SELECT count(*), sum(length(b)) FROM ballast").fetchone(),
                             (120, 120 << 20))
        finally:
            con.close()
        backups = {b["id"]: b for b in rollout_json(self.d, "backups", "prod/big")[1]["backups"]}
        self.assertEqual(backups[backup_id]["restored_by"], "dora")
        self.assertEqual(backups[done["steps"][0]["backup_id"]]["safety_for"], backup_id)
        partial = [os.path.join(root, n) for root, _, names in
                   os.walk(os.path.join(self.f.dir, "backups")) for n in names
                   if n.endswith(".partial")]
        self.assertEqual(partial, [])


# The same failures, locks, crashes and aborts with Alembic run by forks of a
# warm Python (project.alembic_runner: warm).
class StartupSlotsTest(unittest.TestCase):
    """server.alembic_startup_slots 1 with max_parallel 3: Alembic processes
    start one at a time, each only after the previous one's first output
    line (its start-up done); the waits are events."""

    runner = "process"

    def setUp(self):
        self.f = Fleet()
        self.tenants = {t: self.f.sqlite(t, AGE) for t in ("t1", "t2", "t3")}
        wrapper = os.path.join(self.f.dir, "timed-alembic")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\necho "$(date +%%s.%%N) $DATABASE_URL $*" >> "%s/starts.log"\n'
                    'exec /usr/bin/alembic "$@"\n' % self.f.dir)
        os.chmod(wrapper, 0o755)
        self.d = self.f.daemon("""
  - name: tenants
    batch_size: 3
    max_parallel: 3
    on_failure: leave
    databases:
%s""" % "".join('      - {name: %s, url: "sqlite:///%s.db"}\n' % (t, t) for t in self.tenants),
                               alembic_command=wrapper, runner=self.runner,
                               server_extra="  alembic_startup_slots: 1\n")

    def tearDown(self):
        self.f.close()

    def test_alembic_starts_one_at_a_time_after_the_previous_first_line(self):
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--watch")
        self.assertEqual(rc, 0, r)
        for t, path in self.tenants.items():
            self.assertEqual(sqlite_rows(path), [HEAD], t)
        from lockstepd import grpc_stubs, wire_name
        import grpc
        pb2, pb2_grpc = grpc_stubs(os.path.join(self.f.dir, "stubs"))
        stub = pb2_grpc.LockstepStub(grpc.insecure_channel(self.d.server))
        first_line, waits = {}, []
        for e in stub.WatchRollout(pb2.WatchRolloutRequest(id=r["id"]), timeout=60):
            at = e.at.seconds + e.at.nanos / 1e9
            kind = wire_name(pb2.EventKind, e.kind)
            if kind == "output" and e.database not in first_line:
                first_line[e.database] = at
            if kind == "startup_slot":
                self.assertRegex(e.message, r"^waited \d+ ms for an Alembic start-up slot")
                waits.append(e.database)
        self.assertEqual(sorted(first_line), sorted(self.tenants))
        if self.runner != "process":
            # A warm worker's start-up is a few ms: whether a step had to
            # wait depends on timing; the rollout going through is the test.
            return
        # Three at once were allowed by max_parallel: two had to wait.
        self.assertEqual(len(waits), 2, waits)
        with open(os.path.join(self.f.dir, "starts.log")) as f:
            # Alembic's `current` before the first step (the env.py check)
            # is no step, nor are the runs that build expected schemas on a
            # shadow database.
            starts = sorted((float(line.split()[0]), line.split()[1].rsplit("/", 1)[1][:-3])
                            for line in f if " upgrade " in line and "shadow.db" not in line)
        self.assertEqual(len(starts), 3)
        for (_, earlier), (started, _) in zip(starts, starts[1:]):
            self.assertGreaterEqual(started, first_line[earlier],
                                    "an Alembic started before %s's first line" % earlier)


class AbortWhileQueuedForSlotTest(unittest.TestCase):
    """An abort that reaches a step while it queues for a start-up slot:
    Alembic never ran there, so the step is skipped, not failed, retried or
    restored."""

    def setUp(self):
        self.f = Fleet()
        self.tenants = {t: self.f.sqlite(t, AGE) for t in ("t1", "t2")}
        silent = os.path.join(self.f.dir, "silent-alembic")
        with open(silent, "w") as f:  # an upgrade holds the only slot (silent for < 5 s)
            f.write('#!/bin/sh\ncase "$*" in *upgrade*) sleep 30;; esac\n'
                    'exec /usr/bin/alembic "$@"\n')
        os.chmod(silent, 0o755)
        self.d = self.f.daemon("""
  - name: tenants
    batch_size: 2
    max_parallel: 2
    databases:
%s""" % "".join('      - {name: %s, url: "sqlite:///%s.db"}\n' % (t, t) for t in self.tenants),
                               alembic_command=silent,
                               server_extra="  alembic_startup_slots: 1\n")

    def tearDown(self):
        self.f.close()

    def test_queued_step_is_skipped_without_an_attempt(self):
        rc, r = rollout_json(self.d, "rollout", "--to", "heads")
        self.assertEqual(rc, 0, r)
        rid = r["id"]

        def one_in_alembic_one_queued():
            steps = rollout_json(self.d, "rollout", rid)[1]["steps"]
            inside = [s for s in steps if s["phase"] == "alembic"]
            queued = [s for s in steps if s["state"] == "running" and s["phase"] == "backup"]
            return inside and queued and (inside[0]["database"], queued[0]["database"])
        # Stable for 30 s once reached (the upgrade is silent that long); the
        # first step runs Alembic's `current` (the env.py check) first.
        inside, queued = wait_for(one_in_alembic_one_queued, timeout=20,
                                  what="one step inside Alembic, the other queued")
        self.d.cli("abort", rid, "--actor", "oncall")
        rc, done = rollout_json(self.d, "watch", rid)
        self.assertEqual(done["state"], "aborted", done)
        steps = {s["database"]: s for s in done["steps"]}
        self.assertEqual(steps[inside]["state"], "failed")
        self.assertEqual(steps[inside]["rollback"], "restored")
        self.assertEqual(steps[queued]["state"], "skipped", steps[queued])
        self.assertEqual(steps[queued]["attempts"], 0)
        self.assertIn("rollout aborted by oncall", steps[queued]["error"])
        from lockstepd import grpc_stubs, wire_name
        import grpc
        pb2, pb2_grpc = grpc_stubs(os.path.join(self.f.dir, "stubs"))
        stub = pb2_grpc.LockstepStub(grpc.insecure_channel(self.d.server))
        kinds = [wire_name(pb2.EventKind, e.kind) for e in stub.WatchRollout(pb2.WatchRolloutRequest(id=rid), timeout=60)
                 if e.database == queued]
        self.assertEqual(kinds[0], "step_started", kinds)
        self.assertEqual(kinds[-1], "step_skipped", kinds)
        self.assertFalse({"startup_slot", "rolled_back", "step_failed"} & set(kinds), kinds)
        for path in self.tenants.values():
            self.assertEqual(sqlite_rows(path), [AGE])


class RestoreSafetyTest(unittest.TestCase):
    """restore: refused without --yes when the database changed since the
    backup (saying what would be lost), a safety backup before every restore
    that undoes it, and who restored, on SQLite and PostgreSQL."""

    @classmethod
    def setUpClass(cls):
        cls.f = Fleet()
        cls.pg = PgServer().__enter__()
        cls.pg.create_database("app")
        cls.f.alembic(cls.pg.url("app"), "upgrade", AGE)
        cls.lite = cls.f.sqlite("lite", AGE)
        cls.d = cls.f.daemon("""
  - name: lite
    backup: required
    databases: [{name: app, url: "sqlite:///lite.db"}]
  - name: pg
    backup: required
    databases: [{name: app, url: "postgresql://postgres@127.0.0.1:%d/app"}]
""" % cls.pg.port)

    @classmethod
    def tearDownClass(cls):
        cls.f.close()
        cls.pg.__exit__(None, None, None)

    def backups(self, env):
        return {b["id"]: b for b in rollout_json(self.d, "backups", env + "/app")[1]["backups"]}

    def check_restore_cycle(self, env, rows, sql, users_line, orders_line):
        """rows(): the version rows; sql(statement): runs it on the database."""
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--env", env, "--watch")
        self.assertEqual(rc, 0, r)
        taken = r["steps"][0]["backup_id"]  # the database at AGE, before the rollout
        self.assertEqual(rows(), [HEAD])
        sql("INSERT INTO users (name, email) VALUES ('a', 'a@x'), ('b', 'b@x'), ('c', 'c@x')")
        before = self.backups(env)

        # Changed since the backup: refused, with what would be lost; nothing written.
        p = self.d.cli("restore", str(taken), "--actor", "alice", check=False)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("%s/app changed since backup %d was taken; restoring it would lose:"
                      % (env, taken), p.stderr)
        self.assertIn("version rows: %s now, %s in the backup" % (HEAD, AGE), p.stderr)
        self.assertIn(users_line, p.stderr)
        self.assertIn(orders_line, p.stderr)
        self.assertIn("--yes", p.stderr)
        self.assertEqual(rows(), [HEAD])
        self.assertEqual(sql("SELECT COUNT(*) FROM users"), 3)
        self.assertEqual(self.backups(env), before)  # no safety backup either

        # With --yes: a safety backup of the changed database, then the restore.
        rc, out = rollout_json(self.d, "restore", str(taken), "--yes", "--actor", "alice")
        self.assertEqual(rc, 0, out)
        self.assertEqual(out["revisions"], [AGE])
        self.assertTrue(out["changed"])
        safety = out["safety_backup"]
        self.assertEqual(safety["safety_for"], taken)
        self.assertEqual(safety["revisions"], [HEAD])
        self.assertEqual(safety["rollout_id"], "")
        self.assertIn("before alice restored backup %d" % taken, safety["note"])
        self.assertEqual(out["backup"]["restored_by"], "alice")
        self.assertEqual(rows(), [AGE])
        self.assertEqual(sql("SELECT COUNT(*) FROM users"), 0)
        # Who restored is in the catalog and in lockstepd's log.
        after = self.backups(env)
        self.assertEqual(after[taken]["restored_by"], "alice")
        self.assertTrue(after[taken]["restored_at"])
        self.assertEqual(after[safety["id"]]["safety_for"], taken)
        self.assertEqual(after[safety["id"]]["restored_by"], "")
        self.assertIn("%s/app restored from backup %d by alice" % (env, taken), self.d.log())
        table = self.d.cli("backups", env + "/app").stdout
        self.assertIn("safety for %d" % taken, table)
        self.assertIn("by alice", table)

        # Unchanged since the backup: no --yes needed; a safety backup still.
        rc, again = rollout_json(self.d, "restore", str(taken), "--actor", "bob")
        self.assertEqual(rc, 0, again)
        self.assertFalse(again["changed"])
        self.assertEqual(again["safety_backup"]["safety_for"], taken)
        self.assertEqual(again["safety_backup"]["revisions"], [AGE])
        self.assertEqual(self.backups(env)[taken]["restored_by"], "bob")

        # The first safety backup undoes the restore: HEAD and the three rows.
        p = self.d.cli("restore", str(safety["id"]), "--actor", "carol", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("version rows: %s now, %s in the backup" % (AGE, HEAD), p.stderr)
        p = self.d.cli("restore", str(safety["id"]), "--yes", "--actor", "carol")
        self.assertIn("from backup %d (by carol)" % safety["id"], p.stdout)
        self.assertIn("undo with: lockstep restore --yes ", p.stdout)
        self.assertEqual(rows(), [HEAD])
        self.assertEqual(sql("SELECT COUNT(*) FROM users"), 3)
        self.assertEqual(self.backups(env)[safety["id"]]["restored_by"], "carol")

    def test_1_sqlite(self):
        def sql(statement):
            with sqlite3.connect(self.lite) as c:
                rows = c.execute(statement).fetchall()
            return rows[0][0] if rows else None
        self.check_restore_cycle("lite", lambda: sqlite_rows(self.lite), sql,
                                 "users: 3 rows now, 0 in the backup",
                                 "orders: 0 rows now, not in the backup")

    def test_3_sqlite_file_gone_is_recreated_without_yes(self):
        gone = self.backups("lite")  # test_1's
        self.assertTrue(gone)
        taken = min(gone)  # any backup of lite/app: the file will not be there
        os.unlink(self.lite)
        rc, out = rollout_json(self.d, "restore", str(taken), "--actor", "dave")
        self.assertEqual(rc, 0, out)
        self.assertIsNone(out["safety_backup"])
        self.assertEqual(sqlite_rows(self.lite), out["backup"]["revisions"])
        self.assertFalse(os.path.exists(self.lite + ".lockstep-lock"))  # the lock is the file
        self.assertEqual(set(self.backups("lite")), set(gone))  # nothing to back up
        self.assertEqual(self.backups("lite")[taken]["restored_by"], "dave")

    def test_2_postgresql(self):
        def sql(statement):
            out = self.pg.psql(statement, db="app").strip()
            return int(out) if out else None
        self.check_restore_cycle(
            "pg", lambda: self.pg.psql("SELECT version_num FROM alembic_version", db="app").split(),
            sql, "public.users: 3 rows now, 0 in the backup",
            "public.orders: 0 rows now, not in the backup")

    def test_4_help_lists_yes(self):
        p = subprocess.run([os.path.join(BUILD, "client", "lockstep"), "--help"],
                           capture_output=True, text=True)
        self.assertIn("restore ID [--yes] [--actor NAME]", p.stdout + p.stderr)


class ReportsWhatTheDatabaseHoldsTest(unittest.TestCase):
    """A relative downgrade and an abort mid-path report the rows each
    database holds afterwards, read from it."""

    @classmethod
    def setUpClass(cls):
        cls.f = Fleet([("5105105105aa_slow.py", SLOW)])
        cls.age = cls.f.sqlite("age", AGE)
        cls.age2 = cls.f.sqlite("age2", AGE)
        cls.merged = cls.f.sqlite("merged", HEAD)
        # From AGE to the slow head: three revisions commit (SQLite: one
        # transaction per migration), then the slow one sleeps.
        cls.mid = cls.f.sqlite("mid", AGE)
        with open(cls.mid + ".slow", "w") as f:
            f.write("60")
        cls.d = cls.f.daemon("""
  - name: prod
    databases:
      - {name: age, url: "sqlite:///age.db"}
      - {name: age2, url: "sqlite:///age2.db"}
      - {name: merged, url: "sqlite:///merged.db"}
  - name: long
    databases: [{name: mid, url: "sqlite:///mid.db"}]
""")

    @classmethod
    def tearDownClass(cls):
        cls.f.close()

    def test_1_downgrade_minus_one_reports_the_revisions_it_now_holds(self):
        p = self.d.cli("downgrade", "prod/age", "--to", "-1", check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(sqlite_rows(self.age), [USERS])
        self.assertIn("downgrade to -1 (%s)" % USERS, p.stdout)
        self.assertIn("prod/age now holds [%s]" % USERS, p.stdout)
        rc, r = rollout_json(self.d, "downgrade", "prod/age2", "--to", "-1")
        self.assertEqual(rc, 0, r)
        self.assertEqual(sqlite_rows(self.age2), [USERS])
        self.assertEqual(r["target"], "-1")
        self.assertEqual(r["target_revisions"], [USERS])
        self.assertEqual(r["reason"], "prod/age2 now holds [%s]" % USERS)
        # At the merge head, -1 is ambiguous, as Alembic says.
        rc, r = rollout_json(self.d, "downgrade", "prod/merged", "--to", "-1")
        self.assertNotEqual(rc, 0, r)
        self.assertIn("Ambiguous walk", r["error"])
        self.assertEqual(sqlite_rows(self.merged), [HEAD])

    def test_1b_downgrade_to_base_is_not_lost_rows(self):
        rc, r = rollout_json(self.d, "downgrade", "prod/age", "--to", "base")
        self.assertEqual(rc, 0, r)
        self.assertEqual(r["reason"], "prod/age now holds [] (no version rows)")
        self.assertEqual(sqlite_rows(self.age), [])
        status = json.loads(self.d.cli("status", "-o", "json", check=False).stdout)
        age = [d for d in status["databases"] if d["database"] == "age"][0]
        self.assertEqual(age["state"], "uninitialized")
        self.assertIn("no version rows: rollout %s left it so" % r["id"], age["reason"])
        self.assertEqual(self.d.cli("plan", "--db", "prod/age", check=False).returncode, 0)

    def test_2_abort_mid_path_reports_the_rows_after_the_restore(self):
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--env", "long")
        self.assertEqual(rc, 0, r)
        rid = r["id"]
        # Mid-path: the merge is committed, the slow revision sleeps.
        wait_for(lambda: sqlite_rows(self.mid) == [HEAD], what="the rows mid-path")
        self.d.cli("abort", rid, "--actor", "oncall")
        rc, done = rollout_json(self.d, "watch", rid)
        self.assertEqual(rc, 7, done)
        step = done["steps"][0]
        self.assertEqual(step["rollback"], "restored")
        self.assertEqual(sqlite_rows(self.mid), [AGE])
        self.assertIn("stopped by abort; restored from backup %d, the database holds [%s]"
                      % (step["backup_id"], AGE), step["error"])
        self.assertNotIn(HEAD, step["error"])


def running(pid):
    """Whether `pid` runs (a zombie does not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class BackgroundChildTest(unittest.TestCase):
    """A migration that starts a child which outlives it and keeps its
    output open: the step ends when Alembic exits (not when the child does,
    nor at step_timeout), and the child is killed, saying so."""

    runner = "process"

    def setUp(self):
        self.f = Fleet(extra_revisions=[("b9b9b9b9b9b9_bg.py", BACKGROUND)])
        self.db = self.f.sqlite("t1", HEAD)
        self.d = self.f.daemon("  - name: dev\n    databases: [{name: t1, url: \"sqlite:///t1.db\"}]\n",
                               runner=self.runner)

    def tearDown(self):
        self.f.close()

    def test_the_step_ends_with_alembic_and_the_child_is_killed(self):
        start = time.time()
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--watch")
        self.assertEqual(rc, 0, r)
        self.assertLess(time.time() - start, 60, "the step waited for the child")
        self.assertEqual(sqlite_rows(self.db), ["b9b9b9b9b9b9"])
        pid = sqlite_rows(self.db, "SELECT pid FROM bg_child")[0]
        wait_for(lambda: not running(pid), timeout=10, what="the migration's child to be killed")
        self.assertIn("lockstep: killed 1 process the run left running after it ended",
                      r["steps"][0]["output"])


class LongOutputTest(unittest.TestCase):
    """Output past the last 64 KiB kept in the state store: the whole of it
    (stdout and stderr) is in a log file beside the state, named in the step."""

    runner = "process"

    def setUp(self):
        self.f = Fleet(extra_revisions=[("c4a77e4c4a77_chatty.py", CHATTY)])
        self.db = self.f.sqlite("t1", HEAD)
        self.d = self.f.daemon("  - name: dev\n    databases: [{name: t1, url: \"sqlite:///t1.db\"}]\n",
                               runner=self.runner)

    def tearDown(self):
        self.f.close()

    def test_the_whole_output_is_in_the_steps_log_file(self):
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--watch")
        self.assertEqual(rc, 0, r)
        step = r["steps"][0]
        self.assertEqual(step["output_log"],
                         os.path.join(self.f.dir, "lockstep-output", r["id"], "step-0.log"))
        with open(step["output_log"]) as f:
            log = f.read()
        batches = [l for l in log.splitlines() if l.startswith("copied batch")]
        self.assertEqual(len(batches), 5000)
        self.assertEqual(sorted(batches), batches)  # every line, in order
        self.assertIn("Running upgrade e9a8c6b4d244 -> c4a77e4c4a77", log)
        self.assertLessEqual(len(step["output"].encode()), 64 * 1024)
        self.assertIn("copied batch 04999 of 05000", step["output"])
        self.assertNotIn("copied batch 00000 of 05000", step["output"])
        self.assertTrue(log.endswith(step["output"]) or step["output"] in log)
        self.assertEqual(os.stat(step["output_log"]).st_mode & 0o777, 0o600)


class WarmLongOutputTest(LongOutputTest):
    runner = "warm"


class WarmBackgroundChildTest(BackgroundChildTest):
    runner = "warm"


class WarmStartupSlotsTest(StartupSlotsTest):
    runner = "warm"


class WarmFailureAndLockTest(FailureAndLockTest):
    runner = "warm"


class WarmCrashAndAbortTest(CrashAndAbortTest):
    runner = "warm"



class StepTimeoutTest(unittest.TestCase):
    """A migration that outlasts project.step_timeout: Alembic is stopped,
    the step fails saying so, and the SQLite file, whose DDL Alembic had
    begun, is restored from the step's backup."""

    def test_a_step_past_its_timeout_is_stopped_failed_and_restored(self):
        f = Fleet([("5105105105aa_slow.py", SLOW)])
        self.addCleanup(f.close)
        db = f.sqlite("app", HEAD)
        with open(db + ".slow", "w") as fh:
            fh.write("120")
        d = f.daemon("""
  - name: prod
    on_failure: restore
    databases: [{name: app, url: "sqlite:///app.db"}]
""", step_timeout="3s")
        started = time.time()
        rc, r = rollout_json(d, "rollout", "--to", "heads", "--env", "prod")
        self.assertEqual(rc, 0, r)
        rc, done = rollout_json(d, "watch", r["id"])
        self.assertLess(time.time() - started, 60, "the step was not stopped at its timeout")
        step = done["steps"][0]
        self.assertEqual(step["state"], "failed", step)
        self.assertIn("timed out after 3", step["error"])
        self.assertEqual(step["rollback"], "restored", step)
        self.assertEqual(sqlite_rows(db), [HEAD])
        self.assertNotIn("heartbeat", sqlite_tables(db))  # the migration's first write is gone
        self.assertEqual(d.cli("status").returncode, 0)


class PostgresDiscoverTest(unittest.TestCase):
    """PostgreSQL tenants found by a discover query, reached as a role that
    proves its password (password_env; the test server runs scram-sha-256):
    a rollout moves every one found, and a tenant created later is found at
    the next refresh."""

    def test_discovered_tenants_are_rolled_out_and_a_new_one_is_found(self):
        f = Fleet()
        self.addCleanup(f.close)
        pg = PgServer().__enter__()
        self.addCleanup(pg.__exit__, None, None, None)
        pg.psql("CREATE ROLE tenants LOGIN CREATEDB PASSWORD '%s'" % SECRET)
        pg.psql('CREATE DATABASE tpl OWNER tenants')
        f.alembic(pg.url("tpl", "tenants", SECRET), "upgrade", AGE)
        for t in ("tenant_a", "tenant_b", "tenant_c"):
            pg.psql('CREATE DATABASE "%s" TEMPLATE tpl OWNER tenants' % t)
        pg.psql('CREATE DATABASE other OWNER tenants')  # not matched by the query
        d = f.daemon("""
  - name: pg
    databases:
      - discover: {url: "postgresql://tenants@127.0.0.1:%d/postgres",
                   query: "SELECT datname FROM pg_database WHERE datname LIKE 'tenant_%%'",
                   password_env: TENANTS_PW}
""" % pg.port, env={"TENANTS_PW": SECRET})
        status = json.loads(d.cli("status", "-o", "json", check=False).stdout)
        found = {x["database"]: x for x in status["databases"]}
        self.assertEqual(sorted(found), ["tenant_a", "tenant_b", "tenant_c"])
        self.assertTrue(all(x["discovered"] and x["state"] == "behind" for x in found.values()),
                        found)
        rc, r = rollout_json(d, "rollout", "--to", "heads", "--env", "pg", "--watch")
        self.assertEqual(rc, 0, r)
        self.assertEqual(sorted(s["database"] for s in r["steps"]),
                         ["tenant_a", "tenant_b", "tenant_c"])
        for t in ("tenant_a", "tenant_b", "tenant_c"):
            self.assertEqual(pg.psql("SELECT version_num FROM alembic_version", db=t).split(),
                             [HEAD], t)
        self.assertEqual(pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = "
                                 "'alembic_version'", db="other").split(), ["0"])
        pg.psql('CREATE DATABASE tenant_d TEMPLATE tpl OWNER tenants')
        d.cli("refresh")
        status = json.loads(d.cli("status", "-o", "json", check=False).stdout)
        found = {x["database"]: x["state"] for x in status["databases"]}
        self.assertEqual(found, {"tenant_a": "current", "tenant_b": "current",
                                 "tenant_c": "current", "tenant_d": "behind"})
        self.assertNotIn(SECRET, d.log())


if __name__ == "__main__":
    unittest.main()
