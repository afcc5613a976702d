# -*- coding: utf-8 -*-
"""Event-Driven Ansible on real servers: the rulebook dbhygiene.sessions.session_hygiene, run by
ansible-rulebook as the README says, ends a planted ghost and a lock chain's root blocker on
PostgreSQL and MariaDB through the enforce playbook (trail lines written), keeps protected
sessions and the waiters, stays quiet while nothing matches, and goes on acting on the other
hosts while one is frozen; the source dbhygiene.sessions.session_watch, driven directly, emits
no event twice for the same would-be victims and says when a host becomes unreachable."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml
from _roles_fixtures import close_all, new_tag, open_sessions, read_trail
from conftest import COLLECTIONS, ROOT, ansible_env, wait_until
from dbfleet import holder
from test_postgresql_faults import frozen

SOURCE_DIR = os.path.join(ROOT, "extensions", "eda", "plugins", "event_source")
HOSTS = ("pg1", "mariadb1", "pg2")
FROZEN = "pg2"
INTERVAL = 2
# Bounds that only catch a rulebook that does not act at all (speed is measured by
# tools/bench_eda.py, not asserted): an interval, a run of the enforce playbook, a loaded machine.
ACTS_WITHIN = 180


def _inventory_dir(fleet, directory, tag, policy_rules, protect=None, **group_vars):
    """An inventory directory (hosts.yml + group_vars/databases.yml), as ansible-rulebook copies
    a directory whole for its playbook runs; returns its path."""
    with open(fleet.inventory) as handle:
        inventory = yaml.safe_load(handle)
    for group in inventory["all"]["children"]["databases"]["children"].values():
        group["hosts"] = {name: hv for name, hv in group["hosts"].items() if name in HOSTS}
    path = os.path.join(str(directory), "inventory")
    os.makedirs(os.path.join(path, "group_vars"), exist_ok=True)
    with open(os.path.join(path, "hosts.yml"), "w") as handle:
        yaml.safe_dump(inventory, handle)
    # The test's sessions may be every client session of a quiet server: no share limit.
    policy = {"name": "eda-" + tag, "rules": policy_rules, "limits": {"max_fraction": "unlimited"}}
    if protect:
        policy["protect"] = protect
    variables = {
        "dbhygiene_policy": policy,
        "dbhygiene_watch_interval": INTERVAL,
        "dbhygiene_report_dir": os.path.join(str(directory), "reports"),
        "dbhygiene_audit_log": os.path.join(str(directory), "audit.jsonl"),
        "dbhygiene_connect_timeout": 3,
    }
    variables.update(group_vars)
    with open(os.path.join(path, "group_vars", "databases.yml"), "w") as handle:
        yaml.safe_dump(variables, handle)
    return path


class Rulebook(object):
    """ansible-rulebook running the collection's rulebook on an inventory, its output in a file."""

    def __init__(self, inventory, directory):
        self.log = os.path.join(str(directory), "rulebook.log")
        env = ansible_env({"DBHYGIENE_INVENTORY": inventory, "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS})
        argv = [
            os.path.join(os.path.dirname(sys.executable), "ansible-rulebook"),
            "-r",
            "dbhygiene.sessions.session_hygiene",
            "-i",
            inventory,
            "-E",
            "DBHYGIENE_INVENTORY",
        ]
        self.output = open(self.log, "w")
        self.proc = subprocess.Popen(
            argv, cwd=str(directory), env=env, stdout=self.output, stderr=subprocess.STDOUT, start_new_session=True
        )

    def text(self):
        with open(self.log) as handle:
            return handle.read()

    def runs(self):
        return self.text().count("PLAY RECAP")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.output.close()


@pytest.fixture(scope="module")
def eda(fleet, tmp_path_factory):
    """One rulebook for the module's tests: its policy ends idle `<tag>-ghost*` sessions (but
    `<tag>-ghost-keep`, protected) and the root blockers of `<tag>-lock*` chains."""
    directory = tmp_path_factory.mktemp("eda")
    tag = new_tag("eda")
    rules = [
        {"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost*"], "idle_longer_than": 1},
        {"name": "lock-root", "applications": [tag + "-lock*"], "blocking_longer_than": 2},
    ]
    inventory = _inventory_dir(
        fleet,
        directory,
        tag,
        rules,
        protect={"applications": [tag + "-ghost-keep"]},
        dbhygiene_audit_thresholds={"max_lock_wait": 2},
    )
    rulebook = Rulebook(inventory, directory)
    try:
        yield {"tag": tag, "rulebook": rulebook, "dir": directory}
    finally:
        rulebook.stop()


def _gone(held):
    return all(not session.alive() for session in held)


def test_the_rulebook_ends_a_ghost_on_each_engine_and_keeps_the_protected(fleet, eda):
    tag = eda["tag"]
    ghosts = open_sessions(fleet, [(host, "idle", tag + "-ghost") for host in ("pg1", "mariadb1")])
    kept = open_sessions(fleet, [(host, "idle", tag + "-ghost-keep") for host in ("pg1", "mariadb1")])
    try:
        assert wait_until(lambda: _gone(ghosts), timeout=ACTS_WITHIN, interval=0.5), "the ghosts ended by the rulebook"
        assert all(session.alive() for session in kept)
        # Every ghost that died is in the trail: terminated, or (a run cut short under load after
        # its signal went out) unknown. The run writes its outcome lines once the module returned,
        # a moment after the session is gone: wait for them (its ending line came before the kill).
        wanted = {(s.server["name"], s.id) for s in ghosts}

        def recorded():
            lines = read_trail(str(eda["dir"] / "audit.jsonl"))
            ended = [line for line in lines if line["outcome"] in ("terminated", "unknown")]
            return {(line["host"], line["id"]) for line in ended if line["policy"] == "eda-" + tag}

        assert wait_until(lambda: recorded() >= wanted, timeout=60, interval=0.5), (recorded(), wanted)
    finally:
        close_all(ghosts + kept)


def test_the_rulebook_ends_a_lock_chains_root_and_keeps_the_waiters(fleet, eda):
    tag = eda["tag"]
    held = []
    try:
        for host in ("pg1", "mariadb1"):
            key = f"{tag}-{host}"
            held.append(
                holder.open_session(fleet, host, "row_lock_holder", application=tag + "-lock-root", lock_key=key)
            )
            held.append(
                holder.open_session(fleet, host, "row_lock_waiter", application=tag + "-lock-wait", lock_key=key)
            )
        roots, waiters = held[0::2], held[1::2]
        assert wait_until(lambda: _gone(roots), timeout=ACTS_WITHIN, interval=0.5), (
            "the root blockers ended by the rulebook"
        )
        assert all(session.alive() for session in waiters)
    finally:
        close_all(held)


def test_the_rulebook_stays_quiet_while_nothing_matches(fleet, eda):
    rulebook = eda["rulebook"]
    # The runs the tests before started have ended: no new one for two intervals and a run's time.
    last = [rulebook.runs(), time.monotonic()]

    def settled():
        if rulebook.runs() != last[0]:
            last[:] = [rulebook.runs(), time.monotonic()]
        return time.monotonic() - last[1] > 2 * INTERVAL + 10

    assert wait_until(settled, timeout=ACTS_WITHIN, interval=0.5), "the rulebook's runs to settle"
    before = rulebook.runs()
    time.sleep(4 * INTERVAL + 1)  # four polls of every host with nothing to end
    assert rulebook.runs() == before, rulebook.text()[-3000:]
    assert rulebook.proc.poll() is None, rulebook.text()[-3000:]


def test_a_frozen_host_does_not_stop_the_others(fleet, eda):
    tag = eda["tag"]
    rulebook = eda["rulebook"]
    with frozen(fleet, FROZEN):
        ghosts = open_sessions(fleet, [(host, "idle", tag + "-ghost-f") for host in ("pg1", "mariadb1")])
        try:
            assert wait_until(lambda: _gone(ghosts), timeout=ACTS_WITHIN, interval=0.5), (
                "the ghosts ended while pg2 is frozen"
            )
            assert wait_until(lambda: f"{FROZEN} is unreachable" in rulebook.text(), timeout=60, interval=0.5), (
                "the frozen host reported"
            )
        finally:
            close_all(ghosts)
    assert wait_until(lambda: f"{FROZEN} is reachable" in rulebook.text(), timeout=60, interval=0.5), (
        "the thawed host reported"
    )


def _source_events(inventory, seconds):
    """The events session_watch emits in `seconds` (driven directly, as ansible-rulebook does)."""
    sys.path.insert(0, SOURCE_DIR)
    try:
        import session_watch
    finally:
        sys.path.remove(SOURCE_DIR)

    events = []

    class Queue(object):
        async def put(self, event):
            events.append((time.monotonic(), json.loads(json.dumps(event, default=str))))

    async def watch():
        try:
            await asyncio.wait_for(session_watch.main(Queue(), {"inventory": inventory}), seconds)
        except asyncio.TimeoutError:
            pass

    asyncio.run(watch())
    return events


def test_the_source_never_emits_the_same_victims_twice_and_ends_nothing(fleet, tmp_path):
    tag = new_tag("edasrc")
    rules = [{"name": "ghost", "states": ["idle"], "applications": [tag + "-*"], "idle_longer_than": 1}]
    inventory = _inventory_dir(fleet, tmp_path, tag, rules)
    held = open_sessions(fleet, [("pg1", "idle", tag + "-a"), ("mariadb1", "idle", tag + "-a")])
    # Midway, a second would-be victim on pg1: its victims change, so pg1 (only) says so again.
    later = threading.Timer(3 * INTERVAL, lambda: held.extend(open_sessions(fleet, [("pg1", "idle", tag + "-b")])))
    try:
        time.sleep(1.5)
        later.start()
        events = _source_events(inventory, 6 * INTERVAL + 2)
        later.join()
        would_end = [e["dbhygiene"] for _t, e in events if e["dbhygiene"]["type"] == "would_end"]
        assert [(e["host"], e["would_end"]) for e in would_end if e["host"] == "mariadb1"] == [("mariadb1", 1)], events
        assert [(e["host"], e["would_end"]) for e in would_end if e["host"] == "pg1"] == [("pg1", 1), ("pg1", 2)], (
            events
        )
        for event in would_end:
            assert event["policy"] == "eda-" + tag and event["engine"] in ("postgresql", "mysql")
            assert {s["application"] for s in event["sessions"]} <= {tag + "-a", tag + "-b"}
            assert all("query" not in session for session in event["sessions"])
        assert len(held) == 3 and all(session.alive() for session in held)  # check mode: the source ends nothing
        assert fleet.password("hygiene") not in json.dumps(events)
    finally:
        later.cancel()
        close_all(held)
