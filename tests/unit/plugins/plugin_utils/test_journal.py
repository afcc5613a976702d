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
import time

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import JournalError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _journal, _report_kinds, _report_model, _trail


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


def test_settling_names_the_earlier_run_even_when_this_run_journals_the_same_key(tmp_path):
    earlier = dict(_victim(1), run_id="run-1", policy="nightly")
    journal = _journal_of(tmp_path, [earlier])
    journal.ending([_victim(1)])  # still there: this run ends it again
    lines = journal.settle_lines([{"key": "1@t", "outcome": "still_present"}])
    assert [(line["settles"], line["outcome"]) for line in lines] == [("run-1", "not_ended")]
    assert [entry["run_id"] for entry in journal.pending] == ["run-2"]


def _unknown_result(**extra):
    result = {
        "failed": True,
        "msg": "0 sessions were ended on db1 (terminated 0, cancelled 0), and 2 sessions whose fate is unknown (...)",
        "policy": {"name": "sweep"},
        "summary": {"seen": 40, "unknown": 2},
        "terminated": [],
        "cancelled": [],
        "not_ended": [],
        "unknown": [dict(_victim(1), detail="lost"), dict(_victim(2), detail="lost")],
    }
    result.update(extra)
    return result


def test_unknown_victims_get_trail_lines_and_a_place_in_the_report():
    result = _unknown_result()
    lines = _trail.trail_records("db1", "postgresql", result, False, {"job_id": None, "run_id": "run-1"})
    assert [(line["id"], line["outcome"], line["detail"], line["run_id"]) for line in lines] == [
        (1, "unknown", "lost", "run-1"),
        (2, "unknown", "lost", "run-1"),
    ]
    summary = dict(_report_model.enforce_summary(result), failure="unknown_outcome")
    report = _report_kinds.build_report(
        "enforce", ["db1"], ["db1"], {"db1": dict(result, dbhygiene=summary)}, False, {"audit_log": "/x/trail"}
    )
    entry = report["hosts"]["db1"]
    assert entry["status"] == "failed" and entry["reason_code"] == "unknown_outcome" and entry["seen"] == 40
    assert report["totals"]["unknown"] == 2 and report["totals"]["sessions_seen"] == 40
    markdown = _report_kinds.render_markdown(report)
    assert "40 sessions seen, 0 ended (0 terminate, 0 cancel), 0 not ended, 2 whose fate is unknown." in markdown
    assert markdown.count("unknown: signalled, fate not learned") == 2
    failed_line = [line for line in markdown.splitlines() if line.startswith("- **db1**")][0]
    assert "2 sessions signalled whose fate is unknown" in failed_line


def test_the_report_does_not_say_in_the_audit_trail_when_it_could_not_be_written():
    result = _unknown_result(terminated=[dict(_victim(3))])
    for audit_error, said in ((None, True), ("the audit trail /x/trail could not be written: full", False)):
        summary = _report_model.enforce_summary(result)
        if audit_error:
            summary["audit_error"] = audit_error
        report = _report_kinds.build_report(
            "enforce", ["db1"], ["db1"], {"db1": dict(result, dbhygiene=summary)}, False, {"audit_log": "/x/trail"}
        )
        assert ("and in the audit trail" in _report_kinds.render_markdown(report)) is said


# ---------------------------------------------------------------- two runs on one host at once
def _run_journal(tmp_path, run_id, pending=None):
    journal = _journal_of(tmp_path, pending)
    journal.context = dict(journal.context, run_id=run_id)
    return journal


def _pending_ids(tmp_path):
    return sorted((e["run_id"], e["key"]) for e in _journal.load_pending(str(tmp_path / "audit.jsonl"), "db1"))


def test_two_runs_at_once_keep_each_others_pending_victims(tmp_path):
    # Both read the (empty) pending file at their start, then interleave.
    first, second = _run_journal(tmp_path, "run-a"), _run_journal(tmp_path, "run-b")
    first.ending([_victim(1)])
    second.ending([_victim(2)])
    assert _pending_ids(tmp_path) == [("run-a", "1@t"), ("run-b", "2@t")]
    second.finish({"terminated": [_victim(2)]}, [])  # second knows its victim's fate
    assert _pending_ids(tmp_path) == [("run-a", "1@t")]  # first's unknown one is still there
    first.finish({"unknown": [dict(_victim(1), detail="lost")]}, [])
    assert _pending_ids(tmp_path) == [("run-a", "1@t")]


def test_a_run_settling_an_earlier_one_keeps_what_a_run_beside_it_added(tmp_path):
    earlier = _run_journal(tmp_path, "run-0")
    earlier.ending([_victim(1)])
    earlier.finish({"unknown": [dict(_victim(1), detail="lost")]}, [])
    settling = _run_journal(tmp_path, "run-a", _journal.load_pending(str(tmp_path / "audit.jsonl"), "db1"))
    beside = _run_journal(tmp_path, "run-b")
    beside.ending([_victim(3)])  # the file now holds run-0's and run-b's
    assert [line["settles"] for line in settling.settle_lines([{"key": "1@t", "outcome": "terminated"}])] == ["run-0"]
    settling.finish({}, [])
    assert _pending_ids(tmp_path) == [("run-b", "3@t")]


def _hammer(audit_log, worker, rounds):
    """One process: `rounds` runs, each journaling 3 victims and leaving the last unknown."""
    for n in range(rounds):
        run_id = "w%d-r%d" % (worker, n)
        context = {"login_host": "db1", "job_id": None, "run_id": run_id}
        journal = _journal.TrailJournal(audit_log, "db1", "postgresql", context, "nightly")
        victims = [dict(_victim(worker * 10000 + n * 10 + k)) for k in range(3)]
        journal.ending(victims[:2])
        journal.ending(victims[2:])
        journal.finish({"terminated": victims[:2], "unknown": [dict(victims[2], detail="lost")]}, [])


def test_runs_in_parallel_processes_lose_no_pending_entry(tmp_path):
    import multiprocessing

    audit_log = str(tmp_path / "audit.jsonl")
    workers, rounds = 4, 25
    processes = [multiprocessing.Process(target=_hammer, args=(audit_log, w, rounds)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    expected = sorted(
        ("w%d-r%d" % (w, n), "%d@t" % (w * 10000 + n * 10 + 2)) for w in range(workers) for n in range(rounds)
    )
    assert _pending_ids(tmp_path) == expected
    assert len(_lines(audit_log)) == workers * rounds * 3


def test_a_run_does_not_settle_the_victims_of_a_run_still_at_work(tmp_path):
    audit_log = str(tmp_path / "audit.jsonl")
    working = _run_journal(tmp_path, "run-a")
    working.ending([_victim(1)])  # signalling now: its victim pending, its run lock held
    killed = _run_journal(tmp_path, "run-k")
    killed.ending([_victim(2)])
    killed.holding = False  # as after a kill: the kernel dropped the lock with the process
    _journal.release_run(audit_log, "run-k")
    pending = _journal.load_pending(audit_log, "db1")
    assert sorted(e["run_id"] for e in pending) == ["run-a", "run-k"]
    assert [e["run_id"] for e in _journal.settleable(audit_log, pending)] == ["run-k"]
    working.finish({"unknown": [dict(_victim(1), detail="lost")]}, [])  # finished: its lock released
    assert sorted(e["run_id"] for e in _journal.settleable(audit_log, _journal.load_pending(audit_log, "db1"))) == [
        "run-a",
        "run-k",
    ]


def _hold_until_killed(audit_log, run_id, ready):
    journal = _journal.TrailJournal(audit_log, "db1", "postgresql", {"run_id": run_id}, "p")
    journal.ending([_victim(5)])
    ready.set()
    time.sleep(120)  # killed long before


def test_the_run_lock_of_another_process_is_seen_and_a_killed_one_is_not(tmp_path):
    import multiprocessing

    audit_log = str(tmp_path / "audit.jsonl")
    ready = multiprocessing.Event()
    process = multiprocessing.Process(target=_hold_until_killed, args=(audit_log, "run-p", ready))
    process.start()
    try:
        assert ready.wait(60)
        assert _journal.run_in_progress(audit_log, "run-p")
        process.kill()  # SIGKILL: no finish, the lock goes with the process
        process.join(60)
        assert not _journal.run_in_progress(audit_log, "run-p")
        assert [e["run_id"] for e in _journal.load_pending(audit_log, "db1")] == ["run-p"]  # left for the next run
    finally:
        if process.is_alive():
            process.kill()
        process.join(60)
