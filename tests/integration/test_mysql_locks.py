# -*- coding: utf-8 -*-
"""Lock waits on real MariaDB servers: the records' lock fields, from the driver to the modules.

Every test builds its own lock waits on a table of its own (fixture `my_locks`):
a row updated in a transaction left open, sessions updating the same row behind
it, an ALTER TABLE behind a transaction that read the table, a chain A <- B <- C.
"""

import pymysql
import pytest
from conftest import lift_share_limit, run_module, wait_until

pytest.register_assert_rewrite("_mysql_fixtures")
import _mysql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import GUARD_STILL_WAITING  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy  # noqa: E402

pytest_plugins = ["_mysql_fixtures"]

SESSIONS = "dbhygiene.sessions.mysql_sessions"
INFO = "dbhygiene.sessions.mysql_session_info"
ER_QUERY_INTERRUPTED = 1317
# Seconds every waiter has waited (as the driver reports it) before a rule of "1s" runs against it.
# An InnoDB wait is the lower bound of a start with whole seconds: up to a second less than the truth.
WAITED = 1.5


def _records(d, scene):
    return dict((s["application"][len(scene.tag) + 1 :], s) for s in fx.mine(d.list_sessions(), scene.tag))


def _until_waiting(d, scene, *names, timeout=10):
    """The scene's records once every named session waits for a lock (as the driver sees it)."""
    seen = {}

    def waiting():
        seen.update(_records(d, scene))
        return all(seen.get(name, {}).get("lock_wait_seconds") is not None for name in names)

    assert wait_until(waiting, timeout=timeout), dict((n, seen.get(n)) for n in names)
    return seen


def _row_waits(my_locks):
    """A transaction left open after updating row 1, and two sessions updating the same row behind it."""
    holder = my_locks.open("holder")
    my_locks.hold_row(holder)
    first, second = my_locks.open("first"), my_locks.open("second")
    first.start(my_locks.update_row())
    assert wait_until(lambda: first.alive() and not first.done())
    second.start(my_locks.update_row())
    return holder, first, second


def test_row_lock_waiters_name_the_transaction_they_wait_on(fleet, my_locks):
    holder, first, second = _row_waits(my_locks)
    with fx.driver(fleet) as d:
        facts = d.server_facts()
        assert facts["row_lock_waits_visible"] is True and facts["metadata_locks_visible"] is True
        records = _until_waiting(d, my_locks, "first", "second")
        own = d.own_id
    assert records["holder"]["state"] == "idle_in_transaction"
    assert records["holder"]["blocked_by"] == [] and records["holder"]["lock_wait_seconds"] is None
    assert records["holder"]["lock_kind"] is None
    assert records["first"]["state"] == "active" and records["first"]["blocked_by"] == [holder.id]
    assert records["first"]["lock_kind"] == "row"
    # InnoDB names every lock ahead in the queue: the holder, and the first waiter
    assert holder.id in records["second"]["blocked_by"]
    assert set(records["second"]["blocked_by"]) <= {holder.id, first.id}
    for name in ("first", "second"):
        wait = records[name]["lock_wait_seconds"]
        assert 0 <= wait <= records[name]["query_seconds"]
        assert own not in records[name]["blocked_by"]
    assert not first.done() and not second.done()


def test_the_lock_waits_come_in_the_listing_statement_itself(fleet, my_locks):
    _row_waits(my_locks)
    with fx.driver(fleet) as d:
        _until_waiting(d, my_locks, "first", "second")
        statements = []
        inner = d._execute

        def counted(query):
            statements.append(query[0])
            return inner(query)

        d._execute = counted
        records = _records(d, my_locks)
    assert records["first"]["blocked_by"]
    assert len(statements) == 1 and "INNODB_LOCK_WAITS" in statements[0] and "metadata_locks" in statements[0]


def test_an_alter_table_waits_on_the_transaction_that_read_the_table(fleet, my_locks):
    reader, alter, select = my_locks.open("reader"), my_locks.open("alter"), my_locks.open("select")
    reader.execute("BEGIN")
    reader.execute(f"SELECT * FROM {my_locks.table}")  # a transaction that only read the table, left open
    alter.start(f"ALTER TABLE {my_locks.table} ADD COLUMN extra INT")
    with fx.driver(fleet) as d:
        _until_waiting(d, my_locks, "alter")
        select.start(f"SELECT * FROM {my_locks.table}")  # queued behind the ALTER, which goes first
        records = _until_waiting(d, my_locks, "alter", "select")
    assert records["reader"]["state"] == "idle_in_transaction" and records["reader"]["blocked_by"] == []
    assert records["alter"]["blocked_by"] == [reader.id] and records["alter"]["lock_kind"] == "metadata"
    assert records["select"]["blocked_by"] == [alter.id] and records["select"]["lock_kind"] == "metadata"
    # no server table has when a metadata-lock wait began: the waiting statement's age
    assert records["alter"]["lock_wait_seconds"] == records["alter"]["query_seconds"]
    reader.execute("COMMIT")
    assert alter.done(10) and select.done(10) and alter.error is None and select.error is None


def test_a_chain_of_row_lock_waits(fleet, my_locks):
    a, b, c = my_locks.open("a"), my_locks.open("b"), my_locks.open("c")
    my_locks.hold_row(a, row=1)
    my_locks.hold_row(b, row=2)
    b.start(my_locks.update_row(1))  # b, holding row 2, waits for a
    with fx.driver(fleet) as d:
        _until_waiting(d, my_locks, "b")
        c.start(my_locks.update_row(2))  # c waits for b
        records = _until_waiting(d, my_locks, "b", "c")
    assert records["a"]["blocked_by"] == [] and records["b"]["blocked_by"] == [a.id]
    assert records["c"]["blocked_by"] == [b.id]


def test_ending_the_blocker_lets_its_waiters_complete(fleet, my_locks):
    holder, first, second = _row_waits(my_locks)
    with fx.driver(fleet) as d:
        records = _until_waiting(d, my_locks, "first", "second")
        results = d.end_sessions([records["holder"]], "terminate")
    assert [r[1] for r in results] == ["terminated"]
    assert wait_until(lambda: not holder.alive())
    assert first.done(10) and second.done(10)
    assert first.error is None and second.error is None and first.alive() and second.alive()


def test_cancelling_a_waiting_statement_keeps_its_connection(fleet, my_locks):
    holder, first, second = _row_waits(my_locks)
    with fx.driver(fleet) as d:
        records = _until_waiting(d, my_locks, "first", "second")
        results = d.end_sessions([records["first"]], "cancel")
    assert [r[1] for r in results] == ["cancelled"]
    assert first.done(10)
    assert isinstance(first.error, pymysql.MySQLError) and first.error.args[0] == ER_QUERY_INTERRUPTED
    assert first.alive() and first.execute("SELECT 1") == ((1,),)
    assert holder.alive() and not second.done()


def test_a_blocker_that_commits_between_plan_and_kill_is_not_ended(fleet, my_locks):
    holder, first, second = _row_waits(my_locks)
    policy = parse_policy(lift_share_limit(_scoped(my_locks, blocking_at_least=1)))
    with fx.driver(fleet) as d:
        _until_waiting(d, my_locks, "first", "second")
        sessions = d.list_sessions()
        _planner.annotate_locks(sessions)
        plan = _planner.plan(sessions, policy, own_id=d.own_id)
        assert [v["session"]["id"] for v in plan.victims] == [holder.id]
        holder.execute("COMMIT")  # the race: the blocker finishes between plan and kill
        [(dummy, outcome, detail)] = d.end_sessions([plan.victims[0]["session"]], "terminate")
    assert outcome == "state_changed" and "new statement" in detail
    assert holder.alive() and first.done(10) and second.done(10)
    assert first.error is None and second.error is None


def test_a_waiter_that_got_its_lock_is_not_cancelled_for_waiting(fleet, my_locks):
    # W waits for a GET_LOCK that A holds, then sleeps in the same statement: once A lets go,
    # W runs the same statement (same QUERY_ID) but waits no more.
    name = f"{my_locks.tag}-lock"
    a, w = my_locks.open("a"), my_locks.open("w")
    a.execute("SELECT GET_LOCK(%s, 0)", (name,))
    w.start(f"SELECT GET_LOCK('{name}', 30), SLEEP(30)")
    with fx.driver(fleet) as d:
        planned = _until_waiting(d, my_locks, "w")["w"]
        assert planned["lock_kind"] == "user_lock" and planned["blocked_by"] == [a.id]
        a.execute("SELECT RELEASE_LOCK(%s)", (name,))
        assert wait_until(lambda: _records(d, my_locks)["w"]["lock_wait_seconds"] is None)
        marked = dict(planned, **{GUARD_STILL_WAITING: True})
        [(dummy, outcome, detail)] = d.end_sessions([marked], "cancel")
        assert outcome == "state_changed" and "no longer waits" in detail
        assert not w.done(0.2)
        # Unmarked (a rule that did not match it by waiting), it is still the same statement.
        [(dummy, outcome, detail)] = d.end_sessions([planned], "cancel")
        assert outcome == "cancelled"
    assert w.done(10) and w.alive()


def test_without_the_metadata_lock_instrument_row_locks_still_show(fleet, my_locks):
    with fx.admin(fleet) as cur:
        cur.execute("UPDATE performance_schema.setup_instruments SET ENABLED = 'NO' WHERE NAME = %s", (_MDL,))
    try:
        holder, first, second = _row_waits(my_locks)
        alter = my_locks.open("alter")
        alter.start(f"ALTER TABLE {my_locks.table} ADD COLUMN extra INT")  # waits behind all three
        with fx.driver(fleet) as d:
            assert d.server_facts()["metadata_locks_visible"] is False
            d.preflight(signal=True)  # an instrument that is off is no missing right
            records = _until_waiting(d, my_locks, "first")

            def alter_running():  # alter.start() only sends it: wait until the server runs it
                records.update(_records(d, my_locks))
                return records.get("alter", {}).get("state") == "active"

            assert wait_until(alter_running), records.get("alter")
            assert "metadata_locks" not in d.query_templates()[0]
    finally:
        with fx.admin(fleet) as cur:
            cur.execute("UPDATE performance_schema.setup_instruments SET ENABLED = 'YES' WHERE NAME = %s", (_MDL,))
    assert records["first"]["blocked_by"] == [holder.id]
    # what is not visible then: the ALTER TABLE waits, unseen
    assert records["alter"]["state"] == "active" and records["alter"]["lock_wait_seconds"] is None


_MDL = "wait/lock/metadata/sql/mdl"


def test_the_preflight_names_the_lock_grants_only_where_needed(fleet, my_user, my_locks):
    user, password = my_user(grants=fx.LEAST_PRIVILEGE_GRANTS[:3])  # all but the two lock grants
    holder, first, second = _row_waits(my_locks)
    with fx.driver(fleet, user=user, password=password) as d:
        assert d.server_facts()["metadata_locks_visible"] is False
        d.preflight(signal=False)  # the info module lists, with the row-lock waits
        records = _until_waiting(d, my_locks, "first")
        assert records["first"]["blocked_by"] == [holder.id]
        d.preflight(signal=True, policy=parse_policy({"rules": [{"users": ["x"]}]}))  # no lock condition
        with pytest.raises(SessionError) as caught:
            d.preflight(signal=True)
    message = str(caught.value)
    assert f"GRANT SELECT ON performance_schema.metadata_locks TO '{user}'@'%'" in message
    assert f"GRANT SELECT ON performance_schema.threads TO '{user}'@'%'" in message
    assert password not in message
    with fx.driver(fleet) as d:
        d.preflight(signal=True)  # the fleet's least-privilege login has them


# ---------------------------------------------------------------- the modules
def _scoped(scene, **rule):
    """A policy of one rule, scoped to this test's sessions."""
    rule.setdefault("name", "lock-rule")
    rule["applications"] = [scene.tag + "-*"]
    return {"name": "locks", "rules": [rule]}


def _run(fleet, policy, check=False, **conn):
    args = fx.module_conn(fleet, **conn)
    args.update(policy=lift_share_limit(policy), wait_timeout=5)
    return run_module(SESSIONS, args, check=check)


def _ids(entries):
    return sorted(entry["id"] for entry in entries)


def _waited(fleet, scene, *names):
    """Until each named session has waited WAITED seconds, as the driver reports it."""
    with fx.driver(fleet) as d:
        assert wait_until(
            lambda: all((_records(d, scene)[name]["lock_wait_seconds"] or 0) >= WAITED for name in names),
            timeout=15,
        ), names


def _chain(my_locks):
    """A <- B <- C: A holds row 1; B holds row 2 and waits for row 1; C waits for row 2."""
    a, b, c = my_locks.open("a"), my_locks.open("b"), my_locks.open("c")
    my_locks.hold_row(a, row=1)
    my_locks.hold_row(b, row=2)
    b.start(my_locks.update_row(1))
    with fx.driver(my_locks.fleet) as d:
        _until_waiting(d, my_locks, "b")
        c.start(my_locks.update_row(2))
        _until_waiting(d, my_locks, "b", "c")
    return a, b, c


def test_check_mode_names_the_root_blocker_the_real_run_ends_it_and_the_waiters_complete(fleet, my_locks):
    holder, first, second = _row_waits(my_locks)
    _waited(fleet, my_locks, "first", "second")
    policy = _scoped(my_locks, name="root-blocker", states=["idle_in_transaction"], blocking_longer_than="1s")

    result, run = _run(fleet, policy, check=True)
    assert not result.get("failed"), run.output
    assert result["changed"] is True and _ids(result["terminated"]) == [holder.id]
    [entry] = result["terminated"]
    assert entry["blocking"] == 2 and entry["blocking_seconds"] >= WAITED and entry["blocked_by"] == []
    assert holder.alive() and not first.done() and not second.done()  # check mode ended nothing

    result, run = _run(fleet, policy)
    assert not result.get("failed"), run.output
    assert result["changed"] is True and _ids(result["terminated"]) == [holder.id]
    assert result["cancelled"] == [] and result["not_ended"] == []
    assert not holder.alive()
    # the queue drains: both waiters get the row, in turn, and stay connected
    assert first.done(10) and second.done(10) and first.error is None and second.error is None
    assert first.alive() and second.alive()

    for check in (True, False):
        result, run = _run(fleet, policy, check=check)
        assert not result.get("failed"), run.output
        assert result["changed"] is False and result["terminated"] == [], run.output


def test_waiters_are_never_ended_by_blocking_rules(fleet, my_locks):
    # In the chain, B waits on A and holds row 2 for C: it blocks one, but it waits, so it is no root.
    a, b, c = _chain(my_locks)
    policy = {
        "name": "locks",
        "rules": [
            {"name": "at-least", "blocking_at_least": 1, "applications": [my_locks.tag + "-*"]},
            {"name": "longer", "blocking_longer_than": 0, "applications": [my_locks.tag + "-*"]},
        ],
    }
    result, run = _run(fleet, policy, check=True)
    assert not result.get("failed"), run.output
    assert [(e["id"], e["rule"]) for e in result["terminated"]] == [(a.id, "at-least")]
    assert result["not_ended"] == []


def test_the_chain_ends_only_its_root(fleet, my_locks):
    a, b, c = _chain(my_locks)
    policy = _scoped(my_locks, blocking_at_least=2)
    result, run = _run(fleet, policy)
    assert not result.get("failed"), run.output
    assert _ids(result["terminated"]) == [a.id]
    assert not a.alive()
    # B gets row 1 and, its transaction still open, now holds C up alone: a root with one waiter
    assert b.done(10) and b.error is None and b.alive()
    assert c.alive() and not c.done()
    result, run = _run(fleet, policy)
    assert not result.get("failed"), run.output
    assert result["changed"] is False and result["terminated"] == []  # 1 waiter < blocking_at_least 2
    b.execute("COMMIT")
    assert c.done(10) and c.error is None and c.alive()


def test_waiting_longer_than_with_cancel_cancels_the_alter_and_keeps_its_connection(fleet, my_locks):
    reader, alter, select = my_locks.open("reader"), my_locks.open("alter"), my_locks.open("select")
    reader.execute("BEGIN")
    reader.execute(f"SELECT * FROM {my_locks.table}")
    alter.start(f"ALTER TABLE {my_locks.table} ADD COLUMN extra INT")
    with fx.driver(fleet) as d:
        _until_waiting(d, my_locks, "alter")
    select.start(f"SELECT COUNT(*) FROM {my_locks.table}")
    _waited(fleet, my_locks, "alter")
    policy = {
        "name": "stuck-ddl",
        "rules": [
            {
                "name": "stuck-ddl",
                "waiting_longer_than": "1s",
                "query_matches": "(?i)^\\s*alter\\s",
                "applications": [my_locks.tag + "-*"],
                "action": "cancel",
            }
        ],
    }
    result, run = _run(fleet, policy, check=True)
    assert not result.get("failed"), run.output
    assert _ids(result["cancelled"]) == [alter.id] and result["terminated"] == []
    assert not alter.done()

    result, run = _run(fleet, policy)
    assert not result.get("failed"), run.output
    assert _ids(result["cancelled"]) == [alter.id] and result["terminated"] == []
    assert alter.done(10) and isinstance(alter.error, pymysql.MySQLError)
    assert alter.error.args[0] == ER_QUERY_INTERRUPTED
    assert alter.alive() and alter.execute("SELECT 1") == ((1,),)  # the connection is kept
    # the SELECT queued behind the ALTER runs now; the reader is left alone
    assert select.done(10) and select.error is None
    with fx.driver(fleet) as d:
        assert _records(d, my_locks)["reader"]["state"] == "idle_in_transaction"

    result, run = _run(fleet, policy)
    assert not result.get("failed") and result["changed"] is False and result["cancelled"] == [], run.output


def test_session_info_returns_the_chain(fleet, my_locks):
    a, b, c = _chain(my_locks)
    result, run = run_module(INFO, fx.module_conn(fleet))
    assert not result.get("failed"), run.output
    [found] = [chain for chain in result["locks"]["chains"] if chain["root"] == a.id]
    assert found["waiters"] == sorted([b.id, c.id]) and found["blocking"] == 2
    assert found["visible"] is True and found["application"] == a.application
    assert found["state"] == "idle_in_transaction"
    assert result["locks"]["waiting"] >= 2 and result["locks"]["cycles"] == []
    records = {s["id"]: s for s in result["sessions"]}
    assert records[b.id]["blocked_by"] == [a.id] and records[c.id]["blocked_by"] == [b.id]
    assert records[b.id]["lock_kind"] == records[c.id]["lock_kind"] == "row"
    assert (records[a.id]["blocking"], records[b.id]["blocking"], records[c.id]["blocking"]) == (2, 1, 0)
    assert result["server"]["metadata_locks_visible"] is True and result["server"]["row_lock_waits_visible"] is True


def test_a_lock_policy_needs_the_lock_grants(fleet, my_user, my_locks):
    login, password = my_user(grants=fx.LEAST_PRIVILEGE_GRANTS[:3])
    policy = _scoped(my_locks, waiting_longer_than="1s", action="cancel")
    result, run = _run(fleet, policy, check=True, user=login, password=password)
    assert result.get("failed") is True, run.output
    assert "GRANT SELECT ON performance_schema.metadata_locks" in result["msg"]
    assert "GRANT SELECT ON performance_schema.threads" in result["msg"] and password not in result["msg"]
    # a policy without lock conditions does without them
    result, run = _run(fleet, _scoped(my_locks, idle_longer_than="1h"), check=True, user=login, password=password)
    assert not result.get("failed"), run.output
