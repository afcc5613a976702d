# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply a policy through an engine driver: the one place every engine shares.

``apply_policy`` plans, honours check mode and the limits, ends sessions with the
driver's guarded kill, orchestrates cancel_then_terminate, waits until the ended
sessions are gone and builds the result of DESIGN.md. ``run_sessions_module`` and
``run_info_module`` are the whole ``main()`` of the engine modules.

No AnsibleModule import: the module object is passed in, so an action plugin
on the controller can use ``apply_policy`` too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import time

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import REASON_STILL_PRESENT, SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import PolicyError, parse_policy

REASON_NOTHING_TO_CANCEL = "nothing_to_cancel"
POLL_INTERVAL = 0.1


class _Clock(object):
    """Time, injectable so the waiting logic can be unit tested without sleeping."""

    def now(self):
        return time.monotonic()

    def sleep(self, seconds):
        time.sleep(seconds)


def check_supported(policy, driver_class):
    """Fail, before connecting, when the policy uses a condition the engine cannot evaluate."""
    unsupported = sorted(policy.conditions_used() & set(driver_class.unsupported_conditions))
    if unsupported:
        raise SessionError(
            "policy %r uses %s, which %s cannot evaluate; remove %s from the rules for %s hosts"
            % (
                policy.name,
                ", ".join(unsupported),
                driver_class.engine,
                "it" if len(unsupported) == 1 else "them",
                driver_class.engine,
            )
        )


def _entry(session, rule, action, **extra):
    entry = dict(session)
    entry.update(rule=rule, action=action)
    entry.update(extra)
    return entry


def _instant(text):
    try:
        return datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def _same_statement(before, now, tolerance=0.0):
    """The session still runs the statement it ran when planned (for cancels).

    `tolerance` (seconds) absorbs engines whose state_since is derived from an
    elapsed time and so moves slightly between two listings (MySQL TIME_MS).
    """
    if now is None or now.get("state") != "active" or now.get("key") != before.get("key"):
        return False
    if now.get("state_since") == before.get("state_since"):
        return True
    then, later = _instant(before.get("state_since")), _instant(now.get("state_since"))
    if then is None or later is None or not tolerance:
        return False
    return abs((later - then).total_seconds()) <= tolerance


def _by_key(sessions):
    return dict((s.get("key"), s) for s in sessions)


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
        self.skipped = []
        self.signalled = False

    def record(self, victim, outcome, detail, session=None):
        session = session or victim["session"]
        if outcome == "terminated":
            self.terminated.append(_entry(session, victim["rule"], victim["action"]))
            self.signalled = True
        elif outcome == "cancelled":
            self.cancelled.append(_entry(session, victim["rule"], victim["action"]))
            self.signalled = True
        else:
            self.skipped.append(_entry(session, victim["rule"], victim["action"], reason=outcome, detail=detail))


def _signal(driver, victims, mode):
    """driver.end_sessions over victims; yields (victim, outcome, detail) in order."""
    if not victims:
        return []
    results = driver.end_sessions([v["session"] for v in victims], mode)
    return [(victim, outcome, detail) for victim, (dummy, outcome, detail) in zip(victims, results)]


def _wait(driver, clock, timeout, pending):
    """Poll until `pending(sessions_by_key)` is empty or `timeout` passes; return the last listing."""
    deadline = clock.now() + timeout
    while True:
        current = _by_key(driver.list_sessions())
        if not pending(current) or clock.now() >= deadline:
            return current
        clock.sleep(POLL_INTERVAL)


def _execute(driver, policy, plan, wait_timeout, clock):
    tolerance = getattr(driver, "state_since_tolerance", 0.0)

    def same(victim, cur):
        return _same_statement(victim["session"], cur.get(victim["session"]["key"]), tolerance)

    out = _Outcomes()
    terminate, cancel, cancel_first, nothing = _split(plan.victims)
    for victim in nothing:
        out.record(victim, REASON_NOTHING_TO_CANCEL, "the session runs no statement; cancel would do nothing")

    sent_terminate = []  # victims whose terminate signal went out, to confirm gone
    sent_cancel = []  # (victim) cancels that went out, to confirm the statement stopped
    for victim, outcome, detail in _signal(driver, terminate, "terminate"):
        if outcome == "terminated":
            sent_terminate.append(victim)
        else:
            out.record(victim, outcome, detail)
    for victim, outcome, detail in _signal(driver, cancel + cancel_first, "cancel"):
        if outcome == "cancelled":
            sent_cancel.append(victim)
        else:
            out.record(victim, outcome, detail)

    escalate = [v for v in sent_cancel if v["action"] == "cancel_then_terminate"]
    if escalate:
        # Give the cancelled statements `grace` to stop; terminate those still on the same statement.
        current = _wait(
            driver,
            clock,
            policy.grace,
            lambda cur: [v for v in escalate if same(v, cur)],
        )
        stubborn = [v for v in escalate if same(v, current)]
        fresh = [dict(v, session=current[v["session"]["key"]]) for v in stubborn]
        sent_cancel = [v for v in sent_cancel if v not in stubborn]
        for victim, outcome, detail in _signal(driver, fresh, "terminate"):
            if outcome == "terminated":
                sent_terminate.append(victim)
            else:
                out.record(victim, outcome, detail)

    def pending(cur):
        gone = [v for v in sent_terminate if v["session"]["key"] in cur]
        running = [v for v in sent_cancel if same(v, cur)]
        return gone + running

    current = _wait(driver, clock, wait_timeout, pending) if (sent_terminate or sent_cancel) else {}
    for victim in sent_terminate:
        if victim["session"]["key"] in current:
            out.record(victim, REASON_STILL_PRESENT, "terminated, but still present after %ss" % wait_timeout)
            out.signalled = True
        else:
            out.record(victim, "terminated", None)
    for victim in sent_cancel:
        if same(victim, current):
            out.record(victim, REASON_STILL_PRESENT, "cancelled, but still running after %ss" % wait_timeout)
            out.signalled = True
        else:
            out.record(victim, "cancelled", None)
    return out


def _predict(plan):
    """Check mode: what a real run would list, without sending anything."""
    out = _Outcomes()
    terminate, cancel, cancel_first, nothing = _split(plan.victims)
    for victim in nothing:
        out.record(victim, REASON_NOTHING_TO_CANCEL, "the session runs no statement; cancel would do nothing")
    for victim in terminate:
        out.record(victim, "terminated", None)
    for victim in cancel + cancel_first:
        out.record(victim, "cancelled", None)
    return out


def _describe(entry):
    age = entry.get("idle_seconds")
    return "%s %s@%s %s%s app=%r from %s [%s -> %s]" % (
        entry.get("id"),
        entry.get("user"),
        entry.get("database"),
        entry.get("state"),
        " for %ds" % age if age is not None else "",
        entry.get("application"),
        entry.get("client_addr") or "local",
        entry.get("rule"),
        entry.get("action"),
    )


def _diff(policy, plan, out):
    victims = [_entry(v["session"], v["rule"], v["action"]) for v in plan.victims]
    ended = set(e.get("key") for e in out.terminated)
    header = "# policy %s: %d client sessions seen, %d matched\n" % (policy.name, plan.seen, plan.matched)
    before = "".join("%s\n" % _describe(v) for v in victims)
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
    for entry in out.skipped:
        reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    summary.update(terminated=len(out.terminated), cancelled=len(out.cancelled), not_ended=reasons)
    return summary


def apply_policy(driver, policy, check_mode, diff=False, wait_timeout=10.0, clock=None):
    """Plan and apply `policy` on the driver's host; return the module result (a dict).

    Limits exceeded: the result has failed=True and msg, and nothing is ended.
    """
    clock = clock or _Clock()
    plan = _planner.plan(driver.list_sessions(), policy, own_id=driver.own_id)
    protected = [_entry(s["session"], s["rule"], None, reason=s["reason"], detail=s["detail"]) for s in plan.skipped]
    if not plan.ok:
        out = _Outcomes()
        result = {
            "changed": False,
            "failed": True,
            "msg": plan.limit_error,
            "would_end": [_entry(v["session"], v["rule"], v["action"]) for v in plan.victims],
        }
    else:
        out = _predict(plan) if check_mode else _execute(driver, policy, plan, wait_timeout, clock)
        changed = bool(out.terminated or out.cancelled) if check_mode else out.signalled
        result = {"changed": changed}
    result.update(
        terminated=out.terminated,
        cancelled=out.cancelled,
        not_ended=protected + out.skipped,
        matched=plan.matched,
        summary=_summary(plan, out),
        policy=policy.to_dict(),
        queries=driver.query_templates(),
        check_mode=bool(check_mode),
    )
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


def session_info(driver):
    """The *_session_info result: sessions, a summary, server facts. Changes nothing."""
    sessions = driver.list_sessions()
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
    return {"changed": False, "sessions": sessions, "summary": summary, "server": server}


def run_info_module(module, open_driver):
    """The whole main() of a *_session_info module."""
    driver = None
    try:
        driver = open_driver(module.params)
        driver.preflight(signal=False)
        result = session_info(driver)
    except SessionError as exc:
        module.fail_json(msg=str(exc))
    finally:
        if driver is not None:
            driver.close()
    module.exit_json(**result)


def run_sessions_module(module, driver_class, open_driver):
    """The whole main() of a *_sessions module."""
    try:
        policy = parse_policy(module.params["policy"])
        check_supported(policy, driver_class)
    except PolicyError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    except SessionError as exc:
        module.fail_json(msg=str(exc))
    if module.params["wait_timeout"] < 0:
        module.fail_json(msg="wait_timeout: must be 0 or more seconds, got %r" % module.params["wait_timeout"])
    driver = None
    try:
        driver = open_driver(module.params)
        # Also in check mode: a dry run must fail where the real run would.
        driver.preflight(signal=True, policy=policy)
        result = apply_policy(
            driver, policy, module.check_mode, diff=module._diff, wait_timeout=module.params["wait_timeout"]
        )
    except SessionError as exc:
        module.fail_json(msg=str(exc))
    finally:
        if driver is not None:
            driver.close()
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)
