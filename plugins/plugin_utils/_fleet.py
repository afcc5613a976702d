# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side helpers of the roles: audit trail, per-host summaries, fleet report.

Private to the collection. Used by the action plugins ``session_enforce``,
``session_audit``, ``policy_check`` and ``session_report``; no Ansible import,
so it is unit tested as plain Python.

Audit trail: JSON lines, one per session ended (or, in check mode, that would
be ended) and one per targeted session that was not ended (``outcome:
not_ended`` with the reason). The file is created with mode 0600 and appended to
under an exclusive ``flock`` with one ``write`` per host, so many hosts ending
at once never interleave their lines. It is opened by its path for every append,
so a rotation that renames it (logrotate without ``copytruncate``) loses nothing:
the next append creates a new file under the same name.

Fleet reports: ``<kind>-<time>-<run>.json/.md`` (unique per run, never replaced
by a concurrent run) and ``<kind>-latest.json/.md``; the oldest time-stamped
reports of a kind beyond ``keep`` are pruned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import fcntl
import json
import os
import re
import tempfile
import uuid

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

# The roles' defaults for the report directory and the trail: inside an AWX job they are
# in the job's throw-away execution environment container.
DEFAULT_REPORT_DIR = "~/dbhygiene/reports"
DEFAULT_AUDIT_LOG = "~/dbhygiene/audit.jsonl"
DEFAULT_REPORT_KEEP = 30

# Why a host failed, as a code (the JSON report) and in words (the Markdown report).
FAILURE_REASONS = {
    "unreachable": "the database server could not be reached",
    "login": "the server refused the login",
    "privilege": "the login lacks a privilege it needs",
    "limit": "a policy limit refused the plan, nothing was ended",
    "threshold": "over an audit threshold",
    "policy": "the policy cannot be applied to this host",
    "busy": "another sweep held the server's sweep lock",
    "timeout": "the host's deadline ran out",
    "no_result": "the host never got a result",
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
    still_present): those are decisions an auditor wants to see too. A failed
    result that still carries `terminated` / `cancelled` (a later step of the
    host failed after signals went out) gets its lines all the same.
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
    for entry in result.get("not_ended") or []:
        if entry.get("reason") != "protected":
            record(entry, "not_ended")
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
    fd = _open_locked(path)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return len(records)


def _open_locked(path):
    """The trail opened by its path for appending, under an exclusive lock.

    Opened anew for every append, so a file that logrotate renamed is never
    written to again; should the rename fall between our open and our lock, the
    file is opened again under the path (the lines belong in the new file)."""
    for _attempt in range(10):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            stat = os.fstat(fd)
            if stat.st_mode & 0o077 and stat.st_uid == os.geteuid():
                os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except OSError:
                current = None
            if current is not None and (current.st_dev, current.st_ino) == (stat.st_dev, stat.st_ino):
                return fd
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OSError(errno.EAGAIN, "the file keeps being replaced while it is opened", path)


def write_private(path, text, replace=True):
    """Write `text` to `path` atomically with mode 0600.

    replace=False: never over an existing file; returns False (nothing written)
    when `path` exists. Otherwise returns True."""
    directory = os.path.dirname(path) or "."
    _private_dir(directory)
    fd, tmp = tempfile.mkstemp(prefix=".dbhygiene-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # A file system without hard links: create it exclusively instead.
            try:
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(out, "w", encoding="utf-8") as handle:
                handle.write(text)
        finally:
            os.unlink(tmp)
        return True
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
    not_ended = result.get("not_ended") or []
    by_reason = {}
    for entry in not_ended:
        by_reason[entry.get("reason")] = by_reason.get(entry.get("reason"), 0) + 1
    policy = result.get("policy")
    return {
        "policy": policy.get("name") if isinstance(policy, dict) else policy,
        "seen": summary.get("seen"),
        "matched": result.get("matched") if not isinstance(result.get("matched"), list) else len(result["matched"]),
        "terminated": [brief(entry) for entry in result.get("terminated") or []],
        "cancelled": [brief(entry) for entry in result.get("cancelled") or []],
        "not_ended": [brief(entry) for entry in not_ended if entry.get("reason") != "protected"],
        "not_ended_by_reason": by_reason,
    }


def failure_reason(result):
    """Why a host failed, as a code of FAILURE_REASONS, from its registered result (None: no result)."""
    if not isinstance(result, dict):
        return "no_result"
    if result.get("unreachable"):
        return "unreachable"
    if result.get("busy"):
        return "busy"
    data = result.get("dbhygiene")
    if isinstance(data, dict) and data.get("failure") in FAILURE_REASONS:
        return data["failure"]
    message = str(result.get("msg") or "")
    for code, pattern in _REASON_PATTERNS:
        if pattern.search(message):
            return code
    return "error"


def awx_default_path_warnings(task_vars, report_dir=None, audit_log=None):
    """Warnings for an AWX job that keeps its report or trail at the default path.

    An AWX job runs in a throw-away execution environment container: whatever is
    written under the default paths there is gone when the job ends."""
    job = job_id(task_vars)
    if job is None:
        return []
    defaults = []
    if report_dir is not None and _is_default(report_dir, DEFAULT_REPORT_DIR):
        defaults.append(("the fleet report", "dbhygiene_report_dir", report_dir))
    if audit_log is not None and _is_default(audit_log, DEFAULT_AUDIT_LOG):
        defaults.append(("the audit trail", "dbhygiene_audit_log", audit_log))
    return [
        f"this is AWX job {job}: {what} goes to the default {path}, inside the job's execution environment "
        f"container, and is lost when the job ends; set {variable} to a path on a volume that outlives the job "
        "(a persistent mount exposed to the container, e.g. AWX's 'Paths to expose to isolated jobs')"
        for what, variable, path in defaults
    ]


def _is_default(value, default):
    text = str(value)
    return text == default or controller_path(text) == controller_path(default)


# ---------------------------------------------------------------- the fleet report
def build_report(kind, hosts_all, hosts_active, results, check_mode, context):
    """The fleet report (a dict) from each host's registered result.

    results: {host: registered result or None}. A host with no result never
    reached the task (it failed or was unreachable before it). Every host that
    is not ok has a `reason` (the message) and a `reason_code` (FAILURE_REASONS).
    """
    report_hosts = {}
    totals = {"hosts": len(hosts_all), "ok": 0, "failed": 0, "sessions_seen": 0, "failed_by_reason": {}}
    if kind == "enforce":
        totals.update(terminated=0, cancelled=0, ended=0, not_ended=0)
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
        elif result.get("skipped") is True:
            # Ansible's own flag: the task did not run for this host (a `when`).
            entry["status"] = "not_run"
            entry["reason"] = str(result.get("skip_reason") or "the task did not run for this host")
        if entry["status"] == "ok":
            totals["ok"] += 1
        else:
            totals["failed"] += 1
            code = "no_result" if entry["status"] == "not_run" else failure_reason(result)
            entry["reason_code"] = code
            totals["failed_by_reason"][code] = totals["failed_by_reason"].get(code, 0) + 1
        totals["sessions_seen"] += int(entry.get("seen") or entry.get("sessions") or 0)
        if kind == "enforce":
            totals["terminated"] += len(entry.get("terminated") or [])
            totals["cancelled"] += len(entry.get("cancelled") or [])
            totals["not_ended"] += len(entry.get("not_ended") or [])
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
        "failed_host_reasons": {h: e.get("reason_code") for h, e in report_hosts.items() if e["status"] != "ok"},
        "run": context.get("run"),
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
            f"({totals['terminated']} terminate, {totals['cancelled']} cancel), {totals['not_ended']} not ended.**"
        )
        lines += ["", "| host | engine | status | seen | " + ended + " | not ended | note |"]
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        for host, entry in report["hosts"].items():
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted((entry.get("not_ended_by_reason") or {}).items()))
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
                        len(entry.get("not_ended") or []),
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
            for item in entry.get("not_ended") or []:
                rows.append((host, "not ended: " + str(item.get("reason")), item))
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
            entry = report["hosts"].get(host) or {}
            code = entry.get("reason_code") or "error"
            words = FAILURE_REASONS.get(code, code)
            line = f"- **{host}** ({code}: {words}): {_cell(reason)}"
            ended = len(entry.get("terminated") or []) + len(entry.get("cancelled") or [])
            if ended and kind == "enforce":
                what = "would have been ended" if dry else ("was ended" if ended == 1 else "were ended")
                line += f" — {ended} session{'s' if ended != 1 else ''} {what} before the failure (listed above"
                line += ", and in the audit trail)" if report.get("audit_log") else ")"
            lines.append(line)
    lines.append("")
    return "\n".join(lines)


_STAMPED_RE = re.compile(
    r"^(?P<kind>[a-z]+)-(?P<stamp>\d{8}T\d{6}(?:\.\d+)?Z)(?:-(?P<run>[A-Za-z0-9_.]+))?\.(?:json|md)$"
)


def run_tag():
    """A short tag that tells this run's reports from any concurrent run's."""
    return uuid.uuid4().hex[:8]


def _stamp(report):
    """20261201T161300.123456Z of the report's time (sorts as the time does)."""
    return report["time"].replace("-", "").replace(":", "")


def write_report(report, report_dir, keep=DEFAULT_REPORT_KEEP):
    """Write <kind>-<time>-<run>.json/.md and <kind>-latest.json/.md; return the paths.

    The time-stamped pair is unique to this run (its run tag, and never written
    over an existing file), so concurrent runs never replace each other's. Then
    the oldest time-stamped reports of the same kind beyond `keep` are removed
    (0 keeps every one)."""
    run = report.get("run") or run_tag()
    text_json = json.dumps(report, indent=2, sort_keys=True, default=str) + "\n"
    text_md = render_markdown(report)
    for attempt in range(100):
        suffix = run if attempt == 0 else f"{run}.{attempt}"
        base = os.path.join(report_dir, f"{report['kind']}-{_stamp(report)}-{suffix}")
        paths = {"json": base + ".json", "markdown": base + ".md"}
        if write_private(paths["json"], text_json, replace=False):
            break
    else:  # pragma: no cover - 100 reports of the same run in the same microsecond
        raise OSError(errno.EEXIST, "no free report name", base)
    write_private(paths["markdown"], text_md)
    write_private(os.path.join(report_dir, f"{report['kind']}-latest.json"), text_json)
    write_private(os.path.join(report_dir, f"{report['kind']}-latest.md"), text_md)
    prune_reports(report_dir, report["kind"], keep)
    return paths, text_md


def prune_reports(report_dir, kind, keep):
    """Remove the oldest time-stamped reports of `kind` beyond the newest `keep`; return the removed names.

    Only files named as write_report names them are considered (never the
    -latest ones, never anything else in the directory). A report counts once
    for its .json and .md."""
    if not keep:
        return []
    reports = {}
    for name in os.listdir(report_dir):
        match = _STAMPED_RE.match(name)
        if match and match.group("kind") == kind:
            reports.setdefault(name.rsplit(".", 1)[0], []).append(name)
    oldest_first = sorted(reports, key=lambda base: (_STAMPED_RE.match(reports[base][0]).group("stamp"), base))
    removed = []
    for base in oldest_first[: max(0, len(oldest_first) - keep)]:
        for name in reports[base]:
            try:
                os.unlink(os.path.join(report_dir, name))
            except FileNotFoundError:  # a concurrent run pruned it first
                pass
        removed.append(base)
    return removed
