# -*- coding: utf-8 -*-
"""Verified blocks of the MariaDB guard, on a real server.

Idle victims to terminate that were idle long enough for the driver's bound of
(verifying read -> KILL) / idle time are verified together: one read of the thread list per
block, in the same compound statement as their KILLs, then a tight loop of KILLs; each KILL
goes out only while that ratio, measured in the server right before it, is within the bound
(my_verified.verified_block). The others keep the re-read of their own.

The tests raise the driver's bound (`window_ratio_bound`) so that sessions idle about a
second qualify: the mechanism is the same at the documented bound with sessions idle for
many minutes. They check what a block ends, what it refuses (moved, in a transaction, gone),
that a victim whose window would pass the bound is re-read on its own, and the ratio reported.
"""

import uuid

import pytest
from conftest import wait_until
from dbfleet import holder

pytest.register_assert_rewrite("_mysql_fixtures")
import _mysql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import verified as my_verified  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import apply_policy  # noqa: E402

pytest_plugins = ["_mysql_fixtures"]

# A bound a session idle about a second passes in a block of a few victims on a test server
# (a window of up to a few hundred ms), also on a busy machine.
BOUND = 0.5
AGE = 1.0


@pytest.fixture
def opened(fleet):
    tag = "vb-%s" % uuid.uuid4().hex[:8]
    sessions = []

    def open_idle(count):
        new = [
            holder.open_session(fleet, fx.SERVER, "idle", application=f"{tag}-{len(sessions) + n}", database="appdb")
            for n in range(count)
        ]
        sessions.extend(new)
        return new

    open_idle.tag = tag
    yield open_idle
    for session in sessions:
        session.close()


def aged(sessions):
    """Wait until every one of `sessions` has been idle AGE seconds (the server's figure)."""
    assert wait_until(lambda: all(s.age() >= AGE for s in sessions), timeout=60), [s.age() for s in sessions]


def planned(d, sessions):
    by_id = dict((s["id"], s) for s in d.list_sessions())
    records = [by_id.get(session.id) for session in sessions]
    assert all(records)
    return records


def test_a_verified_block_ends_only_the_sessions_still_as_planned(fleet, opened):
    untouched = opened(4)
    ran, began, left = opened(3)
    aged(untouched + [ran, began, left])
    with fx.driver(fleet) as d:
        d.window_ratio_bound = BOUND
        victims = planned(d, [ran, untouched[0], began, untouched[1], left] + untouched[2:])
        assert all(my_verified.block_verifiable(v, "terminate") and v["state"] == "idle" for v in victims)
        # After planning, before the block's read: a statement, a transaction, a goodbye.
        ran.execute("SELECT 1")
        began.execute("BEGIN")
        left.close()
        assert wait_until(lambda: not left.alive(), timeout=30)
        before = dict(d.guard_counts)
        results = dict((r["id"], (outcome, detail)) for r, outcome, detail in d.end_sessions(victims, "terminate"))
        counts = dict((key, d.guard_counts[key] - before[key]) for key in d.guard_counts)
        figures = d.guard_figures()
    assert [results[s.id][0] for s in untouched] == ["terminated"] * 4, results
    assert results[ran.id][0] == "state_changed" and "new statement" in results[ran.id][1], results
    assert results[began.id][0] == "state_changed", results
    assert results[left.id][0] == "gone", results
    assert ran.alive() and began.alive()
    assert began.execute("SELECT @@in_transaction") == ((1,),)
    assert wait_until(lambda: not any(s.alive() for s in untouched), timeout=30)
    # Every one settled by a block read (none re-read on its own), the ratio within the bound.
    assert counts["block_verified"] == 7 and counts["blocks"] >= 1, counts
    assert counts["looped"] == counts["own_step"] == counts["statement_events"] == 0, counts
    assert 0 < figures["window_ratio_max"] <= BOUND, figures
    assert figures["window_ratio_bound"] == BOUND


def test_a_victim_whose_window_would_pass_the_bound_is_re_read_on_its_own(fleet, opened):
    sessions = opened(3)
    aged(sessions)
    with fx.driver(fleet) as d:
        # No real window is this short: the server refuses the block's KILL (r), and the
        # guard loop re-reads the victim on its own. (A KILL predicted to cost nothing, so
        # that the driver runs the block that measures it.)
        d.window_ratio_bound = 1e-9
        d._verify_kill = 1e-15
        victims = planned(d, sessions)
        before = dict(d.guard_counts)
        results = d.end_sessions(victims, "terminate")
        counts = dict((key, d.guard_counts[key] - before[key]) for key in d.guard_counts)
        figures = d.guard_figures()
    assert [outcome for dummy, outcome, dummy2 in results] == ["terminated"] * 3, results
    # One block measured the costs (its one victim not killed by it), the rest predicted not to fit.
    assert counts["blocks"] == 1 and counts["block_verified"] == 0 and counts["looped"] == 3, counts
    assert figures["window_ratio_max"] is None
    assert wait_until(lambda: not any(s.alive() for s in sessions), timeout=30)


def test_a_sweep_reports_the_largest_ratio(fleet, opened):
    sessions = opened(5)
    aged(sessions)
    policy = parse_policy(
        {
            "name": "verified-blocks",
            "rules": [{"applications": [opened.tag + "-*"], "states": ["idle"], "idle_longer_than": 0}],
            "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"},
        }
    )
    with fx.driver(fleet) as d:
        d.preflight(signal=True, policy=policy)
        d.window_ratio_bound = BOUND
        result = apply_policy(d, policy, check_mode=False, wait_timeout=30)
        checked = apply_policy(d, policy, check_mode=True)
    assert sorted(s["id"] for s in result["terminated"]) == sorted(s.id for s in sessions), result
    guard = result["guard"]
    assert guard["block_verified"] == 5 and guard["re_read"] == 0, guard
    assert 0 < guard["window_ratio_max"] <= guard["window_ratio_bound"] == BOUND, guard
    assert "guard" not in checked
    assert not any(s.alive() for s in sessions)
