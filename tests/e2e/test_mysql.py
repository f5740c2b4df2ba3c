"""MySQL/MariaDB databases end to end: lockstepd watching a real MariaDB
server (started here) and rolling the example project out on it with the
real Alembic over PyMySQL.

Run: LOCKSTEP_BUILD=build python3 -m unittest tests/e2e/test_mysql.py
"""
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
sys.path.insert(0, HERE)

from mariadbserver import MariadbServer  # noqa: E402
from test_rollout import AGE, FAILING, HEAD, Fleet, rollout_json, steps_by_db  # noqa: E402

SECRET = "maria-Pw-7q%x"  # percent-encoded in URLs: %25


class MysqlFleetTest(unittest.TestCase):
    """Every state of a MariaDB database, then a rollout with a canary of
    tenants found by a discover query over the server's unix socket (so
    lockstepd's reads and Alembic's PyMySQL both use ?unix_socket=)."""

    @classmethod
    def setUpClass(cls):
        cls.f = Fleet()
        cls.my = MariadbServer().__enter__()
        cls.my.sql("CREATE USER 'app'@'%%' IDENTIFIED BY '%s'; "
                   "GRANT ALL ON `shop\\_%%`.* TO 'app'@'%%'" % SECRET)
        for db in ("shop_current", "shop_behind", "shop_fresh", "shop_other", "shop_t1", "shop_t2",
                   "shop_t3", "shop_orphan", "shop_ahead"):
            cls.my.sql("CREATE DATABASE %s" % db)
        url = lambda db: cls.my.url(db, "app", SECRET.replace("%", "%25"))  # noqa: E731
        cls.f.alembic(url("shop_current"), "upgrade", "heads")
        cls.f.alembic(url("shop_ahead"), "upgrade", "heads")
        # A version row no script defines (the database was replaced).
        cls.my.sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY); "
                   "INSERT INTO alembic_version VALUES ('1d5e0a7c9f00')", "shop_orphan")
        for db in ("shop_behind", "shop_t1", "shop_t2", "shop_t3"):
            cls.f.alembic(url(db), "upgrade", AGE)

        def entry(name, db, extra=""):
            return ('      - {name: %s, url: "mysql+pymysql://app@127.0.0.1:%d/%s", '
                    'password_env: SHOP_PW%s}\n' % (name, cls.my.port, db, extra))
        cls.d = cls.f.daemon("""
  - name: watch
    databases:
%s%s%s%s%s      - {name: badpw, url: "mysql+pymysql://app:nope@127.0.0.1:%d/shop_other"}
  - name: pinned
    target: %s
    databases:
%s  - name: prod
    canary: [shop_t1]
    databases:
      - discover: {url: "mysql+pymysql://app@localhost/shop_current?unix_socket=%s",
                   query: "SHOW DATABASES LIKE 'shop\\\\_t%%'", password_env: SHOP_PW}
""" % (entry("current", "shop_current"), entry("behind", "shop_behind"),
       entry("fresh", "shop_fresh"), entry("gone", "shop_gone"), entry("orphan", "shop_orphan"),
       cls.my.port, AGE, entry("ahead", "shop_ahead"), cls.my.socket),
            env={"SHOP_PW": SECRET})

    @classmethod
    def tearDownClass(cls):
        cls.f.close()
        cls.my.__exit__(None, None, None)

    def status(self):
        out = json.loads(self.d.cli("status", "-o", "json", check=False).stdout)
        return {(x["environment"], x["database"]): x for x in out["databases"]}

    def test_1_every_state_is_told_apart(self):
        s = self.status()
        states = {k: v["state"] for k, v in s.items()}
        self.assertEqual(states[("watch", "current")], "current", s)
        self.assertEqual(states[("watch", "behind")], "behind")
        self.assertEqual(s[("watch", "behind")]["revisions"], [AGE])
        self.assertEqual(states[("watch", "fresh")], "uninitialized")
        self.assertEqual(states[("watch", "orphan")], "orphaned")
        self.assertEqual(states[("pinned", "ahead")], "ahead")
        self.assertEqual(states[("watch", "gone")], "unreachable")
        self.assertIn("`shop_gone` does not exist", s[("watch", "gone")]["check_error"])
        self.assertEqual(states[("watch", "badpw")], "unreachable")
        self.assertEqual(s[("watch", "badpw")]["check_outcome"], "permission_denied")
        self.assertEqual(s[("watch", "gone")]["check_outcome"], "unreachable")
        self.assertEqual(s[("watch", "fresh")]["check_outcome"], "no_table")
        self.assertEqual(sorted(k[1] for k in s if k[0] == "prod"),
                         ["shop_t1", "shop_t2", "shop_t3"])
        self.assertNotIn("nope", json.dumps(list(s.values())))
        self.assertNotIn(SECRET, json.dumps(list(s.values())))

    def test_2_rollout_moves_the_discovered_tenants_canary_first(self):
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--env", "prod", "--watch")
        self.assertEqual(rc, 0, r)
        self.assertEqual(r["state"], "succeeded", r)
        order = [s["database"] for s in sorted(r["steps"], key=lambda s: s["wave"])]
        self.assertEqual(order[0], "shop_t1")  # the canary
        # on_failure: restore (the default) backs every database up first.
        self.assertTrue(all(s["backup_id"] > 0 for s in r["steps"]), r["steps"])
        for db in ("shop_t1", "shop_t2", "shop_t3"):
            self.assertEqual(self.my.sql("SELECT version_num FROM alembic_version", db).split(),
                             [HEAD], db)
            self.assertIn("orders", self.my.sql("SHOW TABLES", db).split(), db)
        s = self.status()
        self.assertEqual(s[("prod", "shop_t1")]["state"], "current")

    def test_3_schema_drift_is_found_by_the_cohort(self):
        # Three tenants at one revision that agree: match. A column dropped
        # by hand in one: drift, named; the other two still match.
        self.d.cli("refresh")
        s = self.status()
        self.assertEqual({s[("prod", t)]["schema"]["state"] for t in ("shop_t1", "shop_t2", "shop_t3")},
                         {"match"}, s)
        self.my.sql("ALTER TABLE users DROP COLUMN age", "shop_t3")
        self.d.cli("refresh")  # a first sight of drift is confirmed at the next pass
        self.assertIn("confirming at the next poll",
                      self.status()[("prod", "shop_t3")]["schema"]["reason"])
        self.d.cli("refresh")
        s = self.status()
        t3 = s[("prod", "shop_t3")]["schema"]
        self.assertEqual(t3["state"], "drift", t3)
        self.assertIn("column users.age missing", t3["reason"])
        self.assertEqual(s[("prod", "shop_t1")]["schema"]["state"], "match")

    def test_4_no_password_in_the_log(self):
        self.assertNotIn(SECRET, self.d.log())
        self.assertNotIn("nope", self.d.log())



class MysqlPartialDdlTest(unittest.TestCase):
    """MySQL commits DDL statement by statement: a migration that fails
    half-way leaves its first table behind with the version row unchanged.
    on_failure: restore puts the database back from the step's backup
    (mariadb-dump) and the step says so; `lockstep restore` can put back
    any backup later."""

    def test_a_half_applied_migration_is_restored_from_its_backup(self):
        f = Fleet([("f0a11f0a11f0_fails.py", FAILING)])
        self.addCleanup(f.close)
        my = MariadbServer().__enter__()
        self.addCleanup(my.__exit__, None, None, None)
        my.sql("CREATE USER 'app'@'%%' IDENTIFIED BY '%s'; GRANT ALL ON shop.* TO 'app'@'%%'; "
               "CREATE DATABASE shop" % SECRET)
        url = my.url("shop", "app", SECRET.replace("%", "%25"))
        f.alembic(url, "upgrade", HEAD)
        my.sql("INSERT INTO users (name, email, age) VALUES ('ann', 'ann@example.com', 40)", "shop")
        # Real Alembic on the database alone: the first table stays behind.
        probe = f.alembic(url, "upgrade", "heads", check=False)
        self.assertNotEqual(probe.returncode, 0)
        self.assertIn("half_done", my.sql("SHOW TABLES", "shop").split())
        my.sql("DROP TABLE half_done", "shop")

        d = f.daemon("""
  - name: prod
    on_failure: restore
    databases:
      - {name: shop, url: "mysql+pymysql://app@127.0.0.1:%d/shop", password_env: SHOP_PW}
""" % my.port, env={"SHOP_PW": SECRET})
        rc, r = rollout_json(d, "rollout", "--to", "heads", "--env", "prod", "--watch")
        self.assertEqual(rc, 5, r)
        step = steps_by_db(r)[("prod", "shop")]
        self.assertEqual(step["state"], "failed", step)
        self.assertIn("Unknown column 'no_such_column'", step["error"])
        self.assertEqual(step["rollback"], "restored", step)
        self.assertGreater(step["backup_id"], 0)
        self.assertNotIn("half_done", my.sql("SHOW TABLES", "shop").split())
        self.assertEqual(my.sql("SELECT version_num FROM alembic_version", "shop").split(), [HEAD])
        self.assertEqual(my.sql("SELECT name FROM users", "shop").split(), ["ann"])
        backups = json.loads(d.cli("backups", "-o", "json").stdout)
        self.assertTrue(any(b["path"].endswith(".sql") for b in backups["backups"]), backups)

        # `lockstep restore` on MySQL: what the backup would overwrite is
        # said first (a row added since), a safety backup is taken, and
        # restoring that one brings the row back.
        my.sql("INSERT INTO users (name, email, age) VALUES ('bob', 'bob@example.com', 30)", "shop")
        refused = d.cli("restore", str(step["backup_id"]), check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("users: 2 rows now, 1 in the backup", refused.stdout + refused.stderr)
        rc, out = rollout_json(d, "restore", str(step["backup_id"]), "--yes")
        self.assertEqual(rc, 0, out)
        self.assertEqual(out["revisions"], [HEAD])
        self.assertEqual(my.sql("SELECT name FROM users", "shop").split(), ["ann"])
        safety = out["safety_backup"]["id"]
        self.assertGreater(safety, 0, out)
        rc, out = rollout_json(d, "restore", str(safety), "--yes")
        self.assertEqual(rc, 0, out)
        self.assertEqual(sorted(my.sql("SELECT name FROM users", "shop").split()), ["ann", "bob"])
        self.assertNotIn(SECRET, d.log())



class MysqlLocksTest(unittest.TestCase):
    """Another session holding lockstep's GET_LOCK (another lockstepd) is
    waited for up to server.lock_wait, then the step fails naming it and
    nothing runs; a migration's table lock held past statement_timeout
    reads timed_out."""

    def test_a_held_lock_refuses_the_step_and_a_table_lock_is_a_timeout(self):
        import subprocess
        import time
        f = Fleet()
        self.addCleanup(f.close)
        my = MariadbServer().__enter__()
        self.addCleanup(my.__exit__, None, None, None)
        my.sql("CREATE DATABASE shop")
        f.alembic(my.url("shop"), "upgrade", AGE)
        d = f.daemon("""
  - name: prod
    on_failure: leave
    databases: [{name: shop, url: "%s"}]
""" % my.url("shop"), server_extra="  lock_wait: 2s\n  statement_timeout: 1s\n")

        def hold(sql):
            p = subprocess.Popen(["mariadb", "--no-defaults", "--socket=" + my.socket, "-uroot",
                                  "shop", "-e", sql + "; SELECT SLEEP(30)"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 20
            while "SLEEP" not in my.sql("SELECT GROUP_CONCAT(INFO) FROM "
                                        "information_schema.PROCESSLIST WHERE INFO LIKE '%SLEEP%'"):
                self.assertLess(time.time(), deadline, "the holder did not start")
                time.sleep(0.05)
            return p

        holder = hold("SELECT GET_LOCK('lockstep:shop', 0)")
        try:
            rc, r = rollout_json(d, "rollout", "--to", "heads", "--watch")
        finally:
            holder.kill()
            holder.wait()
        self.assertEqual(rc, 5, r)
        error = r["steps"][0]["error"]
        self.assertIn("locked by another rollout or lockstepd (GET_LOCK('lockstep:shop') is held by "
                      "connection ", error)
        self.assertIn("root@localhost", error)
        self.assertEqual(my.sql("SELECT version_num FROM alembic_version", "shop").split(), [AGE])

        holder = hold("LOCK TABLES alembic_version WRITE")
        try:
            d.cli("refresh", check=False)
            db = json.loads(d.cli("status", "-o", "json", check=False).stdout)["databases"][0]
        finally:
            holder.kill()
            holder.wait()
        self.assertEqual(db["check_outcome"], "timed_out", db)
        self.assertIn("timed out after 1s reading the version table", db["check_error"])


class MysqlExpectedSchemaTest(unittest.TestCase):
    """With project.shadow_mysql, a database alone at its revision is judged
    against what Alembic builds on a scratch database there: the example
    project matches (no false drift), a column dropped by hand is drift,
    and no scratch database is left behind."""

    def test_a_database_alone_is_judged_against_what_alembic_builds(self):
        f = Fleet()
        self.addCleanup(f.close)
        my = MariadbServer().__enter__()
        self.addCleanup(my.__exit__, None, None, None)
        my.sql("CREATE DATABASE solo")
        f.alembic(my.url("solo"), "upgrade", "heads")
        d = f.daemon("""
  - name: prod
    databases: [{name: solo, url: "%s"}]
""" % my.url("solo"), project_extra='  shadow_mysql: "%s"\n' % my.url("mysql"))
        status = lambda: json.loads(d.cli("status", "-o", "json", check=False).stdout)  # noqa: E731
        d.cli("refresh")
        schema = status()["databases"][0]["schema"]
        self.assertEqual(schema["state"], "match", schema)
        self.assertIn("the schema Alembic builds for %s on an empty mysql database" % HEAD,
                      schema["reason"])
        my.sql("ALTER TABLE orders DROP COLUMN status", "solo")
        d.cli("refresh")
        d.cli("refresh")
        schema = status()["databases"][0]["schema"]
        self.assertEqual(schema["state"], "drift", schema)
        self.assertIn("column orders.status missing", schema["reason"])
        # `lockstep diff` reads it now and names the same difference.
        diff = d.cli("diff", "prod/solo", check=False)
        self.assertEqual(diff.returncode, 3, diff.stdout + diff.stderr)
        self.assertIn("orders.status", diff.stdout)
        self.assertEqual(my.sql("SHOW DATABASES LIKE 'lockstep\\_shadow%'"), "")


if __name__ == "__main__":
    unittest.main()
