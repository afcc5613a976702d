# -*- coding: utf-8 -*-
"""The audit trail (_trail.py): credential redaction, records, appends under a lock, rotation."""

import json
import multiprocessing
import os
import stat

import pytest
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _trail
from test_report_model import _session


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
    redacted = _trail.redact_query(query)
    assert secret not in redacted
    assert "********" in redacted


def test_redact_query_truncates_and_keeps_plain_statements():
    assert _trail.redact_query("SELECT 1") == "SELECT 1"
    long = _trail.redact_query("SELECT " + "x" * 500, limit=50)
    assert len(long) == 50 and long.endswith("...")
    assert _trail.redact_query(None) is None


def test_trail_records_outcomes_and_check_mode():
    result = {
        "policy": {"name": "sweep"},
        "terminated": [dict(_session(1), rule="ghost", action="terminate")],
        "cancelled": [dict(_session(2, state="active"), rule="runaway", action="cancel")],
        "not_ended": [
            dict(_session(3), rule="ghost", action=None, reason="protected", detail="protect.users"),
            dict(_session(4), rule="ghost", action="terminate", reason="state_changed", detail="woke up"),
        ],
    }
    context = {"login_host": "10.1.1.1", "job_id": 42}
    real = _trail.trail_records("db1", "postgresql", result, False, context)
    assert [(r["id"], r["outcome"]) for r in real] == [(2, "cancelled"), (1, "terminated"), (4, "not_ended")]
    assert all(r["check_mode"] is False and r["job_id"] == 42 and r["policy"] == "sweep" for r in real)
    assert real[2]["reason"] == "state_changed"
    dry = _trail.trail_records("db1", "postgresql", result, True, context)
    assert [r["outcome"] for r in dry] == ["would_cancel", "would_terminate", "not_ended"]
    assert all(r["check_mode"] is True for r in dry)
    assert {"time", "host", "engine", "rule", "action", "user", "database", "application", "client_addr"} <= set(
        real[0]
    )


def _append_many(path, worker):
    for index in range(50):
        _trail.append_lines(path, [{"worker": worker, "index": index, "pad": "x" * 2000}] * 3)


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
    _trail.append_lines(path, [{"a": 1}])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


# ---------------------------------------------------------------- trail rotation
def test_trail_survives_a_rename_between_two_runs(tmp_path):
    """logrotate without copytruncate renames the file; the next run's lines go to a new one."""
    path = str(tmp_path / "audit.jsonl")
    _trail.append_lines(path, [{"run": 1, "n": 0}, {"run": 1, "n": 1}])
    os.rename(path, path + ".1")
    _trail.append_lines(path, [{"run": 2, "n": 0}])
    with open(path + ".1") as handle:
        assert [json.loads(line)["run"] for line in handle] == [1, 1]
    with open(path) as handle:
        assert [json.loads(line)["run"] for line in handle] == [2]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_trail_renamed_between_open_and_lock_is_reopened(tmp_path, monkeypatch):
    path = str(tmp_path / "audit.jsonl")
    _trail.append_lines(path, [{"run": 1}])
    real_flock = _trail.fcntl.flock
    calls = []

    def rotating_flock(fd, operation):
        if operation == _trail.fcntl.LOCK_EX and not calls:
            calls.append(fd)
            os.rename(path, path + ".1")  # logrotate strikes right after our open
        return real_flock(fd, operation)

    monkeypatch.setattr(_trail.fcntl, "flock", rotating_flock)
    _trail.append_lines(path, [{"run": 2}])
    with open(path + ".1") as handle:
        assert [json.loads(line)["run"] for line in handle] == [1]
    with open(path) as handle:
        assert [json.loads(line)["run"] for line in handle] == [2]
