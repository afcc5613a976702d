# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner's logic with an in-memory driver and a fake clock: no database, no sleeping.

The real drivers are tested on real servers (tests/integration); here the fake
driver implements the `_driver.Driver` contract so that every branch of the
runner (split, grace, confirm, limits, deadline, lock, failure part-way) can be
driven exactly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _deadline, _ending, _errors, _runner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import Driver
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError, SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy


# ---------------------------------------------------------------- fakes
class FakeClock(object):
    def __init__(self):
        self.time = 1000.0
        self.sleeps = []

    def now(self):
        return self.time

    def sleep(self, seconds):
        assert seconds > 0, "the runner must never sleep for nothing"
        self.sleeps.append(seconds)
        self.time += seconds


def _at(seconds):
    minutes, secs = divmod(int(seconds), 60)
    return "2024-01-01T00:%02d:%02d+00:00" % (minutes, secs)


def session(session_id, state="idle", since=0, **overrides):
    record = {
        "id": session_id,
        "key": "%s@2024-01-01T00:00:00+00:00" % session_id,
        "user": "app",
        "database": "shop",
        "application": "web",
        "client_addr": "10.2.3.4",
        "state": state,
        "state_since": _at(since),
        "connected_seconds": 5000.0,
        "idle_seconds": 4000.0,
        "query_seconds": 4000.0 if state == "active" else None,
        "transaction_seconds": None,
        "query": "SELECT pg_sleep(9999)" if state == "active" else "SELECT 1",
        "superuser": False,
    }
    record.update(overrides)
    return record


class FakeDriver(Driver):
    """A server in memory, with the guarded kill of the contract.

    `linger`: keys of sessions a terminate does not end (still_present).
    `stubborn`: keys of active sessions a cancel does not stop.
    `exit_after`: seconds (on the clock) a terminated session takes to leave.
    `fail_list_after`: the listing fails from that call on (None: never).
    `fail_end_after`: end_sessions fails part-way after that many signals, with
    `outcomes` (the contract) when `partial_outcomes`.
    `list_cost` / `end_cost`: clock seconds one listing / one end_sessions call takes.
    """

    engine = "fake"
    target = "fake-db:5432"

    def __init__(self, sessions, clock):
        self.sessions = dict((s["key"], dict(s)) for s in sessions)
        self.clock = clock
        self.linger = set()
        self.stubborn = set()
        self.exit_after = 0.0
        self.leaving = {}  # key -> time it leaves
        self.fail_list_after = None
        self.fail_end_after = None
        self.partial_outcomes = True
        self.list_cost = 0.0
        self.end_cost = 0.0
        self.lock_free = True
        self.lock_requests = []
        self.locked = False
        self.lock_released = 0
        self.lists = 0
        self.end_calls = []  # (mode, [ids])
        self.signals = 0
        self.closed = False

    # -- the contract
    def close(self):
        self.closed = True

    @property
    def own_id(self):
        return 1

    def server_facts(self):
        return {"engine": "fake", "max_connections": 100}

    def preflight(self, signal, policy=None):
        return None

    def list_sessions(self):
        self.lists += 1
        if self.fail_list_after is not None and self.lists > self.fail_list_after:
            raise SessionError("cannot list sessions on %s: server closed the connection" % self.target)
        self.clock.time += self.list_cost
        for key, leaves in list(self.leaving.items()):
            if leaves <= self.clock.now():
                del self.leaving[key]
                self.sessions.pop(key, None)
        return [dict(s) for s in self.sessions.values()]

    def end_sessions(self, victims, mode):
        self.end_calls.append((mode, [v["id"] for v in victims]))
        self.clock.time += self.end_cost
        results = []
        for victim in victims:
            if self.fail_end_after is not None and self.signals >= self.fail_end_after:
                error = SessionError("cannot %s sessions on %s: server closed the connection" % (mode, self.target))
                if self.partial_outcomes:
                    error.outcomes = list(results)
                raise error
            results.append((victim,) + self._end_one(victim, mode))
        return results

    def _end_one(self, victim, mode):
        now = self.sessions.get(victim["key"])
        if now is None or victim["key"] in self.leaving:
            return ("gone", "the session ended before it was signalled")
        if (now["state"], now["state_since"]) != (victim["state"], victim["state_since"]):
            return ("state_changed", "was %s, now %s" % (victim["state"], now["state"]))
        self.signals += 1
        if mode == "terminate":
            if victim["key"] not in self.linger:
                self.leaving[victim["key"]] = self.clock.now() + self.exit_after
            return ("terminated", None)
        if victim["key"] not in self.stubborn:
            now.update(state="idle", state_since=_at(3000), query_seconds=None)
        return ("cancelled", None)

    def acquire_sweep_lock(self, timeout):
        self.lock_requests.append(timeout)
        self.locked = self.lock_free
        return self.lock_free

    def release_sweep_lock(self):
        self.lock_released += 1
        self.locked = False

    def query_templates(self):
        return ["SELECT ... FROM fake_activity", "SELECT fake_terminate(%s)"]


class FakeModule(object):
    """The few AnsibleModule members the runner uses."""

    class Exit(Exception):
        pass

    def __init__(self, policy, check_mode=False, **params):
        self.params = dict(policy=policy, wait_timeout=10.0, host_timeout=300.0)
        self.params.update(params)
        self.check_mode = check_mode
        self._diff = False
        self.result = None

    def fail_json(self, msg, **kwargs):
        self.result = dict(kwargs, msg=msg, failed=True)
        raise self.Exit()

    def exit_json(self, **kwargs):
        self.result = kwargs
        raise self.Exit()


# The runner's tests end every session of their fake servers: no limit unless a test sets one.
NO_LIMITS = {"max_terminations": "unlimited", "max_fraction": "unlimited"}


def policy_of(**raw):
    base = {
        "name": "sweep",
        "rules": [{"name": "idle", "states": ["idle"], "idle_longer_than": 60}],
        "limits": NO_LIMITS,
    }
    base.update(raw)
    return parse_policy(base)


MIXED = {
    "name": "mixed",
    "rules": [
        {"name": "runaway", "states": ["active"], "running_longer_than": 60, "action": "cancel"},
        {"name": "stuck", "states": ["idle_in_transaction"], "idle_longer_than": 60, "action": "cancel"},
        {"name": "ghost", "states": ["idle"], "idle_longer_than": 60},
    ],
    "protect": {"users": ["backup"]},
    "limits": NO_LIMITS,
}


def mixed_sessions():
    return [
        session(10),  # ghost -> terminated
        session(11, state="active"),  # runaway -> cancelled
        session(12, state="idle_in_transaction"),  # stuck -> cancel does nothing
        session(13, user="backup"),  # ghost, protected
        session(14, idle_seconds=5.0),  # no rule
    ]


def ids(entries):
    return [entry["id"] for entry in entries]


def reasons(entries):
    return dict((entry["id"], entry["reason"]) for entry in entries)


def run(driver, policy, clock, **kwargs):
    kwargs.setdefault("wait_timeout", 10.0)
    check_mode = kwargs.pop("check_mode", False)
    return _runner.apply_policy(driver, policy, check_mode, clock=clock, **kwargs)


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


# ---------------------------------------------------------------- limits, check mode, diff
def test_above_a_limit_nothing_is_ended_and_the_message_says_why():
    clock = FakeClock()
    driver = FakeDriver([session(60), session(61), session(62)], clock)
    result = run(driver, policy_of(limits={"max_terminations": 2}), clock)
    assert result["failed"] is True
    assert result["changed"] is False
    assert "above limits.max_terminations 2" in result["msg"]
    assert "would end 3 of 3" in result["msg"]
    assert ids(result["would_end"]) == [60, 61, 62]
    assert result["terminated"] == [] and result["cancelled"] == []
    assert driver.end_calls == []
    assert len(driver.sessions) == 3
    assert driver.lock_released == 1  # the lock is given back on the failure too


@pytest.mark.parametrize("policy", [MIXED, dict(MIXED, action="cancel_then_terminate")])
def test_check_mode_predicts_exactly_what_the_real_run_ends(policy):
    sessions = mixed_sessions() + [session(15, state="active", user="batch")]
    policy = parse_policy(policy)
    dry_clock, real_clock = FakeClock(), FakeClock()
    dry_driver, real_driver = FakeDriver(sessions, dry_clock), FakeDriver(sessions, real_clock)
    dry = run(dry_driver, policy, dry_clock, check_mode=True)
    real = run(real_driver, policy, real_clock, check_mode=False)
    assert dry_driver.end_calls == [] and dry_driver.lock_requests == []
    assert len(dry_driver.sessions) == len(sessions)
    assert dry["check_mode"] is True and real["check_mode"] is False
    for key in ("terminated", "cancelled", "not_ended"):
        assert dry[key] == real[key], key
    assert dry["changed"] is True and real["changed"] is True
    assert dry["summary"] == real["summary"]


def test_check_mode_with_nothing_to_end_is_not_changed():
    clock = FakeClock()
    result = run(FakeDriver([session(70, idle_seconds=1.0)], clock), policy_of(), clock, check_mode=True)
    assert result["changed"] is False
    assert result["terminated"] == []


def test_a_real_run_reports_the_guard_figures_of_its_driver_and_a_dry_run_none():
    figures = {"window_ratio_bound": 1e-4, "window_ratio_max": 3e-5, "block_verified": 2, "blocks": 1, "re_read": 0}
    clock = FakeClock()
    driver = FakeDriver(mixed_sessions(), clock)
    assert "guard" not in run(driver, parse_policy(MIXED), clock)  # a driver without figures
    driver.guard_figures = lambda: figures
    assert "guard" not in run(driver, parse_policy(MIXED), clock, check_mode=True)
    assert run(driver, parse_policy(MIXED), clock)["guard"] == figures


def test_the_diff_shows_the_victims_before_and_only_the_survivors_after():
    clock = FakeClock()
    driver = FakeDriver(mixed_sessions(), clock)
    result = run(driver, parse_policy(MIXED), clock, diff=True)
    header = "# policy mixed: 5 client sessions seen, 4 matched\n"
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert before.startswith(header) and after.startswith(header)
    assert before[len(header) :].splitlines() == [
        "10 app@shop idle for 4000s app='web' from 10.2.3.4 [ghost -> terminate]",
        "11 app@shop active for 4000s app='web' from 10.2.3.4 [runaway -> cancel]",
        "12 app@shop idle_in_transaction for 4000s app='web' from 10.2.3.4 [stuck -> cancel]",
    ]
    assert after[len(header) :].splitlines() == [
        "11 app@shop active for 4000s app='web' from 10.2.3.4 [runaway -> cancel] (statement cancelled)",
        "12 app@shop idle_in_transaction for 4000s app='web' from 10.2.3.4 [stuck -> cancel]",
    ]


def test_no_diff_unless_asked():
    clock = FakeClock()
    assert "diff" not in run(FakeDriver([session(71)], clock), policy_of(), clock)


# ---------------------------------------------------------------- the option checks
@pytest.mark.parametrize(
    "wait_timeout, host_timeout, field, message",
    [
        (-1.0, 300.0, "wait_timeout", "wait_timeout: must be 0 or more seconds, got -1.0"),
        (float("nan"), 300.0, "wait_timeout", "wait_timeout: must be a finite number of seconds, at most 3600"),
        (float("inf"), 300.0, "wait_timeout", "at most 3600, got inf"),
        (3600.5, 4000.0, "wait_timeout", "at most 3600, got 3600.5"),
        ("10", 300.0, "wait_timeout", "must be a number of seconds, got '10'"),
        (True, 300.0, "wait_timeout", "must be a number of seconds, got True"),
        (10.0, 0.0, "host_timeout", "host_timeout: must be more than 0 seconds, got 0.0"),
        (10.0, float("nan"), "host_timeout", "host_timeout: must be a finite number of seconds, at most 86400"),
        (10.0, 1e12, "host_timeout", "at most 86400, got 1000000000000.0"),
        (300.0, 300.0, "host_timeout", "wait_timeout (300s) must be less than host_timeout (300s)"),
    ],
)
def test_bad_timeouts_fail_naming_the_field(wait_timeout, host_timeout, field, message):
    with pytest.raises(PolicyError) as caught:
        _runner.check_timeouts(policy_of(), wait_timeout, host_timeout)
    assert caught.value.field == field
    assert message in str(caught.value)


def test_grace_counts_against_host_timeout_only_when_a_rule_uses_it():
    waits = policy_of(grace=200, rules=[{"name": "r", "states": ["active"], "action": "cancel_then_terminate"}])
    with pytest.raises(PolicyError) as caught:
        _runner.check_timeouts(waits, 100.0, 300.0)
    assert str(caught.value) == (
        "host_timeout: policy.grace (200s) + wait_timeout (100s) = 300s must be less than host_timeout (300s), "
        "which also covers connecting, listing and signalling: lower them or raise host_timeout"
    )
    _runner.check_timeouts(waits, 99.0, 300.0)
    _runner.check_timeouts(policy_of(grace=200), 100.0, 300.0)  # terminate only: grace never waited


def test_a_huge_grace_fails_before_connecting():
    module = FakeModule(
        {"action": "cancel_then_terminate", "grace": "99999999999d", "rules": [{"name": "r", "states": ["active"]}]}
    )
    opened = []
    with pytest.raises(FakeModule.Exit):
        _runner.run_sessions_module(module, FakeDriver, opened.append)
    assert opened == []
    assert module.result["failed"] is True
    # The policy core refuses it first: grace has an upper bound of its own.
    assert module.result["field"] == "policy.grace"
    assert "99999999999d" in module.result["msg"] and "above the maximum" in module.result["msg"]


def test_wait_timeout_nan_fails_before_connecting():
    module = FakeModule({"rules": [{"name": "r", "states": ["idle"]}]}, wait_timeout=float("nan"))
    opened = []
    with pytest.raises(FakeModule.Exit):
        _runner.run_sessions_module(module, FakeDriver, opened.append)
    assert opened == []
    assert module.result["field"] == "wait_timeout"
    assert "got nan" in module.result["msg"]


# ---------------------------------------------------------------- the deadline
def test_the_deadline_passed_before_listing_fails_naming_host_timeout():
    clock = FakeClock()
    driver = FakeDriver([session(80)], clock)
    deadline = _runner.Deadline(5.0, clock)
    clock.time += 6.0  # connecting took it all
    with pytest.raises(_errors.DeadlineError) as caught:
        _runner.apply_policy(driver, policy_of(), False, wait_timeout=1.0, deadline=deadline)
    assert str(caught.value).startswith("host_timeout (5s) ran out before taking the sweep lock on fake-db:5432")
    assert driver.end_calls == [] and driver.lists == 0


def test_a_slow_listing_runs_into_the_deadline_before_any_signal():
    clock = FakeClock()
    driver = FakeDriver([session(81)], clock)
    driver.list_cost = 30.0
    with pytest.raises(_errors.DeadlineError) as caught:
        run(driver, policy_of(), clock, wait_timeout=5.0, host_timeout=20.0)
    assert "host_timeout (20s) ran out before signalling (terminate) 1 sessions on fake-db:5432" in str(caught.value)
    assert driver.end_calls == []


def test_the_confirm_wait_is_cut_at_the_deadline_and_the_ended_sessions_stay_recorded():
    clock = FakeClock()
    sessions = [session(82), session(83)]
    driver = FakeDriver(sessions, clock)
    driver.linger.add(sessions[1]["key"])
    driver.list_cost = 4.0
    result = run(driver, policy_of(), clock, wait_timeout=9.0, host_timeout=10.0)
    assert result["failed"] is True
    assert result["changed"] is True
    assert ids(result["terminated"]) == [82, 83]
    assert "detail" not in result["terminated"][0]  # confirmed gone by the last listing
    assert result["terminated"][1]["detail"].startswith("signalled, not confirmed gone: host_timeout (10s) ran out")
    assert result["msg"] == (
        "2 sessions were ended on fake-db:5432 (terminated 2, cancelled 0; 1 of them not confirmed), then the sweep "
        "failed: host_timeout (10s) ran out during the confirm wait (wait_timeout 9s) on fake-db:5432; raise "
        "host_timeout, or lower wait_timeout and policy.grace; the ended sessions are listed in terminated / cancelled"
    )
    assert clock.now() - 1000.0 <= 10.0 + driver.list_cost  # never a wait past the deadline


def test_the_grace_wait_is_cut_at_the_deadline():
    clock = FakeClock()
    sessions = [session(84, state="active")]
    driver = FakeDriver(sessions, clock)
    driver.stubborn.add(sessions[0]["key"])
    policy = policy_of(action="cancel_then_terminate", grace=8, rules=[{"name": "q", "states": ["active"]}])
    driver.list_cost = 3.0
    result = run(driver, policy, clock, wait_timeout=1.0, host_timeout=10.0)
    assert result["failed"] is True
    assert "ran out during the grace wait (policy.grace 8s)" in result["msg"]
    assert ids(result["cancelled"]) == [84]
    assert "not confirmed stopped" in result["cancelled"][0]["detail"]
    assert [mode for mode, _ids in driver.end_calls] == ["cancel"]  # no terminate after the deadline


def test_the_deadline_is_checked_before_each_signal_batch(monkeypatch):
    monkeypatch.setattr(_ending, "SIGNAL_BATCH", 2)
    clock = FakeClock()
    driver = FakeDriver([session(i) for i in range(100, 106)], clock)
    driver.end_cost = 6.0
    result = run(driver, policy_of(), clock, wait_timeout=1.0, host_timeout=10.0)
    assert [ids_ for _mode, ids_ in driver.end_calls] == [[100, 101], [102, 103]]
    assert result["failed"] is True
    assert "ran out before signalling (terminate) 2 sessions" in result["msg"]
    assert ids(result["terminated"]) == [100, 101, 102, 103]
    assert all("not confirmed" in entry["detail"] for entry in result["terminated"])
    assert reasons(result["not_ended"]) == {104: "failed", 105: "failed"}
    assert result["not_ended"][0]["detail"].startswith("not attempted: the sweep failed before (host_timeout")


# ---------------------------------------------------------------- the sweep lock
def test_a_real_run_holds_the_sweep_lock_and_gives_it_back():
    clock = FakeClock()
    driver = FakeDriver([session(90)], clock)
    lists_while_locked = []
    real_list = driver.list_sessions

    def list_sessions():
        lists_while_locked.append(driver.locked)
        return real_list()

    driver.list_sessions = list_sessions
    run(driver, policy_of(), clock, wait_timeout=10.0, host_timeout=300.0)
    assert lists_while_locked and all(lists_while_locked)  # planned under the lock
    assert driver.lock_requests == [_deadline.LOCK_WAIT_MAX]
    assert driver.lock_released == 1 and not driver.locked


def test_the_lock_wait_leaves_the_time_the_waits_need():
    clock = FakeClock()
    driver = FakeDriver([session(91)], clock)
    run(driver, policy_of(), clock, wait_timeout=20.0, host_timeout=50.0)
    assert driver.lock_requests == [30.0]


def test_a_busy_server_fails_the_host_and_ends_nothing():
    clock = FakeClock()
    driver = FakeDriver([session(92)], clock)
    driver.lock_free = False
    with pytest.raises(_runner.SweepBusyError) as caught:
        run(driver, policy_of(), clock)
    assert str(caught.value) == (
        "host busy: another sweep holds the lock on fake-db:5432 (waited 60s); nothing was ended here, "
        "run again when that sweep has finished"
    )
    assert driver.lists == 0 and driver.end_calls == []
    assert driver.lock_released == 0


def test_run_sessions_module_reports_a_busy_host():
    driver = FakeDriver([session(93)], FakeClock())
    driver.lock_free = False
    module = FakeModule({"rules": [{"name": "r", "states": ["idle"]}], "limits": NO_LIMITS})
    with pytest.raises(FakeModule.Exit):
        _runner.run_sessions_module(module, FakeDriver, lambda params: driver)
    assert module.result["failed"] is True and module.result["busy"] is True
    assert "another sweep holds the lock on fake-db:5432" in module.result["msg"]
    assert driver.closed


def test_check_mode_takes_no_lock():
    driver = FakeDriver([session(94)], FakeClock())
    driver.lock_free = False
    module = FakeModule({"rules": [{"name": "r", "states": ["idle"]}], "limits": NO_LIMITS}, check_mode=True)
    with pytest.raises(FakeModule.Exit):
        _runner.run_sessions_module(module, FakeDriver, lambda params: driver)
    assert driver.lock_requests == []
    assert ids(module.result["terminated"]) == [94]
    assert "failed" not in module.result


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


def test_run_sessions_module_fails_with_the_ended_sessions():
    driver = FakeDriver([session(160)], FakeClock())
    driver.fail_list_after = 1
    module = FakeModule({"rules": [{"name": "r", "states": ["idle"]}], "limits": NO_LIMITS})
    with pytest.raises(FakeModule.Exit):
        _runner.run_sessions_module(module, FakeDriver, lambda params: driver)
    result = module.result
    assert result["failed"] is True and result["changed"] is True
    assert ids(result["terminated"]) == [160]
    assert "1 sessions were ended on fake-db:5432" in result["msg"]
    assert "cannot list sessions" in result["msg"]
    assert driver.closed


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


def test_end_only_leaves_a_victim_the_plan_did_not_journal():
    clock = FakeClock()
    driver = FakeDriver([session(195), session(196)], clock)
    result = run(driver, policy_of(), clock, end_only=[session(195)["key"]])
    assert ids(result["terminated"]) == [195]
    assert reasons(result["not_ended"]) == {196: "state_changed"}
    assert "not in the plan journaled" in result["not_ended"][0]["detail"]
    assert driver.end_calls == [("terminate", [195])]


def test_end_only_keeps_a_victim_with_nothing_to_cancel():
    clock = FakeClock()
    driver = FakeDriver([session(197, state="idle_in_transaction")], clock)
    policy = policy_of(rules=[{"name": "stuck", "states": ["idle_in_transaction"], "action": "cancel"}])
    result = run(driver, policy, clock, end_only=[])
    assert reasons(result["not_ended"]) == {197: "nothing_to_cancel"}
