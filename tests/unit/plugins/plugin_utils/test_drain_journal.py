# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain's write-ahead trail (plugin_utils/_journal.py DrainJournal, settle_change;
module_utils/_drain.py Progress.sending): each change of rights journaled before its
statement, and what a later run settles from the server's record. The real servers and a
controller killed mid-drain: tests/integration/test_drain_journal_kill.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _drain, _drain_request, _drain_rights
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _change_window, _journal

LOCK = {"change": "locked", "account": "'app'@'%'", "right": "ACCOUNT LOCK", "grantor": None, "database": "billing",
        "databases": ["billing"], "reason": "holds privileges on billing"}  # fmt: skip
PUBLIC = {"change": "revoked", "account": "PUBLIC", "right": "SELECT ON `billing`.*", "grantor": None,
          "database": "billing", "databases": ["billing"], "reason": "PUBLIC's grant on billing"}  # fmt: skip
REVOKE = {"change": "revoked", "account": "app", "right": "CONNECT", "grantor": "postgres", "database": "billing",
          "databases": ["billing"], "reason": "holds CONNECT on billing"}  # fmt: skip


def _journal_at(tmp_path, run_id="run-1", engine="mysql", pending=None):
    context = {"login_host": "db1", "job_id": None, "state": "drained", "run_id": run_id}
    return _journal.DrainJournal(str(tmp_path / "audit.jsonl"), "db1", engine, context, pending)


def _lines(tmp_path):
    with open(tmp_path / "audit.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_each_change_is_in_the_trail_and_the_pending_file_before_it_is_sent(tmp_path):
    journal = _journal_at(tmp_path)
    sent = []

    class Rights(object):
        def lock(self, progress, entries):
            progress.sending(entries)
            sent.append((len(_lines(tmp_path)), len(_journal.load_pending(journal.audit_log, "db1", "drain"))))

    Rights().lock(_drain_rights.Progress("db1", journal), [LOCK, REVOKE])
    assert sent == [(2, 2)]  # both lines on disk (and pending) when the statement went out
    lines = _lines(tmp_path)
    assert [(line["outcome"], line["action"], line["account"]) for line in lines] == [
        ("changing", "lock", "'app'@'%'"),
        ("changing", "revoke", "app"),
    ]
    assert all(
        line["run_id"] == "run-1" and line["key"] == _journal.change_key(c) for line, c in zip(lines, [LOCK, REVOKE])
    )


def test_a_trail_that_cannot_be_written_fails_before_the_change(tmp_path, monkeypatch):
    def full(path, lines, sync=False):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(_journal, "append_lines", full)
    progress = _drain_rights.Progress("db1", _journal_at(tmp_path))
    progress.made([REVOKE])  # a change made before: the error lists it
    with pytest.raises(_drain_rights.RightsError) as caught:
        progress.sending([LOCK])
    assert "could not be written" in str(caught.value) and "none of these 1 changes" in str(caught.value)
    assert caught.value.changes == [dict(REVOKE, status="done")]  # the lock is not among them: never sent
    assert not os.path.exists(_journal.pending_path(str(tmp_path / "audit.jsonl"), "db1", "drain"))


def test_without_a_journal_nothing_is_journaled():
    _drain_rights.Progress("db1").sending([LOCK])  # no error, nothing to write


def test_a_run_that_died_leaves_unknown_lines_and_keeps_them_pending(tmp_path):
    journal = _journal_at(tmp_path)
    journal.changing([LOCK, REVOKE])
    lines = journal.outcome_lines({"failed": True, "msg": "worker died"})
    assert [(line["outcome"], line["detail"]) for line in lines] == [
        ("unknown", "no outcome came back: worker died")
    ] * 2
    journal.finish({"failed": True, "msg": "worker died"})
    assert len(_journal.load_pending(journal.audit_log, "db1", "drain")) == 2


def test_a_result_with_its_changes_settles_this_run_and_names_what_was_never_sent(tmp_path):
    journal = _journal_at(tmp_path)
    journal.changing([LOCK, REVOKE])
    result = {"failed": True, "msg": "lost", "changes": [dict(LOCK, status="unknown")]}
    lines = journal.outcome_lines(result)
    assert [(line["outcome"], line["account"]) for line in lines] == [("not_changed", "app")]
    journal.finish(result)
    # the lock in flight stays pending (the next run settles it); the revoke never sent is known
    assert [entry["account"] for entry in _journal.load_pending(journal.audit_log, "db1", "drain")] == ["'app'@'%'"]
    journal = _journal_at(tmp_path, run_id="run-2", pending=_journal.load_pending(journal.audit_log, "db1", "drain"))
    journal.finish({"changes": []})
    assert len(_journal.load_pending(journal.audit_log, "db1", "drain")) == 1  # not this run's: not dropped by it


def _record(database, *changes, **extra):
    return dict({"database": database, "complete": True, "changes": list(changes)}, **extra)


@pytest.mark.parametrize(
    "change, record, engine, outcome",
    [
        (REVOKE, {"billing": _record("billing", REVOKE)}, "postgresql", "revoked"),
        (REVOKE, {}, "postgresql", "not_changed"),
        (LOCK, {"billing": _record("billing", dict(LOCK, status="locked"))}, "mysql", "locked"),
        (LOCK, {"billing": _record("billing", dict(LOCK, status="pending"))}, "mysql", "unknown"),
        # MariaDB's record read with what the server holds now (`now`): a pending lock settles exactly
        (LOCK, {"billing": _record("billing", dict(LOCK, status="pending", now="locked"))}, "mysql", "locked"),
        (LOCK, {"billing": _record("billing", dict(LOCK, status="pending", now="unlocked"))}, "mysql", "not_changed"),
        (LOCK, {"billing": _record("billing", dict(LOCK, status="pending", now="dropped"))}, "mysql", "not_changed"),
        (PUBLIC, {"billing": _record("billing", dict(PUBLIC, status="pending", now="revoked"))}, "mysql", "revoked"),
        (
            PUBLIC,
            {"billing": _record("billing", dict(PUBLIC, status="pending", now="granted"))},
            "mysql",
            "not_changed",
        ),
        # an open that stopped before it forgot the record: the account's lock says whether it was undone
        (
            dict(LOCK, change="unlocked"),
            {"billing": _record("billing", dict(LOCK, status="locked", now="unlocked"))},
            "mysql",
            "unlocked",
        ),
        (
            dict(LOCK, change="unlocked"),
            {"billing": _record("billing", dict(LOCK, status="locked", now="locked"))},
            "mysql",
            "not_changed",
        ),
        (
            dict(PUBLIC, change="granted"),
            {"billing": _record("billing", dict(PUBLIC, status="revoked", now="granted"))},
            "mysql",
            "granted",
        ),
        (
            LOCK,
            {"billing": _record("billing", dict(LOCK, account="'other'@'%'", status="locked"))},
            "mysql",
            "not_changed",
        ),
        (dict(LOCK, change="unlocked"), {}, "mysql", "unlocked"),
        (
            dict(LOCK, change="unlocked"),
            {"billing": _record("billing", dict(LOCK, status="locked"))},
            "mysql",
            "unknown",
        ),
        (dict(REVOKE, change="granted"), {"billing": _record("billing", REVOKE)}, "postgresql", "not_changed"),
        (dict(REVOKE, change="granted"), {}, "postgresql", "granted"),
        # a drain's grant to allow_users: settled as the drain's changes are, from the record
        (dict(REVOKE, change="granted", drain_state="drained"), {}, "postgresql", "not_changed"),
        (
            dict(REVOKE, change="granted", drain_state="drained"),
            {"billing": _record("billing", REVOKE, dict(REVOKE, change="granted"))},
            "postgresql",
            "granted",
        ),
    ],
)
def test_the_servers_record_settles_a_change(change, record, engine, outcome):
    assert _journal.settle_change(change, record, engine)[0] == outcome


def test_a_record_kept_in_another_database_settles_nothing_yet():
    elsewhere = {"billing": {"database": "billing", "record_database": "postgres", "complete": None, "changes": []}}
    assert _journal.settle_change(REVOKE, elsewhere, "postgresql") is None


def test_the_next_run_settles_the_earlier_runs_changes_once(tmp_path):
    first = _journal_at(tmp_path, engine="postgresql")
    first.changing([REVOKE])  # then the controller was killed
    pending = _journal.load_pending(first.audit_log, "db1", "drain")
    second = _journal_at(tmp_path, run_id="run-2", engine="postgresql", pending=pending)
    assert second.settle_lines(None) == []  # the module failed before reading the record: nothing settled
    lines = second.settle_lines([_record("billing", REVOKE)])
    assert [(line["outcome"], line["settles"], line["run_id"], line["account"]) for line in lines] == [
        ("revoked", "run-1", "run-2", "app")
    ]
    assert second.settle_lines([_record("billing", REVOKE)]) == []
    second.finish({"changes": []})
    assert not os.path.exists(_journal.pending_path(first.audit_log, "db1", "drain"))


def test_the_drain_pending_file_cannot_be_a_hosts():
    assert _journal.pending_path("/t/a.jsonl", "drain", "drain") != _journal.pending_path("/t/a.jsonl", "drain")
    assert _journal.pending_path("/t/a.jsonl", "x", "drain") == "/t/a.jsonl.pending/drain/x.json"


def test_a_rights_failure_without_a_change_made_is_a_plain_error():
    """run_drain turns a RightsError with no change made (a journal that failed first) into
    a SessionError: the module fails saying nothing was changed."""

    class Rights(object):
        def record(self):
            return []

        record_before = record

        def drain(self, request, check_mode):
            raise _drain_rights.Progress("db1").failed(SessionError("the audit trail /x could not be written"))

    class Driver(object):
        target = "db1"

    request = _drain_request.parse_request(
        {"databases": ["billing"], "state": "drained", "wait_timeout": 5, "host_timeout": 60}
    )
    with pytest.raises(SessionError, match="could not be written"):
        _drain.run_drain(Driver(), Rights(), request, check_mode=True)


SESSION = {"id": 7, "key": "7@t0", "user": "app", "database": "billing", "state": "idle", "rule": "drain",
           "action": "cancel_then_terminate"}  # fmt: skip
OTHER = dict(SESSION, id=8, key="8@t0")


def test_the_sessions_a_drain_ends_are_journaled_in_the_sweeps_pending_file(tmp_path):
    journal = _journal_at(tmp_path)
    journal.ending([SESSION, OTHER])  # the runner's hook: the drain's _Closing calls it before the signals
    lines = _lines(tmp_path)
    assert [(line["outcome"], line["id"], line["policy"], line["drain_state"]) for line in lines] == [
        ("ending", 7, "drain", "drained"),
        ("ending", 8, "drain", "drained"),
    ]
    assert all(line["run_id"] == "run-1" and line["action"] == "cancel_then_terminate" for line in lines)
    # the enforce role's pending file (one file per host for every session whose fate is unknown)
    pending = _journal.load_pending(journal.audit_log, "db1")
    assert [entry["key"] for entry in pending] == ["7@t0", "8@t0"]
    assert _journal.load_pending(journal.audit_log, "db1", "drain") == []


def test_a_journaled_session_without_an_outcome_is_unknown_when_the_run_failed_and_gone_when_it_finished(tmp_path):
    journal = _journal_at(tmp_path)
    journal.ending([SESSION, OTHER])
    finished = {"terminated": [SESSION], "cancelled": [], "not_ended": []}
    journal.sessions.account(finished, "db1:5432")
    assert "failed" not in finished and [(e["key"], e["reason"]) for e in finished["not_ended"]] == [("8@t0", "gone")]
    failed = {"failed": True, "msg": "the connection is closed", "terminated": [SESSION], "not_ended": []}
    journal.sessions.account(failed, "db1:5432")
    assert [e["key"] for e in failed["unknown"]] == ["8@t0"]
    assert failed["msg"].startswith("1 sessions whose fate is unknown on db1:5432 (journaled as ending")
    assert failed["msg"].endswith("the connection is closed")
    died = {"failed": True, "msg": "worker died"}  # no result of the module at all
    journal.sessions.account(died, "db1:5432")
    assert [e["key"] for e in died["unknown"]] == ["7@t0", "8@t0"]
    # the trail gets an `unknown` line each, and they stay pending for the next run
    lines = _change_window.trail_records("db1", "mysql", dict(failed, state="drained"), False, journal.context)
    assert [(line["outcome"], line["id"]) for line in lines] == [("terminated", 7), ("unknown", 8)]
    journal.sessions.finish(failed, [])
    assert [entry["key"] for entry in _journal.load_pending(journal.audit_log, "db1")] == ["8@t0"]


def test_the_next_run_a_sweep_or_a_drain_settles_the_sessions_a_drain_left(tmp_path):
    journal = _journal_at(tmp_path)
    journal.ending([SESSION, OTHER])
    died = {"failed": True, "msg": "killed"}
    journal.sessions.account(died, "db1")
    journal.sessions.finish(died, [])  # nothing came back: both stay, unknown
    pending = _journal.load_pending(journal.audit_log, "db1")
    settled = [{"key": "7@t0", "outcome": "terminated"}, {"key": "8@t0", "outcome": "still_present"}]
    context = {"login_host": "db1", "job_id": None, "run_id": "run-2"}
    for later in (
        _journal.TrailJournal(journal.audit_log, "db1", "mysql", context, "nightly", pending),  # the enforce role
        _journal.DrainSessions(journal.audit_log, "db1", "mysql", dict(context, state="open"), pending),
    ):
        lines = later.settle_lines(settled)
        assert [(line["id"], line["outcome"], line["settles"], line["policy"]) for line in lines] == [
            (7, "terminated", "run-1", "drain"),
            (8, "not_ended", "run-1", "drain"),
        ]
        assert lines[1]["reason"] == "still_present" and later.pending == []
    later.finish({}, [])
    assert not os.path.exists(_journal.pending_path(journal.audit_log, "db1"))


def test_a_drain_settling_an_earlier_run_keeps_what_a_drain_beside_it_journaled(tmp_path):
    first = _journal_at(tmp_path, engine="postgresql")
    first.changing([REVOKE])  # then the controller was killed
    pending = _journal.load_pending(first.audit_log, "db1", "drain")
    second = _journal_at(tmp_path, run_id="run-2", engine="postgresql", pending=pending)
    beside = _journal_at(tmp_path, run_id="run-3")
    beside.changing([LOCK])  # another drain on the host, journaled after second read the file
    assert [line["settles"] for line in second.settle_lines([_record("billing", REVOKE)])] == ["run-1"]
    second.finish({"changes": []})
    assert [(e["run_id"], e["key"]) for e in _journal.load_pending(first.audit_log, "db1", "drain")] == [
        ("run-3", _journal.change_key(LOCK))
    ]
