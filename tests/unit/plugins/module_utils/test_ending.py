# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ending one host's victims (module_utils/_ending.py): each victim's part, the signals, the grace
and the confirm waits, what a failure after signals keeps, the write-ahead journal, the settling
of earlier unknowns. Through the runner's apply_policy, on a fake driver and clock."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _ending, _errors
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
from test_runner import MIXED, FakeClock, FakeDriver, _at, ids, mixed_sessions, policy_of, reasons, run, session


# ---------------------------------------------------------------- _split
@pytest.mark.parametrize(
    "action, state, part",
    [
        ("terminate", "idle", 0),
        ("terminate", "active", 0),
        ("cancel", "active", 1),
        ("cancel", "idle", 3),
        ("cancel", "idle_in_transaction", 3),
        ("cancel_then_terminate", "active", 2),
        ("cancel_then_terminate", "idle", 0),
        ("cancel_then_terminate", "idle_in_transaction", 0),
    ],
)
def test_split_sends_each_victim_to_one_part(action, state, part):
    victim = {"session": session(5, state=state), "rule": "r", "action": action}
    parts = _ending.split_actions([victim])
    assert [len(p) for p in parts] == [1 if i == part else 0 for i in range(4)]


def test_split_keeps_the_plan_order():
    victims = [{"session": session(i), "rule": "r", "action": "terminate"} for i in (3, 1, 2)]
    assert [v["session"]["id"] for v in _ending.split_actions(victims)[0]] == [3, 1, 2]


# ---------------------------------------------------------------- real runs
def test_a_real_run_ends_the_victims_and_reports_every_matched_session():
    clock = FakeClock()
    driver = FakeDriver(mixed_sessions(), clock)
    result = run(driver, parse_policy(MIXED), clock)
    assert result["changed"] is True
    assert "failed" not in result
    assert ids(result["terminated"]) == [10]
    assert ids(result["cancelled"]) == [11]
    assert reasons(result["not_ended"]) == {12: "nothing_to_cancel", 13: "protected"}
    assert "skipped" not in result
    assert result["summary"]["terminated"] == 1
    assert result["summary"]["cancelled"] == 1
    assert result["summary"]["not_ended"] == {"nothing_to_cancel": 1}
    assert result["matched"] == 4
    assert result["terminated"][0]["rule"] == "ghost"
    assert result["queries"] == driver.query_templates()
    assert sorted(driver.sessions) == sorted(s["key"] for s in mixed_sessions() if s["id"] != 10)
    assert driver.sessions[session(11)["key"]]["state"] == "idle"


def test_cancel_then_terminate_waits_grace_then_terminates_only_the_stubborn():
    clock = FakeClock()
    sessions = [session(20, state="active"), session(21, state="active"), session(22)]
    driver = FakeDriver(sessions, clock)
    driver.stubborn.add(sessions[0]["key"])  # its statement ignores the cancel
    policy = policy_of(
        action="cancel_then_terminate",
        grace=5,
        rules=[{"name": "any", "idle_longer_than": 60}],
    )
    start = clock.now()
    result = run(driver, policy, clock)
    assert [mode for mode, _ids in driver.end_calls] == ["terminate", "cancel", "terminate"]
    assert driver.end_calls[0][1] == [22]  # idle: nothing to cancel, terminated at once
    assert driver.end_calls[1][1] == [20, 21]
    assert driver.end_calls[2][1] == [20]  # still on its statement after the grace
    assert clock.now() - start >= 5
    assert sorted(ids(result["terminated"])) == [20, 22]
    assert ids(result["cancelled"]) == [21]
    assert result["not_ended"] == []
    assert session(20)["key"] not in driver.sessions


def test_cancel_then_terminate_does_not_wait_the_grace_when_every_statement_stopped():
    clock = FakeClock()
    driver = FakeDriver([session(20, state="active")], clock)
    policy = policy_of(action="cancel_then_terminate", grace=30, rules=[{"name": "any", "states": ["active"]}])
    result = run(driver, policy, clock)
    assert ids(result["cancelled"]) == [20]
    assert sum(clock.sleeps) == 0
    assert [mode for mode, _ids in driver.end_calls] == ["cancel"]


def test_a_session_still_there_after_wait_timeout_is_still_present():
    clock = FakeClock()
    sessions = [session(30), session(31)]
    driver = FakeDriver(sessions, clock)
    driver.linger.add(sessions[0]["key"])
    result = run(driver, policy_of(), clock, wait_timeout=3.0)
    assert ids(result["terminated"]) == [31]
    assert reasons(result["not_ended"]) == {30: "still_present"}
    assert result["not_ended"][0]["detail"] == "terminated, but still present after 3.0s"
    assert result["changed"] is True
    assert result["summary"]["not_ended"] == {"still_present": 1}
    assert sum(clock.sleeps) == pytest.approx(3.0)


def test_a_cancel_that_does_not_stop_the_statement_is_still_present():
    clock = FakeClock()
    sessions = [session(32, state="active")]
    driver = FakeDriver(sessions, clock)
    driver.stubborn.add(sessions[0]["key"])
    result = run(driver, policy_of(action="cancel", rules=[{"name": "q", "states": ["active"]}]), clock, wait_timeout=1)
    assert result["cancelled"] == []
    assert reasons(result["not_ended"]) == {32: "still_present"}
    assert result["not_ended"][0]["detail"] == "cancelled, but still running after 1s"
    assert result["changed"] is True


def test_a_session_that_moved_on_is_reported_and_not_ended():
    clock = FakeClock()
    planned = session(40)
    driver = FakeDriver([planned], clock)

    real_end = driver.end_sessions

    def end_after_a_query(victims, mode):
        driver.sessions[planned["key"]].update(state="active", state_since=_at(50))
        return real_end(victims, mode)

    driver.end_sessions = end_after_a_query
    result = run(driver, policy_of(), clock)
    assert result["terminated"] == []
    assert reasons(result["not_ended"]) == {40: "state_changed"}
    assert result["changed"] is False
    assert planned["key"] in driver.sessions


def test_confirm_polling_starts_fast_and_grows_to_a_ceiling():
    clock = FakeClock()
    sessions = [session(50)]
    driver = FakeDriver(sessions, clock)
    driver.exit_after = 2.0
    result = run(driver, policy_of(), clock, wait_timeout=10.0)
    assert ids(result["terminated"]) == [50]
    sleeps = clock.sleeps
    assert sleeps[0] == pytest.approx(0.005)
    assert sleeps[:6] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08, 0.16])
    assert max(sleeps) == pytest.approx(0.2)
    assert all(later >= earlier for earlier, later in zip(sleeps, sleeps[1:]))
    # it stopped at the first listing without the session, not at wait_timeout
    assert 2.0 <= sum(sleeps) < 2.2


def test_a_gone_session_is_confirmed_without_sleeping():
    clock = FakeClock()
    driver = FakeDriver([session(51)], clock)
    run(driver, policy_of(), clock)
    assert clock.sleeps == []


def test_the_last_poll_stops_at_wait_timeout_not_after():
    clock = FakeClock()
    sessions = [session(52)]
    driver = FakeDriver(sessions, clock)
    driver.linger.add(sessions[0]["key"])
    run(driver, policy_of(), clock, wait_timeout=0.3)
    assert sum(clock.sleeps) == pytest.approx(0.3)


def test_wait_timeout_zero_lists_once_and_sleeps_never():
    clock = FakeClock()
    sessions = [session(53)]
    driver = FakeDriver(sessions, clock)
    driver.linger.add(sessions[0]["key"])
    result = run(driver, policy_of(), clock, wait_timeout=0)
    assert clock.sleeps == []
    assert reasons(result["not_ended"]) == {53: "still_present"}


# ---------------------------------------------------------------- failures after signals
def test_a_listing_failure_in_the_confirm_wait_keeps_what_was_ended():
    clock = FakeClock()
    sessions = [session(110), session(111)]
    driver = FakeDriver(sessions, clock)
    driver.fail_list_after = 1  # the plan's listing works, the confirm's does not
    result = run(driver, policy_of(), clock)
    assert result["failed"] is True and result["changed"] is True
    assert ids(result["terminated"]) == [110, 111]
    assert all(e["detail"].startswith("signalled, not confirmed gone") for e in result["terminated"])
    assert result["msg"] == (
        "2 sessions were ended on fake-db:5432 (terminated 2, cancelled 0; 2 of them not confirmed), then the sweep "
        "failed: cannot list sessions on fake-db:5432: server closed the connection; the ended sessions are listed "
        "in terminated / cancelled"
    )
    assert driver.lock_released == 1


def test_a_driver_failing_part_way_through_a_batch_keeps_its_outcomes():
    clock = FakeClock()
    driver = FakeDriver([session(120), session(121), session(122), session(123, state="active")], clock)
    driver.fail_end_after = 2
    result = run(driver, parse_policy(MIXED), clock)
    assert result["failed"] is True
    assert ids(result["terminated"]) == [120, 121]
    # The batch in flight: its signal may have gone out; the next contact settles it.
    assert ids(result["unknown"]) == [122]
    assert result["unknown"][0]["detail"].startswith("the signal may or may not have gone out: cannot terminate")
    assert reasons(result["not_ended"]) == {123: "failed"}
    assert result["not_ended"][0]["detail"].startswith("not attempted")
    assert result["summary"]["unknown"] == 1
    assert [mode for mode, _ids in driver.end_calls] == ["terminate"]  # nothing sent after a failure
    assert "2 sessions were ended on fake-db:5432 (terminated 2, cancelled 0; 2 of them not confirmed)" in result["msg"]
    assert ", and 1 sessions whose fate is unknown" in result["msg"]
    assert "then the sweep failed: cannot terminate sessions on fake-db:5432" in result["msg"]


def test_a_later_batch_failing_keeps_the_earlier_batch():
    clock = FakeClock()
    driver = FakeDriver([session(130), session(131, state="active")], clock)
    driver.fail_end_after = 1
    driver.partial_outcomes = False  # a driver that knows nothing of the failed call
    result = run(driver, parse_policy(MIXED), clock)
    assert result["failed"] is True
    assert ids(result["terminated"]) == [130]
    assert result["cancelled"] == []
    assert result["not_ended"] == []
    assert ids(result["unknown"]) == [131]
    assert "then the sweep failed: cannot cancel sessions" in result["msg"]


def test_a_failure_in_the_escalation_keeps_the_cancels():
    clock = FakeClock()
    sessions = [session(140, state="active")]
    driver = FakeDriver(sessions, clock)
    driver.stubborn.add(sessions[0]["key"])
    driver.fail_end_after = 1  # the cancel goes out, the terminate fails
    policy = policy_of(action="cancel_then_terminate", grace=1, rules=[{"name": "q", "states": ["active"]}])
    result = run(driver, policy, clock)
    assert result["failed"] is True
    # Its cancel went out, then its terminate failed in flight: fate unknown, not cancelled.
    assert result["cancelled"] == [] and result["not_ended"] == []
    assert ids(result["unknown"]) == [140]
    assert "terminated 0, cancelled 0), and 1 sessions whose fate is unknown" in result["msg"]


def test_a_first_batch_failing_in_flight_leaves_its_victims_unknown():
    clock = FakeClock()
    driver = FakeDriver([session(150)], clock)
    driver.fail_end_after = 0
    result = run(driver, policy_of(), clock)
    # Not "as if nothing was ended": the statement was sent, its fate is not known.
    assert result["failed"] is True and result["changed"] is True
    assert ids(result["unknown"]) == [150]
    assert result["summary"]["unknown"] == 1 and result["summary"]["seen"] == 1
    assert (
        "0 sessions were ended on fake-db:5432 (terminated 0, cancelled 0), and 1 sessions whose fate is unknown"
        in (result["msg"])
    )
    assert "server closed the connection" in result["msg"]
    assert driver.lock_released == 1


def test_a_failure_before_any_signal_is_a_plain_error():
    clock = FakeClock()
    driver = FakeDriver([session(150)], clock)
    driver.fail_list_after = 0
    with pytest.raises(SessionError) as caught:
        run(driver, policy_of(), clock)
    assert str(caught.value) == "cannot list sessions on fake-db:5432: server closed the connection"
    assert driver.lock_released == 1


# ---------------------------------------------------------------- the write-ahead journal
class RecordingJournal(_ending.Journal):
    """Journals into `events` (shared with the driver's signals), or fails from batch `fail_at` on."""

    def __init__(self, events, fail_at=None):
        self.events = events
        self.fail_at = fail_at
        self.batches = 0

    def ending(self, entries):
        self.batches += 1
        if self.fail_at is not None and self.batches > self.fail_at:
            raise _errors.JournalError(
                "the audit trail /trail could not be written: [Errno 28] No space left on device"
            )
        self.events.append(("ending", [(e["id"], e["rule"], e["action"]) for e in entries]))


class JournaledDriver(FakeDriver):
    def __init__(self, sessions, clock, events):
        FakeDriver.__init__(self, sessions, clock)
        self.events = events

    def end_sessions(self, victims, mode):
        self.events.append((mode, [v["id"] for v in victims]))
        return FakeDriver.end_sessions(self, victims, mode)


def test_each_batch_is_journaled_before_its_signals(monkeypatch):
    monkeypatch.setattr(_ending, "SIGNAL_BATCH", 2)
    clock = FakeClock()
    events = []
    sessions = [session(170), session(171), session(172), session(173, state="active", since=10)]
    driver = JournaledDriver(sessions, clock, events)
    driver.stubborn.add(sessions[3]["key"])
    raw = dict(MIXED, grace=1)
    raw["rules"] = [dict(MIXED["rules"][0], action="cancel_then_terminate")] + MIXED["rules"][1:]
    result = run(driver, parse_policy(raw), clock, journal=RecordingJournal(events))
    assert ids(result["terminated"]) == [170, 171, 172, 173]
    assert events == [
        ("ending", [(170, "ghost", "terminate"), (171, "ghost", "terminate")]),
        ("terminate", [170, 171]),
        ("ending", [(172, "ghost", "terminate")]),
        ("terminate", [172]),
        ("ending", [(173, "runaway", "cancel_then_terminate")]),
        ("cancel", [173]),
        ("ending", [(173, "runaway", "cancel_then_terminate")]),  # the escalation is journaled too
        ("terminate", [173]),
    ]


def test_a_journal_that_cannot_be_written_stops_the_host_before_any_signal():
    clock = FakeClock()
    events = []
    driver = JournaledDriver([session(180), session(181)], clock, events)
    with pytest.raises(_errors.JournalError) as caught:
        run(driver, policy_of(), clock, journal=RecordingJournal(events, fail_at=0))
    assert "/trail could not be written: [Errno 28] No space left on device" in str(caught.value)
    assert events == [] and driver.signals == 0
    assert set(driver.sessions) == {session(180)["key"], session(181)["key"]}
    assert driver.lock_released == 1


def test_a_journal_failing_at_a_later_batch_signals_nothing_of_it(monkeypatch):
    monkeypatch.setattr(_ending, "SIGNAL_BATCH", 1)
    clock = FakeClock()
    events = []
    driver = JournaledDriver([session(185), session(186)], clock, events)
    result = run(driver, policy_of(), clock, journal=RecordingJournal(events, fail_at=1))
    assert [event[0] for event in events] == ["ending", "terminate"]
    assert ids(result["terminated"]) == [185]
    assert reasons(result["not_ended"]) == {186: "failed"}
    assert "could not be written" in result["msg"] and result["failed"] is True


def test_check_mode_journals_nothing():
    clock = FakeClock()
    events = []
    driver = JournaledDriver([session(188)], clock, events)
    result = run(driver, policy_of(), clock, journal=RecordingJournal(events), check_mode=True)
    assert ids(result["terminated"]) == [188] and events == []


def test_settle_keys_are_looked_up_in_the_listing():
    clock = FakeClock()
    driver = FakeDriver([session(190)], clock)
    gone = "4242@2024-01-01T00:00:00+00:00"
    result = run(driver, policy_of(), clock, settle_keys=[session(190)["key"], gone], check_mode=True)
    assert [(item["key"], item["outcome"]) for item in result["settled"]] == [
        (session(190)["key"], "still_present"),
        (gone, "terminated"),
    ]
    assert result["settled"][0]["session"]["id"] == 190
    assert "settled" not in run(FakeDriver([], clock), policy_of(), clock)
