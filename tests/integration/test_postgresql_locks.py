# -*- coding: utf-8 -*-
"""Lock-aware targeting on real PostgreSQL, built from real lock waits (issue 11).

Three scenes, each on a table of its own (fixture pg_lock_table) with sessions of
the login app (fixture pg_lockers) under the test's application prefix:

- a row queue: A updated row 1 in an open transaction; W1 and W2 update it too.
  PostgreSQL queues them as a chain: W1 waits on A's transaction, W2 on W1's
  tuple lock (A <- W1 <- W2).
- a DDL queue: A read the table in an open transaction; D runs ALTER TABLE and
  waits for A; S's SELECT queues behind D (A <- D <- S).
- a chain across rows: A holds row 1; B (in a transaction) updated row 2 and then
  waits for row 1; C waits for row 2, behind B (A <- B <- C).

The driver is asked directly for the records and the guard; the modules run
through Ansible (check mode, real run, and again) as the other module tests do.
"""

import time

import psycopg2
import pytest
from conftest import ids, lift_share_limit, run_module, wait_until

pytest.register_assert_rewrite("_postgresql_fixtures")
import _postgresql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import GUARD_STILL_WAITING
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy

pytest_plugins = ["_postgresql_fixtures"]

SERVER = "pg1"
SESSIONS = "dbhygiene.sessions.postgresql_sessions"
INFO = "dbhygiene.sessions.postgresql_session_info"
WAITED = 1.5  # seconds every waiter has waited before a rule of "1s" is run against it


@pytest.fixture
def locker(pg_lockers, pg_tag):
    return lambda name: pg_lockers(SERVER, f"{pg_tag}-{name}")


@pytest.fixture
def table(pg_lock_table):
    return pg_lock_table(SERVER)


def mine(d, tag):
    sessions = [s for s in d.list_sessions() if (s["application"] or "").startswith(tag)]
    return {s["id"]: s for s in sessions}


def annotated(fleet, tag):
    """(records by id, lock summary) of this test's sessions, as the runner sees them."""
    with fx.driver(fleet, SERVER) as d:
        sessions = mine(d, tag)
    locks = _planner.annotate_locks(list(sessions.values()))
    return sessions, locks


def waiting_on(fleet, tag, waiter, holder, at_least=0.0):
    """Wait until the driver lists `waiter` as waiting on `holder` for at least `at_least` seconds."""

    def ready():
        with fx.driver(fleet, SERVER) as d:
            record = mine(d, tag).get(waiter.id)
        return bool(record) and holder.id in record["blocked_by"] and record["lock_wait_seconds"] >= at_least

    assert wait_until(ready, timeout=15), f"{waiter.application} never waited on {holder.application}"


def row_queue(locker, table, fleet, tag):
    a = locker("a")
    a.run("BEGIN")
    a.run(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    w1 = locker("w1").start(f"UPDATE {table} SET v = v + 10 WHERE id = 1")
    waiting_on(fleet, tag, w1, a)
    w2 = locker("w2").start(f"UPDATE {table} SET v = v + 100 WHERE id = 1")
    waiting_on(fleet, tag, w2, w1)
    return a, w1, w2


def ddl_queue(locker, table, fleet, tag):
    a = locker("a")
    a.run("BEGIN")
    a.run(f"SELECT count(*) FROM {table}")
    d = locker("ddl").start(f"ALTER TABLE {table} ADD COLUMN extra int")
    waiting_on(fleet, tag, d, a)
    s = locker("select").start(f"SELECT count(*) FROM {table}")
    waiting_on(fleet, tag, s, d)
    return a, d, s


def chain(locker, table, fleet, tag):
    a = locker("a")
    a.run("BEGIN")
    a.run(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    b = locker("b")
    b.run("BEGIN")
    b.run(f"UPDATE {table} SET v = v + 1 WHERE id = 2")
    b.start(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    waiting_on(fleet, tag, b, a)
    c = locker("c").start(f"UPDATE {table} SET v = v + 1 WHERE id = 2")
    waiting_on(fleet, tag, c, b)
    return a, b, c


def login(fleet, **overrides):
    args = fx.conn_params(fleet, SERVER)
    del args["ssl_mode"]
    args.update(overrides)
    return args


def sessions_run(fleet, policy, check=False):
    args = login(fleet)
    args["policy"] = lift_share_limit(policy)
    return run_module(SESSIONS, args, check=check)


def scoped(tag, **rule):
    """A policy of one rule, scoped to this test's sessions."""
    rule.setdefault("name", "lock-rule")
    rule["applications"] = [tag + "-*"]
    return {"name": "locks", "rules": [rule]}


# ---------------------------------------------------------------- the records
def test_a_row_queue_is_a_chain_of_records(fleet, locker, table, pg_tag):
    a, w1, w2 = row_queue(locker, table, fleet, pg_tag)
    time.sleep(0.2)
    sessions, locks = annotated(fleet, pg_tag)
    root, first, second = sessions[a.id], sessions[w1.id], sessions[w2.id]
    assert root["blocked_by"] == [] and root["lock_wait_seconds"] is None and root["lock_kind"] is None
    assert root["state"] == "idle_in_transaction"
    assert (root["blocking"], root["blocking_seconds"]) == (2, first["lock_wait_seconds"])
    assert first["blocked_by"] == [a.id] and first["lock_kind"] == "transactionid"
    assert second["blocked_by"] == [w1.id] and second["lock_kind"] == "tuple"
    assert first["lock_wait_seconds"] > second["lock_wait_seconds"] > 0
    assert first["state"] == second["state"] == "active"
    assert (first["blocking"], second["blocking"]) == (1, 0)
    [found] = [c for c in locks["chains"] if c["root"] == a.id]
    assert found["visible"] is True and found["waiters"] == sorted([w1.id, w2.id])
    assert found["application"] == a.application and found["state"] == "idle_in_transaction"
    assert locks["cycles"] == []


def test_a_ddl_queue_is_a_chain_of_records(fleet, locker, table, pg_tag):
    a, d, s = ddl_queue(locker, table, fleet, pg_tag)
    sessions, dummy = annotated(fleet, pg_tag)
    assert sessions[d.id]["blocked_by"] == [a.id] and sessions[d.id]["lock_kind"] == "relation"
    assert sessions[s.id]["blocked_by"] == [d.id] and sessions[s.id]["lock_kind"] == "relation"
    assert sessions[a.id]["blocking"] == 2 and sessions[d.id]["blocking"] == 1


def test_the_least_privileged_login_sees_the_waits(fleet, locker, table, pg_tag, pg_role):
    # pg_read_all_stats and pg_signal_backend, as the least-privilege table says (docs/guides/getting-started.md):
    # nothing more.
    name = pg_tag.replace("-", "_") + "_hyg"
    password = pg_role(SERVER, name, "pg_read_all_stats", "pg_signal_backend")
    a, w1, w2 = row_queue(locker, table, fleet, pg_tag)
    with fx.driver(fleet, SERVER, user=name, login_password=password) as d:
        d.preflight(signal=True)
        sessions = mine(d, pg_tag)
    assert sessions[w1.id]["blocked_by"] == [a.id] and sessions[w2.id]["blocked_by"] == [w1.id]


def test_the_wait_is_measured_from_where_the_major_can(fleet, locker, table, pg_tag):
    # W's statement sleeps, then waits for A's row. From 14 on the wait starts at pg_locks.waitstart,
    # after the sleep; on 13 there is no waitstart and the wait is taken from W's state_change, the
    # statement's start, so the sleep counts as waiting (the over-estimate the README states).
    slept = 2.0
    a = locker("a")
    a.run("BEGIN")
    a.run(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    w = locker("w").start(f"DO $$ BEGIN PERFORM pg_sleep({slept}); UPDATE {table} SET v = v + 10 WHERE id = 1; END $$")
    waiting_on(fleet, pg_tag, w, a)
    seen = []

    def measured_as_the_major_can():
        with fx.driver(fleet, SERVER) as d:
            record = mine(d, pg_tag)[w.id]
            seen.append((d.version_num, record["query_seconds"], record["lock_wait_seconds"]))
        version_num, query_seconds, lock_wait_seconds = seen[-1]
        if version_num >= 140000:
            return query_seconds - lock_wait_seconds >= slept - 0.01
        return lock_wait_seconds >= slept and abs(query_seconds - lock_wait_seconds) < slept / 2

    assert wait_until(measured_as_the_major_can, timeout=10), seen[-3:]


# ---------------------------------------------------------------- the modules
def test_check_mode_names_the_root_blocker_the_real_run_ends_it_and_the_waiters_complete(fleet, locker, table, pg_tag):
    a, w1, w2 = row_queue(locker, table, fleet, pg_tag)
    waiting_on(fleet, pg_tag, w2, w1, at_least=WAITED)
    policy = scoped(pg_tag, name="root-blocker", blocking_longer_than="1s")

    result, run = sessions_run(fleet, policy, check=True)
    assert not result.get("failed"), run.output
    assert result["changed"] is True
    assert ids(result["terminated"]) == [a.id]
    [entry] = result["terminated"]
    assert entry["blocking"] == 2 and entry["blocking_seconds"] > WAITED and entry["blocked_by"] == []
    assert a.alive() and w1.waits() and w2.waits()  # check mode ended nothing

    result, run = sessions_run(fleet, policy)
    assert not result.get("failed"), run.output
    assert result["changed"] is True
    assert ids(result["terminated"]) == [a.id] and result["cancelled"] == [] and result["not_ended"] == []
    assert not a.alive()
    # The queue drains: both waiters get the row, in turn, and stay connected.
    assert w1.done() and w2.done()
    assert w1.error is None and w2.error is None
    assert w1.alive() and w2.alive()

    for check in (True, False):
        result, run = sessions_run(fleet, policy, check=check)
        assert not result.get("failed"), run.output
        assert result["changed"] is False and result["terminated"] == [], run.output


def test_waiters_are_never_ended_by_blocking_rules(fleet, locker, table, pg_tag):
    # In the chain, B waits on A and holds row 2 for C: blocking 1, but it waits, so it is no root.
    a, b, c = chain(locker, table, fleet, pg_tag)
    policy = {
        "name": "locks",
        "rules": [
            {"name": "at-least", "blocking_at_least": 1, "applications": [pg_tag + "-*"]},
            {"name": "longer", "blocking_longer_than": 0, "applications": [pg_tag + "-*"]},
        ],
    }
    result, run = sessions_run(fleet, policy, check=True)
    assert not result.get("failed"), run.output
    assert [(e["id"], e["rule"]) for e in result["terminated"]] == [(a.id, "at-least")]
    assert result["not_ended"] == []


def test_the_chain_ends_only_its_root(fleet, locker, table, pg_tag):
    a, b, c = chain(locker, table, fleet, pg_tag)
    policy = scoped(pg_tag, blocking_at_least=2)
    result, run = sessions_run(fleet, policy)
    assert not result.get("failed"), run.output
    assert ids(result["terminated"]) == [a.id]
    assert not a.alive()
    # B gets row 1 and, its transaction still open, now holds C up alone: a root with one waiter.
    assert b.done() and b.error is None and b.alive()
    assert c.alive() and c.waits()
    result, run = sessions_run(fleet, policy)
    assert not result.get("failed"), run.output
    assert result["changed"] is False and result["terminated"] == []  # 1 waiter < blocking_at_least 2
    b.run("COMMIT")
    assert c.done() and c.error is None and c.alive()


def test_waiting_longer_than_with_cancel_cancels_the_ddl_and_keeps_its_connection(fleet, locker, table, pg_tag):
    a, d, s = ddl_queue(locker, table, fleet, pg_tag)
    waiting_on(fleet, pg_tag, d, a, at_least=WAITED)
    policy = {
        "name": "stuck-ddl",
        "rules": [
            {
                "name": "stuck-ddl",
                "waiting_longer_than": "1s",
                "query_matches": "(?i)^\\s*alter\\s",
                "applications": [pg_tag + "-*"],
                "action": "cancel",
            }
        ],
    }
    result, run = sessions_run(fleet, policy, check=True)
    assert not result.get("failed"), run.output
    assert ids(result["cancelled"]) == [d.id] and result["terminated"] == []
    assert d.waits()

    result, run = sessions_run(fleet, policy)
    assert not result.get("failed"), run.output
    assert ids(result["cancelled"]) == [d.id] and result["terminated"] == []
    assert d.done() and isinstance(d.error, psycopg2.errors.QueryCanceled)
    assert d.alive() and d.run("SELECT 1") == [(1,)]  # the connection is kept
    # The SELECT queued behind the DDL runs now; A, the reader, is left alone.
    assert s.done() and s.error is None and s.rows == [(2,)]
    assert a.alive() and a.state() == "idle in transaction"

    result, run = sessions_run(fleet, policy)
    assert not result.get("failed") and result["changed"] is False and result["cancelled"] == [], run.output


def test_session_info_returns_the_chain(fleet, locker, table, pg_tag):
    a, b, c = chain(locker, table, fleet, pg_tag)
    result, run = run_module(INFO, login(fleet))
    assert not result.get("failed"), run.output
    [found] = [chain for chain in result["locks"]["chains"] if chain["root"] == a.id]
    assert found["waiters"] == sorted([b.id, c.id]) and found["blocking"] == 2
    assert found["visible"] is True and found["application"] == a.application
    assert found["blocking_seconds"] > 0
    assert result["locks"]["waiting"] >= 2 and result["locks"]["longest_wait_seconds"] >= found["blocking_seconds"]
    records = {s["id"]: s for s in result["sessions"]}
    assert records[b.id]["blocked_by"] == [a.id] and records[c.id]["blocked_by"] == [b.id]
    assert (records[a.id]["blocking"], records[b.id]["blocking"], records[c.id]["blocking"]) == (2, 1, 0)


# ---------------------------------------------------------------- the guard
def test_a_blocker_that_commits_between_plan_and_kill_is_not_ended(fleet, locker, table, pg_tag):
    a, w1, w2 = row_queue(locker, table, fleet, pg_tag)
    policy = parse_policy(lift_share_limit(scoped(pg_tag, blocking_at_least=1)))
    with fx.driver(fleet, SERVER) as d:
        sessions = d.list_sessions()
        _planner.annotate_locks(sessions)
        plan = _planner.plan(sessions, policy, own_id=d.own_id)
        assert [v["session"]["id"] for v in plan.victims] == [a.id]
        a.run("COMMIT")  # the race: the blocker finishes between plan and kill
        [(dummy, outcome, detail)] = d.end_sessions([plan.victims[0]["session"]], "terminate")
    assert outcome == "state_changed" and "when planned" in detail
    assert a.alive() and a.state() == "idle"
    assert w1.done() and w2.done() and w1.error is None and w2.error is None


def test_a_waiter_that_got_its_lock_is_not_cancelled_for_waiting(fleet, locker, pg_tag):
    # W waits on an advisory lock A holds, then sleeps in the same statement: once A lets go,
    # W keeps its state and state_change but waits no more.
    key = abs(hash(pg_tag)) % 1000000007
    a = locker("a")
    a.run(f"SELECT pg_advisory_lock({key})")
    w = locker("w").start(f"SELECT pg_advisory_lock({key}), pg_sleep(30)")
    waiting_on(fleet, pg_tag, w, a)
    with fx.driver(fleet, SERVER) as d:
        planned = mine(d, pg_tag)[w.id]
        assert planned["lock_kind"] == "advisory"
        a.run(f"SELECT pg_advisory_unlock({key})")
        assert wait_until(lambda: not w.waits())
        marked = dict(planned, **{GUARD_STILL_WAITING: True})
        [(dummy, outcome, detail)] = d.end_sessions([marked], "cancel")
        assert outcome == "state_changed" and "no longer waits" in detail
        assert w.state() == "active" and not w.done(0.2)
        # Unmarked (a rule that did not match it by waiting), the same session is still the same statement.
        [(dummy, outcome, detail)] = d.end_sessions([planned], "cancel")
        assert outcome == "cancelled"
    assert w.done() and isinstance(w.error, psycopg2.errors.QueryCanceled)
