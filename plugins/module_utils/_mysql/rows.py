# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A row of the MySQL / MariaDB listing as the normalized session record, and whether a
re-read thread is still the planned session.

Private to the collection. Standard library only: the record (``_driver.py``), its session
key (reuse-safe: thread id, account, client host:port, server start), its transaction state
(performance_schema's transaction events, else unproven), its lock fields (``locks``), its
statement text cut and its credentials masked (``_redact``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import re

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    GUARD_STILL_WAITING,
    QUERY_MAX_CHARS,
    REASON_GONE,
    REASON_STATE_CHANGED,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.locks import (
    NOT_WAITING_DETAIL,
    lock_fields,
    rounded_seconds,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.statements import (
    ACTIVE_COMMANDS,
    COLUMNS,
    IDLE_COMMAND,
    TRX_EVENTS_OFF,
    TRX_THREAD_NOT_INSTRUMENTED,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._redact import redact_statement
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc, parse_instant

_HOST_PORT_RE = re.compile(r"^\[?(?P<addr>.+?)\]?:(?P<port>\d+)$")


_UNPROVEN_DETAIL = "transaction state unproven: %s; a Sleep thread then counts as idle_in_transaction"


def transaction_state(values, unproven=None):
    """(in a transaction, its age in seconds or None, state_detail or None) of one list-query row.

    `unproven`: why the listing could not read the transaction events (None when it read
    them). Exact where the events are complete and the thread instrumented; otherwise a
    Sleep thread counts as in a transaction (fail safe: an idle rule never ends it), its age
    from INNODB_TRX where that lists it, with a state_detail saying why.
    """
    if unproven is None and not values.get("trx_events_on"):
        unproven = TRX_EVENTS_OFF
    if unproven is None and values.get("trx_thread_id") is None:
        unproven = TRX_THREAD_NOT_INSTRUMENTED
    if unproven is None:
        active = values.get("trx_event_state") == "ACTIVE"
        return active, (rounded_seconds(values.get("trx_event_seconds")) if active else None), None
    innodb = values["trx_started"] is not None
    seconds = rounded_seconds(values["trx_seconds"]) if innodb else None
    if values["command"] == IDLE_COMMAND:
        return True, seconds, _UNPROVEN_DETAIL % unproven
    return innodb, seconds, None


def client_address(host):
    """The client IP of a PROCESSLIST HOST value, None for a local (socket) login.

    "127.0.0.1:51234" -> "127.0.0.1"; "::1:51234" / "[::1]:51234" -> "::1";
    "localhost" -> None. A host name (name resolution on) is returned as is.
    """
    if host is None or host == "" or host == "localhost":
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    found = _HOST_PORT_RE.match(host)
    if found:
        try:
            return str(ipaddress.ip_address(found.group("addr")))
        except ValueError:
            name = found.group("addr")
            return None if name == "localhost" else name
    return host


def session_key(thread_id, user, host, server_started=None):
    """Reuse-safe identity: thread id + account + client host:port + server start.

    MariaDB and MySQL never reuse a thread id while the server runs, but a
    restart hands the ids out again from 1: the server's start time (epoch
    seconds, exact: ``UNIX_TIMESTAMP() - Uptime`` in one statement) tells the
    threads of two server lives apart.
    """
    key = f"{thread_id}:{user}@{host}"
    if server_started is not None:
        key += f"/{int(server_started)}"
    return key


def key_server_started(key):
    """The server start (int epoch seconds) a session key was made under, or None."""
    head, sep, tail = (key or "").rpartition("/")
    if not sep or not tail.isdigit():
        return None
    return int(tail)


def normalize_row(row, server_started=None, application=None, unproven=TRX_EVENTS_OFF):
    """A list-query row (COLUMNS order) as the normalized session record.

    The connection runs with time_zone '+00:00', so every DATETIME is UTC.
    `server_started` (epoch seconds) goes into the key (see session_key);
    `application` is the thread's program_name, read apart (attrs_query);
    `unproven`: why the listing did not read the transaction events (transaction_state),
    None when it did.
    """
    values = dict(zip(COLUMNS, row))
    command = values["command"]
    in_trx, trx_seconds, state_detail = transaction_state(values, unproven)
    if command in ACTIVE_COMMANDS:
        state = "active"
    elif command == IDLE_COMMAND:
        state = "idle_in_transaction" if in_trx else "idle"
    else:
        state = "other"
    elapsed = None if values["elapsed_ms"] is None else round(float(values["elapsed_ms"]) / 1000.0, 3)
    now = values["now_utc"]
    state_since = None
    if now is not None and elapsed is not None:
        state_since = iso_utc(now - datetime.timedelta(seconds=elapsed))
    query = values["info"]
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    if query is not None:  # cut as the listing asked, then its credentials masked (``_redact``)
        query = redact_statement(query[:QUERY_MAX_CHARS], "mysql", QUERY_MAX_CHARS)
    superuser = values["superuser"]
    thread_id = int(values["id"])
    blocked_by, lock_wait_seconds, lock_kind = lock_fields(values, elapsed)
    return {
        "id": thread_id,
        "key": session_key(thread_id, values["user"], values["host"], server_started),
        "user": values["user"],
        "database": values["db"],
        "application": application,
        "client_addr": client_address(values["host"]),
        "state": state,
        "connected_at": None,  # neither flavour records the connect time of a thread
        # ... but both hand out thread ids in connection order: budgets' keep_by oldest / newest.
        "connect_order": thread_id,
        "state_since": state_since,
        "connected_seconds": None,
        "idle_seconds": elapsed,
        "query_seconds": elapsed if state == "active" else None,
        "transaction_seconds": trx_seconds,
        "query": query,
        "superuser": None if superuser is None else bool(int(superuser)),
        "backend_type": None,
        "command": command,
        "blocked_by": [blocker for blocker in blocked_by if blocker != thread_id],
        "lock_wait_seconds": lock_wait_seconds,
        "lock_kind": lock_kind,
        # MySQL extras (the kill guard reads them back)
        "host": values["host"],
        "thread_state": values["thread_state"],
        "query_id": None if values["query_id"] is None else int(values["query_id"]),
        "transaction_started": iso_utc(values["trx_started"]),
        # why the state of a Sleep thread is idle_in_transaction without proof (transaction_state)
        "state_detail": state_detail,
        "trx_thread_id": None if values.get("trx_thread_id") is None else int(values["trx_thread_id"]),
    }


def moved_on(planned, current, tolerance):
    """Why `current` (a fresh record of the same thread id, or None) is no longer
    the session that was planned: None when it still is, else (reason, detail).

    Same thread = same id, user and client host:port. Same state = same
    COMMAND and normalized state, same transaction (trx_started), no new
    statement since planning (QUERY_ID where the flavour has it; otherwise its
    state_since did not move later than `tolerance` seconds).
    """
    if current is None:
        return REASON_GONE, f"thread {planned.get('id')} is no longer connected"
    if key_server_started(planned.get("key")) != key_server_started(current.get("key")):
        return REASON_GONE, f"the server restarted since planning: thread id {planned.get('id')} is another connection"
    if current.get("user") != planned.get("user") or current.get("host") != planned.get("host"):
        return (
            REASON_GONE,
            f"thread id {planned.get('id')} now belongs to another connection "
            f"({current.get('user')}@{current.get('host')})",
        )
    if current.get("command") != planned.get("command") or current.get("state") != planned.get("state"):
        return (
            REASON_STATE_CHANGED,
            f"was {planned.get('state')} ({planned.get('command')}), now {current.get('state')} "
            f"({current.get('command')})",
        )
    if current.get("transaction_started") != planned.get("transaction_started"):
        return REASON_STATE_CHANGED, "its transaction changed since planning"
    if planned.get(GUARD_STILL_WAITING) and current.get("lock_wait_seconds") is None:
        return REASON_STATE_CHANGED, NOT_WAITING_DETAIL
    if (
        planned.get("state") != "active"
        and planned.get("query_id") is not None
        and current.get("query_id") != planned.get("query_id")
    ):
        return REASON_STATE_CHANGED, "it ran a new statement since planning"
    then, now = parse_instant(planned.get("state_since")), parse_instant(current.get("state_since"))
    if then is None or now is None:
        return REASON_STATE_CHANGED, "its state change time cannot be compared"
    if (now - then).total_seconds() > tolerance:
        return REASON_STATE_CHANGED, "it started a new command since planning"
    return None
