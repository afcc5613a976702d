# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The session part of a drain (module_utils/_drain_closing.py): every target ended whatever its
state, again until none is left; what a failure keeps; each session journaled before its first
signal; a gated run on the host ends only what the trail holds."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils import (
    _deadline,
    _drain_closing,
    _drain_request,
    _drain_rights,
    _errors,
)
from test_drain import FakeClock, FakeServer, close, entry, options


def test_the_drain_ends_every_target_whatever_its_state_and_again_until_none_is_left():
    flipper = entry("1", state="active", state_since="t0")
    idle = entry("2")
    late = entry("3", database=None)  # a locked login's session on no database, seen later
    other = entry("4", user="clerk", database="other")  # not a target
    allowed = entry("5", user="root", superuser=True)
    server = FakeServer(
        [
            [flipper, idle, other, allowed],
            [dict(flipper, state="idle", state_since="t1"), other, allowed],  # grace: the cancel took
            [dict(flipper, state="active", state_since="t2"), other, allowed, late],  # it flipped back; one more
        ]
    )
    result = close(server, users=["app"])
    assert not result.get("failed"), result
    assert ("1", "cancel") in server.ended and ("1", "terminate") in server.ended  # no idle proof
    assert ("2", "terminate") in server.ended and ("3", "terminate") in server.ended
    assert [k for k, _m in server.ended if k in ("4", "5")] == []
    assert sorted(e["key"] for e in result["terminated"]) == ["1", "2", "3"]
    assert [e["key"] for e in result["cancelled"]] == ["1"]
    assert [(e["key"], e["reason"]) for e in result["not_ended"]] == [("5", "protected")]
    assert result["summary"]["rounds"] >= 2


def test_a_session_still_there_at_the_end_fails_the_drain_naming_it():
    server = FakeServer([[entry("7", user="app", database="billing")]], stubborn=["7"])
    result = close(server, wait_timeout=1)
    assert result["failed"] and "1 sessions still on the drained databases of db-1" in result["msg"]
    assert "7 (app@billing)" in result["msg"]
    assert [(e["key"], e["reason"]) for e in result["not_ended"]] == [("7", "still_present")]
    assert result["terminated"] == []  # not counted as ended: it is still there
    assert 2 < len(server.ended) <= _drain_closing.CLOSE_ROUNDS + 1  # terminated again each round, bounded


def test_a_failure_while_closing_keeps_what_was_ended():
    server = FakeServer([[entry("1")]])

    def broken():
        raise _errors.SessionError("the connection is closed")

    original = server.list_sessions
    calls = []

    def listing():
        calls.append(1)
        if len(calls) > 1:
            broken()
        return original()

    server.list_sessions = listing
    result = close(server)
    assert result["failed"] and "the connection is closed" in result["msg"]
    assert [e["key"] for e in result["terminated"]] == ["1"]


def test_a_session_that_left_before_its_kill_is_no_failure():
    server = FakeServer([[entry("1"), entry("2")]])
    original = server.end_session

    def end_session(session, mode):
        if session["key"] == "1":
            server.gone.add("1")  # it left between the listing and the KILL: unknown thread
            raise _errors.SessionError("cannot terminate thread 1: (1094, 'Unknown thread id: 1')")
        return original(session, mode)

    server.end_session = end_session
    result = close(server)
    assert not result.get("failed"), result
    assert [e["key"] for e in result["terminated"]] == ["2"]
    stubborn = FakeServer([[entry("3")]], stubborn=["3"])

    def denied(session, mode):
        raise _errors.SessionError("access denied")

    stubborn.end_session = denied
    result = close(stubborn, wait_timeout=0.5)
    assert result["failed"] and "the last signal that failed: access denied" in result["msg"]


class RecordingJournal(object):
    """The runner's Journal hook: each `ending` batch with how many signals had gone out when it came."""

    def __init__(self, server, fail=None):
        self.server = server
        self.fail = fail
        self.batches = []

    def ending(self, entries):
        if self.fail:
            raise self.fail
        self.batches.append((len(self.server.ended), [e["key"] for e in entries], entries))


def _journaled_close(server, journal, users=()):
    request = _drain_request.parse_request(options(grace=1, wait_timeout=2, host_timeout=60))
    deadline = _deadline.Deadline(60, clock=FakeClock())
    return _drain_closing.end_sessions(server, server, request, users, False, deadline, journal)


def test_each_session_is_journaled_ending_before_its_first_signal_and_once():
    flipper = entry("1", state="active", state_since="t0")
    late = entry("3", database=None)
    server = FakeServer(
        [
            [flipper, entry("2")],
            [dict(flipper, state="idle", state_since="t1")],
            [dict(flipper, state="active", state_since="t2"), late],  # back, and one more of a locked login
        ]
    )
    journal = RecordingJournal(server)
    result = _journaled_close(server, journal, users=["app"])
    assert not result.get("failed"), result
    # the first round's targets in one write before any signal; the late one before its terminate
    assert [(sent, keys) for sent, keys, _e in journal.batches][0] == (0, ["1", "2"])
    assert [keys for _s, keys, _e in journal.batches] == [["1", "2"], ["3"]]  # each session once
    sent_before_late = journal.batches[1][0]
    assert server.ended.index(("3", "terminate")) >= sent_before_late
    assert all(e["rule"] and e["action"] == "cancel_then_terminate" for _s, _k, es in journal.batches for e in es)


def test_a_journal_that_cannot_be_written_signals_nothing():
    server = FakeServer([[entry("1"), entry("2", state="active")]])
    result = _journaled_close(server, RecordingJournal(server, OSError(28, "No space left on device", "/t")))
    assert server.ended == []
    assert result["failed"] and "the audit trail could not be written" in result["msg"], result
    assert "No space left on device" in result["msg"] and result["terminated"] == []


def _gated_close(server, journaled_sessions):
    request = _drain_request.parse_request(options(grace=1, wait_timeout=2, host_timeout=60))
    deadline = _deadline.Deadline(60, clock=FakeClock())
    gate = _drain_rights.plan_gate({"journaled_sessions": journaled_sessions}, check_mode=False)
    return _drain_closing.end_sessions(server, server, request, (), False, deadline, gate)


def test_a_gated_run_ends_the_journaled_sessions_and_stops_at_one_that_got_in_since():
    late = entry("3")
    server = FakeServer([[entry("1"), entry("2")], [late]])  # "3" logged in after the plan
    result = _gated_close(server, ["1", "2"])
    assert sorted(key for key, _mode in server.ended) == ["1", "2"]  # "3" never signalled
    assert result["failed"] and "beyond the plan" in result["msg"]
    assert [e["key"] for e in result["beyond_plan"]["sessions"]] == ["3"]
    assert sorted(e["key"] for e in result["terminated"]) == ["1", "2"]
    # journaled too, the next run ends it
    again = _gated_close(FakeServer([[late]]), ["1", "2", "3"])
    assert not again.get("failed") and [e["key"] for e in again["terminated"]] == ["3"]
    assert "beyond_plan" not in again


def test_a_gated_batch_with_one_session_beyond_the_plan_sends_nothing_of_it():
    server = FakeServer([[entry("1"), entry("2")]])
    result = _gated_close(server, ["1"])
    assert server.ended == [] and [e["key"] for e in result["beyond_plan"]["sessions"]] == ["2"]
