# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain role's controller side: its variables' check, its audit-trail lines, its
per-host summary and its fleet report (model and Markdown).

Private to the collection; no Ansible import. The pieces of the other roles are
reused: the trail's record format and appends (``_trail``), the report's host
statuses and failure reasons (``_report_model.build_report``, with this kind's
``DrainFigures``), its tables and the "Hosts that failed" section (``_report_markdown``).
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

from typing import Any, Mapping

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _drain_request, _drain_rights
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc_z, utc_now
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _report_markdown as md
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _report_model, _trail

STATES = _drain_request.STATES
# The name the trail and the report give the change window's decisions (the `policy` of a line).
POLICY = "drain"
# The drain modules' options and the role variables that give them.
ROLE_VARIABLES = {
    "databases": "dbhygiene_drain_databases",
    "state": "dbhygiene_drain_state",
    "allow_users": "dbhygiene_drain_allow_users",
    "grace": "dbhygiene_drain_grace",
    "wait_timeout": "dbhygiene_wait_timeout",
    "host_timeout": "dbhygiene_host_timeout",
}

# The outcome of a change whose statement was sent when the drain failed (made or not).
OUTCOME_UNKNOWN = "unknown"
# A change of connection rights (the module's `change`) -> the trail's action and its dry-run outcome.
_CHANGE_ACTIONS = {
    "revoked": ("revoke", "would_revoke"),
    "granted": ("grant", "would_grant"),
    "locked": ("lock", "would_lock"),
    "unlocked": ("unlock", "would_unlock"),
}


def request_error(params: Mapping[str, Any]) -> PolicyError | None:
    """The PolicyError (naming the option and the value) of the drain options in `params`
    (the module's names: databases, state, allow_users, grace, wait_timeout, host_timeout,
    None or missing for the module's default), checked as the drain modules check them
    (``_drain_request.parse_request``), before any connection; None when they are valid."""
    options = _drain_request.drain_argument_spec()
    request: dict[str, Any] = {}
    for name, option in options.items():
        value = params.get(name)
        request[name] = option.get("default") if value is None else value
    try:
        _drain_request.parse_request(request)
    except PolicyError as exc:
        return exc
    return None


def variable_problems(values: Mapping[str, Any]) -> list[str]:
    """Error messages for the drain role's variables among `values` ({name: value} as the
    host has them, after the argument spec's types), each naming the variable."""
    error = request_error({option: values.get(name) for option, name in ROLE_VARIABLES.items()})
    if error is None:
        return []
    field = str(error.field)
    option = field.split("[", 1)[0]
    if option in ROLE_VARIABLES:
        field = ROLE_VARIABLES[option] + field[len(option) :]
    return [f"{field}: {error.problem}"]


def changes_of(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The connection rights a drain / open result changed (or would change): the module's
    `changes`, each with `change` (revoked, granted, locked, unlocked), `account`, `database`."""
    return [dict(change) for change in result.get("changes") or [] if isinstance(change, dict)]


def _line(
    host: str, engine: str | None, check_mode: bool, context: dict[str, Any], action: str, outcome: str
) -> dict[str, Any]:
    return _trail.trail_line(iso_utc_z(utc_now()), host, engine, context, POLICY, POLICY, action, check_mode, outcome)


def change_line(
    host: str,
    engine: str | None,
    check_mode: bool,
    context: dict[str, Any],
    change: Mapping[str, Any],
    outcome: str | None = None,
) -> dict[str, Any]:
    """The audit line of one change of rights (a `changes` entry): its `outcome`, or in
    check mode (outcome None) the dry run's (would_revoke, ...)."""
    done = str(change.get("change"))
    action, would = _CHANGE_ACTIONS.get(done, (done, "would_" + done))
    line = _line(host, engine, check_mode, context, action, would if outcome is None else outcome)
    for name in sorted(change):
        line.setdefault(name, change[name])
    line["job_id"] = context.get("job_id")
    if context.get("run_id"):  # this run of the role on this host (the write-ahead trail, _journal.DrainJournal)
        line["run_id"] = context["run_id"]
    return line


def trail_records(
    host: str, engine: str | None, result: Mapping[str, Any], check_mode: bool, context: dict[str, Any]
) -> list[dict[str, Any]]:
    """Audit lines for one host's drain / open result: one per right changed and one per
    session ended (or, in check mode, that would be), in the enforce trail's format, each
    with `drain_state` (the state asked for: drained or open)."""
    drain_state = result.get("state") or context.get("state")
    records = []
    for change in changes_of(result):
        done = str(change.get("change"))
        if change.get("status") == _drain_rights.STATUS_UNKNOWN:
            done = OUTCOME_UNKNOWN  # sent when the server stopped answering: made or not
        records.append(change_line(host, engine, check_mode, context, change, None if check_mode else done))
    sessions: dict[str, Any] = {"policy": POLICY}
    for bucket in ("cancelled", "terminated", "not_ended", "unknown"):
        sessions[bucket] = [dict(entry, rule=entry.get("rule") or POLICY) for entry in result.get(bucket) or []]
    records.extend(_trail.trail_records(host, engine, sessions, check_mode, context))
    for line in records:
        line["drain_state"] = drain_state
    return records


def drain_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The drain role's per-host figures from a *_drain result."""
    brief = _report_model.brief
    not_ended = result.get("not_ended") or []
    return {
        "state": result.get("state"),
        "databases": result.get("databases"),
        "changes": changes_of(result),
        "restored": [dict(entry) for entry in result.get("restored") or [] if isinstance(entry, dict)],
        "terminated": [brief(entry) for entry in result.get("terminated") or []],
        "cancelled": [brief(entry) for entry in result.get("cancelled") or []],
        "not_ended": [brief(entry) for entry in not_ended if entry.get("reason") != "protected"],
        # Journaled as being ended, fate not learned (the run failed or died): settled by the next run on the host.
        "unknown": [brief(entry) for entry in result.get("unknown") or []],
        # What stays closed on the host after the run: the server's own record, every database of it.
        # None: the host failed before it could say (the report shows "unknown").
        "still_closed": [str(name) for name in result.get("closed") or []] if "closed" in result else None,
        # A drain or open that failed while a change of rights was in flight: made or not, unknown.
        "state_unknown": bool(result.get("state_unknown")),
        # A standby / replica: no right changed there (they come from the primary by replication).
        "role": result.get("role"),
        "replica": bool(result.get("replica")),
        "not_drained_on_primary": list(result.get("not_drained_on_primary") or []),
    }


def ended_sessions(entry: Mapping[str, Any]) -> int:
    """How many sessions a host's summary says were (or would be) ended, each counted once."""
    ended = (entry.get("terminated") or []) + (entry.get("cancelled") or [])
    return len({(item.get("key"), item.get("id")) for item in ended})


class DrainFigures(_report_model.LockFigures):
    """The change window's report figures: the rights changed (and those sent when a host failed),
    the sessions ended, what each host still has closed, the hosts in a state unknown; no policy.
    (The lock figures of ``LockFigures`` too: the drain reads no lock, they stay empty.)"""

    def totals(self) -> dict[str, int]:
        return dict(
            _report_model.LockFigures.totals(self),
            changes=0,
            changes_unknown=0,
            terminated=0,
            cancelled=0,
            ended=0,
            not_ended=0,
            unknown=0,
            still_closed=0,
            hosts_still_closed=0,
            hosts_unknown=0,
        )

    def finish(self, report: dict[str, Any]) -> None:
        _report_model.LockFigures.finish(self, report)
        totals = report["totals"]
        for entry in report["hosts"].values():
            changes = entry.get("changes") or []
            unknown = [c for c in changes if c.get("status") == _drain_rights.STATUS_UNKNOWN]
            totals["changes"] += len(changes) - len(unknown)
            totals["changes_unknown"] += len(unknown)
            if entry.get("still_closed") is None or entry.get("state_unknown"):
                totals["hosts_unknown"] += 1
            totals["terminated"] += len(entry.get("terminated") or [])
            totals["cancelled"] += len(entry.get("cancelled") or [])
            totals["not_ended"] += len(entry.get("not_ended") or [])
            totals["unknown"] += len(entry.get("unknown") or [])
            closed = len(entry.get("still_closed") or [])
            totals["still_closed"] += closed
            totals["hosts_still_closed"] += 1 if closed else 0
        # A session cancelled first and terminated after the grace is one session ended.
        totals["ended"] = sum(ended_sessions(entry) for entry in report["hosts"].values())
        report["policy"] = None


def _what(change: Mapping[str, Any]) -> str:
    """A change in words: the right, the account, the database."""
    right = f"{change['right']} " if change.get("right") else ""
    where = f" on {change['database']}" if change.get("database") else ""
    return f"{right}{change.get('account') or ''}{where}"


def _closed_cell(entry: Mapping[str, Any]) -> str:
    """What the host has closed, in the hosts table."""
    closed = entry.get("still_closed")
    if closed is None:
        return "unknown"
    text = ", ".join(closed) or "nothing"
    return f"{text} (state unknown)" if entry.get("state_unknown") else text


def _change_word(item: Mapping[str, Any]) -> str:
    change = str(item.get("change"))
    if item.get("status") == _drain_rights.STATUS_UNKNOWN:
        return f"{change}? (sent when the host failed: made or not, unknown)"
    return change


def render_markdown(report: Mapping[str, Any]) -> str:
    """The drain report as Markdown: what each host closed, ended and still has closed."""
    dry = report["check_mode"]
    totals = report["totals"]
    lines = md.title_lines("Change window", report) + [f"- time: {md.text(report['time'])}"]
    if report.get("job_id") is not None:
        lines.append(f"- AWX job: {md.text(report['job_id'])}")
    if report.get("audit_log"):
        lines.append(f"- audit trail: {md.text(report['audit_log'])}")
    changed = "would change" if dry else "changed"
    ended = "would end" if dry else "ended"
    unknown_changes = totals.get("changes_unknown") or 0
    in_flight = f" ({unknown_changes} more sent when a host failed: made or not, unknown)" if unknown_changes else ""
    unknown_hosts = totals.get("hosts_unknown") or 0
    state_unknown = f", {unknown_hosts} hosts in a state unknown (see below)" if unknown_hosts else ""
    unknown_sessions = totals.get("unknown") or 0
    fate_unknown = f", {unknown_sessions} whose fate is unknown (settled by the next run)" if unknown_sessions else ""
    lines += [
        "",
        f"**{totals['hosts']} hosts: {totals['ok']} ok, {totals['failed']} failed. "
        f"{totals['changes']} rights {changed}{in_flight}, {totals['ended']} sessions {ended} "
        f"({totals['terminated']} terminate, {totals['cancelled']} cancel), "
        f"{totals['not_ended']} not ended{fate_unknown}; "
        f"{totals['hosts_still_closed']} hosts {'would be' if dry else 'still'} closed{state_unknown}.**",
        "",
    ]
    rows: list[tuple[object, ...]] = []
    for host, entry in report["hosts"].items():
        rows.append(
            (
                host,
                entry.get("engine"),
                entry["status"],
                f"{entry.get('state')} (on a {entry['role']}: rights from the primary)"
                if entry.get("replica")
                else entry.get("state"),
                ", ".join(entry.get("databases") or []),
                len(entry.get("changes") or []),
                ended_sessions(entry),
                _closed_cell(entry),
            )
        )
    closed = "would be closed" if dry else "still closed"
    lines += md.table(("host", "engine", "status", "state", "databases", changed, ended, closed), rows)
    change_rows = [
        (host, ("would be " if dry else "") + _change_word(item), _what(item), item.get("reason") or "")
        for host, entry in report["hosts"].items()
        for item in entry.get("changes") or []
    ]
    if change_rows:
        lines += ["", "## Rights " + ("that would change" if dry else "changed"), ""]
        lines += md.table(("host", "change", "what", "detail"), change_rows)
    sessions = md.session_rows(report)
    if sessions:
        lines += ["", "## Sessions " + ("that would be ended" if dry else "ended"), ""]
        lines += md.session_table(sessions)
    if report["failed_hosts"]:
        lines += md.failed_hosts(report)
    lines.append("")
    return "\n".join(lines)
