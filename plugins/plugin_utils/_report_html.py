# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report as one self-contained HTML page, with trends over the kept reports.

Private to the collection; no Ansible import. The page comes from a Jinja2 template
(``templates/fleet_report.html.j2`` beside this file, or the user's own:
``dbhygiene_report_html_template``), always rendered with autoescape, so every value
from the database's clients (application names, users, statements, messages) shows as
text, never as markup. The template gets the report itself and what this file derives
from it: the figures per host, the sessions, the lock chains and the trend charts as
inline SVG geometry (no script, no font, nothing from the network).
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import math
import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_markdown import age, session_rows
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_model import FAILURE_REASONS, managed_platform

if TYPE_CHECKING:  # pragma: no cover - read by mypy only
    import jinja2

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
DEFAULT_TEMPLATE = os.path.join(TEMPLATE_DIR, "fleet_report.html.j2")
TEMPLATE_VARIABLE = "dbhygiene_report_html_template"

# With keep 0 (every report kept), the trends show the newest this many runs.
TREND_MAX_RUNS = 200

# The trends: (key, title, unit, kinds whose reports measure it). `ended_by_rule` is the
# sessions ended (a dry run, the audit: would end) per rule, one line per rule.
TRENDS = (
    ("sessions_seen", "Sessions seen", "", ("audit", "enforce")),
    ("ended_by_rule", "Ended per rule", "", ("audit", "enforce", "drain")),
    ("oldest_transaction", "Oldest transaction", "s", ("audit",)),
    ("longest_lock_wait", "Longest lock wait", "s", ("audit",)),
    ("failed_hosts", "Failed hosts", "", ("audit", "enforce", "drain")),
)
TITLES: dict[object, str] = {"audit": "Session audit", "enforce": "Session enforcement", "drain": "Change window"}
# Colour-blind safe (Okabe-Ito), one per line of a chart.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")


class TemplateError(Exception):
    """The HTML template cannot be read or rendered: the message names the variable and the path."""


def ended_items(report: Mapping[str, Any], entry: Mapping[str, Any]) -> list[Any]:
    """The sessions a host's entry says were ended, or would be (a dry run; the audit's plan)."""
    if report.get("kind") == "audit":
        return list(entry.get("would_end") or [])
    return list(entry.get("terminated") or []) + list(entry.get("cancelled") or [])


def _longest(hosts: Mapping[str, Mapping[str, Any]], field: str) -> float:
    """The most `field` seconds among the hosts that were read (0: nothing open, nothing waiting)."""
    values = [
        float((entry.get(field) or {}).get("seconds") or 0) for entry in hosts.values() if entry.get("status") == "ok"
    ]
    return max(values) if values else 0


def trend_point(report: Mapping[str, Any]) -> dict[str, Any]:
    """One report's figures for the trends (None: the report's kind does not measure it)."""
    hosts = report.get("hosts") or {}
    totals = report.get("totals") or {}
    kind = report.get("kind")
    ended: dict[str, int] = {}
    for entry in hosts.values():
        for item in ended_items(report, entry):
            rule = str(item.get("rule") or "(no rule)")
            ended[rule] = ended.get(rule, 0) + 1
    point: dict[str, Any] = {"time": report.get("time"), "run": report.get("run"), "ended_by_rule": ended}
    point["sessions_seen"] = int(totals.get("sessions_seen") or 0)
    point["failed_hosts"] = int(totals.get("failed") or 0)
    for field in ("oldest_transaction", "longest_lock_wait"):
        point[field] = _longest(hosts, field)
    for key, _title, _unit, kinds in TRENDS:
        if kind not in kinds:
            point[key] = None
    return point


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1): the chart's top."""
    if value <= 1:
        return 1
    power: float = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _shown(value: float, unit: str) -> str:
    if unit == "s" and value >= 60:
        return age(value)
    return f"{value:g}{unit}"


WIDTH, HEIGHT = 640, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 16, 14, 46


def chart(
    key: str, title: str, unit: str, times: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]
) -> dict[str, Any]:
    """The geometry of a line chart: `series` [(name, [value per run])], `times` the runs' times.

    Returns a dict the template draws as inline SVG: its size, the y axis' top and grid
    lines, per series the polyline's points and one dot per run (with its label)."""
    count = len(times)
    top = _nice_ceiling(max([value for _name, values in series for value in values] or [0]))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(index: int) -> float:
        return round(_LEFT + (plot_w * index / (count - 1) if count > 1 else plot_w / 2), 1)

    def y(value: float) -> float:
        return round(_TOP + plot_h * (1 - float(value) / top), 1)

    lines: list[dict[str, Any]] = []
    for number, (name, values) in enumerate(series):
        dots = [
            {"x": x(i), "y": y(value), "label": f"{times[i]}: {name} {_shown(value, unit)}", "value": value}
            for i, value in enumerate(values)
        ]
        lines.append(
            {
                "name": name,
                "color": PALETTE[number % len(PALETTE)],
                "points": " ".join(f"{dot['x']},{dot['y']}" for dot in dots),
                "dots": dots,
                "last": _shown(values[-1], unit) if values else "",
            }
        )
    grid = [{"y": y(top * step / 4), "label": _shown(top * step / 4, unit)} for step in range(5)]
    return {
        "key": key,
        "title": title,
        "unit": unit,
        "width": WIDTH,
        "height": HEIGHT,
        "left": _LEFT,
        "right": WIDTH - _RIGHT,
        "bottom": HEIGHT - _BOTTOM,
        "runs": count,
        "first": times[0] if times else "",
        "last": times[-1] if times else "",
        "grid": grid,
        "series": lines,
    }


def trend_charts(kind: object, points: Sequence[Mapping[str, Any]], check_mode: bool = False) -> list[dict[str, Any]]:
    """The charts of a kind's trends over `points` (trend_point of each kept report, oldest first)."""
    times = [str(point["time"]) for point in points]
    charts = []
    for key, title, unit, kinds in TRENDS:
        if kind not in kinds:
            continue
        if key == "ended_by_rule":
            if kind == "audit" or check_mode:
                title = "Would end per rule"
            rules = sorted(set(rule for point in points for rule in point[key] or {}))
            series: list[tuple[str, list[float]]] = [
                (rule, [(point[key] or {}).get(rule, 0) for point in points]) for rule in rules
            ]
            series = series or [("all rules", [0 for _point in points])]
        else:
            series = [(title.lower(), [point[key] or 0 for point in points])]
        charts.append(chart(key, title, unit, times, series))
    return charts


def _host_view(report: Mapping[str, Any], host: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """A host's figures as the page shows them."""
    view: dict[str, Any] = {
        "host": host,
        "engine": entry.get("engine"),
        "role": entry.get("role"),
        "platform": managed_platform(entry),
        "status": entry.get("status"),
        "seen": entry.get("seen") if entry.get("seen") is not None else entry.get("sessions"),
        "by_state": entry.get("by_state") or {},
        "oldest_transaction": (entry.get("oldest_transaction") or {}).get("seconds"),
        "longest_lock_wait": (entry.get("longest_lock_wait") or {}).get("seconds"),
        "ended": len(ended_items(report, entry)),
        "not_ended": len(entry.get("not_ended") or []),
        "breaches": list(entry.get("breaches") or []),
        "reason": entry.get("reason"),
        "reason_code": entry.get("reason_code"),
        "reason_words": FAILURE_REASONS.get(entry.get("reason_code"), ""),
    }
    if report.get("kind") == "audit":
        view["sessions"] = [("would " + str(item.get("action")), item) for item in entry.get("would_end") or []]
    else:
        view["sessions"] = [(outcome, item) for row_host, outcome, item in session_rows(report) if row_host == host]
    return view


def page_context(report: Mapping[str, Any], points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Everything the template gets: the report, the per-host views, the charts."""
    kind = report.get("kind")
    dry = bool(report.get("check_mode"))
    return {
        "report": report,
        "title": TITLES.get(kind, str(kind)),
        "dry_run": dry,
        "stopped": report.get("stopped"),
        "totals": report.get("totals") or {},
        "hosts": [_host_view(report, host, entry) for host, entry in (report.get("hosts") or {}).items()],
        "lock_chains": report.get("lock_chains") or [],
        "lock_cycles": report.get("lock_cycles") or [],
        "charts": trend_charts(kind, points, check_mode=dry and kind != "audit"),
        "points": points,
        "ended_word": "would end" if dry or kind == "audit" else "ended",
    }


def _environment(directory: str) -> tuple[jinja2.Environment, type[Exception]]:
    import jinja2  # on every controller (ansible-core needs it); imported when a page is made

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["age"] = lambda value: age(value) or "0s"
    return environment, jinja2.TemplateError


def load_template(path: object = None) -> jinja2.Template:
    """The compiled template at `path` (None: the collection's); TemplateError naming the variable."""
    path = os.path.abspath(os.path.expanduser(str(path))) if path else DEFAULT_TEMPLATE
    if not os.path.isfile(path):
        raise TemplateError(f"{TEMPLATE_VARIABLE}: cannot read the template {path}: no such file")
    environment, error = _environment(os.path.dirname(path))
    try:
        return environment.get_template(os.path.basename(path))
    except error as exc:
        raise TemplateError(f"{TEMPLATE_VARIABLE}: cannot use the template {path}: {type(exc).__name__}: {exc}")
    except OSError as exc:
        raise TemplateError(f"{TEMPLATE_VARIABLE}: cannot read the template {path}: {exc}")


def render_html(
    report: Mapping[str, Any], points: Sequence[Mapping[str, Any]], template_path: str | None = None
) -> str:
    """The page of `report`; `points`: trend_point of each kept report of its kind, oldest first."""
    template = load_template(template_path)
    try:
        return template.render(**page_context(report, points))
    except Exception as exc:  # a user's template can fail in any way: say which and where
        where = template_path or DEFAULT_TEMPLATE
        raise TemplateError(f"{TEMPLATE_VARIABLE}: the template {where} failed: {type(exc).__name__}: {exc}")
