# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The wait graph (_planner.annotate_locks) and the lock conditions planned on it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner, _runner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import GUARD_STILL_WAITING, OUTCOMES, Driver
from ansible_collections.dbhygiene.sessions.plugins.module_utils._planner import annotate_locks
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy


def rec(session_id, blocked_by=(), waited=None, **extra):
    """A session record with the drivers' raw lock fields."""
    record = {
        "id": session_id,
        "key": f"{session_id}@x",
        "user": f"u{session_id}",
        "database": "shop",
        "application": f"app{session_id}",
        "client_addr": "10.0.0.1",
        "state": "active" if blocked_by else "idle_in_transaction",
        "superuser": False,
        "blocked_by": list(blocked_by),
        "lock_wait_seconds": waited,
        "lock_kind": "transactionid" if blocked_by else None,
    }
    record.update(extra)
    return record


def fields(sessions):
    return {s["id"]: (s["blocking"], s["blocking_seconds"]) for s in sessions}


def chain_of(locks, root):
    return next(chain for chain in locks["chains"] if chain["root"] == root)


def test_no_locks():
    sessions = [rec(1), rec(2)]
    locks = annotate_locks(sessions)
    assert locks == {"waiting": 0, "longest_wait_seconds": None, "chains": [], "cycles": []}
    assert fields(sessions) == {1: (0, None), 2: (0, None)}


def test_empty_listing():
    assert annotate_locks([]) == {"waiting": 0, "longest_wait_seconds": None, "chains": [], "cycles": []}


def test_chain_a_b_c_counts_transitively_and_only_a_is_the_root():
    # A <- B <- C: B waits on A, C waits on B (C is behind A too).
    sessions = [rec(1), rec(2, [1], 20.0), rec(3, [2], 5.0)]
    locks = annotate_locks(sessions)
    assert fields(sessions) == {1: (2, 20.0), 2: (1, 5.0), 3: (0, None)}
    assert locks["waiting"] == 2
    assert locks["longest_wait_seconds"] == 20.0
    assert locks["chains"] == [
        {
            "root": 1,
            "visible": True,
            "user": "u1",
            "database": "shop",
            "application": "app1",
            "state": "idle_in_transaction",
            "blocking": 2,
            "blocking_seconds": 20.0,
            "waiters": [2, 3],
        }
    ]
    assert locks["cycles"] == []


def test_fan_out_and_chains_by_blocking_descending():
    # 10 holds three waiters; 20 holds one; 30 waits on both 10 and 20.
    sessions = [rec(20), rec(10), rec(11, [10], 3.0), rec(12, [10], 9.5), rec(30, [10, 20], 1.0), rec(40)]
    locks = annotate_locks(sessions)
    assert [chain["root"] for chain in locks["chains"]] == [10, 20]
    assert chain_of(locks, 10)["waiters"] == [11, 12, 30]
    assert chain_of(locks, 10)["blocking_seconds"] == 9.5
    assert chain_of(locks, 20)["waiters"] == [30]
    assert fields(sessions)[40] == (0, None)
    assert locks["waiting"] == 3
    assert locks["longest_wait_seconds"] == 9.5


def test_equal_chains_ordered_by_root_id():
    sessions = [rec(9), rec(3), rec(10, [9], 1.0), rec(4, [3], 1.0)]
    assert [chain["root"] for chain in annotate_locks(sessions)["chains"]] == [3, 9]


def test_a_waiter_reached_twice_counts_once():
    # Diamond: 2 and 3 wait on 1; 4 waits on 2 and 3.
    sessions = [rec(1), rec(2, [1], 4.0), rec(3, [1], 2.0), rec(4, [2, 3], 7.0)]
    annotate_locks(sessions)
    assert fields(sessions) == {1: (3, 7.0), 2: (1, 7.0), 3: (1, 7.0), 4: (0, None)}


def test_a_waiter_that_is_also_a_holder_is_not_a_root():
    sessions = [rec(1), rec(2, [1], 30.0), rec(3, [2], 8.0), rec(4, [2], 6.0)]
    locks = annotate_locks(sessions)
    assert fields(sessions)[2] == (2, 8.0)
    assert [chain["root"] for chain in locks["chains"]] == [1]
    assert chain_of(locks, 1)["blocking"] == 3


def test_cycle_is_reported_and_never_a_root():
    # 1 <-> 2 deadlock; 3 waits on 1 (behind the cycle).
    sessions = [rec(1, [2], 2.0), rec(2, [1], 3.0), rec(3, [1], 1.0)]
    locks = annotate_locks(sessions)
    assert locks["cycles"] == [[1, 2]]
    assert locks["chains"] == []
    # Each sees the other (and 3, for 1) behind it; never itself.
    assert fields(sessions) == {1: (2, 3.0), 2: (2, 2.0), 3: (0, None)}
    assert locks["waiting"] == 3


def test_three_cycle_and_a_separate_chain():
    sessions = [rec(5, [6], 1.0), rec(6, [7], 1.0), rec(7, [5], 1.0), rec(8), rec(9, [8], 4.0)]
    locks = annotate_locks(sessions)
    assert locks["cycles"] == [[5, 6, 7]]
    assert [chain["root"] for chain in locks["chains"]] == [8]


def test_root_holding_sessions_that_are_in_a_cycle_is_a_root():
    # 2 and 3 deadlock, and 2 also waits on 1 (which waits on nothing).
    sessions = [rec(1), rec(2, [1, 3], 5.0), rec(3, [2], 4.0)]
    locks = annotate_locks(sessions)
    assert locks["cycles"] == [[2, 3]]
    assert [(chain["root"], chain["waiters"]) for chain in locks["chains"]] == [(1, [2, 3])]


def test_two_cycles_sorted():
    sessions = [rec(8, [9], 1.0), rec(9, [8], 1.0), rec(2, [3], 1.0), rec(3, [2], 1.0)]
    assert annotate_locks(sessions)["cycles"] == [[2, 3], [8, 9]]


def test_wait_on_an_invisible_session_makes_an_invisible_root():
    # 99 is not in the listing (another user's session, a non-client backend).
    sessions = [rec(1, [99], 12.0), rec(2, [1], 2.0)]
    locks = annotate_locks(sessions)
    assert locks["chains"] == [
        {
            "root": 99,
            "visible": False,
            "user": None,
            "database": None,
            "application": None,
            "state": None,
            "blocking": 2,
            "blocking_seconds": 12.0,
            "waiters": [1, 2],
        }
    ]
    assert fields(sessions) == {1: (1, 2.0), 2: (0, None)}


def test_self_wait_is_no_wait():
    sessions = [rec(1, [1], 3.0)]
    locks = annotate_locks(sessions)
    assert locks["chains"] == [] and locks["cycles"] == [] and locks["waiting"] == 0
    assert fields(sessions) == {1: (0, None)}


def test_waits_without_a_wait_time_have_no_longest():
    sessions = [rec(1), rec(2, [1], None)]
    locks = annotate_locks(sessions)
    assert fields(sessions)[1] == (1, None)
    assert locks["longest_wait_seconds"] is None
    assert chain_of(locks, 1)["blocking_seconds"] is None


def test_records_without_lock_fields_wait_on_nothing():
    sessions = [{"id": 1, "key": "1@x", "state": "idle"}, {"id": 2, "key": "2@x", "state": "active"}]
    locks = annotate_locks(sessions)
    assert locks == {"waiting": 0, "longest_wait_seconds": None, "chains": [], "cycles": []}
    assert sessions == [
        {"id": 1, "key": "1@x", "state": "idle", "blocking": 0, "blocking_seconds": None},
        {"id": 2, "key": "2@x", "state": "active", "blocking": 0, "blocking_seconds": None},
    ]


def test_the_raw_fields_are_left_as_given():
    sessions = [rec(1), rec(2, [1, 1], 5.0)]
    before = copy.deepcopy(sessions)
    annotate_locks(sessions)
    for given, now in zip(before, sessions):
        assert {k: v for k, v in now.items() if k not in ("blocking", "blocking_seconds")} == given


def test_long_chain_and_big_cycle_hit_no_recursion_limit():
    sessions = [rec(0)] + [rec(i, [i - 1], float(i)) for i in range(1, 1500)]
    locks = annotate_locks(sessions)
    assert chain_of(locks, 0)["blocking"] == 1499
    assert chain_of(locks, 0)["blocking_seconds"] == 1499.0
    big_cycle = [rec(i, [(i + 1) % 1500], 1.0) for i in range(1500)]
    assert annotate_locks(big_cycle)["cycles"] == [list(range(1500))]


# --------------------------------------------------------------------------- planned on the graph

POLICY = {
    "name": "locks",
    "rules": [
        {"name": "root-blocker", "states": ["idle_in_transaction"], "blocking_longer_than": "10s"},
        {"name": "stuck-ddl", "waiting_longer_than": "30s", "action": "cancel"},
    ],
}


def plan_of(sessions, raw=None):
    _planner.annotate_locks(sessions)
    return _planner.plan(sessions, parse_policy(copy.deepcopy(raw or POLICY)))


def victims(result):
    return [(v["session"]["id"], v["rule"], v["action"]) for v in result.victims]


def test_chain_ends_only_its_root():
    sessions = [rec(1), rec(2, [1], 20.0), rec(3, [2], 15.0)]
    assert victims(plan_of(sessions)) == [(1, "root-blocker", "terminate")]


def test_waiting_too_long_is_cancelled_not_its_holder_when_the_holder_is_young():
    # The holder's waiters have waited 35 s, so blocking_longer_than 10s takes it; with a
    # longer threshold only the waiter (waiting_longer_than 30s) is planned.
    sessions = [rec(1), rec(2, [1], 35.0)]
    raw = copy.deepcopy(POLICY)
    raw["rules"][0]["blocking_longer_than"] = "1m"
    assert victims(plan_of(sessions, raw)) == [(2, "stuck-ddl", "cancel")]


def test_blocking_rules_never_take_a_waiter():
    sessions = [rec(1), rec(2, [1], 50.0, state="idle_in_transaction"), rec(3, [2], 50.0)]
    raw = {"rules": [{"blocking_at_least": 1}, {"blocking_longer_than": 0}]}
    assert [v[0] for v in victims(plan_of(sessions, raw))] == [1]


def test_cycle_members_are_never_planned_by_blocking_rules():
    sessions = [rec(1, [2], 60.0), rec(2, [1], 60.0)]
    assert victims(plan_of(sessions, {"rules": [{"blocking_at_least": 1}]})) == []


def test_protect_wins_over_the_lock_rules():
    sessions = [rec(1, user="replicator"), rec(2, [1], 60.0)]
    result = plan_of(sessions, dict(POLICY, protect={"users": ["replicator"]}))
    assert [(e["session"]["id"], e["reason"]) for e in result.not_ended] == [(1, "protected")]
    assert victims(result) == [(2, "stuck-ddl", "cancel")]


@pytest.mark.parametrize("count, expected", [(2, [1]), (3, [])])
def test_blocking_at_least_counts_the_chain(count, expected):
    sessions = [rec(1), rec(2, [1], 1.0), rec(3, [2], 1.0)]
    assert [v[0] for v in victims(plan_of(sessions, {"rules": [{"blocking_at_least": count}]}))] == expected


# --------------------------------------------------------------------------- through the runner


class LockDriver(Driver):
    """A server in memory whose sessions carry the raw lock fields; it records what the
    runner hands to end_sessions (the guarded kill itself is tested on real servers)."""

    engine = "fake"
    target = "fake-db"

    def __init__(self, sessions):
        self.sessions = {s["key"]: dict(s) for s in sessions}
        self.handed = []

    def close(self):
        pass

    @property
    def own_id(self):
        return 0

    def server_facts(self):
        return {"engine": "fake", "max_connections": 100}

    def preflight(self, signal, policy=None):
        return None

    def list_sessions(self):
        return [dict(s) for s in self.sessions.values()]

    def end_sessions(self, victims, mode):
        self.handed.extend(dict(v) for v in victims)
        results = []
        for victim in victims:
            if mode == "terminate":
                self.sessions.pop(victim["key"], None)
            else:
                self.sessions[victim["key"]].update(state="idle", blocked_by=[], lock_wait_seconds=None)
            results.append((victim, OUTCOMES[mode], None))
        return results

    def query_templates(self):
        return []

    def acquire_sweep_lock(self, timeout):
        return True

    def release_sweep_lock(self):
        pass


def chain_driver():
    return LockDriver(
        [rec(1, state_since="t1"), rec(2, [1], 40.0, state_since="t2"), rec(3, [2], 35.0, state_since="t3")]
    )


@pytest.mark.parametrize("check_mode", [True, False])
def test_apply_policy_ends_only_the_root_of_a_chain(check_mode):
    driver = chain_driver()
    policy = parse_policy({"rules": [{"name": "root", "blocking_longer_than": "30s"}]})
    result = _runner.apply_policy(driver, policy, check_mode, wait_timeout=1.0)
    assert [(e["id"], e["blocking"], e["blocking_seconds"]) for e in result["terminated"]] == [(1, 2, 40.0)]
    assert result["changed"] is True
    assert sorted(driver.sessions) == (["1@x", "2@x", "3@x"] if check_mode else ["2@x", "3@x"])


def test_a_waiter_planned_by_waiting_longer_than_is_handed_marked():
    driver = chain_driver()
    policy = parse_policy(
        {
            "rules": [
                {"name": "stuck", "waiting_longer_than": "36s", "action": "cancel"},
                {"name": "long", "states": ["active"], "action": "cancel"},
            ]
        }
    )
    result = _runner.apply_policy(driver, policy, False, wait_timeout=1.0)
    assert [(e["id"], e["rule"]) for e in result["cancelled"]] == [(2, "stuck"), (3, "long")]
    marks = {s["id"]: s.get(GUARD_STILL_WAITING) for s in driver.handed}
    assert marks == {2: True, 3: None}
    # The mark never reaches a result.
    assert all(GUARD_STILL_WAITING not in entry for entry in result["cancelled"])


def test_session_info_returns_the_lock_summary():
    result = _runner.session_info(chain_driver())
    assert result["locks"]["chains"][0]["root"] == 1
    assert result["locks"]["chains"][0]["waiters"] == [2, 3]
    assert [(s["id"], s["blocking"]) for s in result["sessions"]] == [(1, 2), (2, 1), (3, 0)]
