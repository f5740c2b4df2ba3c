"""Who may reach lockstepd and what they may do: TLS on its gRPC port,
client certificates, the refusal to serve plaintext or unauthenticated
beyond loopback, bearer tokens, and access per environment and role (every
RPC x every role x an environment inside and outside the binding).

Certificates are made here with openssl: a CA, a server certificate for
127.0.0.1 and localhost, a client certificate, and an unrelated CA.

Run: LOCKSTEP_BUILD=build python3 -m unittest tests/e2e/test_security.py
"""
import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
sys.path.insert(0, HERE)

from lockstepd import Lockstepd, grpc_stubs  # noqa: E402
from pgserver import free_port  # noqa: E402
from test_rollout import AGE, BUILD, HEAD, USERS, Fleet  # noqa: E402


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """ca.pem/ca.key, server.pem/server.key (127.0.0.1, localhost),
    client.pem/client.key (CN release-bot), client-san.pem/client-san.key
    (no CN; URI, email and DNS subject alternative names), other-ca.pem."""
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
    # A client certificate without a CN: its subject alternative names say who.
    with open(os.path.join(d, "client-san.ext"), "w") as f:
        f.write("subjectAltName=URI:spiffe://example.org/deploy,email:deploy@example.org,"
                "DNS:deploy-bot.example.org\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=lockstep tests",
            "-keyout", "client-san.key", "-out", "client-san.csr", cwd=d)
    openssl("x509", "-req", "-in", "client-san.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", "client-san.pem", "-extfile", "client-san.ext",
            cwd=d)


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

    def start(self, tls, client_args=(), listen_host="127.0.0.1", access=""):
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
%s""" % (listen_host, port, metrics, port, tls, access))
        d = Lockstepd(BUILD, config, "localhost:%d" % port, client_args=client_args).start()
        self.addCleanup(d.stop)
        d.metrics_port = metrics
        return d

    def p(self, name):
        return os.path.join(self.pki, name)

    def metrics(self, d, ca="ca.pem", cert=None, scheme="https"):
        """/metrics of `d` (HTTPS trusting `ca`, presenting `cert` if given);
        raises when the connection or the handshake is refused."""
        ctx = ssl.create_default_context(cafile=self.p(ca))
        if cert:
            ctx.load_cert_chain(self.p(cert + ".pem"), self.p(cert + ".key"))
        url = "%s://localhost:%d/metrics" % (scheme, d.metrics_port)
        return urllib.request.urlopen(url, context=ctx if scheme == "https" else None,
                                      timeout=10).read().decode()

    REFUSED = (urllib.error.URLError, http.client.HTTPException, ConnectionError, ssl.SSLError)

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
        # /metrics is served over TLS too, with the same certificate; not in
        # plaintext, nor to a client that trusts another CA.
        self.assertIn("lockstep_build_info", self.metrics(d))
        with self.assertRaises(self.REFUSED):
            self.metrics(d, scheme="http")
        with self.assertRaises(self.REFUSED):
            self.metrics(d, ca="other-ca.pem")
        # The key never reaches the log, nor the metrics.
        with open(self.p("server.key")) as f:
            key_line = f.read().splitlines()[1]
        self.assertNotIn(key_line, d.log())
        self.assertNotIn(key_line, self.metrics(d))

    def test_an_expired_server_certificate_is_refused_by_clients(self):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                "-keyout", "expired.key", "-out", "expired.csr", cwd=self.pki)
        openssl("x509", "-req", "-in", "expired.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "-1", "-out", "expired.pem", "-extfile", "san.ext",
                cwd=self.pki)  # notAfter before notBefore: expired from the start
        port, config = free_port(), os.path.join(self.f.dir, "expired.yaml")
        with open(config, "w") as f:
            f.write("""
server: {listen: "127.0.0.1:%d", metrics_listen: "127.0.0.1:%d", state: expired.db,
         poll_interval: 1h, tls: {cert: pki/expired.pem, key: pki/expired.key}}
project: {alembic_ini: project/alembic.ini}
environments: [{name: dev, databases: [{name: app, url: "sqlite:///app.db"}]}]
""" % (port, free_port()))
        log = open(config + ".log", "w")
        proc = subprocess.Popen([os.path.join(BUILD, "daemon", "lockstepd"), "--config", config],
                                stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (proc.kill(), proc.wait(), log.close()))
        deadline = time.time() + 20
        while True:  # the port opens; every handshake then fails on the date
            p = subprocess.run([os.path.join(BUILD, "client", "lockstep"), "--server",
                                "localhost:%d" % port, "--tls-ca", self.p("ca.pem"), "status"],
                               capture_output=True, text=True, timeout=60)
            self.assertNotEqual(p.returncode, 0, p.stdout)
            if "Connection refused" not in p.stderr or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertIn("FAILED", p.stderr)
        self.assertIsNone(proc.poll())  # lockstepd itself keeps running
        import grpc
        pb2, pb2_grpc = grpc_stubs(os.path.join(self.f.dir, "stubs"))
        with open(self.p("ca.pem"), "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        stub = pb2_grpc.LockstepStub(grpc.secure_channel("localhost:%d" % port, creds))
        with self.assertRaises(grpc.RpcError) as refused:
            stub.GetFleet(pb2.GetFleetRequest(), timeout=10)
        self.assertEqual(refused.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_a_rotated_certificate_is_served_without_a_restart(self):
        own = os.path.join(self.pki, "rotating")
        os.makedirs(own, exist_ok=True)
        for name in ("server.pem", "server.key"):
            shutil.copy(self.p(name), os.path.join(own, name))
        d = self.start("{cert: pki/rotating/server.pem, key: pki/rotating/server.key}",
                       client_args=["--tls-ca", self.p("ca.pem")])
        self.assertIn("dev", d.cli("status").stdout)
        # A new certificate, from another CA, put in place of the old one.
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                "-keyout", "next.key", "-out", "next.csr", cwd=self.pki)
        openssl("x509", "-req", "-in", "next.csr", "-CA", "other-ca.pem", "-CAkey", "other-ca.key",
                "-CAcreateserial", "-days", "2", "-out", "next.pem", "-extfile", "san.ext",
                cwd=self.pki)
        os.replace(self.p("next.key"), os.path.join(own, "server.key"))
        os.replace(self.p("next.pem"), os.path.join(own, "server.pem"))

        def status(ca):
            return subprocess.run([d.lockstep, "--server", d.server, "--tls-ca", self.p(ca),
                                   "status"], capture_output=True, text=True, timeout=60)
        deadline = time.time() + 30
        while status("other-ca.pem").returncode != 0:
            self.assertLess(time.time(), deadline, "the new certificate was never served")
            time.sleep(0.5)
        self.assertNotEqual(status("ca.pem").returncode, 0)  # the old one is gone
        # /metrics presents the new one too (read again when the files change).
        self.assertIn("lockstep_build_info", self.metrics(d, ca="other-ca.pem"))
        with self.assertRaises(self.REFUSED):
            self.metrics(d, ca="ca.pem")
        self.assertEqual(d.proc.poll(), None)  # the same lockstepd all along

    def test_a_client_ca_requires_a_client_certificate(self):
        d = self.start("{cert: pki/server.pem, key: pki/server.key, client_ca: pki/ca.pem}",
                       client_args=["--tls-ca", self.p("ca.pem"), "--tls-cert",
                                    self.p("client.pem"), "--tls-key", self.p("client.key")],
                       access="access: [{subjects: [release-bot, deploy@example.org], "
                              "role: viewer, environments: [dev]}]\n")
        self.assertIn("dev", d.cli("status").stdout)
        # The certificate's CN is the subject.
        who = json.loads(d.cli("whoami", "-o", "json").stdout)
        self.assertEqual((who["subject"], who["method"]), ("release-bot", "certificate"))
        self.assertEqual(who["access"], {"dev": ["read"]})
        # Without a CN, the first email or DNS subject alternative name (the
        # URI cannot be a subject).
        san = subprocess.run([d.lockstep, "--server", d.server, "--tls-ca", self.p("ca.pem"),
                              "--tls-cert", self.p("client-san.pem"), "--tls-key",
                              self.p("client-san.key"), "whoami", "-o", "json"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(san.returncode, 0, san.stderr)
        who = json.loads(san.stdout)
        self.assertEqual((who["subject"], who["method"]), ("deploy@example.org", "certificate"))
        self.assertEqual(who["access"], {"dev": ["read"]})
        refused = d.cli("refresh", check=False)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("release-bot may not operate in any environment", refused.stderr)
        without = subprocess.run([d.lockstep, "--server", d.server, "--tls-ca", self.p("ca.pem"),
                                  "status"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(without.returncode, 0)
        # /metrics asks for a client certificate the client CA signed too.
        self.assertIn("lockstep_build_info", self.metrics(d, cert="client"))
        with self.assertRaises(self.REFUSED):
            self.metrics(d)
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


# What each RPC needs: the permission, and whether it names an environment
# (False: a call about the project or the whole fleet, allowed with the
# permission on some environment; "all": on every environment).
RPC_PERMISSION = {
    "GetFleet": ("read", True), "GetDatabase": ("read", True), "DiffSchema": ("read", True),
    "Refresh": ("operate", False), "GetGraph": ("read", False), "GetHistory": ("read", False),
    "PlanRollout": ("read", True), "StartRollout": ("operate", True),
    "WatchRollout": ("read", True), "ApproveRollout": ("approve", True),
    "PauseRollout": ("operate", True), "ResumeRollout": ("operate", True),
    "AbortRollout": ("operate", True), "ListRollouts": ("read", False),
    "GetRollout": ("read", True), "Downgrade": ("operate", True), "Stamp": ("operate", True),
    "Reapply": ("operate", True), "ListBackups": ("read", True),
    "RestoreBackup": ("restore", True), "WhoAmI": (None, False),
    "ListAudit": ("read", "all"),  # read on every environment
}
ROLE_GRANTS = {
    "viewer": {"read"}, "operator": {"read", "operate"}, "approver": {"read", "approve"},
    "restorer": {"read", "restore"}, "admin": {"read", "operate", "approve", "restore"},
    "none": set(),  # a valid token, no binding
}


def token_line(token, subject, groups=""):
    return "sha256:%s %s %s\n" % (hashlib.sha256(token.encode()).hexdigest(), subject, groups)


class AccessTest(unittest.TestCase):
    """Tokens and access bindings: subjects u-<role> hold their role on dev
    only; root is admin everywhere (by group). dev and prod each have a
    finished rollout (with a backup) and one awaiting approval."""

    @classmethod
    def setUpClass(cls):
        cls.f = Fleet()
        for env in ("dev", "prod"):
            cls.f.sqlite(env, USERS)
        cls.tokens = os.path.join(cls.f.dir, "tokens.txt")
        with open(cls.tokens, "w") as fh:
            fh.write("# sha256 of each token, subject, groups\n")
            fh.write(token_line("tok-root", "root", "ops,dba"))
            for role in ROLE_GRANTS:
                fh.write(token_line("tok-" + role, "u-" + role))
        cls.port, cls.metrics_port = free_port(), free_port()
        cls.config = os.path.join(cls.f.dir, "access.yaml")
        with open(cls.config, "w") as fh:
            fh.write("""
server:
  listen: 127.0.0.1:%d
  metrics_listen: 127.0.0.1:%d
  state: state.db
  poll_interval: 1h
  backup_dir: backups
  auth: {tokens_file: tokens.txt}
  audit_log: audit.jsonl
project: {alembic_ini: project/alembic.ini, alembic_command: [/usr/bin/alembic]}
environments:
  - name: dev
    approval: required
    databases: [{name: app, url: "sqlite:///dev.db"}]
  - name: prod
    approval: required
    databases: [{name: app, url: "sqlite:///prod.db"}]
access:
  - {subjects: [group:ops], role: admin, environments: ["*"]}
%s""" % (cls.port, cls.metrics_port, "".join(
                "  - {subjects: [u-%s], role: %s, environments: [dev]}\n" % (r, r)
                for r in ROLE_GRANTS if r != "none")))
        token_file = os.path.join(cls.f.dir, "root.token")
        with open(token_file, "w") as fh:
            fh.write("tok-root\n")
        cls.d = Lockstepd(BUILD, cls.config, "127.0.0.1:%d" % cls.port,
                          client_args=["--token-file", token_file]).start()
        import grpc
        cls.grpc = grpc
        cls.pb2, pb2_grpc = grpc_stubs(os.path.join(cls.f.dir, "stubs"))
        cls.stub = pb2_grpc.LockstepStub(grpc.insecure_channel(cls.d.server))
        cls.finished, cls.waiting, cls.backup = {}, {}, {}
        for env in ("dev", "prod"):
            r = json.loads(cls.d.cli("rollout", "--to", AGE, "--env", env, "-o", "json").stdout)
            cls.d.cli("approve", r["id"])
            cls.d.cli("watch", r["id"])
            cls.finished[env] = r["id"]
            backups = json.loads(cls.d.cli("backups", env, "-o", "json").stdout)
            cls.backup[env] = backups["backups"][0]["id"]
            r = json.loads(cls.d.cli("rollout", "--to", HEAD, "--env", env, "-o", "json").stdout)
            cls.waiting[env] = r["id"]

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.f.close()

    def call(self, rpc, env, token):
        """Calls `rpc` about `env` as the holder of `token`; returns the gRPC
        status code (OK when it answered). Requests are chosen so that an
        allowed call changes nothing lasting (unknown targets, a restore the
        database's changes refuse) except on the rollouts waiting."""
        pb = self.pb2
        metadata = [("authorization", "Bearer " + token)] if token else []
        requests = {
            "GetFleet": pb.GetFleetRequest(environment=env),
            "GetDatabase": pb.GetDatabaseRequest(environment=env, database="app"),
            "DiffSchema": pb.DiffSchemaRequest(environment=env, database="app"),
            "Refresh": pb.RefreshRequest(), "GetGraph": pb.GetGraphRequest(),
            "GetHistory": pb.GetHistoryRequest(),
            "PlanRollout": pb.StartRolloutRequest(target="nope", environments=[env]),
            "StartRollout": pb.StartRolloutRequest(target="nope", environments=[env]),
            "WatchRollout": pb.WatchRolloutRequest(id=self.finished[env]),
            "ApproveRollout": pb.RolloutActionRequest(id=self.waiting[env]),
            "PauseRollout": pb.RolloutActionRequest(id=self.waiting[env]),
            "ResumeRollout": pb.RolloutActionRequest(id=self.waiting[env]),
            "AbortRollout": pb.RolloutActionRequest(id=self.waiting[env]),
            "ListRollouts": pb.ListRolloutsRequest(),
            "GetRollout": pb.GetRolloutRequest(id=self.waiting[env]),
            "Downgrade": pb.DowngradeRequest(environment=env, database="app", target="nope"),
            "Stamp": pb.StampRequest(environment=env, database="app", revision="nope"),
            "Reapply": pb.ReapplyRequest(environment=env, database="app", revision="nope"),
            "ListBackups": pb.ListBackupsRequest(environment=env),
            "RestoreBackup": pb.RestoreBackupRequest(id=self.backup[env]),
            "WhoAmI": pb.WhoAmIRequest(),
            "ListAudit": pb.ListAuditRequest(limit=1),
        }
        try:
            reply = getattr(self.stub, rpc)(requests[rpc], metadata=metadata, timeout=60)
            if rpc == "WatchRollout":
                for _ in reply:  # a finished rollout's stream ends by itself
                    pass
            return self.grpc.StatusCode.OK
        except self.grpc.RpcError as e:
            return e.code()

    def test_1_every_rpc_every_role_inside_and_outside_the_binding(self):
        denied, cells = [], 0
        # Abort last: it ends the rollouts waiting that the others act on.
        order = sorted(RPC_PERMISSION, key=lambda r: r == "AbortRollout")
        for rpc in order:
            permission, per_env = RPC_PERMISSION[rpc]
            for role, grants in ROLE_GRANTS.items():
                for env in (("dev", "prod") if per_env is True else ("dev",)):
                    allowed = permission is None or (permission in grants and env == "dev" and
                                                     per_env != "all")
                    code = self.call(rpc, env, "tok-" + role)
                    cells += 1
                    refused = code == self.grpc.StatusCode.PERMISSION_DENIED
                    if refused == allowed or code == self.grpc.StatusCode.UNAUTHENTICATED:
                        denied.append("%s as %s on %s: %s, expected %s" % (
                            rpc, role, env, code, "allowed" if allowed else "PERMISSION_DENIED"))
        self.assertEqual(denied, [])
        self.assertEqual(cells, 6 * (2 * 16 + 6))  # 16 RPCs about an environment, 6 not

    def test_7_the_audit_log_holds_mutations_and_refusals_and_no_token(self):
        self.call("Refresh", "dev", "tok-viewer")  # refused
        self.call("Stamp", "dev", "tok-operator")  # allowed, fails on its revision
        self.call("GetFleet", "dev", "tok-unknown")  # unauthenticated
        self.call("GetFleet", "dev", "tok-viewer")  # a read that succeeds: not recorded
        audit = json.loads(self.d.cli("audit", "--limit", "4", "-o", "json").stdout)["entries"]
        got = [(e["rpc"], e["subject"], e["code"]) for e in audit]
        self.assertEqual([(rpc, subject) for rpc, subject, _ in got[:3]],
                         [("GetFleet", ""), ("Stamp", "u-operator"), ("Refresh", "u-viewer")])
        self.assertEqual(got[0][2], "UNAUTHENTICATED")
        self.assertNotEqual(got[1][2], "OK")  # an unknown revision
        self.assertEqual(got[2][2], "PERMISSION_DENIED")
        self.assertEqual(audit[0]["method"], "none")
        stamp = audit[1]
        self.assertIn('revision: "nope"', stamp["request"])
        self.assertTrue(stamp["peer"].startswith("ipv4:127.0.0.1:"), stamp)
        self.assertNotIn("GetFleet", [e["rpc"] for e in audit if e["code"] == "OK"])
        # Filters, and who may read it: read on every environment.
        mine = json.loads(self.d.cli("audit", "--subject", "u-viewer", "-o", "json").stdout)
        self.assertTrue(mine["entries"])
        self.assertEqual({e["subject"] for e in mine["entries"]}, {"u-viewer"})
        self.assertEqual(self.call("ListAudit", "dev", "tok-admin"),
                         self.grpc.StatusCode.PERMISSION_DENIED)  # admin of dev only
        # Also as JSON lines for a log shipper; no token anywhere on disk or
        # in the metrics.
        import urllib.request
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                         timeout=10).read()
        self.assertIn(b"lockstep_build_info", metrics)
        for token in ["tok-" + r for r in ROLE_GRANTS] + ["tok-root", "tok-unknown"]:
            self.assertNotIn(token.encode(), metrics)
        with open(os.path.join(self.f.dir, "audit.jsonl")) as fh:
            lines = [json.loads(line) for line in fh]
        self.assertIn("Refresh", [line["rpc"] for line in lines])
        for name in ("state.db", "state.db-wal", "audit.jsonl"):
            path = os.path.join(self.f.dir, name)
            if os.path.exists(path):
                with open(path, "rb") as fh:
                    data = fh.read()
                for token in ["tok-" + r for r in ROLE_GRANTS] + ["tok-root"]:
                    self.assertNotIn(token.encode(), data, name)

    def test_2_no_token_or_an_unknown_one_is_unauthenticated_everywhere(self):
        for token in ("", "tok-nobody"):
            for rpc in RPC_PERMISSION:
                self.assertEqual(self.call(rpc, "dev", token),
                                 self.grpc.StatusCode.UNAUTHENTICATED, (rpc, token))
        p = subprocess.run([self.d.lockstep, "--server", self.d.server, "status"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no credentials: lockstepd requires a token", p.stderr)

    def test_3_a_reader_of_dev_sees_dev_only(self):
        env = dict(os.environ, LOCKSTEP_TOKEN="tok-viewer")
        run = lambda *a: subprocess.run(  # noqa: E731
            [self.d.lockstep, "--server", self.d.server] + list(a) + ["-o", "json"],
            capture_output=True, text=True, timeout=60, env=env)
        fleet = json.loads(run("status").stdout)
        self.assertEqual(sorted({db["environment"] for db in fleet["databases"]}), ["dev"])
        rollouts = json.loads(run("rollouts").stdout)["rollouts"]
        self.assertTrue(rollouts)
        self.assertEqual({s["environment"] for r in rollouts for s in r["stages"]}, {"dev"})
        who = json.loads(run("whoami").stdout)
        self.assertEqual(who["subject"], "u-viewer")
        self.assertEqual(who["access"], {"dev": ["read"], "prod": []})

    def test_4_the_actor_is_the_authenticated_subject(self):
        r = json.loads(self.d.cli("rollout", "--to", AGE, "--env", "dev", "--actor", "someone-else",
                                  "-o", "json", check=False).stdout or "{}")
        rollout = json.loads(self.d.cli("rollout", self.finished["dev"], "-o", "json").stdout)
        self.assertEqual(rollout["created_by"], "root")
        self.assertNotIn("someone-else", json.dumps(r))

    def test_5_token_create_then_revoke_by_sighup(self):
        made = subprocess.run([os.path.join(BUILD, "client", "lockstep"), "token", "create",
                               "--subject", "carol", "--groups", "ops", "-o", "json"],
                              capture_output=True, text=True, check=True)
        new = json.loads(made.stdout)
        self.assertTrue(new["token"].startswith("lst_"))
        self.assertEqual(new["line"], token_line(new["token"], "carol", "ops").strip())
        with open(self.tokens) as fh:
            before = fh.read()
        with open(self.tokens, "a") as fh:
            fh.write(new["line"] + "\n")
        self.d.proc.send_signal(signal.SIGHUP)
        self.wait_code("WhoAmI", new["token"], self.grpc.StatusCode.OK)
        with open(self.tokens, "w") as fh:  # revoked: the line is gone
            fh.write(before)
        self.d.proc.send_signal(signal.SIGHUP)
        self.wait_code("WhoAmI", new["token"], self.grpc.StatusCode.UNAUTHENTICATED)
        # Neither token nor hash reaches the log.
        log = self.d.log()
        self.assertNotIn(new["token"], log)
        self.assertNotIn("tok-root", log)

    def wait_code(self, rpc, token, code):
        import time
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.call(rpc, "dev", token) == code:
                return
            time.sleep(0.1)
        self.fail("%s never answered %s" % (rpc, code))

    def test_6_config_errors_name_the_line(self):
        bad = os.path.join(self.f.dir, "bad-tokens.txt")
        with open(bad, "w") as fh:
            fh.write("# ok\nsha256:abc alice\n")
        config = os.path.join(self.f.dir, "bad.yaml")
        with open(self.config) as fh:
            text = fh.read().replace("tokens_file: tokens.txt", "tokens_file: bad-tokens.txt")
        with open(config, "w") as fh:
            fh.write(text.replace("role: admin", "role: superuser"))
        p = subprocess.run([self.d.lockstepd, "--check-config", config],
                           capture_output=True, text=True)
        out = p.stdout + p.stderr
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("bad-tokens.txt:2: expected 'sha256:<64 hex digits> SUBJECT", out)
        self.assertIn("access[0].role: unknown role 'superuser'", out)


class FourEyesTest(unittest.TestCase):
    """live needs two approvals from different people, not the requester's:
    for a rollout and for a downgrade alike."""

    def test_two_distinct_approvers_neither_the_requester(self):
        f = Fleet()
        self.addCleanup(f.close)
        f.sqlite("live", USERS)
        with open(os.path.join(f.dir, "tokens.txt"), "w") as fh:
            for who in ("rita", "dora", "erin"):
                fh.write(token_line("tok-" + who, who, "ops"))
        port = free_port()
        config = os.path.join(f.dir, "four.yaml")
        with open(config, "w") as fh:
            fh.write("""
server: {listen: "127.0.0.1:%d", metrics_listen: "127.0.0.1:%d", state: s.db, poll_interval: 1h,
         backup_dir: backups, auth: {tokens_file: tokens.txt}}
project: {alembic_ini: project/alembic.ini, alembic_command: [/usr/bin/alembic]}
environments:
  - name: live
    approval: {approvals: 2, distinct_from_requester: true}
    databases: [{name: app, url: "sqlite:///live.db"}]
access: [{subjects: [group:ops], role: admin, environments: [live]}]
""" % (port, free_port()))
        rita = os.path.join(f.dir, "rita.token")
        with open(rita, "w") as fh:
            fh.write("tok-rita\n")
        d = Lockstepd(BUILD, config, "127.0.0.1:%d" % port,
                      client_args=["--token-file", rita]).start()
        self.addCleanup(d.stop)

        def as_(who, *args):
            return subprocess.run([d.lockstep, "--server", d.server] + list(args),
                                  capture_output=True, text=True, timeout=120,
                                  env=dict(os.environ, LOCKSTEP_TOKEN="tok-" + who))

        for kind in ("rollout", "downgrade"):
            args = (["rollout", "--to", AGE, "--env", "live", "--watch"] if kind == "rollout"
                    else ["downgrade", "live/app", "--to", USERS])
            started = as_("rita", *args, "-o", "json")
            r = json.loads(started.stdout)
            self.assertEqual(r["state"], "awaiting_approval", started.stdout)
            own = as_("rita", "approve", r["id"])
            self.assertEqual(own.returncode, 1, own.stdout)
            self.assertIn("rita requested rollout %s and may not approve it" % r["id"], own.stderr)
            self.assertEqual(as_("dora", "approve", r["id"]).returncode, 0)
            again = as_("dora", "approve", r["id"])
            self.assertIn("dora already approved live", again.stderr)
            waiting = json.loads(as_("dora", "rollout", r["id"], "-o", "json").stdout)
            self.assertEqual(waiting["state"], "awaiting_approval")
            self.assertEqual(waiting["stages"][0]["approvers"], ["dora"])
            self.assertEqual(as_("erin", "approve", r["id"]).returncode, 0)
            done = as_("rita", "watch", r["id"], "-o", "json")
            self.assertEqual(done.returncode, 0, done.stdout)
            done = json.loads(done.stdout)
            self.assertEqual(done["created_by"], "rita")
            self.assertEqual(done["stages"][0]["approved_by"], "dora, erin")
            events = as_("rita", "watch", r["id"]).stdout
            self.assertIn("live approved by dora (1 of 2 approvals; waiting for 1 more)", events)
            self.assertIn("live approved by dora, erin", events)


if __name__ == "__main__":
    unittest.main()
