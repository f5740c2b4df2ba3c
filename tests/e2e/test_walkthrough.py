"""End to end: the README, typed as a newcomer types it.

`bash deploy/scripts/quickstart.sh` (install check, build, the demo
fleet, lockstepd with a relative `--config DEMO/lockstep.yaml`) in one
process; then every `$ ` command of the README's status example and of its
rollout walkthrough, in order, in another, exactly as written (relative
paths), from a folder laid out as the checkout's root is for them: `build`
(the build) and `demo` (the demo fleet). The demo lives in that temporary
folder and serves on free ports (LOCKSTEP_DEMO_DIR, LOCKSTEP_DEMO_LISTEN,
LOCKSTEP_DEMO_METRICS_LISTEN; the commands get LOCKSTEP_SERVER), so the
test passes while a user's quick start runs on the demo's own ports and
never writes into ./demo. Each command must exit as
the README shows (FAILED lines mean exit 1, `echo $?` states the code) and
print the lines the README shows, once times, ids, checksums, sizes and
durations are masked.

The README is the script: change the walkthrough and this test follows it.

Run: /usr/bin/python3 -m unittest -v tests/e2e/test_walkthrough.py
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")


def readme_blocks():
    """The status example and the rollout walkthrough: lists of
    (command, expected output lines)."""
    with open(README) as f:
        text = f.read()
    blocks = []
    for anchor in ("With the daemon running (command 1), in another terminal:",
                   "## Walkthrough on the demo fleet"):
        start = text.index("```", text.index(anchor))
        body = text[text.index("\n", start) + 1:text.index("\n```", start)]
        blocks.append(body)
    steps = []
    for body in blocks:
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append([line[2:], []])
            elif steps:
                steps[-1][1].append(line)
    return steps


MASKS = [
    (re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?( UTC)?"), "<time>"),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<time>"),
    (re.compile(r"\b[rd]-\d{8}-\d{6}-[0-9a-f]{4}\b"), "<rollout>"),
    (re.compile(r"\b\d{8}T\d{6}\.\d+Z"), "<stamp>"),
    (re.compile(r"/\S*/demo/"), "<demo>/"),
    (re.compile(r"\b\d+(\.\d+)?(ms|s)\b(?! of| soak)"), "<dur>"),
    (re.compile(r"sha256 [0-9a-f]{12}"), "sha256 <sha>"),
    (re.compile(r"(?<![0-9a-f])[0-9a-f]{12}(?=\s+<demo>)"), "<sha>"),
    (re.compile(r"\b\d+ bytes\b"), "<n> bytes"),
    (re.compile(r"(?<=\s)\d{4,6}(?=\s+<time>)"), "<size>"),
    (re.compile(r"held heads for \S+ of"), "held heads for <dur> of"),
    (re.compile(r"\s+"), " "),
]


def mask(line):
    for pattern, repl in MASKS:
        line = pattern.sub(repl, line)
    return line.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReadmeWalkthroughTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="lockstep-walkthrough-")
        build = os.environ.get("LOCKSTEP_BUILD", os.path.join(ROOT, "build"))
        os.symlink(os.path.abspath(build), os.path.join(self.root, "build"))
        listen = "127.0.0.1:%d" % free_port()
        self.log = open(os.path.join(self.root, "lockstepd.log"), "w")
        self.daemon = subprocess.Popen(
            ["bash", "deploy/scripts/quickstart.sh"], cwd=ROOT, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, LOCKSTEP_DEMO_DIR=os.path.join(self.root, "demo"),
                     LOCKSTEP_DEMO_LISTEN=listen,
                     LOCKSTEP_DEMO_METRICS_LISTEN="127.0.0.1:%d" % free_port()))
        self.env = dict(os.environ, LOCKSTEP_ACTOR="alice@vm", LOCKSTEP_SERVER=listen)
        deadline = time.time() + 900  # a first build on a fresh clone is part of the command
        while time.time() < deadline:
            self.assertIsNone(self.daemon.poll(), self.daemon_log())
            if self.sh("build/client/lockstep status").returncode == 0:
                break
            time.sleep(0.5)
        else:
            self.fail("lockstepd did not answer:\n" + self.daemon_log())
        # The README's example shows the fleet once its schemas are read
        # (the first pass builds the expected schemas: a few seconds).
        while time.time() < deadline:
            out = self.sh("build/client/lockstep status -o json").stdout
            try:
                dbs = json.loads(out)["databases"]
            except ValueError:
                dbs = []
            if dbs and all(d["schema"]["reason"] != "its schema is being read" for d in dbs):
                return
            time.sleep(0.5)
        self.fail("the schemas were not read:\n" + self.daemon_log())

    def tearDown(self):
        os.killpg(self.daemon.pid, signal.SIGTERM)
        self.daemon.wait(timeout=20)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def daemon_log(self):
        with open(self.log.name) as f:
            return f.read()[-4000:]

    def sh(self, command):
        return subprocess.run(["bash", "-c", "L=build/client/lockstep\n" + command], cwd=self.root,
                              env=self.env, capture_output=True, text=True, timeout=300)

    def test_readme_as_written(self):
        steps = readme_blocks()
        self.assertGreater(len(steps), 8)
        previous_rc = None
        rollout_id = None
        for i, (command, expected) in enumerate(steps):
            if command.startswith("L="):
                continue
            if command == "echo $?":
                self.assertEqual(str(previous_rc), expected[0].strip(), "exit code before `echo $?`")
                continue
            if "30 s later" in command:  # the walkthrough waits for staging's soak
                deadline = time.time() + 60
                while self.sh(command).returncode != 0 and time.time() < deadline:
                    time.sleep(1)
            typed = command
            if rollout_id:
                typed = re.sub(r"\b[rd]-\d{8}-\d{6}-[0-9a-f]{4}\b", rollout_id, typed)
            p = self.sh(typed)
            out = p.stdout + p.stderr
            found = re.search(r"(?:rollout|downgrade|stamp|reapply|restore) ([rd]-\d{8}-\d{6}-[0-9a-f]{4}) "
                              r"started", out)
            if found:
                rollout_id = found.group(1)
            previous_rc = p.returncode
            checked_by_echo = i + 1 < len(steps) and steps[i + 1][0] == "echo $?"
            if any(line.startswith("FAILED") for line in expected):
                self.assertEqual(p.returncode, 1, "%s\n%s" % (command, out))
            elif not checked_by_echo:
                self.assertEqual(p.returncode, 0, "%s\n%s\n%s" % (command, out, self.daemon_log()))
            actual = [mask(line) for line in out.splitlines()]
            for line in expected:
                if not line.strip() or line.strip() == "...":
                    continue
                self.assertIn(mask(line), actual,
                              "README line not printed by `%s`:\n  %s\nprinted:\n%s" % (
                                  command, line, out))



class ReadmeInventoryReferenceTest(unittest.TestCase):
    """docs/reference.md's inventory reference (the yaml block under its heading) is a valid
    inventory as written, every dialect's entries included: copying it is
    a start. Only its password file and project are provided here."""

    def test_the_reference_inventory_passes_check_config(self):
        with open(os.path.join(ROOT, "docs", "reference.md")) as f:
            text = f.read()
        start = text.index("```yaml", text.index("## Inventory reference"))
        body = text[text.index("\n", start) + 1:text.index("\n```", start)]
        self.assertIn("mysql+pymysql://", body)
        with tempfile.TemporaryDirectory() as d:
            pw = os.path.join(d, "pw")
            with open(pw, "w") as f:
                f.write("secret\n")
            # Its project (alembic_ini: migrations/alembic.ini): the example's.
            shutil.copytree(os.path.join(ROOT, "migrations", "example"),
                            os.path.join(d, "migrations"))
            config = os.path.join(d, "lockstep.yaml")
            with open(config, "w") as f:
                f.write(body.replace("/run/secrets/pw", pw))
            build = os.environ.get("LOCKSTEP_BUILD", os.path.join(ROOT, "build"))
            env = dict(os.environ, STAGING_PW="x", PROD_PW="x", BILLING_PW="x")
            r = subprocess.run([os.path.join(build, "daemon", "lockstepd"), "--check-config", config],
                               capture_output=True, text=True, env=env, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


def heading_anchors(text):
    """GitHub's anchors for a Markdown file's headings (not those in code)."""
    anchors, code = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            code = not code
        m = re.match(r"#+ (.*)", line)
        if m and not code:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(slug.replace(" ", "-"))
    return anchors


class DocsTest(unittest.TestCase):
    """The README and docs/ stay findable: every link between them lands
    (the file exists and, with a #fragment, has that heading), and every
    inventory key and JSON field is named somewhere in docs/."""

    def test_every_relative_link_resolves(self):
        files = [README] + sorted(
            os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs"))
            if f.endswith(".md"))
        checked = 0
        for path in files:
            with open(path) as f:
                text = f.read()
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                if re.match(r"[a-z]+:", target):
                    continue
                name, _, fragment = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(path), name)) if name else path
                self.assertTrue(os.path.exists(dest), "%s: %s: no such file" % (path, target))
                if fragment:
                    with open(dest) as f:
                        self.assertIn(fragment, heading_anchors(f.read()),
                                      "%s: %s: no such heading" % (path, target))
                checked += 1
        self.assertGreater(checked, 20)

    def test_every_inventory_key_and_json_field_is_documented(self):
        """A key the inventory loader accepts, or a field the CLI's -o json
        writes, that no page of docs/ names is one a user cannot look up."""
        docs = ""
        for f in os.listdir(os.path.join(ROOT, "docs")):
            with open(os.path.join(ROOT, "docs", f)) as fh:
                docs += fh.read()
        with open(os.path.join(ROOT, "config", "inventory.cc")) as f:
            loader = f.read()
        keys = set()
        for block in re.findall(r"Keys\([^{]*\{([^}]*)\}", loader):
            keys |= set(re.findall(r'"([a-z_]+)"', block))
        fields = set()
        for name in os.listdir(os.path.join(ROOT, "client")):
            if name.endswith(".cc"):
                with open(os.path.join(ROOT, "client", name)) as f:
                    fields |= set(re.findall(r'Key\("([a-z_]+)"\)', f.read()))
        self.assertGreater(len(keys), 50)
        self.assertGreater(len(fields), 100)
        for kind, names in (("inventory key", keys), ("JSON field", fields)):
            missing = sorted(n for n in names if not re.search(r"\b%s\b" % n, docs))
            self.assertEqual(missing, [], "%ss in no page of docs/" % kind)


if __name__ == "__main__":
    unittest.main()
