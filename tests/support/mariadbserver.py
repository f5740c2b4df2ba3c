"""A throwaway MariaDB server for tests: `mariadb-install-db` into a temp
folder, `mariadbd` on a free port and its own socket, killed and removed on
exit. As root the server runs as the `mysql` user. The harness's own account
is root, without a password, over the socket and from 127.0.0.1; every user
a test creates proves its password.

    with MariadbServer() as my:
        my.sql("CREATE DATABASE shop")
        url = my.url("shop")          # mysql+pymysql://root@127.0.0.1:PORT/shop
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

from pgserver import free_port


class MariadbServer:
    def __init__(self):
        if not os.path.exists("/usr/sbin/mariadbd"):
            raise RuntimeError("MariaDB binaries not found (apt-get install mariadb-server)")
        self.dir = tempfile.mkdtemp(prefix="lockstep-mariadb-")
        self.socket = os.path.join(self.dir, "mysql.sock")
        self.port = free_port()
        self.proc = None

    def __enter__(self):
        user = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "mysql", "mysql")
            user = ["--user=mysql"]
        # Its own tmpdir: a starting mariadbd removes the "#sql*" files it
        # finds there, those of another server starting beside it included.
        subprocess.run(["mariadb-install-db", "--datadir=" + self.dir + "/data",
                        "--tmpdir=" + self.dir,
                        "--auth-root-authentication-method=normal", "--skip-test-db",
                        "--skip-name-resolve"] + user,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.proc = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", "--datadir=" + self.dir + "/data",
             "--tmpdir=" + self.dir,
             "--socket=" + self.socket, "--port=%d" % self.port, "--bind-address=127.0.0.1",
             "--skip-name-resolve", "--skip-log-bin", "--log-error=" + self.dir + "/error.log",
             "--pid-file=" + self.dir + "/mysqld.pid", "--innodb-buffer-pool-size=32M",
             "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
             "--performance-schema=OFF"] + user,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if subprocess.run(["mariadb-admin", "--no-defaults", "--socket=" + self.socket,
                               "-uroot", "ping"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                self.sql("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; "
                         "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        log = open(self.dir + "/error.log").read() if os.path.exists(self.dir + "/error.log") else ""
        self.__exit__()
        raise RuntimeError("mariadbd did not start: " + log[-2000:])

    def __exit__(self, *exc):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db, user="root", password=None):
        auth = user if password is None else "%s:%s" % (user, password)
        return "mysql+pymysql://%s@127.0.0.1:%d/%s" % (auth, self.port, db)

    def sql(self, sql, db=None):
        argv = ["mariadb", "--no-defaults", "--socket=" + self.socket, "-uroot", "--batch",
                "--skip-column-names", "-e", sql]
        if db:
            argv.append(db)
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
