# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the drain and an engine's rights object share (``_postgresql/drain.PostgreSQLRights``,
``_mysql/drain.MySQLRights``): the change entries, what a run did (``RightsOutcome``), how a
failure part-way says it (``RightsError``), each change handed to the write-ahead journal
before its statement (``Progress``), and the gate of a run on the host (``PlanGate``: only
what the controller journaled goes through, else ``BeyondPlan``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.dbhygiene.sessions.plugins.module_utils._ending import Journal
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import JournalError, SessionError

# A change's `status` in a failed drain's `changes`: made, or sent when the server stopped
# answering (made or not: the record on the server says it was meant).
STATUS_DONE = "done"
STATUS_UNKNOWN = "unknown"

# change entries (result key `changes`)
CHANGE_REVOKED = "revoked"
CHANGE_GRANTED = "granted"
CHANGE_LOCKED = "locked"
CHANGE_UNLOCKED = "unlocked"


def change_key(change):
    """A change of rights as one string: what it changes, on which databases, for whom (the
    audit trail's key of a `changing` line, and how a run on the host is told what the
    controller journaled: `journaled_changes`)."""
    databases = change.get("databases") or [change.get("database")]
    parts = [change.get("change"), change.get("account"), change.get("right"), change.get("grantor")]
    return json.dumps(parts + [sorted(str(db) for db in databases)], default=str)


class BeyondPlan(JournalError):
    """A real run on the host came to changes or sessions the controller did not journal
    (rights changed, or a login got in, between its check-mode plan and this run): nothing of
    them was sent. `changes` / `sessions`: their entries, for the controller to journal before
    it runs the module again."""

    def __init__(self, changes=(), sessions=()):
        what = []
        if changes:
            what.append(f"{len(changes)} changes of rights")
        if sessions:
            what.append(f"{len(sessions)} sessions")
        JournalError.__init__(
            self,
            f"{' and '.join(what)} beyond the plan the audit trail holds (they changed or logged in since the "
            "plan): none of them was sent; the controller journals them and runs again",
        )
        self.changes = [dict(entry) for entry in changes]
        self.sessions = [dict(entry) for entry in sessions]


class PlanGate(Journal):
    """The write-ahead hook of a real run on the host (run_on: host), where the controller's
    trail cannot be reached: the changes and sessions the controller journaled before the run
    (`journaled_changes`, `journaled_sessions`) go through; a batch holding any other raises
    BeyondPlan, and nothing of that batch is sent."""

    def __init__(self, changes, sessions):
        self.changes = set(changes or ())
        self.sessions = set(sessions or ())

    def changing(self, changes):
        beyond = [change for change in changes if change_key(change) not in self.changes]
        if beyond:
            raise BeyondPlan(changes=beyond)

    def ending(self, entries):
        beyond = [entry for entry in entries if entry.get("key") not in self.sessions]
        if beyond:
            raise BeyondPlan(sessions=beyond)


def plan_gate(params, check_mode):
    """The PlanGate of a real run given what the controller journaled, else None."""
    if check_mode or (params.get("journaled_changes") is None and params.get("journaled_sessions") is None):
        return None
    return PlanGate(params.get("journaled_changes"), params.get("journaled_sessions"))


class RightsOutcome(object):
    """What an engine's rights object did (or would do): the result's changes and the diff lines;
    `users`: the logins whose sessions a drain ends on any database (MySQL: those it locked);
    `closed`: the databases recorded as drained by this run."""

    def __init__(self, changes, before, after, restored=None, extra=None, users=(), closed=()):
        self.changes = changes
        self.before = before
        self.after = after
        self.restored = restored or []
        self.extra = extra or {}
        self.users = sorted(set(users))
        self.closed = list(closed)


class RightsError(SessionError):
    """Changing the rights failed part-way. `changes`: the change entries made so far (status
    done) and the one sent when it failed (status unknown); `closed`: the databases recorded as
    drained; `unknown`: whether the last statement's fate is unknown."""

    def __init__(self, message, target, changes, closed, unknown=True, beyond=None):
        SessionError.__init__(self, message)
        self.target = target
        self.changes = changes
        self.closed = closed
        self.unknown = unknown
        self.beyond = beyond  # the BeyondPlan that stopped it (a run on the host), or None


class Progress(object):
    """The changes of rights of one run as they are made, for a RightsError when one fails.
    `journal` (the runner's Journal hook, _ending.Journal, or None) takes each change before it is sent."""

    def __init__(self, target, journal=None):
        self.target = target
        self.journal = journal
        self.changes = []
        self.closed = []

    def sending(self, entries):
        """Journal `entries` before their statement goes out; when the journal cannot take
        them, RightsError (nothing of them was sent; the changes made before are listed)."""
        if self.journal is None or not entries:
            return
        try:
            self.journal.changing([dict(entry) for entry in entries])
        except (JournalError, OSError) as exc:
            raise self.failed(exc)

    def made(self, entries, status=STATUS_DONE):
        for entry in entries:
            self.changes.append(dict(entry, status=status))

    def failed(self, exc, sent=()):
        """RightsError for `exc` (a SessionError), `sent` the entries whose statement failed."""
        self.made(sent, STATUS_UNKNOWN)
        beyond = exc if isinstance(exc, BeyondPlan) else None
        # Nothing of a batch beyond the plan was sent: no change's fate is unknown.
        return RightsError(str(exc), self.target, self.changes, self.closed, unknown=beyond is None, beyond=beyond)
