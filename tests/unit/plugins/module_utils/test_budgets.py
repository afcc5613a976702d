# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Budgets (docs/architecture.md "Groups and budgets"): per / keep / keep_by and the group
conditions, from the policy's validation through the planner to the runner's entries."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _runner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._planner import plan
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
from test_runner import NO_LIMITS, FakeClock, FakeDriver, _at


def session(session_id, since=0, connected=0, **overrides):
    """An idle session whose last state change is `since` seconds and connect time `connected`
    seconds after 00:00 (so a larger `since` is more recent, a larger `connected` newer)."""
    record = {
        "id": session_id,
        "key": f"{session_id}@x",
        "user": "app",
        "database": "shop",
        "application": "web",
        "client_addr": "10.2.3.4",
        "state": "idle",
        "state_since": _at(since),
        "connected_at": _at(connected),
        "idle_seconds": 4000.0 - since,
        "query_seconds": None,
        "query": "SELECT 1",
        "superuser": False,
    }
    record.update(overrides)
    return record


def budget_policy(**rule):
    base = {"name": "budget", "states": ["idle"], "keep": 2}
    base.update(rule)
    return parse_policy({"name": "p", "rules": [base], "limits": NO_LIMITS})


def victim_ids(result):
    return sorted(victim["session"]["id"] for victim in result.victims)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "rule, field, words",
    [
        ({"per": ["colour"], "keep": 1}, "policy.rules[0].per[0]", "invalid group key 'colour'"),
        ({"per": "colour", "keep": 1}, "policy.rules[0].per", "invalid group key 'colour'"),
        ({"per": ["user", "user"], "keep": 1}, "policy.rules[0].per[1]", "listed twice"),
        ({"per": [], "keep": 1}, "policy.rules[0].per", "empty list"),
        ({"per": "user"}, "policy.rules[0].per", "needs keep"),
        ({"keep": -1}, "policy.rules[0].keep", "from 0 to 1000000, got -1"),
        ({"keep": True}, "policy.rules[0].keep", "got True"),
        ({"keep": 1.5}, "policy.rules[0].keep", "got 1.5"),
        ({"keep": 1000001}, "policy.rules[0].keep", "from 0 to 1000000"),
        ({"keep": "many"}, "policy.rules[0].keep", "got 'many'"),
        ({"keep": 1, "keep_by": "youngest"}, "policy.rules[0].keep_by", "invalid keep_by 'youngest'"),
        ({"keep_by": "oldest"}, "policy.rules[0].keep_by", "needs keep"),
        ({"keep_by": "oldest", "any_running_longer_than": 5}, "policy.rules[0].keep_by", "needs keep"),
        ({"each_running_longer_than": "5x"}, "policy.rules[0].each_running_longer_than", "invalid duration '5x'"),
        ({"any_running_longer_than": -1}, "policy.rules[0].any_running_longer_than", "negative"),
    ],
)
def test_a_bad_budget_fails_naming_the_field_and_the_value(rule, field, words):
    with pytest.raises(PolicyError) as caught:
        parse_policy({"rules": [dict(rule, states=["idle"])]})
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ": ")
    assert words in str(caught.value)


def test_budget_keys_are_not_conditions_of_an_except():
    with pytest.raises(PolicyError) as caught:
        parse_policy({"rules": [{"states": ["idle"], "except": {"keep": 1}}]})
    assert caught.value.field == "policy.rules[0].except.keep"


def test_a_budget_alone_is_enough_for_a_rule_and_round_trips():
    raw = {"per": "application", "keep": "3", "any_running_longer_than": "1m"}
    policy = parse_policy({"rules": [raw]})
    shown = policy.to_dict()["rules"][0]
    assert shown["per"] == ["application"] and shown["keep"] == 3 and shown["keep_by"] == "most_recent"
    assert shown["any_running_longer_than"] == 60
    assert parse_policy(policy.to_dict()).to_dict() == policy.to_dict()
    assert parse_policy({"rules": [{"keep": 0}]}).rules[0].budget.keep == 0


# ---------------------------------------------------------------- grouping
@pytest.mark.parametrize(
    "per, field, label",
    [
        ("user", "user", "user"),
        ("database", "database", "database"),
        ("application", "application", "application"),
        ("client_address", "client_addr", "client_address"),
    ],
)
def test_groups_by_each_key(per, field, label):
    sessions = [session(i, since=i, **{field: "a" if i < 4 else "b"}) for i in range(1, 7)]
    # group a: 1, 2, 3 (keep the 2 most recent: 3, 2); group b: 4, 5, 6 (keep 6, 5).
    result = plan(sessions, budget_policy(per=per))
    assert victim_ids(result) == [1, 4]
    victims = {victim["session"]["id"]: victim for victim in result.victims}
    assert victims[1]["group"] == {label: "a"} and victims[4]["group"] == {label: "b"}
    assert (victims[1]["group_size"], victims[1]["kept"], victims[1]["rank"]) == (3, 2, 3)
    assert result.groups == [
        {"rule": "budget", "group": {label: "a"}, "size": 3, "kept": 2, "ended": 1},
        {"rule": "budget", "group": {label: "b"}, "size": 3, "kept": 2, "ended": 1},
    ]
    assert result.matched == 6 and len(result.kept) == 4
    assert result.summary()["by_rule"]["budget"] == {"victims": 2, "protected": 0, "kept": 4}


def test_groups_by_two_keys_and_without_per_the_host_is_one_group():
    sessions = [
        session(1, since=1, user="u1", application="a"),
        session(2, since=2, user="u1", application="a"),
        session(3, since=3, user="u1", application="b"),
        session(4, since=4, user="u2", application="a"),
        session(5, since=5, user="u2", application="a"),
    ]
    two = plan(sessions, budget_policy(per=["user", "application"], keep=1))
    assert victim_ids(two) == [1, 4]
    assert sorted(group["group"]["user"] + group["group"]["application"] for group in two.groups) == ["u1a", "u2a"]
    whole = plan(sessions, budget_policy(keep=2))
    assert victim_ids(whole) == [1, 2, 3]
    assert whole.groups == [{"rule": "budget", "group": {}, "size": 5, "kept": 2, "ended": 3}]


def test_a_group_exactly_at_its_budget_ends_nothing():
    sessions = [session(1, since=1), session(2, since=2), session(3, since=3, application="other")]
    result = plan(sessions, budget_policy(per="application"))
    assert result.victims == [] and result.groups == []
    assert result.matched == 3
    assert result.summary()["groups_over_budget"] == 0


@pytest.mark.parametrize(
    "keep_by, kept",
    [
        ("most_recent", [3, 4]),  # the latest state changes
        ("oldest", [1, 2]),  # the earliest connected (pt-kill all-but-oldest)
        ("newest", [3, 4]),  # the latest connected
    ],
)
def test_keep_by_ranks_each_way(keep_by, kept):
    # Connected 1 < 2 < 3 < 4; most recently active 4 > 3 > 1 > 2.
    sessions = [
        session(1, since=30, connected=1),
        session(2, since=20, connected=2),
        session(3, since=40, connected=3),
        session(4, since=50, connected=4),
    ]
    result = plan(sessions, budget_policy(keep_by=keep_by))
    assert sorted(entry["session"]["id"] for entry in result.kept) == kept
    if keep_by == "most_recent":
        assert [v["session"]["id"] for v in sorted(result.victims, key=lambda v: v["rank"])] == [1, 2]


def test_without_a_connect_time_the_connect_order_ranks_and_an_unknown_instant_is_kept():
    # MySQL / MariaDB: no connected_at, thread ids in connection order.
    sessions = [session(i, connected_at=None, connect_order=i) for i in (7, 8, 9)]
    assert victim_ids(plan(sessions, budget_policy(keep=1, keep_by="oldest"))) == [8, 9]
    assert victim_ids(plan(sessions, budget_policy(keep=1, keep_by="newest"))) == [7, 8]
    unknown = [session(1, since=10), session(2, since=20, state_since=None), session(3, since=30)]
    assert victim_ids(plan(unknown, budget_policy(keep=2))) == [1]


def test_ties_rank_by_id_so_check_mode_and_a_real_run_agree():
    sessions = [session(i, since=5) for i in (4, 2, 3, 1)]
    assert victim_ids(plan(sessions, budget_policy(keep=2))) == [3, 4]
    assert victim_ids(plan(list(reversed(sessions)), budget_policy(keep=2))) == [3, 4]


def test_protected_sessions_neither_count_nor_end_and_except_leaves_the_group():
    sessions = [
        session(1, since=1),
        session(2, since=2, user="backup"),
        session(3, since=3, application="pg_dump"),
        session(4, since=4),
        session(5, since=5),
    ]
    policy = parse_policy(
        {
            "rules": [{"name": "budget", "states": ["idle"], "keep": 2, "except": {"applications": ["pg_dump"]}}],
            "protect": {"users": ["backup"]},
            "limits": NO_LIMITS,
        }
    )
    result = plan(sessions, policy)
    # Members 1, 4, 5 (2 protected, 3 excepted): keep 5 and 4, end 1.
    assert victim_ids(result) == [1]
    assert result.groups == [{"rule": "budget", "group": {}, "size": 3, "kept": 2, "ended": 1}]
    assert [entry["session"]["id"] for entry in result.not_ended] == [2]
    assert result.matched == 4


def test_a_session_a_budget_keeps_is_still_ended_by_another_rule_and_the_first_rule_names_it():
    sessions = [
        session(1, since=1, idle_seconds=5.0),
        session(2, since=2, idle_seconds=9000.0),
        session(3, since=3, idle_seconds=5.0),
    ]
    policy = parse_policy(
        {
            "rules": [
                {"name": "budget", "states": ["idle"], "keep": 2},
                {"name": "ghost", "states": ["idle"], "idle_longer_than": "1h"},
            ],
            "limits": NO_LIMITS,
        }
    )
    result = plan(sessions, policy)
    assert {v["session"]["id"]: v["rule"] for v in result.victims} == {1: "budget", 2: "ghost"}
    assert [entry["session"]["id"] for entry in result.kept] == [3]
    # The other way round: a rule without a budget first takes the session, the budget still counts it.
    first = parse_policy(dict(policy.to_dict(), rules=list(reversed(policy.to_dict()["rules"]))))
    result = plan(sessions, first)
    assert {v["session"]["id"]: v["rule"] for v in result.victims} == {1: "budget", 2: "ghost"}
    assert "group" not in next(v for v in result.victims if v["rule"] == "ghost")


@pytest.mark.parametrize(
    "condition, seconds, victims",
    [
        # Group a (1, 2, 3) keeps 3, the most recently started; group b (4, 5, 6) keeps 5.
        ("each_running_longer_than", 50, [1, 2]),  # a: all run > 50; b: 5 does not
        ("each_running_longer_than", 150, []),
        ("any_running_longer_than", 150, [1, 2, 4, 6]),  # a: 1 runs 200; b: 6 runs 300
        ("any_running_longer_than", 1000, []),
    ],
)
def test_group_conditions_take_a_group_when_each_or_any_member_runs_long(condition, seconds, victims):
    def running(session_id, application, ran):
        return session(session_id, state="active", query_seconds=ran, application=application, since=1000 - ran)

    sessions = [
        running(1, "a", 200.0),
        running(2, "a", 100.0),
        running(3, "a", 90.0),
        running(4, "b", 60.0),
        running(5, "b", 40.0),
        running(6, "b", 300.0),
    ]
    policy = parse_policy(
        {"rules": [{"name": "class", "states": ["active"], "per": "application", condition: seconds, "keep": 1}]}
    )
    assert victim_ids(plan(sessions, policy)) == victims


def test_a_group_condition_without_keep_ends_the_whole_group():
    sessions = [session(1, state="active", query_seconds=100.0), session(2, state="active", query_seconds=5.0)]
    policy = parse_policy({"rules": [{"states": ["active"], "any_running_longer_than": 60}], "limits": NO_LIMITS})
    assert victim_ids(plan(sessions, policy)) == [1, 2]


def test_group_size_at_least_takes_only_groups_that_large():
    # pt-kill's --query-count: a class of at least N; --victims all is no keep, all-but-oldest keep 1.
    sessions = [session(i, since=i, application="a" if i <= 3 else "b") for i in range(1, 6)]
    every = parse_policy({"rules": [{"states": ["idle"], "per": "application", "group_size_at_least": 3}]})
    assert victim_ids(plan(sessions, every)) == [1, 2, 3]
    but_one = parse_policy({"rules": [{"states": ["idle"], "per": "application", "group_size_at_least": 2, "keep": 1}]})
    assert victim_ids(plan(sessions, but_one)) == [1, 2, 4]
    with pytest.raises(PolicyError) as caught:
        parse_policy({"rules": [{"states": ["idle"], "group_size_at_least": 0}]})
    assert caught.value.field == "policy.rules[0].group_size_at_least"


def test_bounded_matching_plans_the_same_budget():
    sessions = [session(i, since=i, application="a" if i % 2 else "b") for i in range(1, 9)]
    plain = plan(sessions, budget_policy(per="application", keep=1))
    bounded = plan(sessions, budget_policy(per="application", keep=1, query_matches="SELECT"))
    assert bounded.victims == plain.victims and bounded.groups == plain.groups


# ---------------------------------------------------------------- the runner
def _run(sessions, policy, check_mode, end_hook=None):
    clock = FakeClock()
    driver = FakeDriver(sessions, clock)
    if end_hook is not None:
        real_end = driver.end_sessions

        def end(victims, mode):
            end_hook(driver)
            return real_end(victims, mode)

        driver.end_sessions = end
    return _runner.apply_policy(driver, policy, check_mode, clock=clock, wait_timeout=1.0), driver


def test_check_mode_lists_exactly_what_the_real_run_ends_with_the_group_fields():
    sessions = [session(i, since=i, user="u" + str(i % 2)) for i in range(2, 9)]
    policy = budget_policy(per="user", keep=2)
    dry = _run(sessions, policy, True)[0]
    real, driver = _run(sessions, policy, False)
    assert dry["terminated"] == real["terminated"]
    assert sorted(entry["id"] for entry in real["terminated"]) == [2, 3, 4]
    assert {entry["id"]: entry["group"] for entry in real["terminated"]} == {
        2: {"user": "u0"},
        3: {"user": "u1"},
        4: {"user": "u0"},
    }
    assert all(entry["group_size"] in (3, 4) and entry["kept"] == 2 for entry in real["terminated"])
    assert sorted(session["id"] for session in driver.list_sessions()) == [5, 6, 7, 8]
    again = _run(driver.list_sessions(), policy, False)[0]
    assert again["terminated"] == [] and again["changed"] is False


def test_a_victim_that_moved_on_is_state_changed_and_the_group_is_not_re_ranked():
    # The fake server's own session is id 1: these are 2, 3, 4.
    sessions = [session(2, since=2), session(3, since=3), session(4, since=4)]

    def wake(driver):
        driver.sessions["2@x"].update(state="active", state_since=_at(60))

    result, driver = _run(sessions, budget_policy(keep=2), False, end_hook=wake)
    assert result["terminated"] == []
    assert [(entry["id"], entry["reason"], entry["group_size"]) for entry in result["not_ended"]] == [
        (2, "state_changed", 3)
    ]
    assert len(driver.sessions) == 3  # no other member was ended in its place
