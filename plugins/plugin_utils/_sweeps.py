# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sliced sweeps: one fleet report of a sweep split over concurrent runs.

Private to the collection; no Ansible import. A sweep may be run as several
``ansible-playbook`` runs at once over parts of the inventory (AWX job slicing,
``--limit`` partitions under cron). Each run of a sweep writes its hosts'
results into the sweep's directory under the report directory
(``<kind>-<tag>.d/hosts/<host>.<run>.json``, one private file per host and run,
replaced atomically; ``runs/<run>.json`` for the run itself), then, under an
exclusive ``flock`` of that directory, builds the fleet report from every host's
files and writes it over the sweep's previous one: whichever run finishes last
leaves the report of the whole sweep. A host reported by two runs of a sweep
shows its latest result, and the sessions every run ended on it (each once): a
slice run again keeps the first run's kills in the sweep's totals. A run that is
no sweep's (none of the variables below) keeps its own report, as
``_outputs.write_report`` names it.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import hashlib
import json
import os
import re
from typing import Any, Container, Iterable, Sequence

from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc_z, utc_now
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._files import locked_directory, write_private
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._outputs import (
    DEFAULT_REPORT_KEEP,
    sweep_directory,
    write_report,
)
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_kinds import build_report, render_markdown
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_markdown import table
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._trail import job_id

# The extra variables AWX gives a job (awx/main/models/unified_jobs.py,
# UnifiedJob.awx_meta_vars(); each under the prefixes "awx" and "tower",
# JOB_VARIABLE_PREFIXES in awx/main/constants.py): awx_job_id, and for a job a
# workflow launched, awx_workflow_job_id (with _name, _launch_type). A sliced job
# template launches a workflow job (JobTemplate.create_unified_job in
# awx/main/models/jobs.py: is_sliced_job, one node per slice), so the slices of
# one launch share awx_workflow_job_id. AWX gives the playbook neither the slice
# number nor the slice count (job_slice_number / job_slice_count only cut the
# inventory, Inventory.get_script_data / get_sliced_hosts in
# awx/main/models/inventory.py), so a slice cannot be told from another job of a
# workflow: every job of a workflow is taken as a run of the workflow's sweep.
# Verified against ansible/awx e21dd0a0933f (2024-10-23).
WORKFLOW_JOB_VARIABLES = ("awx_workflow_job_id", "tower_workflow_job_id")
SWEEP_ID_VARIABLE = "dbhygiene_sweep_id"
SWEEP_SLICES_VARIABLE = "dbhygiene_sweep_slices"

# What build_report reads of a host's registered result: the one part of it kept
# in the sweep's files (never the sessions' raw statements, which may hold secrets).
REPORTABLE_KEYS = ("dbhygiene", "failed", "unreachable", "msg", "skipped", "skip_reason", "busy")

_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.]")
_NAME_CHARS = 64


class SweepError(ValueError):
    """A sweep variable with a value that cannot be used."""


def _given(value: object) -> bool:
    return value is not None and str(value).strip() != ""


def sweep_of(task_vars: dict[str, Any]) -> tuple[dict[str, str] | None, list[str]]:
    """(sweep, warnings): the sweep this run is part of, {"id", "source"}, or None when the run is its own.

    AWX's workflow job id when the job was launched by a workflow (the slices of
    a sliced job template), else none when it is an AWX job of its own (the job
    is the sweep: its report is the run's), else dbhygiene_sweep_id, else none."""
    warnings = []
    own = task_vars.get(SWEEP_ID_VARIABLE)
    if _given(own) and not isinstance(own, (str, int)):
        raise SweepError(f"{SWEEP_ID_VARIABLE}: expected a string, got {type(own).__name__} {own!r}")
    sweep = None
    for name in WORKFLOW_JOB_VARIABLES:
        if _given(task_vars.get(name)):
            sweep = {"id": f"awx-workflow-{task_vars[name]}", "source": name}
            break
    if sweep is None and job_id(task_vars) is None and _given(own):
        sweep = {"id": str(own).strip(), "source": SWEEP_ID_VARIABLE}
    if _given(own) and (sweep is None or sweep["source"] != SWEEP_ID_VARIABLE):
        which = f"AWX workflow job {sweep['id'][len('awx-workflow-') :]}" if sweep else f"AWX job {job_id(task_vars)}"
        warnings.append(
            f"{SWEEP_ID_VARIABLE} {str(own)!r} is not used: this run is part of the sweep of {which}, "
            "which AWX identifies"
        )
    return sweep, warnings


def sweep_slices(task_vars: dict[str, Any]) -> int | None:
    """dbhygiene_sweep_slices as an int >= 1, or None when not set."""
    value = task_vars.get(SWEEP_SLICES_VARIABLE)
    if not _given(value):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise SweepError(
            f"{SWEEP_SLICES_VARIABLE}: expected a whole number >= 1 (how many runs make the sweep), got {value!r}"
        )
    return number


def _safe(text: object) -> str:
    """A file name part for `text`: [A-Za-z0-9_.] only; a digest of the text when anything was changed."""
    text = str(text)
    safe = _UNSAFE_RE.sub("_", text)
    if safe != text or len(safe) > _NAME_CHARS or safe.strip(".") == "":
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
        safe = f"{safe[:_NAME_CHARS]}.{digest}"
    return safe


def sweep_tag(sweep: dict[str, str], check_mode: bool) -> str:
    """The run tag of a sweep's report: a dry run and a real run are never one sweep."""
    return f"{'sweep_check' if check_mode else 'sweep'}.{_safe(sweep['id'])}"


def reportable(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a registered result the fleet report uses (None stays None: the host got no result)."""
    if result is None:
        return None
    return {key: result[key] for key in REPORTABLE_KEYS if key in result}


def _read_all(directory: str) -> list[Any]:
    items: list[Any] = []
    if not os.path.isdir(directory):
        return items
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                items.append(json.load(handle))
        except (OSError, ValueError):  # pragma: no cover - files are only ever replaced whole
            continue
    return items


# The lists of sessions a run ended on a host: kept from every run of the sweep, not only the latest.
ENDED_LISTS = ("terminated", "cancelled")


def _with_every_run_ended(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest of a host's files (`items`, oldest first), its result carrying the sessions that
    every run ended there, each once (by key; a session has one fate, the first run's)."""
    latest = items[-1]
    ended: dict[str, list[Any]] = {name: [] for name in ENDED_LISTS}
    seen = set()
    for item in items:
        data = (item.get("result") or {}).get("dbhygiene")
        data = data if isinstance(data, dict) else {}
        for name in ENDED_LISTS:
            for entry in data.get(name) or []:
                key = (entry.get("key"), entry.get("id")) if isinstance(entry, dict) else entry
                if key not in seen:
                    seen.add(key)
                    ended[name].append(entry)
    if not any(ended.values()) or len(items) == 1:
        return latest
    result = dict(latest.get("result") or {"failed": True, "msg": "no result in the latest run of this host"})
    data = dict(result.get("dbhygiene") or {})
    data.update(ended)
    result["dbhygiene"] = data
    return dict(latest, result=result)


def merge_hosts(
    host_files: Iterable[dict[str, Any]],
) -> tuple[list[str], list[str], dict[str, dict[str, Any] | None], set[str]]:
    """(hosts, active, results, policies) of the sweep from its per-host files, hosts in sorted order.

    Several files may name a host (one per run that reported it): the later `time` wins, and the
    sessions ended by every run are kept in its result (ENDED_LISTS)."""
    by_host: dict[str, list[dict[str, Any]]] = {}
    for item in host_files:
        host = item.get("host")
        if host is not None:
            by_host.setdefault(host, []).append(item)
    latest = {}
    for host, items in by_host.items():
        items.sort(key=lambda item: (str(item.get("time")), str(item.get("run"))))
        latest[host] = _with_every_run_ended(items)
    hosts = sorted(latest)
    active = [host for host in hosts if latest[host].get("active")]
    results = {host: latest[host].get("result") for host in hosts}
    policies = set()
    for result in results.values():
        data = (result or {}).get("dbhygiene") or {}
        if data.get("policy"):
            policies.add(str(data["policy"]))
    return hosts, active, results, policies


def sweep_summary(
    sweep: dict[str, str], runs: Iterable[dict[str, Any]], slices: int | None, hosts: Sequence[str]
) -> dict[str, Any]:
    """The report's `sweep` part: the runs it covers; how many are still to come when the slice count is known;
    the hosts still to report when the runs knew the sweep's hosts (--limit partitions of one inventory)."""
    runs = sorted(runs, key=lambda run: (str(run.get("time")), str(run.get("run"))))
    missing = None if slices is None else max(0, slices - len(runs))
    # None: no run knew the hosts of the whole sweep (an AWX slice's inventory is its own slice).
    expected = None
    for run in runs:
        if run.get("expected_hosts") is not None:
            expected = (expected or set()) | set(run["expected_hosts"])
    return {
        "id": sweep["id"],
        "source": sweep["source"],
        "slices": slices,
        "runs": [
            {"run": run.get("run"), "time": run.get("time"), "job_id": run.get("job_id"), "hosts": run.get("hosts")}
            for run in runs
        ],
        "runs_missing": missing,
        "complete": None if slices is None else missing == 0,
        "hosts": len(hosts),
        "hosts_missing": None if expected is None else sorted(expected - set(hosts)),
    }


def sweep_markdown(summary: dict[str, Any]) -> list[str]:
    """The Markdown lines of a report's `sweep` part."""
    count = len(summary["runs"])
    line = f"Sweep `{summary['id']}` (from {summary['source']}): {count} run{'s' if count != 1 else ''}"
    if summary["slices"] is not None:
        state = "complete" if summary["complete"] else f"{summary['runs_missing']} still to report"
        line += f" of {summary['slices']} ({state})"
    line += f", {summary['hosts']} host{'s' if summary['hosts'] != 1 else ''}."
    if summary["hosts_missing"]:
        line += f" Still to report: {', '.join(summary['hosts_missing'])}."
    elif summary["hosts_missing"] is None:
        line += " The hosts of the other runs are not known here (each run's inventory holds its own part)."
    rows = ((run["run"], run["time"], run["job_id"], ", ".join(run.get("hosts") or [])) for run in summary["runs"])
    lines: list[str] = ["## Sweep", "", line, ""] + table(("run", "time", "AWX job", "hosts"), rows) + [""]
    return lines


def write_sweep_report(
    kind: str,
    report_dir: str,
    sweep: dict[str, str],
    run: str,
    check_mode: bool,
    hosts_all: Sequence[str],
    hosts_active: Container[str],
    results: dict[str, dict[str, Any] | None],
    context: dict[str, Any],
    slices: int | None = None,
    keep: int = DEFAULT_REPORT_KEEP,
    now: str | None = None,
    html_template: str | None = None,
) -> tuple[dict[str, Any], dict[str, str], str]:
    """Record this run's hosts in the sweep's directory, rewrite the sweep's report; return (report, paths, markdown).

    report_dir: absolute. results: {host: registered result or None}. context:
    audit_log, job_id (this run's AWX job), expected_hosts (the hosts of the
    whole sweep as this run knows them, or None). slices: how many runs make the
    sweep (None: not known). now: the instant of this run's files (ISO text). html_template:
    the page's template (None: the collection's)."""
    now = now or iso_utc_z(utc_now())
    tag = sweep_tag(sweep, check_mode)
    directory = sweep_directory(report_dir, kind, tag)
    with locked_directory(directory):
        for host in hosts_all:
            item = {
                "host": host,
                "run": run,
                "time": now,
                "active": host in hosts_active,
                "result": reportable(results.get(host)),
            }
            name = f"{_safe(host)}.{_safe(run)}.json"
            write_private(os.path.join(directory, "hosts", name), json.dumps(item, default=str))
        run_item = {
            "run": run,
            "time": now,
            "job_id": context.get("job_id"),
            "hosts": list(hosts_all),
            "expected_hosts": context.get("expected_hosts"),
        }
        write_private(os.path.join(directory, "runs", _safe(run) + ".json"), json.dumps(run_item, default=str))

        hosts, active, merged, policies = merge_hosts(_read_all(os.path.join(directory, "hosts")))
        runs = _read_all(os.path.join(directory, "runs"))
        job_ids = {run_item.get("job_id") for run_item in runs}
        merged_context = {
            "policy": ", ".join(sorted(policies)) or None,
            "job_id": job_ids.pop() if len(job_ids) == 1 else None,
            "audit_log": context.get("audit_log"),
            "run": tag,
        }
        report = build_report(kind, hosts, active, merged, check_mode, merged_context)
        report["sweep"] = sweep_summary(sweep, runs, slices, hosts)
        markdown = render_markdown(report).rstrip("\n") + "\n\n" + "\n".join(sweep_markdown(report["sweep"]))
        paths, markdown = write_report(report, report_dir, keep=keep, markdown=markdown, html_template=html_template)
    return report, paths, markdown
