"""lockstepd as a test fixture: start it on a given inventory, wait until it
answers, ask it with the lockstep CLI, kill it (gently or with SIGKILL).

    d = Lockstepd(build_dir, config_path, env={"PW": "..."}).start()
    out = d.cli("status", "-o", "json")
    d.kill9(); d.start()            # a crash and a restart on the same state
"""
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def grpc_stubs(out_dir):
    """Generates Python stubs for lockstep.v1 with grpc_tools."""
    from grpc_tools import protoc
    import grpc_tools
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    if not os.path.isdir(include):
        include = "/usr/include"  # Debian: google/protobuf/*.proto from libprotobuf-dev
    os.makedirs(out_dir, exist_ok=True)
    rc = protoc.main(["protoc", "-I", os.path.join(ROOT, "proto"), "-I", include,
                      "--python_out=" + out_dir, "--grpc_python_out=" + out_dir,
                      os.path.join(ROOT, "proto", "lockstep", "v1", "lockstep.proto")])
    if rc != 0:
        raise RuntimeError("protoc failed")
    sys.path.insert(0, out_dir)
    from lockstep.v1 import lockstep_pb2, lockstep_pb2_grpc  # noqa
    return lockstep_pb2, lockstep_pb2_grpc


def wire_name(enum, value):
    """The documented name of a lockstep.v1 enum value: its name without the
    type's prefix, in lower case (EventKind OUTPUT -> "output"; 0 -> "")."""
    if value == 0:
        return ""
    prefix = re.sub(r"(?<!^)([A-Z])", r"_\1", enum.DESCRIPTOR.name).upper() + "_"
    return enum.Name(value)[len(prefix):].lower()


def _stat(pid):
    """(state, ppid) of a process from /proc, or None once it is gone."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)"
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def process_tree(root):
    """PIDs of the live descendants of `root` (not root itself)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(entry)
            if st and st[0] != "Z":
                children.setdefault(st[1], []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pids):
    """Those of `pids` still running (a zombie counts as ended)."""
    return [p for p in pids if (_stat(p) or ("Z",))[0] != "Z"]


def cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Lockstepd:
    def __init__(self, build, config, server, env=None, log_path=None, client_args=()):
        self.lockstepd = os.path.join(build, "daemon", "lockstepd")
        self.lockstep = os.path.join(build, "client", "lockstep")
        self.config = config
        self.server = server
        self.env = dict(os.environ, **(env or {}))
        self.log_path = log_path or config + ".log"
        self.client_args = list(client_args)  # every `lockstep` call's, e.g. --tls-ca
        self.proc = None

    def start(self, timeout=30):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.lockstepd, "--config", self.config],
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("lockstepd exited %s:\n%s" % (self.proc.returncode, self.log()))
            if self.cli("rollouts", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise AssertionError("lockstepd did not answer:\n" + self.log())

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def cli(self, *args, check=True, timeout=300):
        p = subprocess.run([self.lockstep, "--server", self.server] + self.client_args + list(args),
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("lockstep %s exited %d: %s %s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr))
        return p

    def descendants(self):
        """PIDs of the processes this lockstepd started and theirs (Alembic,
        warm runners, pg_dump...): ours alone, whatever else runs here."""
        return process_tree(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def stop(self):
        """SIGTERM; returns the PIDs of its descendants just before."""
        tree = []
        if self.proc and self.proc.poll() is None:
            tree = self.descendants()
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
        return tree

    def kill9(self):
        """SIGKILL; returns the PIDs of its descendants just before, which
        are orphans now (they should die with it: PR_SET_PDEATHSIG)."""
        tree = self.descendants()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)
        return tree
