"""Who may reach lockstepd: TLS on its gRPC port, client certificates, and
the refusal to serve plaintext beyond loopback.

Certificates are made here with openssl: a CA, a server certificate for
127.0.0.1 and localhost, a client certificate, and an unrelated CA.

Run: LOCKSTEP_BUILD=build python3 -m unittest tests/e2e/test_security.py
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
sys.path.insert(0, HERE)

from lockstepd import Lockstepd, grpc_stubs  # noqa: E402
from pgserver import free_port  # noqa: E402
from test_rollout import BUILD, Fleet  # noqa: E402


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """ca.pem/ca.key, server.pem/server.key (127.0.0.1, localhost),
    client.pem/client.key (CN release-bot), other-ca.pem."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=%s" % ca, "-keyout", ca + ".key", "-out", ca + ".pem", cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj",
                "/CN=%s" % ("localhost" if name == "server" else "release-bot"),
                "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", name + ".pem", *ext, cwd=d)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.f = Fleet()
        cls.pki = os.path.join(cls.f.dir, "pki")
        os.makedirs(cls.pki)
        make_pki(cls.pki)
        cls.f.sqlite("app", "heads")

    @classmethod
    def tearDownClass(cls):
        cls.f.close()

    def start(self, tls, client_args=(), listen_host="127.0.0.1"):
        port, metrics = free_port(), free_port()
        config = os.path.join(self.f.dir, "tls-%d.yaml" % port)
        with open(config, "w") as f:
            f.write("""
server:
  listen: %s:%d
  metrics_listen: 127.0.0.1:%d
  state: state-%d.db
  poll_interval: 1h
  tls: %s
project: {alembic_ini: project/alembic.ini}
environments:
  - name: dev
    databases: [{name: app, url: "sqlite:///app.db"}]
""" % (listen_host, port, metrics, port, tls))
        d = Lockstepd(BUILD, config, "localhost:%d" % port, client_args=client_args).start()
        self.addCleanup(d.stop)
        return d

    def p(self, name):
        return os.path.join(self.pki, name)

    def test_tls_with_the_right_ca_answers_and_anything_else_does_not(self):
        d = self.start("{cert: pki/server.pem, key: pki/server.key}",
                       client_args=["--tls-ca", self.p("ca.pem")])
        self.assertIn("dev", d.cli("status").stdout)
        # Plaintext to the TLS port, and TLS trusting another CA: refused.
        plain = subprocess.run([d.lockstep, "--server", d.server, "status"],
                               capture_output=True, text=True, timeout=60)
        self.assertNotEqual(plain.returncode, 0)
        wrong = subprocess.run([d.lockstep, "--server", d.server, "--tls-ca",
                                self.p("other-ca.pem"), "status"],
                               capture_output=True, text=True, timeout=60)
        self.assertNotEqual(wrong.returncode, 0)
        self.assertIn("FAILED", wrong.stderr)
        # An independent client (Python's gRPC) with the CA.
        import grpc
        pb2, pb2_grpc = grpc_stubs(os.path.join(self.f.dir, "stubs"))
        with open(self.p("ca.pem"), "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        stub = pb2_grpc.LockstepStub(grpc.secure_channel(d.server, creds))
        self.assertEqual(len(stub.GetFleet(pb2.GetFleetRequest(), timeout=10).databases), 1)
        # The key never reaches the log.
        with open(self.p("server.key")) as f:
            key_line = f.read().splitlines()[1]
        self.assertNotIn(key_line, d.log())

    def test_a_client_ca_requires_a_client_certificate(self):
        d = self.start("{cert: pki/server.pem, key: pki/server.key, client_ca: pki/ca.pem}",
                       client_args=["--tls-ca", self.p("ca.pem"), "--tls-cert",
                                    self.p("client.pem"), "--tls-key", self.p("client.key")])
        self.assertIn("dev", d.cli("status").stdout)
        without = subprocess.run([d.lockstep, "--server", d.server, "--tls-ca", self.p("ca.pem"),
                                  "status"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(without.returncode, 0)
        # A self-signed certificate, which the client CA did not sign: refused too.
        other = os.path.join(self.pki, "other")
        if not os.path.exists(other + ".pem"):
            openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=intruder", "-keyout", "other.key", "-out", "other.pem", cwd=self.pki)
        intruder = subprocess.run([d.lockstep, "--server", d.server, "--tls-ca", self.p("ca.pem"),
                                   "--tls-cert", other + ".pem", "--tls-key", other + ".key",
                                   "status"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(intruder.returncode, 0)

    def test_bad_client_flags_are_usage_errors_naming_the_file(self):
        p = subprocess.run([os.path.join(BUILD, "client", "lockstep"), "--tls-ca",
                            "/nonexistent/ca.pem", "status"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("cannot read /nonexistent/ca.pem", p.stderr)
        p = subprocess.run([os.path.join(BUILD, "client", "lockstep"), "--tls-cert", "x.pem",
                            "status"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("need --tls-ca", p.stderr)


class PlaintextBeyondLoopbackTest(unittest.TestCase):
    """lockstepd refuses to serve plaintext on a non-loopback address unless
    the inventory says server.insecure: true, and then warns at each start."""

    def test_refused_without_tls_allowed_with_insecure_and_warned(self):
        f = Fleet()
        self.addCleanup(f.close)
        f.sqlite("app", "heads")
        port = free_port()
        config = os.path.join(f.dir, "open.yaml")
        base = """
server: {listen: "0.0.0.0:%d", metrics_listen: "127.0.0.1:%d", state: s.db, poll_interval: 1h%s}
project: {alembic_ini: project/alembic.ini}
environments: [{name: dev, databases: [{name: app, url: "sqlite:///app.db"}]}]
"""
        with open(config, "w") as fh:
            fh.write(base % (port, free_port(), ""))
        check = subprocess.run([os.path.join(BUILD, "daemon", "lockstepd"), "--check-config", config],
                               capture_output=True, text=True)
        self.assertNotEqual(check.returncode, 0)
        self.assertIn("server.listen: lockstepd would serve 0.0.0.0:%d in plaintext" % port,
                      check.stdout + check.stderr)
        with open(config, "w") as fh:
            fh.write(base % (port, free_port(), ", insecure: true"))
        d = Lockstepd(BUILD, config, "127.0.0.1:%d" % port).start()
        self.addCleanup(d.stop)
        self.assertIn("server.insecure: true: gRPC on 0.0.0.0:%d is plaintext" % port, d.log())


if __name__ == "__main__":
    unittest.main()
