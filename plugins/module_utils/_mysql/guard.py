# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MariaDB guard: the compound statement that re-reads each victim and KILLs it
only while it is still the planned session, and the pieces every guard statement shares.

Private to the collection. Standard library only; builders return ``(sql, params)``, run by
``kill.GuardedKill``. Here: which victims a guard may end at all (``idle_unproven``), the
block sizes, the outcome codes a guard block reports (``parse_guard_outcomes``), the
transaction check right before a KILL, the lock-wait check, and ``MariaDBGuard.guard_block``
(a base of ``flavours.MariaDB``). The verified blocks are ``verified.py``; the statement
events a loop can re-read instead of the thread list, ``statement_events.py``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    GUARD_STILL_WAITING,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.locks import (
    LOCK_KIND_ROW,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.statement_events import (
    CONSUMERS_ON,
    INSTRUMENTS_OFF,
    STATEMENT_EVENT_CONSUMERS,
    STATEMENT_INSTRUMENTS,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.statements import (
    IDLE_COMMAND,
    KILL_TEMPLATES,
    TRANSACTION_EVENT_CONSUMERS,
    TRANSACTION_INSTRUMENT,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._platform import RDS_PROCEDURES
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import UTC, parse_instant

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


def needs_transaction_check(victim, mode):
    """Whether the guard must prove, right before the KILL, that the victim is outside a
    transaction: one to terminate that was planned idle (its Sleep proven outside one by the
    transaction events); an idle_in_transaction one is ended in its transaction either way."""
    return mode == "terminate" and victim.get("state") == "idle"


def transaction_row(victim, mode):
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


class MariaDBGuard(object):
    """MariaDB's guard block (``guard_block``): the part of ``flavours.MariaDB`` that builds it."""

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
        f"SET m = 0, e = 0, p = {INSTRUMENTS_OFF}; "
        "FOR v IN (SELECT * FROM ({rows}) AS x ORDER BY x.k) DO "
        f"SET m = m + 1, e = 0, ok = {CONSUMERS_ON}; "
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
                params.append(transaction_row(victim, mode)[1])
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
                params.extend(transaction_row(victim, mode))
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
                thread = transaction_row(victim, mode)[0]
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
