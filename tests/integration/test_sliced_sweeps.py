# -*- coding: utf-8 -*-
"""Sliced sweeps on real servers: one sweep run as three concurrent ansible-playbook
runs over parts of the inventory leaves one fleet report of every host and a trail
with every record once; so does an AWX sliced job (its extra variables given with -e);
runs that are no sweep's keep a report each."""

import json
import os
import subprocess
import time

from _roles_fixtures import (
    AUDIT,
    ENFORCE,
    ROOT,
    close_all,
    edit_inventory,
    live_sessions,
    new_tag,
    open_sessions,
    read_json,
    read_trail,
    stamped_reports,
    write_inventory,
)
from conftest import _bin, ansible_env, run_playbook

SERVERS = ("pg1", "pg2", "mariadb1", "mariadb2")
# Each server also under a second name: eight inventory hosts on the four servers.
HOSTS = SERVERS + tuple(name + "b" for name in SERVERS)
PARTITIONS = ("pg1,mariadb1,pg2b", "pg2,mariadb2,mariadb1b", "pg1b,mariadb2b")
SERVER_OF = {host: host[:-1] if host.endswith("b") else host for host in HOSTS}


def _fleet_inventory(fleet, tmp_path, tag, **group_vars):
    """The eight hosts, each with a policy of its own: it ends the sessions of application <tag>-<host> only."""
    common = {
        "dbhygiene_report_dir": str(tmp_path / "reports"),
        "dbhygiene_audit_log": str(tmp_path / "audit.jsonl"),
    }
    common.update(group_vars)
    inventory = write_inventory(fleet, tmp_path, common, hosts=SERVERS)

    def alias_and_scope(groups):
        for group in groups.values():
            for name in list(group["hosts"]):
                group["hosts"][name + "b"] = dict(group["hosts"][name])
            for name, host_vars in group["hosts"].items():
                host_vars["dbhygiene_policy"] = {
                    "name": "sweep-" + tag,
                    "rules": [
                        {"name": "ghost", "states": ["idle"], "applications": [f"{tag}-{name}"], "idle_longer_than": 1}
                    ],
                    # The test's sessions may be every client session of a quiet server: no share limit.
                    "limits": {"max_fraction": "unlimited"},
                }

    edit_inventory(inventory, alias_and_scope)
    return inventory


def _start(playbook, inventory, limit, extra_vars=None, check=False):
    argv = [_bin("ansible-playbook"), "-i", inventory, playbook, "--limit", limit]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    return subprocess.Popen(argv, cwd=ROOT, env=ansible_env({}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _run_partitions(playbook, inventory, extra_vars_of=None, check=False):
    """The three partitions at once; each run's extra variables from extra_vars_of(index)."""
    runs = [
        _start(playbook, inventory, limit, extra_vars_of(index) if extra_vars_of else None, check)
        for index, limit in enumerate(PARTITIONS)
    ]
    outputs = [run.communicate(timeout=300)[0].decode("utf-8", "replace") for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-4000:]
    return outputs


def _hold_one_per_host(fleet, tag):
    held = open_sessions(fleet, [(SERVER_OF[host], "idle", f"{tag}-{host}") for host in HOSTS])
    time.sleep(1.5)  # idle longer than the policy's second
    return held


def _the_one_report(report_dir, kind):
    stamped = stamped_reports(report_dir, kind)
    assert len(stamped) == 1, stamped
    report = read_json(os.path.join(report_dir, stamped[0]))
    assert read_json(os.path.join(report_dir, f"{kind}-latest.json")) == report
    return stamped[0], report


def _assert_one_record_per_host(trail, report, held, outcome):
    """The trail has every host's record once, and it is the session the report names for that host."""
    by_host = {session.application.rsplit("-", 1)[-1]: session for session in held}
    assert len(trail) == len(HOSTS), trail
    assert sorted(line["host"] for line in trail) == sorted(HOSTS)
    for line in trail:
        assert line["outcome"] == outcome and line["id"] == by_host[line["host"]].id
        [entry] = report["hosts"][line["host"]]["terminated"]
        assert entry["id"] == line["id"]


def test_three_limit_runs_of_one_sweep_leave_one_report_and_a_whole_trail(fleet, tmp_path):
    tag = new_tag("sweep")
    report_dir = str(tmp_path / "reports")
    inventory = _fleet_inventory(fleet, tmp_path, tag, dbhygiene_sweep_slices=3)
    held = _hold_one_per_host(fleet, tag)
    try:
        _run_partitions(ENFORCE, inventory, lambda index: {"dbhygiene_sweep_id": f"{tag}-nightly"})
        name, report = _the_one_report(report_dir, "enforce")
        assert f"-sweep.{tag.replace('-', '_')}_nightly." in name
        assert sorted(report["hosts"]) == sorted(HOSTS)
        assert report["totals"] == dict(report["totals"], hosts=8, ok=8, failed=0, terminated=8, ended=8)
        sweep = report["sweep"]
        assert sweep["id"] == f"{tag}-nightly" and sweep["source"] == "dbhygiene_sweep_id"
        assert sweep["slices"] == 3 and sweep["complete"] is True and sweep["runs_missing"] == 0
        assert sweep["hosts_missing"] == []
        assert sorted(sorted(run["hosts"]) for run in sweep["runs"]) == sorted(
            sorted(limit.split(",")) for limit in PARTITIONS
        )
        markdown = open(os.path.join(report_dir, "enforce-latest.md")).read()
        assert "## Sweep" in markdown and "3 runs of 3 (complete), 8 hosts." in markdown
        trail = read_trail(str(tmp_path / "audit.jsonl"))
        _assert_one_record_per_host(trail, report, held, "terminated")
        assert {line.get("sweep_id") for line in trail} == {f"{tag}-nightly"}
        for server in SERVERS:
            assert live_sessions(fleet, server, tag) == {}
    finally:
        close_all(held)


def test_an_awx_sliced_job_leaves_one_report_of_its_workflow(fleet, tmp_path):
    """The variables AWX gives each slice: its own awx_job_id, the workflow's awx_workflow_job_id."""
    tag = new_tag("sweep")
    report_dir = str(tmp_path / "reports")
    inventory = _fleet_inventory(fleet, tmp_path, tag)
    held = _hold_one_per_host(fleet, tag)
    workflow = 5000 + int(tag[-4:], 16)

    def awx_vars(index):
        job = workflow + 1 + index
        return {
            "awx_job_id": job,
            "tower_job_id": job,
            "awx_job_launch_type": "workflow",
            "tower_job_launch_type": "workflow",
            "awx_workflow_job_id": workflow,
            "tower_workflow_job_id": workflow,
            "awx_workflow_job_name": "nightly sweep",
            "tower_workflow_job_name": "nightly sweep",
            "awx_workflow_job_launch_type": "scheduled",
            "awx_job_template_name": "nightly sweep",
            # AWX's id wins over one given: the run says so.
            "dbhygiene_sweep_id": "ignored",
        }

    try:
        outputs = _run_partitions(ENFORCE, inventory, awx_vars, check=True)
        # (Ansible may wrap a warning's lines.)
        said = [" ".join(output.split()) for output in outputs]
        assert all(f"is part of the sweep of AWX workflow job {workflow}" in text for text in said), outputs
        # A dry run's reports are enforce-check-*, apart from the real runs'.
        name, report = _the_one_report(report_dir, "enforce-check")
        assert f"-sweep_check.awx_workflow_{workflow}." in name
        assert report["check_mode"] is True and report["job_id"] is None
        assert sorted(report["hosts"]) == sorted(HOSTS) and report["totals"]["terminated"] == 8
        sweep = report["sweep"]
        assert sweep["id"] == f"awx-workflow-{workflow}" and sweep["source"] == "awx_workflow_job_id"
        assert sorted(run["job_id"] for run in sweep["runs"]) == [workflow + 1, workflow + 2, workflow + 3]
        assert sweep["slices"] is None and sweep["complete"] is None
        # A slice's inventory is its own slice: which hosts the others have is not known.
        assert sweep["hosts_missing"] is None
        trail = read_trail(str(tmp_path / "audit.jsonl"))
        _assert_one_record_per_host(trail, report, held, "would_terminate")
        assert {line["job_id"] for line in trail} == {workflow + 1, workflow + 2, workflow + 3}
        assert {line.get("sweep_id") for line in trail} == {f"awx-workflow-{workflow}"}
        # Check mode ended nothing.
        for server in SERVERS:
            assert len(live_sessions(fleet, server, tag)) == 2

        # The audit role's report of the same workflow: one more, of its own kind.
        _run_partitions(AUDIT, inventory, awx_vars)
        _name, audit = _the_one_report(report_dir, "audit")
        assert sorted(audit["hosts"]) == sorted(HOSTS) and audit["totals"]["would_end"] == 8
        assert audit["sweep"]["id"] == f"awx-workflow-{workflow}" and len(audit["sweep"]["runs"]) == 3
        assert len(stamped_reports(report_dir, "enforce")) == 1
    finally:
        close_all(held)


def test_a_limit_run_of_a_sweep_names_the_hosts_still_to_report(fleet, tmp_path):
    """The whole inventory is known to a --limit run: the report says which hosts the other runs owe."""
    tag = new_tag("sweep")
    report_dir = str(tmp_path / "reports")
    inventory = _fleet_inventory(fleet, tmp_path, tag)
    run = _start(AUDIT, inventory, PARTITIONS[2], {"dbhygiene_sweep_id": tag, "dbhygiene_sweep_slices": 3})
    output = run.communicate(timeout=300)[0].decode("utf-8", "replace")
    assert run.returncode == 0, output[-4000:]
    _name, report = _the_one_report(report_dir, "audit")
    assert sorted(report["hosts"]) == sorted(PARTITIONS[2].split(","))
    assert report["sweep"]["hosts_missing"] == sorted(set(HOSTS) - set(PARTITIONS[2].split(",")))
    assert report["sweep"]["runs_missing"] == 2 and report["sweep"]["complete"] is False


def test_runs_without_a_sweep_keep_a_report_each(fleet, tmp_path):
    tag = new_tag("sweep")
    report_dir = str(tmp_path / "reports")
    inventory = _fleet_inventory(fleet, tmp_path, tag)
    _run_partitions(ENFORCE, inventory, check=True)
    stamped = stamped_reports(report_dir, "enforce")
    assert len(stamped) == 3
    reports = [read_json(os.path.join(report_dir, name)) for name in stamped]
    assert sorted(sorted(report["hosts"]) for report in reports) == sorted(
        sorted(limit.split(",")) for limit in PARTITIONS
    )
    assert all("sweep" not in report for report in reports)
    assert not [name for name in os.listdir(report_dir) if name.endswith(".d")]


def _awx_slice_vars(workflow, job):
    return {"awx_job_id": job, "tower_job_id": job, "awx_workflow_job_id": workflow, "tower_workflow_job_id": workflow}


def test_an_awx_slice_run_twice_and_a_failed_slice_keep_every_kill_and_their_own_artifacts(fleet, tmp_path):
    """A slice relaunched keeps the first run's kills in the sweep (each once); a slice with a failed
    host has failed: 1 in its own artifact, and the next slice's own artifact does not inherit it."""
    tag = new_tag("sweep")
    report_dir = str(tmp_path / "reports")
    inventory = _fleet_inventory(fleet, tmp_path, tag)

    def wrong_password(groups):
        groups["postgresql"]["hosts"]["pg1b"]["dbhygiene_login_password"] = "not-the-password"

    edit_inventory(inventory, wrong_password)
    workflow = 7000 + int(tag[-4:], 16)
    held = _hold_one_per_host(fleet, tag)

    def run_slice(index, job):
        run = run_playbook(
            ENFORCE, inventory=inventory, extra_vars=_awx_slice_vars(workflow, job), limit=PARTITIONS[index]
        )
        return run, run.result(task="dbhygiene.sessions.enforce : Write the fleet report")["ansible_stats"]["data"]

    try:
        first, stats = run_slice(0, workflow + 1)
        assert first.rc == 0, first.output
        assert stats["dbhygiene_enforce"]["ended"] == 3 and stats["dbhygiene_enforce_sweep"]["ended"] == 3
        # New ghosts on the same slice's hosts, and the slice run again (AWX: relaunch).
        slice_hosts = PARTITIONS[0].split(",")
        held += open_sessions(fleet, [(SERVER_OF[host], "idle", f"{tag}-{host}") for host in slice_hosts])
        time.sleep(1.5)
        again, stats = run_slice(0, workflow + 2)
        assert again.rc == 0, again.output
        assert stats["dbhygiene_enforce"]["ended"] == 3 and stats["dbhygiene_enforce_sweep"]["ended"] == 6
        failed, stats = run_slice(2, workflow + 3)
        assert failed.rc != 0
        assert stats["dbhygiene_enforce"]["failed"] == 1 and stats["dbhygiene_enforce"]["ended"] == 1
        last, stats = run_slice(1, workflow + 4)
        assert last.rc == 0, last.output
        assert stats["dbhygiene_enforce"] == dict(stats["dbhygiene_enforce"], hosts=3, ok=3, failed=0, ended=3)
        sweep_totals = stats["dbhygiene_enforce_sweep"]
        assert sweep_totals["id"] == f"awx-workflow-{workflow}"
        assert sweep_totals == dict(sweep_totals, hosts=8, ok=7, failed=1, ended=10, terminated=10)

        _name, report = _the_one_report(report_dir, "enforce")
        assert report["totals"]["ended"] == 10 and len(report["sweep"]["runs"]) == 4
        assert report["sweep"]["hosts_missing"] is None
        for host in slice_hosts:
            assert len(report["hosts"][host]["terminated"]) == 2, host
        trail = [line for line in read_trail(str(tmp_path / "audit.jsonl")) if line["outcome"] == "terminated"]
        assert len(trail) == 10 and {line["sweep_id"] for line in trail} == {f"awx-workflow-{workflow}"}
        assert sorted((line["host"], line["id"]) for line in trail) == sorted(
            (host, entry["id"])
            for host, entry_host in report["hosts"].items()
            for entry in entry_host.get("terminated", [])
        )
    finally:
        close_all(held)
