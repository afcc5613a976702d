# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guarded end of PostgreSQL sessions: what is checked, its statement, how its rows read.

Private to the collection; pure (no psycopg2, no connection): ``guard_of`` takes from a
planned record what is checked again right before the signal, ``end_query`` builds the one
statement of a batch (``(sql, params)``, the values as driver parameters), ``outcome`` reads
one of its rows. ``driver.PostgreSQLDriver.end_sessions`` runs the batches.

The guard
---------
pg_stat_activity is a snapshot taken on first read and kept for the rest of
the transaction. The end statement therefore reads no view: for each victim
row it calls ``pg_stat_clear_snapshot()`` and then ``pg_stat_get_activity(pid)``
for that one pid, and the CASE that checks the row and calls the signal
function sits in the same LATERAL subquery as that read. The chain
victim -> clear -> read+signal is a data dependency (each step's input is a
column of the previous one), so the planner cannot hoist the read out of the
loop; the pids of one batch are distinct, so a Memoize node never reuses a
read. The test ``test_the_guard_reads_each_victim_afresh`` slows the rows down
and checks that each row saw a newer backend state.

The window that remains is inside one row: from the copy of the backend
status table (``pg_stat_get_activity`` copies every backend's entry, then
picks the pid) to the kill() of the signal function: less than the whole
per-row cost of the fresh read, which the benchmark (below) puts at 7 to 12
microseconds (batch fresh per row minus batch with one snapshot, per victim).
A session that sends a statement in those microseconds is still ended: the
engine has no compare-and-signal primitive that could close it.

Measured on the test fleet (PostgreSQL 15, 2 shared cores, load about 5), the
flipping race of tests/integration/test_postgresql_faults.py (40 sessions
flipping between 5-40 ms idle and a 4 ms statement or a short transaction,
ended when idle, wrong kills counted from the server log and the sessions):
0 wrong kills in 1,544 kills (5 runs); the previous guard, one snapshot per
batch statement, 111 wrong kills in 1,251 kills (4 runs).

Cost: tools/bench_postgresql_guard.py prints it against the unguarded
one-liner ``SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE ...``
and against two floors that check nothing (a fresh copy of the backend status
per victim; the same with the victim's row read by pg_stat_get_activity); the
figures and what they allow are in README.md, "The guarded kill on
PostgreSQL". In short: 2.5 to 3.5 times the one-liner, where the fresh state
read alone is 1.25 to 1.9 times. The driver keeps one statement per batch (25
round trips for 5,000 victims at 200 per batch, instead of 5,000).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    GUARD_STILL_WAITING,
    OUTCOMES,
    REASON_FAILED,
    REASON_GONE,
    REASON_STATE_CHANGED,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.connect import grant_hint
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.statements import (
    SIGNAL_FUNCTIONS,
    STATE_SQL,
    parse_key,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc

# The victims of one batch, as rows: the planned guard of each.
_VICTIMS_SQL = (
    "unnest(%(pids)s::int[], %(backend_starts)s::timestamptz[], %(states)s::text[], "
    "%(state_changes)s::timestamptz[], %(still_waiting)s::bool[]) "
    "WITH ORDINALITY AS v(pid, backend_start, state, state_change, still_waiting, ord)"
)

# One statement per batch, one fresh snapshot per victim (see "The guard" in
# the module docstring). For each row of v: c clears the backend status
# snapshot (a volatile call in a subquery's output: never pulled up, never
# dropped) and passes the pid on; a reads that one backend with
# pg_stat_get_activity(c.pid) and, in the same projection, reaches the signal
# function only when every guard of the CASE holds, in that order. The signal
# function is volatile, so the planner cannot evaluate it early. {signal} is
# one of two fixed function names.
_END_SQL = (
    "SELECT v.ord, a.outcome, a.pid IS NOT NULL AS pid_present, a.backend_start, a.state_now, "
    "a.state_change, a.target_superuser "
    "FROM " + _VICTIMS_SQL + " "
    "CROSS JOIN LATERAL (SELECT pg_stat_clear_snapshot() AS cleared, v.ord, v.pid) AS c "
    "LEFT JOIN LATERAL ("
    "SELECT s.pid, s.backend_start, s.state_change, "
    + STATE_SQL.format(col="s.state")
    + " AS state_now, COALESCE(r.rolsuper, false) AS target_superuser, "
    "CASE WHEN s.backend_start IS DISTINCT FROM v.backend_start "
    "OR s.backend_type IS DISTINCT FROM 'client backend' THEN 'gone' "
    "WHEN " + STATE_SQL.format(col="s.state") + " IS DISTINCT FROM v.state "
    "OR s.state_change IS DISTINCT FROM v.state_change THEN 'state_changed' "
    "WHEN v.still_waiting AND s.wait_event_type IS DISTINCT FROM 'Lock' THEN 'lock_released' "
    "WHEN NOT ((SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR (NOT COALESCE(r.rolsuper, false) "
    "AND (pg_has_role(s.usesysid, 'USAGE') OR pg_has_role('pg_signal_backend', 'USAGE')))) THEN 'denied' "
    "WHEN {signal}(s.pid) THEN 'signalled' "
    "ELSE 'gone' END AS outcome "
    "FROM pg_stat_get_activity(c.pid) AS s "
    "LEFT JOIN pg_roles AS r ON r.oid = s.usesysid "
    "WHERE s.pid = c.pid"
    ") AS a ON true "
    "ORDER BY v.ord"
)


def guard_of(session):
    """(pid, backend_start, state, state_change, still_waiting) to re-check before signalling.

    The identity comes from the key (reuse-safe by design), the state from the
    record as planned. ``still_waiting`` is True when the runner marked the
    victim GUARD_STILL_WAITING (its rule matched it by ``waiting_longer_than``):
    it is then signalled only while it still waits on a lock (wait_event_type
    'Lock'); a waiter that got its lock has moved on. ValueError when the record
    cannot be checked.
    """
    pid, backend_start = parse_key(session.get("key"))
    if str(session.get("id")) != str(pid):
        raise ValueError(f"session id {session.get('id')!r} does not match its key {session.get('key')!r}")
    still_waiting = bool(session.get(GUARD_STILL_WAITING))
    return (pid, backend_start, session.get("state"), session.get("state_since"), still_waiting)


def end_query(guards, mode):
    """(sql, params): the guarded end of one batch.

    ``guards`` are (pid, backend_start, state, state_change, still_waiting)
    tuples (timestamps as ISO 8601 text, state normalized; ``still_waiting``
    True: signal only if it still waits on a lock, see guard_of; a 4-tuple is
    one without that) with distinct pids (a Memoize node could otherwise reuse
    one pid's read for another row); ``mode`` is terminate or cancel.
    """
    if mode not in SIGNAL_FUNCTIONS:
        raise ValueError(f"mode must be terminate or cancel, not {mode!r}")
    pids = [guard[0] for guard in guards]
    if len(set(pids)) != len(pids):
        raise ValueError("a batch must not name one pid twice")
    params = {
        "pids": [guard[0] for guard in guards],
        "backend_starts": [guard[1] for guard in guards],
        "states": [guard[2] for guard in guards],
        "state_changes": [guard[3] for guard in guards],
        "still_waiting": [bool(guard[4]) if len(guard) > 4 else False for guard in guards],
    }
    return _END_SQL.format(signal=SIGNAL_FUNCTIONS[mode]), params


def query_templates():
    """The guard's statements, as templates (placeholders, never values)."""
    return [
        _END_SQL.format(signal=SIGNAL_FUNCTIONS["terminate"]),
        _END_SQL.format(signal=SIGNAL_FUNCTIONS["cancel"]),
    ]


def row_outcome(guard, row, mode, target, login_of):
    """(outcome, detail) of one victim from its row of end_query (``_driver.OUTCOMES``, a reason).

    `guard`: the victim's guard_of; `target`: the server, for messages; `login_of`: a function
    that gives our login's name (called only for a failure, to name the grant it lacks).
    """
    pid, backend_start, state, state_change = guard[:4]
    _ord, outcome, pid_present, now_start, state_now, change_now, target_superuser = row
    if outcome == "signalled":
        return (OUTCOMES[mode], None)
    if outcome in ("gone", None):
        if pid_present and iso_utc(now_start) != backend_start:
            return (
                REASON_GONE,
                f"pid {pid} now belongs to another session (started {iso_utc(now_start)}, planned {backend_start})",
            )
        return (REASON_GONE, "the session ended before it was signalled")
    if outcome == "lock_released":
        return (
            REASON_STATE_CHANGED,
            f"waited on a lock when planned (since {state_change}, {state}); it no longer waits: it got its lock",
        )
    if outcome == "state_changed":
        return (
            REASON_STATE_CHANGED,
            f"was {state} since {state_change} when planned, now {state_now} since {iso_utc(change_now)}",
        )
    login = login_of()
    if target_superuser:
        return (
            REASON_FAILED,
            f"cannot {mode} pid {pid} on {target}: it is a superuser's session and login {login} is "
            "not a superuser "
            "(keep protect.superusers true, or run as a superuser)",
        )
    return (
        REASON_FAILED,
        f"cannot {mode} pid {pid} on {target}: login {login} lacks pg_signal_backend; "
        f"{grant_hint(login, 'pg_signal_backend')}",
    )
