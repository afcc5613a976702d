# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report's model: thresholds, per-host summaries, why a host failed, the report.

Private to the collection; no Ansible import. Pure: dicts in, dicts out (the
Markdown is made in ``_report_markdown``, the files are written in ``_outputs``).
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import re
from typing import Any, Container, Iterable, Mapping, Protocol, Sequence

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import SESSION_FIELDS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import parse_duration
from ansible_collections.dbhygiene.sessions.plugins.module_utils._ending import GROUP_FIELDS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import _count as runner_count
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import _oldest as runner_oldest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc_z, utc_now
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._trail import redact_query

REPORT_QUERY_CHARS = 80

THRESHOLD_KEYS = (
    "max_sessions",
    "max_connection_use",
    "max_idle_in_transaction",
    "max_oldest_idle_in_transaction",
    "max_oldest_transaction",
    "max_would_end",
    "max_lock_wait",
)
_THRESHOLD_DURATIONS = ("max_oldest_idle_in_transaction", "max_oldest_transaction", "max_lock_wait")

# Why a host failed, as a code (the JSON report) and in words (the Markdown report); looked up
# by what a report says (None when it says nothing).
FAILURE_REASONS: dict[object, str] = {
    "unreachable": "the database server could not be reached",
    "login": "the server refused the login",
    "privilege": "the login lacks a privilege it needs",
    "limit": "a policy limit refused the plan, nothing was ended",
    "threshold": "over an audit threshold",
    "policy": "the policy cannot be applied to this host",
    "busy": "another sweep held the server's sweep lock",
    "timeout": "the host's deadline ran out",
    "unknown_outcome": "sessions were signalled and their fate could not be learned (settled by the next run)",
    "no_result": "the host never got a result",
    "stopped": "the run stopped before any database was contacted",
    "error": "another error",
}
# Checked in this order against a failed result's message: a connection refused for a
# bad password is a login failure, not an unreachable server.
_REASON_PATTERNS = (
    (
        "login",
        re.compile(
            r"password authentication failed|authentication failed|access denied|no pg_hba\.conf entry"
            r"|no password supplied|role \S+ does not exist|account is locked",
            re.IGNORECASE,
        ),
    ),
    (
        "unreachable",
        re.compile(
            r"cannot connect|could not connect|can't connect|connection refused|no route to host"
            r"|name or service not known|could not translate host name|unreachable"
            r"|closed the connection|connection (?:to the server )?(?:has been |was )?(?:lost|closed)"
            r"|terminating connection due to administrator command|lost connection",
            re.IGNORECASE,
        ),
    ),
    ("busy", re.compile(r"\bbusy\b|sweep lock|another sweep", re.IGNORECASE)),
    ("limit", re.compile(r"limits\.max_(terminations|fraction)", re.IGNORECASE)),
    ("privilege", re.compile(r"\bGRANT\b|privilege|permission denied|\blacks\b|must be superuser", re.IGNORECASE)),
    (
        "timeout",
        re.compile(r"deadline|timed out|time limit|\bran out\b|timeout (?:expired|exceeded|reached)", re.IGNORECASE),
    ),
    ("policy", re.compile(r"\bpolicy\b|cannot evaluate", re.IGNORECASE)),
)


def parse_thresholds(raw: object) -> dict[str, float]:
    """Validate `dbhygiene_audit_thresholds`; returns {key: number} (durations in seconds)."""
    if raw is None or raw == {}:
        return {}
    if not isinstance(raw, dict):
        raise PolicyError("dbhygiene_audit_thresholds", raw, f"expected a mapping, got {raw!r}")
    parsed: dict[str, float] = {}
    for key, value in raw.items():
        field = f"dbhygiene_audit_thresholds.{key}"
        if key not in THRESHOLD_KEYS:
            raise PolicyError(field, key, f"unknown key {key!r} (allowed: {', '.join(THRESHOLD_KEYS)})")
        if value is None:
            continue
        if key in _THRESHOLD_DURATIONS:
            parsed[key] = parse_duration(value, field)
        elif key == "max_connection_use":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise PolicyError(field, value, f"expected a fraction above 0 and at most 1 (0.8 = 80%), got {value!r}")
            parsed[key] = float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicyError(field, value, f"expected a whole number >= 0, got {value!r}")
            parsed[key] = value
    return parsed


def _label(value: object, field: str) -> object:
    """A missing value as the reports show it."""
    if value is None:
        return "(local)" if field == "client_addr" else "(none)"
    return value


def _count(sessions: Iterable[dict[str, Any]], field: str) -> dict[Any, int]:
    """Sessions per value of `field`, most first (the runner's count, missing values labelled)."""
    counts = runner_count([{field: _label(session.get(field), field)} for session in sessions], field)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _oldest(sessions: Iterable[dict[str, Any]], states: Container[object] | None, field: str) -> dict[str, Any] | None:
    """The session in `states` (None: any) with the most `field` seconds (the runner's pick), or None."""
    candidates = [session for session in sessions if states is None or session.get("state") in states]
    oldest = runner_oldest(candidates, field)
    if oldest is None:
        return None
    session = next(session for session in candidates if session.get(field) == oldest["seconds"])
    return dict(oldest, seconds=round(oldest["seconds"], 1), client_addr=session.get("client_addr"))


# A result entry as the reports show it: the session's identity and ages, and
# the decision (rule, action, reason); the statement apart (shortened, redacted).
_BRIEF_FIELDS = (
    tuple(
        name
        for name in SESSION_FIELDS
        if name
        not in ("connected_at", "state_since", "connected_seconds", "query", "superuser", "backend_type", "command")
    )
    + ("rule", "action", "reason", "detail")
    + GROUP_FIELDS
)


# Lock fields of a session that waits for nothing and blocks no one: left out of the reports.
_NO_LOCK = {"blocked_by": [], "blocking": 0}


def brief(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A result entry (session + rule/action/reason) as shown in reports."""
    shown = {
        name: entry.get(name)
        for name in _BRIEF_FIELDS
        if entry.get(name) is not None and not (name in _NO_LOCK and entry.get(name) == _NO_LOCK[name])
    }
    if entry.get("query") is not None:
        shown["query"] = redact_query(entry.get("query"), REPORT_QUERY_CHARS)
    return shown


def _shown_seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def lock_figures(sessions: Iterable[dict[str, Any]], locks: dict[str, Any] | None) -> dict[str, Any]:
    """The audit's lock figures of one host from its ``*_session_info`` ``locks`` summary.

    locks: ``_planner.annotate_locks``' summary (waiting, longest_wait_seconds, chains,
    cycles), or None when the result has none (then every figure is empty).
    Returns {lock_waiting, longest_lock_wait, lock_chains, lock_cycles}:
    longest_lock_wait is, like the oldest_* figures, the waiting session that has waited
    longest (id, user, database, application, state, blocked_by, seconds) or None.
    """
    locks = locks if isinstance(locks, dict) else {}
    longest = _shown_seconds(locks.get("longest_wait_seconds"))
    longest_wait: dict[str, Any] | None = None
    if longest is not None:
        waiters = [s for s in sessions if s.get("lock_wait_seconds") is not None]
        waiter = max(waiters, key=lambda s: s["lock_wait_seconds"]) if waiters else {}
        longest_wait = {name: waiter.get(name) for name in ("id", "user", "database", "application", "state")}
        longest_wait.update(blocked_by=list(waiter.get("blocked_by") or []), seconds=longest)
    chains: list[dict[str, Any]] = []
    for chain in locks.get("chains") or []:
        chains.append(
            {
                "root": chain.get("root"),
                "visible": bool(chain.get("visible")),
                "user": chain.get("user"),
                "database": chain.get("database"),
                "application": chain.get("application"),
                "state": chain.get("state"),
                "blocking": int(chain.get("blocking") or 0),
                "blocking_seconds": _shown_seconds(chain.get("blocking_seconds")),
                "waiters": list(chain.get("waiters") or []),
            }
        )
    return {
        "lock_waiting": int(locks.get("waiting") or 0),
        "longest_lock_wait": longest_wait,
        "lock_chains": chains,
        "lock_cycles": [list(cycle) for cycle in locks.get("cycles") or []],
    }


_LOCK_VISIBILITY = (
    ("row_lock_waits_visible", "row-lock waits"),
    ("metadata_locks_visible", "metadata-lock waits"),
)


def managed_platform(entry: Mapping[str, Any]) -> str | None:
    """The managed service a host's report entry says it runs on, or None (self-managed or not said)."""
    platform: str | None = entry.get("platform")
    return platform if platform and platform != "self_managed" else None


def audit_summary(
    sessions: Sequence[dict[str, Any]],
    server: dict[str, Any] | None,
    plan_dict: dict[str, Any] | None,
    thresholds: Mapping[str, float],
    locks: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The audit role's per-host figures from one snapshot of sessions.

    plan_dict: the planner's ``Plan.to_dict()`` or None (no policy).
    locks: the ``locks`` summary of the same ``*_session_info`` result, or None.
    Returns (summary, breaches): breaches is a list of messages, empty when healthy.
    """
    max_connections = (server or {}).get("max_connections")
    connections = len(sessions)
    use = None
    if isinstance(max_connections, int) and max_connections > 0:
        # Our own connection counts against max_connections too.
        use = round(float(connections + 1) / max_connections, 4)
    summary: dict[str, Any] = {
        "sessions": connections,
        "by_state": _count(sessions, "state"),
        "by_user": _count(sessions, "user"),
        "by_database": _count(sessions, "database"),
        "by_application": _count(sessions, "application"),
        "by_client_addr": _count(sessions, "client_addr"),
        "oldest_idle": _oldest(sessions, ("idle",), "idle_seconds"),
        "oldest_idle_in_transaction": _oldest(
            sessions, ("idle_in_transaction", "idle_in_transaction_aborted"), "idle_seconds"
        ),
        "oldest_transaction": _oldest(sessions, None, "transaction_seconds"),
        "max_connections": max_connections,
        "connection_use": use,
        # primary, standby (PostgreSQL) or replica (MySQL / MariaDB): the driver's server facts.
        "role": (server or {}).get("role"),
        "server": server or {},
        # The managed service the host runs on (module_utils/_platform.py), as its driver decided.
        "platform": ((server or {}).get("platform") or {}).get("name"),
    }
    summary.update(lock_figures(sessions, locks))
    # What the engine's driver says its login cannot see (MySQL / MariaDB server facts).
    hidden = [words for fact, words in _LOCK_VISIBILITY if (server or {}).get(fact) is False]
    summary["lock_waits_hidden"] = hidden
    if "max_lock_wait" in thresholds and hidden:
        summary["lock_note"] = f"max_lock_wait cannot see {' or '.join(hidden)} here"
    if plan_dict is not None:
        summary["policy"] = plan_dict.get("policy")
        summary["would_end"] = [
            brief(dict(victim["session"], **{k: v for k, v in victim.items() if k != "session"}))
            for victim in plan_dict.get("victims", [])
        ]
        if "groups" in plan_dict:
            summary["groups_over_budget"] = groups_over_budget(plan_dict["groups"])
        summary["protected"] = len(plan_dict.get("not_ended", []))
        summary["limit_error"] = plan_dict.get("limit_error")
        # The limits in effect (the policy's, or the defaults): what a real run would be held to.
        summary["limits"] = (plan_dict.get("summary") or {}).get("limits")
    breaches: list[str] = []
    idle_in_trx = sum(count for state, count in summary["by_state"].items() if state.startswith("idle_in_transaction"))

    def over(key: str, value: float | None, shown: object) -> None:
        if key in thresholds and value is not None and value > thresholds[key]:
            breaches.append(f"{key}: {shown} (threshold {thresholds[key]})")

    over("max_sessions", connections, connections)
    over("max_connection_use", use, f"{connections + 1}/{max_connections}")
    over("max_idle_in_transaction", idle_in_trx, idle_in_trx)
    oldest = summary["oldest_idle_in_transaction"]
    over("max_oldest_idle_in_transaction", oldest and oldest["seconds"], oldest and f"{oldest['seconds']}s")
    oldest = summary["oldest_transaction"]
    over("max_oldest_transaction", oldest and oldest["seconds"], oldest and f"{oldest['seconds']}s")
    longest = summary["longest_lock_wait"]
    over("max_lock_wait", longest and longest["seconds"], longest and f"{longest['seconds']}s")
    if breaches and breaches[-1].startswith("max_lock_wait:"):
        breaches[-1] += f": session {longest['id']} waits on {_ids(longest['blocked_by'])}"
    if plan_dict is not None:
        would = len(summary["would_end"])
        over("max_would_end", would, would)
    return summary, breaches


def groups_over_budget(groups: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """A plan's (or a *_sessions result's) groups over their budget as the reports show them:
    [{rule, group, size, kept, ended}] (ended: what the budget ends, or would end in a dry run)."""
    return [{name: group.get(name) for name in ("rule", "group", "size", "kept", "ended")} for group in groups or []]


def _ids(ids: Iterable[object]) -> str:
    return ", ".join(str(value) for value in ids) or "(unknown)"


def enforce_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The enforce role's per-host figures from a *_sessions result."""
    summary = result.get("summary") or {}
    not_ended = result.get("not_ended") or []
    by_reason: dict[Any, int] = {}
    for entry in not_ended:
        by_reason[entry.get("reason")] = by_reason.get(entry.get("reason"), 0) + 1
    policy = result.get("policy")
    figures: dict[str, Any] = {
        "policy": policy.get("name") if isinstance(policy, dict) else policy,
        "seen": summary.get("seen"),
        "matched": result.get("matched") if not isinstance(result.get("matched"), list) else len(result["matched"]),
        "terminated": [brief(entry) for entry in result.get("terminated") or []],
        "cancelled": [brief(entry) for entry in result.get("cancelled") or []],
        "not_ended": [brief(entry) for entry in not_ended if entry.get("reason") != "protected"],
        "not_ended_by_reason": by_reason,
        "limits": summary.get("limits"),
        # Signalled, fate not learned (the server froze or died mid-statement): settled by the next run.
        "unknown": [brief(entry) for entry in result.get("unknown") or []],
    }
    if "groups" in result:
        figures["groups_over_budget"] = groups_over_budget(result["groups"])
    return figures


def failure_reason(result: object) -> str:
    """Why a host failed, as a code of FAILURE_REASONS, from its registered result (None: no result)."""
    if not isinstance(result, dict):
        return "no_result"
    if result.get("unreachable"):
        return "unreachable"
    if result.get("busy"):
        return "busy"
    data = result.get("dbhygiene")
    if isinstance(data, dict) and data.get("failure") in FAILURE_REASONS:
        failure: str = data["failure"]
        return failure
    message = str(result.get("msg") or "")
    for code, pattern in _REASON_PATTERNS:
        if pattern.search(message):
            return code
    return "error"


class Figures(Protocol):
    """What a report kind counts (``_report_kinds.KINDS``' `figures`): build_report calls
    totals() once, count() for each host, then finish() with the report."""

    counts_sessions: bool

    def totals(self) -> dict[str, int]:
        """The kind's totals, each at 0, in the order the report gives them."""

    def count(self, totals: dict[str, Any], host: str, entry: dict[str, Any]) -> None:
        """Add one host's `entry` to `totals`."""

    def finish(self, report: dict[str, Any]) -> None:
        """Complete the report once every host is counted."""


class LockFigures:
    """The lock figures of a fleet report (the audit's; a change window's report carries them too,
    empty): the hosts' lock waits and chains (totals `lock_waiting`, `lock_chains`) and the
    report's `lock_chains` (the longest wait first) and `lock_cycles`."""

    counts_sessions = False

    def __init__(self) -> None:
        self.chains: list[dict[str, Any]] = []
        self.cycles: list[dict[str, Any]] = []

    def totals(self) -> dict[str, int]:
        """The kind's totals, each at 0, in the order the report gives them."""
        return {"lock_waiting": 0, "lock_chains": 0}

    def count(self, totals: dict[str, Any], host: str, entry: dict[str, Any]) -> None:
        """Add one host's `entry` to `totals`."""
        totals["lock_waiting"] += int(entry.get("lock_waiting") or 0)
        self.chains.extend(dict(chain, host=host) for chain in entry.get("lock_chains") or [])
        self.cycles.extend({"host": host, "sessions": list(cycle)} for cycle in entry.get("lock_cycles") or [])

    def finish(self, report: dict[str, Any]) -> None:
        """Complete the report once every host is counted."""
        report["totals"]["lock_chains"] = len(self.chains)
        # The fleet's lock chains, the longest wait first: where someone waits right now.
        report["lock_chains"] = sorted(self.chains, key=_chain_order)
        report["lock_cycles"] = self.cycles


class AuditFigures(LockFigures):
    """The audit report's figures: the sessions seen, the sessions that would end, the hosts
    over a threshold (`alerting`), and the lock figures."""

    counts_sessions = True

    def totals(self) -> dict[str, int]:
        return dict({"would_end": 0, "alerting": 0}, **LockFigures.totals(self))

    def count(self, totals: dict[str, Any], host: str, entry: dict[str, Any]) -> None:
        totals["would_end"] += len(entry.get("would_end") or [])
        if entry.get("breaches"):
            totals["alerting"] += 1
        LockFigures.count(self, totals, host, entry)


class EnforceFigures:
    """The enforce report's figures: the sessions seen, ended (terminated, cancelled), not ended,
    and signalled whose fate is unknown."""

    counts_sessions = True

    def totals(self) -> dict[str, int]:
        return {"terminated": 0, "cancelled": 0, "ended": 0, "not_ended": 0, "unknown": 0}

    def count(self, totals: dict[str, Any], host: str, entry: dict[str, Any]) -> None:
        for name in ("terminated", "cancelled", "not_ended", "unknown"):
            totals[name] += len(entry.get(name) or [])

    def finish(self, report: dict[str, Any]) -> None:
        totals = report["totals"]
        totals["ended"] = totals["terminated"] + totals["cancelled"]


def build_report(
    kind: str,
    hosts_all: Sequence[str],
    hosts_active: Container[str],
    results: Mapping[str, dict[str, Any] | None],
    check_mode: object,
    context: Mapping[str, Any],
    figures: Figures,
) -> dict[str, Any]:
    """The fleet report (a dict) of `kind` from each host's registered result, its totals and
    figures counted by `figures` (the kind's: ``_report_kinds`` chooses them).

    results: {host: registered result or None}. A host with no result never
    reached the task (it failed or was unreachable before it). Every host that
    is not ok has a `reason` (the message) and a `reason_code` (FAILURE_REASONS).
    """
    report_hosts: dict[str, dict[str, Any]] = {}
    totals: dict[str, Any] = {"hosts": len(hosts_all), "ok": 0, "failed": 0}
    if figures.counts_sessions:
        totals["sessions_seen"] = 0
    totals["failed_by_reason"] = {}
    totals.update(figures.totals())
    # Why the run stopped before any host was contacted (a policy or variable error), or None.
    stopped = context.get("stopped")
    for host in hosts_all:
        result = results.get(host)
        entry: dict[str, Any] = {"status": "ok"}
        data = (result or {}).get("dbhygiene") if isinstance(result, dict) else None
        if data:
            entry.update(data)
        if result is None and stopped:
            entry["status"] = "failed"
            entry["reason"] = f"not contacted: the run stopped before any database was contacted: {stopped}"
        elif result is None:
            entry["status"] = "failed"
            entry["reason"] = (
                "no result: the host failed or was unreachable before the task ran (see the play output)"
                if host not in hosts_active
                else "no result: the task was skipped for this host"
            )
        elif result.get("unreachable"):
            entry["status"] = "unreachable"
            entry["reason"] = str(result.get("msg") or "unreachable")
        elif result.get("failed"):
            entry["status"] = "failed"
            entry["reason"] = str(result.get("msg") or "failed")
        elif result.get("skipped") is True:
            # Ansible's own flag: the task did not run for this host (a `when`).
            entry["status"] = "not_run"
            entry["reason"] = str(result.get("skip_reason") or "the task did not run for this host")
        if entry["status"] == "ok":
            totals["ok"] += 1
        else:
            totals["failed"] += 1
            code = "no_result" if entry["status"] == "not_run" else failure_reason(result)
            code = "stopped" if result is None and stopped else code
            entry["reason_code"] = code
            totals["failed_by_reason"][code] = totals["failed_by_reason"].get(code, 0) + 1
        if figures.counts_sessions:
            totals["sessions_seen"] += int(entry.get("seen") or entry.get("sessions") or 0)
        figures.count(totals, host, entry)
        report_hosts[host] = entry
    report = {
        "kind": kind,
        "time": iso_utc_z(utc_now()),
        "check_mode": bool(check_mode),
        "stopped": stopped,
        "policy": context.get("policy"),
        "job_id": context.get("job_id"),
        "audit_log": context.get("audit_log"),
        "totals": totals,
        "failed_hosts": {h: e.get("reason") for h, e in report_hosts.items() if e["status"] != "ok"},
        "failed_host_reasons": {h: e.get("reason_code") for h, e in report_hosts.items() if e["status"] != "ok"},
        "run": context.get("run"),
        "hosts": report_hosts,
    }
    figures.finish(report)
    return report


def _chain_order(chain: dict[str, Any]) -> tuple[bool, float, int, str, str]:

    waited = chain.get("blocking_seconds")
    return (waited is None, -(waited or 0), -chain.get("blocking", 0), chain["host"], str(chain.get("root")))
