# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The metrics file: the fleet report's figures as OpenMetrics text for node_exporter's
textfile collector (``dbhygiene_metrics_file``, default ``<report_dir>/dbhygiene.prom``).

Private to the collection; no Ansible import. One file holds the last figures of every
role: each run replaces, under an exclusive lock, the samples of the families its role
measures for the hosts it covered (the others' are kept, read back from the file), and
its own ``dbhygiene_last_run_timestamp_seconds``; the file is replaced atomically (a
temporary file renamed over it), so a reader never sees half of one.

Which run sets a family, per host:

- ``sessions_seen``: the last audit or enforce run (a dry run too);
- ``sessions_by_state``, ``oldest_transaction_seconds``, ``longest_lock_wait_seconds``: the
  last audit (0: no transaction open, nobody waiting);
- ``sessions_ended``: the last real enforce run; ``sessions_would_end``: the last audit with a
  policy, or enforce dry run;
- ``host_failed``: the last run of any role (1 with its reason code; 0 with reason "none").

A host a run could not read (failed) loses the figures that run would set: not known.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import datetime
import fcntl
import os
import re
from typing import Any, Dict, Iterable, Tuple

from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import parse_instant
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._files import private_dir, write_private

DEFAULT_NAME = "dbhygiene.prom"
# node_exporter reads the file as its own user: readable by all (the reports stay 0600).
MODE = 0o644

# One sample: (family name, {label: value}, number).
Sample = Tuple[str, Dict[str, str], float]

_REAL, _DRY = "real", "dry"
_ANY = (_REAL, _DRY)
# (name, labels, help, {kind: modes whose runs set it})
FAMILIES: tuple[tuple[str, tuple[str, ...], str, dict[str, tuple[str, ...]]], ...] = (
    (
        "dbhygiene_sessions_seen",
        ("host", "engine"),
        "Client sessions seen on the host by the last audit or enforce run.",
        {"audit": _ANY, "enforce": _ANY},
    ),
    (
        "dbhygiene_sessions_by_state",
        ("host", "engine", "state"),
        "Client sessions per state on the host at the last audit.",
        {"audit": _ANY},
    ),
    (
        "dbhygiene_sessions_ended",
        ("host", "engine", "rule", "action"),
        "Sessions the last real enforce run ended on the host, per rule and action.",
        {"enforce": (_REAL,)},
    ),
    (
        "dbhygiene_sessions_would_end",
        ("host", "engine", "rule"),
        "Sessions the policy would end on the host, per rule, at the last audit with a policy or enforce dry run.",
        {"audit": _ANY, "enforce": (_DRY,)},
    ),
    (
        "dbhygiene_oldest_transaction_seconds",
        ("host",),
        "Age of the oldest open transaction on the host at the last audit (0: none open).",
        {"audit": _ANY},
    ),
    (
        "dbhygiene_longest_lock_wait_seconds",
        ("host",),
        "Longest time a session on the host had waited for a lock at the last audit (0: none waiting).",
        {"audit": _ANY},
    ),
    (
        "dbhygiene_host_failed",
        ("host", "reason"),
        "1 when the last run on the host failed there (reason: its reason code), 0 (reason none) when it was ok.",
        {"audit": _ANY, "enforce": _ANY, "drain": _ANY},
    ),
    (
        "dbhygiene_last_run_timestamp_seconds",
        ("role", "check_mode"),
        "Unix time of the last run of the role (check_mode true: a dry run).",
        {"audit": _ANY, "enforce": _ANY, "drain": _ANY},
    ),
)
_BY_NAME = {family[0]: family for family in FAMILIES}


def default_path(report_dir: str) -> str:
    return os.path.join(report_dir, DEFAULT_NAME)


def _count_by(items: Iterable[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = {}
    for item in items:
        key = tuple(str(item.get(name) or "") for name in keys)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _ended(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """(rule, action) of each session a host's entry says was ended (or would be: a dry run)."""
    items = []
    for bucket, action in (("terminated", "terminate"), ("cancelled", "cancel")):
        for item in entry.get(bucket) or []:
            items.append({"rule": item.get("rule") or "(no rule)", "action": item.get("action") or action})
    return items


def report_samples(report: dict[str, Any]) -> list[Sample]:
    """The samples of `report`: [(name, {label: value}, number)] (families this run sets only)."""
    kind = report.get("kind")
    dry = bool(report.get("check_mode"))
    samples: list[Sample] = []
    for host, entry in (report.get("hosts") or {}).items():
        host = str(host)
        engine = str(entry.get("engine") or "unknown")
        ok = entry.get("status") == "ok"
        if not ok:
            samples.append(("dbhygiene_host_failed", {"host": host, "reason": str(entry.get("reason_code"))}, 1))
            continue
        samples.append(("dbhygiene_host_failed", {"host": host, "reason": "none"}, 0))
        if kind == "drain":
            continue
        seen = entry.get("seen") if entry.get("seen") is not None else entry.get("sessions")
        samples.append(("dbhygiene_sessions_seen", {"host": host, "engine": engine}, int(seen or 0)))
        if kind == "audit":
            for state, count in (entry.get("by_state") or {}).items():
                samples.append(
                    ("dbhygiene_sessions_by_state", {"host": host, "engine": engine, "state": str(state)}, count)
                )
            for field in ("oldest_transaction", "longest_lock_wait"):
                seconds = (entry.get(field) or {}).get("seconds") or 0
                samples.append((f"dbhygiene_{field}_seconds", {"host": host}, float(seconds)))
            would = [{"rule": item.get("rule") or "(no rule)"} for item in entry.get("would_end") or []]
        else:
            would = _ended(entry) if dry else []
            for (rule, action), count in sorted(_count_by([] if dry else _ended(entry), ("rule", "action")).items()):
                samples.append(
                    (
                        "dbhygiene_sessions_ended",
                        {"host": host, "engine": engine, "rule": rule, "action": action},
                        count,
                    )
                )
        for (rule,), count in sorted(_count_by(would, ("rule",)).items()):
            samples.append(("dbhygiene_sessions_would_end", {"host": host, "engine": engine, "rule": rule}, count))
    labels = {"role": str(kind), "check_mode": "true" if dry else "false"}
    samples.append(("dbhygiene_last_run_timestamp_seconds", labels, epoch(report["time"])))
    return samples


def epoch(text: object) -> float:
    """Unix time (float) of a report's time (ISO 8601, UTC: ...Z)."""
    instant = parse_instant(str(text).replace("Z", "+00:00"))
    if instant is None:
        raise ValueError(f"not a report time: {text!r}")
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=datetime.timezone.utc)
    return instant.timestamp()


def _sets(name: str, report: dict[str, Any]) -> bool:
    """True when a run like `report` sets the family `name` (for its hosts)."""
    modes = _BY_NAME[name][3].get(str(report.get("kind")), ())
    return (_DRY if report.get("check_mode") else _REAL) in modes


def merge(existing: Iterable[Sample], report: dict[str, Any]) -> list[Sample]:
    """The samples of the file after `report`'s run: `existing` (read back from the file) less what
    this run replaces (the families it sets, for its hosts; its own last-run sample), plus its own."""
    hosts = set(str(host) for host in report.get("hosts") or {})
    mine = ("true" if report.get("check_mode") else "false", str(report.get("kind")))
    kept = []
    for name, labels, value in existing:
        if name not in _BY_NAME:
            continue
        if name == "dbhygiene_last_run_timestamp_seconds":
            if (labels.get("check_mode"), labels.get("role")) == mine:
                continue
        elif _sets(name, report) and labels.get("host") in hosts:
            continue
        kept.append((name, labels, value))
    return kept + report_samples(report)


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def render(samples: Iterable[Sample]) -> str:
    """The OpenMetrics text of `samples`: every family with # HELP and # TYPE (gauge), then # EOF."""
    lines = []
    for name, label_names, help_text, _sources in FAMILIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        rows = []
        for sample_name, labels, value in samples:
            if sample_name == name:
                shown = ",".join(f'{key}="{_escape(labels.get(key, ""))}"' for key in label_names)
                rows.append(f"{name}{{{shown}}} {_number(value)}")
        lines += sorted(set(rows))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


_SAMPLE_RE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL_RE = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)",?')


def parse(text: str) -> list[Sample]:
    """The samples of a file `render` wrote: [(name, {label: value}, number)]. A line it cannot
    read (a file cut by a crash of an older version, edited by hand) is skipped."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE_RE.match(line)
        if not match or line.startswith("#"):
            continue
        labels = {}
        for label in _LABEL_RE.finditer(match.group("labels") or ""):
            labels[label.group("key")] = re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], label.group("value"))
        text_value = match.group("value")
        try:
            value = int(text_value) if re.match(r"^-?[0-9]+$", text_value) else float(text_value)
        except ValueError:
            continue
        samples.append((match.group("name"), labels, value))
    return samples


def write_metrics(report: dict[str, Any], path: str) -> list[Sample]:
    """Merge `report`'s figures into the metrics file at `path` (under an exclusive lock on
    ``.<name>.lock`` beside it: concurrent runs merge one after the other) and replace it
    atomically. Returns the samples written."""
    directory = os.path.dirname(path) or "."
    private_dir(directory)
    lock_path = os.path.join(directory, f".{os.path.basename(path)}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with open(path, encoding="utf-8") as handle:
                existing = parse(handle.read())
        except FileNotFoundError:
            existing = []
        samples = merge(existing, report)
        write_private(path, render(samples), sync=True, mode=MODE)
        return samples
    finally:
        os.close(fd)
