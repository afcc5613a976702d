# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The statements of the PostgreSQL driver, and their rows as session records.

Private to the collection; pure (no psycopg2, no connection): every query
builder returns ``(sql, params)`` with the values as driver parameters, and is
unit tested without a database; ``quote_ident`` quotes the identifiers that cannot be
parameters (the drain's and the timeouts' statements use it too). ``driver`` connects
and runs them; the guarded end's statement is in ``guard`` (the MySQL side is the
same split, in ``_mysql/``).

Locks
-----
The listing also says who waits on whom (``blocked_by``, ``lock_wait_seconds``,
``lock_kind``), in the same statement and snapshot: pg_stat_activity is read
once (CTE ``act``), ``pg_blocking_pids()`` is called only for the backends
waiting on a heavyweight lock, and pg_locks is read once, only when one waits.
Cost (tools/bench_postgresql_locks.py, PostgreSQL 15, 1,000 idle sessions,
medians of the paired differences over 61 rotating rounds, on the shared
2-core machine at load 6 to 26, so within a millisecond or two)::

    listing                                 no lock waits   50 waiting on one row
    before (no lock columns)                      0                0
    this listing                              +0.05 to +0.9 ms   +2.4 to +3.3 ms
    pg_blocking_pids() on every row           +2.4 to +2.5 ms   +2.2 to +3.5 ms

The wait graph itself (_planner.annotate_locks) takes 0.25 ms on those 1,000
records, 1.6 to 3.6 ms with the 50 waiters in one row queue.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import zlib

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    QUERY_MAX_CHARS,
    ROLE_PRIMARY,
    ROLE_STANDBY,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._redact import redact_statement
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc

# The session advisory lock one sweep per server (per database we connect to)
# holds: a fixed bigint derived from the lock's name.
SWEEP_LOCK_NAME = "dbhygiene.sessions.sweep"
SWEEP_LOCK_KEY = zlib.crc32(SWEEP_LOCK_NAME.encode("ascii"))
# The functions that end a session, by mode (the guard's and the drain's).
SIGNAL_FUNCTIONS = {"terminate": "pg_terminate_backend", "cancel": "pg_cancel_backend"}


def quote_ident(name, params=True):
    """`name` as a double-quoted PostgreSQL identifier, its double quotes doubled.

    Identifiers cannot be statement parameters. Every statement the drivers send goes with
    parameters (``cursor.execute(sql, params)``), where a ``%`` is the driver's placeholder
    mark: with `params` (the default) a ``%`` in the name is doubled too, so the server gets it
    back as written; ``params=False`` for a statement sent without parameters.
    Raises ValueError for what is no identifier: not a str, empty, or with a NUL character.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"not an identifier: {name!r}")
    quoted = '"' + name.replace('"', '""') + '"'
    return quoted.replace("%", "%%") if params else quoted


# ---------------------------------------------------------------- SQL
# pg_stat_activity.state -> the normalized states of docs/architecture.md "The normalized session record".
STATE_SQL = (
    "CASE {col} WHEN 'active' THEN 'active' WHEN 'idle' THEN 'idle' "
    "WHEN 'idle in transaction' THEN 'idle_in_transaction' "
    "WHEN 'idle in transaction (aborted)' THEN 'idle_in_transaction_aborted' "
    "ELSE 'other' END"
)

# Who waits on whom, in the same statement (one snapshot) as the sessions.
# pg_blocking_pids() takes the lock manager's partition locks, so it is called
# only for backends waiting on a heavyweight lock (wait_event_type 'Lock'); it
# already names the leader of a parallel query when a worker holds the lock.
# A parallel worker that waits counts for its leader (leader_pid, 13+). The wait
# starts at pg_locks.waitstart (14+; null for an instant after the wait began),
# else at the waiter's state_change (10-13: when its current statement began,
# so the wait may be over-estimated by the statement's time before the wait).
LOCK_WAITSTART_VERSION_NUM = 140000
LEADER_PID_VERSION_NUM = 130000

_LIST_SQL = (
    "WITH act AS (SELECT a.*, {lock_group} AS lock_group FROM pg_stat_activity AS a), "
    "waits AS ("
    "SELECT w.lock_group AS pid, array_agg(DISTINCT b.holder ORDER BY b.holder) AS blocked_by, "
    "min(l.locktype) AS lock_kind, min({wait_start}) AS lock_wait_start "
    "FROM act AS w "
    "CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(holder) "
    "LEFT JOIN pg_locks AS l ON l.pid = w.pid AND NOT l.granted "
    "WHERE w.wait_event_type = 'Lock' AND w.pid <> pg_backend_pid() AND b.holder <> w.lock_group "
    "GROUP BY w.lock_group) "
    "SELECT a.pid, a.backend_start, a.usename, a.datname, a.application_name, "
    "host(a.client_addr) AS client_addr, a.client_port, a.client_hostname, "
    + STATE_SQL.format(col="a.state")
    + " AS state, a.state AS raw_state, a.state_change, a.query_start, a.xact_start, "
    "EXTRACT(EPOCH FROM (n.now - a.backend_start))::float8 AS connected_seconds, "
    "EXTRACT(EPOCH FROM (n.now - a.state_change))::float8 AS idle_seconds, "
    "CASE WHEN a.state = 'active' THEN EXTRACT(EPOCH FROM (n.now - a.query_start))::float8 END "
    "AS query_seconds, "
    "EXTRACT(EPOCH FROM (n.now - a.xact_start))::float8 AS transaction_seconds, "
    "left(a.query, %(query_max)s) AS query, a.backend_type, a.wait_event_type, a.wait_event, "
    "COALESCE(r.rolsuper, false) AS superuser, "
    "lw.blocked_by, EXTRACT(EPOCH FROM (n.now - lw.lock_wait_start))::float8 AS lock_wait_seconds, lw.lock_kind "
    "FROM act AS a "
    "CROSS JOIN (SELECT clock_timestamp() AS now) AS n "
    "LEFT JOIN pg_roles AS r ON r.oid = a.usesysid "
    "LEFT JOIN waits AS lw ON lw.pid = a.pid "
    "WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() "
    "AND a.application_name IS DISTINCT FROM %(own_application)s "
    "ORDER BY a.pid"
)


def _list_sql(version_num):
    """The listing for a server of `version_num` (None: the newest)."""
    newest = version_num is None
    lock_group = "COALESCE(a.leader_pid, a.pid)" if newest or version_num >= LEADER_PID_VERSION_NUM else "a.pid"
    wait_start = (
        "COALESCE(l.waitstart, w.state_change)"
        if newest or version_num >= LOCK_WAITSTART_VERSION_NUM
        else "w.state_change"
    )
    return _LIST_SQL.format(lock_group=lock_group, wait_start=wait_start)


_LIST_COLUMNS = (
    "pid",
    "backend_start",
    "usename",
    "datname",
    "application_name",
    "client_addr",
    "client_port",
    "client_hostname",
    "state",
    "raw_state",
    "state_change",
    "query_start",
    "xact_start",
    "connected_seconds",
    "idle_seconds",
    "query_seconds",
    "transaction_seconds",
    "query",
    "backend_type",
    "wait_event_type",
    "wait_event",
    "superuser",
    "blocked_by",
    "lock_wait_seconds",
    "lock_kind",
)

# The first statement of a connection: who we are, and the server-side bound of
# every later statement of ours (set_config(..., false): for the session).
_SESSION_SETUP_SQL = (
    "SELECT pg_backend_pid(), set_config('statement_timeout', %(statement_timeout)s, false), "
    "current_setting('server_version_num')::int"
)

_SWEEP_LOCK_SQL = "SELECT pg_try_advisory_lock(%(key)s::bigint)"
_SWEEP_UNLOCK_SQL = "SELECT pg_advisory_unlock(%(key)s::bigint)"

_RIGHTS_SQL = (
    "SELECT current_user, r.rolsuper, pg_has_role('pg_read_all_stats', 'USAGE'), "
    "pg_has_role('pg_signal_backend', 'USAGE'), current_setting('server_version_num')::int "
    "FROM pg_roles AS r WHERE r.rolname = current_user"
)

_FACTS_SQL = (
    "SELECT current_setting('server_version'), current_setting('server_version_num')::int, version(), "
    "current_setting('max_connections')::int, current_user, current_database(), "
    "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), pg_is_in_recovery(), "
    "pg_has_role('pg_read_all_stats', 'USAGE'), pg_has_role('pg_signal_backend', 'USAGE'), "
    "pg_backend_pid(), current_setting('application_name')"
)

_ROLE_SQL = "SELECT pg_is_in_recovery()"

_FACTS_KEYS = (
    "version",
    "version_num",
    "version_full",
    "max_connections",
    "login_user",
    "login_db",
    "login_superuser",
    "in_recovery",
    "can_read_all_stats",
    "can_signal",
    "own_pid",
    "own_application",
)


def list_sessions_query(own_application, query_max=QUERY_MAX_CHARS, version_num=None):
    """(sql, params) listing every client session but ours, with who waits on whom, in one
    statement. `version_num` (server_version_num; None: the newest) picks the lock columns."""
    return _list_sql(version_num), {"own_application": own_application, "query_max": int(query_max)}


def session_setup_query(query_timeout):
    """(sql, params): our backend's pid, statement_timeout = query_timeout for our session,
    and the server's version number."""
    return _SESSION_SETUP_SQL, {"statement_timeout": f"{int(query_timeout)}s"}


def sweep_lock_query():
    """(sql, params): try to take the sweep's session advisory lock, without waiting."""
    return _SWEEP_LOCK_SQL, {"key": SWEEP_LOCK_KEY}


def sweep_unlock_query():
    """(sql, params): release the sweep's session advisory lock."""
    return _SWEEP_UNLOCK_SQL, {"key": SWEEP_LOCK_KEY}


def rights_query():
    """(sql, params): our login, whether it is superuser, can read all stats, can signal; server version."""
    return _RIGHTS_SQL, {}


def facts_query():
    """(sql, params) for server_facts()."""
    return _FACTS_SQL, {}


def role_query():
    """(sql, params): whether the server is a standby (in recovery)."""
    return _ROLE_SQL, {}


def server_role(in_recovery):
    """The server's role (_driver.ROLES) from pg_is_in_recovery(): a hot standby replays its primary."""
    return ROLE_STANDBY if in_recovery else ROLE_PRIMARY


def query_templates():
    """Every statement the driver runs, as templates (placeholders, never values)."""
    return [
        _SESSION_SETUP_SQL,
        _SWEEP_LOCK_SQL,
        _SWEEP_UNLOCK_SQL,
        _RIGHTS_SQL,
        _FACTS_SQL,
        _ROLE_SQL,
        _list_sql(None),
    ]


# ---------------------------------------------------------------- records
def _record_seconds(value):
    """Seconds rounded to the millisecond; never negative (the clock read and the
    activity snapshot are a few microseconds apart)."""
    return None if value is None else max(0.0, round(float(value), 3))


def session_key(pid, backend_start_iso):
    return f"{pid}@{backend_start_iso}"


_KEY_RE = re.compile(r"^([0-9]+)@(.+)\Z")


def parse_key(key):
    """(pid, backend_start ISO text) from a session key; ValueError when it is not one of ours."""
    found = _KEY_RE.match(str(key or ""))
    if not found:
        raise ValueError(f"not a PostgreSQL session key (pid@backend_start): {key!r}")
    return int(found.group(1)), found.group(2)


def normalize_row(row):
    """A pg_stat_activity row (dict of _LIST_COLUMNS) as the normalized session record."""
    connected_at = iso_utc(row["backend_start"])
    return {
        "id": row["pid"],
        "key": session_key(row["pid"], connected_at),
        "user": row["usename"],
        "database": row["datname"],
        "application": row["application_name"],
        "client_addr": row["client_addr"],
        "state": row["state"],
        "connected_at": connected_at,
        "state_since": iso_utc(row["state_change"]),
        "connected_seconds": _record_seconds(row["connected_seconds"]),
        "idle_seconds": _record_seconds(row["idle_seconds"]),
        "query_seconds": _record_seconds(row["query_seconds"]),
        "transaction_seconds": _record_seconds(row["transaction_seconds"]),
        "query": redact_statement(row["query"], "postgresql", QUERY_MAX_CHARS),
        "superuser": bool(row["superuser"]),
        "backend_type": row["backend_type"],
        "command": None,
        # PostgreSQL extras
        "raw_state": row["raw_state"],
        "client_port": row["client_port"],
        "client_hostname": row["client_hostname"],
        "query_start": iso_utc(row["query_start"]),
        "transaction_start": iso_utc(row["xact_start"]),
        "wait_event_type": row["wait_event_type"],
        "wait_event": row["wait_event"],
        # locks (docs/architecture.md "Locks")
        "blocked_by": sorted(row["blocked_by"] or ()),
        "lock_wait_seconds": _record_seconds(row["lock_wait_seconds"]) if row["blocked_by"] else None,
        "lock_kind": row["lock_kind"] if row["blocked_by"] else None,
    }
