# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ending one host's victims (a real run): signal, grace, confirm; and what check mode predicts.

``Ending`` sends the planned victims' signals in batches with the driver's guarded kill,
orchestrates cancel_then_terminate, waits until the ended sessions are gone and records each
victim's outcome (``Outcomes``); the runner (``_runner.apply_policy``) builds the result from them.

Written ahead: with a ``journal`` (the audit trail's hook, see ``Journal``), every batch of
signals is journaled (``journal.ending``) before it goes out; a journal that cannot be written
stops the host before that batch. A batch whose fate could not be learned (the connection
lost, the server frozen or killed, the deadline) leaves its victims in ``unknown``: the next
contact with the server settles them (``settle``). Once a signal went out, a later failure
still returns what was ended.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    GUARD_STILL_WAITING,
    REASON_FAILED,
    REASON_STILL_PRESENT,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import JournalError, SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import parse_instant

REASON_NOTHING_TO_CANCEL = "nothing_to_cancel"
# A victim whose signal went out, or may have, and whose fate could not be learned.
OUTCOME_UNKNOWN = "unknown"
_NOTHING_DETAIL = "the session runs no statement; cancel would do nothing"

# Victims per driver.end_sessions call: the host deadline is checked between two calls.
SIGNAL_BATCH = 1000
# Grace and confirm polling: the first re-list comes after POLL_FIRST seconds, the
# interval then grows by POLL_GROWTH up to POLL_MAX (a fast server is confirmed in
# milliseconds, a slow one is not listed more than five times a second).
POLL_FIRST = 0.005
POLL_GROWTH = 2.0
POLL_MAX = 0.2


class Journal(object):
    """The write-ahead hook of a real run (the audit trail's side of apply_policy).

    ``ending(entries)`` gets, before each batch of signals, the batch's victims as
    result entries (session fields, rule, action) and returns once they are on disk;
    it raises JournalError (or OSError) when they cannot be, and then nothing of
    that batch is signalled. ``changing(changes)`` does the same for a change window
    (module_utils/_drain_rights.Progress): before each statement that changes connection rights, the
    change entries it is about to make. This base journals nothing.
    """

    def ending(self, entries):
        return None

    def changing(self, changes):
        return None


def result_entry(session, rule, action, **extra):
    entry = dict(session)
    entry.update(rule=rule, action=action)
    entry.update(extra)
    return entry


# A budget rule's victim carries its group (the planner's Plan: group, group_size, kept, rank).
GROUP_FIELDS = ("group", "group_size", "kept", "rank")


def victim_entry(victim, **extra):
    """A planned victim as a result entry: its session, rule, action, its group if a budget chose it."""
    for name in GROUP_FIELDS:
        if name in victim:
            extra.setdefault(name, victim[name])
    return result_entry(victim["session"], victim["rule"], victim["action"], **extra)


def same_statement(before, now, tolerance=0.0):
    """The session still runs the statement it ran when planned (for cancels).

    `tolerance` (seconds) absorbs engines whose state_since is derived from an
    elapsed time and so moves slightly between two listings (MySQL TIME_MS).
    """
    if now is None or now.get("state") != "active" or now.get("key") != before.get("key"):
        return False
    if now.get("state_since") == before.get("state_since"):
        return True
    then, later = parse_instant(before.get("state_since")), parse_instant(now.get("state_since"))
    if then is None or later is None or not tolerance:
        return False
    return abs((later - then).total_seconds()) <= tolerance


def by_key(sessions):
    return dict((s.get("key"), s) for s in sessions)


def victim_key(victim):
    return victim["session"].get("key")


def split_actions(victims):
    """(terminate now, cancel only, cancel then terminate, nothing to cancel)."""
    terminate, cancel, cancel_first, nothing = [], [], [], []
    for victim in victims:
        action = victim["action"]
        active = victim["session"].get("state") == "active"
        if action == "terminate" or (action == "cancel_then_terminate" and not active):
            terminate.append(victim)
        elif action == "cancel" and not active:
            nothing.append(victim)
        elif action == "cancel":
            cancel.append(victim)
        else:
            cancel_first.append(victim)
    return terminate, cancel, cancel_first, nothing


class Outcomes(object):
    """What happened to each victim, in the result's vocabulary."""

    def __init__(self):
        self.terminated = []
        self.cancelled = []
        self.not_ended = []
        self.unknown = []  # signalled (or maybe), fate not learned: settled by the next contact
        self.signalled = False
        self.failure = None  # what failed after signals went out (the host then fails)

    def record(self, victim, outcome, detail):
        if outcome == OUTCOME_UNKNOWN:
            self.unknown.append(victim_entry(victim, detail=detail))
            self.signalled = True
        elif outcome in ("terminated", "cancelled"):
            extra = {"detail": detail} if detail else {}
            entries = self.terminated if outcome == "terminated" else self.cancelled
            entries.append(victim_entry(victim, **extra))
            self.signalled = True
        else:
            self.not_ended.append(victim_entry(victim, reason=outcome, detail=detail))

    def recorded_keys(self):
        return set(entry.get("key") for entry in self.terminated + self.cancelled + self.not_ended + self.unknown)


class Ending(object):
    """One real run on one host: signal, grace, confirm.

    It remembers every signal that went out, so that a failure part-way (a listing,
    a later batch, the deadline) still reports what was ended.
    """

    def __init__(self, driver, policy, wait_timeout, deadline, journal=None):
        self.driver = driver
        self.journal = journal
        self.policy = policy
        self.wait_timeout = wait_timeout
        self.deadline = deadline
        self.clock = deadline.clock
        self.tolerance = getattr(driver, "state_since_tolerance", 0.0)
        self.out = Outcomes()
        # key -> victim whose terminate went out (to confirm gone) / whose cancel went out
        # (to confirm the statement stopped); dicts keep the order of the plan.
        self.sent_terminate = {}
        self.sent_cancel = {}
        self.lock_wait_rules = set(rule.name for rule in policy.rules if rule.requires_lock_wait)

    def same(self, victim, current):
        return same_statement(victim["session"], current.get(victim_key(victim)), self.tolerance)

    def run(self, plan):
        try:
            self._run(plan)
        except Exception as exc:  # a driver's SessionError, or a bug: either way, keep what went out
            if not (self.sent_terminate or self.sent_cancel or self.out.signalled):
                raise  # nothing was ended (nor maybe ended): the plain failure says it all
            self._fail(plan, exc if isinstance(exc, SessionError) else f"{type(exc).__name__}: {exc}")
        return self.out

    def _run(self, plan):
        terminate, cancel, cancel_first, nothing = split_actions(plan.victims)
        for victim in nothing:
            self.out.record(victim, REASON_NOTHING_TO_CANCEL, _NOTHING_DETAIL)
        self._signal(terminate, "terminate")
        self._signal(cancel + cancel_first, "cancel")
        escalate = [v for v in self.sent_cancel.values() if v["action"] == "cancel_then_terminate"]
        if escalate:
            # Give the cancelled statements `grace` to stop; terminate those still on the same statement.

            def running(cur):
                return [v for v in escalate if self.same(v, cur)]

            current, cut = self._wait("the grace wait", self.policy.grace, running)
            if cut:
                raise self.deadline.error(f"during the grace wait (policy.grace {self.policy.grace:g}s)")
            stubborn = [v for v in escalate if self.same(v, current)]
            self._signal([dict(v, session=current[victim_key(v)]) for v in stubborn], "terminate")
        if self.sent_terminate or self.sent_cancel:
            current, cut = self._wait("the confirm wait", self.wait_timeout, self._pending)
            if cut:
                error = self.deadline.error(f"during the confirm wait (wait_timeout {self.wait_timeout:g}s)")
                self._confirm(current, str(error))
                raise error
            self._confirm(current)

    def _signal(self, victims, mode):
        for start in range(0, len(victims), SIGNAL_BATCH):
            batch = victims[start : start + SIGNAL_BATCH]
            self.deadline.check(f"signalling ({mode}) {len(batch)} sessions")
            self._journal(batch)
            try:
                results = self.driver.end_sessions([self._guarded(v) for v in batch], mode)
            except SessionError as exc:
                self._take_partial(batch, getattr(exc, "outcomes", None) or [], exc)
                raise
            for victim, (_session, outcome, detail) in zip(batch, results):
                self._take(victim, outcome, detail)

    def _journal(self, batch):
        """The batch's `ending` lines on disk before its signals (JournalError when they cannot be)."""
        if self.journal is None:
            return
        try:
            self.journal.ending([victim_entry(v) for v in batch])
        except OSError as exc:
            raise JournalError(f"the audit trail could not be written: {exc}")

    def _guarded(self, victim):
        """The session handed to the driver: a waiter planned by waiting_longer_than is marked,
        so the guarded kill also checks it still waits on a lock."""
        if victim["rule"] in self.lock_wait_rules:
            return dict(victim["session"], **{GUARD_STILL_WAITING: True})
        return victim["session"]

    def _take(self, victim, outcome, detail):
        # An escalated victim leaves the cancels, whatever its terminate brought.
        self.sent_cancel.pop(victim_key(victim), None)
        if outcome == "terminated":
            self.sent_terminate[victim_key(victim)] = victim
        elif outcome == "cancelled":
            self.sent_cancel[victim_key(victim)] = victim
        else:
            self.out.record(victim, outcome, detail)

    def _take_partial(self, batch, known, exc):
        """A driver failed part-way through `batch`: keep the outcomes it already had; the
        others may have been signalled: their fate is unknown (an escalation's too)."""
        unknown = dict((victim_key(v), v) for v in batch)
        for session, outcome, detail in known:
            victim = unknown.pop(session.get("key"), None)
            if victim is not None:
                self._take(victim, outcome, detail)
        for key, victim in unknown.items():
            self.sent_cancel.pop(key, None)
            self.out.record(victim, OUTCOME_UNKNOWN, f"the signal may or may not have gone out: {exc}")

    def _pending(self, current):
        gone = [v for v in self.sent_terminate.values() if victim_key(v) in current]
        running = [v for v in self.sent_cancel.values() if self.same(v, current)]
        return gone + running

    def _wait(self, step, timeout, pending):
        """Re-list until `pending(listing by key)` is empty or `timeout` passes.

        Returns (the last listing, cut): cut is True when the host deadline, not
        `timeout`, ended a wait that still had sessions pending.
        """
        self.deadline.check(step)
        limit = min(timeout, self.deadline.remaining())
        ends = self.clock.now() + limit
        interval = POLL_FIRST
        while True:
            current = by_key(self.driver.list_sessions())
            if not pending(current):
                return current, False
            left = ends - self.clock.now()
            if left <= 0:
                return current, limit < timeout
            self.clock.sleep(min(interval, left))
            interval = min(interval * POLL_GROWTH, POLL_MAX)

    def _confirm(self, current, unconfirmed=None):
        """Record every signalled victim from the last listing (`current`, None when there
        is none). Without `unconfirmed` (why the wait could not finish), those still
        there are still_present; with it, they stay ended, marked unconfirmed."""
        waited = self.wait_timeout
        for victim in self.sent_terminate.values():
            if current is not None and victim_key(victim) not in current:
                self.out.record(victim, "terminated", None)
            elif unconfirmed is None:
                self.out.record(victim, REASON_STILL_PRESENT, f"terminated, but still present after {waited}s")
                self.out.signalled = True
            else:
                self.out.record(victim, "terminated", f"signalled, not confirmed gone: {unconfirmed}")
        for victim in self.sent_cancel.values():
            if current is not None and not self.same(victim, current):
                self.out.record(victim, "cancelled", None)
            elif unconfirmed is None:
                self.out.record(victim, REASON_STILL_PRESENT, f"cancelled, but still running after {waited}s")
                self.out.signalled = True
            else:
                self.out.record(victim, "cancelled", f"signalled, not confirmed stopped: {unconfirmed}")
        self.sent_terminate, self.sent_cancel = {}, {}

    def _fail(self, plan, exc):
        self._confirm(None, f"the sweep failed before it could confirm ({exc})")
        recorded = self.out.recorded_keys()
        for victim in plan.victims:
            if victim_key(victim) not in recorded:
                self.out.record(victim, REASON_FAILED, f"not attempted: the sweep failed before ({exc})")
        self.out.failure = str(exc)


def predict(plan):
    """Check mode: what a real run would list, without sending anything."""
    out = Outcomes()
    terminate, cancel, cancel_first, nothing = split_actions(plan.victims)
    for victim in nothing:
        out.record(victim, REASON_NOTHING_TO_CANCEL, _NOTHING_DETAIL)
    for victim in terminate:
        out.record(victim, "terminated", None)
    for victim in cancel + cancel_first:
        out.record(victim, "cancelled", None)
    return out


def settle(keys, sessions):
    """Victims an earlier run left unknown, by key: gone now (terminated) or still there."""
    present = by_key(sessions)
    settled = []
    for key in keys or []:
        session = present.get(key)
        entry = {"key": key, "outcome": "terminated" if session is None else REASON_STILL_PRESENT}
        if session is not None:
            entry["session"] = session
        settled.append(entry)
    return settled
