# -*- coding: utf-8 -*-
"""The loop of the MariaDB guard block over idle victims, on a real server.

Idle victims to terminate (Sleep, planned with a QUERY_ID, not lock waiters:
`looped_reread`) go through one loop of the guard block: per victim, a re-read of that
thread in information_schema.PROCESSLIST, then its KILL at once if it is still Sleep with
the planned QUERY_ID. Active victims, lock waiters and cancels keep one step each.

These tests try to make the loop end a session it must not end: one that did something
between planning and the guard (a statement, BEGIN, a ping, a change of database, a
prepared statement's execute, a statement under its own clock: SET timestamp), one that
left, one that belongs to another user or another client; many in one
block, and mixed with victims of the one-step kind;
and they check with `guard_counts` which path each victim took.

A victim is ended only once it was planned idle for IDLE_PROOF_SECONDS: each test opens
its sessions at once and lets them age AGE seconds together.
"""

import struct
import time
import uuid

import pymysql
import pytest
from conftest import wait_until
from dbfleet import holder

pytest.register_assert_rewrite("_mysql_fixtures")
import _mysql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import guard as my_guard  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import GUARD_STILL_WAITING  # noqa: E402

pytest_plugins = ["_mysql_fixtures"]

# Victims are placed by multiples of this in the tests of many victims (a leftover of
# the groups the loop once read at a time; any spread will do).
GROUP = 8
# Planned idle for about this long: above the driver's idle proof by a margin.
AGE = my_guard.IDLE_PROOF_SECONDS + 0.15


class Scene(object):
    """The sessions of one test (login app, application `<tag>-<name>-<n>`) and a table with
    one row per session (id = thread id) for the ones that write."""

    def __init__(self, fleet, table):
        self.fleet = fleet
        self.table = table
        self.tag = "t-%s" % uuid.uuid4().hex[:8]
        self.sessions = []
        self.statements = {}
        self.born = time.monotonic()

    def open(self, name, count=1, kind="idle", **kwargs):
        opened = []
        for index in range(count):
            session = holder.open_session(
                self.fleet, fx.SERVER, kind, application=f"{self.tag}-{name}-{index}", database="appdb", **kwargs
            )
            self.sessions.append(session)
            opened.append(session)
            if kind == "idle":
                session.execute(f"INSERT INTO {self.table} VALUES ({int(session.id)}, 0)")
        self.born = time.monotonic()
        return opened

    def one(self, name, **kwargs):
        (session,) = self.open(name, **kwargs)
        return session

    def age(self):
        """Wait until the last session opened has been idle for AGE seconds."""
        time.sleep(max(0.0, self.born + AGE - time.monotonic()))

    def close(self):
        for session in self.sessions:
            session.close()
        with fx.admin(self.fleet) as cur:
            cur.execute(
                f"DELETE FROM appdb.{self.table} WHERE id IN (%s)"
                % ", ".join(["0"] + [str(int(s.id)) for s in self.sessions])
            )


@pytest.fixture(scope="module")
def table(fleet):
    name = "gg_" + uuid.uuid4().hex[:8]
    with fx.admin(fleet) as cur:
        cur.execute(f"CREATE TABLE appdb.{name} (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB")
    yield name
    with fx.admin(fleet) as cur:
        cur.execute("SET SESSION lock_wait_timeout = 10")
        cur.execute(f"DROP TABLE IF EXISTS appdb.{name}")


@pytest.fixture
def scene(fleet, table):
    made = Scene(fleet, table)
    yield made
    made.close()


# ------------------------------------------------------------ the wire, for prepared statements
def prepare(conn, sql):
    """COM_STMT_PREPARE on a PyMySQL connection (it has no server-side statements); the statement id."""
    conn._execute_command(pymysql.constants.COMMAND.COM_STMT_PREPARE, sql)
    header = conn._read_packet().get_all_data()
    statement_id, columns, params = struct.unpack("<IHH", header[1:9])
    for count in (params, columns):
        for _dummy in range(count):
            conn._read_packet()
        if count:
            conn._read_packet()  # EOF
    return statement_id


def execute_prepared(conn, statement_id):
    """COM_STMT_EXECUTE of a statement without parameters; reads its result set away."""
    conn._execute_command(pymysql.constants.COMMAND.COM_STMT_EXECUTE, struct.pack("<IBI", statement_id, 0, 1))
    conn._read_packet()  # column count
    for _dummy in range(2):  # the column definitions, then the rows, each up to an EOF
        while not conn._read_packet().is_eof_packet():
            pass


# ------------------------------------------------------------ helpers
def planned(d, sessions):
    """The plan records of `sessions` (HeldSession), from one listing, in the same order."""
    by_id = dict((s["id"], s) for s in d.list_sessions())
    records = [by_id.get(session.id) for session in sessions]
    assert all(records), "not listed: %s" % [s.id for s, r in zip(sessions, records) if r is None]
    return records


def assert_idle_enough(records):
    assert all(
        r["command"] == "Sleep" and r["query_id"] is not None and r["idle_seconds"] >= my_guard.IDLE_PROOF_SECONDS
        for r in records
    ), records


def grew(d, before):
    return dict((key, d.guard_counts[key] - before[key]) for key in ("looped", "own_step"))


def end(d, victims, mode="terminate"):
    """end_sessions, checking that the outcomes come back in the order of the victims
    (the very records); {thread id: (outcome, detail)} and how guard_counts grew."""
    before = dict(d.guard_counts)
    results = d.end_sessions(victims, mode)
    assert [record is victim for (record, dummy, dummy2), victim in zip(results, victims)] == [True] * len(victims)
    assert len(results) == len(victims)
    return dict((record["id"], (outcome, detail)) for record, outcome, detail in results), grew(d, before)


def com_select(d):
    """The SELECTs our own connection ran so far (SHOW SESSION STATUS: Com_select)."""
    return int(d._fetch_one(("SHOW SESSION STATUS LIKE 'Com_select'", ()))[1])


def in_transaction(session):
    """Whether `session` is inside a transaction, asked on the session itself (INNODB_TRX, a
    cache InnoDB refreshes after 100 ms without a reader, may not show it yet)."""
    return session.execute("SELECT @@in_transaction") == ((1,),)


# ------------------------------------------------------------ a: moved since planning
UPDATE = "UPDATE {table} SET n = n + 1 WHERE id = {id}"
MOVES = {
    "begin": ["BEGIN"],
    "begin_update": ["BEGIN", UPDATE],
    "select": ["SELECT 1"],
    "ping": lambda scene, s: s.conn.ping(reconnect=False),
    "select_db": lambda scene, s: s.conn.select_db("appdb"),
    "stmt_execute": lambda scene, s: execute_prepared(s.conn, scene.statements[s.id]),
    # The session's own clock (SET timestamp, as mysqlbinlog output sets it before every
    # event; SET STATEMENT timestamp = ... FOR ...): the proof, QUERY_ID, does not follow it.
    # An hour back before planning, then BEGIN + UPDATE after planning:
    "clock_set_back": ["BEGIN", UPDATE],
    # standing at the moment it went idle, before planning; then the same:
    "clock_stands_still": ["BEGIN", UPDATE],
    # a plain session: BEGIN, then an UPDATE under its own clock an hour back, after planning:
    "clock_set_back_after_planning": ["BEGIN", "SET STATEMENT timestamp = UNIX_TIMESTAMP() - 3600 FOR " + UPDATE],
}
# Before planning (and before the session ages): what a move needs ready.
BEFORE = {
    "stmt_execute": lambda scene, s: scene.statements.__setitem__(s.id, prepare(s.conn, b"SELECT 1")),
    "clock_set_back": lambda scene, s: s.execute("SET timestamp = UNIX_TIMESTAMP() - 3600"),
    "clock_stands_still": lambda scene, s: s.execute("SET timestamp = UNIX_TIMESTAMP()"),
}
IN_TRANSACTION = ("begin", "begin_update", "clock_set_back", "clock_stands_still", "clock_set_back_after_planning")
CLOCKS = ("clock_set_back", "clock_stands_still", "clock_set_back_after_planning")


def open_moving(scene, name):
    session = scene.one(name)
    if name in BEFORE:
        BEFORE[name](scene, session)
    return session


def move(scene, name, session):
    step = MOVES[name]
    if callable(step):
        step(scene, session)
        return
    for statement in step:
        session.execute(statement.format(table=scene.table, id=int(session.id)))


def check_moved(scene, name, session, outcome):
    """A moved session: refused, still connected, its transaction (if it opened one) intact."""
    assert outcome[0] == "state_changed", (name, outcome)
    assert "new statement" in outcome[1], (name, outcome)
    assert session.alive(), name
    if name in IN_TRANSACTION:
        assert in_transaction(session), name
        session.execute("ROLLBACK")


def test_sessions_that_moved_after_planning_are_refused_and_the_untouched_ended(fleet, scene):
    untouched = scene.open("untouched", 3)
    moved = dict((name, open_moving(scene, name)) for name in MOVES)
    scene.age()
    # Interleaved: moved ones at the first and last places of the loop and between.
    order = [moved["begin"], untouched[0]] + [moved[n] for n in MOVES if n != "begin"] + untouched[1:]
    assert len(order) > GROUP
    with fx.driver(fleet) as d:
        victims = planned(d, order)
        assert_idle_enough(victims)
        assert all(my_guard.looped_reread(v, "terminate") for v in victims)
        for name, session in moved.items():
            move(scene, name, session)
        results, steps = end(d, victims)
    assert [results[s.id][0] for s in untouched] == ["terminated"] * len(untouched), results
    for name, session in moved.items():
        check_moved(scene, name, session, results[session.id])
    # All of them went through the loop.
    assert steps == {"looped": len(order), "own_step": 0}, steps
    assert wait_until(lambda: not holder.live(fleet.server(fx.SERVER), [s.id for s in untouched]))


@pytest.mark.parametrize("clock", CLOCKS)
def test_a_session_that_set_its_own_clock_is_refused_after_it_moved(fleet, scene, clock):
    """PROCESSLIST_TIME (performance_schema.threads) counts from the session's own clock, which
    fooled the former fast step; the loop's proof is QUERY_ID, which no clock moves."""
    session = open_moving(scene, clock)
    (untouched,) = scene.open("untouched")
    scene.age()
    with fx.driver(fleet) as d:
        victims = planned(d, [session, untouched])
        assert_idle_enough(victims)
        move(scene, clock, session)
        results, steps = end(d, victims)
    check_moved(scene, clock, session, results[session.id])
    assert results[untouched.id][0] == "terminated", results
    assert steps == {"looped": 2, "own_step": 0}, steps


# ------------------------------------------------------------ b: many victims in one block
def test_many_victims_are_each_reported_in_the_order_given(fleet, scene):
    """2 * GROUP + 3 idle victims in one call, moved ones spread over the loop (first,
    middle and last places), and two victims of the one-step kind among them: the driver
    hands the outcomes back in the order of the victims it was given."""
    count = 2 * GROUP + 3
    idle = scene.open("idle", count)
    active = scene.one("active", kind="active")
    waiter = scene.one("waiter")
    scene.age()
    # Places in the loop's order (the idle ones keep their order).
    moved_at = {0: "select", 5: "begin_update", GROUP: "begin_update", GROUP + GROUP - 1: "select", count - 1: "select"}
    with fx.driver(fleet) as d:
        records = planned(d, idle + [active, waiter])
        assert_idle_enough(records[:count])
        assert records[count]["state"] == "active"
        # planned as a lock waiter (waiting_longer_than matched it); it waits on nothing
        records[count + 1] = dict(records[count + 1], **{GUARD_STILL_WAITING: True})
        victims = (
            records[:3] + [records[count]] + records[3 : GROUP + 2] + [records[count + 1]] + records[GROUP + 2 : count]
        )
        for place, kind in moved_at.items():
            session = idle[place]
            for statement in ["BEGIN", UPDATE] if kind == "begin_update" else ["SELECT 1"]:
                session.execute(statement.format(table=scene.table, id=int(session.id)))
        results, steps = end(d, victims)
    for place, session in enumerate(idle):
        if place in moved_at:
            assert results[session.id][0] == "state_changed", (place, results[session.id])
            assert session.alive(), place
        else:
            assert results[session.id][0] == "terminated", (place, results[session.id])
    assert results[active.id][0] == "terminated", results[active.id]
    assert results[waiter.id][0] == "state_changed", results[waiter.id]
    assert waiter.alive()
    assert steps == {"looped": count, "own_step": 2}, steps
    for place, kind in moved_at.items():
        if kind == "begin_update":
            assert in_transaction(idle[place]), place
            idle[place].execute("ROLLBACK")
    ended = [s for place, s in enumerate(idle) if place not in moved_at] + [active]
    assert wait_until(lambda: not holder.live(fleet.server(fx.SERVER), [s.id for s in ended]))


# ------------------------------------------------------------ c: moved, left and untouched in one loop
def test_moved_left_and_untouched_victims_in_one_loop(fleet, scene):
    """Moved ones at several places of one loop are refused, a victim that left is gone, the
    others are ended."""
    count = 2 * GROUP + 2
    idle = scene.open("idle", count)
    scene.age()
    moved_at = {2: "select", GROUP - 1: "begin", GROUP + 1: "begin_update", 2 * GROUP + 1: "select_db"}
    left_at = 2 * GROUP - 2
    with fx.driver(fleet) as d:
        victims = planned(d, idle)
        assert_idle_enough(victims)
        for place, name in moved_at.items():
            move(scene, name, idle[place])
        idle[left_at].close()
        assert wait_until(lambda: not idle[left_at].alive())
        results, steps = end(d, victims)
    assert steps == {"looped": count, "own_step": 0}, steps
    for place, session in enumerate(idle):
        if place in moved_at:
            check_moved(scene, moved_at[place], session, results[session.id])
        elif place == left_at:
            assert results[session.id][0] == "gone", results[session.id]
        else:
            assert results[session.id][0] == "terminated", (place, results[session.id])


# ------------------------------------------------------------ d: who goes which way
def test_waiters_cancels_and_active_victims_go_one_step_each_the_idle_ones_through_the_loop(fleet, scene):
    idle = scene.open("idle", 2)
    in_trx = scene.one("in-trx", kind="idle_in_transaction")
    active = scene.one("active", kind="active")
    waiter = scene.one("waiter")
    no_query_id = scene.one("no-query-id")
    cancel_active = scene.one("cancel-active", kind="active")
    cancel_idle = scene.one("cancel-idle")
    scene.age()
    with fx.driver(fleet) as d:
        records = planned(d, idle + [in_trx, active, waiter, no_query_id, cancel_active, cancel_idle])
        by_id = dict((r["id"], r) for r in records)
        assert by_id[in_trx.id]["state"] == "idle_in_transaction", by_id[in_trx.id]
        assert by_id[active.id]["state"] == "active" and by_id[cancel_active.id]["state"] == "active"
        by_id[waiter.id] = dict(by_id[waiter.id], **{GUARD_STILL_WAITING: True})
        # A plan record without QUERY_ID (as a listing that could not read it would give)
        by_id[no_query_id.id] = dict(by_id[no_query_id.id], query_id=None)
        terminate = [by_id[s.id] for s in (active, idle[0], waiter, in_trx, no_query_id, idle[1])]
        assert [my_guard.looped_reread(v, "terminate") for v in terminate] == [False, True, False, True, False, True]
        results, steps = end(d, terminate)
        assert steps == {"looped": 3, "own_step": 3}, steps
        cancels = [by_id[cancel_active.id], by_id[cancel_idle.id]]
        assert not any(my_guard.looped_reread(v, "cancel") for v in cancels)
        cancelled, cancel_steps = end(d, cancels, "cancel")
        assert cancel_steps == {"looped": 0, "own_step": 2}, cancel_steps
    for session in idle + [in_trx, active]:
        assert results[session.id][0] == "terminated", (session.application, results[session.id])
    assert results[waiter.id][0] == "state_changed", results[waiter.id]
    # no QUERY_ID planned: the one step's proof for an idle thread is its start time
    assert results[no_query_id.id][0] == "terminated", results[no_query_id.id]
    assert waiter.alive()
    assert cancelled[cancel_active.id][0] == "cancelled", cancelled
    # (the runner never sends an idle victim to a cancel: nothing_to_cancel) KILL QUERY ID of
    # the statement it last ran touches nothing: the session stays and its next statement runs
    assert cancel_active.alive() and cancel_idle.alive()
    assert cancel_idle.execute("SELECT 1") == ((1,),)


# ------------------------------------------------------------ e: not the planned thread
def test_a_thread_that_left_or_is_another_users_or_clients_is_not_ended(fleet, scene):
    gone_session = scene.one("gone")
    other_user = scene.one("other-user")
    upper_user = scene.one("upper-user")
    other_port = scene.one("other-port")
    other_addr = scene.one("other-addr")
    (untouched,) = scene.open("untouched")
    scene.age()
    with fx.driver(fleet) as d:
        records = planned(d, [gone_session, other_user, upper_user, other_port, other_addr, untouched])
        gone_session.close()
        assert wait_until(lambda: not gone_session.alive())
        # The plan names another account or another client than the thread with that id has.
        assert records[2]["user"] == "app"
        records[1] = dict(records[1], user="fleet_admin")
        records[2] = dict(records[2], user="APP")  # MariaDB user names are case-sensitive
        address, port = records[3]["host"].rsplit(":", 1)
        records[3] = dict(records[3], host="%s:%d" % (address, int(port) + 1))
        records[4] = dict(records[4], host="127.0.0.99:" + records[4]["host"].rsplit(":", 1)[1])
        results, steps = end(d, records)
    assert results[gone_session.id][0] == "gone", results[gone_session.id]
    for session in (other_user, upper_user, other_port, other_addr):
        assert results[session.id][0] == "gone", (session.application, results[session.id])
        assert session.alive(), session.application
    assert results[untouched.id][0] == "terminated", results[untouched.id]
    assert steps == {"looped": 6, "own_step": 0}, steps


def test_another_users_thread_is_not_ended_by_a_one_step_victim_either(fleet, scene):
    """The same names, byte for byte, in a one-step victim (a lock waiter, a cancel)."""
    session = scene.one("upper-user", kind="active")
    with fx.driver(fleet) as d:
        (record,) = planned(d, [session])
        assert record["state"] == "active"
        victim = dict(record, user="APP")
        results, steps = end(d, [victim])
        cancelled, cancel_steps = end(d, [victim], "cancel")
    assert results[session.id][0] == "gone" and cancelled[session.id][0] == "gone", (results, cancelled)
    assert steps == cancel_steps == {"looped": 0, "own_step": 1}
    assert session.alive()
