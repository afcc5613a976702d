# -*- coding: utf-8 -*-
"""Dry runs in the open, safe by default (docs/architecture.md), through ansible-playbook on real servers:

- a dry run's results, trail lines, report and set_stats artifact say check_mode, its report is
  <role>-check-latest and never replaces the real run's <role>-latest (the audit role's is every run's);
- a play with no host to work on (a misspelled dbhygiene_hosts, an inventory without the group, a
  --limit that leaves none of it) fails naming the group, dbhygiene_hosts and the inventory, and
  writes the run's report saying why; so does a run stopped by a policy error, in check mode too;
- a policy without limits gets the default limits on both engines, and the dry run trips them
  exactly as the real run does; raised in the policy, they let the same run through.
"""

import json
import os
import time

import pytest
from _roles_fixtures import (
    AUDIT,
    ENFORCE,
    close_all,
    live_sessions,
    new_tag,
    open_sessions,
    read_json,
    read_trail,
    write_inventory,
)
from conftest import run_playbook

HOSTS = ("pg1", "mariadb1")
REPORT_TASK = "Write the fleet report"
ENFORCE_TASK = "End the sessions the policy targets"
HOSTS_TASK = "Find the hosts to work on, and report why when there is none"


def _group_vars(tmp_path, policy):
    return {
        "dbhygiene_policy": policy,
        "dbhygiene_report_dir": str(tmp_path / "reports"),
        "dbhygiene_audit_log": str(tmp_path / "audit.jsonl"),
    }


def _ghost_policy(tag, **extra):
    policy = {
        "name": "dry-" + tag,
        "rules": [{"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost"], "idle_longer_than": 1}],
    }
    policy.update(extra)
    return policy


def _reports(tmp_path):
    directory = str(tmp_path / "reports")
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def _report(tmp_path, name):
    return read_json(str(tmp_path / "reports" / name))


def _markdown(tmp_path, name):
    with open(str(tmp_path / "reports" / name)) as handle:
        return handle.read()


def _task_result(run, task, host=None):
    """The last result of the role's task named `task` (Ansible prefixes the role's name)."""
    found = [r for r in run.results if r["task"].endswith(task) and (host is None or r["host"] == host)]
    assert found, (task, host, run.output[-4000:])
    return found[-1]["result"]


def _artifact(run, kind="enforce"):
    """The set_stats data the report task published (what AWX shows as the job's artifacts)."""
    result = _task_result(run, "Write the fleet audit report" if kind == "audit" else REPORT_TASK)
    return result["ansible_stats"]["data"]["dbhygiene_" + kind]


def test_check_and_real_runs_are_told_apart_everywhere_and_a_check_keeps_the_real_latest(fleet, tmp_path):
    tag = new_tag("dry")
    # The test's ghosts may be every client session of a quiet server: no share limit here.
    policy = _ghost_policy(tag, limits={"max_fraction": "unlimited"})
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, policy), hosts=HOSTS)
    held = open_sessions(fleet, [(host, "idle", tag + "-ghost") for host in HOSTS])
    try:
        time.sleep(1.5)
        check = run_playbook(ENFORCE, inventory=inventory, check=True, diff=True)
        assert check.rc == 0, check.output
        for host in HOSTS:
            assert _task_result(check, ENFORCE_TASK, host)["check_mode"] is True
            assert [s.id for s in held if s.server["name"] == host][0] in live_sessions(fleet, host, tag)
        assert _artifact(check) == dict(_artifact(check), check_mode=True, ended=2, stopped=None)
        assert "enforce-latest.json" not in _reports(tmp_path)
        dry = _report(tmp_path, "enforce-check-latest.json")
        assert dry["check_mode"] is True and dry["totals"]["ended"] == 2
        assert _markdown(tmp_path, "enforce-check-latest.md").splitlines()[0] == (
            "# Session enforcement (check mode: nothing was changed)"
        )
        stamped = [name for name in _reports(tmp_path) if "latest" not in name and name.startswith("enforce")]
        assert stamped and all(name.startswith("enforce-check-2") for name in stamped), stamped

        real = run_playbook(ENFORCE, inventory=inventory)
        assert real.rc == 0, real.output
        assert _artifact(real) == dict(_artifact(real), check_mode=False, ended=2)
        for host in HOSTS:
            assert _task_result(real, ENFORCE_TASK, host)["check_mode"] is False
            assert not live_sessions(fleet, host, tag + "-ghost")
        done = _report(tmp_path, "enforce-latest.json")
        assert done["check_mode"] is False and done["totals"]["ended"] == 2
        assert _markdown(tmp_path, "enforce-latest.md").splitlines()[0] == "# Session enforcement"

        # A later dry run (nothing left to end) replaces the dry run's latest, never the real run's.
        again = run_playbook(ENFORCE, inventory=inventory, check=True)
        assert again.rc == 0, again.output
        assert _report(tmp_path, "enforce-latest.json") == done
        later = _report(tmp_path, "enforce-check-latest.json")
        assert later["check_mode"] is True and later["totals"]["ended"] == 0 and later["time"] > done["time"]

        trail = read_trail(str(tmp_path / "audit.jsonl"))
        assert sorted((line["check_mode"], line["outcome"]) for line in trail) == [
            (False, "terminated"),
            (False, "terminated"),
            (True, "would_terminate"),
            (True, "would_terminate"),
        ]

        # The audit role is read only: its dry run is a run like any other, its -latest every run's.
        audit = run_playbook(AUDIT, inventory=inventory, check=True)
        assert audit.rc == 0, audit.output
        assert _report(tmp_path, "audit-latest.json")["check_mode"] is True
        assert _artifact(audit, "audit")["check_mode"] is True
        assert not [name for name in _reports(tmp_path) if name.startswith("audit-check")]
    finally:
        close_all(held)


def _old_latest(tmp_path, name="enforce-latest.json"):
    """A report an earlier real run left: the run under test must not leave it looking current."""
    os.makedirs(str(tmp_path / "reports"), exist_ok=True)
    old = {"kind": "enforce", "time": "2020-01-01T00:00:00.000000Z", "check_mode": False, "hosts": {}}
    with open(str(tmp_path / "reports" / name), "w") as handle:
        json.dump(old, handle)
    return old


def _assert_stopped_report(tmp_path, name, expected_hosts, *needles):
    report = _report(tmp_path, name)
    assert report["time"] > "2020-01-01T00:00:00.000000Z"
    assert report["stopped"] and all(needle in report["stopped"] for needle in needles), report["stopped"]
    assert sorted(report["hosts"]) == sorted(expected_hosts)
    assert report["totals"]["failed"] == len(expected_hosts)
    assert set(report["failed_host_reasons"].values()) <= {"stopped"}
    markdown = _markdown(tmp_path, name.replace(".json", ".md"))
    assert markdown.splitlines()[2].startswith("**Stopped before any database was contacted: ")
    return report


@pytest.mark.parametrize("check", [False, True])
def test_a_misspelled_dbhygiene_hosts_fails_naming_it_and_the_inventory_and_reports_why(fleet, tmp_path, check):
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, _ghost_policy("never")), hosts=HOSTS)
    _old_latest(tmp_path)
    run = run_playbook(ENFORCE, inventory=inventory, extra_vars={"dbhygiene_hosts": "databasez"}, check=check)
    assert run.rc == 2, run.output
    message = "no host to work on: dbhygiene_hosts is 'databasez', and no host of the inventory " + inventory
    assert message in run.output
    assert "skipping: no hosts matched" not in run.output
    # Nothing was contacted: the play of the role never started.
    assert not [r for r in run.results if r["task"].endswith(ENFORCE_TASK)]
    name = "enforce-check-latest.json" if check else "enforce-latest.json"
    _assert_stopped_report(tmp_path, name, [], "dbhygiene_hosts is 'databasez'", inventory)
    found = _task_result(run, HOSTS_TASK)
    artifact = found["ansible_stats"]["data"]["dbhygiene_enforce"]
    assert found["check_mode"] is check and artifact["check_mode"] is check and artifact["stopped"]


def test_an_inventory_without_the_group_and_a_limit_that_leaves_none_of_it_fail_naming_both(fleet, tmp_path):
    report_dir = str(tmp_path / "reports")
    bare = str(tmp_path / "web.yml")
    with open(bare, "w") as handle:
        handle.write("all:\n  children:\n    web:\n      hosts:\n        web1:\n          ansible_connection: local\n")
    run = run_playbook(ENFORCE, inventory=bare, extra_vars={"dbhygiene_report_dir": report_dir})
    assert run.rc == 2, run.output
    assert (
        "no host to work on: the play targets the group 'databases' (the default; dbhygiene_hosts is not set), "
        "and no host of the inventory " + bare
    ) in run.output
    _assert_stopped_report(tmp_path, "enforce-latest.json", [], "'databases'", bare)

    # The fleet's inventory has the group; --limit leaves only a host outside it.
    inventory = write_inventory(fleet, tmp_path / "fleet", _group_vars(tmp_path, _ghost_policy("never")), hosts=HOSTS)
    with open(inventory) as handle:
        text = handle.read()
    with open(inventory, "w") as handle:
        handle.write(
            text.replace("all:\n  children:\n", "all:\n  children:\n    web:\n      hosts:\n        web1: {}\n")
        )
    run = run_playbook(AUDIT, inventory=inventory, limit="web1", extra_vars={"dbhygiene_report_dir": report_dir})
    assert run.rc == 2, run.output
    assert "its 2 host(s) in the inventory " + inventory + " are all outside --limit 'web1'" in run.output
    _assert_stopped_report(tmp_path, "audit-latest.json", [], "--limit 'web1'")


@pytest.mark.parametrize("check", [False, True])
def test_a_policy_error_stops_the_run_and_its_report_says_why(fleet, tmp_path, check):
    policy = {"name": "bad", "rules": [{"name": "r", "states": ["idle"], "idle_longer_than": "5 minutes"}]}
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, policy), hosts=HOSTS)
    old = _old_latest(tmp_path)
    run = run_playbook(ENFORCE, inventory=inventory, check=check)
    assert run.rc == 2, run.output
    assert "dbhygiene_policy.rules[0].idle_longer_than" in run.output and "no host was contacted" in run.output
    assert not [r for r in run.results if r["task"].endswith(ENFORCE_TASK)]
    name = "enforce-check-latest.json" if check else "enforce-latest.json"
    report = _assert_stopped_report(tmp_path, name, HOSTS, "dbhygiene_policy.rules[0].idle_longer_than", "'5 minutes'")
    assert report["check_mode"] is check
    for host in HOSTS:
        assert report["hosts"][host]["reason"].startswith("not contacted: the run stopped before any database")
    # A dry run that stopped leaves the real run's latest as it was; a real one replaces it.
    assert (_report(tmp_path, "enforce-latest.json") == old) is check
    assert _artifact(run) == dict(_artifact(run), check_mode=check, stopped=report["stopped"], failed=2)


# More victims than the default max_terminations (100) on each engine; the servers take 200 and 300 connections.
GHOSTS = 101


def test_default_limits_trip_the_same_in_check_and_real_mode_and_a_raised_limit_lets_the_run_through(fleet, tmp_path):
    tag = new_tag("dry")
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, _ghost_policy(tag)), hosts=HOSTS)
    held = open_sessions(fleet, [(host, "idle", tag + "-ghost") for host in HOSTS for _ghost in range(GHOSTS)])
    try:
        time.sleep(1.5)
        messages = {}
        for check in (True, False):
            run = run_playbook(ENFORCE, inventory=inventory, check=check)
            assert run.rc == 2, run.output
            for host in HOSTS:
                result = _task_result(run, ENFORCE_TASK, host)
                assert run.stats[host]["failures"] == 1 and result["check_mode"] is check
                assert len(result["would_end"]) == GHOSTS
                assert result["summary"]["limits"] == {
                    "max_terminations": 100,
                    "max_fraction": 0.9,
                    "defaults": ["max_terminations", "max_fraction"],
                }
                # "would end 101 of N client sessions (x%), above limits.max_terminations 100 (the default...": the
                # count seen may differ between the runs (other tests' sessions), the limit tripped may not.
                assert f"would end {GHOSTS} of " in result["msg"]
                messages[(host, check)] = result["msg"].split("), ", 1)[1]
                assert messages[(host, check)].startswith(
                    "above limits.max_terminations 100 (the default: the policy sets none)"
                )
                assert len(live_sessions(fleet, host, tag + "-ghost")) == GHOSTS
            report = _report(tmp_path, "enforce-check-latest.json" if check else "enforce-latest.json")
            assert report["failed_host_reasons"] == {host: "limit" for host in HOSTS}
            assert report["totals"]["ended"] == 0
        for host in HOSTS:
            assert messages[(host, True)] == messages[(host, False)]

        raised = _ghost_policy(tag, limits={"max_terminations": GHOSTS, "max_fraction": "unlimited"})
        inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, raised), hosts=HOSTS)
        check = run_playbook(ENFORCE, inventory=inventory, check=True)
        assert check.rc == 0, check.output
        assert _artifact(check) == dict(_artifact(check), check_mode=True, ended=2 * GHOSTS)
        for host in HOSTS:
            result = _task_result(check, ENFORCE_TASK, host)
            assert result["summary"]["limits"] == {
                "max_terminations": GHOSTS,
                "max_fraction": "unlimited",
                "defaults": [],
            }
        real = run_playbook(ENFORCE, inventory=inventory)
        assert real.rc == 0, real.output
        assert _artifact(real) == dict(_artifact(real), check_mode=False, ended=2 * GHOSTS)
        for host in HOSTS:
            assert live_sessions(fleet, host, tag + "-ghost") == {}
    finally:
        close_all(held)
