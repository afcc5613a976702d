# -*- coding: utf-8 -*-
"""The audit role and playbook on real servers: read only in normal and check
mode, counts, what the policy would end, thresholds for alerting."""

import time

import pytest
from _roles_fixtures import (
    AUDIT,
    close_all,
    live_sessions,
    new_tag,
    open_sessions,
    read_json,
    write_inventory,
)
from conftest import run_playbook
from dbfleet import holder

HOSTS = ("pg1", "mariadb1")


def _group_vars(tmp_path, tag, **extra):
    group_vars = {
        "dbhygiene_policy": {
            "name": "audit-" + tag,
            "rules": [{"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost"], "idle_longer_than": 1}],
            "limits": {"max_fraction": "unlimited"},
        },
        "dbhygiene_report_dir": str(tmp_path / "reports"),
    }
    group_vars.update(extra)
    return group_vars


@pytest.fixture
def sessions(fleet):
    tag = new_tag("audit")
    kinds = (("ghost", "idle"), ("web", "idle"), ("web", "idle"), ("stuck", "idle_in_transaction"))
    held = open_sessions(fleet, [(h, kind, "%s-%s" % (tag, name)) for h in HOSTS for name, kind in kinds])
    time.sleep(1.5)
    try:
        yield tag, held
    finally:
        close_all(held)


@pytest.mark.parametrize("check", [True, False])
def test_audit_reports_and_changes_nothing(fleet, tmp_path, sessions, check):
    tag, held = sessions
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, tag), hosts=HOSTS)
    run = run_playbook(AUDIT, inventory=inventory, check=check)
    assert run.rc == 0, run.output
    for host in HOSTS:
        assert run.stats[host]["changed"] == 0
        assert set(live_sessions(fleet, host, tag)) == {s.id for s in held if s.server["name"] == host}
    report = read_json(str(tmp_path / "reports" / "audit-latest.json"))
    assert report["check_mode"] is check
    assert report["totals"]["failed"] == 0
    for host in HOSTS:
        entry = report["hosts"][host]
        assert entry["by_application"][tag + "-web"] == 2
        assert entry["by_application"][tag + "-ghost"] == 1
        assert entry["sessions"] >= 4
        assert entry["by_state"]["idle_in_transaction"] >= 1
        assert entry["oldest_idle_in_transaction"]["seconds"] >= 1
        assert entry["max_connections"] > 0 and 0 < entry["connection_use"] < 1
        ghost = [s.id for s in held if s.server["name"] == host and s.application == tag + "-ghost"]
        assert [item["id"] for item in entry["would_end"]] == ghost
    markdown = open(str(tmp_path / "reports" / "audit-latest.md")).read()
    assert "What the policy would end" in markdown and tag + "-ghost" in markdown


def test_thresholds_mark_hosts_as_failing(fleet, tmp_path, sessions):
    tag, held = sessions
    thresholds = {"max_would_end": 0, "max_sessions": 100000}
    inventory = write_inventory(
        fleet, tmp_path, _group_vars(tmp_path, tag, dbhygiene_audit_thresholds=thresholds), hosts=HOSTS + ("pg2",)
    )
    run = run_playbook(AUDIT, inventory=inventory)
    assert run.rc != 0
    assert run.stats["pg1"]["failures"] == 1 and run.stats["mariadb1"]["failures"] == 1
    assert run.stats["pg2"]["failures"] == 0  # none of our ghosts there
    assert "max_would_end: 1 (threshold 0)" in run.output
    report = read_json(str(tmp_path / "reports" / "audit-latest.json"))
    assert report["totals"]["alerting"] == 2
    assert report["hosts"]["pg1"]["breaches"] == ["max_would_end: 1 (threshold 0)"]
    assert report["hosts"]["pg2"]["status"] == "ok"
    for host in HOSTS:
        assert len(live_sessions(fleet, host, tag)) == 4


def test_bad_thresholds_fail_before_contact(fleet, tmp_path):
    inventory = write_inventory(
        fleet,
        tmp_path,
        _group_vars(tmp_path, "x", dbhygiene_audit_thresholds={"max_oldest_transaction": "ten minutes"}),
        hosts=HOSTS,
    )
    run = run_playbook(AUDIT, inventory=inventory)
    assert run.rc != 0
    assert "dbhygiene_audit_thresholds.max_oldest_transaction" in run.output and "'ten minutes'" in run.output
    assert not [r for r in run.results if r["task"].endswith("Take a session snapshot and plan the policy on it")]


# ---------------------------------------------------------------- lock chains (issue 11)
LOCK_HOSTS = ("pg1", "mariadb1")


@pytest.fixture
def lock_chain(fleet):
    """On pg1 and mariadb1: a transaction left open that updated a row (the root blocker),
    two sessions updating that row behind it; the row is the test's own (its tag)."""
    tag = new_tag("auditlock")
    chains = {}
    held = []
    try:
        for host in LOCK_HOSTS:
            root = holder.open_session(
                fleet, host, "row_lock_holder", application=tag + "-desk", lock_key=tag, seconds=600
            )
            held.append(root)
            waiters = []
            for _waiter in range(2):
                waiters.append(
                    holder.open_session(
                        fleet, host, "row_lock_waiter", application=tag + "-web", lock_key=tag, seconds=600
                    )
                )
                held.append(waiters[-1])
            chains[host] = (root, waiters)
        time.sleep(2.5)
        yield tag, chains
    finally:
        close_all(held)


def _chain_of(report, host, root_id):
    found = [chain for chain in report["lock_chains"] if chain["host"] == host and chain["root"] == root_id]
    assert len(found) == 1, (host, root_id, report["lock_chains"])
    return found[0]


def test_audit_shows_the_lock_chain_and_max_lock_wait_fails_that_host_alone(fleet, tmp_path, lock_chain):
    tag, chains = lock_chain
    group_vars = _group_vars(tmp_path, tag, dbhygiene_audit_thresholds={"max_lock_wait": 1})
    inventory = write_inventory(fleet, tmp_path, group_vars, hosts=LOCK_HOSTS + ("pg2", "mariadb2"))
    run = run_playbook(AUDIT, inventory=inventory, check=True)
    assert run.rc != 0
    report = read_json(str(tmp_path / "reports" / "audit-latest.json"))
    for host, (root, waiters) in chains.items():
        assert run.stats[host]["failures"] == 1, run.output
        entry = report["hosts"][host]
        assert entry["reason_code"] == "threshold"
        [breach] = entry["breaches"]
        assert breach.startswith("max_lock_wait: ") and f"waits on {root.id}" in breach
        chain = _chain_of(report, host, root.id)
        assert chain["visible"] is True and chain["user"] == "app" and chain["database"] == "appdb"
        assert chain["application"] == tag + "-desk" and chain["state"] == "idle_in_transaction"
        assert chain["blocking"] == 2 and chain["waiters"] == sorted(w.id for w in waiters)
        assert chain["blocking_seconds"] >= 2
        assert entry["longest_lock_wait"]["id"] in {w.id for w in waiters}
        assert entry["longest_lock_wait"]["seconds"] == chain["blocking_seconds"]
        assert entry["lock_waiting"] >= 2
        assert entry["lock_waits_hidden"] == [] and "lock_note" not in entry  # the test fleet's logins see them all
        # Read only: the chain is still there, the waiters still wait.
        assert root.alive() and all(holder.waiting_for_lock(w) for w in waiters)
    for host in ("pg2", "mariadb2"):
        assert run.stats[host]["failures"] == 0
        assert report["hosts"][host]["status"] == "ok" and report["hosts"][host]["lock_chains"] == []
    assert report["totals"]["alerting"] == 2
    markdown = open(str(tmp_path / "reports" / "audit-latest.md")).read()
    assert "## Lock chains" in markdown
    for host, (root, _waiters) in chains.items():
        assert f"| {host} | {root.id} | app | appdb | {tag}-desk | idle_in_transaction | 2 | " in markdown


def test_audit_without_lock_threshold_reports_the_chain_and_passes(fleet, tmp_path, lock_chain):
    tag, chains = lock_chain
    group_vars = _group_vars(tmp_path, tag, dbhygiene_audit_thresholds={"max_lock_wait": "1h"})
    inventory = write_inventory(fleet, tmp_path, group_vars, hosts=LOCK_HOSTS)
    run = run_playbook(AUDIT, inventory=inventory)
    assert run.rc == 0, run.output
    report = read_json(str(tmp_path / "reports" / "audit-latest.json"))
    for host, (root, _waiters) in chains.items():
        assert _chain_of(report, host, root.id)["blocking"] == 2
        assert report["hosts"][host]["breaches"] == []
