# -*- coding: utf-8 -*-
"""Lock waits on real MariaDB servers: the records' lock fields, from the driver to the modules.

Every test builds its own lock waits on a table of its own (fixture `my_locks`):
a row updated in a transaction left open, sessions updating the same row behind
it, an ALTER TABLE behind a transaction that read the table, a chain A <- B <- C.
"""

import pymysql
import pytest
from conftest import wait_until

pytest.register_assert_rewrite("_mysql_fixtures")
import _mysql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import SessionError  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy  # noqa: E402

pytest_plugins = ["_mysql_fixtures"]

ER_QUERY_INTERRUPTED = 1317


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
    with fx.driver(fleet) as d:
        records = _until_waiting(d, my_locks, "first", "second")
        holder.execute("COMMIT")
        results = d.end_sessions([records["holder"]], "terminate")
    assert [r[1] for r in results] == ["state_changed"]
    assert holder.alive() and first.done(10) and second.done(10)


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
