# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the roles' outputs go: the default paths, the AWX warning about them, the report files.

Private to the collection; no Ansible import. Fleet reports are written as
``<kind>-<time>-<run>.json/.md`` (unique per run, never replaced by a
concurrent run) and ``<kind>-latest.json/.md``; the oldest time-stamped reports
of a kind beyond ``keep`` are pruned. A dry run (check mode) of a role that
changes things writes ``<kind>-check-<time>-<run>`` and ``<kind>-check-latest``
instead, kept and pruned apart, so that it never replaces what a real run left;
the audit role is read only, so each of its runs is an ``audit-`` report. The report of a sliced sweep
(``_sweeps.py``) is ``<kind>-<time>-sweep.<id>.json/.md``, "run" being the
sweep's tag: each run of the sweep replaces it with one of a newer time, and
pruning it also removes the sweep's directory of per-host results,
``<kind>-sweep.<id>.d``.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import errno
import json
import os
import re
import shutil
import uuid
from typing import Any, Iterable, Mapping, Sequence

from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._files import (
    controller_path,
    locked_directory,
    write_private,
)
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_html import (
    TREND_MAX_RUNS,
    render_html,
    trend_point,
)
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_kinds import READ_ONLY_KINDS, render_markdown
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._trail import job_id

# The roles' defaults for the report directory and the trail: inside an AWX job they are
# in the job's throw-away execution environment container.
DEFAULT_REPORT_DIR = "~/dbhygiene/reports"
DEFAULT_AUDIT_LOG = "~/dbhygiene/audit.jsonl"
DEFAULT_REPORT_KEEP = 30


def awx_default_path_warnings(
    task_vars: dict[str, Any], report_dir: object = None, audit_log: object = None
) -> list[str]:
    """Warnings for an AWX job that keeps its report or trail at the default path.

    An AWX job runs in a throw-away execution environment container: whatever is
    written under the default paths there is gone when the job ends."""
    job = job_id(task_vars)
    if job is None:
        return []
    defaults: list[tuple[str, str, object]] = []
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


# The group the playbooks target unless dbhygiene_hosts names another group or pattern.
DEFAULT_HOSTS = "databases"


def play_targets(pattern_hosts: Iterable[str] | None, play_hosts: Iterable[str] | None) -> list[str]:
    """The hosts the play of `pattern` will work on: the inventory's hosts of the pattern
    (`pattern_hosts`, --limit aside) that are among `play_hosts` (every host of the inventory
    that --limit leaves), in the pattern's order."""
    left = set(play_hosts or [])
    return [host for host in pattern_hosts or [] if host in left]


def no_hosts_message(pattern: str, pattern_hosts: Sequence[str] | None, task_vars: Mapping[str, Any]) -> str:
    """Why a play of `pattern` has no host to work on, naming the group, dbhygiene_hosts,
    the inventory (and the AWX inventory, --limit) and what to do."""
    given = task_vars.get("dbhygiene_hosts")
    if given is not None and str(given).strip() != "":
        what = f"dbhygiene_hosts is {pattern!r}"
    else:
        what = f"the play targets the group {pattern!r} (the default; dbhygiene_hosts is not set)"
    sources = ", ".join(str(source) for source in task_vars.get("ansible_inventory_sources") or []) or "(none)"
    inventory = f"the inventory {sources}"
    if task_vars.get("awx_inventory_name"):
        inventory = f"the AWX inventory {task_vars['awx_inventory_name']!r} ({sources})"
    limit = task_vars.get("ansible_limit")
    if pattern_hosts and limit:
        found = f"its {len(pattern_hosts)} host(s) in {inventory} are all outside --limit {limit!r}"
    else:
        found = f"no host of {inventory} is in it"
    return (
        f"no host to work on: {what}, and {found}; nothing was contacted. Name the group of the database hosts "
        f"with dbhygiene_hosts (default {DEFAULT_HOSTS!r}), or add the hosts to that group of the inventory"
    )


def _is_default(value: object, default: str) -> bool:
    text = str(value)
    return text == default or controller_path(text) == controller_path(default)


_STAMPED_RE = re.compile(
    r"^(?P<kind>[a-z]+(?:-check)?)-(?P<stamp>\d{8}T\d{6}(?:\.\d+)?Z)(?:-(?P<run>[A-Za-z0-9_.]+))?\.(?:json|md|html)$"
)
CHECK_SUFFIX = "-check"


def report_stem(kind: str, check_mode: object) -> str:
    """How the report files of a run of `kind` begin: `<kind>-check` for a dry run of a role that
    changes things (never the name of a real run's files), else `<kind>`."""
    return f"{kind}{CHECK_SUFFIX}" if check_mode and kind not in READ_ONLY_KINDS else kind


def _kind_of(stem: str) -> str:
    return stem[: -len(CHECK_SUFFIX)] if stem.endswith(CHECK_SUFFIX) else stem


def run_tag() -> str:
    """A short tag that tells this run's reports from any concurrent run's."""
    return uuid.uuid4().hex[:8]


def _stamp(report: Mapping[str, Any]) -> str:
    """20261201T161300.123456Z of the report's time (sorts as the time does)."""
    time: str = report["time"]
    return time.replace("-", "").replace(":", "")


# The run tags of sliced sweeps' reports (_sweeps.sweep_tag): real runs and dry runs apart.
SWEEP_TAG_PREFIXES = ("sweep.", "sweep_check.")


def sweep_directory(report_dir: str, kind: str, tag: str) -> str:
    """The directory of a sweep's per-host results (_sweeps.py)."""
    return os.path.join(report_dir, f"{kind}-{tag}.d")


def write_report(
    report: dict[str, Any],
    report_dir: str,
    keep: int = DEFAULT_REPORT_KEEP,
    markdown: str | None = None,
    html_template: str | None = None,
) -> tuple[dict[str, str], str]:
    """Write <stem>-<time>-<run>.json/.md/.html and <stem>-latest.json/.md/.html; return the paths.

    <stem> is report_stem(kind, check_mode): a dry run's files never replace a real run's.

    The time-stamped pair is unique to this run (its run tag, and never written
    over an existing file), so concurrent runs never replace each other's. A
    sweep's report (its run a sweep tag; written under the sweep's lock)
    replaces the sweep's earlier one. Then the oldest time-stamped reports of
    the same kind beyond `keep` are removed (0 keeps every one). `markdown`:
    the Markdown text, when not render_markdown(report). The HTML page (_report_html, from
    `html_template` or the collection's) has the trends over the reports of the stem kept
    after pruning; a template that fails raises _report_html.TemplateError, once the JSON
    and Markdown are written."""
    run: str = report.get("run") or run_tag()
    stem = report_stem(report["kind"], report.get("check_mode"))
    text_json = json.dumps(report, indent=2, sort_keys=True, default=str) + "\n"
    text_md = render_markdown(report) if markdown is None else markdown
    earlier = _stamped_reports(report_dir, stem).get(run, []) if run.startswith(SWEEP_TAG_PREFIXES) else []
    for attempt in range(100):
        suffix = run if attempt == 0 else f"{run}.{attempt}"
        base = os.path.join(report_dir, f"{stem}-{_stamp(report)}-{suffix}")
        paths = {"json": base + ".json", "markdown": base + ".md", "html": base + ".html"}
        if write_private(paths["json"], text_json, replace=False):
            break
    else:  # pragma: no cover - 100 reports of the same run in the same microsecond
        raise OSError(errno.EEXIST, "no free report name", base)
    write_private(paths["markdown"], text_md)
    for old_base in earlier:
        _remove_report(report_dir, old_base)
    write_private(os.path.join(report_dir, f"{stem}-latest.json"), text_json)
    write_private(os.path.join(report_dir, f"{stem}-latest.md"), text_md)
    prune_reports(report_dir, stem, keep)
    text_html = render_html(report, kept_trend_points(report_dir, stem, report), html_template)
    write_private(paths["html"], text_html)
    write_private(os.path.join(report_dir, f"{stem}-latest.html"), text_html)
    return paths, text_md


def kept_trend_points(report_dir: str, stem: str, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The trend points (_report_html.trend_point) of the kept time-stamped reports of `stem`, oldest
    first, the newest TREND_MAX_RUNS; `report` (just written) is among them even when unreadable
    on disk. A report that cannot be read (pruned meanwhile, cut) is left out."""
    names: list[str] = []
    for bases in _stamped_reports(report_dir, stem).values():
        names.extend(bases)
    names.sort(key=lambda base: (_stamp_of(base), base))
    points = []
    for base in names[-TREND_MAX_RUNS:]:
        try:
            with open(os.path.join(report_dir, base + ".json"), encoding="utf-8") as handle:
                kept = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(kept, dict) and kept.get("run") != report.get("run"):
            points.append(trend_point(kept))
    points.append(trend_point(report))
    points.sort(key=lambda point: str(point["time"]))
    return points[-TREND_MAX_RUNS:]


def _stamp_of(base: str) -> str:
    """The time stamp in the name of a time-stamped report (`base`: as _stamped_reports gives it)."""
    stamp: str = _STAMPED_RE.match(base + ".json").group("stamp")  # type: ignore[union-attr]
    return stamp


def _stamped_reports(report_dir: str, kind: str) -> dict[str, list[str]]:
    """{run: [base, ...]} of the time-stamped reports of `kind` in `report_dir`."""
    runs: dict[str, list[str]] = {}
    if not os.path.isdir(report_dir):
        return runs
    for name in os.listdir(report_dir):
        match = _STAMPED_RE.match(name)
        if match and match.group("kind") == kind:
            base = name.rsplit(".", 1)[0]
            bases = runs.setdefault(match.group("run") or "", [])
            if base not in bases:
                bases.append(base)
    return runs


def _remove_report(report_dir: str, base: str) -> None:
    for extension in (".json", ".md", ".html"):
        try:
            os.unlink(os.path.join(report_dir, base + extension))
        except FileNotFoundError:  # a concurrent run pruned it first
            pass


def prune_reports(report_dir: str, kind: str, keep: int) -> list[str]:
    """Remove the oldest time-stamped reports of `kind` beyond the newest `keep`; return the removed names.

    `kind`: a report stem (report_stem): a role's real runs and its dry runs are kept apart.

    Only files named as write_report names them are considered (never the
    -latest ones, never anything else in the directory). A report counts once
    for its .json, .md and .html. A sweep's report goes with the sweep's directory of
    per-host results, and neither goes while a run of that sweep holds its lock."""
    if not keep:
        return []
    reports: dict[str, str] = {}
    for run, bases in _stamped_reports(report_dir, kind).items():
        for base in bases:
            reports[base] = run
    oldest_first = sorted(reports, key=lambda base: (_stamp_of(base), base))
    removed: list[str] = []

    for base in oldest_first[: max(0, len(oldest_first) - keep)]:
        run = reports[base]
        if run.startswith(SWEEP_TAG_PREFIXES):
            directory = sweep_directory(report_dir, _kind_of(kind), run)
            with locked_directory(directory, blocking=False) as held:
                if not held and os.path.isdir(directory):
                    continue  # a run of that sweep is writing it now
                if held:
                    shutil.rmtree(directory, ignore_errors=True)
                _remove_report(report_dir, base)
        else:
            _remove_report(report_dir, base)
        removed.append(base)
    return removed
