# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guarded kill of the MySQL / MariaDB driver (``MySQLDriver.end_sessions``).

Private to the collection. ``GuardedKill`` is a part of ``driver.MySQLDriver`` (its base
before ``_driver.Driver``): it runs the guard statements built in ``guard``, ``verified``
and ``statement_events`` on the driver's connection and turns what they report into
outcomes.

Guarded kill, per victim: a thread is killed only if it is the same thread
(id, user, client host:port, server start) in the same state (COMMAND, no new
statement: QUERY_ID; an active one's statement start not later than planned).
MariaDB: the re-reads and the KILLs are instructions of one server-side
compound statement (``BEGIN NOT ATOMIC``), up to 500 victims per round trip
(fewer on a server with many threads: each re-read scans the thread list).
Idle victims to terminate go through one loop (its text does not grow with
them), the others through a step each; every victim is re-read on its own
right before its KILL. What remains is the time inside the server from a
victim's re-read to its KILL. Where performance_schema keeps statement events
(the events_statements_current consumer and every statement instrument on),
idle victims to terminate are bound to their latest event right after the
listing and re-read there instead (_bind_statement_events,
statement_events.bind_statement_events): the same proof, a cheaper read.
Cancels use ``KILL QUERY ID`` with the statement id just re-read.
Idle victims to terminate that were idle long enough go first, through verified
blocks (_verified_blocks, verified.verified_block): one read of the thread list per
block, in the same compound statement as their KILLs, then a tight loop of KILLs, each
only while (time from that read to the KILL) / (the victim's idle time at the read),
measured in the server right before it, is at most window_ratio_bound
(verified.WINDOW_RATIO_BOUND, 1e-4): the risk a window carries follows the victim's idle
time. Blocks are sized from the costs the last block measured; a victim that fits none,
or whose KILL the server refused for the bound, is re-read on its own as above. The
largest ratio of the sweep: guard_figures() (the `guard` result). MySQL has
no compound statements outside stored programs: each victim is re-read right
before its own KILL, a window of one round trip.
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
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import (
    guard,
    locks,
    statement_events,
    verified,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.errors import (
    ER_KILL_DENIED,
    ER_NO_SUCH_QUERY,
    ER_SPECIFIC_ACCESS_DENIED,
    ER_UNKNOWN_THREAD,
    client_side,
    error_code,
    pymysql,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.rows import key_server_started, moved_on


class GuardedKill(object):
    """The guarded kill of ``MySQLDriver`` (its connection, flavour, listing and counters)."""

    def end_sessions(self, victims, mode):
        """The guarded kill of docs/architecture.md, per victim (see the module docstring).

        On a failure part-way (connection lost, timeout), raises SessionError with
        `outcomes`: the (session, outcome, detail) known so far, in order.
        """
        if mode not in OUTCOMES:
            raise ValueError(f"mode must be terminate or cancel, not {mode!r}")
        if not victims:
            return []
        results = [None] * len(victims)
        todo = []
        for index, victim in enumerate(victims):
            planned_start = key_server_started(victim.get("key"))
            if str(victim.get("id")) == str(self._own_id):
                results[index] = (victim, REASON_FAILED, "refusing to end our own connection")
            elif planned_start is not None and planned_start != self.server_started:
                results[index] = (
                    victim,
                    REASON_GONE,
                    f"the server restarted since planning: thread id {victim.get('id')} is another connection",
                )
            elif guard.idle_unproven(victim) and mode == "terminate":
                # No proof it is outside a transaction (guard.IDLE_PROOF_SECONDS).
                results[index] = (victim, REASON_STATE_CHANGED, guard.idle_unproven(victim))
            else:
                todo.append(index)
        if todo and not self.list_applications:
            try:
                self._add_applications([victims[index] for index in todo if victims[index].get("key")])
            except SessionError:
                pass  # only for the record: never a reason not to end a victim
        try:
            if self.flavour.server_side_guard:
                if mode == "terminate":
                    self._verified_blocks(victims, todo, results)
                    todo = [index for index in todo if results[index] is None]
                bound = self._bind_statement_events([victims[index] for index in todo], mode)
                size = guard.guard_batch_size(self._threads_seen)
                for first in range(0, len(todo), size):
                    batch = todo[first : first + size]
                    for index, outcome in zip(batch, self._guarded_batch([victims[i] for i in batch], mode, bound)):
                        results[index] = outcome
            else:
                for index in todo:
                    results[index] = self._reread_and_kill(victims[index], mode)
        except SessionError as exc:
            exc.outcomes = [outcome for outcome in results if outcome is not None]
            raise
        return results

    def _bind_statement_events(self, victims, mode):
        """{key: (THREAD_ID, EVENT_ID)} of the idle victims to terminate that the guard can read
        in performance_schema.events_statements_current (statement_events.bind_statement_events), or {}
        when its statement events are not complete on this server (performance_schema off, a
        consumer or a statement instrument off, no SELECT on those tables): they are then read
        in PROCESSLIST."""
        candidates = [victim for victim in victims if guard.looped_reread(victim, mode) and victim.get("key")]
        if not candidates:
            return {}
        try:
            if not statement_events.statement_events_complete(
                self._execute(statement_events.statement_events_query())[0]
            ):
                return {}
            threads = self._execute((statement_events.BIND_THREADS_SQL, None))
            events = self._execute((statement_events.BIND_EVENTS_SQL, None))
            thread_list = self._execute((statement_events.BIND_THREAD_LIST_SQL, None))
        except pymysql.MySQLError as exc:
            if client_side(error_code(exc)):
                raise SessionError(
                    f"the guarded {mode} of {len(victims)} threads on {self.target} failed before any KILL "
                    f"(reading the statement events): {self._why(exc)}"
                )
            return {}  # a table the login may not read (1142), performance_schema off: PROCESSLIST
        bound = statement_events.bind_statement_events(candidates, threads, events, thread_list)
        return dict((candidates[index]["key"], binding) for index, binding in bound.items())

    def _verified_blocks(self, victims, todo, results):
        """Set results[index] of the victims (indexes `todo`, to terminate) that verified blocks
        settle, block by block (a failure part-way keeps the outcomes known): the
        block_verifiable ones by planned idle time, shortest first, in blocks sized
        (verified.verified_block_size) so that each one's predicted window stays within the
        bound; the predictions are this driver's last measured ones. A victim that a block left
        unverified (its window would have passed the bound: r; the block's read failed before
        it: x, no KILL went out for it) gets one more block; one that fits no block, or is left
        unverified twice, is left None: the guard block re-reads it on its own."""
        pending = sorted(
            (index for index in todo if verified.block_verifiable(victims[index], "terminate")),
            key=lambda index: victims[index]["idle_seconds"],
        )
        tried = set()
        while pending:
            size = verified.verified_block_size(
                [victims[index]["idle_seconds"] for index in pending],
                self._threads_seen,
                self.window_ratio_bound,
                self._verify_read,
                self._verify_kill,
            )
            if size == 0 and not self._verify_measured and self._may_fit(victims[pending[-1]]):
                # Predictions not measured yet: one block of the longest idle victim measures them.
                block, pending = pending[-1:], pending[:-1]
            elif size == 0:
                pending.pop(0)  # too recently active for any block: re-read on its own
                continue
            else:
                block, pending = pending[:size], pending[size:]
            rows = self._guard_rows(
                verified.verified_block(
                    [victims[index] for index in block], self.window_ratio_bound, self.flavour.loop_kill()
                ),
                "terminate",
                len(block),
            )
            outcomes = guard.parse_guard_outcomes(rows[0][0] if rows else None, len(block))
            self._measured(verified.verified_block_figures(rows[0][1] if rows else None))
            self.guard_counts["blocks"] += 1
            again = []
            for index, (code, fields) in zip(block, outcomes):
                if code in (verified.GUARD_UNVERIFIED, guard.GUARD_ERROR):
                    # Not killed (its window would have passed the bound, or the block's read
                    # failed): once more in a later block (a fresh read), then on its own.
                    if index not in tried:
                        tried.add(index)
                        again.append(index)
                    continue
                if code == verified.GUARD_BLOCK_ENDED:
                    ratio = float(fields[1]) if len(fields) > 1 and fields[1] else None
                    if ratio is not None:
                        self.window_ratio_max = max(ratio, self.window_ratio_max or 0.0)
                    code, fields = guard.GUARD_ENDED, fields[:1]
                self.guard_counts["block_verified"] += 1
                self.block_verified_keys.add(victims[index].get("key"))
                results[index] = self._outcome(victims[index], "terminate", code, fields)
            pending = sorted(again + pending, key=lambda index: victims[index]["idle_seconds"])

    def _may_fit(self, victim):
        """Whether a block could take `victim` if reading the thread list cost nothing."""
        return verified.verified_block_size([victim["idle_seconds"]], 1, self.window_ratio_bound, 0, self._verify_kill)

    def _measured(self, figures):
        """Take a verified block's figures as the predictions of the next block's size."""
        read, total, reached = figures
        if read is not None:
            self._verify_measured = True
            self._verify_read = max(read / max(1, self._threads_seen), 1e-7)
            if reached:
                self._verify_kill = max((total - read) / reached, 1e-6)

    def guard_figures(self):
        """The guard's figures over this driver's life (the `guard` result of a sweep)."""
        return {
            "window_ratio_bound": self.window_ratio_bound,
            "window_ratio_max": self.window_ratio_max,
            "block_verified": self.guard_counts["block_verified"],
            "blocks": self.guard_counts["blocks"],
            "re_read": sum(self.guard_counts[key] for key in ("looped", "own_step", "statement_events")),
        }

    def _guard_rows(self, query, mode, count):
        """The rows of one server-side guard statement over `count` victims."""
        try:
            return self._execute(query)
        except pymysql.MySQLError as exc:
            raise SessionError(
                f"the guarded {mode} of {count} threads on {self.target} failed "
                f"(whether their KILLs went out is not known): {self._why(exc)}"
            )

    def _guarded_batch(self, batch, mode, bound=None):
        """One guard block (MariaDB) for up to GUARD_BATCH victims; their outcomes in order."""
        ordered = self.flavour.guard_order(batch, mode, bound=bound)
        rows = self._guard_rows(self.flavour.guard_block(ordered, mode, bound=bound), mode, len(batch))
        outcomes = guard.parse_guard_outcomes(rows[0][0] if rows else None, len(batch))
        for key, path in zip(
            ("statement_events", "looped", "own_step"), self.flavour.guard_paths(batch, mode, bound=bound)
        ):
            self.guard_counts[key] += len(path)
        self.guard_counts["transaction_checked"] += sum(
            1 for victim in batch if guard.needs_transaction_check(victim, mode)
        )
        decided = {
            id(victim): self._outcome(victim, mode, code, fields) for victim, (code, fields) in zip(ordered, outcomes)
        }
        return [decided[id(victim)] for victim in batch]

    def _outcome(self, victim, mode, code, fields):
        thread_id = victim.get("id")
        if code == guard.GUARD_GONE:
            return victim, REASON_GONE, f"thread {thread_id} is no longer connected"
        if code == guard.GUARD_NOT_WAITING:
            return victim, REASON_STATE_CHANGED, locks.NOT_WAITING_DETAIL
        if code == guard.GUARD_EVENTS_OFF:
            return victim, REASON_STATE_CHANGED, guard.EVENTS_OFF_DETAIL
        if code == guard.GUARD_IN_TRANSACTION:
            return victim, REASON_STATE_CHANGED, guard.IN_TRANSACTION_DETAIL
        if code == guard.GUARD_TRX_UNPROVEN:
            return victim, REASON_STATE_CHANGED, guard.TRX_UNPROVEN_DETAIL
        if code == guard.GUARD_NEW_EVENT:
            event, running = (fields + ["", ""])[:2]
            if running not in ("", "0"):
                shown = f" (event {event})" if event else ""
                return victim, REASON_STATE_CHANGED, f"was idle (Sleep), now runs a statement{shown}"
            return victim, REASON_STATE_CHANGED, f"it ran a new statement since planning (statement event {event})"
        if code == guard.GUARD_MOVED:
            command, query_id = (fields + ["", ""])[:2]
            if command == victim.get("command"):
                detail = (
                    f"it ran a new statement since planning (statement {query_id}, planned {victim.get('query_id')})"
                )
            else:
                detail = f"was {victim.get('state')} ({victim.get('command')}), now {command}"
            return victim, REASON_STATE_CHANGED, detail
        errno = int(fields[0]) if fields and fields[0].isdigit() else -1
        if code == guard.GUARD_ENDED and errno == 0:
            return victim, OUTCOMES[mode], None
        if code == guard.GUARD_ENDED:
            return self._kill_failure(victim, mode, errno, f"error {errno}")
        return victim, REASON_FAILED, f"cannot re-read thread {thread_id} on {self.target}: error {errno}"

    def _kill_failure(self, victim, mode, code, text):
        if code == ER_UNKNOWN_THREAD:
            return victim, REASON_GONE, f"thread {victim['id']} left before the KILL"
        if code == ER_NO_SUCH_QUERY:
            return victim, REASON_STATE_CHANGED, "its statement ended before the KILL"
        if code in (ER_KILL_DENIED, ER_SPECIFIC_ACCESS_DENIED):
            return (
                victim,
                REASON_FAILED,
                f"cannot {mode} thread {victim['id']} ({victim.get('user')}) on {self.target}: login "
                f"{self.account} lacks {self.flavour.kill_rights}; {self.flavour.kill_grant(self.account)}",
            )
        return victim, REASON_FAILED, f"cannot {mode} thread {victim['id']} on {self.target}: {text}"

    def _reread_and_kill(self, victim, mode):
        """MySQL: re-read this one victim, then KILL it at once if it has not moved on."""
        current = self._list(ids=[victim["id"]], applications=False, locks=bool(victim.get(GUARD_STILL_WAITING)))
        moved = moved_on(victim, current[0] if current else None, self.flavour.state_since_tolerance)
        if moved is not None:
            return victim, moved[0], moved[1]
        # One KILL per thread (not a multi-statement batch): a batch stops at the
        # first error (a thread that left meanwhile), leaving the rest unknown.
        try:
            self._execute(self.flavour.kill_query(mode, victim["id"]))
        except pymysql.MySQLError as exc:
            code = error_code(exc)
            if code in (ER_UNKNOWN_THREAD, ER_NO_SUCH_QUERY, ER_KILL_DENIED, ER_SPECIFIC_ACCESS_DENIED):
                return self._kill_failure(victim, mode, code, str(exc))
            if client_side(code):
                raise SessionError(
                    f"the {mode} of thread {victim['id']} on {self.target} failed (whether it went out is not "
                    f"known): {self._why(exc)}"
                )
            return self._kill_failure(victim, mode, code, self._why(exc))
        return victim, OUTCOMES[mode], None
