# -*- coding: utf-8 -*-
"""Integration test fixtures: the fleet of real servers and ways to run Ansible on it.

The fleet comes from tools/dbfleet; `make test` starts it once for the run
(DBFLEET_STATE_DIR names it). Run alone, the fixture starts it itself.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from dbfleet import testing as fleet_testing  # noqa: E402

# The tests import wait_until from here.
from dbfleet.testing import wait_until  # noqa: E402,F401 pylint: disable=unused-import

COLLECTIONS = os.path.join(ROOT, ".build", "collections")
FLEET_SIZE = {
    "postgres": int(os.environ.get("DBFLEET_POSTGRES", "3")),
    "mariadb": int(os.environ.get("DBFLEET_MARIADB", "3")),
}


@pytest.fixture(scope="session")
def fleet():
    """The running fleet (dbfleet.state.Fleet): servers, passwords, pki paths, inventory."""
    return fleet_testing.ensure(FLEET_SIZE["postgres"], FLEET_SIZE["mariadb"])


def lift_share_limit(policy):
    """`policy` with its max_fraction lifted unless it sets one: a test ends sessions of its own,
    which on a quiet server may be every client session (above the default limit of 0.9)."""
    if not isinstance(policy, dict):
        return policy
    limits = dict(policy.get("limits") or {})
    limits.setdefault("max_fraction", "unlimited")
    return dict(policy, limits=limits)


def ids(entries):
    """The sorted ids of a module result's list (terminated, cancelled, not_ended, would_end)."""
    return sorted(entry["id"] for entry in entries)


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, "tests", "integration", "plugins", "callback"),
        ANSIBLE_CALLBACKS_ENABLED="json_results",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="false",
        PYTHONPATH=os.path.join(ROOT, "tools"),
    )
    env.update(extra or {})
    return env


class AnsibleRun(object):
    """The outcome of one ansible / ansible-playbook process."""

    def __init__(self, proc, data):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.results = data.get("results", [])
        self.stats = data.get("stats", {})

    def result(self, host=None, task=None):
        """The one result of `task` (name) on `host`; the last one if several match."""
        found = [r for r in self.results if (host is None or r["host"] == host) and (task is None or r["task"] == task)]
        assert found, "no result for host=%r task=%r in %s\n%s" % (
            host,
            task,
            [(r["host"], r["task"]) for r in self.results],
            self.stdout[-4000:],
        )
        return found[-1]["result"]

    def task_status(self, task, host=None):
        """How the stdout callback showed `task`: ok, changed, failed, skipped or unreachable."""
        found = [r for r in self.results if (host is None or r["host"] == host) and r["task"] == task]
        assert found, "no result for task %r in %s" % (task, [(r["host"], r["task"]) for r in self.results])
        status = found[-1]["status"]
        return "changed" if status == "ok" and found[-1]["result"].get("changed") else status

    @property
    def output(self):
        return self.stdout + self.stderr


def _run(argv, env_extra=None, timeout=600):
    fd, path = tempfile.mkstemp(prefix="dbhygiene-results-", suffix=".json")
    os.close(fd)
    try:
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env=ansible_env(dict(env_extra or {}, DBHYGIENE_TEST_RESULTS=path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
        with open(path) as f:
            content = f.read()
        return AnsibleRun(proc, json.loads(content) if content else {})
    finally:
        os.unlink(path)


def _bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def run_module(module, args, check=False, diff=False, verbosity=0, env=None):
    """Run one task of `module` on localhost; return (its registered result, the AnsibleRun).

    Through a playbook that registers the result and shows it with debug:
    callbacks see a result cleaned of some keys (`failed`, ...), the
    registered variable has them all. The module task's own callback record
    is `run.task_status("the module")`.
    """
    playbook = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {"name": "the module", module: args, "register": "outcome", "ignore_errors": True},
                {"name": "the outcome", "ansible.builtin.debug": {"var": "outcome"}},
            ],
        }
    ]
    fd, path = tempfile.mkstemp(prefix="dbhygiene-task-", suffix=".yml")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(playbook, f)
        run = run_playbook(path, check=check, diff=diff, verbosity=verbosity, env=env)
    finally:
        os.unlink(path)
    return run.result(task="the outcome")["outcome"], run


def run_playbook(
    playbook,
    inventory="localhost,",
    extra_vars=None,
    check=False,
    diff=False,
    limit=None,
    verbosity=0,
    env=None,
    timeout=600,
):
    """Run ansible-playbook and return an AnsibleRun (rc, stdout, results, stats)."""
    argv = [_bin("ansible-playbook"), "-i", inventory, playbook]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if limit:
        argv += ["--limit", limit]
    if verbosity:
        argv.append("-" + "v" * verbosity)
    return _run(argv, env, timeout)


# ---------------------------------------------------------------- ages measured, not assumed
def young_threshold(floor=4):
    """An age threshold (whole seconds) for a policy whose test needs a session touched right
    before a module run to stay younger than it until that run lists the sessions.

    The time from the touch to the listing is the start of ansible-playbook and of the module,
    which on a busy machine takes several seconds (2 CPU hogs on 2 cores: 4 s and more). So it
    is measured now, with one run of a module (ping) through run_module, and the threshold is
    twice that plus a second, `floor` at least."""
    start = time.monotonic()
    result, run = run_module("ansible.builtin.ping", {})
    assert result.get("ping") == "pong", run.output
    return max(floor, int(2 * (time.monotonic() - start)) + 1)


def wait_older(sessions, seconds):
    """Wait until the server reports every held session (dbfleet HeldSession) in its current
    state for more than `seconds` (HeldSession.age), instead of sleeping a fixed time that a
    slow start of the sessions could make too short; assert that it did."""
    ages = {}

    def old_enough():
        ages.update((s.id, s.age()) for s in sessions)
        return all(age is not None and age > seconds for age in ages.values())

    assert wait_until(old_enough, timeout=seconds + 60, interval=0.2), "not older than %ss: %r" % (seconds, ages)


def busy_machine():
    """(busy, 1-minute load average): whether the machine is busy by its load average, at
    least 3 runnable tasks per core (`make test` alone makes 3 to 5 on 2 cores; two CPU hogs
    beside it, and more work, 6 to 20). For a race whose figures a starved server changes:
    it says which measured bound applies."""
    load = os.getloadavg()[0]
    return load >= 3 * (os.cpu_count() or 1), load
