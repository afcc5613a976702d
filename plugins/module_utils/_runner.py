# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply a policy through an engine driver: the one place every engine shares.

``apply_policy`` plans, honours check mode and the limits, ends sessions with the
driver's guarded kill, orchestrates cancel_then_terminate, waits until the ended
sessions are gone and builds the result of docs/architecture.md. ``run_sessions_module`` and
``run_info_module`` are the whole ``main()`` of the engine modules.

Every wait is bounded by the host's ``Deadline``, and a real run holds the server's
sweep lock (``_deadline.py``). The signals, the waits and each victim's outcome are
``_ending.py``'s (written ahead through the ``Journal`` hook); once a signal went out,
a later failure still returns what was ended (``failed`` with both facts in ``msg``).
Victims an earlier run left ``unknown`` are settled from this run's listing
(``settle_keys`` in, ``settled`` out).

No AnsibleModule import: the module object is passed in, so an action plugin
on the controller can use ``apply_policy`` too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _engines, _planner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._deadline import (
    DEFAULT_HOST_TIMEOUT,
    Deadline,
    check_timeouts,
    release_sweep_lock,
    take_sweep_lock,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import REASON_STATE_CHANGED, failed_statement
from ansible_collections.dbhygiene.sessions.plugins.module_utils._ending import (
    Ending,
    Outcomes,
    predict,
    result_entry,
    settle,
    split_actions,
    victim_entry,
    victim_key,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import (
    PolicyError,
    SessionError,
    SweepBusyError,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy

# A victim of a real run that the plan journaled beforehand did not hold (end_only).
_NOT_JOURNALED = "not in the plan journaled before the run; left alone"

# The statement templates (`queries`, ~12 KB) are in a module's result at this verbosity
# (-vvv) and above; below it they would fill every failed task's `fatal:` line.
QUERIES_VERBOSITY = 3


def for_verbosity(module, result):
    """`result` as the module returns it: without `queries` below -vvv."""
    if (getattr(module, "_verbosity", 0) or 0) < QUERIES_VERBOSITY:
        result.pop("queries", None)
    return result


def require_supported(policy, driver_class):
    """Fail, before connecting, when the policy uses a condition the engine cannot evaluate."""
    problem = _engines.check_supported(policy, driver_class.engine, driver_class.unsupported_conditions)
    if problem:
        raise SessionError(problem)


def _describe(entry):
    age = entry.get("idle_seconds")
    since = f" for {int(age)}s" if age is not None else ""
    return (
        f"{entry.get('id')} {entry.get('user')}@{entry.get('database')} {entry.get('state')}{since} "
        f"app={entry.get('application')!r} from {entry.get('client_addr') or 'local'} "
        f"[{entry.get('rule')} -> {entry.get('action')}]"
    )


def _diff(policy, plan, out):
    victims = [victim_entry(v) for v in plan.victims]
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


def _journaled_only(plan, end_only):
    """Split off the victims the journaled plan did not hold (a real run after a plan on the host)."""
    if end_only is None:
        return []
    allowed = set(end_only)
    terminate, cancel, cancel_first, _nothing = split_actions(plan.victims)  # nothing_to_cancel is never signalled
    left = [v for v in terminate + cancel + cancel_first if victim_key(v) not in allowed]
    plan.victims = [v for v in plan.victims if not any(v is other for other in left)]
    return [victim_entry(v, reason=REASON_STATE_CHANGED, detail=_NOT_JOURNALED) for v in left]


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
    locked = False if check_mode else take_sweep_lock(driver, policy, wait_timeout, deadline, target)
    try:
        deadline.check("listing sessions")
        sessions = driver.list_sessions()
        _planner.annotate_locks(sessions)  # blocking / blocking_seconds, for the lock conditions
        plan = _planner.plan(sessions, policy, own_id=driver.own_id)
        protected = [
            result_entry(s["session"], s["rule"], None, reason=s["reason"], detail=s["detail"]) for s in plan.not_ended
        ]
        settled = settle(settle_keys, sessions)
        if not check_mode:
            protected += _journaled_only(plan, end_only)
        if not plan.ok:
            out = Outcomes()
            result = {
                "changed": False,
                "failed": True,
                "msg": plan.limit_error,
                "would_end": [victim_entry(v) for v in plan.victims],
            }
        else:
            out = predict(plan) if check_mode else Ending(driver, policy, wait_timeout, deadline, journal).run(plan)
            changed = bool(out.terminated or out.cancelled) if check_mode else out.signalled
            result = {"changed": changed}
            if out.failure:
                result.update(failed=True, msg=_failure_message(out, target))
    finally:
        if locked:
            release_sweep_lock(driver)
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
