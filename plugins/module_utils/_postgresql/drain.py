# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain of PostgreSQL databases: the CONNECT privilege, recorded on the server.

Private to the collection; no psycopg2 import. The planning functions are pure and
unit tested without a server (tests/unit/plugins/module_utils/test_postgresql_drain_plan.py);
``PostgreSQLRights`` runs the statements of ``drain_statements`` through the driver
(``PostgreSQLDriver.execute``); on real servers: tests/integration/test_postgresql_drain.py.

Why the CONNECT privilege, and how the restore stays exact: see the module's
documentation (plugins/modules/postgresql_drain.py). In short:

* drain: in ONE transaction (a multi-statement query is one implicit
  transaction in PostgreSQL), the record row is written with ``datacl`` as it
  was, CONNECT is revoked from PUBLIC and every holder (each revoke as the role
  that granted it, the dependent grants first) and granted to the allowed
  roles that hold none, and the row gets ``datacl`` as the drain left it and
  the list of changes. A crash leaves all of it or none of it.
* open: when ``datacl`` is still what the drain left and the record is
  ``exact`` (no later drain had to change more), ``pg_database.datacl`` is
  written back as it was, byte for byte, in the statement that deletes the
  record; otherwise the recorded changes are undone one by one, last first.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_rights import Progress, RightsOutcome
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.drain_statements import (
    PUBLIC,
    RECORD_TABLE,
    RIGHT,
    actable_query,
    databases_query,
    drain_query,
    end_one_query,
    ensure_record_query,
    here_query,
    pointers_query,
    query_templates,
    record_exists_query,
    record_query,
    restore_query,
    roles_query,
    same_grants_query,
    superuser_query,
    undo_query,
    unpoint_query,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc

_REGRANTED = (
    "the recorded changes undone grant by grant (no superuser on this platform to write datacl back byte for "
    "byte: the same grants, their order may differ)"
)


# ---------------------------------------------------------------- planning (pure)
def database_rows(rows):
    """{name: {"acl": text|None, "owner": str, "items": [{grantee, grantor, grantable, superuser}]}}."""
    found = {}
    for name, acl, owner, items in rows:
        found[name] = {
            "acl": acl,
            "owner": owner,
            "items": [
                {"grantee": g, "grantor": r, "grantable": bool(o), "superuser": bool(s)}
                for g, r, o, s in json.loads(items or "[]")
            ],
        }
    return found


def _change(database, account, change, grantor, grantable, reason):
    return {
        "database": database,
        "databases": [database],
        "account": account,
        "right": RIGHT,
        "change": change,
        "grantor": grantor,
        "with_grant_option": bool(grantable),
        "reason": reason,
    }


def _depth(item, items, owner):
    """How far from the owner the grant chain of `item` is (the owner's grants are 0)."""
    depth, grantor, seen = 0, item["grantor"], set()
    while grantor != owner and grantor not in seen:
        seen.add(grantor)
        depth += 1
        parents = [i for i in items if i["grantee"] == grantor]
        if not parents:
            break
        grantor = parents[0]["grantor"]
    return depth


def _revocable(info, allowed, actable=None):
    """(the items to revoke, the items that should go but cannot): without a superuser
    (`actable`: the roles our login may act as), a grant made by another role stays, and so
    does each grant whose grantee passed CONNECT on to such a grant (no CASCADE)."""
    revoke = [i for i in info["items"] if not i["superuser"] and i["grantee"] not in allowed]
    if actable is None:
        return revoke, []
    kept = [i for i in revoke if i["grantor"] not in actable]
    grew = True
    while grew:
        grew = False
        for item in revoke:
            if item not in kept and item["grantable"] and any(k["grantor"] == item["grantee"] for k in kept):
                kept.append(item)
                grew = True
    return [i for i in revoke if i not in kept], kept


def not_changed(database, info, allowed, actable, login):
    """The result's ``grants_not_changed`` entries of `database`: grants a drain without a
    superuser cannot revoke (see _revocable), each saying what it leaves open."""
    return [
        {
            "database": database,
            "account": i["grantee"],
            "right": RIGHT,
            "grantor": i["grantor"],
            "with_grant_option": i["grantable"],
            "reason": f"granted by {i['grantor']}, a role login {login} may not act as (SET ROLE), or passed on "
            f"through such a grant: {'every role' if i['grantee'] == PUBLIC else 'role ' + i['grantee']} can still "
            f"connect to {database}; revoke it as {i['grantor']} or as the service's superuser",
        }
        for i in _revocable(info, allowed, actable)[1]
    ]


def plan_drain(database, info, allowed, actable=None):
    """The changes that leave CONNECT on `database` to superusers and `allowed` (role names) only.

    `info`: database_rows()[database]. Superusers' items are left alone (they connect anyway);
    revokes come deepest grant first (a grant made with a delegated grant option before the
    delegation), so no revoke needs CASCADE; then a grant to each allowed role that holds no
    item of its own (CONNECT through PUBLIC or a group would be gone). `actable` (a login
    without superuser): the roles it may act as; the grants of others stay (not_changed).
    """
    items, owner = info["items"], info["owner"]
    revoke = _revocable(info, allowed, actable)[0]
    revoke.sort(key=lambda i: -_depth(i, items, owner))
    changes = [
        _change(
            database,
            i["grantee"],
            "revoked",
            i["grantor"],
            i["grantable"],
            f"{'every role' if i['grantee'] == PUBLIC else 'role ' + i['grantee']} held CONNECT on {database}",
        )
        for i in revoke
    ]
    holders = set(i["grantee"] for i in items if i not in revoke)
    for role in allowed:
        if role not in holders:
            changes.append(
                _change(database, role, "granted", owner, False, f"allow_users: {role} keeps CONNECT on {database}")
            )
    return changes


def undone(change):
    """The change entry of undoing `change` (for the result of open)."""
    entry = dict(change)
    entry["change"] = "granted" if change["change"] == "revoked" else "revoked"
    entry["reason"] = f"open: undo of the drain ({change['reason']})"
    return entry


def holders_line(database, items):
    """One diff line: who holds CONNECT on `database`."""
    names = [f"{i['grantee']}{'*' if i['grantable'] else ''} (by {i['grantor']})" for i in items]
    return f"{database}: CONNECT {', '.join(names) if names else 'superusers only'}\n"


def apply_changes(items, changes):
    """The CONNECT items after `changes` (for check mode's diff)."""
    after = [dict(i) for i in items]
    for change in changes:
        key = (change["account"], change["grantor"])
        after = [i for i in after if (i["grantee"], i["grantor"]) != key]
        if change["change"] == "granted":
            after.append(
                {
                    "grantee": change["account"],
                    "grantor": change["grantor"],
                    "grantable": change["with_grant_option"],
                    "superuser": False,
                }
            )
    return after


def record_entries(rows):
    """The record's rows as result entries (see RETURN `record`)."""
    entries = []
    for database, drained_at, drained_by, before, after, exact, changes in rows:
        entries.append(
            {
                "database": database,
                "drained_at": iso_utc(drained_at) if drained_at is not None else None,
                "drained_by": drained_by,
                "complete": True,
                "exact": bool(exact),
                "acl_before": before,
                "acl_after": after,
                "changes": json.loads(changes or "[]"),
            }
        )
    return entries


# ---------------------------------------------------------------- on a server
class PostgreSQLRights(object):
    """Reads, changes and records the CONNECT rights of one server, through its driver."""

    def __init__(self, driver, journal=None):
        self.driver = driver
        self.target = driver.target
        self.journal = journal  # the runner's Journal hook: each change before it is sent
        self._here = None
        self.superuser, self.login, self.actable = None, None, None

    @property
    def here(self):
        """The database we are logged in to (where our record is)."""
        if self._here is None:
            self._here = self._run(here_query(), "read our database")[0][0]
        return self._here

    def _run(self, query, doing):
        return self.driver.execute(query, doing)

    def preflight(self):
        superuser, login = self._run(superuser_query(), "read the rights of our login")[0]
        self.superuser, self.login = bool(superuser), login
        # A managed service has no superuser to give: its admin login revokes as the roles it may act as.
        self.actable = None
        if not superuser and self.driver.managed:
            rows = self._run(actable_query(self.driver.version_num), "read the roles our login may act as")
            self.actable = set(row[0] for row in rows)
            return
        if not superuser:
            raise SessionError(
                f"login {login} on PostgreSQL at {self.target} is not a superuser: draining needs one, to revoke "
                "CONNECT as every grantor and to put pg_database.datacl back exactly; "
                f'as a superuser, run: ALTER ROLE "{login}" SUPERUSER, or drain with a superuser login'
            )

    def read_databases(self, names, must_exist):
        found = database_rows(self._run(databases_query(names), "read the databases' rights"))
        missing = [name for name in names if name not in found]
        if missing and must_exist:
            raise SessionError(
                f"databases: {', '.join(shown(m) for m in missing)} not found on PostgreSQL at {self.target}"
            )
        return found

    def check_allowed(self, allow_users):
        """The allowed roles that are not superusers (superusers need nothing); fails on unknown roles."""
        roles = dict(self._run(roles_query(allow_users), "read the allowed roles")) if allow_users else {}
        unknown = [name for name in allow_users if name not in roles]
        if unknown:
            raise SessionError(
                f"allow_users: no role {', '.join(shown(u) for u in unknown)} on PostgreSQL at {self.target}; "
                "nothing was changed"
            )
        return [name for name in allow_users if not roles[name]]

    def _pointers(self):
        return dict(self._run(pointers_query(), "read where the drain records are"))

    def _check_here(self, databases, pointers):
        """Fail, naming it, when the record of one of `databases` is in another database than ours."""
        elsewhere = [(db, pointers[db]) for db in databases if pointers.get(db) not in (None, self.here)]
        if elsewhere:
            where = ", ".join(f"{db} in database {shown(record)}" for db, record in elsewhere)
            raise SessionError(
                f"the drain record of {where} (table {RECORD_TABLE} there) on PostgreSQL at {self.target}, "
                f"not in {shown(self.here)} where this run logged in: run again with login_db set to the database "
                "of the record; nothing was changed"
            )

    def record_before(self):
        """The record before a run changes anything: the record (each change is committed in
        the transaction that records it, so the record is exact without a read of the rights)."""
        return self.record()

    def record(self):
        """The record in our database, and every database drained with its record elsewhere."""
        entries = []
        if self._run(record_exists_query(), "look for the drain record")[0][0]:
            entries = record_entries(self._run(record_query(), "read the drain record"))
        mine = set(entry["database"] for entry in entries)
        for db, record_db in sorted(self._pointers().items()):
            if db not in mine and record_db != self.here:
                entries.append({"database": db, "record_database": record_db, "complete": None, "changes": []})
        return entries

    def end_session(self, session, mode):
        """Cancel or terminate one session of a drain; False when it is gone already."""
        rows = self._run(end_one_query(session, mode), f"{mode} session {session.get('id')}")
        return bool(rows and rows[0][0])

    def drain(self, request, check_mode):
        """RightsOutcome of draining `request.databases` (check mode: what a real run would change);
        RightsError when the one transaction of the changes failed (made or not: unknown)."""
        self._check_here(request.databases, self._pointers())
        allowed = self.check_allowed(request.allow_users)
        if self.actable is not None:
            allowed = allowed + [self.login]  # keeps CONNECT: it must come back to open
        found = self.read_databases(request.databases, must_exist=True)
        plans = [(db, plan_drain(db, found[db], allowed, self.actable)) for db in request.databases]
        recorded = set(entry["database"] for entry in self.record())
        before = [holders_line(db, found[db]["items"]) for db in request.databases]
        after = [holders_line(db, apply_changes(found[db]["items"], changes)) for db, changes in plans]
        todo = [(db, changes) for db, changes in plans if changes or db not in recorded]
        if todo and not check_mode:
            progress = Progress(self.target, self.journal)
            progress.closed = sorted(recorded)  # drained before: the transaction changes nothing of that
            sent = [c for _db, changes in todo for c in changes]
            progress.sending(sent)
            self._run(ensure_record_query(), "create the drain record")
            try:
                query = drain_query(todo, self.here, point=self.actable is None)
                self._run(query, "drain (revoke CONNECT and record it)")
            except SessionError as exc:
                raise progress.failed(exc, sent=sent)
        changes = [change for _db, changes in plans for change in changes]
        extra = {}
        if self.actable is not None:
            extra["grants_not_changed"] = [
                entry
                for db in request.databases
                for entry in not_changed(db, found[db], allowed, self.actable, self.login)
            ]
        return RightsOutcome(changes, before, after, closed=request.databases, extra=extra)

    def on_replica(self, request):
        """RightsOutcome of a drain / open on a standby: no change (CONNECT comes from the primary);
        the sessions on the databases are the drain's, as on a primary."""
        self.read_databases(request.databases, must_exist=request.state == "drained")
        return RightsOutcome([], [], [])

    def open(self, request, check_mode):
        """RightsOutcome of opening `request.databases`: the recorded changes undone, the record deleted."""
        pointers = self._pointers()
        self._check_here(request.databases, pointers)
        record = dict((entry["database"], entry) for entry in self.record())
        wanted = [db for db in request.databases if db in record]
        found = self.read_databases(wanted, must_exist=False) if wanted else {}
        progress = Progress(self.target, self.journal)
        progress.closed = sorted(record)
        changes, restored, undo, before, after = [], [], [], [], []
        for db in wanted:
            entry = record[db]
            steps = [undone(change) for change in reversed(entry["changes"])]
            if db not in found:
                restored.append({"database": db, "exact": False, "detail": "the database no longer exists"})
                undo.append((db, []))
                continue
            items = found[db]["items"]
            before.append(holders_line(db, items))
            after.append(holders_line(db, apply_changes(items, steps)))
            exact = entry["exact"] and found[db]["acl"] == entry["acl_after"]
            if exact and self.actable is not None:
                # Only a superuser may write datacl back byte for byte: undo grant by grant, then compare.
                undo.append((db, entry["changes"]))
                restored.append({"database": db, "exact": None, "detail": _REGRANTED})
                changes.extend(steps)
                continue
            done = False
            if exact and not check_mode:
                query = restore_query(db, entry["acl_before"], entry["acl_after"], entry["changes"])
                progress.sending(steps)
                try:
                    done = bool(self._run(query, "restore the database's rights")[0][0])
                except SessionError as exc:
                    raise progress.failed(exc, sent=steps)
            if done:
                progress.made(steps)
                progress.closed.remove(db)
            if exact and (done or check_mode):
                restored.append({"database": db, "exact": True, "detail": "datacl restored as before the drain"})
            else:
                undo.append((db, entry["changes"]))
                restored.append(
                    {
                        "database": db,
                        "exact": False,
                        "detail": "the rights changed during the window: only the recorded changes were undone",
                    }
                )
            changes.extend(steps)
        if undo and not check_mode:
            sent = [undone(c) for db, recorded in undo for c in reversed(recorded)]
            progress.sending(sent)
            try:
                gone = [db for db in wanted if db not in found or self.actable is not None]
                self._run(undo_query(undo, gone), "open (undo the recorded changes)")
            except SessionError as exc:
                raise progress.failed(exc, sent=sent)
        if self.actable is not None:
            self._compare(restored, record, check_mode)
        if not check_mode:
            for db in request.databases:  # a pointer left by a run that died after forgetting its record
                if pointers.get(db) == self.here and db not in record:
                    self._run(unpoint_query(db), "forget where the drain record is")
        return RightsOutcome(changes, before, after, restored=restored)

    def _compare(self, restored, record, check_mode):
        """Set `exact` of the entries restored grant by grant: whether the database has the same
        CONNECT grants as before the drain (their order in datacl may differ)."""
        for entry in restored:
            if entry["exact"] is not None:
                continue
            if check_mode:
                entry["exact"] = True
                continue
            db = entry["database"]
            rows = self._run(same_grants_query(db, record[db]["acl_before"]), "compare the rights with the record")
            entry["exact"] = bool(rows and rows[0][0])
            if not entry["exact"]:
                entry["detail"] = "the recorded changes were undone, but the grants differ from before the drain"

    def query_templates(self):
        return query_templates()
