# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guarded end of PostgreSQL sessions (module_utils/_postgresql/guard.py): its statement.

No database here: what the statement does on a server is tested in
tests/integration/test_postgresql_driver.py and test_postgresql_faults.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import GUARD_STILL_WAITING
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import guard as pg
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import statements
from test_postgresql_statements import row

GUARDS = [
    (101, "2024-01-01T00:00:00.123456+00:00", "idle", "2024-01-01T00:05:00+00:00"),
    (202, "2024-01-02T00:00:00+00:00", "idle_in_transaction", None),
]


@pytest.mark.parametrize("mode, function", [("terminate", "pg_terminate_backend"), ("cancel", "pg_cancel_backend")])
def test_end_query_is_one_guarded_statement(mode, function):
    sql, args = pg.end_query(GUARDS, mode)
    assert args == {
        "pids": [101, 202],
        "backend_starts": ["2024-01-01T00:00:00.123456+00:00", "2024-01-02T00:00:00+00:00"],
        "states": ["idle", "idle_in_transaction"],
        "state_changes": ["2024-01-01T00:05:00+00:00", None],
        "still_waiting": [False, False],
    }
    assert "%s(s.pid)" % function in sql
    other = "pg_cancel_backend" if function == "pg_terminate_backend" else "pg_terminate_backend"
    assert other not in sql
    # Every guard precedes the signal in the CASE, so the signal is reached only when all hold.
    signal_at = sql.index(function)
    for guard in (
        "s.backend_start IS DISTINCT FROM v.backend_start",
        "s.backend_type IS DISTINCT FROM 'client backend'",
        "IS DISTINCT FROM v.state",
        "s.state_change IS DISTINCT FROM v.state_change",
        "WHEN v.still_waiting AND s.wait_event_type IS DISTINCT FROM 'Lock' THEN 'lock_released'",
        "pg_has_role('pg_signal_backend', 'USAGE')",
    ):
        assert -1 < sql.index(guard) < signal_at, guard
    for value in ("101", "202", "2024-01-0"):
        assert value not in sql


def test_end_query_reads_each_victim_in_a_fresh_snapshot():
    sql, dummy = pg.end_query(GUARDS, "terminate")
    # No view read once for the whole statement: per row, a clear, then a read of that one pid.
    assert "pg_stat_activity" not in sql
    clear = sql.index("CROSS JOIN LATERAL (SELECT pg_stat_clear_snapshot() AS cleared, v.ord, v.pid) AS c")
    read = sql.index("LEFT JOIN LATERAL (")
    assert sql.index("FROM pg_stat_get_activity(c.pid) AS s") > read > clear
    # The check and the signal are computed in the same subquery as the read.
    assert read < sql.index("pg_terminate_backend(s.pid)") < sql.index(") AS a ON true")
    assert sql.count("pg_stat_clear_snapshot()") == 1 and sql.count("pg_stat_get_activity(") == 1
    assert pg._VICTIMS_SQL in sql


def test_end_query_refuses_a_pid_twice_in_one_batch():
    with pytest.raises(ValueError, match="one pid twice"):
        pg.end_query([GUARDS[0], (101,) + GUARDS[1][1:]], "terminate")


def test_end_query_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="terminate or cancel"):
        pg.end_query(GUARDS, "pg_reload_conf")


def test_end_query_still_takes_guards_without_the_wait_flag():
    assert pg.end_query(GUARDS, "cancel")[1]["still_waiting"] == [False, False]


# ---------------------------------------------------------------- the guard of a listed record
def test_the_guard_of_a_normalized_record_is_its_identity_and_planned_state():
    session = statements.normalize_row(row())
    assert pg.guard_of(session) == (
        4711,
        "2024-05-01T08:00:00.123456+00:00",
        "idle_in_transaction",
        "2024-05-01T08:05:00+00:00",
        False,
    )


def test_guard_refuses_a_record_whose_id_and_key_disagree():
    session = dict(statements.normalize_row(row()), id=4712)
    with pytest.raises(ValueError, match="does not match its key"):
        pg.guard_of(session)


def test_the_guard_of_a_waiter_planned_by_waiting_longer_than_requires_it_still_waits():
    session = statements.normalize_row(row(state="active", blocked_by=[3], lock_wait_seconds=5.0, lock_kind="relation"))
    assert pg.guard_of(session)[4] is False
    marked = dict(session, **{GUARD_STILL_WAITING: True})
    guard = pg.guard_of(marked)
    assert guard[4] is True
    sql, args = pg.end_query([guard, GUARDS[1]], "cancel")
    assert args["still_waiting"] == [True, False]


# ---------------------------------------------------------------- how a row of the end statement reads
def _row(outcome, pid_present=True, now_start=None, state_now=None, change_now=None, target_superuser=False):
    return (1, outcome, pid_present, now_start, state_now, change_now, target_superuser)


def _no_login():
    raise AssertionError("the login is read only for a failure")


def test_row_outcome_of_each_answer_of_the_guard():
    guard = GUARDS[0] + (False,)
    planned = datetime.datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    later = datetime.datetime(2024, 1, 3, tzinfo=datetime.timezone.utc)
    assert pg.row_outcome(guard, _row("signalled"), "cancel", "db1:5432", _no_login) == ("cancelled", None)
    assert pg.row_outcome(guard, _row("signalled"), "terminate", "db1:5432", _no_login) == ("terminated", None)
    assert pg.row_outcome(guard, _row("gone", now_start=planned), "cancel", "db1:5432", _no_login) == (
        "gone",
        "the session ended before it was signalled",
    )
    reused = pg.row_outcome(guard, _row(None, now_start=later), "cancel", "db1:5432", _no_login)
    assert reused[0] == "gone" and "pid 101 now belongs to another session" in reused[1]
    changed = pg.row_outcome(guard, _row("state_changed", state_now="active", change_now=later), "cancel", "db1", None)
    assert changed == (
        "state_changed",
        "was idle since 2024-01-01T00:05:00+00:00 when planned, now active since 2024-01-03T00:00:00+00:00",
    )
    assert pg.row_outcome(guard, _row("lock_released"), "cancel", "db1", _no_login)[0] == "state_changed"


def test_row_outcome_of_a_denied_signal_names_the_grant_or_the_superuser():
    guard = GUARDS[0]
    denied = pg.row_outcome(guard, _row("denied"), "terminate", "db1:5432", lambda: 'we"ird')
    assert denied == (
        "failed",
        'cannot terminate pid 101 on db1:5432: login we"ird lacks pg_signal_backend; '
        'GRANT pg_signal_backend TO "we""ird"',
    )
    superuser = pg.row_outcome(guard, _row("denied", target_superuser=True), "cancel", "db1:5432", lambda: "h")
    assert superuser[0] == "failed" and "it is a superuser's session and login h is not a superuser" in superuser[1]
