"""End to end: the env.py that `alembic init` writes, unchanged.

Alembic's generated env.py reads `sqlalchemy.url` from alembic.ini and
ignores `-x url` and DATABASE_URL. lockstep sets sqlalchemy.url on Alembic's
Config through its own entry point, so the step's database is migrated and
the one in alembic.ini is not. An env.py that connects somewhere else anyway
(it sets its own URL) is stopped before it migrates anything: SQLite by the
file's device and inode, PostgreSQL by the advisory lock lockstep holds,
MySQL by its GET_LOCK.
Both runners (process and warm). An alembic_command lockstep cannot enter (a
wrapper script) is checked by Alembic's `current` before the first step.

Run: LOCKSTEP_BUILD=build python3 -m unittest -v tests/e2e/test_env_py.py
"""
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "support"))
from mariadbserver import MariadbServer  # noqa: E402
from pgserver import PgServer  # noqa: E402
from test_rollout import Fleet, rollout_json, sqlite_rows, sqlite_tables, steps_by_db  # noqa: E402

REV = "aa00bb11cc22"
USERS = '''"""users

Revision ID: aa00bb11cc22
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "aa00bb11cc22"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("users", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("users")
'''

# What an env.py that takes its URL from the application's settings does.
ELSEWHERE = 'config.set_main_option("sqlalchemy.url", %r)\n'


class StockProject:
    """A Fleet whose project is what `alembic init` makes, with alembic.ini
    naming `ini_url`."""

    def __init__(self, ini_url):
        self.f = Fleet()
        shutil.rmtree(self.f.project)
        os.mkdir(self.f.project)
        subprocess.run(["/usr/bin/alembic", "init", "migrations"], cwd=self.f.project,
                       check=True, capture_output=True)
        with open(self.f.ini) as f:
            ini = f.read()
        ini, n = re.subn(r"(?m)^sqlalchemy\.url = .*$", "sqlalchemy.url = " + ini_url, ini)
        assert n == 1, "alembic.ini template changed"
        # lockstepd runs Alembic from the inventory's folder, not the project's.
        ini, n = re.subn(r"(?m)^script_location = .*$", "script_location = %(here)s/migrations",
                         ini)
        assert n == 1, "alembic.ini template changed"
        with open(self.f.ini, "w") as f:
            f.write(ini)
        with open(os.path.join(self.f.project, "migrations", "versions", REV + "_users.py"), "w") as f:
            f.write(USERS)
        self.env_py = os.path.join(self.f.project, "migrations", "env.py")

    def connect_elsewhere(self, url):
        with open(self.env_py) as f:
            text = f.read()
        anchor = "config = context.config\n"
        assert anchor in text, "env.py template changed"
        with open(self.env_py, "w") as f:
            f.write(text.replace(anchor, anchor + ELSEWHERE % url))

    def rollout(self, databases, runner):
        d = self.f.daemon("  - name: dev\n    databases: %s\n" % databases, runner=runner)
        rc, r = rollout_json(d, "rollout", "--to", "heads", "--watch")
        return rc, r, d


def check_config(d):
    """lockstepd --check-config on the daemon's inventory: (exit code, output)."""
    p = subprocess.run([d.lockstepd, "--check-config", d.config], capture_output=True,
                       text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


class SqliteStockEnvPyTest(unittest.TestCase):
    runner = "process"

    def setUp(self):
        self.other = None
        self.p = StockProject("sqlite:///OTHER.db")  # relative: Alembic's working folder
        self.other = os.path.join(self.p.f.dir, "OTHER.db")
        self.target = os.path.join(self.p.f.dir, "t1.db")
        sqlite3.connect(self.target).close()

    def tearDown(self):
        self.p.f.close()

    def test_the_stock_env_py_migrates_the_step_database_not_alembic_ini_s(self):
        rc, r, d = self.p.rollout('[{name: t1, url: "sqlite:///t1.db"}]', self.runner)
        self.assertEqual(rc, 0, r)
        self.assertEqual(r["state"], "succeeded")
        self.assertEqual(sqlite_rows(self.target), [REV])
        self.assertIn("users", sqlite_tables(self.target))
        self.assertFalse(os.path.exists(self.other), "the database in alembic.ini was touched")
        rc, out = check_config(d)
        self.assertEqual(rc, 0, out)
        self.assertIn("env.py reaches dev/t1: Alembic's `current` through this runner reports "
                      "[%s], what dev/t1 holds" % REV, out)

    def test_an_env_py_that_connects_elsewhere_is_stopped_before_it_migrates(self):
        self.p.connect_elsewhere("sqlite:///" + self.other)
        rc, r, d = self.p.rollout('[{name: t1, url: "sqlite:///t1.db"}]', self.runner)
        self.assertNotEqual(rc, 0, r)
        step = steps_by_db(r)[("dev", "t1")]
        self.assertEqual(step["state"], "failed", step)
        out = d.cli("rollout", r["id"]).stdout + step["error"] + "\n".join(step.get("output", []))
        self.assertIn("env.py connected to sqlite:///" + self.other, out)
        self.assertIn("which is not dev/t1", out)
        self.assertEqual(sqlite_tables(self.other), [], "env.py's database was migrated")
        self.assertEqual(sqlite_tables(self.target), [])
        rc, out = check_config(d)
        self.assertEqual(rc, 1, out)
        self.assertIn("env.py connected to sqlite:///" + self.other, out)


class SqliteStockEnvPyWarmTest(SqliteStockEnvPyTest):
    runner = "warm"


class WrapperCommandTest(unittest.TestCase):
    """An alembic_command lockstep cannot enter (a shell script) runs as
    written: the stock env.py then reads alembic.ini's database. Alembic's
    `current`, run before the first step, reports that database's revision,
    not the target's, and the step is refused before anything runs."""

    def setUp(self):
        self.p = StockProject("sqlite:///OTHER.db")
        f = self.p.f
        subprocess.run(["/usr/bin/alembic", "-c", f.ini, "upgrade", "heads"], cwd=f.dir,
                       check=True, capture_output=True)
        self.other = os.path.join(f.dir, "OTHER.db")
        self.target = os.path.join(f.dir, "t1.db")
        sqlite3.connect(self.target).close()
        self.wrapper = os.path.join(f.dir, "alembic-wrapper")
        with open(self.wrapper, "w") as out:
            out.write('#!/bin/sh\nexec /usr/bin/alembic "$@"\n')
        os.chmod(self.wrapper, 0o755)

    def tearDown(self):
        self.p.f.close()

    def test_current_before_the_first_step_refuses_an_env_py_on_another_database(self):
        d = self.p.f.daemon('  - name: dev\n    databases: [{name: t1, url: "sqlite:///t1.db"}]\n',
                            alembic_command=self.wrapper)
        rc, r = rollout_json(d, "rollout", "--to", "heads", "--watch")
        self.assertNotEqual(rc, 0, r)
        step = steps_by_db(r)[("dev", "t1")]
        self.assertIn("env.py connects to another database than dev/t1 (Alembic's `current` "
                      "reports [%s], the database holds [] (no version rows))" % REV,
                      step["error"])
        self.assertEqual(step["backup_id"], 0, "a backup was taken before the check")
        self.assertEqual(sqlite_tables(self.target), [])
        self.assertEqual(sqlite_rows(self.other), [REV])
        rc, out = check_config(d)
        self.assertEqual(rc, 1, out)
        self.assertIn("env.py connects to another database than dev/t1 (Alembic's `current` "
                      "reports [%s], the database holds [] (no version rows))" % REV, out)


class ServerStockEnvPyCases:
    """The stock env.py on a database server where the step's database and
    another one live side by side (a mixin: each dialect's class starts the
    server, creates app and other, and says how to reach and list them)."""

    def tearDown(self):
        self.p.f.close()

    def rollout(self):
        return self.p.rollout('[{name: app, url: "%s"}]' % self.url(self.app), "process")

    def test_the_stock_env_py_migrates_the_step_database(self):
        rc, r, _ = self.rollout()
        self.assertEqual(rc, 0, r)
        self.assertIn("users", self.tables(self.app))
        self.assertEqual(self.tables(self.other), [])

    def test_an_env_py_on_another_database_of_the_same_server_is_stopped(self):
        self.p.connect_elsewhere(self.url(self.other))
        rc, r, _ = self.rollout()
        self.assertNotEqual(rc, 0, r)
        step = steps_by_db(r)[("dev", "app")]
        self.assertIn("env.py connected to", step["error"] + "\n".join(step.get("output", [])))
        self.assertEqual(self.tables(self.other), [])
        self.assertEqual(self.tables(self.app), [])


def database_pair(test):
    """app_<test>, other_<test>: a pair of database names per test."""
    name = test.id().rsplit(".", 1)[-1][5:25]
    return "app_" + name, "other_" + name


class PostgresStockEnvPyTest(ServerStockEnvPyCases, unittest.TestCase):
    """The target and the other database on one server: only the advisory
    lock tells them apart."""

    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.pg.__exit__(None, None, None)

    def setUp(self):
        self.app, self.other = database_pair(self)
        self.pg.create_database(self.app)
        self.pg.create_database(self.other)
        self.p = StockProject(self.url(self.other))

    def url(self, db):
        return self.pg.url(db)

    def tables(self, db):
        return self.pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                            db=db).split()


class MysqlStockEnvPyTest(ServerStockEnvPyCases, unittest.TestCase):
    """The same on a MariaDB server: the target and the other database are on
    one server, and only lockstep's GET_LOCK (held by the step's session,
    named after the database) tells them apart."""

    @classmethod
    def setUpClass(cls):
        cls.my = MariadbServer().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.my.__exit__(None, None, None)

    def setUp(self):
        self.app, self.other = database_pair(self)
        self.my.sql("CREATE DATABASE %s; CREATE DATABASE %s" % (self.app, self.other))
        self.p = StockProject(self.url(self.other))

    def url(self, db):
        return self.my.url(db)

    def tables(self, db):
        return self.my.sql("SHOW TABLES", db).split()


if __name__ == "__main__":
    unittest.main()
