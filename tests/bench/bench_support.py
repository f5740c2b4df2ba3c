"""What the fleet benchmarks share: a fleet of SQLite files and PostgreSQL
databases at the example project's revisions, made quickly.

A seed per revision is made by the real Alembic (a SQLite file and a
PostgreSQL template database); the rest of the fleet are copies of the
seeds (SQLite) and clones (CREATE DATABASE ... TEMPLATE), in turn.
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

INI = os.path.join(ROOT, "migrations", "example", "alembic.ini")
STATES = ["3f2a1b9c0d11", "7c4e2d8a9b22", "b5d1e7f3a033", "c2e4a6b8d055", "heads"]


def alembic(url, *args):
    subprocess.run(["/usr/bin/alembic", "-c", INI, "-x", "url=" + url] + list(args), check=True,
                   capture_output=True)


def build_fleet(work, pg, sqlite, postgres):
    """Seeds, `sqlite` files in work/tenants (t0000.db, ...) and `postgres`
    databases tenant_000, ... on `pg`. Returns (seeds, [(file, seed index)],
    [(database, seed index)]); PostgreSQL seed i is the database tpl_i."""
    print("building the fleet: %d SQLite + %d PostgreSQL databases..." % (sqlite, postgres),
          flush=True)
    os.makedirs(os.path.join(work, "tenants"))
    seeds = []
    for i, target in enumerate(STATES):
        path = os.path.join(work, "seed%d.db" % i)
        alembic("sqlite:///" + path, "upgrade", target)
        seeds.append(path)
        pg.create_database("tpl_%d" % i)
        alembic(pg.url("tpl_%d" % i), "upgrade", target)
    files, databases = [], []
    for n in range(sqlite):
        path = os.path.join(work, "tenants", "t%04d.db" % n)
        shutil.copy(seeds[n % len(seeds)], path)
        files.append((path, n % len(seeds)))
    for n in range(postgres):
        pg.psql('CREATE DATABASE "tenant_%03d" TEMPLATE "tpl_%d"' % (n, n % len(STATES)))
        databases.append(("tenant_%03d" % n, n % len(STATES)))
    return seeds, files, databases


def build_mysql_fleet(my, count):
    """`count` databases tenant_000, ... on MariaDB server `my`, at the
    example project's revisions in turn: a seed per revision made by the
    real Alembic, then copies of its dump (MySQL has no template
    databases). Returns [(database, seed index)]."""
    print("building %d MariaDB databases..." % count, flush=True)
    dumps = []
    for i, target in enumerate(STATES):
        my.sql("CREATE DATABASE mtpl_%d" % i)
        alembic(my.url("mtpl_%d" % i), "upgrade", target)
        dumps.append(subprocess.run(
            ["mariadb-dump", "--no-defaults", "--socket=" + my.socket, "-uroot", "mtpl_%d" % i],
            check=True, capture_output=True, text=True).stdout)
    databases = []
    for n in range(count):
        name = "tenant_%03d" % n
        my.sql("CREATE DATABASE %s" % name)
        subprocess.run(["mariadb", "--no-defaults", "--socket=" + my.socket, "-uroot", name],
                       input=dumps[n % len(STATES)], check=True, capture_output=True, text=True)
        databases.append((name, n % len(STATES)))
    return databases


def sqlalchemy_loop(urls):
    """Seconds a Python loop takes to read alembic_version from each URL
    with SQLAlchemy, one engine per URL: what teams script today."""
    loop = subprocess.run([sys.executable, "-c", r"""
import sys, time
from sqlalchemy import create_engine, text
urls = sys.stdin.read().split()
t = time.perf_counter()
for u in urls:
    e = create_engine(u)
    with e.connect() as c:
        rows = [r[0] for r in c.execute(text("SELECT version_num FROM alembic_version"))]
    e.dispose()
print(time.perf_counter() - t)
"""], input="\n".join(urls), capture_output=True, text=True, check=True)
    return float(loop.stdout.strip())
