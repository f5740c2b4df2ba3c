"""The example project with real Alembic on SQLite and on a PostgreSQL server
the test starts itself, and the lockstep CLI against the real `alembic` CLI.

Run: LOCKSTEP_BIN=build/client/lockstep python3 -m unittest tests/integration/test_example_project.py
"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
from pgserver import PgServer  # noqa: E402

EXAMPLE_INI = os.path.join(ROOT, "migrations", "example", "alembic.ini")
LOCKSTEP = os.path.abspath(
    os.environ.get("LOCKSTEP_BIN", os.path.join(ROOT, "build", "client", "lockstep")))
ALEMBIC = "/usr/bin/alembic"
HEAD = "e9a8c6b4d244"


def run(argv, env=None, check=True):
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(argv, capture_output=True, text=True, env=full_env)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s %s" % (argv, p.returncode, p.stdout, p.stderr))
    return p


def alembic(*args, url=None):
    env = {"DATABASE_URL": url} if url else {}
    return run([ALEMBIC, "-c", EXAMPLE_INI] + list(args), env=env)


def ran_steps(alembic_stderr):
    """('upgrade'|'downgrade', revision) for each 'Running ...' log line."""
    steps = []
    for m in re.finditer(r"Running (upgrade|downgrade) (.*?) -> (.*?), ", alembic_stderr):
        kind, left, right = m.groups()
        steps.append((kind, right if kind == "upgrade" else left))
    return steps


def lockstep_path(target, rows=(), downgrade=False):
    import json
    argv = [LOCKSTEP, "-c", EXAMPLE_INI, "path", target, "-o", "json", "--from", ",".join(rows)]
    if downgrade:
        argv.append("--downgrade")
    steps = json.loads(run(argv).stdout)["steps"]
    return [(s["direction"], s["revision"]) for s in steps], (steps[-1]["rows_after"] if steps else None)


class SqliteTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.db = os.path.join(self.dir, "app.db")
        self.url = "sqlite:///" + self.db

    def tearDown(self):
        shutil.rmtree(self.dir)

    def rows(self):
        with sqlite3.connect(self.db) as c:
            return sorted(r[0] for r in c.execute("SELECT version_num FROM alembic_version"))

    def tables(self):
        with sqlite3.connect(self.db) as c:
            return sorted(r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'"))

    def test_upgrade_and_downgrade_follow_lockstep_plan(self):
        expected, rows_after = lockstep_path("heads")
        out = alembic("upgrade", "heads", url=self.url)
        self.assertEqual(ran_steps(out.stderr), expected)
        self.assertEqual(self.rows(), [HEAD])
        self.assertEqual(rows_after, [HEAD])
        self.assertEqual(self.tables(), ["alembic_version", "orders", "users"])
        with sqlite3.connect(self.db) as c:
            cols = [r[1] for r in c.execute("PRAGMA table_info(users)")]
            indexes = [r[1] for r in c.execute("PRAGMA index_list(users)")]
        self.assertEqual(cols, ["id", "name", "email", "age"])
        self.assertIn("ix_users_name", indexes)

        expected_down, rows_down = lockstep_path("orders@base", rows=[HEAD], downgrade=True)
        out = alembic("downgrade", "orders@base", url=self.url)
        self.assertEqual(ran_steps(out.stderr), expected_down)
        self.assertEqual(self.rows(), sorted(rows_down))

        out = alembic("downgrade", "base", url=self.url)
        self.assertEqual(self.rows(), [])
        self.assertEqual(self.tables(), ["alembic_version"])

    def test_partial_upgrade_to_branch(self):
        expected, rows_after = lockstep_path("orders@head")
        out = alembic("upgrade", "orders@head", url=self.url)
        self.assertEqual(ran_steps(out.stderr), expected)
        self.assertEqual(self.rows(), rows_after)


class PostgresTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer().__enter__()
        cls.pg.create_database("app")
        cls.url = cls.pg.url("app")

    @classmethod
    def tearDownClass(cls):
        cls.pg.__exit__(None, None, None)

    def test_upgrade_and_downgrade(self):
        expected, _ = lockstep_path("heads")
        out = alembic("upgrade", "heads", url=self.url)
        self.assertEqual(ran_steps(out.stderr), expected)
        self.assertEqual(self.pg.psql("SELECT version_num FROM alembic_version", "app").split(), [HEAD])
        cols = self.pg.psql("SELECT column_name FROM information_schema.columns WHERE "
                            "table_name='users' ORDER BY ordinal_position", "app").split()
        self.assertEqual(cols, ["id", "name", "email", "age"])
        uniques = self.pg.psql("SELECT conname FROM pg_constraint WHERE contype='u'", "app").split()
        self.assertIn("uq_users_email", uniques)
        alembic("downgrade", "base", url=self.url)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM alembic_version", "app").strip(), "0")
        tables = self.pg.psql("SELECT tablename FROM pg_tables WHERE schemaname='public'", "app").split()
        self.assertEqual(tables, ["alembic_version"])


def sort_unordered(text):
    """Alembic prints a branch point's children in hash order: sort them."""
    text = re.sub(r"Branches into: (.*)", lambda m: "Branches into: " + ", ".join(sorted(m.group(1).split(", "))), text)
    lines = text.split("\n")
    kids = sorted(l for l in lines if re.match(r"^ +-> ", l))
    it = iter(kids)
    return "\n".join(next(it) if re.match(r"^ +-> ", l) else l for l in lines)


class CliAgainstAlembicTest(unittest.TestCase):
    """lockstep and the real `alembic` process print the same text."""

    def check(self, *args):
        """Same text on success; on failure, the same FAILED message."""
        a = run([ALEMBIC, "-c", EXAMPLE_INI] + list(args), check=False)
        l = run([LOCKSTEP, "-c", EXAMPLE_INI] + list(args), check=False)
        if a.returncode != 0:
            self.assertEqual(l.returncode, 1, (args, l.stdout, l.stderr))
            alembic_msg = re.search(r"FAILED: (.*)", a.stdout + a.stderr).group(1)
            self.assertEqual(l.stderr.strip(), "FAILED: " + alembic_msg, args)
            return
        self.assertEqual(l.returncode, 0, (args, l.stderr))
        self.assertEqual(sort_unordered(l.stdout), sort_unordered(a.stdout), args)

    def test_commands(self):
        for args in (["heads"], ["heads", "-v"], ["heads", "--resolve-dependencies"], ["branches"],
                     ["history"], ["history", "--verbose"], ["history", "-r", "3f2a:orders@head"],
                     ["history", "--rev-range=-2:"],  # Alembic: "Ambiguous walk" (a merge)
                     ["history", "-r", "b5d1:heads"], ["history", "-r", "orders@-1:"],
                     ["show", "head"], ["show", "orders@base"], ["show", "orders@head-1"],
                     ["show", "7c4e"], ["show", "heads"]):
            with self.subTest(args=args):
                self.check(*args)

    def test_errors_match(self):
        for args in (["show", "zzzz"], ["show", "orders@7c4e"], ["history", "-r", "e9a8:3f2a"]):
            with self.subTest(args=args):
                a = run([ALEMBIC, "-c", EXAMPLE_INI] + args, check=False)
                l = run([LOCKSTEP, "-c", EXAMPLE_INI] + args, check=False)
                self.assertNotEqual(a.returncode, 0)
                self.assertEqual(l.returncode, 1)
                self.assertIn("FAILED: ", a.stdout + a.stderr)
                alembic_msg = re.search(r"FAILED: (.*)", a.stdout + a.stderr).group(1)
                self.assertEqual(l.stderr.strip(), "FAILED: " + alembic_msg)

    def test_missing_config(self):
        l = run([LOCKSTEP, "-c", "/nonexistent/alembic.ini", "heads"], check=False)
        self.assertEqual(l.returncode, 1)
        self.assertEqual(l.stderr.strip(), "FAILED: No config file '/nonexistent/alembic.ini' "
                         "found, or file has no '[alembic]' section")

    def test_json_output(self):
        import json
        heads = json.loads(run([LOCKSTEP, "-c", EXAMPLE_INI, "heads", "-o", "json"]).stdout)
        self.assertEqual([h["revision"] for h in heads["heads"]], [HEAD])
        self.assertEqual(heads["heads"][0]["branch_labels"], ["orders"])

    def test_usage_errors_exit_2(self):
        self.assertEqual(run([LOCKSTEP, "heads", "--bogus"], check=False).returncode, 2)
        self.assertEqual(run([LOCKSTEP, "frobnicate"], check=False).returncode, 2)
        self.assertEqual(run([LOCKSTEP, "-c", EXAMPLE_INI, "show"], check=False).returncode, 2)


def project_with(d, files):
    """An Alembic project in folder `d`: alembic.ini and versions/ with `files`."""
    os.makedirs(d + "/versions")
    with open(d + "/alembic.ini", "w") as f:
        f.write("[alembic]\nscript_location = %(here)s\n")
    for name, text in files.items():
        with open(os.path.join(d, "versions", name), "w") as f:
            f.write(text)
    return d + "/alembic.ini"


class LintTest(unittest.TestCase):
    def test_example_is_clean(self):
        p = run([LOCKSTEP, "-c", EXAMPLE_INI, "lint"], check=False)
        self.assertEqual(p.returncode, 0, p.stdout)

    def test_findings(self):
        d = tempfile.mkdtemp()
        try:
            os.makedirs(d + "/versions")
            with open(d + "/alembic.ini", "w") as f:
                f.write("[alembic]\nscript_location = %(here)s\n")
            files = {
                "aaaa1111_base.py": '"""base\n\nRevises:\n"""\nrevision = "aaaa1111"\ndown_revision = None\n'
                                    "def upgrade():\n    op.create_table('t')\ndef downgrade():\n    op.drop_table('t')\n",
                "bbbb2222_left.py": '"""left\n\nRevises: cccc3333\n"""\nrevision = "bbbb2222"\n'
                                    'down_revision = "aaaa1111"\ndef upgrade():\n    pass\n',
                "wrong_name.py": 'revision = "cccc3333"\ndown_revision = "aaaa1111"\n',
                "dddd4444_broken.py": 'revision = "dddd4444"\ndown_revision = "aa" + missing_name\n',
            }
            for name, text in files.items():
                with open(os.path.join(d, "versions", name), "w") as f:
                    f.write(text)
            p = run([LOCKSTEP, "-c", d + "/alembic.ini", "lint"], check=False)
            self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
            for code in ("multiple-heads", "empty-upgrade", "revises-mismatch",
                         "filename-mismatch", "unreadable"):
                self.assertIn(": %s: " % code, p.stdout)
            self.assertIn("dddd4444_broken.py:2: unreadable:", p.stdout)
        finally:
            shutil.rmtree(d)

    def test_a_parent_that_is_missing_is_a_graph_error_at_its_file(self):
        # The finding's path is the file and its message Alembic's, whole
        # (it used to be split at the first ".py": path = the message,
        # code unreadable, message ")").
        d = tempfile.mkdtemp()
        try:
            ini = project_with(d, {
                "bbbb2222_child.py": 'revision = "bbbb2222"\ndown_revision = "zzzz9999"\n'})
            p = run([LOCKSTEP, "-c", ini, "lint", "-o", "json"], check=False)
            self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
            findings = json.loads(p.stdout)["findings"]
            self.assertEqual(len(findings), 1, findings)
            self.assertEqual(findings[0]["path"], d + "/versions/bbbb2222_child.py")
            self.assertEqual(findings[0]["code"], "graph-error")
            self.assertIn("zzzz9999", findings[0]["message"])
            self.assertIn("bbbb2222_child.py", findings[0]["message"])
        finally:
            shutil.rmtree(d)

    def test_a_file_name_with_a_line_break_is_skipped_as_alembic_skips_it(self):
        d = tempfile.mkdtemp()
        try:
            ini = project_with(d, {
                "aaaa_base.py": 'revision = "aaaa"\ndown_revision = None\n',
                "bbbb\n_child.py": 'revision = "bbbb"\ndown_revision = "aaaa"\n'})
            ours = run([LOCKSTEP, "-c", ini, "heads"], check=False)
            theirs = run([ALEMBIC, "-c", ini, "heads"], check=False)
            self.assertEqual(theirs.returncode, 0, theirs.stderr)
            self.assertEqual(ours.returncode, 0, ours.stderr)
            self.assertEqual(ours.stdout, theirs.stdout)
            self.assertIn("aaaa (head)", ours.stdout)
        finally:
            shutil.rmtree(d)

    def test_an_old_merge_templates_revises_tuple_is_no_mismatch(self):
        d = tempfile.mkdtemp()
        try:
            files = {
                "aaaa_base.py": '"""base\n\nRevises:\n"""\nrevision = "aaaa"\ndown_revision = None\n',
                "bbbb_left.py": '"""l\n\nRevises: aaaa\n"""\nrevision = "bbbb"\ndown_revision = "aaaa"\n',
                "cccc_right.py": '"""r\n\nRevises: aaaa\n"""\nrevision = "cccc"\ndown_revision = "aaaa"\n',
                "dddd_merge.py": '"""merge\n\nRevises: (\'bbbb\', \'cccc\')\n"""\nrevision = "dddd"\n'
                                 'down_revision = ("bbbb", "cccc")\n',
            }
            ini = project_with(d, files)
            p = run([LOCKSTEP, "-c", ini, "lint"], check=False)
            self.assertNotIn("revises-mismatch", p.stdout)
            with open(os.path.join(d, "versions", "dddd_merge.py"), "w") as f:
                f.write('"""merge\n\nRevises: (\'bbbb\', \'eeee\')\n"""\nrevision = "dddd"\n'
                        'down_revision = ("bbbb", "cccc")\n')
            p = run([LOCKSTEP, "-c", ini, "lint"], check=False)
            self.assertIn("revises-mismatch", p.stdout)
        finally:
            shutil.rmtree(d)


class ComputedHeadersTest(unittest.TestCase):
    """Neutron's expand/contract layout: branch labels (and a dependency)
    computed by a module the revision files import. lockstep imports such a
    file as Alembic does, and prints what Alembic prints."""

    def setUp(self):
        self.d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.d)
        os.makedirs(self.d + "/proj/versions")
        os.makedirs(self.d + "/proj/branches")
        with open(self.d + "/proj/alembic.ini", "w") as f:
            f.write("[alembic]\nscript_location = %(here)s\nprepend_sys_path = .\n")
        with open(self.d + "/proj/branches/__init__.py", "w") as f:
            f.write("")
        with open(self.d + "/proj/branches/cli.py", "w") as f:
            f.write("EXPAND_BRANCH = 'expand'\nCONTRACT_BRANCH = 'contract'\n")
        revisions = {
            "start.py": ('"""start"""\nrevision = "aaaa00000001"\ndown_revision = None\n'),
            "expand1.py": ('"""add column"""\nfrom alembic import op\nfrom branches import cli\n'
                           'revision = "eeee00000001"\ndown_revision = "aaaa00000001"\n'
                           'branch_labels = (cli.EXPAND_BRANCH,)\n'),
            # A computed revision id too (issue 26 #5: Alembic loads it).
            "expand2.py": ('"""add index"""\nrevision = "eeee0000" + "0002"\n'
                           'down_revision = "eeee00000001"\n'),
            "contract1.py": ('"""drop column"""\nfrom branches import cli\n'
                             'revision = "cccc00000001"\ndown_revision = "aaaa00000001"\n'
                             'branch_labels = (cli.CONTRACT_BRANCH,)\n'
                             'depends_on = ("eeee0000000" + "2",)\n'),
        }
        for name, text in revisions.items():
            with open(os.path.join(self.d, "proj", "versions", name), "w") as f:
                f.write(text)
        self.ini = self.d + "/proj/alembic.ini"

    def test_commands_print_what_alembic_prints(self):
        for args in (["heads"], ["heads", "-v"], ["heads", "--resolve-dependencies"],
                     ["branches"], ["history"], ["history", "-v"], ["show", "contract@head"],
                     ["history", "-r", "expand@base:expand@head"]):
            with self.subTest(args=args):
                # Run from the project's folder: prepend_sys_path "." is the
                # working directory, for Alembic and for lockstep alike.
                a = subprocess.run([ALEMBIC, "-c", self.ini] + args, capture_output=True,
                                   text=True, cwd=self.d + "/proj")
                l = subprocess.run([LOCKSTEP, "-c", self.ini] + args, capture_output=True,
                                   text=True, cwd=self.d + "/proj")
                self.assertEqual(a.returncode, 0, a.stderr)
                self.assertEqual(l.returncode, 0, l.stderr)
                # The same lines; sibling heads may come in another order
                # (Alembic 1.8.1 loads in directory order, see the README).
                # "Branches into:" is a Python set, printed in hash order.
                self.assertEqual(sorted(sort_unordered(l.stdout).splitlines()),
                                 sorted(sort_unordered(a.stdout).splitlines()))
        heads = json.loads(subprocess.run([LOCKSTEP, "-c", self.ini, "heads", "-o", "json"],
                                          capture_output=True, text=True,
                                          cwd=self.d + "/proj").stdout)
        self.assertEqual(sorted(l for h in heads["heads"] for l in h["branch_labels"]),
                         ["contract", "expand"])

    def test_an_import_that_fails_names_the_file_and_pythons_error(self):
        # From another folder, `branches` is not importable, for Alembic too.
        a = subprocess.run([ALEMBIC, "-c", self.ini, "heads"], capture_output=True, text=True,
                           cwd=self.d)
        self.assertNotEqual(a.returncode, 0)
        self.assertIn("No module named 'branches'", a.stderr)
        l = subprocess.run([LOCKSTEP, "-c", self.ini, "heads"], capture_output=True, text=True,
                           cwd=self.d)
        self.assertEqual(l.returncode, 1)
        self.assertIn(self.d + "/proj/versions/contract1.py:5: its header is computed "
                      "(branch_labels is not a literal), and importing it with Python as "
                      "Alembic does failed: ModuleNotFoundError: No module named 'branches'",
                      l.stderr)


class InventoryProjectTest(unittest.TestCase):
    """Offline commands read the project from lockstepd's inventory
    (--inventory FILE, $LOCKSTEP_INVENTORY), so the fleet's project needs no
    second path; only the project is read, so secrets the daemon needs
    (here an unset password variable) need not be at hand."""

    def setUp(self):
        self.d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.d)
        shutil.copytree(os.path.join(ROOT, "migrations", "example"), self.d + "/migrations")
        self.inventory = self.d + "/fleet.yaml"
        with open(self.inventory, "w") as f:
            f.write(textwrap.dedent("""\
                project:
                  alembic_ini: migrations/alembic.ini   # relative to this file
                environments:
                  - name: prod
                    databases:
                      - name: app
                        url: postgresql://app@db.invalid/app
                        password_env: LOCKSTEP_TEST_UNSET_PASSWORD
                """))
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("ALEMBIC_CONFIG", "LOCKSTEP_INVENTORY")}

    def lockstep(self, *args, env=None):
        return subprocess.run([LOCKSTEP] + list(args), capture_output=True, text=True,
                              cwd=tempfile.gettempdir(), env=env or self.env)

    def test_heads_and_history_from_the_inventory_as_alembic_prints_them(self):
        for args in (["heads"], ["history"], ["show", "heads"]):
            with self.subTest(args=args):
                a = run([ALEMBIC, "-c", self.d + "/migrations/alembic.ini"] + args)
                flag = self.lockstep("--inventory", self.inventory, *args)
                self.assertEqual(flag.returncode, 0, flag.stderr)
                self.assertEqual(flag.stdout, a.stdout)
                env = dict(self.env, LOCKSTEP_INVENTORY=self.inventory)
                from_env = self.lockstep(*args, env=env)
                self.assertEqual(from_env.returncode, 0, from_env.stderr)
                self.assertEqual(from_env.stdout, a.stdout)

    def test_an_explicit_project_wins_and_errors_name_the_inventory(self):
        # -c and $ALEMBIC_CONFIG come before $LOCKSTEP_INVENTORY.
        env = dict(self.env, LOCKSTEP_INVENTORY=self.d + "/missing.yaml")
        self.assertEqual(self.lockstep("-c", EXAMPLE_INI, "heads", env=env).returncode, 0)
        env["ALEMBIC_CONFIG"] = EXAMPLE_INI
        self.assertEqual(self.lockstep("heads", env=env).returncode, 0)
        missing = self.lockstep("--inventory", self.d + "/missing.yaml", "heads")
        self.assertEqual(missing.returncode, 1)
        self.assertIn(self.d + "/missing.yaml: cannot read the inventory file", missing.stderr)
        with open(self.inventory, "w") as f:
            f.write("project:\n  ini_section: alembic\nenvironments: []\n")
        broken = self.lockstep("--inventory", self.inventory, "heads")
        self.assertEqual(broken.returncode, 1)
        self.assertIn(self.inventory + ":2:3: project: set exactly one of alembic_ini or scripts",
                      broken.stderr)


if __name__ == "__main__":
    unittest.main()
