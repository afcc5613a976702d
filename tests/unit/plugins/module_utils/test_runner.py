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
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _runner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import Driver
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
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


def test_run_sessions_module_reports_a_busy_host():
    driver = FakeDriver([session(93)], FakeClock())
    driver.lock_free = False
    module = FakeModule({"rules": [{"name": "r", "states": ["idle"]}], "limits": NO_LIMITS})
    with pytest.raises(FakeModule.Exit):
        _runner.run_sessions_module(module, FakeDriver, lambda params: driver)
    assert module.result["failed"] is True and module.result["busy"] is True
    assert "another sweep holds the lock on fake-db:5432" in module.result["msg"]
    assert driver.closed


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
