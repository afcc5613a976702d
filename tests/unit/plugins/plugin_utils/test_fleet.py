# -*- coding: utf-8 -*-
"""The roles' controller helpers: audit trail, thresholds, per-host figures, fleet report."""

import json
import multiprocessing
import os
import stat

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _fleet


def _session(session_id, **fields):
    base = {
        "id": session_id,
        "key": "%d@t0" % session_id,
        "user": "app",
        "database": "appdb",
        "application": "web",
        "client_addr": "10.0.0.5",
        "state": "idle",
        "idle_seconds": 100.0,
        "query_seconds": None,
        "transaction_seconds": None,
        "query": "SELECT 1",
        "superuser": False,
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    "query, secret",
    [
        ("ALTER USER bob PASSWORD 'hunter2'", "hunter2"),
        ("alter role bob with password  'it''s'", "it''s"),
        ("CREATE USER x IDENTIFIED BY 's3cr3t'", "s3cr3t"),
        ("SET PASSWORD FOR x = PASSWORD('pw1')", "pw1"),
        ("SET PASSWORD = 'pw2'", "pw2"),
        ("ALTER USER x IDENTIFIED WITH mysql_native_password BY 'pw3'", "pw3"),
    ],
)
def test_redact_query_masks_credentials(query, secret):
    redacted = _fleet.redact_query(query)
    assert secret not in redacted
    assert "********" in redacted


def test_redact_query_truncates_and_keeps_plain_statements():
    assert _fleet.redact_query("SELECT 1") == "SELECT 1"
    long = _fleet.redact_query("SELECT " + "x" * 500, limit=50)
    assert len(long) == 50 and long.endswith("...")
    assert _fleet.redact_query(None) is None


def test_trail_records_outcomes_and_check_mode():
    result = {
        "policy": {"name": "sweep"},
        "terminated": [dict(_session(1), rule="ghost", action="terminate")],
        "cancelled": [dict(_session(2, state="active"), rule="runaway", action="cancel")],
        "skipped": [
            dict(_session(3), rule="ghost", action=None, reason="protected", detail="protect.users"),
            dict(_session(4), rule="ghost", action="terminate", reason="state_changed", detail="woke up"),
        ],
    }
    context = {"login_host": "10.1.1.1", "job_id": 42}
    real = _fleet.trail_records("db1", "postgresql", result, False, context)
    assert [(r["id"], r["outcome"]) for r in real] == [(2, "cancelled"), (1, "terminated"), (4, "skipped")]
    assert all(r["check_mode"] is False and r["job_id"] == 42 and r["policy"] == "sweep" for r in real)
    assert real[2]["reason"] == "state_changed"
    dry = _fleet.trail_records("db1", "postgresql", result, True, context)
    assert [r["outcome"] for r in dry] == ["would_cancel", "would_terminate", "skipped"]
    assert all(r["check_mode"] is True for r in dry)
    assert {"time", "host", "engine", "rule", "action", "user", "database", "application", "client_addr"} <= set(
        real[0]
    )


def _append_many(path, worker):
    for index in range(50):
        _fleet.append_lines(path, [{"worker": worker, "index": index, "pad": "x" * 2000}] * 3)


def test_append_lines_mode_0600_and_no_interleaving(tmp_path):
    path = str(tmp_path / "sub" / "trail.jsonl")
    workers = [multiprocessing.Process(target=_append_many, args=(path, n)) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as handle:
        lines = [json.loads(line) for line in handle]
    assert len(lines) == 6 * 50 * 3
    # One write per call: the three lines of a call are adjacent.
    for start in range(0, len(lines), 3):
        assert len({(line["worker"], line["index"]) for line in lines[start : start + 3]}) == 1


def test_append_lines_tightens_an_existing_world_readable_file(tmp_path):
    path = str(tmp_path / "trail.jsonl")
    with open(path, "w"):
        pass
    os.chmod(path, 0o644)
    _fleet.append_lines(path, [{"a": 1}])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"max_session": 3}, "dbhygiene_audit_thresholds.max_session"),
        ({"max_connection_use": 80}, "dbhygiene_audit_thresholds.max_connection_use"),
        ({"max_oldest_transaction": "5 min"}, "dbhygiene_audit_thresholds.max_oldest_transaction"),
        ({"max_sessions": -1}, "dbhygiene_audit_thresholds.max_sessions"),
        ([1], "dbhygiene_audit_thresholds"),
    ],
)
def test_parse_thresholds_rejects(raw, field):
    with pytest.raises(PolicyError) as error:
        _fleet.parse_thresholds(raw)
    assert error.value.field == field


def test_audit_summary_counts_and_breaches():
    sessions = [
        _session(1),
        _session(2, state="idle_in_transaction", idle_seconds=400.0, transaction_seconds=500.0, user="etl"),
        _session(3, state="active", query_seconds=5.0, application=None),
    ]
    plan = {
        "policy": "p",
        "victims": [{"session": sessions[1], "rule": "stuck", "action": "terminate"}],
        "skipped": [],
        "limit_error": None,
    }
    thresholds = _fleet.parse_thresholds(
        {"max_oldest_transaction": "5m", "max_connection_use": 0.5, "max_would_end": 0}
    )
    summary, breaches = _fleet.audit_summary(sessions, {"max_connections": 10}, plan, thresholds)
    assert summary["by_state"] == {"active": 1, "idle": 1, "idle_in_transaction": 1}
    assert summary["by_user"] == {"app": 2, "etl": 1}
    assert summary["by_application"] == {"(none)": 1, "web": 2}
    assert summary["oldest_transaction"]["id"] == 2 and summary["oldest_transaction"]["seconds"] == 500.0
    assert summary["connection_use"] == 0.4  # 3 sessions + our own of 10
    assert [entry["id"] for entry in summary["would_end"]] == [2]
    assert len(breaches) == 2
    assert breaches[0].startswith("max_oldest_transaction: 500.0s")
    assert breaches[1].startswith("max_would_end: 1")


def test_build_report_names_failed_and_missing_hosts():
    ok = {"changed": True, "dbhygiene": {"engine": "mysql", "seen": 4, "terminated": [{"id": 1, "key": "k"}]}}
    failed = {"failed": True, "msg": "cannot connect to 10.0.0.9", "dbhygiene": {"engine": "postgresql"}}
    unreachable = {"unreachable": True, "msg": "ssh: timeout"}
    report = _fleet.build_report(
        "enforce",
        ["a", "b", "c", "d"],
        ["a"],
        {"a": ok, "b": failed, "c": unreachable, "d": None},
        False,
        {"policy": "p"},
    )
    assert report["totals"]["ok"] == 1 and report["totals"]["failed"] == 3
    assert report["totals"]["ended"] == 1 and report["totals"]["sessions_seen"] == 4
    assert report["failed_hosts"]["b"] == "cannot connect to 10.0.0.9"
    assert report["hosts"]["c"]["status"] == "unreachable"
    assert "before the task ran" in report["failed_hosts"]["d"]
    markdown = _fleet.render_markdown(report)
    assert "## Hosts that failed" in markdown and "**b**: cannot connect" in markdown


def test_write_report_files_are_private(tmp_path):
    report = _fleet.build_report("audit", ["a"], ["a"], {"a": {"dbhygiene": {"sessions": 2}}}, True, {})
    paths, markdown = _fleet.write_report(report, str(tmp_path / "r"))
    for path in list(paths.values()) + [str(tmp_path / "r" / "audit-latest.md")]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "check mode" in markdown
    assert json.load(open(paths["json"]))["totals"]["hosts"] == 1
