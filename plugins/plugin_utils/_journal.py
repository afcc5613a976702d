# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The write-ahead trail of the enforce and drain roles: `ending` lines before any signal,
`changing` lines before any change of rights, and what an earlier run left without an
outcome, until a later contact with the server settles it.

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
- The drain role's ``DrainJournal`` journals its changes of rights the same way (``changing``,
  pending in ``<audit_log>.pending/drain/<host>.json``, settled from the server's drain record)
  and the sessions it ends through ``DrainSessions``: the sweep's ``ending`` lines and the
  sweep's pending file, so that one file holds every session of a host whose fate is unknown
  and the next run there, enforce or drain, settles them.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import fcntl
import json
import os
import uuid
from typing import Any, Dict, Hashable, Iterable

from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_rights import STATUS_UNKNOWN, change_key
from ansible_collections.dbhygiene.sessions.plugins.module_utils._ending import Journal
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import JournalError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc_z, utc_now
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _change_window
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._files import write_private
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._trail import append_lines, session_line

# A trail line, a pending entry, an entry or a change of a module's result: by field name.
Entry = Dict[str, Any]

SETTLED_DETAIL = "settled: gone at the next contact with the server"
STILL_PRESENT_DETAIL = "settled: still present at the next contact with the server (same key)"


def new_run_id() -> str:
    return uuid.uuid4().hex


def pending_path(audit_log: str, host: object, kind: str | None = None) -> str:
    """Where the host's pending victims are kept, beside the trail; `kind` "drain": its
    pending changes of rights (in a folder of their own: no host name can reach it)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(host)).lstrip(".") or "_"
    if kind:
        return os.path.join(f"{audit_log}.pending", kind, f"{safe}.json")
    return os.path.join(f"{audit_log}.pending", f"{safe}.json")


def load_pending(audit_log: str, host: object, kind: str | None = None) -> list[Entry]:
    """The host's pending entries ([] when none); a file that cannot be read raises OSError / ValueError."""
    try:
        with open(pending_path(audit_log, host, kind), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return []
    return [entry for entry in data.get("pending") or [] if isinstance(entry, dict) and entry.get("key")]


def save_pending(audit_log: str, host: object, entries: list[Entry], kind: str | None = None) -> None:
    """Replace the host's pending file (atomically, on disk); remove it when `entries` is empty.
    Callers hold the folder's lock (update_pending)."""
    path = pending_path(audit_log, host, kind)
    if not entries:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    write_private(path, json.dumps({"host": host, "pending": entries}, default=str, indent=1) + "\n", sync=True)


def _entry_id(entry: Entry) -> tuple[Hashable, Hashable]:
    return (entry.get("run_id"), entry.get("key"))


def update_pending(
    audit_log: str,
    host: object,
    kind: str | None = None,
    add: Iterable[Entry] = (),
    drop: Iterable[tuple[Hashable, Hashable]] = (),
) -> None:
    """Change the host's pending file by what one run did, under an exclusive lock of its
    folder, from the file as it is now: `add` entries (those not there yet) and `drop` the
    (run_id, key) pairs settled. Two runs on one host with one audit log at once (two
    playbooks, AWX jobs over one trail) each keep the other's entries; a whole-file rewrite
    from what a run read at its start would lose those the other added meanwhile."""
    path = pending_path(audit_log, host, kind)
    folder = os.path.dirname(path)
    if not add and not os.path.isdir(folder):
        return
    os.makedirs(folder, mode=0o700, exist_ok=True)  # when a run adds the first entry
    lock = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        drop = set(drop)
        entries = [entry for entry in load_pending(audit_log, host, kind) if _entry_id(entry) not in drop]
        there = set(_entry_id(entry) for entry in entries)
        for entry in add:
            if _entry_id(entry) not in there:
                entries.append(entry)
                there.add(_entry_id(entry))
        save_pending(audit_log, host, entries, kind)
    finally:
        os.close(lock)  # releases the lock


def _run_lock_path(audit_log: str, run_id: Any) -> str:
    safe = "".join(c for c in str(run_id) if c.isalnum()) or "_"
    return os.path.join(f"{audit_log}.pending", "runs", f"{safe}.lock")


# The run locks this process holds: (audit_log, run_id) -> [fd, holders] (a drain's journal of
# changes and its journal of sessions share their run's).
_HELD: dict[tuple[str, Any], list[int]] = {}


def hold_run(audit_log: str, run_id: Any) -> None:
    """An exclusive lock saying run `run_id` is still at work, held until every holder of it
    in this process called release_run, or until the process ends (a kill included: the
    kernel drops it)."""
    held = _HELD.get((audit_log, run_id))
    if held is None:
        path = _run_lock_path(audit_log, run_id)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            raise
        held = _HELD[(audit_log, run_id)] = [fd, 0]
    held[1] += 1


def release_run(audit_log: str, run_id: Any) -> None:
    held = _HELD.get((audit_log, run_id))
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[(audit_log, run_id)]
    try:
        os.unlink(_run_lock_path(audit_log, run_id))
    except OSError:
        pass
    os.close(held[0])


def run_in_progress(audit_log: str, run_id: Any) -> bool:
    """Whether the run that wrote a pending entry is still at work (its lock held)."""
    try:
        fd = os.open(_run_lock_path(audit_log, run_id), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def settleable(audit_log: str, entries: Iterable[Entry]) -> list[Entry]:
    """The pending entries a run may settle: those of runs no longer at work. Another run on
    the host at the same time (a second playbook, an AWX job) has its victims pending while it
    signals them; settling them would give each a second outcome line."""
    busy: dict[Any, bool] = {}
    found: list[Entry] = []
    for entry in entries:
        run_id = entry.get("run_id")
        if run_id not in busy:
            busy[run_id] = run_in_progress(audit_log, run_id)
        if not busy[run_id]:
            found.append(entry)
    return found


class _HostJournal(Journal):
    """A write-ahead journal of one run on one host: `context` as for trail lines (login_host,
    job_id, sweep_id, run_id); `pending` the host's pending entries (of `kind`), `journaled`
    what this run wrote ahead, by key."""

    kind: str | None = None

    def __init__(
        self, audit_log: str, host: str, engine: str | None, context: Entry, pending: Iterable[Entry] | None = None
    ) -> None:
        self.audit_log = audit_log
        self.host = host
        self.engine = engine
        self.context = context
        self.pending = list(pending or [])
        self.journaled: dict[Hashable, Entry] = {}
        # The earlier runs' entries this run settled, (run_id, key): they leave the file at finish.
        self.settled_ids: set[tuple[Hashable, Hashable]] = set()
        self.holding = False  # this run's lock (hold_run), from its first write-ahead to its finish

    def hold(self) -> None:
        """Take this run's lock (once) before its first pending entry: another run does not
        settle an entry of a run still at work (settleable)."""
        if not self.holding:
            hold_run(self.audit_log, self.context.get("run_id"))
            self.holding = True

    def release(self) -> None:
        if self.holding:
            release_run(self.audit_log, self.context.get("run_id"))
            self.holding = False

    def _drop_known(self, keys: Iterable[Hashable]) -> None:
        """Drop from the pending file this run's entries of `keys` (their outcome is known) and
        the earlier runs' ones this run settled (update_pending: another run's stay); then
        this run is no longer at work (release)."""
        run_id = self.context.get("run_id")
        drop = set(self.settled_ids) | set((run_id, key) for key in keys)
        self.pending = [entry for entry in self.pending if _entry_id(entry) not in drop]
        try:
            update_pending(self.audit_log, self.host, self.kind, drop=drop)
        finally:
            self.release()

    def _write_ahead(self, lines: list[Entry], entries: list[Entry], what: str) -> None:
        """`lines` in the trail (one write, fsync), then `entries` added to the pending file;
        JournalError naming the file and the error, and `what` was not done, when either fails."""
        try:
            self.hold()
        except OSError as exc:
            path = _run_lock_path(self.audit_log, self.context.get("run_id"))
            raise JournalError(f"the run lock {path} of the audit trail could not be taken: {exc}; {what}")
        try:
            append_lines(self.audit_log, lines, sync=True)
        except OSError as exc:
            raise JournalError(
                f"the audit trail {self.audit_log} could not be written: {exc}; {what}; fix dbhygiene_audit_log "
                "(a writable path on the control node)"
            )
        try:
            update_pending(self.audit_log, self.host, self.kind, add=entries)
        except OSError as exc:
            path = pending_path(self.audit_log, self.host, self.kind)
            raise JournalError(f"the pending file {path} of the audit trail could not be written: {exc}; {what}")
        self.pending += entries


class TrailJournal(_HostJournal):
    """The runner's hook on the controller (see the module doc); `journaled` collects every
    victim's entry it wrote ``ending`` for, by key."""

    def __init__(
        self,
        audit_log: str,
        host: str,
        engine: str | None,
        context: Entry,
        policy_name: str | None,
        pending: Iterable[Entry] | None = None,
    ) -> None:
        _HostJournal.__init__(self, audit_log, host, engine, context, pending)
        self.policy_name = policy_name

    def _line(self, entry: Entry, outcome: str, now: str | None = None) -> Entry:
        return session_line(
            now or iso_utc_z(utc_now()), self.host, self.engine, self.context, self.policy_name, entry, outcome
        )

    def ending(self, entries: list[Entry]) -> None:
        now = iso_utc_z(utc_now())
        lines = [self._line(entry, "ending", now) for entry in entries]
        added = [dict(line, run_id=self.context.get("run_id")) for line in lines]
        self._write_ahead(lines, added, f"nothing of this batch ({len(entries)} sessions) was signalled")
        for entry in entries:
            self.journaled[entry.get("key")] = entry

    def settle_lines(self, settled: Iterable[Entry] | None) -> list[Entry]:
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
            self.settled_ids.add(_entry_id(earlier))
        self.pending = keep
        return lines

    def unaccounted(self, result: Entry) -> list[Entry]:
        """The victims this run journaled `ending` that the result gives no outcome for (the
        module died, or its result was lost): entries for `unknown` lines."""
        known: set[Hashable] = set()
        for bucket in ("terminated", "cancelled", "not_ended", "unknown"):
            known.update(entry.get("key") for entry in result.get(bucket) or [])
        reason = str(result.get("msg") or "the run ended without a result for it")
        return [
            dict(entry, detail=f"no outcome came back: {reason}")
            for key, entry in self.journaled.items()
            if key not in known
        ]

    def finish(self, result: Entry, unaccounted: list[Entry]) -> None:
        """Drop from the pending file the victims of this run whose outcome is known and the
        earlier runs' ones this run settled (update_pending: another run's stay)."""
        open_keys = set(entry.get("key") for entry in (result.get("unknown") or []) + unaccounted)
        self._drop_known(key for key in self.journaled if key not in open_keys)


# ---------------------------------------------------------------- the drain role's changes of rights
DRAIN = "drain"
# A change of rights journaled before it was sent; its outcome line follows (or a later run's).
CHANGING = "changing"
NOT_CHANGED = "not_changed"
# The changes a drain makes (in the server's record until open undoes them) and those open makes.
_DRAIN_CHANGES = ("revoked", "locked")
# Statuses of a record's change that say it was made (PostgreSQL's record has none: its
# changes are committed in the transaction that records them).
_DONE_STATUSES = (None, "locked", "revoked")
# Engines whose open undoes a database's changes and forgets its record in one transaction.
_ATOMIC_OPEN = ("postgresql",)


def _recorded(change: Entry, record: dict[Any, Entry]) -> tuple[Entry | None, Entry | None]:
    """The entry of `record` (the server's drain record, by database) for the databases of
    `change` and the change of the record that matches it: (entry, recorded change or None);
    (None, None) when no database of it is recorded."""
    found = None
    for database in change.get("databases") or [change.get("database")]:
        entry = record.get(database)
        if entry is None:
            continue
        found = found or entry
        for made in entry.get("changes") or []:
            if all(made.get(name) == change.get(name) for name in ("change", "account", "right", "grantor")):
                return entry, made
    return found, None


def settle_change(change: Entry, record: dict[Any, Entry], engine: str | None) -> tuple[str | None, str] | None:
    """What the server's drain record, read by a later run before it changed anything, says of
    a change an earlier run journaled and got no outcome for: (outcome, detail), or None when
    it cannot tell yet (the record of that database is in another database: PostgreSQL).

    A drain's change (revoked, locked; PostgreSQL: granted to allow_users) is recorded on the
    server before it is made, and (PostgreSQL) in the same transaction: recorded and done ->
    made; recorded as pending (MySQL: recorded as about to be made, never confirmed) ->
    unknown; not recorded -> not made (or undone since by an open). An open's change (granted,
    unlocked): the record of its database gone -> the open finished, made; still there ->
    PostgreSQL: not made (the transaction did not commit), MySQL: unknown (the open stopped
    before it forgot the record).
    """
    entry, made = _recorded(change, record)
    if entry is not None and entry.get("complete") is None and not entry.get("changes"):
        return None
    drained = change.get("drain_state") or ("drained" if change.get("change") in _DRAIN_CHANGES else "open")
    if drained == "drained":
        if made is None:
            return NOT_CHANGED, "settled: not in the server's drain record at the next run: not made (or undone since)"
        if made.get("status") in _DONE_STATUSES:
            return change.get("change"), "settled: in the server's drain record at the next run (open undoes it)"
        now = made.get("now")
        pending = f"recorded as {made.get('status')} (about to be made, never confirmed)"
        if now == change.get("change"):
            return change.get("change"), (
                f"settled: {pending}, and {now} at the next run's first read: made (state=open undoes it)"
            )
        if now is not None:
            return NOT_CHANGED, f"settled: {pending}, and {now} at the next run's first read: not made"
        return "unknown", (
            f"settled as far as the server can tell: {pending}: made or not; state=open undoes it if it was made"
        )
    if entry is None:
        return change.get("change"), "settled: the drain record of its database was gone at the next run"
    if engine in _ATOMIC_OPEN:
        return NOT_CHANGED, "settled: the drain record was still there at the next run: the open did not commit"
    now = _now_of_undone(change, entry)
    if now == change.get("change"):
        return change.get("change"), (
            f"settled: {now} at the next run's first read (the open stopped before it forgot the drain record)"
        )
    if now in _DRAIN_CHANGES:
        return NOT_CHANGED, f"settled: still {now} at the next run's first read: the open did not make it"
    return "unknown", "settled as far as the server can tell: the open stopped before it forgot the drain record"


# What an open's change (unlocked, granted) undoes in the record (locked, revoked).
_UNDOES: dict[object, str] = {"unlocked": "locked", "granted": "revoked"}


def _now_of_undone(change: Entry, entry: Entry) -> str | None:
    """What the server held at the next run's first read (the record's `now`, MySQL) of the
    drain's change that an open's `change` undoes; None when the record does not say."""
    for made in entry.get("changes") or []:
        if made.get("change") == _UNDOES.get(change.get("change")) and all(
            made.get(name) == change.get(name) for name in ("account", "right", "grantor")
        ):
            now: str | None = made.get("now")
            return now
    return None


# The drain's sessions that its journal wrote `ending` for and a run that finished (not failed) gave
# no outcome: gone before their signal (the run ended every target it still listed).
GONE_DETAIL = "left before the drain's signal reached it (the drain ended every target it still listed)"


class DrainSessions(TrailJournal):
    """The sessions a drain ends, written ahead as the sweep's victims are: `ending` lines (with
    the run's `drain_state`) and the same pending file, ``<audit_log>.pending/<host>.json``, as
    the enforce role's, so that the next run on the host, a drain or a sweep, settles them."""

    def __init__(
        self, audit_log: str, host: str, engine: str | None, context: Entry, pending: Iterable[Entry] | None = None
    ) -> None:
        TrailJournal.__init__(self, audit_log, host, engine, context, _change_window.POLICY, pending)

    def _line(self, entry: Entry, outcome: str, now: str | None = None) -> Entry:
        line = TrailJournal._line(self, entry, outcome, now)
        line["drain_state"] = self.context.get("state")
        return line

    def account(self, result: Entry, login_host: object) -> None:
        """Give each session journaled `ending` that `result` (the module's) names in no bucket an
        outcome there: a run that failed or died did not learn their fate (`unknown`: kept
        pending, settled by the next run on the host; the host fails and its message counts
        them); one that finished ended every target it still listed, so these had left before
        their signal (`not_ended`, reason `gone`)."""
        missing = self.unaccounted(result)
        if not missing:
            return
        if not result.get("failed") and "terminated" in result:
            gone = [dict(entry, reason="gone", detail=GONE_DETAIL) for entry in missing]
            result["not_ended"] = (result.get("not_ended") or []) + gone
            return
        result["unknown"] = (result.get("unknown") or []) + missing
        result["failed"] = True
        result["msg"] = (
            f"{len(missing)} sessions whose fate is unknown on {login_host} (journaled as ending, no outcome came "
            f"back; settled by the next run on this host): {result.get('msg')}"
        )


class DrainJournal(_HostJournal):
    """The drain role's write-ahead hook (the runner's Journal, through module_utils/_drain.py's
    Progress): before each statement that changes connection rights, one ``changing`` line per
    change (one write, fsync) and the changes added to the host's pending file
    (``<audit_log>.pending/drain/<host>.json``); either failing raises JournalError and
    nothing of it is sent. The next run on the host settles what an earlier run left there
    from the server's drain record as it read it first (``settle_lines``, ``settle_change``)."""

    kind = DRAIN

    def __init__(
        self,
        audit_log: str,
        host: str,
        engine: str | None,
        context: Entry,
        pending: Iterable[Entry] | None = None,
        sessions: DrainSessions | None = None,
    ) -> None:
        _HostJournal.__init__(self, audit_log, host, engine, context, pending)
        # The sessions the drain ends: their own journal (the sweep's pending file, see DrainSessions).
        self.sessions = sessions or DrainSessions(audit_log, host, engine, context)

    def ending(self, entries: list[Entry]) -> None:
        self.sessions.ending(entries)

    def _line(self, change: Entry, outcome: str | None, check_mode: bool = False) -> Entry:
        line: Entry = _change_window.change_line(self.host, self.engine, check_mode, self.context, change, outcome)
        line.update(key=change_key(change), drain_state=self.context.get("state"))
        return line

    def changing(self, changes: list[Entry]) -> None:
        lines = [self._line(change, CHANGING) for change in changes]
        self._write_ahead(lines, lines, f"none of these {len(changes)} changes of rights was made")
        for change, line in zip(changes, lines):
            self.journaled[line["key"]] = change

    def settle_lines(self, record_before: list[Entry] | None, check_mode: bool = False) -> list[Entry]:
        """Lines settling the earlier runs' pending changes from `record_before` (the module's:
        the server's drain record before this run changed anything), each naming the run that
        journaled it (`settles`); those leave `pending`. None (the run failed before reading
        it): nothing is settled."""
        if record_before is None:
            return []
        record = dict((entry.get("database"), entry) for entry in record_before)
        lines, keep = [], []
        for earlier in self.pending:
            settled = None
            if earlier.get("run_id") != self.context.get("run_id"):
                settled = settle_change(earlier, record, self.engine)
            if settled is None:
                keep.append(earlier)
                continue
            change = dict((k, v) for k, v in earlier.items() if k not in _LINE_FIELDS)
            line = self._line(change, settled[0], check_mode)
            line.update(detail=settled[1], settles=earlier.get("run_id"))
            lines.append(line)
            self.settled_ids.add(_entry_id(earlier))
        self.pending = keep
        return lines

    def outcome_lines(self, result: Entry, check_mode: bool = False) -> list[Entry]:
        """Lines for the changes this run journaled that its result gives no outcome for: never
        sent (`not_changed`) when the module's result lists the changes it made; `unknown`
        (kept pending for the next run) when no such list came back (the run died)."""
        listed = set(change_key(change) for change in result.get("changes") or [] if isinstance(change, dict))
        reason = str(result.get("msg") or "the run ended without a result")
        lines = []
        for key, change in self.journaled.items():
            if key in listed:
                continue
            if "changes" in result:
                line = self._line(change, NOT_CHANGED, check_mode)
                line["detail"] = f"not sent: the run stopped before it ({reason})"
            else:
                line = self._line(change, "unknown", check_mode)
                line["detail"] = f"no outcome came back: {reason}"
            lines.append(line)
        return lines

    def finish(self, result: Entry) -> None:
        """Drop from the pending file this run's changes whose outcome is known and the earlier
        runs' ones this run settled (update_pending: another run's stay)."""
        known = set()
        if "changes" in result:
            known = set(self.journaled)
            known -= set(
                change_key(change)
                for change in result.get("changes") or []
                if isinstance(change, dict) and change.get("status") == STATUS_UNKNOWN
            )
        self._drop_known(known)


# The fields a trail line adds to a change entry (dropped again when a pending line is settled).
_LINE_FIELDS = ("time", "host", "login_host", "engine", "policy", "rule", "action", "check_mode", "outcome", "key")
