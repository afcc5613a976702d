# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""performance_schema's statement events, which a MariaDB guard loop re-reads instead of
the thread list: whether they are complete, and idle victims bound to their latest event.

Private to the collection. Standard library only; read by ``kill.GuardedKill`` right after
the plan's listing, used by ``guard.MariaDBGuard.guard_block``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.statements import (
    IDLE_COMMAND,
)

# performance_schema.events_statements_current shows every command of a thread (a statement, a
# ping, a change of database, a prepared statement's execute: each a new EVENT_ID, as each moves
# PROCESSLIST.QUERY_ID) only while these consumers are on and no statement instrument is off.
STATEMENT_EVENT_CONSUMERS = ("global_instrumentation", "thread_instrumentation", "events_statements_current")
STATEMENT_INSTRUMENTS = "statement/%"
# How many of those consumers are on (params: STATEMENT_EVENT_CONSUMERS); how many statement
# instruments are off (params: STATEMENT_INSTRUMENTS). Read by the driver before the binding
# and again inside the guard block.
CONSUMERS_ON = (
    "(SELECT COUNT(*) FROM performance_schema.setup_consumers "
    f"WHERE NAME IN ({', '.join(['%s'] * len(STATEMENT_EVENT_CONSUMERS))}) AND ENABLED = 'YES')"
)
INSTRUMENTS_OFF = "(SELECT COUNT(*) FROM performance_schema.setup_instruments WHERE NAME LIKE %s AND ENABLED <> 'YES')"


def statement_events_query():
    """(sql, params): one row (consumers on, statement instruments off, @@performance_schema);
    statement events are complete when it is (all the consumers, 0, 1)."""
    return (
        f"SELECT {CONSUMERS_ON}, {INSTRUMENTS_OFF}, @@performance_schema",
        STATEMENT_EVENT_CONSUMERS + (STATEMENT_INSTRUMENTS,),
    )


def statement_events_complete(row):
    return bool(row) and tuple(int(value or 0) for value in row[:3]) == (len(STATEMENT_EVENT_CONSUMERS), 0, 1)


# The binding reads (after the plan's listing): each client thread's THREAD_ID, each thread's
# latest statement event, then the thread list again (see bind_statement_events).
BIND_THREADS_SQL = (
    "SELECT PROCESSLIST_ID, THREAD_ID FROM performance_schema.threads "
    "WHERE PROCESSLIST_ID IS NOT NULL AND INSTRUMENTED = 'YES'"
)
BIND_EVENTS_SQL = (
    "SELECT THREAD_ID, MAX(EVENT_ID), SUM(END_EVENT_ID IS NULL) "
    "FROM performance_schema.events_statements_current GROUP BY THREAD_ID"
)
BIND_THREAD_LIST_SQL = "SELECT ID, USER, HOST, COMMAND, QUERY_ID FROM information_schema.PROCESSLIST"


def bind_statement_events(victims, threads, events, thread_list):
    """{index in victims: (THREAD_ID, EVENT_ID)} for the victims the performance_schema loop can
    guard, from the rows of BIND_THREADS_SQL, BIND_EVENTS_SQL and then BIND_THREAD_LIST_SQL,
    read in that order after the plan's listing.

    A victim is bound when its thread is instrumented, its latest statement event has ended,
    and the thread list read after that event still shows it as planned (same user byte for
    byte, client host:port, Sleep, the planned QUERY_ID): no command came between the listing
    and the second thread list, so the event read in between is the one of the listing's
    state. From then on an unchanged latest EVENT_ID proves "no command since planning" as
    the unchanged QUERY_ID does.
    """
    thread_ids = dict((int(row[0]), int(row[1])) for row in threads if row[0] is not None)
    latest = dict((int(row[0]), (row[1], int(row[2] or 0))) for row in events if row[1] is not None)
    now = {}
    for row in thread_list:
        user = row[1].decode("utf-8", "replace") if isinstance(row[1], bytes) else row[1]
        now[int(row[0])] = (user, row[2], row[3], row[4])
    bound = {}
    for index, victim in enumerate(victims):
        thread = thread_ids.get(int(victim["id"]))
        event = latest.get(thread) if thread is not None else None
        if event is None or event[1] != 0:
            continue
        seen = now.get(int(victim["id"]))
        planned = (victim.get("user"), victim.get("host"), IDLE_COMMAND, victim.get("query_id"))
        if seen is not None and seen[:3] == planned[:3] and seen[3] is not None and int(seen[3]) == int(planned[3]):
            bound[index] = (thread, int(event[0]))
    return bound
