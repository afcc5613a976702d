# -*- coding: utf-8 -*-
"""The event source's pure part: a host's variables checked, and which events a poll gives."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "extensions", "eda", "plugins", "event_source"))

import session_watch  # noqa: E402

POLICY = {"name": "p", "rules": [{"name": "ghost", "states": ["idle"], "idle_longer_than": 60}]}


def _watch(**extra):
    host_vars = {"dbhygiene_engine": "postgresql", "dbhygiene_policy": POLICY, "ansible_host": "10.9.9.9"}
    host_vars.update(extra)
    return session_watch.HostWatch("db1", host_vars, 30.0)


def _result(*keys, chains=()):
    victims = [{"session": {"id": k, "key": k, "query": "ALTER ROLE x PASSWORD 'p'"}, "rule": "ghost"} for k in keys]
    return {"plan": {"victims": victims}, "locks": {"chains": list(chains)}}


def test_connection_arguments_come_from_the_hosts_variables():
    watch = _watch(dbhygiene_postgresql_login_user="pg_only", dbhygiene_login_user="generic")
    assert watch.module_args["login_host"] == "10.9.9.9" and watch.module_args["login_user"] == "pg_only"
    assert watch.interval == 30.0 and watch.module_args["policy"] == POLICY


@pytest.mark.parametrize("value", [0, -1, "nan", "inf", True, "soon"])
def test_a_bad_interval_names_the_variable_and_the_value(value):
    with pytest.raises(session_watch.WatchError, match="dbhygiene_watch_interval: expected .* got"):
        _watch(dbhygiene_watch_interval=value)


def test_a_bad_engine_or_policy_is_refused():
    with pytest.raises(session_watch.WatchError, match="dbhygiene_engine"):
        _watch(dbhygiene_engine="oracle")
    with pytest.raises(session_watch._errors.PolicyError):
        _watch(dbhygiene_policy={"name": "p", "rules": []})


def test_would_end_only_when_the_victims_change_and_never_the_statement():
    watch = _watch()
    [event] = watch.events(_result("a"))
    assert event["type"] == "would_end" and event["would_end"] == 1 and "query" not in event["sessions"][0]
    assert watch.events(_result("a")) == []
    assert [e["would_end"] for e in watch.events(_result("a", "b"))] == [2]
    assert watch.events(_result()) == []  # nothing to end: no event
    assert [e["would_end"] for e in watch.events(_result("a"))] == [1]  # a victim again


def test_unreachable_once_then_reachable():
    watch = _watch()
    assert [e["type"] for e in watch.events({"failed": True, "msg": "timeout"})] == ["unreachable"]
    assert watch.events({"failed": True, "msg": "timeout"}) == []
    assert [e["type"] for e in watch.events(_result())] == ["reachable"]


def test_lock_chains_over_the_threshold_only_and_once():
    watch = _watch(dbhygiene_audit_thresholds={"max_lock_wait": "10s"})
    short = {"root": 1, "blocking": 1, "blocking_seconds": 3.0, "waiters": [2]}
    long_ = {"root": 5, "blocking": 2, "blocking_seconds": 12.0, "waiters": [6, 7]}
    assert watch.events(_result(chains=[short])) == []
    [event] = watch.events(_result(chains=[short, long_]))
    assert event["type"] == "lock_chain" and [c["root"] for c in event["chains"]] == [5]
    assert event["chains"][0]["waiters"] == [6, 7] and event["threshold"] == 10
    assert watch.events(_result(chains=[long_])) == []
    assert _watch().events(_result(chains=[long_])) == []  # no threshold: no lock event


def test_a_budget_victim_carries_its_group():
    watch = _watch()
    result = _result("a")
    result["plan"]["victims"][0].update(group={"user": "app"}, group_size=5, kept=3, rank=4)
    [event] = watch.events(result)
    entry = event["sessions"][0]
    assert (entry["group"], entry["group_size"], entry["kept"], entry["rank"]) == ({"user": "app"}, 5, 3, 4)
