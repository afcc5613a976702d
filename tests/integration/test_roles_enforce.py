# -*- coding: utf-8 -*-
"""The enforce role and playbook on real servers: validation before contact,
run_on host, secrets, AWX job id and set_stats, limits named in the report."""

import json
import os
import stat
import time

from _roles_fixtures import (
    DOWN_HOST,
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


def _ghost_policy(tag, **extra):
    policy = {
        "name": "roles-" + tag,
        "rules": [{"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost"], "idle_longer_than": 1}],
    }
    policy.update(extra)
    return policy


def _group_vars(tmp_path, policy, **extra):
    group_vars = {
        "dbhygiene_policy": policy,
        "dbhygiene_report_dir": str(tmp_path / "reports"),
        "dbhygiene_audit_log": str(tmp_path / "audit.jsonl"),
    }
    group_vars.update(extra)
    return group_vars


def test_bad_policy_fails_the_play_before_any_host_is_contacted(fleet, tmp_path):
    policy = {"name": "bad", "rules": [{"name": "r", "states": ["idle"], "idle_longer_than": "5 minutes"}]}
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, policy), hosts=HOSTS, down_host=True)
    run = run_playbook(ENFORCE, inventory=inventory)
    assert run.rc != 0
    assert "dbhygiene_policy.rules[0].idle_longer_than" in run.output
    assert "'5 minutes'" in run.output
    assert "no host was contacted" in run.output
    # The per-host task never ran: not even the down host was tried.
    assert not [r for r in run.results if r["task"].endswith("End the sessions the policy targets")]
    assert "127.0.1.250" not in run.output
    assert not os.path.exists(str(tmp_path / "reports"))


def test_policy_from_play_vars_is_the_one_checked(fleet, tmp_path):
    """Extra vars win over group_vars: the check sees what the hosts will use."""
    inventory = write_inventory(
        fleet, tmp_path, _group_vars(tmp_path, {"rules": [{"name": "r", "users": ["x"]}]}), hosts=HOSTS
    )
    bad = {"rules": [{"name": "r", "users": ["x"], "client_addresses": ["10.0.0.300"]}]}
    run = run_playbook(ENFORCE, inventory=inventory, extra_vars={"dbhygiene_policy": bad})
    assert run.rc != 0
    assert "dbhygiene_policy.rules[0].client_addresses[0]" in run.output and "10.0.0.300" in run.output


def test_run_on_host_job_id_stats_and_no_secret_at_vvv(fleet, tmp_path):
    tag = new_tag("roles")
    inventory = write_inventory(
        fleet, tmp_path, _group_vars(tmp_path, _ghost_policy(tag), dbhygiene_run_on="host"), hosts=HOSTS
    )
    held = open_sessions(fleet, [(h, "idle", "%s-%s" % (tag, name)) for h in HOSTS for name in ("ghost", "web")])
    password = fleet.password("hygiene")
    try:
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory, extra_vars={"awx_job_id": 4711}, verbosity=3)
        assert run.rc == 0, run.output
        # run_on host: the module ran over the host's own connection, not delegated to localhost.
        assert "ok: [pg1 -> localhost]" not in run.output and "changed: [pg1 -> localhost]" not in run.output
        for host in HOSTS:
            live = live_sessions(fleet, host, tag)
            ghost, web = [s.id for s in held if s.server["name"] == host]
            assert ghost not in live and web in live
        lines = read_trail(str(tmp_path / "audit.jsonl"))
        assert sorted(line["host"] for line in lines) == sorted(HOSTS)
        assert {line["job_id"] for line in lines} == {4711}
        assert stat.S_IMODE(os.stat(str(tmp_path / "audit.jsonl")).st_mode) == 0o600
        report = [r for r in run.results if r["task"].endswith("Write the fleet report")][-1]["result"]
        assert report["ansible_stats"]["data"]["dbhygiene_enforce"]["ended"] == 2
        assert report["ansible_stats"]["per_host"] is False
        assert read_json(str(tmp_path / "reports" / "enforce-latest.json"))["job_id"] == 4711
        texts = [run.output, json.dumps(run.results), open(str(tmp_path / "audit.jsonl")).read()]
        texts += [open(str(tmp_path / "reports" / name)).read() for name in os.listdir(str(tmp_path / "reports"))]
        assert not [text for text in texts if password in text]
    finally:
        close_all(held)


def test_limits_refuse_and_the_report_says_why(fleet, tmp_path):
    tag = new_tag("roles")
    policy = _ghost_policy(tag, limits={"max_terminations": 1})
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, policy), hosts=("pg1", "pg2"))
    held = open_sessions(fleet, [("pg1", "idle", tag + "-ghost"), ("pg1", "idle", tag + "-ghost")])
    held += open_sessions(fleet, [("pg2", "idle", tag + "-ghost")])
    try:
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory)
        assert run.rc != 0
        assert run.stats["pg1"]["failures"] == 1 and run.stats["pg2"]["failures"] == 0
        report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
        assert "max_terminations" in report["failed_hosts"]["pg1"]
        assert report["hosts"]["pg2"]["status"] == "ok" and len(report["hosts"]["pg2"]["terminated"]) == 1
        # pg1: fail closed, both still there; pg2: its one ghost ended.
        assert len(live_sessions(fleet, "pg1", tag)) == 2
        assert live_sessions(fleet, "pg2", tag) == {}
        assert [line["host"] for line in read_trail(str(tmp_path / "audit.jsonl"))] == ["pg2"]
    finally:
        close_all(held)


def test_a_down_host_alone_still_gets_a_report(fleet, tmp_path):
    inventory = write_inventory(
        fleet, tmp_path, _group_vars(tmp_path, _ghost_policy("nothing")), hosts=(), down_host=True
    )
    run = run_playbook(ENFORCE, inventory=inventory)
    assert run.rc != 0
    report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
    assert report["totals"] == dict(report["totals"], hosts=1, ok=0, failed=1)
    assert DOWN_HOST["ansible_host"] in report["failed_hosts"]["pgdown"]
