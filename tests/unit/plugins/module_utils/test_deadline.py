# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bounds of one host's run (module_utils/_deadline.py): the timeouts checked before
connecting, the host's deadline before each step and in each wait, the sweep lock."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _deadline, _ending, _errors, _runner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from test_runner import NO_LIMITS, FakeClock, FakeDriver, FakeModule, ids, policy_of, reasons, run, session


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
        _deadline.check_timeouts(policy_of(), wait_timeout, host_timeout)
    assert caught.value.field == field
    assert message in str(caught.value)


def test_grace_counts_against_host_timeout_only_when_a_rule_uses_it():
    waits = policy_of(grace=200, rules=[{"name": "r", "states": ["active"], "action": "cancel_then_terminate"}])
    with pytest.raises(PolicyError) as caught:
        _deadline.check_timeouts(waits, 100.0, 300.0)
    assert str(caught.value) == (
        "host_timeout: policy.grace (200s) + wait_timeout (100s) = 300s must be less than host_timeout (300s), "
        "which also covers connecting, listing and signalling: lower them or raise host_timeout"
    )
    _deadline.check_timeouts(waits, 99.0, 300.0)
    _deadline.check_timeouts(policy_of(grace=200), 100.0, 300.0)  # terminate only: grace never waited


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
    deadline = _deadline.Deadline(5.0, clock)
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
    with pytest.raises(_errors.SweepBusyError) as caught:
        run(driver, policy_of(), clock)
    assert str(caught.value) == (
        "host busy: another sweep holds the lock on fake-db:5432 (waited 60s); nothing was ended here, "
        "run again when that sweep has finished"
    )
    assert driver.lists == 0 and driver.end_calls == []
    assert driver.lock_released == 0


def test_check_mode_takes_no_lock():
    driver = FakeDriver([session(94)], FakeClock())
    driver.lock_free = False
    module = FakeModule({"rules": [{"name": "r", "states": ["idle"]}], "limits": NO_LIMITS}, check_mode=True)
    with pytest.raises(FakeModule.Exit):
        _runner.run_sessions_module(module, FakeDriver, lambda params: driver)
    assert driver.lock_requests == []
    assert ids(module.result["terminated"]) == [94]
    assert "failed" not in module.result
