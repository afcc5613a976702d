# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Change windows: drain databases before a change, open them again after (engine neutral).

Private to the collection. No AnsibleModule import, so that an action plugin on
the controller can run a drain in-process too. Each engine brings a *rights*
object (``_postgresql_drain.PostgreSQLRights``, ``_mysql/drain.MySQLRights``)
that reads, changes and records the connection rights on its server; this file
validates the options, builds the policy that ends the sessions (run by the
runner's guarded kill, ``_runner.apply_policy``) and assembles the result.

Options are checked before any connection (``parse_request``); every error
names the field and the value.

On a standby / replica (the driver's ``server_role()``) no right is changed: they
come from the primary by replication, and the server is read-only. A drain there
ends the sessions on the databases (MySQL / MariaDB: also those of the accounts
the primary's record, replicated here, says are locked); open changes nothing.
The result says ``replica: true``. Draining a cluster: the primary, then each
replica; opening it: the primary.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    REASON_STILL_PRESENT,
    ROLE_PRIMARY,
    SessionError,
    failed_statement,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import (
    MAX_GRACE,
    UNLIMITED,
    PolicyError,
    parse_duration,
    parse_policy,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import (
    LOCK_WAIT_MAX,
    Deadline,
    Journal,
    JournalError,
    SweepBusyError,
    _same_statement,
    _settle,
    check_timeouts,
    for_verbosity,
)

STATES = ("drained", "open")
DEFAULT_GRACE = "30s"
POLICY_NAME = "drain"
RULE_NAME = "drain"
# The rule of the sessions of the logins a drain locked (MariaDB / MySQL), on any database.
ACCOUNT_RULE_NAME = "drain-account"
# The action of the drain's one rule: stop the statement first, terminate after grace.
DRAIN_ACTION = "cancel_then_terminate"
MAX_NAME_CHARS = 255
# After the grace, the targets are listed and terminated again until none is left: at most
# this many rounds (and wait_timeout seconds), CLOSE_INTERVAL seconds apart.
CLOSE_ROUNDS = 200
CLOSE_INTERVAL = 0.05
# A change's `status` in a failed drain's `changes`: made, or sent when the server stopped
# answering (made or not: the record on the server says it was meant).
STATUS_DONE = "done"
STATUS_UNKNOWN = "unknown"

# change entries (result key `changes`)
CHANGE_REVOKED = "revoked"
CHANGE_GRANTED = "granted"
CHANGE_LOCKED = "locked"
CHANGE_UNLOCKED = "unlocked"


def drain_argument_spec():
    """Options of every `*_drain` module besides the connection (doc fragment ``dbhygiene.sessions._drain``)."""
    return dict(
        databases=dict(type="list", elements="str", required=True),
        state=dict(type="str", choices=list(STATES), default="drained"),
        allow_users=dict(type="list", elements="str", default=[]),
        grace=dict(type="raw", default=DEFAULT_GRACE),
        wait_timeout=dict(type="float", default=10.0),
        host_timeout=dict(type="float", default=300.0),
        settle_keys=dict(type="list", elements="str", no_log=False),  # session keys, not secrets
        journaled_changes=dict(type="list", elements="str", no_log=False),  # change keys (change_key)
        journaled_sessions=dict(type="list", elements="str", no_log=False),  # session keys
    )


def change_key(change):
    """A change of rights as one string: what it changes, on which databases, for whom (the
    audit trail's key of a `changing` line, and how a run on the host is told what the
    controller journaled: `journaled_changes`)."""
    databases = change.get("databases") or [change.get("database")]
    parts = [change.get("change"), change.get("account"), change.get("right"), change.get("grantor")]
    return json.dumps(parts + [sorted(str(db) for db in databases)], default=str)


class BeyondPlan(JournalError):
    """A real run on the host came to changes or sessions the controller did not journal
    (rights changed, or a login got in, between its check-mode plan and this run): nothing of
    them was sent. `changes` / `sessions`: their entries, for the controller to journal before
    it runs the module again."""

    def __init__(self, changes=(), sessions=()):
        what = []
        if changes:
            what.append(f"{len(changes)} changes of rights")
        if sessions:
            what.append(f"{len(sessions)} sessions")
        JournalError.__init__(
            self,
            f"{' and '.join(what)} beyond the plan the audit trail holds (they changed or logged in since the "
            "plan): none of them was sent; the controller journals them and runs again",
        )
        self.changes = [dict(entry) for entry in changes]
        self.sessions = [dict(entry) for entry in sessions]


class PlanGate(Journal):
    """The write-ahead hook of a real run on the host (run_on: host), where the controller's
    trail cannot be reached: the changes and sessions the controller journaled before the run
    (`journaled_changes`, `journaled_sessions`) go through; a batch holding any other raises
    BeyondPlan, and nothing of that batch is sent."""

    def __init__(self, changes, sessions):
        self.changes = set(changes or ())
        self.sessions = set(sessions or ())

    def changing(self, changes):
        beyond = [change for change in changes if change_key(change) not in self.changes]
        if beyond:
            raise BeyondPlan(changes=beyond)

    def ending(self, entries):
        beyond = [entry for entry in entries if entry.get("key") not in self.sessions]
        if beyond:
            raise BeyondPlan(sessions=beyond)


def plan_gate(params, check_mode):
    """The PlanGate of a real run given what the controller journaled, else None."""
    if check_mode or (params.get("journaled_changes") is None and params.get("journaled_sessions") is None):
        return None
    return PlanGate(params.get("journaled_changes"), params.get("journaled_sessions"))


def _glob_literal(name):
    """An fnmatch pattern that matches exactly `name` (the policy's globs take names literally this way)."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in name)


def _names(params, field, required):
    values = params.get(field)
    if values is None:
        values = []
    if not isinstance(values, (list, tuple)):
        raise PolicyError(field, values, f"must be a list of names, got {shown(values)}")
    if required and not values:
        raise PolicyError(field, values, "at least one database is required")
    names = []
    for index, value in enumerate(values):
        where = f"{field}[{index}]"
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(where, value, f"must be a non-empty name, got {shown(value)}")
        if "\x00" in value:
            raise PolicyError(where, value, f"must not contain a NUL character, got {shown(value)}")
        if len(value) > MAX_NAME_CHARS:
            raise PolicyError(where, value, f"longer than {MAX_NAME_CHARS} characters: {shown(value)}")
        if value not in names:
            names.append(value)
    return names


class DrainRequest(object):
    """The validated options of one drain / open run."""

    def __init__(self, databases, state, allow_users, grace, wait_timeout, host_timeout, settle_keys=None):
        self.databases = databases
        self.settle_keys = list(settle_keys or [])
        self.state = state
        self.allow_users = allow_users
        self.grace = grace
        self.wait_timeout = wait_timeout
        self.host_timeout = host_timeout
        self.policy = drain_policy(databases, allow_users, grace)


def drain_policy(databases, allow_users, grace, users=()):
    """The policy that picks the sessions a drain ends: every client session on `databases`,
    and every session of `users` (on any database or none), except `allow_users`' and
    superusers' (our own is never listed)."""
    rules = [{"name": RULE_NAME, "databases": [_glob_literal(d) for d in databases]}]
    if users:
        rules.append({"name": ACCOUNT_RULE_NAME, "users": [_glob_literal(u) for u in users]})
    return parse_policy(
        {
            "name": POLICY_NAME,
            "action": DRAIN_ACTION,
            "grace": grace,
            "rules": rules,
            "protect": {"users": [_glob_literal(u) for u in allow_users], "superusers": True},
            # A change window ends every session on its databases, asked for by name: no default limit applies.
            "limits": {"max_terminations": UNLIMITED, "max_fraction": UNLIMITED},
        }
    )


def parse_request(params):
    """DrainRequest from module.params; PolicyError naming the field and the value otherwise.

    Called before connecting: nothing here reads the server.
    """
    databases = _names(params, "databases", required=True)
    allow_users = _names(params, "allow_users", required=False)
    state = params.get("state") or "drained"
    if state not in STATES:
        raise PolicyError("state", state, f"must be one of {', '.join(STATES)}, got {shown(state)}")
    raw_grace = params.get("grace")
    grace = parse_duration(DEFAULT_GRACE if raw_grace is None else raw_grace, "grace", maximum=MAX_GRACE)
    request = DrainRequest(
        databases,
        state,
        allow_users,
        grace,
        params.get("wait_timeout"),
        params.get("host_timeout"),
        params.get("settle_keys"),
    )
    try:
        check_timeouts(request.policy, request.wait_timeout, request.host_timeout)
    except PolicyError as exc:
        # The runner names policy.grace; the drain's option is `grace`.
        raise PolicyError(exc.field, exc.value, exc.problem.replace("policy.grace", "grace"))
    return request


def _closed(record, request, check_mode):
    """The databases drained after this run: the record, or in check mode what it would be."""
    closed = set(entry["database"] for entry in record)
    if check_mode and request.state == "drained":
        closed.update(request.databases)
    elif check_mode:
        closed.difference_update(request.databases)
    return sorted(closed)


def _rights_diff(request, before, after, sessions_diff):
    header = f"# {request.state}: {', '.join(request.databases)}\n"
    result = {"before": header + "".join(before), "after": header + "".join(after)}
    if sessions_diff:
        result["before"] += sessions_diff["before"]
        result["after"] += sessions_diff["after"]
    return result


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


class _Closing(object):
    """The session part of a real drain: not a sweep. Every target is ended whatever its state
    (no idle proof, no `state_changed`): running statements are cancelled first, and after
    `grace` every target still there is terminated; then the targets are listed and terminated
    again until none is left (a session that flips between statements, a login that got in
    before the rights changed), at most CLOSE_ROUNDS times and `wait_timeout` seconds. A target
    still there at the end is `still_present` and fails the drain, named.

    Written ahead as the sweep is: with a `journal` (the runner's Journal hook), each batch of
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
                if not _same_statement(victim["session"], current.get(key), self.tolerance):
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
    session of `users` (the logins the drain locked, on any database); see _Closing.

    In check mode, what a real run would end: every target terminated, the running ones
    cancelled first (those are in both `cancelled` and `terminated`). `journal`: see _Closing.
    """
    policy = drain_policy(request.databases, request.allow_users, request.grace, users=users)
    closing = _Closing(driver, rights, policy, request, deadline, journal)
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


def _sessions_diff(sessions):
    before = [_line(e) for e in sessions["terminated"] + sessions["cancelled"] + sessions["not_ended"]]
    after = [_line(e) + f" (kept: {e.get('reason')})" for e in sessions["not_ended"]]
    unique = []
    for line in before:
        if line not in unique:
            unique.append(line)
    return {"before": "".join(f"{line}\n" for line in unique), "after": "".join(f"{line}\n" for line in after)}


def _lock(driver, request, deadline):
    """Hold the server's sweep lock (one drain or sweep at a time) from reading the rights to ending the
    sessions; the runner's apply_policy finds it held and releases it when it is done."""
    deadline.check("taking the sweep lock")
    timeout = max(0.0, min(LOCK_WAIT_MAX, deadline.remaining() - request.wait_timeout - request.grace))
    if not driver.acquire_sweep_lock(timeout):
        raise SweepBusyError(
            f"host busy: another sweep or drain holds the lock on {getattr(driver, 'target', 'this server')} "
            f"(waited {timeout:g}s); nothing was changed here, run again when it has finished"
        )


def _release(driver):
    try:
        driver.release_sweep_lock()
    except SessionError:
        pass  # closing the connection releases it too


def _failed_rights(request, exc):
    """The result of a drain / open whose change of rights failed part-way (RightsError): what
    was changed (and the change in flight, `status: unknown`), what is closed, and why."""
    done = [c for c in exc.changes if c.get("status") != STATUS_UNKNOWN]
    unknown = [c for c in exc.changes if c.get("status") == STATUS_UNKNOWN]
    closed = list(exc.closed)
    state = f"{', '.join(closed)} still closed" if closed else "nothing closed"
    if unknown or exc.unknown:
        asked = ", ".join(request.databases)
        state = f"{state} / state unknown" if closed else f"whether {asked} are closed is unknown"
    in_flight = f", {len(unknown)} more sent when it failed (made or not: unknown)" if unknown else ""
    return {
        "changed": bool(exc.changes),
        "failed": True,
        "state_unknown": bool(unknown or exc.unknown),
        "msg": (
            f"{request.state} failed on {exc.target} after {len(done)} rights changed{in_flight} ({state}): "
            f"{exc}; each change was recorded on the server before it was made: run state=open (with this "
            "login) to undo exactly what was done"
        ),
        "state": request.state,
        "databases": list(request.databases),
        "changes": list(exc.changes),
        "restored": [],
        "closed": closed,
        "record": None,
        "terminated": [],
        "cancelled": [],
        "not_ended": [],
        "summary": {},
    }


REPLICA_RIGHTS_LINE = "rights: not changed here (a read-only copy: they come from the primary by replication)\n"


def _on_replica(rights, request):
    """RightsOutcome of a drain / open on a standby or replica: nothing changed (`rights.on_replica`
    says which logins' sessions end with those on the databases)."""
    outcome = rights.on_replica(request)
    outcome.before = outcome.after = [REPLICA_RIGHTS_LINE]
    outcome.extra["replica"] = True
    return outcome


def not_drained_on_primary(request, record):
    """The databases a drain on a replica asked for that the primary's record (replicated here)
    does not list: their logins can still connect to this replica."""
    recorded = set(entry["database"] for entry in record or [])
    return [db for db in request.databases if db not in recorded] if request.state == "drained" else []


def _settle_sessions(driver, request, deadline):
    """{"settled": ...} for the sessions an earlier run journaled as being ended without learning
    their fate (request.settle_keys): gone now (terminated) or still there, from a listing
    taken before this run changes anything; {} when there are none."""
    if not request.settle_keys:
        return {}
    deadline.check("listing the sessions an earlier run left unknown")
    return {"settled": _settle(request.settle_keys, driver.list_sessions())}


def run_drain(driver, rights, request, check_mode, diff=False, deadline=None, role=ROLE_PRIMARY):
    """Drain or open `request.databases` on the driver's server; the module result (a dict).

    Raises SessionError when nothing was changed; a failure once a right was changed (or
    sent) returns failed=True with every change made and the one in flight (`status:
    unknown`), so that the trail gets their lines; the record on the server has them first.
    `role`: the server's (driver.server_role()); on a standby / replica no right is changed.
    """
    deadline = deadline or Deadline(request.host_timeout)
    deadline.target = getattr(driver, "target", None)
    replica = role != ROLE_PRIMARY
    if not check_mode:
        _lock(driver, request, deadline)
    sessions = {"terminated": [], "cancelled": [], "not_ended": [], "summary": {}}
    try:
        settled = _settle_sessions(driver, request, deadline)
        deadline.check("reading the rights")
        # The record before this run changes anything: what an earlier run left (the
        # controller settles the changes it journaled and never got an outcome for).
        record_before = rights.record_before()
        try:
            if replica:
                outcome = _on_replica(rights, request)
            elif request.state == "drained":
                outcome = rights.drain(request, check_mode)
            else:
                outcome = rights.open(request, check_mode)
            if request.state == "drained":
                journal = getattr(rights, "journal", None)
                sessions = end_sessions(driver, rights, request, outcome.users, check_mode, deadline, journal)
        except RightsError as exc:
            if exc.beyond is not None:  # nothing of it was sent: the controller journals it, then runs again
                beyond = {"changes": exc.beyond.changes, "sessions": []}
                return dict(_failed_rights(request, exc), beyond_plan=beyond, record_before=record_before, **settled)
            if not exc.changes:
                raise SessionError(str(exc))
            return dict(_failed_rights(request, exc), record_before=record_before, **settled)
        try:
            record = rights.record()
            # A replica's record is the primary's, as replicated: what is closed there is closed here.
            closed = _closed(record, request, check_mode and not replica)
        except SessionError:
            if not sessions.get("failed"):
                raise
            record, closed = None, list(outcome.closed)  # the connection is lost: what this run knows
    finally:
        if not check_mode:
            _release(driver)
    ended = bool(sessions["terminated"] or sessions["cancelled"])
    result = {
        "changed": bool(outcome.changes) or (ended if check_mode else bool(sessions.get("changed"))),
        "state": request.state,
        "databases": list(request.databases),
        "changes": outcome.changes,
        "restored": outcome.restored,
        "closed": closed,
        "record": record,
        "terminated": sessions["terminated"],
        "cancelled": sessions["cancelled"],
        "not_ended": sessions["not_ended"],
        "summary": sessions["summary"],
        "record_before": record_before,
        "queries": driver.query_templates() + rights.query_templates(),
        "check_mode": bool(check_mode),
        "state_unknown": False,
        "role": role,
        "replica": replica,
        "not_drained_on_primary": not_drained_on_primary(request, record) if replica else [],
    }
    result.update(outcome.extra)
    result.update(settled)
    if sessions.get("beyond_plan"):
        result["beyond_plan"] = sessions["beyond_plan"]
    if sessions.get("failed"):
        result.update(
            failed=True,
            msg=f"the rights were changed ({len(outcome.changes)} changes, recorded on the server; "
            f"{', '.join(closed) or 'nothing'} still closed), then ending the sessions failed: {sessions.get('msg')}",
        )
    if diff:
        sessions_diff = _sessions_diff(sessions) if request.state == "drained" else None
        result["diff"] = _rights_diff(request, outcome.before, outcome.after, sessions_diff)
    return result


class RightsOutcome(object):
    """What an engine's rights object did (or would do): the result's changes and the diff lines;
    `users`: the logins whose sessions a drain ends on any database (MySQL: those it locked);
    `closed`: the databases recorded as drained by this run."""

    def __init__(self, changes, before, after, restored=None, extra=None, users=(), closed=()):
        self.changes = changes
        self.before = before
        self.after = after
        self.restored = restored or []
        self.extra = extra or {}
        self.users = sorted(set(users))
        self.closed = list(closed)


class RightsError(SessionError):
    """Changing the rights failed part-way. `changes`: the change entries made so far (status
    done) and the one sent when it failed (status unknown); `closed`: the databases recorded as
    drained; `unknown`: whether the last statement's fate is unknown."""

    def __init__(self, message, target, changes, closed, unknown=True, beyond=None):
        SessionError.__init__(self, message)
        self.target = target
        self.changes = changes
        self.closed = closed
        self.unknown = unknown
        self.beyond = beyond  # the BeyondPlan that stopped it (a run on the host), or None


class Progress(object):
    """The changes of rights of one run as they are made, for a RightsError when one fails.
    `journal` (the runner's Journal hook, or None) takes each change before it is sent."""

    def __init__(self, target, journal=None):
        self.target = target
        self.journal = journal
        self.changes = []
        self.closed = []

    def sending(self, entries):
        """Journal `entries` before their statement goes out; when the journal cannot take
        them, RightsError (nothing of them was sent; the changes made before are listed)."""
        if self.journal is None or not entries:
            return
        try:
            self.journal.changing([dict(entry) for entry in entries])
        except (JournalError, OSError) as exc:
            raise self.failed(exc)

    def made(self, entries, status=STATUS_DONE):
        for entry in entries:
            self.changes.append(dict(entry, status=status))

    def failed(self, exc, sent=()):
        """RightsError for `exc` (a SessionError), `sent` the entries whose statement failed."""
        self.made(sent, STATUS_UNKNOWN)
        beyond = exc if isinstance(exc, BeyondPlan) else None
        # Nothing of a batch beyond the plan was sent: no change's fate is unknown.
        return RightsError(str(exc), self.target, self.changes, self.closed, unknown=beyond is None, beyond=beyond)


def _closed_now(rights):
    """{"closed": the databases the server's record has drained} after a failure that changed
    nothing, when the server still answers (so that a report never says nothing is closed
    while something is); {} when it cannot be read."""
    if rights is None:
        return {}
    try:
        return {"closed": sorted(set(entry["database"] for entry in rights.record()))}
    except SessionError:
        return {}


def run_drain_module(module, driver_class, open_driver, rights_class):
    """The whole main() of a `*_drain` module."""
    try:
        request = parse_request(module.params)
    except PolicyError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    deadline = Deadline(request.host_timeout)  # the whole host, connecting included
    driver = rights = None
    result = None
    try:
        driver = open_driver(module.params)
        # Also in check mode: a dry run must fail where the real run would.
        driver.preflight(signal=request.state == "drained", policy=request.policy)
        if getattr(driver, "list_applications", None) is False:
            # MySQL lists program_name only for a policy that matches on it; the drain's results
            # and trail name every session's application (read when the login may).
            driver.list_applications = True
        # The same login drains every server of a cluster: a replica's drain reads the primary's record.
        # The write-ahead hook of the controller's trail (run_on: controller); on the host, the gate
        # of what the controller journaled before this run (run_on: host); or None.
        journal = getattr(module, "journal", None) or plan_gate(module.params, module.check_mode)
        rights = rights_class(driver, journal=journal)
        rights.preflight()
        role = driver.server_role()
        result = run_drain(driver, rights, request, module.check_mode, diff=module._diff, deadline=deadline, role=role)
    except SweepBusyError as exc:
        module.fail_json(msg=str(exc), busy=True)
    except SessionError as exc:
        module.fail_json(
            msg=f"{driver_class.engine} drain: {exc}", **dict(_closed_now(rights), **failed_statement(exc))
        )
    finally:
        if driver is not None:
            driver.close()
    if result.get("not_drained_on_primary"):
        module.warn(
            f"{', '.join(result['not_drained_on_primary'])} not drained on the primary (its record of the drain "
            f"has not reached this {result['role']} by replication): logins can still connect to them here; drain the "
            "primary first, then its replicas"
        )
    if result.get("failed"):
        module.fail_json(**for_verbosity(module, result))
    module.exit_json(**for_verbosity(module, result))
