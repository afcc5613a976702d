# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report (``_report_model.build_report``) as Markdown.

Private to the collection; no Ansible import. Every table is made by
``table()`` from its column headings and its rows of values.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import re
from typing import Any, Callable, Iterable, Mapping, Sequence, Tuple

from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_model import FAILURE_REASONS, managed_platform

# A value shown as text, whatever it holds (application names, users, databases, statements
# and messages come from the database's clients): it renders as itself in every Markdown
# renderer (CommonMark, GitHub's, Python-Markdown), never as markup. <, > and & become
# entities (a backslash does not escape them in every renderer: raw HTML, autolinks,
# entities); the characters of code spans, emphasis, links and images, strikethrough, math
# and table cells get a backslash (an underscore between two letters or digits cannot
# emphasize: idle_in_transaction stays as it is); line breaks and other control characters
# a space (one value, one line: a table row, a list item).
_TEXT: dict[str, str] = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
_TEXT.update((char, "\\" + char) for char in "\\`*[]|~$")
_TEXT.update((chr(code), " ") for code in tuple(range(32)) + (127, 0x85, 0x2028, 0x2029) if chr(code) != "\t")
_TEXT_TABLE = str.maketrans(_TEXT)
_EDGE_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")


# How the first line of a dry run's report ends (every kind's report).
DRY_RUN_TITLE = " (check mode: nothing was changed)"


def title_lines(title: str, report: Mapping[str, Any]) -> list[str]:
    """The report's first lines: its title (saying when it is a dry run) and, for a run that
    stopped before any database was contacted, why."""
    lines = [f"# {title}{DRY_RUN_TITLE if report['check_mode'] else ''}", ""]
    if report.get("stopped"):
        lines += [f"**Stopped before any database was contacted: {text(report['stopped'])}**", ""]
    return lines


def text(value: object) -> str:
    """`value` as Markdown text that shows exactly it, on one line ("" for None)."""
    if value is None:
        return ""
    return _EDGE_UNDERSCORE.sub(r"\\_", str(value).translate(_TEXT_TABLE))


def table(headings: Sequence[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """The lines of a Markdown table: the headings, the rule, one line per row of values (escaped)."""
    lines = ["| " + " | ".join(headings) + " |", "| " + " | ".join(["---"] * len(headings)) + " |"]
    lines.extend("| " + " | ".join(text(value) for value in row) + " |" for row in rows)
    return lines


def age(seconds: Any) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _ended(entry: Mapping[str, Any]) -> int:
    return len(entry.get("terminated") or []) + len(entry.get("cancelled") or [])


_SESSION_HEADINGS = ("host", "id", "user", "database", "application", "client", "state", "idle", "rule", "outcome")


# A row of the sessions' table: (host, outcome, session).
SessionRow = Tuple[str, str, Mapping[str, Any]]


def session_table(rows: Iterable[SessionRow]) -> list[str]:
    """The table of sessions: rows are (host, outcome, entry)."""
    return table(
        _SESSION_HEADINGS,
        (
            (
                host,
                entry.get("id"),
                entry.get("user"),
                entry.get("database"),
                entry.get("application"),
                entry.get("client_addr") or "local",
                entry.get("state"),
                age(entry.get("idle_seconds")),
                entry.get("rule"),
                outcome,
            )
            for host, outcome, entry in rows
        ),
    )


def _header(title: str, report: Mapping[str, Any]) -> list[str]:
    lines = title_lines(title, report) + [f"- time: {text(report['time'])}"]
    if report.get("policy"):
        lines.append(f"- policy: {text(report['policy'])}")
    if report.get("job_id") is not None:
        lines.append(f"- AWX job: {text(report['job_id'])}")
    if report.get("audit_log"):
        lines.append(f"- audit trail: {text(report['audit_log'])}")
    return lines + [""]


def _body(
    report: Mapping[str, Any],
    headline: str,
    headings: Sequence[str],
    host_row: Callable[[dict[str, Any]], tuple[object, ...]],
    sessions: Sequence[SessionRow],
    section: str,
) -> list[str]:
    """The headline, the table of hosts (one host_row(entry) each), then the sessions' table under `section`."""
    lines = [headline, ""]
    lines += table(headings, ((host,) + host_row(entry) for host, entry in report["hosts"].items()))
    if sessions:
        lines += ["", section, ""]
        lines += session_table(sessions)
    return lines


def _enforce_host(entry: dict[str, Any]) -> tuple[object, ...]:
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted((entry.get("not_ended_by_reason") or {}).items()))
    return (
        entry.get("engine"),
        entry["status"],
        entry.get("seen"),
        _ended(entry),
        len(entry.get("not_ended") or []),
        "see below" if entry["status"] != "ok" else reasons,
    )


def session_rows(report: Mapping[str, Any]) -> list[SessionRow]:
    """(host, outcome, session) of every session a report's hosts ended, would end or did not
    end, in host order: the rows of `session_table`."""
    dry = report["check_mode"]
    rows: list[SessionRow] = []
    for host, entry in report["hosts"].items():
        for bucket, outcome in (("terminated", "terminate"), ("cancelled", "cancel")):
            for item in entry.get(bucket) or []:
                rows.append((host, ("would " if dry else "") + outcome, item))
        for item in entry.get("not_ended") or []:
            rows.append((host, "not ended: " + str(item.get("reason")), item))
        for item in entry.get("unknown") or []:
            rows.append((host, "unknown: signalled, fate not learned", item))
    return rows


def _enforce_body(report: Mapping[str, Any]) -> list[str]:
    totals = report["totals"]
    dry = report["check_mode"]
    ended = "would end" if dry else "ended"
    sessions = session_rows(report)
    return _body(
        report,
        f"**{totals['hosts']} hosts: {totals['ok']} ok, {totals['failed']} failed. "
        f"{totals['sessions_seen']} sessions seen, {totals['ended']} {ended} "
        f"({totals['terminated']} terminate, {totals['cancelled']} cancel), {totals['not_ended']} not ended"
        + (f", {totals['unknown']} whose fate is unknown" if totals.get("unknown") else "")
        + ".**",
        ("host", "engine", "status", "seen", ended, "not ended", "note"),
        _enforce_host,
        sessions,
        "## Sessions " + ("that would be ended" if dry else "ended"),
    )


def _role_cell(entry: Mapping[str, Any]) -> str:
    """The server's role, and the managed service it runs on when it is one (`primary, rds`)."""
    return ", ".join(part for part in (entry.get("role"), managed_platform(entry)) if part)


def _audit_host(entry: dict[str, Any]) -> tuple[object, ...]:
    use = ""
    if entry.get("connection_use") is not None:
        use = f"{entry['connection_use'] * 100:.1f}% of {entry.get('max_connections')}"
    note = "; ".join(entry.get("breaches") or []) or entry.get("limit_error") or ""
    if entry.get("lock_note"):
        note = f"{note}; {entry['lock_note']}" if note else entry["lock_note"]
    if entry["status"] != "ok" and not entry.get("breaches"):
        note = "see below"
    return (
        entry.get("engine"),
        _role_cell(entry),
        entry["status"],
        entry.get("sessions"),
        use,
        ", ".join(f"{k} {v}" for k, v in (entry.get("by_state") or {}).items()),
        age((entry.get("oldest_idle_in_transaction") or {}).get("seconds")),
        age((entry.get("oldest_transaction") or {}).get("seconds")),
        age((entry.get("longest_lock_wait") or {}).get("seconds")),
        len(entry.get("would_end") or []) if "would_end" in entry else "",
        note,
    )


_AUDIT_HEADINGS = (
    "host",
    "engine",
    "role",
    "status",
    "sessions",
    "use",
    "by state",
    "oldest idle in trx",
    "oldest trx",
    "longest lock wait",
    "would end",
    "note",
)


_WAITERS_SHOWN = 10


def _waiters(ids: Sequence[object]) -> str:
    shown = ", ".join(str(value) for value in ids[:_WAITERS_SHOWN])
    return shown + (f" and {len(ids) - _WAITERS_SHOWN} more" if len(ids) > _WAITERS_SHOWN else "")


def _lock_chains(report: Mapping[str, Any]) -> list[str]:
    """The fleet's lock chains (root blockers, longest wait first) and its lock cycles."""
    chains = report.get("lock_chains") or []
    cycles = report.get("lock_cycles") or []
    if not chains and not cycles:
        return []
    lines = ["", "## Lock chains", ""]
    if chains:
        lines += [
            "Root blockers: each holds a lock the sessions behind it wait for, directly or down a chain, "
            "and waits for nothing itself.",
            "",
        ]
        lines += table(
            ("host", "root", "user", "database", "application", "state", "waiting behind", "longest wait", "waiters"),
            (
                (
                    chain["host"],
                    chain.get("root"),
                    chain.get("user"),
                    chain.get("database"),
                    chain.get("application"),
                    chain.get("state") if chain.get("visible") else "(not visible to the login)",
                    chain.get("blocking"),
                    age(chain.get("blocking_seconds")),
                    _waiters(chain.get("waiters") or []),
                )
                for chain in chains
            ),
        )
    if cycles:
        lines += [""] + [
            f"- **{text(cycle['host'])}**: sessions {_waiters(cycle['sessions'])} wait for each other "
            "(a deadlock in progress: the server ends one of them; no root blocker, nothing for blocking_* rules)"
            for cycle in cycles
        ]
    return lines


def _audit_body(report: Mapping[str, Any]) -> list[str]:
    totals = report["totals"]
    chains = ""
    if totals.get("lock_chains"):
        chains = (
            f" {totals['lock_chains']} lock chain{'s' if totals['lock_chains'] != 1 else ''}, "
            f"{totals.get('lock_waiting', 0)} sessions waiting for a lock."
        )
    lines = _body(
        report,
        f"**{totals['hosts']} hosts: {totals['ok']} ok, {totals['failed']} failed, "
        f"{totals['alerting']} over a threshold. {totals['sessions_seen']} sessions, "
        f"{totals['would_end']} the policy would end.{chains}**",
        _AUDIT_HEADINGS,
        _audit_host,
        [
            (host, "would " + str(item.get("action")), item)
            for host, entry in report["hosts"].items()
            for item in entry.get("would_end") or []
        ],
        "## What the policy would end",
    )
    return lines + _lock_chains(report)


def _group_label(group: Mapping[str, object] | None) -> str:
    """A budget's group as the report names it: "user=app, application=web" ("(whole host)": no per)."""
    if not group:
        return "(whole host)"
    return ", ".join(f"{key}={'(none)' if value is None else value}" for key, value in group.items())


def _groups_over_budget(report: Mapping[str, Any], ends: bool) -> list[str]:
    """Per host, the groups a budget rule found over their budget: size, kept, and ended (or to end)."""
    rows = [
        (
            host,
            group.get("rule"),
            _group_label(group.get("group")),
            group.get("size"),
            group.get("kept"),
            group.get("ended"),
        )
        for host, entry in report["hosts"].items()
        for group in entry.get("groups_over_budget") or []
    ]
    if not rows:
        return []
    ended = "ended" if ends and not report["check_mode"] else "to end"
    return ["", "## Groups over budget", ""] + table(("host", "rule", "group", "size", "kept", ended), rows)


def failed_hosts(report: Mapping[str, Any], ends: bool = False) -> list[str]:
    """The section listing the hosts that failed, each with its reason code and (`ends`: a report
    of sessions ended, the enforce's) what it had ended and what it signalled whose fate is unknown."""
    dry = report["check_mode"]
    lines = ["", "## Hosts that failed", ""]
    for host, reason in report["failed_hosts"].items():
        entry = report["hosts"].get(host) or {}
        code = entry.get("reason_code") or "error"
        words = FAILURE_REASONS.get(code, code)
        line = f"- **{text(host)}** ({code}: {words}): {text(reason)}"
        ended = _ended(entry)
        if ended and ends:
            what = "would have been ended" if dry else ("was ended" if ended == 1 else "were ended")
            line += f" — {ended} session{'s' if ended != 1 else ''} {what} before the failure (listed above"
            line += ", and in the audit trail)" if report.get("audit_log") and not entry.get("audit_error") else ")"
        unknown = len(entry.get("unknown") or [])
        if unknown and ends:
            line += (
                f" — {unknown} session{'s' if unknown != 1 else ''} signalled whose fate is unknown (listed above; "
                "the next run settles them)"
            )
        lines.append(line)
    return lines


def _render(title: str, body: Callable[[Mapping[str, Any]], list[str]], ends: bool, report: Mapping[str, Any]) -> str:
    """The header, the body of its kind, the groups over budget, the hosts that failed."""
    lines = _header(title, report)
    lines += body(report)
    lines += _groups_over_budget(report, ends)
    if report["failed_hosts"]:
        lines += failed_hosts(report, ends)
    lines.append("")
    return "\n".join(lines)


def render_audit(report: Mapping[str, Any]) -> str:
    """An audit report as Markdown (``_report_kinds`` chooses the renderer of each kind)."""
    return _render("Session audit", _audit_body, False, report)


def render_enforce(report: Mapping[str, Any]) -> str:
    """An enforce report as Markdown: what was ended, or would be in a dry run."""
    return _render("Session enforcement", _enforce_body, True, report)
