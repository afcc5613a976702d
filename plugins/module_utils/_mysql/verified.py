# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MariaDB guard's verified blocks: long-idle victims verified by one read of the
thread list per block, then KILLed in a tight loop, each within ``WINDOW_RATIO_BOUND`` of
(read -> KILL) / idle time, measured in the server.

Private to the collection. Standard library only; ``verified_block`` returns ``(sql, params)``,
run by ``kill.GuardedKill._verified_blocks``, which sizes the blocks (``verified_block_size``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.guard import (
    looped_reread,
    needs_transaction_check,
    transaction_row,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.statements import (
    TRANSACTION_EVENTS_ON_PARAMS,
    TRX_EVENTS_ON,
)

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
        params.extend(transaction_row(victim, "terminate"))
    sql = _VERIFIED_BLOCK.format(
        active="te.a" if checked else "0",
        rows=" ".join(rows),
        events=_VERIFIED_EVENTS if checked else "",
        trx_on=f"SET tc = {TRX_EVENTS_ON};" if checked else "",
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
