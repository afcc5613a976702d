# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Change windows: drain databases before a change, open them again after (engine neutral).

Private to the collection. No AnsibleModule import, so that an action plugin on
the controller can run a drain in-process too. Each engine brings a *rights*
object (``_postgresql/drain.PostgreSQLRights``, ``_mysql/drain.MySQLRights``)
that reads, changes and records the connection rights on its server (the contract:
``_drain_rights.py``); this file runs a drain / open on one server (``run_drain``,
``run_drain_module``) and assembles the result.

Options are checked before any connection (``_drain_request.parse_request``); every
error names the field and the value. The sessions are ended by ``_drain_closing``.

On a standby / replica (the driver's ``server_role()``) no right is changed: they
come from the primary by replication, and the server is read-only. A drain there
ends the sessions on the databases (MySQL / MariaDB: also those of the accounts
the primary's record, replicated here, says are locked); open changes nothing.
The result says ``replica: true``. Draining a cluster: the primary, then each
replica; opening it: the primary.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils._deadline import (
    LOCK_WAIT_MAX,
    Deadline,
    release_sweep_lock,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_closing import end_sessions, sessions_diff
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_request import parse_request
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_rights import (
    STATUS_UNKNOWN,
    RightsError,
    plan_gate,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import ROLE_PRIMARY, failed_statement
from ansible_collections.dbhygiene.sessions.plugins.module_utils._ending import settle
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import (
    PolicyError,
    SessionError,
    SweepBusyError,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import for_verbosity


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


def _take_sweep_lock(driver, request, deadline):
    """Hold the server's sweep lock (one drain or sweep at a time) from reading the rights to ending the
    sessions; the runner's apply_policy finds it held and releases it when it is done."""
    deadline.check("taking the sweep lock")
    timeout = max(0.0, min(LOCK_WAIT_MAX, deadline.remaining() - request.wait_timeout - request.grace))
    if not driver.acquire_sweep_lock(timeout):
        raise SweepBusyError(
            f"host busy: another sweep or drain holds the lock on {getattr(driver, 'target', 'this server')} "
            f"(waited {timeout:g}s); nothing was changed here, run again when it has finished"
        )


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
    return {"settled": settle(request.settle_keys, driver.list_sessions())}


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
        _take_sweep_lock(driver, request, deadline)
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
            release_sweep_lock(driver)
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
        closing_diff = sessions_diff(sessions) if request.state == "drained" else None
        result["diff"] = _rights_diff(request, outcome.before, outcome.after, closing_diff)
    return result


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
