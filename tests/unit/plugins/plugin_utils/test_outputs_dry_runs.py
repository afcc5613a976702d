# -*- coding: utf-8 -*-
"""Dry runs in the open (docs/architecture.md): the report files of a dry run, a run that stopped, a play
with no host to work on. Pure: no Ansible, no database."""

import json
import os

import pytest
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import (
    _outputs,
    _report_kinds,
    _report_markdown,
    _sweeps,
)


def _report(kind, check_mode, minute=0, results=None, context=None):
    report = _report_kinds.build_report(
        kind, ["a"], ["a"], results or {"a": {"dbhygiene": {"seen": 1}}}, check_mode, context or {}
    )
    report["time"] = "2026-12-01T16:%02d:00.000000Z" % minute
    return report


def _json(path):
    with open(path) as handle:
        return json.load(handle)


@pytest.mark.parametrize(
    "kind, check_mode, stem",
    [
        ("enforce", False, "enforce"),
        ("enforce", True, "enforce-check"),
        ("drain", True, "drain-check"),
        ("drain", False, "drain"),
        # Read only: a dry run of the audit is a run like any other.
        ("audit", True, "audit"),
        ("audit", False, "audit"),
    ],
)
def test_a_dry_run_writes_its_own_files_and_never_a_real_runs(tmp_path, kind, check_mode, stem):
    paths, markdown = _outputs.write_report(_report(kind, check_mode), str(tmp_path))
    assert os.path.basename(paths["json"]).startswith(f"{stem}-20261201T160000.000000Z-")
    assert os.path.basename(paths["markdown"]).startswith(f"{stem}-20261201T160000.000000Z-")
    names = sorted(os.listdir(str(tmp_path)))
    assert {f"{stem}-latest.json", f"{stem}-latest.md", f"{stem}-latest.html"} <= set(names)
    assert os.path.basename(paths["html"]).startswith(f"{stem}-20261201T160000.000000Z-")
    assert len([name for name in names if "latest" in name]) == 3
    assert _json(str(tmp_path / f"{stem}-latest.json"))["check_mode"] is check_mode
    assert (markdown.splitlines()[0].endswith(" (check mode: nothing was changed)")) is check_mode


def test_a_dry_run_keeps_the_real_runs_latest_and_each_is_pruned_apart(tmp_path):
    report_dir = str(tmp_path)
    real, _markdown = _outputs.write_report(_report("enforce", False, minute=0), report_dir, keep=2)
    for minute in range(1, 6):
        _outputs.write_report(_report("enforce", True, minute=minute), report_dir, keep=2)
    names = set(os.listdir(report_dir))
    # Five dry runs later: the real run's report is still there and still the latest real one.
    assert os.path.basename(real["json"]) in names
    assert _json(os.path.join(report_dir, "enforce-latest.json"))["check_mode"] is False
    assert _json(os.path.join(report_dir, "enforce-check-latest.json"))["time"] == "2026-12-01T16:05:00.000000Z"
    assert len([name for name in names if name.startswith("enforce-check-2") and name.endswith(".json")]) == 2


def test_a_dry_sweeps_report_is_pruned_with_its_directory(tmp_path):
    report_dir = str(tmp_path)
    sweep = {"id": "nightly", "source": "dbhygiene_sweep_id"}
    results = {"a": {"dbhygiene": {"seen": 1}}}
    _report_obj, paths, _markdown = _sweeps.write_sweep_report(
        "enforce", report_dir, sweep, "r1", True, ["a"], ["a"], results, {}, keep=1, now="2026-12-01T16:00:00.000000Z"
    )
    directory = _outputs.sweep_directory(report_dir, "enforce", _sweeps.sweep_tag(sweep, True))
    assert os.path.basename(paths["json"]).startswith("enforce-check-") and os.path.isdir(directory)
    for minute in (1, 2):  # two later dry runs (the sweep's report has the time of now)
        later = _report("enforce", True)
        later["time"] = "2099-01-01T00:%02d:00.000000Z" % minute
        _outputs.write_report(later, report_dir, keep=1)
    assert not os.path.exists(paths["json"]) and not os.path.isdir(directory)


def test_a_stopped_run_says_why_in_the_report_for_every_host():
    why = "invalid session policy, no host was contacted: host a: dbhygiene_policy.rules[0].idle_longer_than: bad"
    report = _report_kinds.build_report(
        "enforce", ["a", "b"], ["a", "b"], {"a": None, "b": None}, True, {"stopped": why}
    )
    assert report["stopped"] == why
    assert report["failed_host_reasons"] == {"a": "stopped", "b": "stopped"}
    assert report["totals"]["failed_by_reason"] == {"stopped": 2}
    assert report["hosts"]["a"]["reason"] == f"not contacted: the run stopped before any database was contacted: {why}"
    lines = _report_kinds.render_markdown(report).splitlines()
    assert lines[0] == "# Session enforcement (check mode: nothing was changed)"
    # The message as text (escaped as every value of the report: [0] is no link).
    assert lines[2] == f"**Stopped before any database was contacted: {_report_markdown.text(why)}**"
    assert "rules\\[0\\]" in lines[2]
    assert "- **a** (stopped: the run stopped before any database was contacted)" in "\n".join(lines)
    # A run that did not stop says nothing of the kind; a host without a result is no_result, as before.
    report = _report_kinds.build_report("enforce", ["a"], [], {"a": None}, False, {})
    assert report["stopped"] is None and report["failed_host_reasons"] == {"a": "no_result"}
    assert "Stopped" not in _report_kinds.render_markdown(report)


def test_the_drain_report_says_it_stopped_too():
    report = _report("drain", False, results={"a": None}, context={"stopped": "dbhygiene_drain_grace: bad"})
    lines = _report_kinds.render_markdown(report).splitlines()
    assert lines[0] == "# Change window" and lines[2].startswith("**Stopped before any database was contacted: ")


@pytest.mark.parametrize(
    "pattern_hosts, play_hosts, targets",
    [
        (["pg1", "pg2"], ["pg1", "pg2", "web1", "localhost"], ["pg1", "pg2"]),
        (["pg2", "pg1"], ["pg1", "localhost"], ["pg1"]),
        (["pg1", "pg2"], ["web1"], []),
        ([], ["pg1", "localhost"], []),
        (["pg1"], None, []),
    ],
)
def test_the_play_works_on_the_hosts_of_its_pattern_that_limit_leaves(pattern_hosts, play_hosts, targets):
    assert _outputs.play_targets(pattern_hosts, play_hosts) == targets


def test_no_host_message_names_the_group_dbhygiene_hosts_and_the_inventory():
    task_vars = {"dbhygiene_hosts": "databasez", "ansible_inventory_sources": ["/etc/inv.yml"]}
    message = _outputs.no_hosts_message("databasez", [], task_vars)
    assert message.startswith(
        "no host to work on: dbhygiene_hosts is 'databasez', and no host of the inventory /etc/inv.yml is in it; "
        "nothing was contacted."
    )
    message = _outputs.no_hosts_message("databases", [], {"ansible_inventory_sources": ["/a.yml", "/b.ini"]})
    assert "the play targets the group 'databases' (the default; dbhygiene_hosts is not set)" in message
    assert "the inventory /a.yml, /b.ini" in message and "dbhygiene_hosts (default 'databases')" in message
    awx = {"awx_inventory_name": "Prod DBs", "ansible_inventory_sources": ["/runner/inventory/hosts"]}
    assert "the AWX inventory 'Prod DBs' (/runner/inventory/hosts)" in _outputs.no_hosts_message("databases", [], awx)
    limited = dict(task_vars, ansible_limit="web1")
    assert "its 2 host(s) in the inventory /etc/inv.yml are all outside --limit 'web1'" in _outputs.no_hosts_message(
        "databasez", ["pg1", "pg2"], limited
    )
