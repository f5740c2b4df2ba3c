"""The Grafana dashboard in deploy/grafana against a real lockstepd.

Debian's Prometheus scrapes a lockstepd watching SQLite databases made by the
real Alembic (behind, orphaned, one with a table dropped by hand), a rollout
runs with backups, and then every query of every panel is asked through
Prometheus' HTTP API, with Grafana's variables as Grafana fills them: each
must be valid PromQL and return data. Grafana itself is not in Debian; the
dashboard is checked as the JSON it loads.
"""
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_rollout import AGE, HEAD, Fleet, rollout_json, wait_for  # noqa: E402
from pgserver import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "dashboards", "lockstep.json")
# What Grafana puts in for the dashboard's variables: every environment, and
# a rate window of four scrape intervals at least (here 1 s scrapes).
VARIABLES = {"$environment": ".*", "$__rate_interval": "1m"}


def panels(dashboard):
    """Every panel but rows, nested ones included."""
    out = []
    for p in dashboard["panels"]:
        if p["type"] == "row":
            out += p.get("panels", [])
        else:
            out.append(p)
    return out


def expand(expr):
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


class GrafanaDashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DASHBOARD) as f:
            cls.dashboard = json.load(f)
        cls.f = Fleet()
        cls.f.sqlite("t1", AGE)
        cls.f.sqlite("t2", AGE)
        orphan = cls.f.sqlite("orphan", AGE)
        con = sqlite3.connect(orphan)
        con.execute("UPDATE alembic_version SET version_num = '1d5e0a7c9f00'")
        con.commit()
        con.close()
        drifted = cls.f.sqlite("drifted", HEAD)
        con = sqlite3.connect(drifted)
        con.execute("DROP TABLE orders")  # Alembic says HEAD; the table is gone
        con.commit()
        con.close()
        cls.d = cls.f.daemon("""
  - name: dev
    backup: required
    databases:
      - {name: t1, url: "sqlite:///t1.db"}
      - {name: t2, url: "sqlite:///t2.db"}
  - name: prod
    after: dev
    databases:
      - {name: orphan, url: "sqlite:///orphan.db"}
      - {name: drifted, url: "sqlite:///drifted.db"}
""")
        cls.prom_dir = tempfile.mkdtemp(prefix="lockstep-prometheus-")
        cls.prom_port = free_port()
        config = os.path.join(cls.prom_dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("""
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: lockstepd
    static_configs: [{targets: ["127.0.0.1:%d"]}]
""" % cls.d.metrics_port)
        cls.prom_log = open(os.path.join(cls.prom_dir, "prometheus.log"), "w")
        cls.prom = subprocess.Popen(
            ["/usr/bin/prometheus", "--config.file=" + config,
             "--storage.tsdb.path=" + os.path.join(cls.prom_dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % cls.prom_port],
            stdout=cls.prom_log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: cls.query("lockstep_build_info")[1], timeout=60,
                     what="Prometheus to scrape lockstepd")
            # Schemas judged, then a rollout with a backup per database.
            cls.d.cli("refresh")
            rc, r = rollout_json(cls.d, "rollout", "--to", "heads", "--env", "dev", "--watch")
            assert rc == 0, r
            cls.d.cli("refresh")
            # A few scrapes after it, so that rates over the last minute see it.
            time.sleep(4)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.prom.poll() is None:
            cls.prom.terminate()
            cls.prom.wait(timeout=30)
        cls.prom_log.close()
        shutil.rmtree(cls.prom_dir, ignore_errors=True)
        cls.f.close()

    @classmethod
    def query(cls, expr):
        """(status, result) of an instant query; status "error" with the
        message as result when Prometheus refuses it."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            cls.prom_port, urllib.parse.urlencode({"query": expr}))
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            try:
                body = json.load(e)  # a query Prometheus refuses: its reason
            except ValueError:
                return "unreachable", []  # not ready yet: 503 with a text body
        except OSError:
            return "unreachable", []
        if body["status"] != "success":
            return "error", body.get("error", "")
        return "success", body["data"]["result"]

    def values(self, expr):
        status, result = self.query(expand(expr))
        self.assertEqual(status, "success", "%s: %s" % (expr, result))
        return {tuple(sorted((k, v) for k, v in s["metric"].items()
                             if k not in ("instance", "job"))): float(s["value"][1])
                for s in result}

    def test_1_every_panel_query_is_valid_promql_that_returns_data(self):
        checked = 0
        for p in panels(self.dashboard):
            for t in p["targets"]:
                with self.subTest(panel=p["title"], ref=t["refId"]):
                    got = self.values(t["expr"])
                    self.assertTrue(got, "%r returns no series" % t["expr"])
                    self.assertTrue(any(not math.isnan(v) for v in got.values()),
                                    "%r returns only NaN: %s" % (t["expr"], got))
                    checked += 1
        self.assertGreaterEqual(checked, 25)

    def by_title(self, title):
        [p] = [p for p in panels(self.dashboard) if p["title"] == title]
        return p["targets"]

    def test_2_the_panels_say_what_the_fleet_holds(self):
        one = lambda title: list(self.values(self.by_title(title)[0]["expr"]).values())  # noqa: E731
        self.assertEqual(one("Databases"), [4.0])
        self.assertEqual(one("Not current"), [1.0])  # the orphan; t1, t2 rolled out
        self.assertEqual(one("Schema drift"), [1.0])
        not_current = self.values(self.by_title("Databases that are not current")[0]["expr"])
        self.assertEqual([dict(k)["database"] + " " + dict(k)["state"] for k in not_current],
                         ["orphan orphaned"])
        differences = self.values(self.by_title("Schema differences")[0]["expr"])
        self.assertEqual([dict(k)["database"] for k in differences], ["drifted"])
        finished = self.values(self.by_title("Rollouts finished")[0]["expr"])
        self.assertGreater(finished[(("result", "succeeded"),)], 0)
        steps = self.values(self.by_title("Steps finished")[0]["expr"])
        self.assertGreater(steps[(("environment", "dev"), ("result", "succeeded"))], 0)
        sizes = self.values(self.by_title("Backups: mean size and duration since start")[0]["expr"])
        self.assertGreater(sizes[(("environment", "dev"),)], 0)

    def test_3_every_metric_named_is_one_lockstepd_exports(self):
        # A misspelt name in a query that ends "or vector(0)" would still
        # return data; the names are checked against /metrics too.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.d.metrics_port,
                                    timeout=30) as r:
            exported = set(re.findall(r"^# TYPE (\S+)", r.read().decode(), re.M))
        for p in panels(self.dashboard):
            for t in p["targets"]:
                for name in re.findall(r"\blockstep_[a-z_]+", t["expr"]):
                    base = re.sub(r"_(bucket|sum|count)$", "", name)
                    self.assertTrue(name in exported or base in exported,
                                    "%s (panel %r) is not on /metrics" % (name, p["title"]))

    def test_4_the_dashboard_is_what_grafana_loads(self):
        d = self.dashboard
        self.assertEqual(d["uid"], "lockstep-fleet")
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        names = [v["name"] for v in d["templating"]["list"]]
        self.assertEqual(names, ["datasource", "environment"])
        for p in panels(d):
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            self.assertTrue(p["targets"], p["title"])
        import yaml
        for path in ("datasources/lockstep.yml", "dashboards/lockstep.yml"):
            with open(os.path.join(ROOT, "deploy", "grafana", "provisioning", path)) as f:
                self.assertEqual(yaml.safe_load(f)["apiVersion"], 1, path)


if __name__ == "__main__":
    unittest.main()
