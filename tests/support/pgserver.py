"""A throwaway PostgreSQL server for tests: temp data dir, free port, torn
down on exit. Uses Debian's PostgreSQL 15 binaries; initdb refuses root, so
as root the server runs as the `postgres` user.

Authentication is real for every role a test creates: TCP connections
check passwords with scram-sha-256 (HBA below); only the harness's own
superuser `postgres` is trusted, so fixtures need no password plumbing.

    with PgServer() as pg:
        url = pg.url("mydb")          # postgresql://postgres@127.0.0.1:PORT/mydb
        pg.create_database("mydb")
"""
import glob
import os
import shutil
import random
import socket
import subprocess
import tempfile
import time


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    return os.path.dirname(found[-1])


def free_port():
    """A port nothing listens on, from below the kernel's ephemeral range
    (32768-60999): a port from bind(0) is an ephemeral one, which any
    outgoing connection of a test running beside this one (ctest -j2) may
    take as its source port before the server here binds it."""
    for _ in range(200):
        port = random.randint(15000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 15000 and 32000")


# Every role but the harness's superuser proves its password (scram-sha-256).
HBA = """local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


class PgServer:
    def __init__(self, settings=None):
        self.settings = settings or {}
        self.bindir = _bindir()
        self.dir = tempfile.mkdtemp(prefix="lockstep-pg-")
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *argv):
        cmd = list(argv)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self):
        if self.as_root:
            shutil.chown(self.dir, "postgres")
        self._run(os.path.join(self.bindir, "initdb"), "-D", self.dir + "/data", "-A", "trust",
                  "-U", "postgres", "--no-sync")
        with open(self.dir + "/data/pg_hba.conf", "w") as f:
            f.write(HBA)
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.dir + "/data", "-w", "-l",
                  self.dir + "/log", "-o",
                  "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off%s" % (
                      self.port, self.dir,
                      "".join(" -c %s=%s" % kv for kv in self.settings.items())),
                  "start")
        return self

    def __exit__(self, *exc):
        try:
            self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.dir + "/data", "-m",
                      "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db="postgres", user="postgres", password=None):
        auth = user if password is None else "%s:%s" % (user, password)
        return "postgresql://%s@127.0.0.1:%d/%s" % (auth, self.port, db)

    def psql(self, sql, db="postgres"):
        out = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-At", "-h",
                              "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                              "-v", "ON_ERROR_STOP=1", "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout

    def create_database(self, name):
        self.psql('CREATE DATABASE "%s"' % name)
