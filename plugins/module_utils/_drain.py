# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Change windows: drain databases before a change, open them again after (engine neutral).

Private to the collection. No AnsibleModule import, so that an action plugin on
the controller can run a drain in-process too. Each engine brings a *rights*
object (``_postgresql_drain.PostgreSQLRights``, ``_mysql_drain.MySQLRights``)
that reads, changes and records the connection rights on its server; this file
validates the options, builds the policy that ends the sessions (run by the
runner's guarded kill, ``_runner.apply_policy``) and assembles the result.

Options are checked before any connection (``parse_request``); every error
names the field and the value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import SessionError, shown
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
    SweepBusyError,
    apply_policy,
    check_timeouts,
)

STATES = ("drained", "open")
DEFAULT_GRACE = "30s"
POLICY_NAME = "drain"
RULE_NAME = "drain"
# The action of the drain's one rule: stop the statement first, terminate after grace.
DRAIN_ACTION = "cancel_then_terminate"
MAX_NAME_CHARS = 255

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
    )


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

    def __init__(self, databases, state, allow_users, grace, wait_timeout, host_timeout):
        self.databases = databases
        self.state = state
        self.allow_users = allow_users
        self.grace = grace
        self.wait_timeout = wait_timeout
        self.host_timeout = host_timeout
        self.policy = drain_policy(databases, allow_users, grace)
        self.terminate_policy = drain_policy(databases, allow_users, grace, action="terminate")


def drain_policy(databases, allow_users, grace, action=DRAIN_ACTION):
    """The policy whose guarded kill ends the sessions of a drain: every client session on
    `databases` except `allow_users`' and superusers' (our own is never listed)."""
    return parse_policy(
        {
            "name": POLICY_NAME,
            "action": action,
            "grace": grace,
            "rules": [{"name": RULE_NAME, "databases": [_glob_literal(d) for d in databases]}],
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
    request = DrainRequest(databases, state, allow_users, grace, params.get("wait_timeout"), params.get("host_timeout"))
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


def _merge(first, second):
    """One session result from the two passes of a drain (cancel, then terminate what is left)."""
    terminated = first["terminated"] + second["terminated"]
    ended = set(entry.get("key") for entry in terminated)
    not_ended, seen = [], set()
    for entry in first["not_ended"] + second["not_ended"]:
        key = entry.get("key")
        if key in ended or key in seen:
            continue
        seen.add(key)
        not_ended.append(entry)
    summary = dict(first.get("summary") or {})
    summary.update(terminated=len(terminated), cancelled=len(first["cancelled"]))
    result = dict(first)
    result.update(terminated=terminated, not_ended=not_ended, summary=summary)
    result["changed"] = bool(first.get("changed") or second.get("changed"))
    for key in ("failed", "msg"):
        if second.get(key):
            result[key] = second[key]
    return result


def end_sessions(driver, request, check_mode, deadline):
    """End every session on the databases but ours, allow_users' and superusers'.

    Pass 1 (the runner's guarded kill, action cancel_then_terminate): idle sessions are
    terminated, active ones cancelled, and those still on the same statement after grace
    terminated. Pass 2 terminates the cancelled ones, now idle, and whatever else is still on
    the databases: a drain leaves no session there. In check mode pass 2 is predicted: every
    cancelled session would be terminated too (it is then in both `cancelled` and `terminated`).
    """
    first = apply_policy(driver, request.policy, check_mode, wait_timeout=request.wait_timeout, deadline=deadline)
    if first.get("failed"):
        return first
    if check_mode:
        second = {"terminated": [dict(e, action="terminate") for e in first["cancelled"]], "not_ended": []}
    else:
        second = apply_policy(
            driver, request.terminate_policy, False, wait_timeout=request.wait_timeout, deadline=deadline
        )
    return _merge(first, second)


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


def run_drain(driver, rights, request, check_mode, diff=False, deadline=None):
    """Drain or open `request.databases` on the driver's server; the module result (a dict).

    Raises SessionError when nothing was changed yet; a failure after the rights changed
    returns failed=True with what was done (the record on the server has it too).
    """
    deadline = deadline or Deadline(request.host_timeout)
    deadline.target = getattr(driver, "target", None)
    if not check_mode:
        _lock(driver, request, deadline)
    extra = {}
    sessions = {"terminated": [], "cancelled": [], "not_ended": [], "summary": {}}
    try:
        deadline.check("reading the rights")
        if request.state == "drained":
            outcome = rights.drain(request, check_mode)
            restored = []
            try:
                sessions = end_sessions(driver, request, check_mode, deadline)
            except SessionError as exc:
                # The rights are changed and recorded already: say so, with what changed.
                sessions = dict(sessions, failed=True, msg=str(exc))
        else:
            outcome = rights.open(request, check_mode)
            restored = outcome.restored
        record = rights.record()
    finally:
        if not check_mode:
            try:
                driver.release_sweep_lock()
            except SessionError:
                pass  # closing the connection releases it too
    extra.update(outcome.extra)
    ended = bool(sessions["terminated"] or sessions["cancelled"])
    result = {
        "changed": bool(outcome.changes) or (ended if check_mode else bool(sessions.get("changed"))),
        "state": request.state,
        "databases": list(request.databases),
        "changes": outcome.changes,
        "restored": restored,
        "closed": _closed(record, request, check_mode),
        "record": record,
        "terminated": sessions["terminated"],
        "cancelled": sessions["cancelled"],
        "not_ended": sessions["not_ended"],
        "summary": sessions["summary"],
        "queries": driver.query_templates() + rights.query_templates(),
        "check_mode": bool(check_mode),
    }
    result.update(extra)
    if sessions.get("failed"):
        result.update(
            failed=True,
            msg=f"the rights were changed ({len(outcome.changes)} changes, recorded on the server), "
            f"then ending the sessions failed: {sessions.get('msg')}",
        )
    if diff:
        sessions_diff = _sessions_diff(sessions) if request.state == "drained" else None
        result["diff"] = _rights_diff(request, outcome.before, outcome.after, sessions_diff)
    return result


class RightsOutcome(object):
    """What an engine's rights object did (or would do): the result's changes and the diff lines."""

    def __init__(self, changes, before, after, restored=None, extra=None):
        self.changes = changes
        self.before = before
        self.after = after
        self.restored = restored or []
        self.extra = extra or {}


def run_drain_module(module, driver_class, open_driver, rights_class):
    """The whole main() of a `*_drain` module."""
    try:
        request = parse_request(module.params)
    except PolicyError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    deadline = Deadline(request.host_timeout)  # the whole host, connecting included
    driver = None
    result = None
    try:
        driver = open_driver(module.params)
        # Also in check mode: a dry run must fail where the real run would.
        driver.preflight(signal=request.state == "drained", policy=request.policy)
        if getattr(driver, "list_applications", None) is False:
            # MySQL lists program_name only for a policy that matches on it; the drain's results
            # and trail name every session's application (read when the login may).
            driver.list_applications = True
        rights = rights_class(driver)
        rights.preflight()
        result = run_drain(driver, rights, request, module.check_mode, diff=module._diff, deadline=deadline)
    except SweepBusyError as exc:
        module.fail_json(msg=str(exc), busy=True)
    except SessionError as exc:
        module.fail_json(msg=f"{driver_class.engine} drain: {exc}")
    finally:
        if driver is not None:
            driver.close()
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)
