# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The enforce role's write-ahead trail: `ending` lines before any signal, and the
sessions whose fate is not known yet, until a later contact with the server settles them.

Private to the collection; no Ansible import.

- ``TrailJournal`` is the runner's hook (module_utils/_runner.py ``Journal``): before
  each batch of signals it appends one ``outcome: ending`` line per victim to the trail
  (one write, fsync) and adds the victims to the host's pending file; when either
  cannot be written it raises JournalError naming the path and the error, and nothing
  of that batch is signalled.
- The pending file, ``<audit_log>.pending/<host>.json`` (mode 0600, replaced
  atomically, fsync'ed before the signals): the victims journaled ``ending`` whose
  outcome no line gave yet, and those a run left ``unknown``. The trail itself stays
  append-only. The next run on the host passes their keys to the module
  (``settle_keys``); its listing settles each with a line of its own (``terminated``
  with detail ``settled``, or ``not_ended`` / ``still_present``) naming the run that
  signalled it (``settles``); settled keys leave the file, and the file goes once empty.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import uuid

from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import Journal, JournalError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc_z, utc_now
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._files import write_private
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._trail import append_lines, session_line

SETTLED_DETAIL = "settled: gone at the next contact with the server"
STILL_PRESENT_DETAIL = "settled: still present at the next contact with the server (same key)"


def new_run_id():
    return uuid.uuid4().hex


def pending_path(audit_log, host):
    """Where the host's pending victims are kept, beside the trail."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(host)).lstrip(".") or "_"
    return os.path.join(f"{audit_log}.pending", f"{safe}.json")


def load_pending(audit_log, host):
    """The host's pending entries ([] when none); a file that cannot be read raises OSError / ValueError."""
    try:
        with open(pending_path(audit_log, host), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return []
    return [entry for entry in data.get("pending") or [] if isinstance(entry, dict) and entry.get("key")]


def save_pending(audit_log, host, entries):
    """Replace the host's pending file (atomically, on disk); remove it when `entries` is empty."""
    path = pending_path(audit_log, host)
    if not entries:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    write_private(path, json.dumps({"host": host, "pending": entries}, default=str, indent=1) + "\n", sync=True)


class TrailJournal(Journal):
    """The runner's hook on the controller (see the module doc). `context` as for trail
    lines (login_host, job_id, sweep_id, run_id); `journaled` collects every victim's
    entry it wrote ``ending`` for, by key."""

    def __init__(self, audit_log, host, engine, context, policy_name, pending=None):
        self.audit_log = audit_log
        self.host = host
        self.engine = engine
        self.context = context
        self.policy_name = policy_name
        self.pending = list(pending or [])
        self.journaled = {}

    def _line(self, entry, outcome, now=None):
        return session_line(
            now or iso_utc_z(utc_now()), self.host, self.engine, self.context, self.policy_name, entry, outcome
        )

    def ending(self, entries):
        now = iso_utc_z(utc_now())
        lines = [self._line(entry, "ending", now) for entry in entries]
        try:
            append_lines(self.audit_log, lines, sync=True)
        except OSError as exc:
            raise JournalError(
                f"the audit trail {self.audit_log} could not be written: {exc}; nothing of this batch "
                f"({len(entries)} sessions) was signalled; fix dbhygiene_audit_log (a writable path on the control "
                "node)"
            )
        added = [dict(line, run_id=self.context.get("run_id")) for line in lines]
        try:
            save_pending(self.audit_log, self.host, self.pending + added)
        except OSError as exc:
            raise JournalError(
                f"the pending file {pending_path(self.audit_log, self.host)} of the audit trail could not be written: "
                f"{exc}; nothing of this batch ({len(entries)} sessions) was signalled"
            )
        self.pending += added
        for entry in entries:
            self.journaled[entry.get("key")] = entry

    def settle_lines(self, settled):
        """Lines settling the earlier runs' pending victims the module looked up (its `settled`),
        each naming the run that signalled it (`settles`); those leave `pending`."""
        found = dict((item.get("key"), item) for item in settled or [])
        now = iso_utc_z(utc_now())
        lines = []
        keep = []
        for earlier in self.pending:
            item = found.get(earlier.get("key")) if earlier.get("run_id") != self.context.get("run_id") else None
            if item is None:
                keep.append(earlier)
                continue
            if item.get("outcome") == "terminated":
                entry, outcome = dict(earlier, detail=SETTLED_DETAIL), "terminated"
            else:
                entry, outcome = dict(earlier, reason="still_present", detail=STILL_PRESENT_DETAIL), "not_ended"
            line = session_line(now, self.host, self.engine, self.context, earlier.get("policy"), entry, outcome)
            line.update(detail=entry["detail"], settles=earlier.get("run_id"))
            lines.append(line)
        self.pending = keep
        return lines

    def unaccounted(self, result):
        """The victims this run journaled `ending` that the result gives no outcome for (the
        module died, or its result was lost): entries for `unknown` lines."""
        known = set()
        for bucket in ("terminated", "cancelled", "not_ended", "unknown"):
            known.update(entry.get("key") for entry in result.get(bucket) or [])
        reason = str(result.get("msg") or "the run ended without a result for it")
        return [
            dict(entry, detail=f"no outcome came back: {reason}")
            for key, entry in self.journaled.items()
            if key not in known
        ]

    def finish(self, result, unaccounted):
        """Drop from `pending` the victims of this run whose outcome is known, and save it."""
        open_keys = set(entry.get("key") for entry in (result.get("unknown") or []) + unaccounted)
        self.pending = [
            entry
            for entry in self.pending
            if entry.get("run_id") != self.context.get("run_id") or entry.get("key") in open_keys
        ]
        save_pending(self.audit_log, self.host, self.pending)
