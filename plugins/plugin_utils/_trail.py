# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit trail: JSON lines, one per session ended (or, in check mode, that would be ended).

Private to the collection; no Ansible import. One line also for each targeted
session that was not ended (``outcome: not_ended`` with the reason). The file
is created with mode 0600 and appended to under an exclusive ``flock`` with one
``write`` per host, so many hosts ending at once never interleave their lines.
It is opened by its path for every append, so a rotation that renames it
(logrotate without ``copytruncate``) loses nothing: the next append creates a
new file under the same name. Statements are recorded with their credential
literals masked (``redact_query``).
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import errno
import fcntl
import json
import os
from typing import Any, Sequence

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import SESSION_FIELDS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._ending import GROUP_FIELDS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._redact import redact_statement
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc_z, utc_now
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._files import open_locked, private_dir

TRAIL_QUERY_CHARS = 200


def redact_query(query: object, limit: int = TRAIL_QUERY_CHARS) -> str | None:
    """A statement as recorded: credential literals masked (``_redact``, under every
    engine's quoting rules), then truncated."""
    if query is None:
        return None
    text = redact_statement(query)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def session_fields(session: dict[str, Any], query_chars: int = TRAIL_QUERY_CHARS) -> dict[str, Any]:
    fields = {name: session.get(name) for name in SESSION_FIELDS if name in session}
    if "query" in fields:
        fields["query"] = redact_query(fields["query"], query_chars)
    return fields


def job_id(task_vars: dict[str, Any]) -> object:
    """The AWX / Tower job id when the run is an AWX job, else None."""
    for name in ("awx_job_id", "tower_job_id"):
        value = task_vars.get(name)
        if value not in (None, ""):
            return value
    return None


def outcome_for(bucket: str, check_mode: bool) -> str:
    """The audit outcome of an entry in `terminated` / `cancelled`."""
    if bucket == "terminated":
        return "would_terminate" if check_mode else "terminated"
    return "would_cancel" if check_mode else "cancelled"


def trail_line(
    now: str,
    host: str,
    engine: str | None,
    context: dict[str, Any],
    policy: str | None,
    rule: str | None,
    action: str | None,
    check_mode: bool,
    outcome: str,
) -> dict[str, Any]:
    """The fields every audit line starts with, in this order (each role adds its own)."""
    return {
        "time": now,
        "host": host,
        "login_host": context.get("login_host"),
        "engine": engine,
        "policy": policy,
        "rule": rule,
        "action": action,
        "check_mode": bool(check_mode),
        "outcome": outcome,
    }


def session_line(
    now: str,
    host: str,
    engine: str | None,
    context: dict[str, Any],
    policy_name: str | None,
    entry: dict[str, Any],
    outcome: str,
    check_mode: bool = False,
) -> dict[str, Any]:
    """The audit line of one result entry (a session with rule, action, maybe reason and detail)."""
    line = trail_line(
        now, host, engine, context, policy_name, entry.get("rule"), entry.get("action"), check_mode, outcome
    )
    if entry.get("reason") is not None:
        line["reason"] = entry.get("reason")
        line["detail"] = entry.get("detail")
    elif outcome == "unknown":
        line["detail"] = entry.get("detail")
    line.update(session_fields(entry))
    # A budget's victim: its group, the group's size, how many of it the budget keeps, its rank.
    line.update((name, entry[name]) for name in GROUP_FIELDS if name in entry)
    line["job_id"] = context.get("job_id")
    if context.get("sweep_id"):  # a run of a sliced sweep (plugin_utils/_sweeps.py)
        line["sweep_id"] = context["sweep_id"]
    if context.get("run_id"):  # this run of the role on this host (the write-ahead trail, plugin_utils/_journal.py)
        line["run_id"] = context["run_id"]
    return line


def policy_name_of(result: dict[str, Any]) -> str | None:
    policy = result.get("policy")
    return policy.get("name") if isinstance(policy, dict) else policy


def trail_records(
    host: str, engine: str | None, result: dict[str, Any], check_mode: bool, context: dict[str, Any]
) -> list[dict[str, Any]]:
    """Audit lines for one host's *_sessions result (a dict).

    Ended (or would-be-ended) sessions, plus targeted sessions that were not
    ended for another reason than `protected` (state_changed, gone, failed,
    still_present): those are decisions an auditor wants to see too. A failed
    result that still carries `terminated` / `cancelled` (a later step of the
    host failed after signals went out) gets its lines all the same, and its
    `unknown` entries (signalled, fate not learned) a line each.
    """
    policy_name = policy_name_of(result)
    now = iso_utc_z(utc_now())
    records = []

    def record(entry: dict[str, Any], outcome: str) -> None:
        records.append(session_line(now, host, engine, context, policy_name, entry, outcome, check_mode))

    for bucket in ("cancelled", "terminated"):
        for entry in result.get(bucket) or []:
            record(entry, outcome_for(bucket, check_mode))
    for entry in result.get("not_ended") or []:
        if entry.get("reason") != "protected":
            record(entry, "not_ended")
    for entry in result.get("unknown") or []:
        record(entry, "unknown")
    return records


def append_lines(path: str, records: Sequence[dict[str, Any]], sync: bool = False) -> int:
    """Append JSON lines to `path` (mode 0600), atomically with respect to other writers.

    One write under the lock; a last line left partial by an earlier failed write is cut
    off first; a write that fails or falls short (ENOSPC) is truncated back at once, so
    the file never keeps a partial line. sync: on disk (fsync) before returning. Raises
    OSError (naming `path`) when the lines could not all be written."""
    if not records:
        return 0
    private_dir(os.path.dirname(path))
    data = "".join(json.dumps(record, default=str) + "\n" for record in records).encode("utf-8")
    fd = _open_locked(path)
    try:
        size = repair_last_line(fd)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(
                    errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a short write: {written} of {len(data)} bytes)"
                )
            if sync:
                os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass  # the repair before the next append cuts what is left
            raise OSError(exc.errno, exc.strerror or str(exc), path)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return len(records)


def repair_last_line(fd: int, chunk: int = 4096) -> int:
    """Cut a partial last line (no final newline) off the open file `fd`; its size after."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - chunk)
        block = os.pread(fd, end - start, start)
        if end == size and block.endswith(b"\n"):
            return size
        newline = block.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end != size:
        os.ftruncate(fd, end)
    return end


def _open_locked(path: str) -> int:
    """The trail opened by its path for appending, under an exclusive lock.

    Opened anew for every append, so a file that logrotate renamed is never
    written to again; should the rename fall between our open and our lock, the
    file is opened again under the path (the lines belong in the new file)."""

    def opener() -> int:
        # Read too: a partial last line is looked for before appending (repair_last_line).
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            stat = os.fstat(fd)
            if stat.st_mode & 0o077 and stat.st_uid == os.geteuid():
                os.fchmod(fd, 0o600)
        except BaseException:
            os.close(fd)
            raise
        return fd

    return open_locked(path, opener)


def timeouts_trail_records(
    host: str, engine: str | None, result: dict[str, Any], check_mode: bool, context: dict[str, Any], now: str
) -> list[dict[str, Any]]:
    """Audit lines of one host's *_timeouts result: one per setting changed (check mode: that
    would change), with the value before and after; after a change that failed once others
    had run, one per statement that ran."""
    records = []
    set_outcome = "would_set" if check_mode else "set"
    if result.get("failed"):
        for statement in result.get("queries") or []:
            line = trail_line(now, host, engine, context, "timeouts", None, "set_timeout", check_mode, "set")
            line.update(statement=statement, job_id=context.get("job_id"))
            records.append(line)
        return records
    for item in result.get("settings") or []:
        if not item.get("changed"):
            continue
        line = trail_line(
            now, host, engine, context, "timeouts", item.get("given_as"), "set_timeout", check_mode, set_outcome
        )
        line.update(
            level=item.get("level"),
            target=item.get("target"),
            variable=item.get("variable"),
            before=item.get("current_text"),
            after=item.get("wanted_text"),
            job_id=context.get("job_id"),
        )
        records.append(line)
    if result.get("persist_file_changed"):
        line = trail_line(now, host, engine, context, "timeouts", "persist_file", "write_file", check_mode, set_outcome)
        line.update(
            level="server",
            target=result.get("persist_file"),
            variable=None,
            before=None,
            after=None,
            job_id=context.get("job_id"),
        )
        records.append(line)
    return records
