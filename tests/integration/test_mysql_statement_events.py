# -*- coding: utf-8 -*-
"""The MariaDB guard on performance_schema's statement events, on a real server.

Where performance_schema's statement events are complete (the events_statements_current
consumer on, as MySQL 8 ships it and MariaDB does not; every statement instrument on), the
driver binds each idle victim to terminate to its thread's latest statement event
(bind_statement_events: the threads, their events, then the thread list again, which must
still show the planned QUERY_ID) and the guard block reads that thread's rows in
events_statements_current right before its KILL, instead of a scan of
information_schema.PROCESSLIST.

These tests switch the consumer on for the module (the fleet runs with it off) and try to
make that loop end a session it must not end: every move of test_mysql_guard_loop, made
right after the binding; a victim that moved before it; the consumer or a statement
instrument switched off after it; a thread that left. They check with `guard_counts` which
path each victim took.
"""

import pytest
from conftest import wait_until
from dbfleet import holder, mariadb

pytest.register_assert_rewrite("_mysql_fixtures")
import _mysql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import guard as my_guard  # noqa: E402
from test_mysql_guard_loop import (  # noqa: E402
    MOVES,
    assert_idle_enough,
    check_moved,
    end,
    move,
    open_moving,
    planned,
    scene,
    table,
)

pytest_plugins = ["_mysql_fixtures"]
__all__ = ["scene", "table"]  # fixtures of test_mysql_guard_loop, used here


@pytest.fixture(scope="module", autouse=True)
def statement_events(fleet):
    """The events_statements_current consumer on for this module, then as it was."""
    was_on = mariadb.set_statement_events(fleet.server(fx.SERVER), True)
    yield
    mariadb.set_statement_events(fleet.server(fx.SERVER), was_on)


def consumer(fleet, enabled):
    mariadb.set_statement_events(fleet.server(fx.SERVER), enabled)


def begin_instrument(fleet, enabled):
    with fx.admin(fleet) as cur:
        cur.execute(
            "UPDATE performance_schema.setup_instruments SET ENABLED = %s WHERE NAME = 'statement/sql/begin'",
            ("YES" if enabled else "NO",),
        )


def after_binding(d, action):
    """Run `action` right after the driver's next binding (before its guard block)."""
    original = d._bind_statement_events

    def bind(victims, mode):
        bound = original(victims, mode)
        action()
        return bound

    d._bind_statement_events = bind


def steps(statement_events=0, looped=0, own_step=0):
    return {"statement_events": statement_events, "looped": looped, "own_step": own_step}


def grew(d, before):
    return dict((key, d.guard_counts[key] - before[key]) for key in ("statement_events", "looped", "own_step"))


def end_counted(d, victims):
    before = dict(d.guard_counts)
    results, dummy = end(d, victims)
    return results, grew(d, before)


def test_sessions_that_moved_after_binding_are_refused_and_the_untouched_ended(fleet, scene):
    untouched = scene.open("untouched", 3)
    moved = dict((name, open_moving(scene, name)) for name in MOVES)
    scene.age()
    order = [moved["begin"], untouched[0]] + [moved[n] for n in MOVES if n != "begin"] + untouched[1:]
    with fx.driver(fleet) as d:
        victims = planned(d, order)
        assert_idle_enough(victims)
        after_binding(d, lambda: [move(scene, name, session) for name, session in moved.items()])
        results, counted = end_counted(d, victims)
    assert [results[s.id][0] for s in untouched] == ["terminated"] * len(untouched), results
    for name, session in moved.items():
        check_moved(scene, name, session, results[session.id])
        assert "statement event" in results[session.id][1], (name, results[session.id])
    # Every one of them was bound, and read on its statement events.
    assert counted == steps(statement_events=len(order)), counted
    assert wait_until(lambda: not holder.live(fleet.server(fx.SERVER), [s.id for s in untouched]))


def test_a_session_that_moved_before_the_binding_is_read_in_processlist(fleet, scene):
    """Moved between the listing and the binding: its QUERY_ID no longer the planned one, it is
    not bound, and the PROCESSLIST loop refuses it."""
    session = open_moving(scene, "begin_update")
    (untouched,) = scene.open("untouched")
    scene.age()
    with fx.driver(fleet) as d:
        victims = planned(d, [session, untouched])
        move(scene, "begin_update", session)
        results, counted = end_counted(d, victims)
    check_moved(scene, "begin_update", session, results[session.id])
    assert results[untouched.id][0] == "terminated", results
    assert counted == steps(statement_events=1, looped=1), counted


@pytest.mark.parametrize("switch", [consumer, begin_instrument], ids=["consumer", "instrument"])
def test_statement_events_switched_off_after_the_binding_end_nothing(fleet, scene, switch):
    """With the consumer or a statement instrument off, a BEGIN leaves no event: the guard
    refuses every bound victim, and their transactions stay."""
    sessions = scene.open("idle", 3)
    scene.age()
    try:
        with fx.driver(fleet) as d:
            victims = planned(d, sessions)

            def switch_and_begin():
                switch(fleet, False)
                sessions[1].execute("BEGIN")

            after_binding(d, switch_and_begin)
            results, counted = end_counted(d, victims)
    finally:
        switch(fleet, True)
    assert counted == steps(statement_events=3), counted
    for session in sessions:
        assert results[session.id] == ("state_changed", my_guard.EVENTS_OFF_DETAIL), results[session.id]
        assert session.alive()
    assert sessions[1].execute("SELECT @@in_transaction") == ((1,),)
    sessions[1].execute("ROLLBACK")


def test_a_thread_without_statement_events_is_read_in_processlist(fleet, scene):
    """Connected while the consumer was off and idle since: no row in events_statements_current,
    nothing to bind; it goes through the PROCESSLIST loop."""
    consumer(fleet, False)
    try:
        (early,) = scene.open("early")
    finally:
        consumer(fleet, True)
    (late,) = scene.open("late")
    scene.age()
    with fx.driver(fleet) as d:
        victims = planned(d, [early, late])
        results, counted = end_counted(d, victims)
    assert results[early.id][0] == results[late.id][0] == "terminated", results
    assert counted == steps(statement_events=1, looped=1), counted


def test_a_thread_that_left_after_the_binding_is_gone(fleet, scene):
    left, untouched = scene.open("idle", 2)
    scene.age()
    with fx.driver(fleet) as d:
        victims = planned(d, [left, untouched])

        def leave():
            left.close()
            assert wait_until(lambda: not left.alive())

        after_binding(d, leave)
        results, counted = end_counted(d, victims)
    assert results[left.id][0] == "gone", results[left.id]
    assert results[untouched.id][0] == "terminated", results[untouched.id]
    assert counted == steps(statement_events=2), counted
