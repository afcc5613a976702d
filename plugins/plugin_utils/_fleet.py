# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side helpers of the roles: audit trail, per-host summaries, fleet report.

Private to the collection. Used by the action plugins ``session_enforce``,
``session_audit``, ``policy_check`` and ``session_report``; no Ansible import,
so it is unit tested as plain Python.

Audit trail: JSON lines, one per session ended (or, in check mode, that would
be ended) and one per targeted session that was not ended (``outcome:
skipped`` with the reason). The file is created with mode 0600 and appended to
under an exclusive ``flock`` with one ``write`` per host, so many hosts ending
at once never interleave their lines.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import fcntl
import json
import os
import re
import tempfile

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import SESSION_FIELDS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import PolicyError, parse_duration

ENGINES = ("postgresql", "mysql")
RUN_ON = ("controller", "host")
TRAIL_QUERY_CHARS = 200
REPORT_QUERY_CHARS = 80

# A statement that sets a credential (ALTER USER ... PASSWORD '...', IDENTIFIED BY
# '...', SET PASSWORD = PASSWORD('...'), CREATE USER MAPPING ... password '...'):
# every literal in it is masked, whatever the exact syntax.
_CREDENTIAL_WORDS_RE = re.compile(r"password|identified|secret|passwd", re.IGNORECASE)
_LITERAL_RE = re.compile(
    r"""'(?:[^'\\]|\\.|'')*'?|"(?:[^"\\]|\\.|"")*"?|\$([A-Za-z_0-9]*)\$.*?(?:\$\1\$|\Z)""", re.DOTALL
)

THRESHOLD_KEYS = (
    "max_sessions",
    "max_connection_use",
    "max_idle_in_transaction",
    "max_oldest_idle_in_transaction",
    "max_oldest_transaction",
    "max_would_end",
)
_THRESHOLD_DURATIONS = ("max_oldest_idle_in_transaction", "max_oldest_transaction")


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def redact_query(query, limit=TRAIL_QUERY_CHARS):
    """A statement as recorded: credential literals masked, then truncated."""
    if query is None:
        return None
    text = str(query)
    if _CREDENTIAL_WORDS_RE.search(text):
        text = _LITERAL_RE.sub("'********'", text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def session_fields(session, query_chars=TRAIL_QUERY_CHARS):
    fields = {name: session.get(name) for name in SESSION_FIELDS if name in session}
    if "query" in fields:
        fields["query"] = redact_query(fields["query"], query_chars)
    return fields


def job_id(task_vars):
    """The AWX / Tower job id when the run is an AWX job, else None."""
    for name in ("awx_job_id", "tower_job_id"):
        value = task_vars.get(name)
        if value not in (None, ""):
            return value
    return None


def outcome_for(bucket, check_mode):
    """The audit outcome of an entry in `terminated` / `cancelled`."""
    if bucket == "terminated":
        return "would_terminate" if check_mode else "terminated"
    return "would_cancel" if check_mode else "cancelled"


def trail_records(host, engine, result, check_mode, context):
    """Audit lines for one host's *_sessions result (a dict).

    Ended (or would-be-ended) sessions, plus targeted sessions that were not
    ended for another reason than `protected` (state_changed, gone, failed,
    still_present): those are decisions an auditor wants to see too.
    """
    policy = result.get("policy")
    policy_name = policy.get("name") if isinstance(policy, dict) else policy
    now = iso(utc_now())
    records = []

    def record(entry, outcome):
        line = {
            "time": now,
            "host": host,
            "login_host": context.get("login_host"),
            "engine": engine,
            "policy": policy_name,
            "rule": entry.get("rule"),
            "action": entry.get("action"),
            "check_mode": bool(check_mode),
            "outcome": outcome,
        }
        if entry.get("reason") is not None:
            line["reason"] = entry.get("reason")
            line["detail"] = entry.get("detail")
        line.update(session_fields(entry))
        line["job_id"] = context.get("job_id")
        records.append(line)

    for bucket in ("cancelled", "terminated"):
        for entry in result.get(bucket) or []:
            record(entry, outcome_for(bucket, check_mode))
    for entry in result.get("skipped") or []:
        if entry.get("reason") != "protected":
            record(entry, "skipped")
    return records


def _private_dir(path):
    if path and not os.path.isdir(path):
        os.makedirs(path, mode=0o700, exist_ok=True)


def append_lines(path, records):
    """Append JSON lines to `path` (mode 0600), atomically with respect to other writers."""
    if not records:
        return 0
    _private_dir(os.path.dirname(path))
    data = "".join(json.dumps(record, default=str) + "\n" for record in records).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        stat = os.fstat(fd)
        if stat.st_mode & 0o077 and stat.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return len(records)


def write_private(path, text):
    """Write `text` to `path` atomically with mode 0600."""
    directory = os.path.dirname(path) or "."
    _private_dir(directory)
    fd, tmp = tempfile.mkstemp(prefix=".dbhygiene-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def controller_path(path):
    """A controller path as given by a user: ~ expanded, made absolute."""
    return os.path.abspath(os.path.expanduser(str(path)))


# ---------------------------------------------------------------- thresholds
def parse_thresholds(raw):
    """Validate `dbhygiene_audit_thresholds`; returns {key: number} (durations in seconds)."""
    if raw is None or raw == {}:
        return {}
    if not isinstance(raw, dict):
        raise PolicyError("dbhygiene_audit_thresholds", raw, f"expected a mapping, got {raw!r}")
    parsed = {}
    for key, value in raw.items():
        field = f"dbhygiene_audit_thresholds.{key}"
        if key not in THRESHOLD_KEYS:
            raise PolicyError(field, key, "unknown key {!r} (allowed: {})".format(key, ", ".join(THRESHOLD_KEYS)))
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


def _count(sessions, field):
    counts = {}
    for session in sessions:
        name = session.get(field)
        name = "(local)" if name is None and field == "client_addr" else ("(none)" if name is None else str(name))
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _oldest(sessions, states, field):
    best = None
    for session in sessions:
        if states is not None and session.get("state") not in states:
            continue
        value = session.get(field)
        if value is None:
            continue
        if best is None or value > best.get(field):
            best = session
    if best is None:
        return None
    return {
        "seconds": round(best.get(field), 1),
        "id": best.get("id"),
        "user": best.get("user"),
        "database": best.get("database"),
        "application": best.get("application"),
        "client_addr": best.get("client_addr"),
        "state": best.get("state"),
    }


def brief(entry):
    """A result entry (session + rule/action/reason) as shown in reports."""
    shown = {
        name: entry.get(name)
        for name in (
            "id",
            "key",
            "user",
            "database",
            "application",
            "client_addr",
            "state",
            "idle_seconds",
            "query_seconds",
            "transaction_seconds",
            "rule",
            "action",
            "reason",
            "detail",
        )
        if entry.get(name) is not None
    }
    if entry.get("query") is not None:
        shown["query"] = redact_query(entry.get("query"), REPORT_QUERY_CHARS)
    return shown


def audit_summary(sessions, server, plan_dict, thresholds):
    """The audit role's per-host figures from one snapshot of sessions.

    plan_dict: the planner's ``Plan.to_dict()`` or None (no policy).
    Returns (summary, breaches): breaches is a list of messages, empty when healthy.
    """
    max_connections = (server or {}).get("max_connections")
    connections = len(sessions)
    use = None
    if isinstance(max_connections, int) and max_connections > 0:
        # Our own connection counts against max_connections too.
        use = round(float(connections + 1) / max_connections, 4)
    summary = {
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
        "server": server or {},
    }
    if plan_dict is not None:
        summary["policy"] = plan_dict.get("policy")
        summary["would_end"] = [
            brief(dict(victim["session"], rule=victim["rule"], action=victim["action"]))
            for victim in plan_dict.get("victims", [])
        ]
        summary["protected"] = len(plan_dict.get("not_ended", []))
        summary["limit_error"] = plan_dict.get("limit_error")
    breaches = []
    idle_in_trx = sum(count for state, count in summary["by_state"].items() if state.startswith("idle_in_transaction"))

    def over(key, value, shown):
        if key in thresholds and value is not None and value > thresholds[key]:
            breaches.append(f"{key}: {shown} (threshold {thresholds[key]})")

    over("max_sessions", connections, connections)
    over("max_connection_use", use, f"{connections + 1}/{max_connections}")
    over("max_idle_in_transaction", idle_in_trx, idle_in_trx)
    oldest = summary["oldest_idle_in_transaction"]
    over("max_oldest_idle_in_transaction", oldest and oldest["seconds"], oldest and f"{oldest['seconds']}s")
    oldest = summary["oldest_transaction"]
    over("max_oldest_transaction", oldest and oldest["seconds"], oldest and f"{oldest['seconds']}s")
    if plan_dict is not None:
        would = len(summary["would_end"])
        over("max_would_end", would, would)
    return summary, breaches


def enforce_summary(result):
    """The enforce role's per-host figures from a *_sessions result."""
    summary = result.get("summary") or {}
    skipped = result.get("skipped") or []
    by_reason = {}
    for entry in skipped:
        by_reason[entry.get("reason")] = by_reason.get(entry.get("reason"), 0) + 1
    policy = result.get("policy")
    return {
        "policy": policy.get("name") if isinstance(policy, dict) else policy,
        "seen": summary.get("seen"),
        "matched": result.get("matched") if not isinstance(result.get("matched"), list) else len(result["matched"]),
        "terminated": [brief(entry) for entry in result.get("terminated") or []],
        "cancelled": [brief(entry) for entry in result.get("cancelled") or []],
        "skipped": [brief(entry) for entry in skipped if entry.get("reason") != "protected"],
        "skipped_by_reason": by_reason,
    }


# ---------------------------------------------------------------- the fleet report
def build_report(kind, hosts_all, hosts_active, results, check_mode, context):
    """The fleet report (a dict) from each host's registered result.

    results: {host: registered result or None}. A host with no result never
    reached the task (it failed or was unreachable before it).
    """
    report_hosts = {}
    totals = {"hosts": len(hosts_all), "ok": 0, "failed": 0, "sessions_seen": 0}
    if kind == "enforce":
        totals.update(terminated=0, cancelled=0, ended=0, skipped=0)
    else:
        totals.update(would_end=0, alerting=0)
    for host in hosts_all:
        result = results.get(host)
        entry = {"status": "ok"}
        data = (result or {}).get("dbhygiene") if isinstance(result, dict) else None
        if data:
            entry.update(data)
        if result is None:
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
        elif result.get("skipped"):
            entry["status"] = "skipped"
            entry["reason"] = str(result.get("skip_reason") or "skipped")
        if entry["status"] == "ok":
            totals["ok"] += 1
        else:
            totals["failed"] += 1
        totals["sessions_seen"] += int(entry.get("seen") or entry.get("sessions") or 0)
        if kind == "enforce":
            totals["terminated"] += len(entry.get("terminated") or [])
            totals["cancelled"] += len(entry.get("cancelled") or [])
            totals["skipped"] += len(entry.get("skipped") or [])
        else:
            totals["would_end"] += len(entry.get("would_end") or [])
            if entry.get("breaches"):
                totals["alerting"] += 1
        report_hosts[host] = entry
    if kind == "enforce":
        totals["ended"] = totals["terminated"] + totals["cancelled"]
    return {
        "kind": kind,
        "time": iso(utc_now()),
        "check_mode": bool(check_mode),
        "policy": context.get("policy"),
        "job_id": context.get("job_id"),
        "audit_log": context.get("audit_log"),
        "totals": totals,
        "failed_hosts": {h: e.get("reason") for h, e in report_hosts.items() if e["status"] != "ok"},
        "hosts": report_hosts,
    }


def _cell(value):
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _age(seconds):
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _session_table(rows, lines):
    lines.append("| host | id | user | database | application | client | state | idle | rule | outcome |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for host, outcome, entry in rows:
        lines.append(
            "| "
            + " | ".join(
                _cell(value)
                for value in (
                    host,
                    entry.get("id"),
                    entry.get("user"),
                    entry.get("database"),
                    entry.get("application"),
                    entry.get("client_addr") or "local",
                    entry.get("state"),
                    _age(entry.get("idle_seconds")),
                    entry.get("rule"),
                    outcome,
                )
            )
            + " |"
        )


def render_markdown(report):
    kind = report["kind"]
    totals = report["totals"]
    dry = report["check_mode"]
    title = "Session audit" if kind == "audit" else "Session enforcement"
    lines = [f"# {title}{' (check mode: nothing was changed)' if dry else ''}", ""]
    lines.append(f"- time: {report['time']}")
    if report.get("policy"):
        lines.append(f"- policy: {report['policy']}")
    if report.get("job_id") is not None:
        lines.append(f"- AWX job: {report['job_id']}")
    if report.get("audit_log"):
        lines.append(f"- audit trail: {report['audit_log']}")
    lines.append("")
    if kind == "enforce":
        ended = "would end" if dry else "ended"
        lines.append(
            f"**{totals['hosts']} hosts: {totals['ok']} ok, {totals['failed']} failed. "
            f"{totals['sessions_seen']} sessions seen, {totals['ended']} {ended} "
            f"({totals['terminated']} terminate, {totals['cancelled']} cancel), {totals['skipped']} skipped.**"
        )
        lines += ["", "| host | engine | status | seen | " + ended + " | skipped | note |"]
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        for host, entry in report["hosts"].items():
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted((entry.get("skipped_by_reason") or {}).items()))
            lines.append(
                "| "
                + " | ".join(
                    _cell(v)
                    for v in (
                        host,
                        entry.get("engine"),
                        entry["status"],
                        entry.get("seen"),
                        len(entry.get("terminated") or []) + len(entry.get("cancelled") or []),
                        len(entry.get("skipped") or []),
                        "see below" if entry["status"] != "ok" else reasons,
                    )
                )
                + " |"
            )
        rows = []
        for host, entry in report["hosts"].items():
            for bucket, outcome in (("terminated", "terminate"), ("cancelled", "cancel")):
                for item in entry.get(bucket) or []:
                    rows.append((host, ("would " if dry else "") + outcome, item))
            for item in entry.get("skipped") or []:
                rows.append((host, "skipped: " + str(item.get("reason")), item))
        if rows:
            lines += ["", "## Sessions " + ("that would be ended" if dry else "ended"), ""]
            _session_table(rows, lines)
    else:
        lines.append(
            f"**{totals['hosts']} hosts: {totals['ok']} ok, {totals['failed']} failed, "
            f"{totals['alerting']} over a threshold. {totals['sessions_seen']} sessions, "
            f"{totals['would_end']} the policy would end.**"
        )
        lines += [
            "",
            "| host | engine | status | sessions | use | by state | oldest idle in trx | oldest trx | would end"
            " | note |",
        ]
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for host, entry in report["hosts"].items():
            use = ""
            if entry.get("connection_use") is not None:
                use = f"{entry['connection_use'] * 100:.1f}% of {entry.get('max_connections')}"
            states = ", ".join(f"{k} {v}" for k, v in (entry.get("by_state") or {}).items())
            note = "; ".join(entry.get("breaches") or []) or entry.get("limit_error") or ""
            if entry["status"] != "ok" and not entry.get("breaches"):
                note = "see below"
            oldest_trx = (entry.get("oldest_idle_in_transaction") or {}).get("seconds")
            oldest = (entry.get("oldest_transaction") or {}).get("seconds")
            lines.append(
                "| "
                + " | ".join(
                    _cell(v)
                    for v in (
                        host,
                        entry.get("engine"),
                        entry["status"],
                        entry.get("sessions"),
                        use,
                        states,
                        _age(oldest_trx),
                        _age(oldest),
                        len(entry.get("would_end") or []) if "would_end" in entry else "",
                        note,
                    )
                )
                + " |"
            )
        rows = [
            (host, "would " + str(item.get("action")), item)
            for host, entry in report["hosts"].items()
            for item in entry.get("would_end") or []
        ]
        if rows:
            lines += ["", "## What the policy would end", ""]
            _session_table(rows, lines)
    if report["failed_hosts"]:
        lines += ["", "## Hosts that failed", ""]
        for host, reason in report["failed_hosts"].items():
            lines.append(f"- **{host}**: {_cell(reason)}")
    lines.append("")
    return "\n".join(lines)


def write_report(report, report_dir):
    """Write <kind>-<time>.json/.md and <kind>-latest.json/.md; return the paths."""
    stamp = report["time"].replace("-", "").replace(":", "")[:15] + "Z"
    base = os.path.join(report_dir, f"{report['kind']}-{stamp}")
    text_json = json.dumps(report, indent=2, sort_keys=True, default=str) + "\n"
    text_md = render_markdown(report)
    paths = {"json": base + ".json", "markdown": base + ".md"}
    write_private(paths["json"], text_json)
    write_private(paths["markdown"], text_md)
    write_private(os.path.join(report_dir, f"{report['kind']}-latest.json"), text_json)
    write_private(os.path.join(report_dir, f"{report['kind']}-latest.md"), text_md)
    return paths, text_md
