# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The session part of a real drain (``Closing``, ``end_sessions``): every target on the
drained databases ended, whatever its state, until none is left. Not the runner's sweep: no
idle proof, no ``state_changed``; written ahead through the same ``Journal`` hook.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_request import drain_policy
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_rights import BeyondPlan
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import REASON_STILL_PRESENT
from ansible_collections.dbhygiene.sessions.plugins.module_utils._ending import same_statement
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import JournalError, SessionError

# After the grace, the targets are listed and terminated again until none is left: at most
# this many rounds (and wait_timeout seconds), CLOSE_INTERVAL seconds apart.
CLOSE_ROUNDS = 200
CLOSE_INTERVAL = 0.05


def _line(entry):
    return (
        f"session {entry.get('id')} {entry.get('user')}@{entry.get('database')} {entry.get('state')} "
        f"app={entry.get('application')!r} from {entry.get('client_addr') or 'local'}"
    )


def _entry(victim, **extra):
    entry = dict(victim["session"])
    entry.update(rule=victim["rule"], action=victim["action"])
    entry.update(extra)
    return entry


def _named(entry):
    """A session in a message: id, user, database (what an operator needs to find it)."""
    return f"{entry.get('id')} ({entry.get('user')}@{entry.get('database') or 'no database'})"


class Closing(object):
    """The session part of a real drain: not a sweep. Every target is ended whatever its state
    (no idle proof, no `state_changed`): running statements are cancelled first, and after
    `grace` every target still there is terminated; then the targets are listed and terminated
    again until none is left (a session that flips between statements, a login that got in
    before the rights changed), at most CLOSE_ROUNDS times and `wait_timeout` seconds. A target
    still there at the end is `still_present` and fails the drain, named.

    Written ahead as the sweep is: with a `journal` (the runner's Journal hook, _ending.Journal), each batch of
    targets not journaled yet is given to `journal.ending` before its first signal goes out
    (JournalError when it cannot be: nothing of that batch is signalled)."""

    def __init__(self, driver, rights, policy, request, deadline, journal=None):
        self.driver = driver
        self.rights = rights
        self.policy = policy
        self.request = request
        self.deadline = deadline
        self.clock = deadline.clock
        self.tolerance = getattr(driver, "state_since_tolerance", 0.0)
        self.terminated = {}  # key -> entry: a terminate went out
        self.cancelled = {}  # key -> entry: a cancel went out and the statement stopped
        self.protected = {}
        self.rounds = 0
        self.last_error = None  # of the last signal that failed
        self.journal = journal
        self.journaled = set()  # keys of the targets journaled `ending`

    def targets(self):
        self.deadline.check("listing the sessions on the drained databases")
        plan = _planner.plan(self.driver.list_sessions(), self.policy, own_id=self.driver.own_id)
        for item in plan.not_ended:
            key = item["session"].get("key")
            self.protected[key] = _entry(dict(item, action=None), reason=item["reason"], detail=item["detail"])
        return plan.victims

    def _end(self, victim, mode):
        """Whether the signal went out. A failure (the session left meanwhile, a lost connection)
        is kept for the message: the next listing says whether the session is still there (a lost
        connection fails that listing)."""
        try:
            return self.rights.end_session(victim["session"], mode)
        except SessionError as exc:
            self.last_error = str(exc)
            return False

    def _journal(self, victims):
        """The `ending` lines of the targets not journaled yet, on disk before any of their signals."""
        if self.journal is None:
            return
        fresh = [v for v in victims if v["session"].get("key") not in self.journaled]
        if not fresh:
            return
        try:
            self.journal.ending([_entry(v) for v in fresh])
        except OSError as exc:
            raise JournalError(f"the audit trail could not be written: {exc}")
        self.journaled.update(v["session"].get("key") for v in fresh)

    def _terminate(self, victims):
        self._journal(victims)
        for victim in victims:
            if self._end(victim, "terminate"):
                self.terminated.setdefault(victim["session"].get("key"), _entry(victim))

    def run(self):
        victims = self.targets()
        running = [v for v in victims if v["session"].get("state") == "active"]
        self._journal(victims)  # every target of the first round in one write, before the first signal
        self._terminate([v for v in victims if v["session"].get("state") != "active"])
        cancelled = [v for v in running if self._end(v, "cancel")]
        if cancelled:
            self._grace(cancelled)
        survivors = self._close()
        return survivors

    def _grace(self, cancelled):
        """Wait until the cancelled statements stopped, at most `grace`."""
        keys = dict((v["session"].get("key"), v) for v in cancelled)
        ends = self.clock.now() + min(self.request.grace, self.deadline.remaining())
        while True:
            self.deadline.check("the grace wait")
            current = dict((s.get("key"), s) for s in self.driver.list_sessions())
            for key, victim in keys.items():
                if not same_statement(victim["session"], current.get(key), self.tolerance):
                    self.cancelled.setdefault(key, _entry(victim))
            if len(self.cancelled) == len(keys) or self.clock.now() >= ends:
                return
            self.clock.sleep(min(CLOSE_INTERVAL, max(0.0, ends - self.clock.now())))

    def _close(self):
        """Terminate the targets until none is left; the survivors (entries) when the bound is hit."""
        ends = self.clock.now() + min(self.request.wait_timeout, self.deadline.remaining())
        while True:
            self.rounds += 1
            victims = self.targets()
            if not victims:
                return []
            if self.rounds > CLOSE_ROUNDS or self.clock.now() >= ends:
                return [_entry(v) for v in victims]
            self._terminate(victims)
            self.clock.sleep(CLOSE_INTERVAL)

    def result(self, survivors, failure=None):
        left = set(entry.get("key") for entry in survivors)
        terminated = [entry for key, entry in self.terminated.items() if key not in left]
        not_ended = list(self.protected.values())
        waited = f"after {self.rounds} rounds of terminating ({self.request.wait_timeout:g}s at most)"
        not_ended += [dict(entry, reason=REASON_STILL_PRESENT, detail=f"still there {waited}") for entry in survivors]
        result = {
            "changed": bool(self.terminated or self.cancelled),
            "terminated": terminated,
            "cancelled": list(self.cancelled.values()),
            "not_ended": not_ended,
            "summary": {
                "terminated": len(terminated),
                "cancelled": len(self.cancelled),
                "still_present": len(survivors),
                "rounds": self.rounds,
            },
        }
        if survivors:
            failure = (
                f"{len(survivors)} sessions still on the drained databases of {getattr(self.driver, 'target', '')} "
                f"{waited}: {', '.join(_named(e) for e in survivors[:20])}"
                + (f" and {len(survivors) - 20} more" if len(survivors) > 20 else "")
                + (f"; the last signal that failed: {self.last_error}" if self.last_error else "")
            )
        if failure:
            result.update(failed=True, msg=failure)
        return result


def end_sessions(driver, rights, request, users, check_mode, deadline, journal=None):
    """End every session on the databases (but ours, allow_users' and superusers') and every
    session of `users` (the logins the drain locked, on any database); see Closing.

    In check mode, what a real run would end: every target terminated, the running ones
    cancelled first (those are in both `cancelled` and `terminated`). `journal`: see Closing.
    """
    policy = drain_policy(request.databases, request.allow_users, request.grace, users=users)
    closing = Closing(driver, rights, policy, request, deadline, journal)
    if check_mode:
        victims = closing.targets()
        result = closing.result([])
        result.update(
            terminated=[_entry(v) for v in victims],
            cancelled=[_entry(v) for v in victims if v["session"].get("state") == "active"],
            changed=bool(victims),
        )
        result["summary"].update(terminated=len(victims), cancelled=len(result["cancelled"]))
        return result
    try:
        survivors = closing.run()
    except BeyondPlan as exc:
        # A run on the host met sessions the controller did not journal: it ends them next run.
        result = closing.result([], failure=str(exc))
        result["beyond_plan"] = {"changes": [], "sessions": exc.sessions}
        return result
    except SessionError as exc:
        return closing.result([], failure=f"{exc} (the sessions ended before are listed)")
    return closing.result(survivors)


def sessions_diff(sessions):
    before = [_line(e) for e in sessions["terminated"] + sessions["cancelled"] + sessions["not_ended"]]
    after = [_line(e) + f" (kept: {e.get('reason')})" for e in sessions["not_ended"]]
    unique = []
    for line in before:
        if line not in unique:
            unique.append(line)
    return {"before": "".join(f"{line}\n" for line in unique), "after": "".join(f"{line}\n" for line in after)}
