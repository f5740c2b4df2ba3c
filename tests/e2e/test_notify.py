"""Webhooks (notify): a receiver that is down for the first attempts, and a
lockstepd killed with SIGKILL while events wait for it, still gets every
event of the rollout it asked for, once, in order, signed.

The receiver is a local HTTP server; the truth it is compared with is the
rollout's event log in lockstepd's state store.
"""
import hashlib
import hmac
import http.server
import json
import os
import sqlite3
import sys
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_rollout import AGE, Fleet, rollout_json, wait_for  # noqa: E402
from pgserver import free_port  # noqa: E402

SECRET = "hook-s3cret"
EVENTS = ["rollout_*", "stage_*", "awaiting_approval", "approved", "step_failed", "halted"]


class Receiver:
    """Answers 503 while `down`; records every request."""

    def __init__(self):
        self.down = True
        self.attempts = []   # every request: (delivery, status answered)
        self.accepted = []   # (delivery, event, body, signature) answered 200
        self.fleet = []      # what the "fleet" webhook was sent: (delivery, event, text)
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/hooks/fleet":
                    with receiver.lock:
                        receiver.fleet.append((self.headers["X-Lockstep-Delivery"],
                                               self.headers["X-Lockstep-Event"],
                                               json.loads(body)["text"]))
                    self.send_response(200)
                    self.end_headers()
                    return
                status = 503 if receiver.down else 200
                with receiver.lock:
                    receiver.attempts.append((self.headers["X-Lockstep-Delivery"], status))
                    if status == 200:
                        receiver.accepted.append((self.headers["X-Lockstep-Delivery"],
                                                  self.headers["X-Lockstep-Event"], body,
                                                  self.headers.get("X-Lockstep-Signature", "")))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class WebhookTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.receiver = Receiver()
        cls.f = Fleet()
        for name in ("dev", "prod-a", "prod-b"):
            cls.f.sqlite(name, AGE)
        inventory = """
  - name: dev
    databases: [{name: app, url: "sqlite:///dev.db"}]
  - name: prod
    after: dev
    approval: required
    databases:
      - {name: a, url: "sqlite:///prod-a.db"}
      - {name: b, url: "sqlite:///prod-b.db"}
notify:
  - name: ops
    url: "http://127.0.0.1:%d/hooks/lockstep"
    events: [%s]
    secret_env: HOOK_SECRET
  - name: staging-only
    url: "http://127.0.0.1:%d/hooks/other"
    environments: [dev]
    events: [awaiting_approval]
  - name: fleet
    url: "http://127.0.0.1:%d/hooks/fleet"
    events: [schema_drift, checksum_changed]
    format: slack
""" % (cls.receiver.port, ", ".join(EVENTS), cls.receiver.port, cls.receiver.port)
        # Schemas read again at every refresh (test_2 drops a table).
        cls.d = cls.f.daemon(inventory, env={"HOOK_SECRET": SECRET},
                             server_extra="  schema_interval: 1s\n")

    @classmethod
    def tearDownClass(cls):
        cls.f.close()
        cls.receiver.close()

    def stored_events(self, rid):
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.f.dir, "state.db"), uri=True)
        try:
            return con.execute("SELECT seq, kind FROM rollout_events WHERE rollout_id = ? "
                               "AND kind != 'output' ORDER BY seq", (rid,)).fetchall()
        finally:
            con.close()

    def test_1_every_event_once_in_order_signed_across_a_receiver_outage_and_kill9(self):
        rc, r = rollout_json(self.d, "rollout", "--to", "heads", "--env", "dev,prod")
        self.assertEqual(rc, 0, r)
        rid = r["id"]
        wait_for(lambda: rollout_json(self.d, "rollout", rid)[1]["state"] == "awaiting_approval",
                 what="prod to wait for approval")
        # The receiver is down: lockstepd tried and keeps the events.
        wait_for(lambda: self.receiver.attempts, what="a first attempt")
        self.assertEqual(self.receiver.accepted, [])
        self.d.kill9()
        self.d.start()
        self.d.cli("approve", rid, "--actor", "oncall")
        rc, done = rollout_json(self.d, "watch", rid)
        self.assertEqual(rc, 0, done)
        self.receiver.down = False
        wait_for(lambda: any(e == "rollout_finished" for _, e, _, _ in self.receiver.accepted),
                 timeout=90, what="rollout_finished to be delivered")

        accepted = list(self.receiver.accepted)
        bodies = [json.loads(b) for _, _, b, _ in accepted]
        # Exactly once: no delivery answered 200 twice.
        deliveries = [d for d, _, _, _ in accepted]
        self.assertEqual(len(deliveries), len(set(deliveries)), deliveries)
        # Every event the webhook asked for, in the order of the log.
        import fnmatch
        wanted = [(seq, kind) for seq, kind in self.stored_events(rid)
                  if any(fnmatch.fnmatch(kind, p) for p in EVENTS)]
        got = [(b["rollout"]["seq"], b["event"]) for b in bodies if b["rollout"]["id"] == rid]
        self.assertEqual(got, wanted)
        kinds = [k for _, k in got]
        for must in ("rollout_started", "awaiting_approval", "approved", "rollout_finished"):
            self.assertIn(must, kinds)
        self.assertNotIn("output", kinds)
        self.assertNotIn("step_started", kinds)  # not asked for
        # Signed with the secret; the delivery id is the header's.
        for (delivery, event, body, signature), b in zip(accepted, bodies):
            expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            self.assertEqual(signature, "sha256=" + expected)
            self.assertEqual((b["delivery"], b["event"]), (delivery, event))
        # The receiver was down for the first attempts: some were refused.
        self.assertIn(503, [s for _, s in self.receiver.attempts])
        # The webhook filtered to dev asked for awaiting_approval, which only
        # prod did: it was sent nothing (its requests would carry no signature).
        self.assertTrue(all(sig for _, _, _, sig in accepted))
        self.assertEqual(self.receiver.fleet, [])  # the fleet had nothing to tell
        metrics = urllib.request.urlopen(
            "http://127.0.0.1:%d/metrics" % self.d.metrics_port, timeout=10).read().decode()
        self.assertIn('lockstep_webhook_deliveries_total{result="delivered",webhook="ops"} %d'
                      % len(accepted), metrics)
        self.assertIn('lockstep_webhook_failing{webhook="ops"} 0', metrics)
        # The URL is a credential: never in the log.
        self.assertNotIn("/hooks/lockstep", self.d.log())
        # What was delivered stays delivered: a lockstepd killed and started
        # again sends none of it twice.
        self.d.kill9()
        self.d.start()
        time.sleep(3)  # the sender looks every second
        self.assertEqual(len(self.receiver.accepted), len(accepted))

    def test_2_schema_drift_and_an_edited_revision_file_are_told_once(self):
        con = sqlite3.connect(os.path.join(self.f.dir, "dev.db"))
        con.execute("DROP TABLE orders")  # Alembic says head; the table is gone
        con.commit()
        con.close()
        # A drift is confirmed by a second read (the first may have met a
        # migration under way): two passes.
        self.d.cli("refresh")
        self.d.cli("refresh")
        wait_for(lambda: self.receiver.fleet, what="schema_drift to be sent")
        # A revision file edited after the databases applied it.
        path = os.path.join(self.f.project, "versions", "7c4e2d8a9b22_add_age_to_users.py")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("def upgrade() -> None:\n",
                                 "def upgrade() -> None:\n    op.execute('SELECT 1')\n", 1))
        self.d.cli("refresh")
        wait_for(lambda: len(self.receiver.fleet) >= 2, what="checksum_changed to be sent")
        # Still so after more passes and a kill -9: nothing is told twice.
        self.d.cli("refresh")
        self.d.kill9()
        self.d.start()
        self.d.cli("refresh")
        time.sleep(3)
        fleet = list(self.receiver.fleet)
        self.assertEqual([e for _, e, _ in fleet], ["schema_drift", "checksum_changed"], fleet)
        self.assertRegex(fleet[0][2], r"^lockstep: schema_drift dev/app: .*orders")
        self.assertRegex(fleet[1][2], r"^lockstep: checksum_changed: the file of revision "
                                      r"7c4e2d8a9b22 changed after 3 databases applied it")
        self.assertEqual([d[0] for d, _, _ in fleet], ["f", "f"])


if __name__ == "__main__":
    unittest.main()
