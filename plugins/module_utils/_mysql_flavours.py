# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every SQL statement of the MySQL/MariaDB driver, per flavour, and the pure
helpers around them (grant parsing, row normalization, the kill guard).

Private to the collection. Standard library only: no database driver, no
Ansible import, so the builders are unit tested without a server.

Builders return ``(sql, params)``; values are always driver parameters (PyMySQL
``%s``), never glued into the text. The only identifiers in the text are fixed
names of system tables and columns.

The flavour differences live in the two classes at the bottom, nowhere else:

============================  =================================  ==================================
                              MariaDB (10.4+; TIME_MS since 5.x)  MySQL 8.0
============================  =================================  ==================================
thread list                   information_schema.PROCESSLIST     performance_schema.processlist
                                                                  (8.0.22+, when performance_schema
                                                                  is ON), else information_schema
elapsed time                  TIME_MS (milliseconds)              TIME (whole seconds)
"no new statement" witness    QUERY_ID of an idle thread          TIME only
guarded kill                  one BEGIN NOT ATOMIC block per      re-read of the thread, then KILL,
                              batch: check + KILL per victim,     per victim (two round trips)
                              server-side; cancel by QUERY ID
server start (session key)    I_S.GLOBAL_STATUS Uptime            performance_schema.global_status
superuser-class account       SUPER (ALL implies it)              SUPER or SYSTEM_USER
                              from mysql.user.Super_priv          mysql.user + mysql.global_grants
right to kill others          CONNECTION ADMIN (10.5.2+) / SUPER  CONNECTION_ADMIN or SUPER
row-lock waits (who on whom)  information_schema.INNODB_LOCK_      performance_schema.data_lock_waits
                              WAITS + INNODB_TRX (PROCESS)        + threads (SELECT on both)
metadata-lock waits           performance_schema.metadata_locks + threads, both flavours, where the
                              wait/lock/metadata/sql/mdl instrument is on (MariaDB: off by default)
replication sources           SHOW ALL SLAVES STATUS (SLAVE       SHOW REPLICA STATUS (8.0.22+, else
  (server role)               MONITOR or SUPER), else the         SLAVE; REPLICATION CLIENT), else
                              Slave_IO / Slave_SQL threads        performance_schema.threads
============================  =================================  ==================================
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import math
import re

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    GUARD_STILL_WAITING,
    QUERY_MAX_CHARS,
    REASON_GONE,
    REASON_STATE_CHANGED,
    ROLE_PRIMARY,
    ROLE_REPLICA,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._platform import RDS_PROCEDURES
from ansible_collections.dbhygiene.sessions.plugins.module_utils._redact import redact_statement
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import UTC, iso_utc, parse_instant

PROGRAM_NAME = "dbhygiene.sessions"

# Threads that are never client sessions (docs/architecture.md "Safety invariants" 1).
SYSTEM_USERS = ("system user", "event_scheduler", "unauthenticated user")
SYSTEM_COMMANDS = (
    "Daemon",
    "Binlog Dump",
    "Binlog Dump GTID",
    "Register Slave",
    "Slave_IO",
    "Slave_SQL",
    "Slave_worker",
    "Connect",  # replica threads and logins still authenticating
)
ACTIVE_COMMANDS = ("Query", "Execute")
IDLE_COMMAND = "Sleep"

# Columns every flavour's list query returns, in this order.
COLUMNS = (
    "id",
    "user",
    "host",
    "db",
    "command",
    "thread_state",
    "elapsed_ms",
    "info",
    "query_id",
    "trx_started",
    "trx_seconds",
    "superuser",
    "now_utc",
    # lock waits (NULL where the listing does not read them: a re-read by id, a source not visible)
    "row_waiting",
    "row_wait_seconds",
    "row_blockers",
    "mdl_pending",
    "mdl_user_lock",
    "mdl_holders",
    # exact transaction state (performance_schema's transaction events; NULL where the listing does not read them)
    "trx_events_on",
    "trx_thread_id",
    "trx_event_state",
    "trx_event_seconds",
)

KILL_TEMPLATES = {"terminate": "KILL CONNECTION %s", "cancel": "KILL QUERY %s"}

SWEEP_LOCK = "dbhygiene.sessions.sweep"
# Victims per guard block: one statement of about 700 bytes each (far below
# max_allowed_packet), and one round trip per batch.
GUARD_BATCH = 500
# Each victim's re-read scans the whole thread list (information_schema.PROCESSLIST
# has no index): a block does about victims x threads row reads. Keep a block near
# this many, so that it stays far below query_timeout even on a busy server.
GUARD_BLOCK_ROWS = 100000


# InnoDB's transaction list (information_schema.INNODB_TRX) is a cache, refreshed
# only by a reader that comes after 100 ms without one. A Sleep thread the plan saw
# idle for less than that may hold a transaction the cache did not show yet; one
# planned idle for longer cannot, as long as the cache was refreshed in that time
# (its transaction, if any, began before its last statement), and the guard's
# unchanged QUERY_ID carries that proof to the KILL. So an idle victim is ended
# only when it was planned idle for at least this long; any real policy's
# idle_longer_than is far above it. (The transaction state no longer comes from that
# cache: a Sleep thread is idle only as performance_schema's transaction events prove it,
# and the guard reads them again before the KILL (transaction_state, _TRANSACTION_CHECK).
# The proof and the quiet gap below stay, no longer load-bearing for it, because the race
# figures of the README were measured with them.)
IDLE_PROOF_SECONDS = 0.15
# ... and a reader refreshes the cache only after this long without any reader, so the
# driver leaves at least this much between two of its own listings (its lock waits fresh).
TRX_CACHE_QUIET_SECONDS = 0.11
_IDLE_PROOF_DETAIL = (
    "planned idle for only {shown} ms: InnoDB's transaction list is a cache refreshed at most every 100 ms, "
    "so it cannot prove a thread idle for less than {proof} ms is outside a transaction; not ended"
)


def idle_unproven(planned):
    """Why an idle victim cannot be ended (see IDLE_PROOF_SECONDS), or None."""
    idle = planned.get("idle_seconds")
    if planned.get("state") == "idle" and (idle is None or idle < IDLE_PROOF_SECONDS):
        shown = "?" if idle is None else round(idle * 1000)
        return _IDLE_PROOF_DETAIL.format(shown=shown, proof=round(IDLE_PROOF_SECONDS * 1000))
    return None


# ---------------------------------------------------------------- transaction state
# Whether a Sleep thread is inside a transaction, exactly at the moment of the read:
# performance_schema.events_transactions_current (MariaDB 10.5+, MySQL 5.7+). Its latest
# transaction event is ACTIVE from BEGIN / START TRANSACTION / XA START (a transaction that
# has touched no InnoDB table yet included) or the first transactional statement under
# autocommit=0, until COMMIT / ROLLBACK; a thread that has had none has no row. It is
# written by the thread itself, not served from a cache: INFORMATION_SCHEMA.INNODB_TRX is
# InnoDB's trx_i_s cache, refreshed only for a reader that comes 100 ms after the last one
# (a monitoring agent polling it at 20 Hz keeps it from ever refreshing), and it never shows
# a transaction that has not touched InnoDB yet (a bare BEGIN). The events are complete
# while these consumers and the instrument are on and the thread is instrumented; MariaDB
# ships them off (performance_schema_instrument='transaction=ON',
# performance_schema_consumer_events_transactions_current=ON).
TRANSACTION_EVENT_CONSUMERS = ("global_instrumentation", "thread_instrumentation", "events_transactions_current")
TRANSACTION_INSTRUMENT = "transaction"
# 1 when the transaction events are complete right now (params: TRANSACTION_EVENT_CONSUMERS,
# TRANSACTION_INSTRUMENT).
_TRX_EVENTS_ON = (
    "((SELECT COUNT(*) FROM performance_schema.setup_consumers WHERE NAME IN (%s, %s, %s) AND ENABLED = 'YES') = 3 "
    "AND (SELECT COUNT(*) FROM performance_schema.setup_instruments WHERE NAME = %s AND ENABLED = 'YES') = 1)"
)
TRANSACTION_EVENTS_ON_PARAMS = TRANSACTION_EVENT_CONSUMERS + (TRANSACTION_INSTRUMENT,)
# Each client thread's performance_schema THREAD_ID (instrumented threads only) and its
# latest transaction event: derived tables, each materialized once with a key.
_TRX_EVENTS_JOIN = (
    "LEFT JOIN (SELECT DISTINCT PROCESSLIST_ID, THREAD_ID FROM performance_schema.threads "
    "WHERE PROCESSLIST_ID IS NOT NULL AND INSTRUMENTED = 'YES') AS tt ON tt.PROCESSLIST_ID = p.ID "
    "LEFT JOIN (SELECT DISTINCT THREAD_ID, STATE, TIMER_WAIT FROM performance_schema.events_transactions_current) "
    "AS te ON te.THREAD_ID = tt.THREAD_ID"
)
TRX_EVENTS_OFF = (
    "performance_schema's transaction events are off (the instrument 'transaction', or the consumers "
    + ", ".join(TRANSACTION_EVENT_CONSUMERS)
    + ")"
)
TRX_THREAD_NOT_INSTRUMENTED = (
    "the thread is not instrumented in performance_schema (setup_actors, threads.INSTRUMENTED)"
)
_UNPROVEN_DETAIL = "transaction state unproven: %s; a Sleep thread then counts as idle_in_transaction"


def transaction_events_on_query():
    """(sql, params): one row, 1 when the transaction events are complete right now."""
    return f"SELECT {_TRX_EVENTS_ON}", TRANSACTION_EVENTS_ON_PARAMS


def transaction_events_probe():
    """A statement that fails (1142) when the login cannot read the transaction events."""
    return (
        f"SELECT {_TRX_EVENTS_ON}, t.THREAD_ID, e.STATE FROM performance_schema.threads AS t, "
        "performance_schema.events_transactions_current AS e LIMIT 0",
        TRANSACTION_EVENTS_ON_PARAMS,
    )


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
        return active, (_float(values.get("trx_event_seconds")) if active else None), None
    innodb = values["trx_started"] is not None
    seconds = _float(values["trx_seconds"]) if innodb else None
    if values["command"] == IDLE_COMMAND:
        return True, seconds, _UNPROVEN_DETAIL % unproven
    return innodb, seconds, None


def guard_batch_size(threads):
    """Victims per guard block when the server has about `threads` client threads."""
    return max(1, min(GUARD_BATCH, GUARD_BLOCK_ROWS // max(1, int(threads))))


def looped_reread(victim, mode):
    """Whether the guard block re-reads this victim in its loop (_IDLE_LOOP) rather than in a
    step of its own: an idle thread (Sleep, with or without a transaction) with its planned
    QUERY_ID, to be terminated, not picked for a lock wait. Same proof either way (the one of
    _still_planned: the same COMMAND and QUERY_ID, no statement since planning), read right
    before its KILL; the loop is one text for any number of victims."""
    return (
        mode == "terminate"
        and victim.get("command") == IDLE_COMMAND
        and victim.get("state") != "active"
        and not victim.get(GUARD_STILL_WAITING)
        and victim.get("query_id") is not None
    )


# ---------------------------------------------------------------- lock waits
# What a waiting record's lock_kind says it waits for.
LOCK_KIND_ROW = "row"  # an InnoDB lock (a row, or InnoDB's own table lock)
LOCK_KIND_METADATA = "metadata"  # a metadata lock (a table, schema, routine, the backup lock, ...)
LOCK_KIND_USER = "user_lock"  # GET_LOCK()
MDL_USER_LOCK = "USER LEVEL LOCK"  # performance_schema.metadata_locks.OBJECT_TYPE of GET_LOCK()
# performance_schema.threads (thread id -> processlist id) as a derived table: MariaDB
# materializes it once with a key on THREAD_ID, where joining the table itself scans
# it once per lock row (an ALTER behind 1,000 readers: 279 ms instead of 4 ms).
THREAD_IDS = "(SELECT DISTINCT THREAD_ID, PROCESSLIST_ID FROM performance_schema.threads)"

_IX, _S, _SH, _SR = "INTENTION_EXCLUSIVE", "SHARED", "SHARED_HIGH_PRIO", "SHARED_READ"
_SW, _SWLP, _SU, _SRO = "SHARED_WRITE", "SHARED_WRITE_LOW_PRIO", "SHARED_UPGRADABLE", "SHARED_READ_ONLY"
_SNW, _SNRW, _X = "SHARED_NO_WRITE", "SHARED_NO_READ_WRITE", "EXCLUSIVE"
_B = "BACKUP_"
_B_START, _B_FLUSH, _B_WAIT_FLUSH = _B + "START", _B + "FLUSH", _B + "WAIT_FLUSH"
_B_WAIT_DDL, _B_WAIT_COMMIT, _B_FTWRL1 = _B + "WAIT_DDL", _B + "WAIT_COMMIT", _B + "FTWRL1"
_B_FTWRL2, _B_DML, _B_TRANS_DML, _B_SYS_DML = _B + "FTWRL2", _B + "DML", _B + "TRANS_DML", _B + "SYS_DML"
_B_DDL, _B_BLOCK_DDL, _B_ALTER_COPY, _B_COMMIT = _B + "DDL", _B + "BLOCK_DDL", _B + "ALTER_COPY", _B + "COMMIT"
_B_FTWRL = (_B_FTWRL1, _B_FTWRL2)

# Which lock types a metadata-lock request of each type (LOCK_TYPE of
# performance_schema.metadata_locks) cannot be granted beside, from the
# compatibility matrices of sql/mdl.cc (MariaDB 10.11, MySQL 8.0). Per-object
# namespaces (tables, routines, user locks, ...) never use INTENTION_EXCLUSIVE
# and scoped ones (schema, global, commit) use only INTENTION_EXCLUSIVE,
# SHARED and EXCLUSIVE, so one table serves both; MariaDB's backup namespace has
# types of its own. A type not in it (a future one) makes no edge: the waiter
# still shows as waiting, on no one, rather than on the wrong session.
# Granted locks of these types block a request of the key's type:
MDL_GRANTED_CONFLICTS = {
    _IX: (_S, _X),
    _S: (_IX, _X),
    _SH: (_X,),
    _SR: (_SNRW, _X),
    _SW: (_SRO, _SNW, _SNRW, _X),
    _SWLP: (_SRO, _SNW, _SNRW, _X),
    _SU: (_SU, _SNW, _SNRW, _X),
    _SRO: (_SW, _SWLP, _SNRW, _X),
    _SNW: (_SW, _SWLP, _SU, _SNW, _SNRW, _X),
    _SNRW: (_SR, _SW, _SWLP, _SU, _SRO, _SNW, _SNRW, _X),
    _X: (_IX, _S, _SH, _SR, _SW, _SWLP, _SU, _SRO, _SNW, _SNRW, _X),
    _B_START: (_B_START, _B_FLUSH, _B_WAIT_FLUSH, _B_WAIT_DDL, _B_WAIT_COMMIT, _B_BLOCK_DDL),
    _B_FLUSH: (_B_START,),
    _B_WAIT_FLUSH: (_B_START, _B_DML),
    _B_WAIT_DDL: (_B_START, _B_DML, _B_DDL),
    _B_WAIT_COMMIT: (_B_START, _B_DML, _B_SYS_DML, _B_DDL, _B_COMMIT),
    _B_FTWRL1: (_B_DML, _B_TRANS_DML, _B_SYS_DML, _B_DDL, _B_ALTER_COPY),
    _B_FTWRL2: (_B_DML, _B_TRANS_DML, _B_SYS_DML, _B_DDL, _B_ALTER_COPY, _B_COMMIT),
    _B_DML: (_B_FLUSH, _B_WAIT_FLUSH, _B_WAIT_DDL, _B_WAIT_COMMIT) + _B_FTWRL,
    _B_TRANS_DML: _B_FTWRL,
    _B_SYS_DML: (_B_WAIT_COMMIT,) + _B_FTWRL,
    _B_DDL: (_B_WAIT_DDL, _B_WAIT_COMMIT) + _B_FTWRL + (_B_BLOCK_DDL,),
    _B_BLOCK_DDL: (_B_START, _B_FLUSH, _B_WAIT_FLUSH, _B_WAIT_DDL, _B_WAIT_COMMIT, _B_BLOCK_DDL, _B_DDL),
    _B_ALTER_COPY: _B_FTWRL,
    _B_COMMIT: (_B_WAIT_COMMIT, _B_FTWRL2),
}
# ... and pending (queued) requests of these types go first (lock priority), so a
# request of the key's type waits behind them too (a SELECT queued behind an ALTER
# TABLE that waits itself). Always a subset of the granted conflicts.
MDL_PENDING_CONFLICTS = {
    _IX: (_S, _X),
    _S: (_X,),
    _SR: (_SNRW, _X),
    _SW: (_SNW, _SNRW, _X),
    _SWLP: (_SRO, _SNW, _SNRW, _X),
    _SU: (_X,),
    _SRO: (_SW, _SNRW, _X),
    _SNW: (_X,),
    _SNRW: (_X,),
    _B_START: (_B_FLUSH, _B_WAIT_FLUSH, _B_WAIT_DDL, _B_WAIT_COMMIT, _B_BLOCK_DDL),
    _B_DML: (_B_FLUSH, _B_WAIT_FLUSH, _B_WAIT_DDL, _B_WAIT_COMMIT) + _B_FTWRL,
    _B_TRANS_DML: _B_FTWRL,
    _B_SYS_DML: (_B_WAIT_COMMIT,) + _B_FTWRL,
    _B_DDL: (_B_WAIT_DDL, _B_WAIT_COMMIT) + _B_FTWRL + (_B_BLOCK_DDL,),
    _B_BLOCK_DDL: (_B_START,),
    _B_ALTER_COPY: _B_FTWRL,
    _B_COMMIT: (_B_WAIT_COMMIT, _B_FTWRL2),
}


def _conflict_test(table, status):
    """(SQL, params): the locks g (of `status`) conflict with w's request, per `table`.

    FIELD() finds w's type among the table's keys, ELT() picks that type's list of
    conflicting types, FIND_IN_SET() looks g's type up in it; a type not in the
    table gives NULL (no edge). The lists are parameters, not text.
    """
    names = list(table)
    sql = (
        f"(g.LOCK_STATUS = '{status}' AND FIND_IN_SET(g.LOCK_TYPE, ELT(FIELD(w.LOCK_TYPE, "
        f"{', '.join(['%s'] * len(names))}), {', '.join(['%s'] * len(names))})))"
    )
    return sql, tuple(names) + tuple(",".join(table[name]) for name in names)


def mdl_conflicts_condition():
    """(SQL, params): the locks g block the pending request w (MDL_GRANTED_CONFLICTS,
    MDL_PENDING_CONFLICTS), so that the listing returns only the locks a waiter
    really waits on: a thousand SELECTs queued behind one ALTER TABLE make a
    thousand edges, not a million."""
    granted, granted_params = _conflict_test(MDL_GRANTED_CONFLICTS, "GRANTED")
    pending, pending_params = _conflict_test(MDL_PENDING_CONFLICTS, "PENDING")
    return f"({granted} OR {pending})", granted_params + pending_params


def _ids(text):
    """Thread ids from a GROUP_CONCAT of ids ('12,7'), sorted; [] for NULL."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    found = set()
    for part in (text or "").split(","):
        part = part.strip()
        if part.isdigit():
            found.add(int(part))
    return sorted(found)


def mdl_blockers(holders):
    """The thread ids a metadata-lock request waits on, from the list query's mdl_holders.

    `holders`: 'requested status held id id ...' items joined by commas, one per
    status and type of the locks threads hold or ask for on the object the request
    waits for (the waiter's own id among them is dropped by normalize_row). A
    granted lock blocks the request when the two types conflict; a pending one
    when it has priority over it (MDL_GRANTED_CONFLICTS, MDL_PENDING_CONFLICTS).
    """
    if isinstance(holders, bytes):
        holders = holders.decode("utf-8", "replace")
    found = set()
    for item in (holders or "").split(","):
        fields = item.split()
        if len(fields) < 4:
            continue
        requested, status, held = fields[:3]
        table = MDL_GRANTED_CONFLICTS if status == "GRANTED" else MDL_PENDING_CONFLICTS if status == "PENDING" else {}
        if held in table.get(requested, ()):
            found.update(int(thread_id) for thread_id in fields[3:] if thread_id.isdigit())
    return sorted(found)


NOT_WAITING_DETAIL = "it got its lock since planning: it no longer waits (waiting_longer_than)"


def lock_fields(values, elapsed):
    """(blocked_by, lock_wait_seconds, lock_kind) of one list-query row (a dict of COLUMNS).

    A metadata-lock wait is read live from performance_schema and wins over an
    InnoDB wait from INNODB_TRX, a cache up to 100 ms old. The wait of a
    metadata lock is the age of the waiting statement (no server table has when
    the wait began; a DDL asks for its lock first thing); the wait of an InnoDB
    lock is the lower bound of trx_wait_started (whole seconds), as
    transaction_seconds, so that waiting_longer_than never fires early.
    """
    if values.get("mdl_pending"):
        kind = LOCK_KIND_USER if values.get("mdl_user_lock") else LOCK_KIND_METADATA
        return mdl_blockers(values.get("mdl_holders")), elapsed, kind
    if values.get("row_waiting"):
        seconds = values.get("row_wait_seconds")
        seconds = elapsed if seconds is None else _float(seconds)
        if seconds is not None and elapsed is not None:
            seconds = min(seconds, elapsed)  # the wait began within the current statement
        return _ids(values.get("row_blockers")), seconds, LOCK_KIND_ROW
    return [], None, None


_GLOBAL_GRANT_RE = re.compile(r"^GRANT (.+?) ON \*\.\* TO ", re.IGNORECASE)
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)")
# GRANT <privileges> ON [PROCEDURE] <schema>.<object> TO ...: (privileges, PROCEDURE, schema, object).
_OBJECT_GRANT_RE = re.compile(
    r"^GRANT (.+?) ON (PROCEDURE )?(\*|`(?:[^`]|``)+`)\.(\*|`(?:[^`]|``)+`) TO ", re.IGNORECASE
)
_HOST_PORT_RE = re.compile(r"^\[?(?P<addr>.+?)\]?:(?P<port>\d+)$")


def parse_version(text):
    """(major, minor, patch) from VERSION() text such as 10.11.19-MariaDB-0+deb12u1."""
    found = _VERSION_RE.match(text or "")
    if not found:
        return (0, 0, 0)
    return tuple(int(part) for part in found.groups())


def global_privileges(grant_lines):
    """The set of global privileges (upper case) in SHOW GRANTS output lines.

    ALL / ALL PRIVILEGES is kept as the single token "ALL". Only the privilege
    list is read: the rest of a line (it may carry a password hash) is dropped.
    """
    privileges = set()
    for line in grant_lines:
        found = _GLOBAL_GRANT_RE.match(line or "")
        if not found:
            continue
        for privilege in found.group(1).split(","):
            name = " ".join(privilege.split()).upper()
            if name in ("ALL", "ALL PRIVILEGES"):
                name = "ALL"
            if name:
                privileges.add(name)
    return privileges


def executable_procedures(grant_lines, names):
    """The procedures among `names` ('schema.name') that SHOW GRANTS lines let the login EXECUTE:
    EXECUTE (or ALL) on *.*, on the schema, or on the procedure itself."""
    granted = set()
    for line in grant_lines:
        found = _OBJECT_GRANT_RE.match(line or "")
        if not found:
            continue
        privileges = set(" ".join(p.split()).upper() for p in found.group(1).split(","))
        if not privileges & {"EXECUTE", "ALL", "ALL PRIVILEGES"}:
            continue
        schema, name = (part.strip("`").replace("``", "`") for part in (found.group(3), found.group(4)))
        if found.group(2) and name == "*":
            continue
        granted.add((schema, name))
    usable = []
    for full in names:
        schema, name = full.split(".", 1)
        if {("*", "*"), (schema, "*"), (schema, name)} & granted:
            usable.append(full)
    return usable


# An account written user@host: the last '@' splits (a user name may contain '@'). Where the text
# comes from decides what a text without a host part, or with nothing before the '@', means:
# split_account (the server's CURRENT_USER()) or split_roles_key (a dbhygiene_timeouts roles key).
def split_account(current_user):
    """('user', 'host') from CURRENT_USER() text 'user@host' (the user may contain '@'). The
    server's own text: '@host' is the anonymous account ('', 'host'); a text without '@' (None:
    '') is the any-host account, host '%'."""
    user, sep, host = (current_user or "").rpartition("@")
    if not sep:
        return current_user or "", "%"
    return user, host


def split_roles_key(name):
    """(user, host or None) of a roles key of ``dbhygiene_timeouts``: ``app`` (every account
    named app: host None) or ``app@10.%`` (one account). A user's text: a key with nothing before
    its last '@' is a user name as written (host None), never the anonymous account."""
    user, sep, host = str(name).rpartition("@")
    if not sep or not user:
        return str(name), None
    return user, host


def quote_account(current_user):
    """An account as written in a GRANT hint: 'user'@'host' (quotes doubled)."""
    user, host = split_account(current_user)
    user, host = (part.replace("'", "''") for part in (user, host))
    return f"'{user}'@'{host}'"


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


def _float(value):
    return None if value is None else round(float(value), 3)


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


class Flavour(object):
    """The SQL of one flavour. Subclasses change only what differs."""

    name = None
    label = None
    # The elapsed time moves by this much between two listings of one state
    # (clock granularity of TIME / TIME_MS, plus the round trip).
    state_since_tolerance = 0.5
    # Privileges that let a login end other users' threads (any one is enough).
    kill_privileges = ("SUPER",)
    # Privileges that make an account superuser-class (protect.superusers).
    superuser_privileges = ("SUPER",)

    def __init__(self, version, performance_schema):
        self.version = version
        self.performance_schema = bool(performance_schema)

    # ------------------------------------------------------------- facts
    @staticmethod
    def facts_query():
        return (
            "SELECT VERSION(), @@version_comment, @@performance_schema, CONNECTION_ID(), CURRENT_USER(), "
            "@@max_connections, @@hostname",
            (),
        )

    @staticmethod
    def grants_query():
        return ("SHOW GRANTS", ())

    def superuser_probe(self):
        """A statement that fails (1142/1143) when the login cannot read which accounts are superusers."""
        return ("SELECT User, Super_priv FROM mysql.user LIMIT 0", ())

    @staticmethod
    def attrs_probe():
        """A statement that fails (1142) when the login cannot read connection attributes."""
        return ("SELECT ATTR_VALUE FROM performance_schema.session_connect_attrs LIMIT 0", ())

    # ------------------------------------------------------------- listing
    processlist_table = "information_schema.PROCESSLIST"
    elapsed_ms_expr = "p.TIME * 1000"
    query_id_expr = "NULL"

    def superuser_join(self):
        return (
            "LEFT JOIN (SELECT User AS user_name, MAX(Super_priv = 'Y') AS is_super FROM mysql.user GROUP BY User) "
            "AS s ON s.user_name = p.USER"
        )

    # Who waits on whom for an InnoDB lock: a derived table of (waiter, blocker ids),
    # joined to the listing; None where the flavour has no such table.
    def row_lock_waits_join(self):
        """(LEFT JOIN text, params) of the InnoDB lock waits, giving rw.blockers."""
        return (
            "LEFT JOIN (SELECT w.requesting_trx_id AS trx_id, GROUP_CONCAT(DISTINCT b.trx_mysql_thread_id) AS blockers "
            "FROM information_schema.INNODB_LOCK_WAITS AS w "
            "JOIN (SELECT DISTINCT trx_id, trx_mysql_thread_id FROM information_schema.INNODB_TRX) AS b "
            "ON b.trx_id = w.blocking_trx_id "
            "GROUP BY w.requesting_trx_id) AS rw ON rw.trx_id = t.trx_id",
            (),
        )

    @staticmethod
    def row_lock_waits_probe():
        """A statement that fails (1142) when the login cannot read the InnoDB lock waits (None: PROCESS is enough)."""
        return None

    @staticmethod
    def metadata_locks_join():
        """(LEFT JOIN text, params) of the pending metadata locks, giving m.pending, m.user_lock, m.holders.

        Per waiting thread: the types it asks for, whether that is a GET_LOCK,
        and the locks on the same object that conflict with its request, as
        'requested status held id id ...' items (mdl_conflicts_condition;
        mdl_blockers() applies the same tables again). The locks are first
        grouped per object, status and type (g, materialized once with a key on
        the object), so that each waiter meets a handful of groups: a thousand
        SELECTs queued behind one ALTER TABLE cost a thousand lookups, not a
        million pairs. Our own sweep lock is no lock wait: a second sweep queues
        on it by design.
        """
        conflicts, conflict_params = mdl_conflicts_condition()
        return (
            "LEFT JOIN (SELECT wt.PROCESSLIST_ID AS waiter_id, GROUP_CONCAT(DISTINCT w.LOCK_TYPE) AS pending, "
            "MAX(w.OBJECT_TYPE = %s) AS user_lock, "
            "GROUP_CONCAT(DISTINCT CONCAT(w.LOCK_TYPE, ' ', g.LOCK_STATUS, ' ', g.LOCK_TYPE, ' ', g.ids)) AS holders "
            "FROM performance_schema.metadata_locks AS w "
            f"JOIN {THREAD_IDS} AS wt ON wt.THREAD_ID = w.OWNER_THREAD_ID "
            "LEFT JOIN (SELECT l.OBJECT_TYPE, IFNULL(l.OBJECT_SCHEMA, '') AS object_schema, "
            "IFNULL(l.OBJECT_NAME, '') AS object_name, l.LOCK_STATUS, l.LOCK_TYPE, "
            "GROUP_CONCAT(DISTINCT lt.PROCESSLIST_ID SEPARATOR ' ') AS ids "
            "FROM performance_schema.metadata_locks AS l "
            f"JOIN {THREAD_IDS} AS lt ON lt.THREAD_ID = l.OWNER_THREAD_ID "
            "WHERE l.LOCK_STATUS IN ('GRANTED', 'PENDING') "
            "GROUP BY l.OBJECT_TYPE, object_schema, object_name, l.LOCK_STATUS, l.LOCK_TYPE) AS g "
            "ON g.OBJECT_TYPE = w.OBJECT_TYPE AND g.object_schema = IFNULL(w.OBJECT_SCHEMA, '') "
            f"AND g.object_name = IFNULL(w.OBJECT_NAME, '') AND {conflicts} "
            "WHERE w.LOCK_STATUS = 'PENDING' AND NOT (w.OBJECT_TYPE = %s AND w.OBJECT_NAME <=> %s) "
            "GROUP BY wt.PROCESSLIST_ID) AS m ON m.waiter_id = p.ID",
            (MDL_USER_LOCK,) + conflict_params + (MDL_USER_LOCK, SWEEP_LOCK),
        )

    @staticmethod
    def metadata_locks_probe():
        """How many metadata locks our own connection holds right now: this very
        statement holds two (on the tables it reads) where the instrument is on,
        none where it is off. Fails (1142) when the login cannot read them."""
        return (
            "SELECT COUNT(*) FROM performance_schema.metadata_locks AS m "
            "JOIN performance_schema.threads AS t ON t.THREAD_ID = m.OWNER_THREAD_ID "
            "WHERE t.PROCESSLIST_ID = CONNECTION_ID()",
            (),
        )

    def list_query(
        self,
        with_superusers=True,
        ids=None,
        query_max=QUERY_MAX_CHARS,
        row_locks=True,
        metadata_locks=True,
        transactions=False,
    ):
        """Client threads (ours and system threads excluded) in one statement.

        `ids`: only these thread ids (the kill guard's re-read: the driver asks
        for the lock waits only to check that a waiter still waits). The
        connection attributes (program_name) are not joined here: joining
        performance_schema.session_connect_attrs to the thread list is
        quadratic in the number of threads (203 ms at 1,000); attrs_query reads
        them apart, in one linear scan.

        Lock waits come in the same statement: whether a thread waits for an
        InnoDB lock and since when (INNODB_TRX, joined anyway), on whom
        (`row_locks`: row_lock_waits_join) and its metadata-lock waits
        (`metadata_locks`: metadata_locks_join). Both are derived tables, each
        read once per statement, so the listing stays linear in the threads.

        `transactions`: each thread's exact transaction state from performance_schema
        (transaction_state), with whether those events are complete at that moment.
        """
        params = [int(query_max)]
        lock_joins, lock_params = [], []
        row_blockers = mdl = None
        if row_locks and self.row_lock_waits_join() is not None:
            join, join_params = self.row_lock_waits_join()
            lock_joins.append(join)
            lock_params.extend(join_params)
            row_blockers = "rw.blockers"
        if metadata_locks:
            join, join_params = self.metadata_locks_join()
            lock_joins.append(join)
            lock_params.extend(join_params)
            mdl = ("m.pending", "m.user_lock", "m.holders")
        select = [
            "p.ID",
            "p.USER",
            "p.HOST",
            "p.DB",
            "p.COMMAND",
            "p.STATE",
            self.elapsed_ms_expr,
            "LEFT(p.INFO, %s)",
            self.query_id_expr,
            "t.trx_started",
            # trx_started has whole seconds: report the lower bound of the age, so a
            # transaction_longer_than rule never fires early.
            "GREATEST(0, TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) / 1000000 - 1)",
            "s.is_super" if with_superusers else "NULL",
            "UTC_TIMESTAMP(6)",
            "t.trx_state = 'LOCK WAIT'",
            # trx_wait_started has whole seconds: the lower bound, as for trx_started.
            "GREATEST(0, TIMESTAMPDIFF(MICROSECOND, t.trx_wait_started, NOW(6)) / 1000000 - 1)",
            row_blockers or "NULL",
        ] + list(mdl or ("NULL", "NULL", "NULL"))
        if transactions:
            select.extend([_TRX_EVENTS_ON, "tt.THREAD_ID", "te.STATE", "te.TIMER_WAIT / 1000000000000"])
            params.extend(TRANSACTION_EVENTS_ON_PARAMS)
        else:
            select.extend(["NULL"] * 4)
        # INNODB_TRX as a derived table: materialized once with a key on the thread id;
        # joined as a table, each thread scanned every transaction (1,000 threads in
        # transactions: 180 ms instead of 61 ms).
        joins = [
            "LEFT JOIN (SELECT DISTINCT trx_mysql_thread_id, trx_id, trx_started, trx_state, trx_wait_started "
            "FROM information_schema.INNODB_TRX) AS t ON t.trx_mysql_thread_id = p.ID"
        ]
        if with_superusers:
            joins.append(self.superuser_join())
        if transactions:
            joins.append(_TRX_EVENTS_JOIN)
        joins.extend(lock_joins)
        params.extend(lock_params)
        where = [
            "p.ID <> CONNECTION_ID()",
            f"p.USER NOT IN ({', '.join(['%s'] * len(SYSTEM_USERS))})",
            f"p.COMMAND NOT IN ({', '.join(['%s'] * len(SYSTEM_COMMANDS))})",
        ]
        params.extend(SYSTEM_USERS)
        params.extend(SYSTEM_COMMANDS)
        if ids is not None:
            ids = [int(thread_id) for thread_id in ids]
            if not ids:
                raise ValueError("ids must not be empty")
            where.append(f"p.ID IN ({', '.join(['%s'] * len(ids))})")
            params.extend(ids)
        sql = (
            f"SELECT {', '.join(select)} FROM {self.processlist_table} AS p {' '.join(joins)} WHERE "
            f"{' AND '.join(where)} ORDER BY p.ID"
        )
        return sql, tuple(params)

    @staticmethod
    def attrs_query(ids=None):
        """(thread id, program_name) of the threads that set one; `ids`: only these.

        A connection's attributes are fixed at login, so the driver reads them
        once per session and only for threads it has not seen yet.
        """
        sql = "SELECT PROCESSLIST_ID, ATTR_VALUE FROM performance_schema.session_connect_attrs WHERE ATTR_NAME = %s"
        params = ["program_name"]
        if ids is not None:
            ids = [int(thread_id) for thread_id in ids]
            if not ids:
                raise ValueError("ids must not be empty")
            sql += f" AND PROCESSLIST_ID IN ({', '.join(['%s'] * len(ids))})"
            params.extend(ids)
        return sql, tuple(params)

    # ------------------------------------------------------------- replication
    @staticmethod
    def read_only_query():
        return ("SELECT @@read_only", ())

    def replica_status_query(self):
        """One row per replication source the server has (MariaDB: every connection of a
        multi-source replica); needs SLAVE MONITOR or SUPER (MySQL: REPLICATION CLIENT)."""
        return ("SHOW ALL SLAVES STATUS", ())

    @staticmethod
    def replication_threads_query():
        """How many replication threads run: the replica status of a login that may only see
        the threads (PROCESS, which the listing needs); a stopped replica has none."""
        return (
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'system user' AND COMMAND IN %s",
            (("Slave_IO", "Slave_SQL"),),
        )

    # ------------------------------------------------------------- session set-up
    def server_started_query(self):
        """The server's start, exact epoch seconds: Uptime is counted from the same
        statement start as UNIX_TIMESTAMP(), so the difference never jitters."""
        return (
            "SELECT UNIX_TIMESTAMP() - VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = %s",
            ("UPTIME",),
        )

    def statement_timeout_query(self, seconds):
        """Bound every later statement of our session server-side (None: the engine has no such limit)."""
        return ("SET SESSION max_statement_time = %s", (int(seconds),))

    # ------------------------------------------------------------- sweep lock
    def lock_query(self, timeout, query_timeout):
        """GET_LOCK waiting at most `timeout` s; the statement limit of our session
        is lifted to `timeout + query_timeout` for this one statement."""
        return (
            "SET STATEMENT max_statement_time = %s FOR SELECT GET_LOCK(%s, %s)",
            (int(query_timeout) + int(timeout) + 1, SWEEP_LOCK, float(timeout)),
        )

    @staticmethod
    def unlock_query():
        return ("SELECT RELEASE_LOCK(%s)", (SWEEP_LOCK,))

    # ------------------------------------------------------------- killing
    # The guard runs server-side (guard_block) where the flavour has compound
    # statements; else the driver re-reads each victim right before its KILL.
    server_side_guard = False
    # RDS for MySQL / MariaDB without CONNECTION ADMIN or SUPER: threads are ended through the
    # service's procedures (mysql.rds_kill / mysql.rds_kill_query) instead of KILL. Set by the driver.
    rds_kill = False

    def loop_kill(self):
        """The statement ending the looped victim `v` inside a compound statement (the guard's
        loop, a verified block): KILL, or the service's procedure on RDS."""
        return f"CALL {RDS_PROCEDURES['terminate']}(v.id);" if self.rds_kill else "KILL CONNECTION v.id;"

    def kill_templates(self):
        """{mode: statement with one %s (the thread id)} of this server's way to end a thread."""
        if self.rds_kill:
            return dict((mode, f"CALL {procedure}(%s)") for mode, procedure in RDS_PROCEDURES.items())
        return KILL_TEMPLATES

    def kill_query(self, mode, thread_id):
        if mode not in KILL_TEMPLATES:
            raise ValueError(f"mode must be terminate or cancel, not {mode!r}")
        return self.kill_templates()[mode], (int(thread_id),)

    # ------------------------------------------------------------- privileges
    def can_see_all(self, privileges):
        return "ALL" in privileges or "PROCESS" in privileges

    def can_kill(self, privileges):
        return "ALL" in privileges or any(p in privileges for p in self.kill_privileges)

    def kill_grant(self, account):
        if self.rds_kill:
            return "; ".join(f"GRANT EXECUTE ON PROCEDURE {p} TO {account}" for p in RDS_PROCEDURES.values())
        return f"GRANT {self.kill_privileges[0]} ON *.* TO {account}"

    @property
    def kill_rights(self):
        """What ending another user's thread needs, for messages."""
        if self.rds_kill:
            return " and ".join(f"EXECUTE on {p}" for p in RDS_PROCEDURES.values())
        return " or ".join(self.kill_privileges)

    def superuser_grants(self, account):
        return [f"GRANT SELECT (User, Host, Super_priv) ON mysql.user TO {account}"]

    def templates(self, row_locks=True, metadata_locks=True, transactions=True):
        """Statement templates for the `queries` result (no values, no secrets)."""
        return [
            self.list_query(row_locks=row_locks, metadata_locks=metadata_locks, transactions=transactions)[0],
            self.list_query(ids=[0], transactions=transactions)[0].replace("p.ID IN (%s)", "p.ID IN (%s, ...)"),
            self.kill_templates()["terminate"],
            self.kill_templates()["cancel"],
        ]


def server_role(read_only, sources):
    """The server's role (_driver.ROLES): a replica is read-only and replicates from a source
    (`sources`: how many the server lists, or how many replication threads run); a server that
    replicates but takes writes (a multi-primary ring) is a primary: changes made there go on."""
    return ROLE_REPLICA if read_only and sources else ROLE_PRIMARY


def _db_datetime(iso_text, plus_seconds=0.0):
    """'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, our session's time zone) from an ISO state_since."""
    moment = parse_instant(iso_text)
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment + datetime.timedelta(seconds=plus_seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")


# The outcome of one victim in a guard block, as the block reports it.
GUARD_ENDED = "k"  # k:<errno of the KILL, 0 when it went through>
GUARD_GONE = "g"  # no thread with that id, user and client host:port
GUARD_MOVED = "m"  # m:<COMMAND now>:<QUERY_ID now>
GUARD_ERROR = "x"  # x:<errno of the re-read>
GUARD_NOT_WAITING = "w"  # planned by waiting_longer_than, the same statement, but no longer waiting on a lock
GUARD_NEW_EVENT = "n"  # n:<latest statement EVENT_ID now>:<statements running now> (performance_schema loop)
GUARD_EVENTS_OFF = "p"  # performance_schema's statement events were switched off since the binding
GUARD_IN_TRANSACTION = "i"  # planned idle (outside a transaction), in one now (transaction_check)
GUARD_TRX_UNPROVEN = "t"  # planned idle, but the transaction events are off now: no proof (transaction_check)
IN_TRANSACTION_DETAIL = "it is in a transaction now (performance_schema's transaction events), planned idle outside one"
TRX_UNPROVEN_DETAIL = (
    "performance_schema's transaction events were switched off since planning, so they cannot prove it is outside "
    "a transaction; not ended"
)
EVENTS_OFF_DETAIL = (
    "performance_schema's statement events (a consumer or a statement instrument) were switched off "
    "since planning, so they cannot prove it ran nothing since; not ended"
)

# performance_schema.events_statements_current shows every command of a thread (a statement, a
# ping, a change of database, a prepared statement's execute: each a new EVENT_ID, as each moves
# PROCESSLIST.QUERY_ID) only while these consumers are on and no statement instrument is off.
STATEMENT_EVENT_CONSUMERS = ("global_instrumentation", "thread_instrumentation", "events_statements_current")
STATEMENT_INSTRUMENTS = "statement/%"
# How many of those consumers are on (params: STATEMENT_EVENT_CONSUMERS); how many statement
# instruments are off (params: STATEMENT_INSTRUMENTS). Read by the driver before the binding
# and again inside the guard block.
_CONSUMERS_ON = (
    "(SELECT COUNT(*) FROM performance_schema.setup_consumers "
    f"WHERE NAME IN ({', '.join(['%s'] * len(STATEMENT_EVENT_CONSUMERS))}) AND ENABLED = 'YES')"
)
_INSTRUMENTS_OFF = "(SELECT COUNT(*) FROM performance_schema.setup_instruments WHERE NAME LIKE %s AND ENABLED <> 'YES')"


def statement_events_query():
    """(sql, params): one row (consumers on, statement instruments off, @@performance_schema);
    statement events are complete when it is (all the consumers, 0, 1)."""
    return (
        f"SELECT {_CONSUMERS_ON}, {_INSTRUMENTS_OFF}, @@performance_schema",
        STATEMENT_EVENT_CONSUMERS + (STATEMENT_INSTRUMENTS,),
    )


def statement_events_complete(row):
    return bool(row) and tuple(int(value or 0) for value in row[:3]) == (len(STATEMENT_EVENT_CONSUMERS), 0, 1)


def needs_transaction_check(victim, mode):
    """Whether the guard must prove, right before the KILL, that the victim is outside a
    transaction: one to terminate that was planned idle (its Sleep proven outside one by the
    transaction events); an idle_in_transaction one is ended in its transaction either way."""
    return mode == "terminate" and victim.get("state") == "idle"


def _transaction_row(victim, mode):
    """(THREAD_ID, tx) of a looped victim's row: tx 1 when it needs the transaction check."""
    if not needs_transaction_check(victim, mode):
        return 0, 0
    thread = victim.get("trx_thread_id")
    return (None if thread is None else int(thread)), 1


# Sets a, in a guard block, for the thread whose performance_schema THREAD_ID is {tid}:
# 0 when its latest transaction event is not ACTIVE (none at all: it never had one), > 0
# when it is in a transaction, -1 when the events are not complete (a consumer off now; tp,
# read once per block: the instrument). Read right before the victim's PROCESSLIST (or
# statement-event) read, its KILL right after that: no transaction starts without a command,
# and that read proves no command came since planning, so the victim is still outside a
# transaction when it is read; the check does not lengthen the time from that read to the
# KILL, in which a statement that arrives is lost with the kill. (params:
# TRANSACTION_EVENT_CONSUMERS)
_TRANSACTION_CHECK = (
    "SELECT IFNULL(SUM(STATE = 'ACTIVE'), 0) INTO a FROM performance_schema.events_transactions_current "
    "WHERE THREAD_ID = {tid}; "
    "SELECT COUNT(*) INTO tc FROM performance_schema.setup_consumers WHERE NAME IN (%s, %s, %s) AND ENABLED = 'YES'; "
    "IF tc <> 3 OR IFNULL(tp, 0) <> 1 OR {tid} IS NULL THEN SET a = -1; END IF;"
)
# ... and reports it: 'i' in a transaction, 't' unproven, else the KILL ({kill}).
_TRANSACTION_OUTCOME = (
    "IF a = 0 THEN {kill} SET r = CONCAT(r, 'k:', e, '|'); "
    "ELSEIF a > 0 THEN SET r = CONCAT(r, 'i|'); ELSE SET r = CONCAT(r, 't|'); END IF;"
)
_LOOP_KILL = "{kill} SET r = CONCAT(r, 'k:', e, '|');"


def _loop_steps(victims, mode, kill="KILL CONNECTION v.id;"):
    """({check}, {kill}, params of {check}) of a guard loop over `victims`: the transaction
    check and its outcome where one of them needs it (its rows say which: v.tx), else a
    plain `kill` (the statement that ends thread v.id)."""
    if not any(needs_transaction_check(victim, mode) for victim in victims):
        return "", _LOOP_KILL.format(kill=kill), ()
    check = "SET a = 0; IF v.tx = 1 THEN " + _TRANSACTION_CHECK.format(tid="v.tid") + " END IF; "
    return check, _TRANSACTION_OUTCOME.format(kill=kill), TRANSACTION_EVENT_CONSUMERS


# The instrument, once per block (params: TRANSACTION_INSTRUMENT).
_TRANSACTION_INSTRUMENT_ON = (
    "SET tp = (SELECT COUNT(*) FROM performance_schema.setup_instruments WHERE NAME = %s AND ENABLED = 'YES');"
)


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


# What a thread waiting on a metadata lock (or GET_LOCK) shows as PROCESSLIST.STATE
# ("Waiting for table metadata lock", "Waiting for backup lock", ..., "User lock").
# (% doubled: the guard block goes through the driver's parameter formatting.)
_MDL_WAIT_STATE = "(STATE LIKE 'Waiting for %%lock' OR STATE = 'User lock')"


def still_waiting_check(victim):
    """(SQL statement, params) that sets `w` to whether the victim still waits on a lock.

    A metadata-lock or GET_LOCK wait shows live in the thread's STATE. An InnoDB
    lock wait shows only in INNODB_TRX, InnoDB's cache: read right after the
    listing it is the listing's own snapshot, so a waiter that got its row lock
    in the last 100 ms may still be taken for waiting (its statement is the one
    that waited longer than planned, and the guard still requires it).
    """
    if victim.get("lock_kind") == LOCK_KIND_ROW:
        return (
            "SELECT COUNT(*) INTO w FROM information_schema.INNODB_TRX "
            "WHERE trx_mysql_thread_id = %s AND trx_state = 'LOCK WAIT';",
            (int(victim["id"]),),
        )
    return (
        f"SELECT COUNT(*) INTO w FROM information_schema.PROCESSLIST WHERE ID = %s AND {_MDL_WAIT_STATE};",
        (int(victim["id"]),),
    )


def parse_guard_outcomes(text, count):
    """[(code, fields)] from a guard block's result string; exactly `count` of them."""
    tokens = (text or "").split("|")
    if tokens and tokens[-1] == "":
        tokens.pop()
    if len(tokens) != count:
        raise ValueError(f"the guard block reported {len(tokens)} outcomes for {count} victims")
    return [(token[:1], token[2:].split(":") if len(token) > 2 else []) for token in tokens]


# ---------------------------------------------------------------- block-verified guard
# A guard's risk is its window (from a victim's verifying read to its KILL) over the
# victim's idle time at that read: about the chance that a thread idle that long sends a
# command inside the window (a session idle 30 min, a window of 40 ms: 2e-5; idle 300 ms:
# 13 %). Victims idle long enough are verified together, one read of the thread list for a
# block (verified_block), and killed in a tight loop; each KILL is issued only while that
# ratio, measured in the server right before it, is at most this bound. The others keep
# the re-read of their own right before their KILL.
WINDOW_RATIO_BOUND = 1e-4
# Victims in one verified block at most (one statement of about 60 bytes each).
VERIFIED_BLOCK = 1000
# The driver sizes a block so that its predicted window is at most this share of what the
# bound allows the block's victims (the rest is margin for a slower server than predicted).
VERIFIED_BLOCK_MARGIN = 0.8
# Predictions before a block of this driver measured them: the read of the thread list per
# thread, one KILL (a loaded 2-core machine: 5 us and 100 us).
VERIFY_READ_SECONDS_PER_THREAD = 20e-6
VERIFY_KILL_SECONDS = 300e-6
GUARD_BLOCK_ENDED = "b"  # b:<errno of the KILL>:<window / idle ratio right before it> (verified_block)
GUARD_UNVERIFIED = "r"  # the block's read was too old for its idle time: not killed, to be re-read on its own


def block_verifiable(victim, mode):
    """Whether a verified block may take this victim: one the guard loop would re-read on its
    own (looped_reread: idle, to terminate, its QUERY_ID known) whose planned idle time is known."""
    return looped_reread(victim, mode) and victim.get("idle_seconds") is not None


def verified_block_size(idle_seconds, threads, bound, read_per_thread, kill_seconds):
    """How many of the victims (their planned idle times, ascending) one verified block takes:
    the first n whose predicted window (the read of `threads` threads, then one KILL after
    another) stays within VERIFIED_BLOCK_MARGIN of bound x idle time, each victim at its place;
    0 when even the first does not fit (it is then re-read on its own)."""
    read = read_per_thread * max(1, int(threads))
    count = 0
    for idle in idle_seconds[:VERIFIED_BLOCK]:
        if read + (count + 1) * kill_seconds > VERIFIED_BLOCK_MARGIN * bound * idle:
            break
        count += 1
    return count


# One read for the whole block: the thread list (information_schema.PROCESSLIST, filled once
# and scanned once: it leads the join, each thread looked up among the victims' rows by its
# ID) joined to the victims' rows and, where a victim needs the transaction check, to its
# latest transaction events (performance_schema, grouped once per block); the cursor is read
# at its open. A victim the list no longer shows (same id, user byte for byte, client
# host:port) has no row: gone, told by its place (k). Per victim, in a tight loop: the same
# proof as the guard loop's re-read (Sleep with the planned QUERY_ID; planned idle: still
# outside a transaction, the events complete, read after the open), then SYSDATE(6): the KILL
# goes out only if (now - the instant before the read) / (TIME_MS at the read) is at most the
# bound, else 'r'. t0 is taken before the read, so the ratio reported is an upper bound of the
# real one. A cursor that failed (e set outside a victim's step) reports x:<errno> for the
# victims it did not reach. The second column: microseconds from t0 to the first row (the
# read) and to the end of the loop, victims reached.
_VERIFIED_BLOCK = (
    "BEGIN NOT ATOMIC "
    "DECLARE e INT DEFAULT 0; DECLARE m INT DEFAULT 0; DECLARE o INT DEFAULT 0; DECLARE r TEXT DEFAULT ''; "
    "DECLARE z DOUBLE; DECLARE t0 DATETIME(6); DECLARE tr BIGINT; DECLARE tc INT DEFAULT 0; "
    "DECLARE CONTINUE HANDLER FOR SQLEXCEPTION GET DIAGNOSTICS CONDITION 1 e = MYSQL_ERRNO; "
    "SET t0 = SYSDATE(6); "
    "FOR v IN (SELECT x.k, x.id, x.qid, x.tid, x.tx, p.COMMAND AS c, p.QUERY_ID AS q, p.TIME_MS AS ms, {active} AS a "
    "FROM information_schema.PROCESSLIST AS p STRAIGHT_JOIN ({rows}) AS x "
    "ON p.ID = x.id AND BINARY p.USER = BINARY x.usr AND p.HOST = x.host {events} ORDER BY x.k) DO "
    "IF o = 0 THEN SET tr = TIMESTAMPDIFF(MICROSECOND, t0, SYSDATE(6)), o = 1; {trx_on} END IF; "
    "SET r = CONCAT(r, REPEAT('g|', v.k - m)), m = v.k + 1, o = o + 1; "
    "IF v.c <> 'Sleep' OR v.q <> v.qid THEN SET r = CONCAT(r, 'm:', IFNULL(v.c, ''), ':', IFNULL(v.q, ''), '|'); "
    "ELSEIF v.tx = 1 AND (IFNULL(tc, 0) <> 1 OR v.tid IS NULL) THEN SET r = CONCAT(r, 't|'); "
    "ELSEIF v.tx = 1 AND IFNULL(v.a, 0) > 0 THEN SET r = CONCAT(r, 'i|'); "
    "ELSE SET z = TIMESTAMPDIFF(MICROSECOND, t0, SYSDATE(6)) / (1000 * v.ms), e = 0; "
    "IF v.ms > 0 AND z <= {bound!r} THEN {kill} SET r = CONCAT(r, 'b:', e, ':', z, '|'); "
    "ELSE SET r = CONCAT(r, 'r|'); END IF; END IF; "
    "SET e = 0; "
    "END FOR; "
    "SET r = CONCAT(r, REPEAT(IF(e = 0, 'g|', CONCAT('x:', e, '|')), {count} - m)); "
    "SELECT r, CONCAT(IFNULL(tr, ''), ':', TIMESTAMPDIFF(MICROSECOND, t0, SYSDATE(6)), ':', GREATEST(o - 1, 0)); END"
)
_VERIFIED_FIRST_ROW = "SELECT %s AS k, %s AS id, %s AS usr, %s AS host, %s AS qid, %s AS tid, %s AS tx"
_VERIFIED_ROW = "(%s, %s, %s, %s, %s, %s, %s)"
# Each thread's latest transaction events, ACTIVE or not (params: none).
_VERIFIED_EVENTS = (
    "LEFT JOIN (SELECT THREAD_ID, SUM(STATE = 'ACTIVE') AS a FROM performance_schema.events_transactions_current "
    "GROUP BY THREAD_ID) AS te ON te.THREAD_ID = x.tid"
)


def verified_block(victims, bound=WINDOW_RATIO_BOUND, kill="KILL CONNECTION v.id;"):
    """(sql, params) of one verified block over `victims` (block_verifiable, to terminate):
    one result row, (outcomes, figures). Outcomes (parse_guard_outcomes, in the given order):
    b:<errno>:<ratio> killed (errno 0) or its KILL failed, g gone, m:<COMMAND>:<QUERY_ID> moved,
    i in a transaction now, t the transaction events off, r not killed: its window would pass
    the bound, x:<errno> not reached. Figures (verified_block_figures): microseconds to the read,
    to the end, victims reached."""
    if not victims:
        raise ValueError("victims must not be empty")
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 < bound < 1:
        raise ValueError(f"bound must be a ratio between 0 and 1, not {bound!r}")
    checked = any(needs_transaction_check(victim, "terminate") for victim in victims)
    rows = [_VERIFIED_FIRST_ROW]
    if len(victims) > 1:
        rows.append("UNION ALL VALUES " + ", ".join([_VERIFIED_ROW] * (len(victims) - 1)))
    params = []
    for position, victim in enumerate(victims):
        params.extend([position, int(victim["id"]), victim.get("user"), victim.get("host"), int(victim["query_id"])])
        params.extend(_transaction_row(victim, "terminate"))
    sql = _VERIFIED_BLOCK.format(
        active="te.a" if checked else "0",
        rows=" ".join(rows),
        events=_VERIFIED_EVENTS if checked else "",
        trx_on=f"SET tc = {_TRX_EVENTS_ON};" if checked else "",
        bound=float(bound),
        count=len(victims),
        kill=kill,
    )
    if checked:
        params.extend(TRANSACTION_EVENTS_ON_PARAMS)
    return sql, tuple(params)


def verified_block_figures(text):
    """(seconds to the read, seconds to the end, victims reached) from a verified block's figures."""
    parts = (text or "").split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None, None, 0
    return (int(parts[0]) / 1e6 if parts[0].isdigit() else None), int(parts[1]) / 1e6, int(parts[2])


class MariaDB(Flavour):
    name = "mariadb"
    label = "MariaDB"
    elapsed_ms_expr = "p.TIME_MS"
    query_id_expr = "p.QUERY_ID"
    state_since_tolerance = 0.5
    server_side_guard = True
    # The guard takes an active thread whose QUERY_ID moved (a stored procedure moves it per
    # inner statement) for the planned one only if its command started no later than the
    # planned start plus this: TIME_MS is exact to the millisecond, so this only absorbs the
    # listing's own spread. A wider margin would let a new statement that began soon after the
    # planned one ended be cancelled in its place.
    guard_start_tolerance = 0.05

    def _still_planned(self, victim, tolerance):
        """(SQL condition on one PROCESSLIST row, params): the thread is in the planned state.

        Idle (with or without a transaction): same COMMAND and same QUERY_ID, so
        no statement ran since planning (and so its transaction is the same one).
        Active: same COMMAND and the same statement: same QUERY_ID, or (a stored
        procedure moves QUERY_ID per inner statement) a start not later than
        planned. SYSDATE(6) is the real time, not the block's start.
        """
        since = _db_datetime(victim.get("state_since"), tolerance)
        started_by = "TIMESTAMPADD(MICROSECOND, -ROUND(TIME_MS * 1000), SYSDATE(6)) <= CAST(%s AS DATETIME(6))"
        query_id = victim.get("query_id")
        if victim.get("state") != "active" and query_id is not None:
            return "COMMAND = %s AND QUERY_ID = %s", (victim.get("command"), int(query_id))
        if since is None:
            return "FALSE", ()
        if query_id is None:
            return "COMMAND = %s AND " + started_by, (victim.get("command"), since)
        return "COMMAND = %s AND (QUERY_ID = %s OR " + started_by + ")", (victim.get("command"), int(query_id), since)

    # The idle victims to terminate (looped_reread), nearly all the victims of a sweep: one
    # loop over their rows, so the block's text (and the server's parsing of it, which cost
    # 100-300 us per unrolled step of about 700 bytes) does not grow with them. Per victim,
    # as in a step of its own: a read of information_schema.PROCESSLIST for that thread
    # (same id, user byte for byte -- MariaDB's user names are case-sensitive, the
    # collation of PROCESSLIST.USER is not -- and client host:port), then its KILL at once
    # if it is still Sleep with the planned QUERY_ID. Reading several victims at once and
    # killing them after was measured to widen the window: groups of 8 with the read
    # trusted for up to 1 ms made 0.68 % wrong kills under the wake race, 200 us 0.20 %,
    # against 0.07 % for a read per victim (tests/reliability/test_wake_race.py). A cursor
    # that failed to open reports x:<errno> for the victims it did not reach.
    # A victim planned idle (outside a transaction: needs_transaction_check, v.tx = 1) is also
    # read in performance_schema's transaction events (by its THREAD_ID, v.tid) right before
    # that read: KILLed only if it is outside a transaction (_TRANSACTION_CHECK).
    _IDLE_LOOP = (
        "SET m = 0; "
        "FOR v IN (SELECT * FROM ({rows}) AS x ORDER BY x.k) DO "
        "SET m = m + 1, e = 0; {check}"
        "SELECT COUNT(*), MAX(COMMAND), MAX(QUERY_ID) INTO n, c, q FROM information_schema.PROCESSLIST "
        "WHERE ID = v.id AND BINARY USER = BINARY v.usr AND HOST = v.host; "
        "IF e <> 0 THEN SET r = CONCAT(r, 'x:', e, '|'); "
        "ELSEIF n = 0 THEN SET r = CONCAT(r, 'g|'); "
        "ELSEIF c = 'Sleep' AND q = v.qid THEN {kill} "
        "ELSE SET r = CONCAT(r, 'm:', IFNULL(c, ''), ':', IFNULL(q, ''), '|'); END IF; "
        "END FOR; "
        "IF m < {count} THEN SET r = CONCAT(r, REPEAT(CONCAT('x:', e, '|'), {count} - m)); END IF;"
    )
    _IDLE_FIRST_ROW = "SELECT %s AS k, %s AS id, %s AS usr, %s AS host, %s AS qid, %s AS tid, %s AS tx"
    _IDLE_ROW = "(%s, %s, %s, %s, %s, %s, %s)"

    # The same victims when bind_statement_events bound them (performance_schema's statement
    # events complete, each victim's latest event tied to the listing): per victim, a read of
    # its thread's rows in events_statements_current (about 0.1 us per thread where
    # PROCESSLIST takes 150 us plus 0.5 us per thread, so the time from the read to the KILL
    # is that much shorter), after a check that the consumers are still on; the KILL at once
    # if the latest EVENT_ID is the bound one and no statement runs. The statement
    # instruments are checked once for the block, before the loop.
    _EVENTS_LOOP = (
        f"SET m = 0, e = 0, p = {_INSTRUMENTS_OFF}; "
        "FOR v IN (SELECT * FROM ({rows}) AS x ORDER BY x.k) DO "
        f"SET m = m + 1, e = 0, ok = {_CONSUMERS_ON}; "
        "{check}"
        "SELECT COUNT(*), MAX(EVENT_ID), SUM(END_EVENT_ID IS NULL) INTO n, q, w "
        "FROM performance_schema.events_statements_current WHERE THREAD_ID = v.tid; "
        "IF e <> 0 THEN SET r = CONCAT(r, 'x:', e, '|'); "
        f"ELSEIF IFNULL(ok, 0) <> {len(STATEMENT_EVENT_CONSUMERS)} OR IFNULL(p, 1) <> 0 THEN SET r = CONCAT(r, 'p|'); "
        # No row: the thread left, or its row is being rewritten by a statement that starts
        # right now (performance_schema skips a row under change); PROCESSLIST tells them apart.
        "ELSEIF n = 0 THEN SELECT COUNT(*) INTO n FROM information_schema.PROCESSLIST WHERE ID = v.id; "
        "IF e <> 0 THEN SET r = CONCAT(r, 'x:', e, '|'); ELSEIF n = 0 THEN SET r = CONCAT(r, 'g|'); "
        "ELSE SET r = CONCAT(r, 'n::1|'); END IF; "
        "ELSEIF q = v.eid AND w = 0 THEN {kill} "
        "ELSE SET r = CONCAT(r, 'n:', IFNULL(q, ''), ':', IFNULL(w, ''), '|'); END IF; "
        "END FOR; "
        "IF m < {count} THEN SET r = CONCAT(r, REPEAT(CONCAT('x:', e, '|'), {count} - m)); END IF;"
    )
    _EVENTS_FIRST_ROW = "SELECT %s AS k, %s AS id, %s AS tid, %s AS eid, %s AS tx"
    _EVENTS_ROW = "(%s, %s, %s, %s, %s)"

    @staticmethod
    def guard_paths(victims, mode, loop=True, bound=None):
        """(on their statement events, in the PROCESSLIST loop, in a step of their own): the
        victims split by the way a guard block re-reads them, each list in the given order.
        With `loop`, the looped_reread ones go through a loop -- those `bound` (key ->
        (THREAD_ID, EVENT_ID), bind_statement_events) through the one on statement events --;
        without, every victim has a step of its own."""
        if not loop:
            return [], [], list(victims)
        bound = bound or {}
        looped = [victim for victim in victims if looped_reread(victim, mode)]
        return (
            [victim for victim in looped if victim.get("key") in bound],
            [victim for victim in looped if victim.get("key") not in bound],
            [victim for victim in victims if not looped_reread(victim, mode)],
        )

    @classmethod
    def guard_order(cls, victims, mode, loop=True, bound=None):
        """The victims in the order a guard block handles them and reports their outcomes:
        the three guard_paths one after the other."""
        on_events, looped, own_steps = cls.guard_paths(victims, mode, loop, bound)
        return on_events + looped + own_steps

    def guard_block(self, victims, mode, tolerance=None, loop=True, bound=None):
        """One compound statement that, per victim, re-reads the thread and KILLs it
        only if it is still the planned session in the planned state.

        Returns (sql, params); the statement's one result row holds the outcomes
        (parse_guard_outcomes), one per victim in order. The re-read and the KILL
        of a victim are two instructions of one server-side program: no round trip
        between them. A KILL that fails (the thread left in between: 1094; the
        statement ended: 1957; no right: 1095) is caught and reported, and the
        block goes on with the next victim. Cancels use KILL QUERY ID with the
        statement id the re-read just saw: it can only hit that very statement.
        With `loop`, the looped_reread victims (idle, to terminate) come first, in one
        loop (_IDLE_LOOP), those `bound` to their statement events first, in a loop of their
        own (_EVENTS_LOOP); outcomes are in guard_order(victims, mode, loop, bound).
        """
        if mode not in KILL_TEMPLATES:
            raise ValueError(f"mode must be terminate or cancel, not {mode!r}")
        if not victims:
            raise ValueError("victims must not be empty")
        tolerance = self.guard_start_tolerance if tolerance is None else tolerance
        kill = "KILL CONNECTION %s;" if mode == "terminate" else "KILL QUERY ID q;"
        loop_kill = self.loop_kill()
        if self.rds_kill:
            # The service's procedures take a thread id: a cancel ends the thread's statement of
            # the moment, re-read in the same block right before (no round trip in between).
            kill = f"CALL {RDS_PROCEDURES[mode]}(%s);"
        parts = [
            "BEGIN NOT ATOMIC",
            "DECLARE e INT DEFAULT 0; DECLARE n INT; DECLARE ok INT; DECLARE q BIGINT; DECLARE c VARCHAR(64);",
            "DECLARE r TEXT DEFAULT ''; DECLARE w INT; DECLARE m INT; DECLARE p INT;",
            "DECLARE a INT DEFAULT 0; DECLARE tc INT; DECLARE tp INT;",
            "DECLARE CONTINUE HANDLER FOR SQLEXCEPTION GET DIAGNOSTICS CONDITION 1 e = MYSQL_ERRNO;",
        ]
        params = []
        if any(needs_transaction_check(victim, mode) for victim in victims):
            parts.append(_TRANSACTION_INSTRUMENT_ON)
            params.append(TRANSACTION_INSTRUMENT)
        on_events, looped, own_steps = self.guard_paths(victims, mode, loop, bound)
        if on_events:
            rows = [self._EVENTS_FIRST_ROW]
            if len(on_events) > 1:
                rows.append("UNION ALL VALUES " + ", ".join([self._EVENTS_ROW] * (len(on_events) - 1)))
            check, kill_step, check_params = _loop_steps(on_events, mode, loop_kill)
            parts.append(
                self._EVENTS_LOOP.format(rows=" ".join(rows), count=len(on_events), check=check, kill=kill_step)
            )
            params.append(STATEMENT_INSTRUMENTS)
            for position, victim in enumerate(on_events):
                thread, event = bound[victim["key"]]
                params.extend([position, int(victim["id"]), int(thread), int(event)])
                params.append(_transaction_row(victim, mode)[1])
            params.extend(STATEMENT_EVENT_CONSUMERS)
            params.extend(check_params)
        if looped:
            rows = [self._IDLE_FIRST_ROW]
            if len(looped) > 1:
                rows.append("UNION ALL VALUES " + ", ".join([self._IDLE_ROW] * (len(looped) - 1)))
            check, kill_step, check_params = _loop_steps(looped, mode, loop_kill)
            parts.append(self._IDLE_LOOP.format(rows=" ".join(rows), count=len(looped), check=check, kill=kill_step))
            for position, victim in enumerate(looped):
                params.extend(
                    [position, int(victim["id"]), victim.get("user"), victim.get("host"), int(victim["query_id"])]
                )
                params.extend(_transaction_row(victim, mode))
            params.extend(check_params)
        for victim in own_steps:
            condition, condition_params = self._still_planned(victim, tolerance)
            # A waiter planned by waiting_longer_than is ended only while it still waits.
            waiting, waiting_params = ("SET w = 1;", ())
            if victim.get(GUARD_STILL_WAITING):
                waiting, waiting_params = still_waiting_check(victim)
            # A victim planned idle: also still outside a transaction (_TRANSACTION_CHECK).
            check, outcome, check_params = "", f"{kill} SET r = CONCAT(r, 'k:', e, '|');", []
            if needs_transaction_check(victim, mode):
                thread = _transaction_row(victim, mode)[0]
                check = "SET a = 0; " + _TRANSACTION_CHECK.format(tid="%s") + " "
                outcome = _TRANSACTION_OUTCOME.format(kill=kill)
                check_params = [thread] + list(TRANSACTION_EVENT_CONSUMERS) + [thread]
            parts.append(
                f"SET e = 0; {waiting} {check}"
                f"SELECT COUNT(*), MAX(COMMAND), MAX(QUERY_ID), MAX({condition}) INTO n, c, q, ok "
                "FROM information_schema.PROCESSLIST WHERE ID = %s AND BINARY USER = BINARY %s AND HOST = %s; "
                "IF e <> 0 THEN SET r = CONCAT(r, 'x:', e, '|'); "
                "ELSEIF n = 0 THEN SET r = CONCAT(r, 'g|'); "
                f"ELSEIF ok = 1 THEN IF w > 0 THEN {outcome} "
                "ELSE SET r = CONCAT(r, 'w|'); END IF; "
                "ELSE SET r = CONCAT(r, 'm:', IFNULL(c, ''), ':', IFNULL(q, ''), '|'); END IF;"
            )
            params.extend(waiting_params)
            params.extend(check_params)
            params.extend(condition_params)
            params.extend([int(victim["id"]), victim.get("user"), victim.get("host")])
            if mode == "terminate" or self.rds_kill:
                params.append(int(victim["id"]))
        parts.append("SELECT r; END")
        return " ".join(parts), tuple(params)

    def templates(self, row_locks=True, metadata_locks=True, transactions=True):
        sample = {"id": 0, "user": "", "host": "", "command": "Sleep", "state": "idle", "query_id": 0, "key": "k"}
        return Flavour.templates(self, row_locks, metadata_locks, transactions) + [
            self.guard_block([sample], "terminate")[0].replace(
                "KILL CONNECTION %s;", "KILL CONNECTION %s; ... (one such step per victim)"
            ),
            "KILL QUERY ID q (q: the statement id the guard just re-read)",
            statement_events_query()[0],
            BIND_THREADS_SQL,
            BIND_EVENTS_SQL,
            BIND_THREAD_LIST_SQL,
            self.guard_block([sample], "terminate", bound={"k": (0, 0)})[0],
        ]

    @property
    def kill_privileges(self):
        # 10.5.2 split CONNECTION ADMIN out of SUPER; SUPER still works where it exists.
        if self.version >= (10, 5, 2):
            return ("CONNECTION ADMIN", "SUPER")
        return ("SUPER",)


class MySQL(Flavour):
    name = "mysql"
    label = "MySQL"
    kill_privileges = ("CONNECTION_ADMIN", "SUPER")
    superuser_privileges = ("SUPER", "SYSTEM_USER")
    # TIME has whole seconds only.
    state_since_tolerance = 1.5

    def server_started_query(self):
        if not self.performance_schema:
            return None  # no global_status to read Uptime in the same statement: keys without the start
        return (
            "SELECT UNIX_TIMESTAMP() - VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = %s",
            ("Uptime",),
        )

    def replica_status_query(self):
        return ("SHOW REPLICA STATUS" if self.version >= (8, 0, 22) else "SHOW SLAVE STATUS", ())

    @staticmethod
    def replication_threads_query():
        # MySQL's processlist shows them as plain Connect / Query threads of 'system user'.
        return (
            "SELECT COUNT(*) FROM performance_schema.threads WHERE NAME IN %s",
            (("thread/sql/replica_io", "thread/sql/replica_sql", "thread/sql/slave_io", "thread/sql/slave_sql"),),
        )

    def statement_timeout_query(self, seconds):
        # max_execution_time (ms) bounds read-only SELECTs, which is all we run but KILL.
        return ("SET SESSION max_execution_time = %s", (int(seconds) * 1000,))

    def lock_query(self, timeout, query_timeout):
        return (
            f"SELECT /*+ MAX_EXECUTION_TIME({(int(query_timeout) + int(timeout) + 1) * 1000}) */ GET_LOCK(%s, %s)",
            (SWEEP_LOCK, int(math.ceil(timeout))),
        )

    @property
    def processlist_table(self):
        # information_schema.PROCESSLIST is deprecated in 8.0 and takes a global
        # mutex; performance_schema.processlist (8.0.22+) does not.
        if self.performance_schema and self.version >= (8, 0, 22):
            return "performance_schema.processlist"
        return "information_schema.PROCESSLIST"

    def superuser_probe(self):
        return ("SELECT u.User, u.Super_priv, g.PRIV FROM mysql.user AS u, mysql.global_grants AS g LIMIT 0", ())

    def row_lock_waits_join(self):
        # 8.0 dropped INNODB_LOCK_WAITS; performance_schema has the waits (by
        # performance_schema thread id: threads maps them to processlist ids).
        if not self.performance_schema:
            return None
        return (
            "LEFT JOIN (SELECT rt.PROCESSLIST_ID AS waiter_id, GROUP_CONCAT(DISTINCT bt.PROCESSLIST_ID) AS blockers "
            "FROM performance_schema.data_lock_waits AS w "
            "JOIN performance_schema.threads AS rt ON rt.THREAD_ID = w.REQUESTING_THREAD_ID "
            "JOIN performance_schema.threads AS bt ON bt.THREAD_ID = w.BLOCKING_THREAD_ID "
            "GROUP BY rt.PROCESSLIST_ID) AS rw ON rw.waiter_id = p.ID",
            (),
        )

    @staticmethod
    def row_lock_waits_probe():
        return (
            "SELECT w.REQUESTING_THREAD_ID, t.PROCESSLIST_ID FROM performance_schema.data_lock_waits AS w, "
            "performance_schema.threads AS t LIMIT 0",
            (),
        )

    def superuser_join(self):
        return (
            "LEFT JOIN (SELECT User AS user_name, MAX(Super_priv = 'Y') AS is_super FROM ("
            "SELECT User, Super_priv FROM mysql.user "
            "UNION ALL SELECT USER, 'Y' FROM mysql.global_grants WHERE PRIV = 'SYSTEM_USER'"
            ") AS su GROUP BY User) AS s ON s.user_name = p.USER"
        )

    def superuser_grants(self, account):
        return [
            f"GRANT SELECT (User, Host, Super_priv) ON mysql.user TO {account}",
            f"GRANT SELECT ON mysql.global_grants TO {account}",
        ]


def detect(version_text, version_comment, performance_schema):
    """The flavour object for a server, from VERSION() and @@version_comment."""
    text = f"{version_text or ''} {version_comment or ''}"
    flavour = MariaDB if "mariadb" in text.lower() else MySQL
    return flavour(parse_version(version_text), performance_schema)
