"""End to end: lockstepd killed with SIGKILL at random moments of rollouts,
and started again each time, on SQLite and PostgreSQL tenants with real
Alembic. Every rollout must end `succeeded`, and every migration must have
run exactly once in every database: the migrations record each run in a
table (`applied`), so a run repeated after a kill shows up as data, and a
run lost shows up as a missing row.

Three revisions on top of the example project's head, each taking a moment
(so kills land inside Alembic as well as between steps); the SQLite tenants
are restored from their step's backup and retried when a kill cut a step
(SQLite's DDL is not transactional), the PostgreSQL ones re-planned from
what they committed.

    LOCKSTEP_BUILD=build python3 -m unittest -v tests/e2e/test_kill9.py

LOCKSTEP_KILL_POINTS (default 30) sets how many kills; LOCKSTEP_KILL_SEED
replays a run (the seed is printed). tests/soak_kill9.sh runs 300.
"""
import os
import random
import shutil
import sqlite3
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_rollout import HEAD, Fleet, rollout_json, wait_for  # noqa: E402
from pgserver import PgServer  # noqa: E402

REVS = ["a1a1a1a1a1a1", "b2b2b2b2b2b2", "c3c3c3c3c3c3"]
TEMPLATE = '''"""kill9 revision {n}: records its run, takes a moment

Revision ID: {rev}
Revises: {down}
"""
import time

from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("CREATE TABLE IF NOT EXISTS applied (rev VARCHAR(12), seq INTEGER)")
    op.execute("CREATE TABLE IF NOT EXISTS step_{n} (id INTEGER)")
    time.sleep(0.3)
    op.execute("INSERT INTO applied VALUES ('{rev}', {n})")


def downgrade():
    op.execute("DROP TABLE step_{n}")
    op.execute("DELETE FROM applied WHERE rev = '{rev}'")
'''
TERMINAL = {"succeeded", "failed", "halted", "aborted"}


def revision_files():
    out, down = [], HEAD
    for n, rev in enumerate(REVS, 1):
        out.append(("%s_kill9_%d.py" % (rev, n), TEMPLATE.format(n=n, rev=rev, down=down)))
        down = rev
    return out


class RandomKillTest(unittest.TestCase):
    SQLITE = ["s1", "s2", "s3", "s4"]
    POSTGRES = ["p1", "p2"]

    @classmethod
    def setUpClass(cls):
        cls.points = int(os.environ.get("LOCKSTEP_KILL_POINTS", "30"))
        cls.seed = int(os.environ.get("LOCKSTEP_KILL_SEED", str(random.randrange(1 << 30))))
        cls.f = Fleet(revision_files())
        cls.pg = PgServer().__enter__()
        cls.pristine = cls.f.sqlite("pristine", HEAD)
        cls.pg.create_database("tpl")
        cls.f.alembic(cls.pg.url("tpl"), "upgrade", HEAD)
        envs = """
  - name: tenants
    backup: required
    on_failure: restore
    batch_size: 6
    max_parallel: 2
    databases:
%s%s""" % ("".join('      - {name: %s, url: "sqlite:///%s.db"}\n' % (t, t) for t in cls.SQLITE),
           "".join('      - {name: %s, url: "%s"}\n' % (t, cls.pg.url(t)) for t in cls.POSTGRES))
        cls.reset()
        cls.d = cls.f.daemon(envs, server_extra="  lock_wait: 30s\n")

    @classmethod
    def tearDownClass(cls):
        cls.f.close()
        cls.pg.__exit__(None, None, None)

    @classmethod
    def reset(cls):
        """Every tenant back at the example's head, without the new tables."""
        for t in cls.SQLITE:
            shutil.copy(cls.pristine, os.path.join(cls.f.dir, t + ".db"))
        for t in cls.POSTGRES:
            cls.pg.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % t)
            cls.pg.psql('CREATE DATABASE "%s" TEMPLATE tpl' % t)

    def applied(self, tenant):
        """(version rows, the revisions the migrations recorded, in order)."""
        if tenant in self.SQLITE:
            with sqlite3.connect(os.path.join(self.f.dir, tenant + ".db")) as c:
                rows = sorted(r[0] for r in c.execute("SELECT version_num FROM alembic_version"))
                runs = [r[0] for r in c.execute("SELECT rev FROM applied ORDER BY seq")]
            return rows, runs
        rows = sorted(self.pg.psql("SELECT version_num FROM alembic_version", db=tenant).split())
        runs = self.pg.psql("SELECT rev FROM applied ORDER BY seq", db=tenant).split()
        return rows, runs

    def state(self, rid):
        rc, r = rollout_json(self.d, "rollout", rid)
        return r["state"] if rc == 0 and r else None

    def test_every_rollout_succeeds_and_every_migration_runs_once(self):
        rng = random.Random(self.seed)
        why = "seed %d (LOCKSTEP_KILL_SEED=%d replays it)" % (self.seed, self.seed)
        kills = rounds = retried = 0
        inside_alembic = 0
        started = time.time()
        while kills < self.points:
            rounds += 1
            if rounds > 1:
                self.reset()
            rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--env", "tenants")
            self.assertEqual(rc, 0, "%s: %s" % (why, r))
            rid = r["id"]
            # A few kills a round (each a random moment), then the round ends.
            for _ in range(min(rng.randint(3, 8), self.points - kills)):
                time.sleep(rng.uniform(0.1, 3.0))
                if self.state(rid) in TERMINAL:
                    break
                steps = rollout_json(self.d, "rollout", rid)[1]["steps"]
                inside_alembic += any(s["state"] == "running" and s["phase"] == "alembic"
                                      for s in steps)
                self.d.kill9()
                kills += 1
                self.d.start()
            rc, done = rollout_json(self.d, "watch", rid)
            self.assertEqual(rc, 0, "%s: %s" % (why, done))
            self.assertEqual(done["state"], "succeeded",
                             "%s: round %d ended %s: %s" % (why, rounds, done["state"],
                                                            [(s["database"], s["state"], s.get("error"))
                                                             for s in done["steps"]]))
            retried += sum(s["attempts"] > 1 for s in done["steps"])
            for t in self.SQLITE + self.POSTGRES:
                rows, runs = self.applied(t)
                self.assertEqual(rows, [REVS[-1]], "%s: round %d, %s" % (why, rounds, t))
                self.assertEqual(runs, REVS, "%s: round %d, %s ran %s" % (why, rounds, t, runs))
        print("\nkill -9: %d kills (%d inside Alembic) over %d rollouts of %d tenants, "
              "%d steps retried after a kill, every migration run once; %s; %.0f s"
              % (kills, inside_alembic, rounds, len(self.SQLITE) + len(self.POSTGRES), retried,
                 why, time.time() - started), file=sys.stderr)
        self.assertGreater(inside_alembic, 0, "no kill landed inside Alembic: the test lost its point")


if __name__ == "__main__":
    unittest.main()
