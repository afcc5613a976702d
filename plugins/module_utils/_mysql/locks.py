# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lock waits in the MySQL / MariaDB listing: the metadata-lock compatibility matrix,
the joins that read who waits on whom, and how a row's lock columns read.

Private to the collection. Standard library only; builders return ``(sql, params)``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


# ---------------------------------------------------------------- lock waits
# What a waiting record's lock_kind says it waits for.
LOCK_KIND_ROW = "row"  # an InnoDB lock (a row, or InnoDB's own table lock)
LOCK_KIND_METADATA = "metadata"  # a metadata lock (a table, schema, routine, the backup lock, ...)
LOCK_KIND_USER = "user_lock"  # GET_LOCK()
MDL_USER_LOCK = "USER LEVEL LOCK"  # performance_schema.metadata_locks.OBJECT_TYPE of GET_LOCK()
# Our own GET_LOCK: one sweep at a time per server (``statements.Flavour.lock_query``); no lock wait.
SWEEP_LOCK = "dbhygiene.sessions.sweep"

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
        seconds = elapsed if seconds is None else rounded_seconds(seconds)
        if seconds is not None and elapsed is not None:
            seconds = min(seconds, elapsed)  # the wait began within the current statement
        return _ids(values.get("row_blockers")), seconds, LOCK_KIND_ROW
    return [], None, None


def rounded_seconds(value):
    """None, or the value as float seconds rounded to the millisecond (a number the server read)."""
    return None if value is None else round(float(value), 3)


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
