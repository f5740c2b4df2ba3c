#!/usr/bin/python3
"""Compares lockstep with real Alembic on generated and hand-made projects.

Alembic runs in this process through its own command functions (the code
behind the `alembic` CLI), which saves a Python start-up per command; the
only change made to it is to list each versions folder in sorted order, as
Alembic 1.10+ does (1.8.1 uses raw directory order, which lockstep documents
as the one difference). Where Alembic's order is undefined (it formats a
Python set: the children of a branch point, the labels of a revision), both
sides are sorted before comparing.

For upgrades and downgrades, Alembic really runs against a SQLite file; the
generated env.py records each step and the version rows after it, which are
compared with `lockstep path -o json`.

Prints one line per difference and a closing "N passed, M failed".
"""
import argparse
import contextlib
import io
import json
import multiprocessing
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import alembic_cases  # noqa: E402
import generate_project  # noqa: E402

from alembic import command, util  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from alembic.script.base import Script  # noqa: E402
import alembic.util.messaging as messaging  # noqa: E402

warnings.simplefilter("ignore")

# Alembic 1.10+ lists version folders sorted; emulate that in 1.8.1.
_orig_list = Script._list_py_dir.__func__
Script._list_py_dir = classmethod(lambda cls, sd, path: sorted(_orig_list(cls, sd, path)))

# Sets have no defined order: render them sorted.
_orig_comma = messaging.format_as_comma


def _sorted_comma(value):
    if isinstance(value, (set, frozenset)):
        value = sorted(value)
    return _orig_comma(value)


for mod in list(sys.modules.values()):
    if getattr(mod, "format_as_comma", None) is _orig_comma:
        mod.format_as_comma = _sorted_comma

# One ScriptDirectory per project: Alembic re-imports every file per command.
_script_cache = {}
_orig_from_config = ScriptDirectory.from_config.__func__


def _cached_from_config(cls, config):
    key = config.config_file_name
    if key not in _script_cache:
        _script_cache[key] = _orig_from_config(cls, config)
    return _script_cache[key]


ScriptDirectory.from_config = classmethod(_cached_from_config)


_DUP_LABEL = re.compile(r"Branch name '(.*)' in revision (\S+) already used by revision (\S+)")


_OVERLAPS = re.compile(r"(overlaps with other requested revisions )(.*)")


def normalise(text):
    """Sorts what Alembic draws from a set: the '->' child lines inside each
    `branches` block and the revisions an overlap error lists; drops the
    revisions a duplicate-label error names."""
    text = _DUP_LABEL.sub(lambda m: "Branch name '%s' used twice" % m.group(1), text)
    text = _OVERLAPS.sub(lambda m: m.group(1) + ", ".join(sorted(m.group(2).split(", "))), text)
    blocks = text.split("\n\n")
    out = []
    for b in blocks:
        lines = b.split("\n")
        kids = [l for l in lines if re.match(r"^ +-> ", l)]
        if len(kids) > 1:
            rest = [l for l in lines if not re.match(r"^ +-> ", l)]
            lines = rest + sorted(kids)
        out.append("\n".join(lines))
    return "\n\n".join(out)


class AlembicRunner:
    def __init__(self, ini):
        self.ini = ini

    def run(self, fn, *args, **kw):
        """Runs an alembic command; returns ('ok', stdout) or ('error', message)."""
        buf = io.StringIO()
        cfg = Config(self.ini, stdout=buf)
        cfg.attributes.update(kw.pop("attributes", {}))
        try:
            fn(cfg, *args, **kw)
        except util.CommandError as e:
            return "error", str(e), cfg
        except Exception as e:  # Alembic itself crashed
            return "crash", "%s: %s" % (type(e).__name__, e), cfg
        return "ok", buf.getvalue(), cfg


class Lockstep:
    def __init__(self, binary, ini):
        self.binary = binary
        self.ini = ini

    def run(self, *args):
        p = subprocess.run([self.binary, "-c", self.ini] + list(args), capture_output=True,
                           text=True, timeout=120)
        if p.returncode < 0 or p.returncode > 3:
            return "crash", "exit %d: %s" % (p.returncode, p.stderr)
        if p.returncode != 0:
            err = p.stderr.strip()
            return "error", err[len("FAILED: "):] if err.startswith("FAILED: ") else err
        return "ok", p.stdout


class Checker:
    def __init__(self, binary, verbose):
        self.binary = binary
        self.verbose = verbose
        self.passed = 0
        self.failed = 0
        self.alembic_crashes = 0
        self.crash_reasons = {}
        self.messages = []

    def record(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.messages.append("DIFF %s\n%s" % (name, detail[:3000]))

    def count_crash(self, message):
        self.alembic_crashes += 1
        key = message.split(":")[0]
        self.crash_reasons[key] = self.crash_reasons.get(key, 0) + 1

    def compare_text(self, name, a, l):
        a_kind, a_out = a[0], a[1]
        l_kind, l_out = l
        if self.alembic_crashed(name, a_kind, a_out, l_kind, l_out):
            return
        if a_kind != l_kind:
            self.record(name, False, "alembic %s: %s\nlockstep %s: %s" % (a_kind, a_out, l_kind, l_out))
            return
        a_out, l_out = normalise(a_out), normalise(l_out)
        self.record(name, a_out == l_out, _diff(a_out, l_out))

    def check_project(self, label, path, meta, rng, idents=None, path_cases=8):
        ini = os.path.join(path, "alembic.ini")
        al = AlembicRunner(ini)
        ls = Lockstep(self.binary, ini)
        revs = meta["revisions"]
        labels = list(meta["labels"])
        for args, fn, kw in [
            (["heads"], command.heads, {}),
            (["heads", "--resolve-dependencies"], command.heads, {"resolve_dependencies": True}),
            (["heads", "-v"], command.heads, {"verbose": True}),
            (["branches"], command.branches, {}),
            (["history"], command.history, {}),
            (["history", "--verbose"], command.history, {"verbose": True}),
        ]:
            self.compare_text("%s %s" % (label, " ".join(args)), al.run(fn, **kw), ls.run(*args))

        pool = list(idents or [])
        if not idents:
            pool += rng.sample(revs, min(4, len(revs)))
            pool += [r[:rng.randint(4, 8)] for r in rng.sample(revs, min(2, len(revs)))]
            pool += [revs[0][:3], "zzzz", "head", "heads", "base", "-1", "-2"]
            pool += [rng.choice(revs) + rng.choice(["+1", "-1", "+2", "-3"])]
            if labels:
                for l in rng.sample(labels, min(3, len(labels))):
                    pool += [l, l + "@head", l + "@heads", l + "@base", l + "@-1", l + "@+1",
                             l + "@" + rng.choice(revs)[:6], l + "@" + rng.choice(revs)]
            pool.append("nolabel@" + revs[-1])
        for ident in pool:
            self.compare_text("%s show %s" % (label, ident), al.run(command.show, ident),
                              ls.run("show", ident))
        # history ranges
        lowers = ["", "base"] + pool[:6]
        uppers = ["", "heads", "head"] + pool[:6]
        for _ in range(6 if not idents else 12):
            rng_range = "%s:%s" % (rng.choice(lowers), rng.choice(uppers))
            self.compare_text("%s history -r %s" % (label, rng_range),
                              al.run(command.history, rng_range), ls.run("history", "-r", rng_range))
        # upgrade / downgrade paths on a real SQLite database
        for n in range(path_cases):
            start = rng.choice(["base"] + pool[:5] + rng.sample(revs, min(3, len(revs))))
            target = rng.choice(["heads", "head"] + pool + rng.sample(revs, min(3, len(revs))))
            self.check_path(label, al, ls, start, target, downgrade=False, idx=n)
            down_target = rng.choice(["base", "-1", "-2"] + pool[:4] + rng.sample(revs, min(2, len(revs))))
            self.check_path(label, al, ls, rng.choice(["heads"] + pool[:4]), down_target,
                            downgrade=True, idx=n)
        # Offline --sql from a single revision, as release pipelines render it.
        for n in range(path_cases):
            one = rng.choice(revs)
            self.check_offline_sql(label, al, ls, rng.choice(["base", one]),
                                   rng.choice(["heads", "head"] + rng.sample(revs, min(2, len(revs)))),
                                   downgrade=False)
            self.check_offline_sql(label, al, ls, rng.choice(revs), rng.choice(["base"] + revs[:3]),
                                   downgrade=True)

    def check_path(self, label, al, ls, start, target, downgrade, idx):
        db = os.path.join(tempfile.gettempdir(), "lockstep-conf-%d.db" % os.getpid())
        if os.path.exists(db):
            os.remove(db)
        url = "sqlite:///" + db
        # Reach the start state with real Alembic, and check that too.
        kind, out, cfg = al.run(command.upgrade, start, attributes={"url": url})
        rows = _rows(db)
        name = "%s upgrade %s (from base)" % (label, start)
        self.compare_steps(name, kind, out, cfg, ls, start, [], False)
        if kind != "ok":
            return
        fn = command.downgrade if downgrade else command.upgrade
        kind, out, cfg = al.run(fn, target, attributes={"url": url})
        name = "%s %s %s from %s" % (label, "downgrade" if downgrade else "upgrade", target, rows)
        self.compare_steps(name, kind, out, cfg, ls, target, rows, downgrade)
        if kind == "ok":
            final = _rows(db)
            steps = cfg.attributes.get("steps", [])
            expect = steps[-1][2] if steps else sorted(rows)
            self.record(name + " final rows", sorted(final) == expect,
                        "db %s vs last step %s" % (final, expect))

    def check_offline_sql(self, label, al, ls, start, target, downgrade):
        """Alembic's `--sql` output (one start revision) against `lockstep path`:
        the revisions run, in order, and each step's alembic_version statements
        (compared as a set within a step: Alembic orders some from a set)."""
        rng = "%s:%s" % (start, target)
        fn = command.downgrade if downgrade else command.upgrade
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            kind, out, _ = al.run(fn, rng, sql=True, attributes={"url": "sqlite://"})
        name = "%s %s --sql %s" % (label, "downgrade" if downgrade else "upgrade", rng)
        l_kind, l_out = _lockstep_path(ls, target, [] if start == "base" else [start], downgrade)
        if self.alembic_crashed(name, kind, out, l_kind, l_out):
            return
        if kind != l_kind:  # one planned, the other refused: a disagreement
            self.record(name, False, "alembic %s: %s\nlockstep %s: %s" % (kind, out, l_kind, l_out))
            return
        if kind == "error":  # both refused (offline messages differ from online ones)
            self.record(name, True)
            return
        self.record(name, _same_sql_steps(_sql_steps(buf.getvalue()), _sql_steps(l_out)),
                    "alembic:\n%s\nlockstep:\n%s" % (buf.getvalue()[-2000:], l_out[-2000:]))

    def alembic_crashed(self, name, kind, out, l_kind, l_out):
        """Where Alembic crashed (an exception that is not a CommandError:
        a cycle, a broken graph), records whether lockstep refused the same
        input with an error, as it must; True then."""
        if kind != "crash":
            return False
        self.count_crash(out)
        self.record(name + " (alembic crashed: %s; lockstep must say it is an error)" % out,
                    l_kind == "error", "lockstep %s: %s" % (l_kind, l_out))
        return True

    def compare_steps(self, name, kind, out, cfg, ls, target, rows, downgrade):
        l_kind, l_out = _lockstep_path(ls, target, rows, downgrade, "-o", "json")
        if self.alembic_crashed(name, kind, out, l_kind, l_out):
            return
        if kind != l_kind:
            self.record(name, False, "alembic %s: %s\nlockstep %s: %s" % (kind, out, l_kind, l_out))
            return
        if kind == "error":
            out, l_out = normalise(out), normalise(l_out)
            self.record(name, out == l_out, "alembic: %s\nlockstep: %s" % (out, l_out))
            return
        alembic_steps = [list(s) for s in cfg.attributes.get("steps", [])]
        ours = [[s["revision"], s["direction"], s["rows_after"]] for s in json.loads(l_out)["steps"]]
        self.record(name, alembic_steps == ours, "alembic:  %s\nlockstep: %s" % (alembic_steps, ours))


def _lockstep_path(ls, target, rows, downgrade, *extra):
    """`lockstep path TARGET --from ROWS [--downgrade]`."""
    args = ["path", target, "--from", ",".join(rows)] + list(extra)
    if downgrade:
        args.append("--downgrade")
    return ls.run(*args)


_VERSION_SQL = re.compile(r"^(INSERT INTO alembic_version|UPDATE alembic_version|DELETE FROM alembic_version)")


def _sql_steps(text):
    """[(running line, sorted version-table statements)] from --sql style output."""
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("-- Running "):
            steps.append([line, []])
        elif steps and _VERSION_SQL.match(line):
            steps[-1][1].append(line.rstrip(";"))
    return [(r, sorted(s)) for r, s in steps]


_STATEMENT = re.compile(r"^(?:INSERT INTO alembic_version \(version_num\) VALUES \('(?P<ins>[^']*)'\)"
                        r"|UPDATE alembic_version SET version_num='(?P<to>[^']*)' WHERE alembic_version"
                        r"\.version_num = '(?P<from>[^']*)'"
                        r"|DELETE FROM alembic_version WHERE alembic_version\.version_num = '(?P<del>[^']*)')$")


def _effect(statements):
    """(rows removed, rows added) by a step's statements."""
    removed, added = set(), set()
    for st in statements:
        m = _STATEMENT.match(st)
        if not m:
            return None
        if m.group("ins"):
            added.add(m.group("ins"))
        elif m.group("del"):
            removed.add(m.group("del"))
        else:
            removed.add(m.group("from"))
            added.add(m.group("to"))
    return sorted(removed), sorted(added)


def _same_sql_steps(a, b):
    """Equal step by step; where a merge's statements differ, Alembic chose
    from a set which parent row to UPDATE and which to DELETE: then the
    step's effect on the table must be the same."""
    if len(a) != len(b):
        return False
    for (run_a, st_a), (run_b, st_b) in zip(a, b):
        if run_a != run_b:
            return False
        if st_a != st_b and (len(st_a) < 2 or _effect(st_a) != _effect(st_b)):
            return False
    return True


def _rows(db):
    try:
        con = sqlite3.connect(db)
        rows = [r[0] for r in con.execute("SELECT version_num FROM alembic_version")]
        con.close()
        return rows
    except sqlite3.Error:
        return []


def _diff(a, b):
    if a == b:
        return ""
    import difflib
    return "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), "alembic", "lockstep",
                                          lineterm="", n=1))


def check_job(job):
    """Runs one project's comparisons in a worker process; returns counters."""
    binary, work, kind, name, seed, size = job
    checker = Checker(binary, False)
    _script_cache.clear()
    if kind == "case":
        path = os.path.join(work, "case_" + name)
        meta = generate_project.write_cases(path, alembic_cases.CASES[name])
        checker.check_project("case:" + name, path, meta, random.Random(name),
                              idents=alembic_cases.IDENTS.get(name), path_cases=10)
    else:
        path = os.path.join(work, name)
        meta = generate_project.generate(path, seed, size)
        checker.check_project("%s(%d revs)" % (name, size), path, meta, random.Random(seed),
                              path_cases=2 if size > 1000 else 3 if size > 300 else 6)
    shutil.rmtree(path, ignore_errors=True)
    return checker.passed, checker.failed, checker.messages, checker.crash_reasons


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lockstep", required=True)
    ap.add_argument("--projects", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--max-size", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    # A broken harness or Alembic install crashes everywhere: past this share
    # of the comparisons, the run fails whatever lockstep said.
    ap.add_argument("--max-crash-share", type=float, default=0.02)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="lockstep-conformance-")
    binary = os.path.abspath(args.lockstep)
    started = time.time()
    jobs = [(binary, work, "case", name, 0, 0) for name in alembic_cases.CASES]
    rng = random.Random(args.seed)
    sizes = []
    for n in range(args.projects):
        r = rng.random()
        size = (rng.randint(10, 60) if r < 0.75 else rng.randint(60, 400) if r < 0.97
                else args.max_size)
        sizes.append(size)
        jobs.append((binary, work, "gen", "gen_%03d" % n, args.seed * 1000 + n, size))
    # Largest first, so that no big project is left for the end.
    jobs.sort(key=lambda j: -j[5])
    passed = failed = 0
    crashes = {}
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for p, f, messages, reasons in pool.imap_unordered(check_job, jobs):
            passed += p
            failed += f
            for m in messages:
                print(m, flush=True)
            for k, v in reasons.items():
                crashes[k] = crashes.get(k, 0) + v
    shutil.rmtree(work, ignore_errors=True)
    print("conformance: %d cases from Alembic's test suite, %d generated projects (%d-%d "
          "revisions, %d in all), %.0f s"
          % (len(alembic_cases.CASES), args.projects, min(sizes or [0]), max(sizes or [0]),
             sum(sizes), time.time() - started))
    crashed = sum(crashes.values())
    print("comparisons where Alembic itself crashed (lockstep must report an error): %d of %d%s"
          % (crashed, passed + failed, (" (" + ", ".join("%s %d" % kv for kv in
                                                        sorted(crashes.items())) + ")")
             if crashes else ""))
    print("%d passed, %d failed" % (passed, failed))
    if passed + failed == 0:
        print("no comparison was made: the harness is broken")
        return 1
    if crashed > args.max_crash_share * (passed + failed):
        print("Alembic crashed in more than %.0f%% of the comparisons: is the harness or the "
              "Alembic install broken?" % (100 * args.max_crash_share))
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
