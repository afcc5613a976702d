# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain of MySQL / MariaDB databases: account locks, recorded on the server.

Private to the collection; no PyMySQL import. The statement builders return
``(sql, params)`` and, with the planning function, are unit tested without a
server (tests/unit/plugins/module_utils/test_mysql_drain_statements.py, test_mysql_drain_plan.py); ``MySQLRights``
runs them through the driver (``MySQLDriver.execute``).

Account statements commit implicitly, so the record cannot share a transaction
with the locks. The order makes every interruption openable exactly:

1. the databases are recorded as drained (``drain_databases``);
2. each account to lock is recorded ``pending``, with the value the server had
   for its lock (MariaDB: the ``account_locked`` key of ``mysql.global_priv``,
   absent until an account was ever locked);
3. the accounts are locked (``ALTER USER ... ACCOUNT LOCK``);
4. they are marked ``locked``.

``open`` unlocks every recorded account that is locked and no other drained
database still needs (a ``pending`` one only if it is locked: the drain died
between 2 and 4), then deletes the rows. MariaDB's ``ACCOUNT UNLOCK`` leaves
``"account_locked":false`` in the account's JSON where there was no such key
before; ``open`` takes that key out again, so ``mysql.global_priv`` is byte
for byte what it was. MySQL 8 keeps a Y/N column: its unlock is exact as it is.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.dbhygiene.sessions.plugins.module_utils import _platform
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_rights import Progress, RightsOutcome
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.drain_plan import (
    account_lines,
    account_name,
    account_rows,
    change_entry,
    missing_databases_message,
    plan_locks,
    plan_public_restore,
    plan_unlocks,
    public_entry,
    record_entries,
    text_of,
    unique_grants,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.drain_statements import (
    LOCKED,
    MARIADB,
    PENDING,
    PUBLIC_SINCE,
    accounts_query,
    ensure_record_queries,
    forget_queries,
    holders_query,
    lock_query,
    mark_locked_query,
    mark_revoked_query,
    public_grants_on,
    public_grants_query,
    query_templates,
    record_account_query,
    record_database_query,
    record_exists_query,
    record_grant_query,
    record_public_exists_query,
    record_public_query,
    record_queries,
    restore_public_query,
    revoke_public_queries,
    role_edges_query,
    session_users_query,
    strip_unlock_key_query,
    unlock_query,
)


# ---------------------------------------------------------------- on a server
class MySQLRights(object):
    """Reads, changes and records the account locks of one server, through its driver."""

    def __init__(self, driver, journal=None):
        self.driver = driver
        self.target = driver.target
        self.journal = journal  # the runner's Journal hook: each change before it is sent
        self.flavour = driver.flavour.name

    def _run(self, query, doing):
        return self.driver.execute(query, doing)

    def preflight(self):
        """The rights are checked by the statements themselves (their errors name what is missing)."""

    def _accounts(self):
        return account_rows(self._run(accounts_query(self.flavour), "read the accounts"))

    def _record_rows(self):
        if int(self._run(record_exists_query(), "look for the drain record")[0][0]) < 2:
            return [], []
        databases, accounts = (self._run(query, "read the drain record") for query in record_queries())
        return [(text_of(r[0]),) + tuple(r[1:]) for r in databases], [
            (text_of(r[0]), text_of(r[1]), text_of(r[2]), text_of(r[3]), text_of(r[4]), text_of(r[5])) for r in accounts
        ]

    def record(self):
        return record_entries(*self._record_rows(), public_rows=self._public_rows())

    def record_before(self):
        """The record before a run changes anything, each change with what the server holds now
        (record_entries `now`), read only when there is a record."""
        database_rows, accounts_rows = self._record_rows()
        public_rows = self._public_rows()
        accounts = self._accounts() if accounts_rows else {}
        lines = set(self._public_lines()) if public_rows else set()
        return record_entries(database_rows, accounts_rows, public_rows, accounts, lines)

    def end_session(self, session, mode):
        """End one session of a drain (no guard: a drain ends its targets whatever their state);
        True when the KILL went through, SessionError when it failed (gone meanwhile included)."""
        self._run(self.driver.flavour.kill_query(mode, session["id"]), f"{mode} thread {session['id']}")
        return True

    def _check_allowed(self, allow_users, accounts):
        names = set(user for user, _host in accounts)
        unknown = [name for name in allow_users if name not in names]
        if unknown:
            raise SessionError(
                f"allow_users: no account of user {', '.join(shown(u) for u in unknown)} on {self.target}; "
                "nothing was changed"
            )

    def _check_databases(self, databases):
        rows = self._run(("SHOW DATABASES", {}), "list the databases")
        names = [text_of(row[0]) for row in rows]
        missing = [db for db in databases if db not in names]
        if missing:
            privileges = getattr(self.driver, "privileges", None) or set()
            raise SessionError(
                missing_databases_message(
                    missing,
                    names,
                    self.target,
                    self.flavour,
                    getattr(self.driver, "current_user", None),
                    sees_all=bool(privileges & {"ALL", "SHOW DATABASES"}),
                )
            )

    def _public(self):
        """Whether the server has grants to PUBLIC (MariaDB 10.11 and later)."""
        return self.flavour == MARIADB and tuple(self.driver.flavour.version[:2]) >= PUBLIC_SINCE

    def _public_lines(self):
        if not self._public():
            return []
        return [text_of(row[0]) for row in self._run(public_grants_query(), "read the grants of PUBLIC")]

    def _public_rows(self):
        """[(db, grant_text, status)] of the record of PUBLIC's grants."""
        if not self._public() or not int(self._run(record_public_exists_query(), "look for the drain record")[0][0]):
            return []
        rows = self._run(record_public_query(), "read the drain record")
        return [(text_of(row[0]), text_of(row[2]), text_of(row[3])) for row in rows]

    def drain(self, request, check_mode):
        """RightsOutcome of draining `request.databases` (check mode: what a real run would lock
        and revoke). A failure once a change was sent raises RightsError (_drain.Progress)."""
        self._check_databases(request.databases)
        accounts = self._accounts()
        self._check_allowed(request.allow_users, accounts)
        holders = dict((db, self._run(holders_query(db), f"read the privileges on {db}")) for db in request.databases)
        edges = [tuple(text_of(v) for v in row) for row in self._run(role_edges_query(self.flavour), "read the roles")]
        sessions = dict(
            (db, set(text_of(r[0]) for r in self._run(session_users_query(db), f"read the sessions on {db}")))
            for db in request.databases
        )
        recorded_dbs, recorded_accounts = self._record_rows()
        ours = {}
        for db, user, host, _status, _key, _reason in recorded_accounts:
            ours.setdefault((user, host), set()).add(db)
        own = _own_account(self.driver)
        # The managed service's own accounts (RDS rdsadmin, ...) are never locked, superusers or not.
        spared = set(request.allow_users) | set(_platform.service_users("mysql", self.driver.platform))
        lock, extend, already = plan_locks(request.databases, accounts, holders, edges, sessions, spared, own, ours)
        lines = self._public_lines()
        revoke = [(db, text) for db in request.databases for text in public_grants_on(lines, db)]
        changes = [change_entry(a["user"], a["host"], a["databases"], "locked", "; ".join(a["reasons"])) for a in lock]
        changes += [public_entry(db, text, "revoked") for db, text in unique_grants(revoke)]
        keys = set((a["user"], a["host"]) for a in lock) | set((u, h) for _db, u, h, _r in extend)
        before = account_lines(accounts, keys) + [f"PUBLIC: {text}\n" for _db, text in unique_grants(revoke)]
        after = account_lines(accounts, keys, override=dict(((a["user"], a["host"]), True) for a in lock))
        after += [f"PUBLIC: revoked for the window: {text}\n" for _db, text in unique_grants(revoke)]
        recorded = set(row[0] for row in recorded_dbs)
        if not check_mode and (lock or extend or revoke or set(request.databases) - recorded):
            self._apply_drain(request, lock, extend, revoke, changes, recorded)
        users = set(a["user"] for a in lock) | set(u for _db, u, _h, _r in extend)
        users |= set(_user_of(name) for name in already)  # locked by someone else, concerned all the same
        users |= set(u for db, u, _h, status, _k, _r in recorded_accounts if db in request.databases)
        extra = {
            "accounts_locked": [change["account"] for change in changes if change["change"] == "locked"],
            "accounts_unlocked": [],
            "accounts_already_locked": already,
            "public_revoked": [text for _db, text in unique_grants(revoke)],
            "public_restored": [],
        }
        return RightsOutcome(changes, before, after, extra=extra, users=users, closed=request.databases)

    def on_replica(self, request):
        """RightsOutcome of a drain / open on a replica: no change (the locks come from the primary
        through the binary log); the sessions of the accounts the primary's record (replicated
        here) locked for those databases end with the sessions on them."""
        if request.state == "drained":
            self._check_databases(request.databases)
        _databases, recorded_accounts = self._record_rows()
        users = set(user for db, user, _host, _status, _key, _reason in recorded_accounts if db in request.databases)
        keys = ("accounts_locked", "accounts_unlocked", "accounts_already_locked", "public_revoked", "public_restored")
        return RightsOutcome([], [], [], users=users, extra=dict((key, []) for key in keys))

    def _apply_drain(self, request, lock, extend, revoke, changes, recorded):
        """Record, then change: the record on the server has each change before it is made."""
        progress = Progress(self.target, self.journal)
        progress.sending(changes)
        for query in ensure_record_queries():
            self._run(query, "create the drain record")
        for db in request.databases:
            self._run(record_database_query(db), "record the drain")
        progress.closed = sorted(set(request.databases) | set(recorded))
        for db, user, host, reason in extend:
            self._run(record_account_query(db, user, host, LOCKED, None, reason), "record the drain")
        for a in lock:
            for db, reason in zip(a["databases"], a["reasons"]):
                query = record_account_query(db, a["user"], a["host"], PENDING, a["lock_key"], reason)
                self._run(query, "record the drain")
        for db, text in revoke:
            self._run(record_grant_query(db, text), "record the drain")
        by_account = dict((change["account"], change) for change in changes if change["change"] == "locked")
        for a in lock:
            entry = by_account[account_name(a["user"], a["host"])]
            try:
                self._run(lock_query(a["user"], a["host"]), f"lock account {entry['account']}")
            except SessionError as exc:
                raise progress.failed(exc, sent=[entry])
            progress.made([entry])
            try:
                self._run(mark_locked_query(a["user"], a["host"]), "record the drain")
            except SessionError as exc:
                raise progress.failed(exc)
        for db, text in unique_grants(revoke):
            entry = public_entry(db, text, "revoked")
            try:
                for query in revoke_public_queries(text):
                    self._run(query, "revoke a grant of PUBLIC")
            except SessionError as exc:
                raise progress.failed(exc, sent=[entry])
            progress.made([entry])
            try:
                self._run(mark_revoked_query(text), "record the drain")
            except SessionError as exc:
                raise progress.failed(exc)

    def open(self, request, check_mode):
        """RightsOutcome of opening `request.databases`: the recorded locks undone, PUBLIC's
        grants given back, the record deleted."""
        recorded_dbs, recorded_accounts = self._record_rows()
        wanted = [row[0] for row in recorded_dbs if row[0] in request.databases]
        accounts = self._accounts()
        unlock, kept, gone = plan_unlocks(wanted, recorded_accounts, accounts)
        public_rows = self._public_rows()
        restore = plan_public_restore(wanted, public_rows, self._public_lines() if public_rows else [])
        changes = [
            change_entry(a["user"], a["host"], a["databases"], "unlocked", f"open: undo of the drain ({a['reason']})")
            for a in unlock
        ]
        changes += [public_entry(db, text, "granted") for db, text in restore]
        keys = set((a["user"], a["host"]) for a in unlock)
        before = account_lines(accounts, keys) + [f"PUBLIC: revoked for the window: {text}\n" for _db, text in restore]
        after = account_lines(accounts, keys, override=dict((key, False) for key in keys))
        after += [f"PUBLIC: {text}\n" for _db, text in restore]
        if not check_mode:
            closed = sorted(row[0] for row in recorded_dbs)
            self._apply_open(unlock, restore, changes, wanted, closed, bool(public_rows))
        restored = []
        for db in wanted:
            unlocked = [c["account"] for c in changes if db in c["databases"] and c["change"] == "unlocked"]
            mine_gone = [
                name for name in gone if any(r[0] == db and account_name(r[1], r[2]) == name for r in recorded_accounts)
            ]
            detail = f"{len(unlocked)} accounts unlocked"
            given = [text for grant_db, text in restore if grant_db == db]
            if given:
                detail += f", {len(given)} grants of PUBLIC given back"
            if mine_gone:
                detail += f"; found unlocked or dropped by someone else during the window: {', '.join(mine_gone)}"
            if kept:
                detail += f"; still locked for another drained database: {', '.join(kept)}"
            restored.append({"database": db, "exact": not mine_gone, "detail": detail})
        extra = {
            "accounts_locked": [],
            "accounts_unlocked": [change["account"] for change in changes if change["change"] == "unlocked"],
            "accounts_already_locked": [],
            "public_revoked": [],
            "public_restored": [text for _db, text in restore],
        }
        return RightsOutcome(changes, before, after, restored=restored, extra=extra)

    def _apply_open(self, unlock, restore, changes, wanted, closed, public):
        progress = Progress(self.target, self.journal)
        progress.closed = list(closed)
        progress.sending(changes)
        for change, a in zip(changes, unlock):
            try:
                self._run(unlock_query(a["user"], a["host"]), f"unlock account {change['account']}")
                if self.flavour == MARIADB and a["lock_key"] is None:
                    self._run(strip_unlock_key_query(a["user"], a["host"]), "restore the account's record")
            except SessionError as exc:
                raise progress.failed(exc, sent=[change])
            progress.made([change])
        for change, (_db, text) in zip(changes[len(unlock) :], restore):
            try:
                self._run(restore_public_query(text), "give a grant of PUBLIC back")
            except SessionError as exc:
                raise progress.failed(exc, sent=[change])
            progress.made([change])
        for db in wanted:
            try:
                for query in forget_queries(db, public=public):
                    self._run(query, "delete the drain record")
            except SessionError as exc:
                raise progress.failed(exc)
            progress.closed.remove(db)

    def query_templates(self):
        return query_templates(self.flavour)


def _user_of(name):
    """The user of an account_name()."""
    return name.rpartition("'@'")[0][1:].replace("''", "'")


def _own_account(driver):
    user, _sep, host = (driver.current_user or "").rpartition("@")
    return (user, host)
