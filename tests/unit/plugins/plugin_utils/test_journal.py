# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The write-ahead trail's files: the append that never leaves a partial line, and the
journal's pending file (plugin_utils/_trail.py append_lines, plugin_utils/_journal.py).
The real-server faults are in tests/integration/test_trail_faults.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import JournalError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _journal, _trail


def _lines(path):
    with open(path, "rb") as handle:
        data = handle.read()
    assert data.endswith(b"\n") or not data
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("tail", [b'{"broken": tr', b"x" * 10000, b"{"])
def test_a_partial_last_line_is_cut_before_the_next_append(tmp_path, tail):
    path = str(tmp_path / "audit.jsonl")
    _trail.append_lines(path, [{"n": 1}, {"n": 2}])
    with open(path, "ab") as handle:
        handle.write(tail)
    _trail.append_lines(path, [{"n": 3}])
    assert _lines(path) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_a_file_that_is_only_a_partial_line_is_emptied_first(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    with open(path, "wb") as handle:
        handle.write(b'{"half": ')
    _trail.append_lines(path, [{"n": 1}], sync=True)
    assert _lines(path) == [{"n": 1}]


def test_a_short_write_is_truncated_back_and_names_the_path(tmp_path, monkeypatch):
    path = str(tmp_path / "audit.jsonl")
    _trail.append_lines(path, [{"n": 1}])
    size = os.path.getsize(path)
    real_write = os.write

    def short(fd, data):
        return real_write(fd, bytes(data[:7]))  # what a file system with 7 bytes left does

    monkeypatch.setattr(_trail.os, "write", short)
    with pytest.raises(OSError) as caught:
        _trail.append_lines(path, [{"n": 2, "pad": "x" * 100}])
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == path
    assert os.path.getsize(path) == size
    assert _lines(path) == [{"n": 1}]


def test_a_failed_write_is_truncated_back(tmp_path, monkeypatch):
    path = str(tmp_path / "audit.jsonl")
    _trail.append_lines(path, [{"n": 1}])

    def fails(fd, data):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_trail.os, "write", fails)
    with pytest.raises(OSError) as caught:
        _trail.append_lines(path, [{"n": 2}])
    monkeypatch.undo()
    assert "Input/output error" in str(caught.value) and path in str(caught.value)
    assert _lines(path) == [{"n": 1}]


def _journal_of(tmp_path, pending=None):
    context = {"login_host": "db1", "job_id": None, "run_id": "run-2"}
    return _journal.TrailJournal(str(tmp_path / "audit.jsonl"), "db1", "postgresql", context, "nightly", pending)


def _victim(pid):
    return {"id": pid, "key": "%d@t" % pid, "user": "app", "state": "idle", "rule": "idle", "action": "terminate"}


def test_the_journal_writes_ending_lines_and_the_pending_file(tmp_path):
    journal = _journal_of(tmp_path)
    journal.ending([_victim(1), _victim(2)])
    lines = _lines(journal.audit_log)
    assert [(line["id"], line["outcome"], line["run_id"], line["policy"]) for line in lines] == [
        (1, "ending", "run-2", "nightly"),
        (2, "ending", "run-2", "nightly"),
    ]
    assert [entry["key"] for entry in _journal.load_pending(journal.audit_log, "db1")] == ["1@t", "2@t"]
    # Victim 1 ended, victim 2's fate unknown: only 2 stays pending.
    result = {"terminated": [_victim(1)], "unknown": [dict(_victim(2), detail="lost")]}
    assert journal.unaccounted(result) == []
    journal.finish(result, [])
    assert [entry["key"] for entry in _journal.load_pending(journal.audit_log, "db1")] == ["2@t"]


def test_a_victim_with_no_outcome_in_the_result_is_unaccounted(tmp_path):
    journal = _journal_of(tmp_path)
    journal.ending([_victim(1)])
    missing = journal.unaccounted({"failed": True, "msg": "the module died"})
    assert [(entry["id"], entry["detail"]) for entry in missing] == [(1, "no outcome came back: the module died")]


def test_the_next_run_settles_each_pending_victim_with_a_line(tmp_path):
    first = _journal_of(tmp_path)
    first.context = dict(first.context, run_id="run-1")
    first.ending([_victim(1), _victim(2)])
    pending = _journal.load_pending(first.audit_log, "db1")
    second = _journal_of(tmp_path, pending)
    lines = second.settle_lines(
        [{"key": "1@t", "outcome": "terminated"}, {"key": "2@t", "outcome": "still_present", "session": _victim(2)}]
    )
    assert [(line["id"], line["outcome"], line.get("reason"), line["settles"], line["run_id"]) for line in lines] == [
        (1, "terminated", None, "run-1", "run-2"),
        (2, "not_ended", "still_present", "run-1", "run-2"),
    ]
    assert lines[0]["detail"].startswith("settled")
    second.finish({}, [])
    assert not os.path.exists(_journal.pending_path(first.audit_log, "db1"))


def test_an_unwritable_trail_is_a_journal_error_naming_path_and_error(tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    journal = _journal.TrailJournal(str(directory / "audit.jsonl"), "db1", "postgresql", {}, "p")
    os.chmod(str(directory), 0o500)
    try:
        if os.access(str(directory), os.W_OK):
            pytest.skip("running as root: a mode does not stop writes (the read-only mount test covers it)")
        with pytest.raises(JournalError) as caught:
            journal.ending([_victim(1)])
    finally:
        os.chmod(str(directory), 0o700)
    assert str(directory / "audit.jsonl") in str(caught.value) and "Permission denied" in str(caught.value)
    assert "nothing of this batch (1 sessions) was signalled" in str(caught.value)
