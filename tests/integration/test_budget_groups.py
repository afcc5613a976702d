# -*- coding: utf-8 -*-
"""Budgets on real servers, both engines (docs/architecture.md "Groups and budgets"): groups by
each key and by two keys, keep_by each way, a group at its budget, protected members, check mode
equal to the real run, a second run that ends nothing, a victim that moves on between plan and
kill; the roles (audit in process, enforce on the host) and a bad budget refused before any
connection.

Five idle sessions per engine, opened one after the other (so their connect order is s1 < s2 <
... < s5), then s3 and s1 touched: most recently active first s1, s3, s5, s4, s2. Most cases
only plan (in process, check mode): a few playbook runs in all, to stay fast."""

import contextlib
import time

import _mysql_fixtures as my_fx  # noqa: I001
import _postgresql_fixtures as pg_fx
import pytest
from _roles_fixtures import (
    AUDIT,
    DOWN_ADDRESS,
    ENFORCE,
    close_all,
    live_sessions,
    new_tag,
    read_json,
    read_trail,
    write_inventory,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _runner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
from conftest import run_module, run_playbook, wait_until
from dbfleet import holder

SERVERS = ("pg1", "mariadb1")
OTHER_DATABASE = {"postgresql": "postgres", "mysql": "information_schema"}
# name, user, application (after the tag), on the other database, through the unix socket.
PLANTED = (
    ("s1", "app", "a", False, False),
    ("s2", "app2", "a", True, False),
    ("s3", "app", "a", False, True),
    ("s4", "app2", "b", False, True),
    ("s5", "app", "b", False, False),
)
# Gaps between opens and touches: well above the engines' resolution of a state change.
GAP = 0.05
NO_LIMITS = {"max_terminations": "unlimited", "max_fraction": "unlimited"}


def _engine(fleet, server):
    return fleet.server(server)["engine"]


@contextlib.contextmanager
def _driver(fleet, server):
    if _engine(fleet, server) == "postgresql":
        with pg_fx.driver(fleet, server) as driver:
            yield driver
    else:
        with my_fx.driver(fleet, server) as driver:
            yield driver


def _policy(tag, protect=None, **budget):
    rule = {"name": "budget", "states": ["idle"], "applications": [tag + "-*"]}
    rule.update(budget)
    return parse_policy({"name": "budget-" + tag, "rules": [rule], "protect": protect or {}, "limits": NO_LIMITS})


def _open(fleet, server, tag, planted):
    """{name: HeldSession} of `planted`, opened in order (each after the one before)."""
    held = {}
    try:
        for name, user, application, other_db, local in planted:
            database = OTHER_DATABASE[_engine(fleet, server)] if other_db else None
            held[name] = holder.open_session(
                fleet, server, "idle", user=user, application=f"{tag}-{application}", database=database, local=local
            )
            time.sleep(GAP)
    except Exception:
        close_all(held.values())
        raise
    return held


def _names(entries, held):
    by_id = {session.id: name for name, session in held.items()}
    return sorted(by_id[entry["id"]] for entry in entries)


@pytest.fixture(scope="module", params=SERVERS)
def planted(request, fleet):
    """(server, tag, {name: HeldSession}) of the five sessions above, touched s3 then s1."""
    server = request.param
    tag = new_tag("budget")
    held = _open(fleet, server, tag, PLANTED)
    try:
        for name in ("s3", "s1"):
            held[name].execute("SELECT 1")
            time.sleep(GAP)
        yield server, tag, held
    finally:
        close_all(held.values())


CASES = (
    # (budget, the sessions it would end)
    ({"per": "user", "keep": 1}, ["s2", "s3", "s5"]),
    ({"per": "database", "keep": 1}, ["s3", "s4", "s5"]),
    ({"per": "application", "keep": 1}, ["s2", "s3", "s4"]),
    ({"per": "client_address", "keep": 1}, ["s2", "s4", "s5"]),
    ({"per": ["user", "application"], "keep": 1}, ["s3"]),
    ({"keep": 2}, ["s2", "s4", "s5"]),  # most_recent: keeps s1, s3
    ({"keep": 2, "keep_by": "oldest"}, ["s3", "s4", "s5"]),  # keeps the first connected, s1, s2
    ({"keep": 2, "keep_by": "newest"}, ["s1", "s2", "s3"]),  # keeps the last connected, s4, s5
    ({"keep": 5}, []),  # a group exactly at its budget
)


def test_groups_by_each_key_and_two_keys_and_keep_by_each_way(fleet, planted):
    server, tag, held = planted
    with _driver(fleet, server) as driver:
        for budget, expected in CASES:
            result = _runner.apply_policy(driver, _policy(tag, **budget), check_mode=True)
            assert _names(result["terminated"], held) == expected, budget
            assert result["changed"] is bool(expected), budget
            assert sum(group["ended"] for group in result["groups"]) == len(expected), budget
            for entry in result["terminated"]:
                assert entry["rank"] > entry["kept"] == budget["keep"] and entry["group_size"] > entry["kept"]
        per_two = _runner.apply_policy(driver, _policy(tag, per=["user", "application"], keep=1), check_mode=True)
        assert per_two["groups"] == [
            {"rule": "budget", "group": {"user": "app", "application": tag + "-a"}, "size": 2, "kept": 1, "ended": 1}
        ]
        at_budget = _runner.apply_policy(driver, _policy(tag, keep=5), check_mode=True)
        assert at_budget["groups"] == [] and at_budget["summary"]["kept"] == 5 and at_budget["matched"] == 5
    assert len(live_sessions(fleet, server, tag)) == 5  # check mode ended nothing


def test_protected_members_neither_count_nor_end(fleet, planted):
    server, tag, held = planted
    with _driver(fleet, server) as driver:
        result = _runner.apply_policy(driver, _policy(tag, protect={"users": ["app2"]}, keep=2), check_mode=True)
    # Members s1, s3, s5 (s2 and s4 are app2's): keep s1 and s3.
    assert _names(result["terminated"], held) == ["s5"]
    assert result["terminated"][0]["group_size"] == 3
    assert _names(result["not_ended"], held) == ["s2", "s4"]
    assert {entry["reason"] for entry in result["not_ended"]} == {"protected"}


@pytest.mark.parametrize("server", SERVERS)
def test_check_mode_equals_the_real_run_and_a_second_run_ends_nothing(fleet, server):
    tag = new_tag("budget-real")
    held = _open(fleet, server, tag, [(f"r{i}", "app", "pool", False, False) for i in range(1, 5)])
    try:
        policy = _policy(tag, per="application", keep=2, keep_by="oldest")
        with _driver(fleet, server) as driver:
            dry = _runner.apply_policy(driver, policy, check_mode=True)
            real = _runner.apply_policy(driver, policy, check_mode=False)
            again = _runner.apply_policy(driver, policy, check_mode=False)
        assert _names(dry["terminated"], held) == _names(real["terminated"], held) == ["r3", "r4"]
        assert [(e["group"], e["group_size"], e["kept"]) for e in real["terminated"]] == [
            ({"application": tag + "-pool"}, 4, 2)
        ] * 2
        assert (
            real["groups"]
            == dry["groups"]
            == [{"rule": "budget", "group": {"application": tag + "-pool"}, "size": 4, "kept": 2, "ended": 2}]
        )
        assert real["changed"] is True and again["changed"] is False and again["terminated"] == []
        assert sorted(live_sessions(fleet, server, tag)) == sorted(held[name].id for name in ("r1", "r2"))
    finally:
        close_all(held.values())


@pytest.mark.parametrize("server", SERVERS)
def test_a_victim_that_moves_on_is_state_changed_and_the_group_is_not_re_ranked(fleet, server):
    tag = new_tag("budget-race")
    held = _open(fleet, server, tag, [(f"m{i}", "app", "pool", False, False) for i in range(1, 4)])
    try:
        with _driver(fleet, server) as driver:
            real_end = driver.end_sessions

            def end_after_a_statement(victims, mode):
                held["m3"].execute("SELECT 1")  # the planned victim runs a statement: it moved on
                return real_end(victims, mode)

            driver.end_sessions = end_after_a_statement
            result = _runner.apply_policy(driver, _policy(tag, keep=2, keep_by="oldest"), check_mode=False)
        assert result["terminated"] == []
        assert [(entry["id"], entry["reason"], entry["group_size"]) for entry in result["not_ended"]] == [
            (held["m3"].id, "state_changed", 3)
        ]
        # No other member was ended in its place: the group keeps three until the next run.
        assert sorted(live_sessions(fleet, server, tag)) == sorted(session.id for session in held.values())
    finally:
        close_all(held.values())


def test_a_bad_budget_fails_before_any_connection():
    policy = {"rules": [{"states": ["idle"], "per": ["user", "colour"], "keep": 2}]}
    # Nothing listens there: a connection would fail with another message.
    args = {"login_host": DOWN_ADDRESS, "login_user": "x", "policy": policy, "connect_timeout": 1}
    result, run = run_module("dbhygiene.sessions.postgresql_sessions", args)
    assert result.get("failed") is True, run.output
    assert result["field"] == "policy.rules[0].per[1]"
    assert result["msg"].startswith("policy.rules[0].per[1]: invalid group key 'colour'")


def test_the_roles_audit_in_process_and_enforce_on_the_host(fleet, tmp_path):
    tag = new_tag("budget-roles")
    held = {
        server: _open(fleet, server, tag, [(f"p{i}", "app", "pool", False, False) for i in (1, 2, 3)])
        for server in SERVERS
    }
    try:
        rule = {"name": "pool", "states": ["idle"], "applications": [tag + "-*"], "per": "application", "keep": 1}
        group_vars = {
            "dbhygiene_policy": {"name": "budget-" + tag, "rules": [rule], "limits": NO_LIMITS},
            "dbhygiene_report_dir": str(tmp_path / "reports"),
            "dbhygiene_audit_log": str(tmp_path / "audit.jsonl"),
        }
        inventory = write_inventory(fleet, tmp_path, dict(group_vars, dbhygiene_run_on="controller"), hosts=SERVERS)
        audit = run_playbook(AUDIT, inventory=inventory)
        assert audit.rc == 0, audit.output
        report = read_json(str(tmp_path / "reports" / "audit-latest.json"))
        markdown = open(str(tmp_path / "reports" / "audit-latest.md")).read()
        assert "## Groups over budget" in markdown
        for server in SERVERS:
            entry = report["hosts"][server]
            assert entry["groups_over_budget"] == [
                {"rule": "pool", "group": {"application": tag + "-pool"}, "size": 3, "kept": 1, "ended": 2}
            ]
            # Most recent first: p3 is kept.
            assert _names(entry["would_end"], held[server]) == ["p1", "p2"]
            assert f"| {server} | pool | application={tag}-pool | 3 | 1 | 2 |" in markdown.replace("\\_", "_")

        write_inventory(fleet, tmp_path, dict(group_vars, dbhygiene_run_on="host"), hosts=SERVERS)
        enforce = run_playbook(ENFORCE, inventory=inventory)
        assert enforce.rc == 0, enforce.output
        report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
        trail = read_trail(str(tmp_path / "audit.jsonl"))
        for server in SERVERS:
            assert _names(report["hosts"][server]["terminated"], held[server]) == ["p1", "p2"]
            assert report["hosts"][server]["groups_over_budget"][0]["ended"] == 2
            assert wait_until(lambda s=server: sorted(live_sessions(fleet, s, tag)) == [held[s]["p3"].id], timeout=30)
            lines = [line for line in trail if line["host"] == server and line["outcome"] == "terminated"]
            assert sorted((line["group_size"], line["kept"], line["rank"]) for line in lines) == [(3, 1, 2), (3, 1, 3)]
    finally:
        for sessions in held.values():
            close_all(sessions.values())
