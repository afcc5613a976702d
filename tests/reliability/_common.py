# -*- coding: utf-8 -*-
"""Helpers of the reliability suite: the fleet, the drivers, ansible-playbook runs,
server logs, and the figures the suite prints (never asserts on time)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from dbfleet import mariadb, postgres  # noqa: E402
from dbfleet import state as fleet_state  # noqa: E402

# The tests import wait_until from here.
from dbfleet.testing import wait_until  # noqa: E402,F401 pylint: disable=unused-import

ENFORCE = os.path.join(ROOT, "playbooks", "enforce.yml")
CALLBACKS = os.path.join(HERE, "plugins", "callback")
BIN = os.path.dirname(sys.executable)


def new_tag(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:6])


def figure(text):
    """Print one figure line and keep it for the closing summary of tools/reliability.sh."""
    line = "FIGURE %s" % text
    print("\n" + line, flush=True)
    path = os.environ.get("RELIABILITY_FIGURES")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")


# ------------------------------------------------------------------ a busy machine
class CpuHogs(object):
    """`count` processes that spin on the CPU for at most `seconds`, as two CPU hogs beside a
    test on a shared 2-core runner: `stress-ng --cpu COUNT` (Debian's stress-ng, which
    tools/install-deps.sh installs) where it is, else busy loops of this Python. Bounded by
    their own timeout; stop() (or the end of the `with`) ends them by their pid."""

    def __init__(self, count=2, seconds=300):
        self.count, self.seconds = count, seconds
        self.procs = []
        self.how = None

    def __enter__(self):
        stress = shutil.which("stress-ng")
        if stress:
            argv = [stress, "--cpu", str(self.count), "--timeout", "%ds" % self.seconds, "--quiet"]
            self.procs = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)]
            self.how = "stress-ng --cpu %d" % self.count
        else:
            loop = "import time\nend = time.monotonic() + %d\nwhile time.monotonic() < end:\n    pass\n" % self.seconds
            self.procs = [
                subprocess.Popen([sys.executable, "-c", loop], stdin=subprocess.DEVNULL) for dummy in range(self.count)
            ]
            self.how = "%d busy loops" % self.count
        return self

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                if self.how.startswith("stress-ng"):
                    os.killpg(proc.pid, signal.SIGTERM)  # stress-ng's workers are its children
                else:
                    proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __exit__(self, *exc):
        self.stop()


def load_average():
    """The 1-minute load average (what the hogs and the test made of the machine)."""
    with open("/proc/loadavg") as handle:
        return float(handle.read().split()[0])


# ------------------------------------------------------------------ drivers
def driver_module(engine):
    from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _inprocess

    return _inprocess.ENGINES[engine].driver_module  # the engine registry's driver module


def driver_params(fleet, server_name, **overrides):
    """Module-style connection parameters for the hygiene login; only options the driver declares."""
    server = fleet.server(server_name)
    spec = driver_module(server["engine"]).connection_argument_spec()
    params = dict((name, option.get("default")) for name, option in spec.items())
    params.update(
        login_host=server["host"],
        login_port=server["port"],
        login_user=fleet_state.HYGIENE_USER,
        login_password=fleet.password(fleet_state.HYGIENE_USER),
        connect_timeout=5,
    )
    if server["engine"] == "postgresql":
        params.update(login_db="postgres", ssl_mode="disable")
    params.update(overrides)
    return params


def supports(engine, option):
    """Does this build's driver declare connection option `option` (e.g. query_timeout)?"""
    return option in driver_module(engine).connection_argument_spec()


def not_ended(result):
    """The result's sessions not ended, under the contract's name or the older one."""
    return list(result.get("not_ended") or result.get("skipped") or result.get("skipped_sessions") or [])


# ------------------------------------------------------------------ admin SQL
def admin(server):
    if server["engine"] == "postgresql":
        conn = postgres.admin_connect(server)
        conn.autocommit = True
        return conn
    return mariadb.admin_connect(server, autocommit=True)


def admin_execute(server, statement, params=None):
    conn = admin(server)
    try:
        cur = conn.cursor()
        cur.execute(statement, params)
        try:
            return cur.fetchall()
        except Exception:
            return None
    finally:
        conn.close()


def log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def log_since(path, offset):
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")


# ------------------------------------------------------------------ ansible-playbook
def write_inventory(fleet, directory, group_vars, hosts, host_vars=None):
    """An inventory of the fleet's `hosts` with group_vars/databases.yml; returns its path."""
    with open(fleet.inventory) as handle:
        inventory = yaml.safe_load(handle)
    groups = inventory["all"]["children"]["databases"]["children"]
    for group in groups.values():
        group["hosts"] = dict((n, hv) for n, hv in group["hosts"].items() if n in hosts)
        for name, extra in (host_vars or {}).items():
            if name in group["hosts"]:
                group["hosts"][name].update(extra)
    directory = str(directory)
    os.makedirs(os.path.join(directory, "group_vars"), exist_ok=True)
    path = os.path.join(directory, "inventory.yml")
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle, default_flow_style=False)
    with open(os.path.join(directory, "group_vars", "databases.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(group_vars, handle, default_flow_style=False, allow_unicode=True)
    return path


def ansible_env(results_path, extra=None):
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_CALLBACK_PLUGINS=CALLBACKS,
        ANSIBLE_CALLBACKS_ENABLED="reliability_results",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="false",
        ANSIBLE_LOCAL_TEMP=os.path.join(tempfile.gettempdir(), "reliability-ansible-tmp"),
        PYTHONPATH=os.path.join(ROOT, "tools"),
        DBHYGIENE_TEST_RESULTS=results_path,
    )
    env.update(extra or {})
    return env


class Play(object):
    """One ansible-playbook process, started in the background; wait() collects it."""

    def __init__(self, inventory, playbook=ENFORCE, extra_vars=None, verbosity=0, env=None, limit=None):
        fd, self.results_path = tempfile.mkstemp(prefix="reliability-results-", suffix=".json")
        os.close(fd)
        argv = [os.path.join(BIN, "ansible-playbook"), "-i", inventory, playbook]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        if limit:
            argv += ["--limit", limit]
        if verbosity:
            argv.append("-" + "v" * verbosity)
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.started = time.monotonic()
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=ansible_env(self.results_path, env),
            stdin=subprocess.DEVNULL,
            stdout=self.out,
            stderr=self.err,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.rc = None
        self.seconds = None

    def running(self):
        return self.proc.poll() is None

    def wait(self, timeout=600):
        """Wait at most `timeout` s (then kill the play and note it); return self."""
        self.timed_out = False
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            os.killpg(self.proc.pid, 9)
            self.rc = self.proc.wait()
        self.seconds = time.monotonic() - self.started
        self.out.seek(0)
        self.err.seek(0)
        self.stdout = self.out.read().decode("utf-8", "replace")
        self.stderr = self.err.read().decode("utf-8", "replace")
        self.out.close()
        self.err.close()
        try:
            with open(self.results_path) as handle:
                content = handle.read()
            data = json.loads(content) if content else {}
        except (OSError, ValueError):
            data = {}
        finally:
            if os.path.exists(self.results_path):
                os.unlink(self.results_path)
        self.results = data.get("results", [])
        self.stats = data.get("stats", {})
        return self

    @property
    def output(self):
        return self.stdout + self.stderr

    def host_results(self, task_suffix="End the sessions the policy targets"):
        """{host: result} of the per-host enforce task; `failed` and `seconds` (since the play began) added."""
        found = {}
        for record in self.results:
            if record["task"].endswith(task_suffix):
                result = dict(record["result"])
                result["failed"] = record["status"] in ("failed", "unreachable")
                result["seconds"] = record["time"] - self.started_at
                found[record["host"]] = result
        return found


def run_play(inventory, timeout=600, **kwargs):
    return Play(inventory, **kwargs).wait(timeout)


def read_trail(path, ending=False):
    """(records, bad lines) of a JSON-lines audit trail; the write-ahead `ending` records
    (each followed by an outcome record) only with ending=True."""
    records, bad = [], []
    if not os.path.exists(path):
        return records, bad
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                bad.append(line)
                continue
            if ending or record.get("outcome") != "ending":
                records.append(record)
    return records, bad


def tracebacks(text):
    """Lines that show an unhandled Python exception reached the output."""
    markers = ("Traceback (most recent call last)", "MODULE FAILURE", "Unexpected Exception")
    return [line for line in text.splitlines() if any(m in line for m in markers)]
