# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply a policy through an engine driver: the one place every engine shares.

``apply_policy`` plans, honours check mode and the limits, ends sessions with the
driver's guarded kill, orchestrates cancel_then_terminate, waits until the ended
sessions are gone and builds the result of docs/architecture.md. ``run_sessions_module`` and
``run_info_module`` are the whole ``main()`` of the engine modules.

Every wait is bounded: the whole host by ``host_timeout`` (a ``Deadline`` checked
before each step: the lock, the listing, each signal batch, the grace and the
confirm waits, which are cut at it). A real run holds the server's sweep lock, so
two sweeps never work one server at once. Once a signal went out, a later failure
still returns what was ended (``failed`` with both facts in ``msg``).

Written ahead: with a ``journal`` (the audit trail's hook, see ``Journal``), every
batch of signals is journaled (``journal.ending``) before it goes out; a journal
that cannot be written stops the host before that batch. A batch whose fate could
not be learned (the connection lost, the server frozen or killed, the deadline)
leaves its victims in ``unknown``: the next contact with the server settles them
(``settle_keys`` in, ``settled`` out).

No AnsibleModule import: the module object is passed in, so an action plugin
on the controller can use ``apply_policy`` too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import time

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _engines, _planner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    GUARD_STILL_WAITING,
    REASON_FAILED,
    REASON_STATE_CHANGED,
    REASON_STILL_PRESENT,
    SessionError,
    failed_statement,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import PolicyError, parse_policy
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import parse_instant

REASON_NOTHING_TO_CANCEL = "nothing_to_cancel"
# A victim whose signal went out, or may have, and whose fate could not be learned.
OUTCOME_UNKNOWN = "unknown"
# A victim of a real run that the plan journaled beforehand did not hold (end_only).
_NOT_JOURNALED = "not in the plan journaled before the run; left alone"
_NOTHING_DETAIL = "the session runs no statement; cancel would do nothing"

DEFAULT_HOST_TIMEOUT = 300.0
MAX_WAIT_TIMEOUT = 3600.0
MAX_HOST_TIMEOUT = 86400.0
# The sweep lock is waited for at most this long, and never into the time the waits need.
LOCK_WAIT_MAX = 60.0
# Victims per driver.end_sessions call: the host deadline is checked between two calls.
SIGNAL_BATCH = 1000
# Grace and confirm polling: the first re-list comes after POLL_FIRST seconds, the
# interval then grows by POLL_GROWTH up to POLL_MAX (a fast server is confirmed in
# milliseconds, a slow one is not listed more than five times a second).
POLL_FIRST = 0.005
POLL_GROWTH = 2.0
POLL_MAX = 0.2


class _Clock(object):
    """Time, injectable so the waiting logic can be unit tested without sleeping."""

    def now(self):
        return time.monotonic()

    def sleep(self, seconds):
        time.sleep(seconds)


# The statement templates (`queries`, ~12 KB) are in a module's result at this verbosity
# (-vvv) and above; below it they would fill every failed task's `fatal:` line.
QUERIES_VERBOSITY = 3


def for_verbosity(module, result):
    """`result` as the module returns it: without `queries` below -vvv."""
    if (getattr(module, "_verbosity", 0) or 0) < QUERIES_VERBOSITY:
        result.pop("queries", None)
    return result


class JournalError(SessionError):
    """The audit trail could not take the `ending` lines of a batch: nothing of it was signalled."""


class Journal(object):
    """The write-ahead hook of a real run (the audit trail's side of apply_policy).

    ``ending(entries)`` gets, before each batch of signals, the batch's victims as
    result entries (session fields, rule, action) and returns once they are on disk;
    it raises JournalError (or OSError) when they cannot be, and then nothing of
    that batch is signalled. ``changing(changes)`` does the same for a change window
    (module_utils/_drain.py): before each statement that changes connection rights, the
    change entries it is about to make. This base journals nothing.
    """

    def ending(self, entries):
        return None

    def changing(self, changes):
        return None


class DeadlineError(SessionError):
    """host_timeout ran out before (or during) a step of the host's sweep."""


class SweepBusyError(SessionError):
    """Another sweep holds the server's sweep lock: this host was left alone."""


class Deadline(object):
    """The whole host's deadline (module option host_timeout), on an injectable clock.

    Started before connecting; every step of the sweep checks it first and every
    wait is cut at it. `target` (the server) is named in the messages once known.
    """

    def __init__(self, seconds, clock=None):
        self.clock = clock or _Clock()
        self.seconds = seconds
        self.target = None
        self._ends = self.clock.now() + seconds

    def remaining(self):
        return max(0.0, self._ends - self.clock.now())

    def error(self, when):
        return DeadlineError(
            f"host_timeout ({self.seconds:g}s) ran out {when}{f' on {self.target}' if self.target else ''}; "
            "raise host_timeout, or lower wait_timeout and policy.grace"
        )

    def check(self, step):
        """Raise DeadlineError unless time is left to start `step`."""
        if self.remaining() <= 0:
            raise self.error("before " + step)


def require_supported(policy, driver_class):
    """Fail, before connecting, when the policy uses a condition the engine cannot evaluate."""
    problem = _engines.check_supported(policy, driver_class.engine, driver_class.unsupported_conditions)
    if problem:
        raise SessionError(problem)


def _grace_needed(policy):
    """Seconds of grace a run of `policy` may wait (0 unless a rule cancels then terminates)."""
    if any(rule.action == "cancel_then_terminate" for rule in policy.rules):
        return policy.grace
    return 0


def _seconds(field, value, low, high, low_ok=True):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(field, value, f"must be a number of seconds, got {value!r}")
    if low_ok and value < low:
        raise PolicyError(field, value, f"must be {low:g} or more seconds, got {value!r}")
    if not low_ok and value <= low:
        raise PolicyError(field, value, f"must be more than {low:g} seconds, got {value!r}")
    if not math.isfinite(value) or value > high:
        raise PolicyError(field, value, f"must be a finite number of seconds, at most {high:g}, got {value!r}")


def check_timeouts(policy, wait_timeout, host_timeout):
    """Fail (PolicyError naming the field), before connecting, unless every wait is finite
    and the waits a run may do fit in the host's deadline."""
    _seconds("wait_timeout", wait_timeout, 0, MAX_WAIT_TIMEOUT)
    _seconds("host_timeout", host_timeout, 0, MAX_HOST_TIMEOUT, low_ok=False)
    grace = _grace_needed(policy)
    if grace + wait_timeout >= host_timeout:
        waits = f"policy.grace ({grace:g}s) + wait_timeout ({wait_timeout:g}s) = {grace + wait_timeout:g}s"
        if not grace:
            waits = f"wait_timeout ({wait_timeout:g}s)"
        raise PolicyError(
            "host_timeout",
            host_timeout,
            f"{waits} must be less than host_timeout ({host_timeout:g}s), which also covers connecting, listing and "
            f"signalling: lower {'them' if grace else 'it'} or raise host_timeout",
        )


def _entry(session, rule, action, **extra):
    entry = dict(session)
    entry.update(rule=rule, action=action)
    entry.update(extra)
    return entry


# A budget rule's victim carries its group (the planner's Plan: group, group_size, kept, rank).
GROUP_FIELDS = ("group", "group_size", "kept", "rank")


def _victim_entry(victim, **extra):
    """A planned victim as a result entry: its session, rule, action, its group if a budget chose it."""
    for name in GROUP_FIELDS:
        if name in victim:
            extra.setdefault(name, victim[name])
    return _entry(victim["session"], victim["rule"], victim["action"], **extra)


def _same_statement(before, now, tolerance=0.0):
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


def _by_key(sessions):
    return dict((s.get("key"), s) for s in sessions)


def _key(victim):
    return victim["session"].get("key")


def _split(victims):
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


class _Outcomes(object):
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
            self.unknown.append(_victim_entry(victim, detail=detail))
            self.signalled = True
        elif outcome in ("terminated", "cancelled"):
            extra = {"detail": detail} if detail else {}
            entries = self.terminated if outcome == "terminated" else self.cancelled
            entries.append(_victim_entry(victim, **extra))
            self.signalled = True
        else:
            self.not_ended.append(_victim_entry(victim, reason=outcome, detail=detail))

    def recorded_keys(self):
        return set(entry.get("key") for entry in self.terminated + self.cancelled + self.not_ended + self.unknown)


class _Sweep(object):
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
        self.out = _Outcomes()
        # key -> victim whose terminate went out (to confirm gone) / whose cancel went out
        # (to confirm the statement stopped); dicts keep the order of the plan.
        self.sent_terminate = {}
        self.sent_cancel = {}
        self.lock_wait_rules = set(rule.name for rule in policy.rules if rule.requires_lock_wait)

    def same(self, victim, current):
        return _same_statement(victim["session"], current.get(_key(victim)), self.tolerance)

    def run(self, plan):
        try:
            self._run(plan)
        except Exception as exc:  # a driver's SessionError, or a bug: either way, keep what went out
            if not (self.sent_terminate or self.sent_cancel or self.out.signalled):
                raise  # nothing was ended (nor maybe ended): the plain failure says it all
            self._fail(plan, exc if isinstance(exc, SessionError) else f"{type(exc).__name__}: {exc}")
        return self.out

    def _run(self, plan):
        terminate, cancel, cancel_first, nothing = _split(plan.victims)
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
            self._signal([dict(v, session=current[_key(v)]) for v in stubborn], "terminate")
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
            self.journal.ending([_victim_entry(v) for v in batch])
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
        self.sent_cancel.pop(_key(victim), None)
        if outcome == "terminated":
            self.sent_terminate[_key(victim)] = victim
        elif outcome == "cancelled":
            self.sent_cancel[_key(victim)] = victim
        else:
            self.out.record(victim, outcome, detail)

    def _take_partial(self, batch, known, exc):
        """A driver failed part-way through `batch`: keep the outcomes it already had; the
        others may have been signalled: their fate is unknown (an escalation's too)."""
        unknown = dict((_key(v), v) for v in batch)
        for session, outcome, detail in known:
            victim = unknown.pop(session.get("key"), None)
            if victim is not None:
                self._take(victim, outcome, detail)
        for key, victim in unknown.items():
            self.sent_cancel.pop(key, None)
            self.out.record(victim, OUTCOME_UNKNOWN, f"the signal may or may not have gone out: {exc}")

    def _pending(self, current):
        gone = [v for v in self.sent_terminate.values() if _key(v) in current]
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
            current = _by_key(self.driver.list_sessions())
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
            if current is not None and _key(victim) not in current:
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
            if _key(victim) not in recorded:
                self.out.record(victim, REASON_FAILED, f"not attempted: the sweep failed before ({exc})")
        self.out.failure = str(exc)


def _predict(plan):
    """Check mode: what a real run would list, without sending anything."""
    out = _Outcomes()
    terminate, cancel, cancel_first, nothing = _split(plan.victims)
    for victim in nothing:
        out.record(victim, REASON_NOTHING_TO_CANCEL, _NOTHING_DETAIL)
    for victim in terminate:
        out.record(victim, "terminated", None)
    for victim in cancel + cancel_first:
        out.record(victim, "cancelled", None)
    return out


def _describe(entry):
    age = entry.get("idle_seconds")
    since = f" for {int(age)}s" if age is not None else ""
    return (
        f"{entry.get('id')} {entry.get('user')}@{entry.get('database')} {entry.get('state')}{since} "
        f"app={entry.get('application')!r} from {entry.get('client_addr') or 'local'} "
        f"[{entry.get('rule')} -> {entry.get('action')}]"
    )


def _diff(policy, plan, out):
    victims = [_victim_entry(v) for v in plan.victims]
    ended = set(e.get("key") for e in out.terminated)
    header = f"# policy {policy.name}: {plan.seen:d} client sessions seen, {plan.matched:d} matched\n"
    before = "".join(f"{_describe(v)}\n" for v in victims)
    after_lines = []
    for victim in victims:
        if victim.get("key") in ended:
            continue
        cancelled = [c for c in out.cancelled if c.get("key") == victim.get("key")]
        after_lines.append(_describe(victim) + (" (statement cancelled)" if cancelled else "") + "\n")
    return {"before": header + before, "after": header + "".join(after_lines)}


def _summary(plan, out):
    summary = plan.summary()
    reasons = {}
    for entry in out.not_ended:
        reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    summary.update(terminated=len(out.terminated), cancelled=len(out.cancelled), not_ended=reasons)
    summary["unknown"] = len(out.unknown)
    return summary


def _target(driver):
    return getattr(driver, "target", None) or "this server"


def _failure_message(out, target):
    ended = out.terminated + out.cancelled
    unconfirmed = len([e for e in ended if e.get("detail")])
    not_confirmed = f"; {unconfirmed} of them not confirmed" if unconfirmed else ""
    unknown = ""
    if out.unknown:
        unknown = (
            f", and {len(out.unknown)} sessions whose fate is unknown (their signal may or may not have gone out; "
            "listed in unknown, settled at the next contact with the server)"
        )
    return (
        f"{len(ended)} sessions were ended on {target} (terminated {len(out.terminated)}, "
        f"cancelled {len(out.cancelled)}{not_confirmed}){unknown}, then the sweep failed: {out.failure}; "
        "the ended sessions are listed in terminated / cancelled"
    )


def _settle(keys, sessions):
    """Victims an earlier run left unknown, by key: gone now (terminated) or still there."""
    present = _by_key(sessions)
    settled = []
    for key in keys or []:
        session = present.get(key)
        entry = {"key": key, "outcome": "terminated" if session is None else REASON_STILL_PRESENT}
        if session is not None:
            entry["session"] = session
        settled.append(entry)
    return settled


def _journaled_only(plan, end_only):
    """Split off the victims the journaled plan did not hold (a real run after a plan on the host)."""
    if end_only is None:
        return []
    allowed = set(end_only)
    terminate, cancel, cancel_first, _nothing = _split(plan.victims)  # nothing_to_cancel is never signalled
    left = [v for v in terminate + cancel + cancel_first if _key(v) not in allowed]
    plan.victims = [v for v in plan.victims if not any(v is other for other in left)]
    return [_victim_entry(v, reason=REASON_STATE_CHANGED, detail=_NOT_JOURNALED) for v in left]


def _take_sweep_lock(driver, policy, wait_timeout, deadline, target):
    """Hold the server's sweep lock, waiting at most LOCK_WAIT_MAX and never into the time the
    waits need; SweepBusyError when another sweep keeps it."""
    deadline.check("taking the sweep lock")
    timeout = max(0.0, min(LOCK_WAIT_MAX, deadline.remaining() - wait_timeout - _grace_needed(policy)))
    if not driver.acquire_sweep_lock(timeout):
        raise SweepBusyError(
            f"host busy: another sweep holds the lock on {target} (waited {timeout:g}s); nothing was ended here, "
            "run again when that sweep has finished"
        )
    return True


def _release_sweep_lock(driver):
    try:
        driver.release_sweep_lock()
    except SessionError:
        # Closing the connection releases the lock too; a sweep's result must not be lost to this.
        pass


def apply_policy(
    driver,
    policy,
    check_mode,
    diff=False,
    wait_timeout=10.0,
    clock=None,
    host_timeout=DEFAULT_HOST_TIMEOUT,
    deadline=None,
    journal=None,
    settle_keys=None,
    end_only=None,
):
    """Plan and apply `policy` on the driver's host; return the module result (a dict).

    `deadline` (a Deadline, started before connecting) or else `host_timeout` from
    now bounds the whole run. A real run holds the server's sweep lock (check mode,
    which changes nothing, does not). Limits exceeded: the result has failed=True and
    msg, and nothing is ended. A failure after signals went out: failed=True, msg
    with both facts, and terminated / cancelled still list what was ended, unknown
    what may have been. Any other failure raises SessionError (nothing was ended).

    `journal` (a Journal) takes each batch's victims before it is signalled.
    `settle_keys`: keys of victims an earlier run left unknown, looked up in this run's
    listing (result `settled`). `end_only`: the keys a real run may end (those its
    plan journaled); any other victim is not ended (state_changed).
    """
    deadline = deadline or Deadline(host_timeout, clock)
    target = _target(driver)
    deadline.target = target
    locked = False if check_mode else _take_sweep_lock(driver, policy, wait_timeout, deadline, target)
    try:
        deadline.check("listing sessions")
        sessions = driver.list_sessions()
        _planner.annotate_locks(sessions)  # blocking / blocking_seconds, for the lock conditions
        plan = _planner.plan(sessions, policy, own_id=driver.own_id)
        protected = [
            _entry(s["session"], s["rule"], None, reason=s["reason"], detail=s["detail"]) for s in plan.not_ended
        ]
        settled = _settle(settle_keys, sessions)
        if not check_mode:
            protected += _journaled_only(plan, end_only)
        if not plan.ok:
            out = _Outcomes()
            result = {
                "changed": False,
                "failed": True,
                "msg": plan.limit_error,
                "would_end": [_victim_entry(v) for v in plan.victims],
            }
        else:
            out = _predict(plan) if check_mode else _Sweep(driver, policy, wait_timeout, deadline, journal).run(plan)
            changed = bool(out.terminated or out.cancelled) if check_mode else out.signalled
            result = {"changed": changed}
            if out.failure:
                result.update(failed=True, msg=_failure_message(out, target))
    finally:
        if locked:
            _release_sweep_lock(driver)
    result.update(
        terminated=out.terminated,
        cancelled=out.cancelled,
        not_ended=protected + out.not_ended,
        matched=plan.matched,
        summary=_summary(plan, out),
        policy=policy.to_dict(),
        queries=driver.query_templates(),
        check_mode=bool(check_mode),
    )
    if plan.budgets:
        # The groups over their budget (size, kept, ended: what the plan ended or would end).
        result["groups"] = [dict(group) for group in plan.groups]
    if out.unknown:
        result["unknown"] = out.unknown
    figures = None if check_mode else driver.guard_figures()
    if figures is not None:
        result["guard"] = figures
    if settle_keys:
        result["settled"] = settled
    if diff:
        result["diff"] = _diff(policy, plan, out)
    return result


def _oldest(sessions, field):
    candidates = [s for s in sessions if s.get(field) is not None]
    if not candidates:
        return None
    oldest = max(candidates, key=lambda s: s[field])
    return {
        "id": oldest.get("id"),
        "user": oldest.get("user"),
        "database": oldest.get("database"),
        "application": oldest.get("application"),
        "state": oldest.get("state"),
        "seconds": oldest[field],
    }


def _count(sessions, field):
    counts = {}
    for session in sessions:
        value = session.get(field)
        name = "" if value is None else str(value)
        counts[name] = counts.get(name, 0) + 1
    return counts


def session_info(driver, policy=None):
    """The *_session_info result: sessions, a summary, server facts, the lock chains
    (`locks`, _planner.annotate_locks). Changes nothing.

    With a `policy` (parsed), also `plan`: the planner's plan of that same listing
    (victims, not_ended, summary; our own session left out), so a caller that
    reports on the policy never plans a second time."""
    sessions = driver.list_sessions()
    locks = _planner.annotate_locks(sessions)
    server = driver.server_facts()
    idle = [s for s in sessions if s.get("state") == "idle"]
    summary = {
        "total": len(sessions),
        "by_state": _count(sessions, "state"),
        "by_user": _count(sessions, "user"),
        "by_database": _count(sessions, "database"),
        "by_application": _count(sessions, "application"),
        "oldest_idle": _oldest(idle, "idle_seconds"),
        "oldest_transaction": _oldest(sessions, "transaction_seconds"),
    }
    max_connections = server.get("max_connections")
    if max_connections:
        # Our own connection counts against max_connections too.
        summary["connection_use"] = round((len(sessions) + 1) / float(max_connections), 4)
    result = {"changed": False, "sessions": sessions, "summary": summary, "server": server, "locks": locks}
    if policy is not None:
        result["plan"] = _planner.plan(sessions, policy, own_id=driver.own_id).to_dict()
    return result


def run_info_module(module, open_driver, driver_class=None):
    """The whole main() of a *_session_info module (option `policy` optional)."""
    policy = None
    raw = module.params.get("policy")
    try:
        if raw is not None and raw != "":
            policy = parse_policy(raw)
            if driver_class is not None:
                require_supported(policy, driver_class)
    except PolicyError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    except SessionError as exc:
        module.fail_json(msg=str(exc))
    driver = None
    try:
        driver = open_driver(module.params)
        driver.preflight(signal=False)
        result = session_info(driver, policy)
    except SessionError as exc:
        module.fail_json(msg=str(exc), **failed_statement(exc))
    finally:
        if driver is not None:
            driver.close()
    module.exit_json(**result)


def run_sessions_module(module, driver_class, open_driver):
    """The whole main() of a *_sessions module."""
    params = module.params
    try:
        policy = parse_policy(params["policy"])
        require_supported(policy, driver_class)
        check_timeouts(policy, params["wait_timeout"], params["host_timeout"])
    except PolicyError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    except SessionError as exc:
        module.fail_json(msg=str(exc))
    deadline = Deadline(params["host_timeout"])  # the whole host, connecting included
    driver = None
    try:
        driver = open_driver(params)
        # Also in check mode: a dry run must fail where the real run would.
        driver.preflight(signal=True, policy=policy)
        result = apply_policy(
            driver,
            policy,
            module.check_mode,
            diff=module._diff,
            wait_timeout=params["wait_timeout"],
            deadline=deadline,
            # In process, the enforce role's trail hook rides on the module object (plugin_utils/_inprocess.py).
            journal=getattr(module, "journal", None),
            settle_keys=params.get("settle_keys"),
            end_only=params.get("end_only"),
        )
    except SweepBusyError as exc:
        module.fail_json(msg=str(exc), busy=True)
    except SessionError as exc:
        module.fail_json(msg=str(exc), **failed_statement(exc))
    finally:
        if driver is not None:
            driver.close()
    if result.get("failed"):
        # Limits, or a failure after signals went out: the result still says what was ended.
        module.fail_json(**for_verbosity(module, result))
    module.exit_json(**for_verbosity(module, result))
