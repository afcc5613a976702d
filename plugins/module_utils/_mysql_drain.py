# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain of MySQL / MariaDB databases: account locks, recorded on the server.

Private to the collection; no PyMySQL import. The statement builders return
``(sql, params)`` and, with the planning function, are unit tested without a
server (tests/unit/plugins/module_utils/test_mysql_drain.py); ``MySQLRights``
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

import hashlib
import re

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _platform
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_rights import Progress, RightsOutcome
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql_flavours import split_account
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc

RIGHT = "ACCOUNT LOCK"
PENDING = "pending"
LOCKED = "locked"
REVOKED = "revoked"
MARIADB = "mariadb"
PUBLIC = "PUBLIC"
# GRANT ... TO PUBLIC: MariaDB from 10.11.
PUBLIC_SINCE = (10, 11)
# What MariaDB's ACCOUNT UNLOCK leaves at the end of an account's JSON.
UNLOCK_SUFFIX = ',"account_locked":false}'

# Global privileges that reach the objects of every database (a global grant of one of them
# is a privilege on each drained database); administrative ones (PROCESS, RELOAD, ...) do not.
GLOBAL_DATA_PRIVILEGES = (
    "Select_priv",
    "Insert_priv",
    "Update_priv",
    "Delete_priv",
    "Create_priv",
    "Drop_priv",
    "References_priv",
    "Index_priv",
    "Alter_priv",
    "Create_tmp_table_priv",
    "Lock_tables_priv",
    "Execute_priv",
    "Create_view_priv",
    "Show_view_priv",
    "Create_routine_priv",
    "Alter_routine_priv",
    "Event_priv",
    "Trigger_priv",
)
_GLOBAL = " OR ".join(f"u.{column} = 'Y'" for column in GLOBAL_DATA_PRIVILEGES)

# ---------------------------------------------------------------- reading
# user, host, superuser, lock value (MariaDB: the JSON key's value or NULL when absent;
# MySQL: 'true' / 'false' from the Y/N column), global data privileges
_ACCOUNTS_SQL = {
    "mariadb": (
        "SELECT u.User, u.Host, u.Super_priv = 'Y', JSON_VALUE(g.Priv, '$.account_locked'), "
        f"({_GLOBAL}) FROM mysql.user u JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host "
        "WHERE u.is_role <> 'Y'"
    ),
    "mysql": (
        "SELECT u.User, u.Host, u.Super_priv = 'Y' OR EXISTS (SELECT 1 FROM mysql.global_grants gg "
        "WHERE gg.USER = u.User AND gg.HOST = u.Host AND gg.PRIV = 'SYSTEM_USER'), "
        f"IF(u.account_locked = 'Y', 'true', 'false'), ({_GLOBAL}) FROM mysql.user u"
    ),
}

# Who holds a privilege on one database (mysql.db patterns as the server matches them).
_HOLDERS_SQL = (
    "SELECT User, Host, 'schema' FROM mysql.db WHERE %(db)s LIKE Db "
    "UNION ALL SELECT User, Host, 'table' FROM mysql.tables_priv WHERE Db = %(db)s "
    "UNION ALL SELECT User, Host, 'column' FROM mysql.columns_priv WHERE Db = %(db)s "
    "UNION ALL SELECT User, Host, 'routine' FROM mysql.procs_priv WHERE Db = %(db)s"
)

# grantee user, grantee host, role user, role host
_ROLE_EDGES_SQL = {
    "mariadb": "SELECT User, Host, Role, '' FROM mysql.roles_mapping",
    "mysql": "SELECT TO_USER, TO_HOST, FROM_USER, FROM_HOST FROM mysql.role_edges",
}

_SESSION_USERS_SQL = (
    "SELECT DISTINCT USER FROM information_schema.PROCESSLIST WHERE DB = %(db)s AND ID <> CONNECTION_ID()"
)

_RECORD_EXISTS_SQL = (
    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'dbhygiene' "
    "AND TABLE_NAME IN ('drain_databases', 'drain_accounts')"
)
# PUBLIC's grants revoked for the window (one row per SHOW GRANTS FOR PUBLIC line and database).
_RECORD_PUBLIC_EXISTS_SQL = (
    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'dbhygiene' AND TABLE_NAME = 'drain_public'"
)
_RECORD_PUBLIC_SQL = "SELECT db, grant_sha, grant_text, status FROM dbhygiene.drain_public ORDER BY db, grant_sha"
_PUBLIC_GRANTS_SQL = "SHOW GRANTS FOR PUBLIC"
_RECORD_DATABASES_SQL = "SELECT db, drained_at, drained_by FROM dbhygiene.drain_databases ORDER BY db"
_RECORD_ACCOUNTS_SQL = (
    "SELECT db, user, host, status, lock_key, reason FROM dbhygiene.drain_accounts ORDER BY db, user, host"
)

_ENSURE_SQL = (
    "CREATE DATABASE IF NOT EXISTS dbhygiene",
    "CREATE TABLE IF NOT EXISTS dbhygiene.drain_databases (db VARCHAR(64) NOT NULL PRIMARY KEY, "
    "drained_at DATETIME(6) NOT NULL, drained_by VARCHAR(400) NOT NULL) "
    "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS dbhygiene.drain_accounts (db VARCHAR(64) NOT NULL, user VARCHAR(128) NOT NULL, "
    "host VARCHAR(255) NOT NULL, status VARCHAR(16) NOT NULL, lock_key VARCHAR(16) NULL, "
    "reason VARCHAR(1000) NOT NULL, PRIMARY KEY (db, user, host)) "
    "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS dbhygiene.drain_public (db VARCHAR(64) NOT NULL, grant_sha CHAR(64) NOT NULL, "
    "grant_text TEXT NOT NULL, status VARCHAR(16) NOT NULL, PRIMARY KEY (db, grant_sha)) "
    "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
)

# ---------------------------------------------------------------- changing
_RECORD_DATABASE_SQL = (
    "INSERT IGNORE INTO dbhygiene.drain_databases (db, drained_at, drained_by) "
    "VALUES (%(db)s, UTC_TIMESTAMP(6), CURRENT_USER())"
)
_RECORD_ACCOUNT_SQL = (
    "INSERT IGNORE INTO dbhygiene.drain_accounts (db, user, host, status, lock_key, reason) "
    "VALUES (%(db)s, %(user)s, %(host)s, %(status)s, %(lock_key)s, %(reason)s)"
)
_LOCK_SQL = "ALTER USER %(user)s@%(host)s ACCOUNT LOCK"
_UNLOCK_SQL = "ALTER USER %(user)s@%(host)s ACCOUNT UNLOCK"
_MARK_LOCKED_SQL = (
    "UPDATE dbhygiene.drain_accounts SET status = 'locked' WHERE user = %(user)s AND host = %(host)s "
    "AND status = 'pending'"
)
# MariaDB: take out the key ACCOUNT UNLOCK left where there was none (no FLUSH needed: an
# absent key and false mean the same to the server, which has the account unlocked already).
_STRIP_SQL = (
    "UPDATE mysql.global_priv SET Priv = CONCAT(LEFT(Priv, CHAR_LENGTH(Priv) - CHAR_LENGTH(%(suffix)s)), '}') "
    "WHERE User = %(user)s AND Host = %(host)s AND RIGHT(Priv, CHAR_LENGTH(%(suffix)s)) = %(suffix)s"
)
_RECORD_GRANT_SQL = (
    "INSERT IGNORE INTO dbhygiene.drain_public (db, grant_sha, grant_text, status) "
    "VALUES (%(db)s, %(sha)s, %(text)s, 'pending')"
)
_MARK_REVOKED_SQL = (
    "UPDATE dbhygiene.drain_public SET status = 'revoked' WHERE grant_sha = %(sha)s AND status = 'pending'"
)
_FORGET_ACCOUNTS_SQL = "DELETE FROM dbhygiene.drain_accounts WHERE db = %(db)s"
_FORGET_PUBLIC_SQL = "DELETE FROM dbhygiene.drain_public WHERE db = %(db)s"
_FORGET_DATABASE_SQL = "DELETE FROM dbhygiene.drain_databases WHERE db = %(db)s"


def _flavour(name):
    if name not in _ACCOUNTS_SQL:
        raise ValueError(f"unknown flavour {name!r}")
    return name


def accounts_query(flavour):
    """(sql, params): every account (roles left out): user, host, superuser, lock value, global data privileges."""
    return _ACCOUNTS_SQL[_flavour(flavour)], {}


def holders_query(database):
    """(sql, params): (user, host, level) of every privilege on `database` below the global level."""
    return _HOLDERS_SQL, {"db": database}


def role_edges_query(flavour):
    """(sql, params): (grantee user, grantee host, role user, role host) of every role grant."""
    return _ROLE_EDGES_SQL[_flavour(flavour)], {}


def session_users_query(database):
    """(sql, params): the user names with a session whose current database is `database` (ours left out)."""
    return _SESSION_USERS_SQL, {"db": database}


def record_exists_query():
    """(sql, params): how many of the record's two tables exist (check mode never makes them)."""
    return _RECORD_EXISTS_SQL, {}


def record_queries():
    """[(sql, params)]: the drained databases, then the recorded accounts."""
    return [(_RECORD_DATABASES_SQL, {}), (_RECORD_ACCOUNTS_SQL, {})]


def ensure_record_queries():
    """[(sql, params)]: make the record's database and tables if they are not there."""
    return [(statement, {}) for statement in _ENSURE_SQL]


def record_database_query(database):
    """(sql, params): record `database` as drained (a later drain keeps the first row)."""
    return _RECORD_DATABASE_SQL, {"db": database}


def record_account_query(database, user, host, status, lock_key, reason):
    """(sql, params): record an account locked for `database` (kept when already there)."""
    return _RECORD_ACCOUNT_SQL, {
        "db": database,
        "user": user,
        "host": host,
        "status": status,
        "lock_key": lock_key,
        "reason": reason[:1000],
    }


def lock_query(user, host):
    """(sql, params): lock an account."""
    return _LOCK_SQL, {"user": user, "host": host}


def unlock_query(user, host):
    """(sql, params): unlock an account."""
    return _UNLOCK_SQL, {"user": user, "host": host}


def mark_locked_query(user, host):
    """(sql, params): the account's pending rows are locked now."""
    return _MARK_LOCKED_SQL, {"user": user, "host": host}


def strip_unlock_key_query(user, host):
    """(sql, params): MariaDB: the account's JSON as before its first lock (no account_locked key)."""
    return _STRIP_SQL, {"user": user, "host": host, "suffix": UNLOCK_SUFFIX}


def forget_queries(database, public=False):
    """[(sql, params)]: delete the record of `database` (`public`: its PUBLIC rows too)."""
    queries = [(_FORGET_ACCOUNTS_SQL, {"db": database})]
    if public:
        queries.append((_FORGET_PUBLIC_SQL, {"db": database}))
    return queries + [(_FORGET_DATABASE_SQL, {"db": database})]


def record_public_exists_query():
    """(sql, params): whether the record of PUBLIC's grants exists (1) or not (0)."""
    return _RECORD_PUBLIC_EXISTS_SQL, {}


def record_public_query():
    """(sql, params): the recorded grants of PUBLIC: db, grant_sha, grant_text, status."""
    return _RECORD_PUBLIC_SQL, {}


def public_grants_query():
    """(sql, params): PUBLIC's grants, one GRANT statement per row."""
    return _PUBLIC_GRANTS_SQL, {}


def grant_sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_grant_query(database, text):
    """(sql, params): record a grant of PUBLIC as revoked for `database` (pending until it is)."""
    return _RECORD_GRANT_SQL, {"db": database, "sha": grant_sha(text), "text": text}


def mark_revoked_query(text):
    """(sql, params): the pending rows of this grant of PUBLIC are revoked now."""
    return _MARK_REVOKED_SQL, {"sha": grant_sha(text)}


# GRANT <privileges> ON <target> TO PUBLIC [WITH GRANT OPTION], as SHOW GRANTS FOR PUBLIC
# writes it; the target at the end (a column list in the privileges may hold anything).
_IDENT = r"`(?:[^`]|``)*`"
_GRANT_RE = re.compile(
    r"\AGRANT (?P<privileges>.+) ON (?P<target>(?:(?:PROCEDURE|FUNCTION|PACKAGE(?: BODY)?) )?"
    rf"(?P<db>{_IDENT})\.(?P<object>\*|{_IDENT})) TO PUBLIC(?P<option> WITH GRANT OPTION)?\Z",
    re.DOTALL,
)


def parse_public_grant(text):
    """{"privileges", "target", "database" (unquoted), "schema_level", "grant_option"} of one line
    of SHOW GRANTS FOR PUBLIC, or None when it is not a grant on a database's objects."""
    found = _GRANT_RE.match(text)
    if not found:
        return None
    return {
        "privileges": found.group("privileges"),
        "target": found.group("target"),
        "database": found.group("db")[1:-1].replace("``", "`"),
        "schema_level": found.group("object") == "*" and found.group("target").startswith("`"),
        "grant_option": bool(found.group("option")),
    }


def _like(pattern, name):
    """Whether a schema-level grant's database pattern (LIKE: % _ and backslash escapes) matches `name`."""
    regex, escaped = [], False
    for char in pattern:
        if escaped:
            regex.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            regex.append(".*")
        elif char == "_":
            regex.append(".")
        else:
            regex.append(re.escape(char))
    return re.match("".join(regex) + r"\Z", name, re.DOTALL) is not None


def public_grants_on(lines, database):
    """The lines of SHOW GRANTS FOR PUBLIC that give privileges on `database` (a schema-level
    pattern that matches it included)."""
    found = []
    for text in lines:
        grant = parse_public_grant(text)
        if grant is None:
            continue
        if grant["database"] == database or (grant["schema_level"] and _like(grant["database"], database)):
            found.append(text)
    return found


def revoke_public_queries(text):
    """[(sql, params)]: the REVOKEs that take one grant of PUBLIC away (its grant option too)."""
    grant = parse_public_grant(text)
    if grant is None:
        raise ValueError(f"not a grant to PUBLIC: {text!r}")
    target = grant["target"].replace("%", "%%")
    queries = [(f"REVOKE {grant['privileges'].replace('%', '%%')} ON {target} FROM PUBLIC", {})]
    if grant["grant_option"]:
        queries.append((f"REVOKE GRANT OPTION ON {target} FROM PUBLIC", {}))
    return queries


def restore_public_query(text):
    """(sql, params): give PUBLIC the grant back, as SHOW GRANTS wrote it."""
    if parse_public_grant(text) is None:
        raise ValueError(f"not a grant to PUBLIC: {text!r}")
    return text.replace("%", "%%"), {}


def query_templates(flavour):
    """The drain's statements, as templates (placeholders, never values)."""
    return (
        [
            _ACCOUNTS_SQL[_flavour(flavour)],
            _HOLDERS_SQL,
            _ROLE_EDGES_SQL[flavour],
            _SESSION_USERS_SQL,
            _RECORD_EXISTS_SQL,
            _RECORD_DATABASES_SQL,
            _RECORD_ACCOUNTS_SQL,
        ]
        + list(_ENSURE_SQL)
        + [
            _RECORD_DATABASE_SQL,
            _RECORD_ACCOUNT_SQL,
            _LOCK_SQL,
            _MARK_LOCKED_SQL,
            _UNLOCK_SQL,
        ]
        + (
            [
                _STRIP_SQL,
                _RECORD_PUBLIC_EXISTS_SQL,
                _RECORD_PUBLIC_SQL,
                _PUBLIC_GRANTS_SQL,
                _RECORD_GRANT_SQL,
                "REVOKE <privileges> ON <target> FROM PUBLIC",
                _MARK_REVOKED_SQL,
                "GRANT <privileges> ON <target> TO PUBLIC (as SHOW GRANTS FOR PUBLIC wrote it)",
                _FORGET_PUBLIC_SQL,
            ]
            if flavour == MARIADB
            else []
        )
        + [_FORGET_ACCOUNTS_SQL, _FORGET_DATABASE_SQL]
    )


# ---------------------------------------------------------------- planning (pure)
def account_name(user, host):
    """'user'@'host' as in a GRANT (quotes doubled)."""
    return "'{}'@'{}'".format(user.replace("'", "''"), host.replace("'", "''"))


def _text(value):
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return value


def account_rows(rows):
    """{(user, host): {"superuser", "locked", "lock_key", "global"}} from accounts_query()."""
    accounts = {}
    for user, host, superuser, lock_value, global_data in rows:
        lock_value = _text(lock_value)
        accounts[(_text(user), _text(host))] = {
            "superuser": bool(superuser),
            "locked": lock_value in ("true", "1"),  # MariaDB's JSON_VALUE gives 1 / 0 for a JSON boolean
            "lock_key": lock_value,
            "global": bool(global_data),
        }
    return accounts


def _expand_roles(holders, edges):
    """{(user, host): reason} of `holders` plus every account granted (directly or through roles) a role
    among them."""
    found = dict(holders)
    changed = True
    while changed:
        changed = False
        for user, host, role_user, role_host in edges:
            via = found.get((role_user, role_host))
            if via is not None and (user, host) not in found:
                found[(user, host)] = f"{via} through role {role_user}"
                changed = True
    return found


def plan_locks(databases, accounts, holders, edges, session_users, allowed, own, recorded):
    """What a drain of `databases` locks.

    `accounts`: account_rows(); `holders`: {db: [(user, host, level)]}; `edges`: role grants;
    `session_users`: {db: set of user names}; `allowed`: user names; `own`: (user, host) of our
    login; `recorded`: {(user, host): set of dbs} of the record (locks that are ours).

    Returns (lock, extend, already): `lock` [{"user", "host", "databases", "reasons", "lock_key"}]
    to lock now; `extend` [(db, user, host, reason)] accounts locked by a drain already that this
    drain needs too (recorded for it, so that opening the other database keeps them locked);
    `already` the names of accounts locked before and not by a drain (left alone).
    """
    needed = {}  # (user, host) -> {db: reason}
    for db in databases:
        direct = {}
        for user, host, level in holders.get(db, []):
            direct.setdefault((_text(user), _text(host)), f"holds privileges on {db} ({level})")
        concerned = _expand_roles(direct, edges)
        for key, info in accounts.items():
            if info["global"]:
                concerned.setdefault(key, f"holds global privileges (every database, {db} included)")
            if key[0] in session_users.get(db, ()):
                concerned.setdefault(key, f"has a session on {db}")
        # A thread names its user, not the account it logged in as: every account of a user
        # name concerned is, or the sessions of that name could not all be ended for good.
        for key, reason in list(concerned.items()):
            for other in accounts:
                if other[0] == key[0] and other not in concerned:
                    concerned[other] = f"shares the user name {key[0]} with {account_name(*key)}, which {reason}"
        for key, reason in concerned.items():
            info = accounts.get(key)
            if info is None or info["superuser"] or key[0] in allowed or key == own:
                continue  # a role, a superuser, an allowed login, ourselves
            needed.setdefault(key, {})[db] = reason
    lock, extend, already = [], [], []
    for key in sorted(needed):
        user, host = key
        info, dbs = accounts[key], needed[key]
        if not info["locked"]:
            lock.append(
                {
                    "user": user,
                    "host": host,
                    "databases": [db for db in databases if db in dbs],
                    "reasons": [dbs[db] for db in databases if db in dbs],
                    "lock_key": info["lock_key"],
                }
            )
        elif key in recorded:
            extend.extend((db, user, host, dbs[db]) for db in databases if db in dbs and db not in recorded[key])
        else:
            already.append(account_name(user, host))
    return lock, extend, already


def change_entry(user, host, databases, change, reason):
    return {
        "database": databases[0] if databases else None,
        "databases": list(databases),
        "account": account_name(user, host),
        "right": RIGHT,
        "change": change,
        "grantor": None,
        "with_grant_option": None,
        "reason": reason,
    }


def public_entry(database, text, change):
    """A change entry of one grant of PUBLIC (revoked by a drain, granted back by open)."""
    grant = parse_public_grant(text) or {"privileges": text, "target": ""}
    reason = f"PUBLIC's grant on {database}: {text}"
    if change != "revoked":
        reason = f"open: undo of the drain ({reason})"
    entry = change_entry("", "", [database], change, reason)
    entry.update(account=PUBLIC, right=f"{grant['privileges']} ON {grant['target']}", grantor=None)
    entry["with_grant_option"] = bool(grant.get("grant_option"))
    return entry


def _first(pairs):
    """(db, grant) pairs with each grant once (a pattern grant can match several drained databases)."""
    seen, found = set(), []
    for db, text in pairs:
        if text not in seen:
            seen.add(text)
            found.append((db, text))
    return found


def plan_public_restore(databases, rows, lines):
    """The grants of PUBLIC an open of `databases` gives back: [(db, grant_text)].

    `rows`: the record [(db, grant_text, status)]; `lines`: SHOW GRANTS FOR PUBLIC now. A grant
    another drained database still needs stays revoked; one that is there as it was (a pending
    row whose REVOKE never ran) needs nothing.
    """
    others = set(text for db, text, _status in rows if db not in databases)
    present = set(lines)
    wanted = [(db, text) for db, text, _status in rows if db in databases]
    return [(db, text) for db, text in _first(wanted) if text not in others and text not in present]


def plan_unlocks(databases, record_accounts, accounts):
    """What an open of `databases` does with the recorded accounts.

    `record_accounts`: [(db, user, host, status, lock_key, reason)]. Returns (unlock, kept, gone):
    `unlock` [{"user", "host", "databases", "lock_key", "reason"}] to unlock (recorded for these
    databases only, and locked now); `kept` accounts another drained database still needs;
    `gone` recorded as locked but found unlocked or dropped (someone else changed them).
    """
    mine, others = {}, set()
    for db, user, host, status, lock_key, reason in record_accounts:
        key = (_text(user), _text(host))
        if db in databases:
            entry = mine.setdefault(key, {"databases": [], "lock_key": _text(lock_key), "reason": reason, "status": []})
            entry["databases"].append(db)
            entry["status"].append(status)
        else:
            others.add(key)
    unlock, kept, gone = [], [], []
    for key in sorted(mine):
        entry = mine[key]
        info = accounts.get(key)
        if key in others:
            kept.append(account_name(*key))
        elif info is not None and info["locked"]:
            unlock.append(
                {
                    "user": key[0],
                    "host": key[1],
                    "databases": entry["databases"],
                    "lock_key": entry["lock_key"],
                    "reason": entry["reason"],
                }
            )
        elif LOCKED in entry["status"] or info is None:
            gone.append(account_name(*key))
    return unlock, kept, gone


def _account_now(accounts, user, host):
    info = accounts.get((user, host))
    if info is None:
        return "dropped"
    return "locked" if info["locked"] else "unlocked"


def record_entries(database_rows, account_rows_, public_rows=(), accounts=None, public_lines=None):
    """The record as result entries (see RETURN `record`); `public_rows`: [(db, grant_text, status)].

    With `accounts` (account_rows()) and `public_lines` (SHOW GRANTS FOR PUBLIC now), each
    change also says what the server holds at this read (`now`): an account `locked`,
    `unlocked` or `dropped`; a grant of PUBLIC `granted` or `revoked`. A change recorded as
    about to be made (`status: pending`) by a run that died is then settled exactly."""
    entries = []
    for db, drained_at, drained_by in database_rows:
        changes = []
        for row_db, user, host, status, _lock_key, reason in account_rows_:
            if row_db == db:
                entry = change_entry(_text(user), _text(host), [db], "locked", reason)
                entry["status"] = status
                if accounts is not None:
                    entry["now"] = _account_now(accounts, _text(user), _text(host))
                changes.append(entry)
        for row_db, text, status in public_rows:
            if row_db == db:
                entry = dict(public_entry(db, text, "revoked"), status=status)
                if public_lines is not None:
                    entry["now"] = "granted" if text in public_lines else "revoked"
                changes.append(entry)
        entries.append(
            {
                "database": db,
                "drained_at": iso_utc(drained_at) if drained_at is not None else None,
                "drained_by": _text(drained_by),
                "complete": all(change["status"] in (LOCKED, REVOKED) for change in changes),
                "changes": changes,
            }
        )
    return entries


# Databases every server has: not worth naming among what a login sees.
SYSTEM_DATABASES = ("information_schema", "performance_schema", "mysql", "sys", "dbhygiene")
SHOWN_DATABASES = 20


def missing_databases_message(missing, visible, target, flavour, login, sees_all):
    """Why a drain of `missing` stops before any change: the server, what the login sees
    (`visible`: SHOW DATABASES) and what to do. SHOW DATABASES lists only the databases a
    login holds a privilege on, unless it has SHOW DATABASES (or ALL) globally: `sees_all`."""
    names = [name for name in visible if name not in SYSTEM_DATABASES]
    seen = ", ".join(shown(name) for name in names[:SHOWN_DATABASES]) or "none but the system databases"
    if len(names) > SHOWN_DATABASES:
        seen += f" and {len(names) - SHOWN_DATABASES} more"
    asked = ", ".join(shown(name) for name in missing)
    server = f"{'MariaDB' if flavour == MARIADB else 'MySQL'} at {target}"
    if sees_all:
        return (
            f"databases: {asked} not found on {server} (it has: {seen}); check the names "
            "(dbhygiene_drain_databases); nothing was changed"
        )
    account = account_name(*split_account(login))
    return (
        f"databases: {asked} not visible to the login {account} on {server}: SHOW DATABASES lists only the "
        f"databases a login holds a privilege on (it sees: {seen}); if they exist, give the drain's login the "
        f"SHOW DATABASES privilege (GRANT SHOW DATABASES ON *.* TO {account}; a drain's login also locks "
        "accounts, so it is usually an administrator) or check the names (dbhygiene_drain_databases); "
        "nothing was changed"
    )


def _lines(accounts, keys, override=None):
    lines = []
    for key in sorted(keys):
        locked = accounts[key]["locked"] if key in accounts else None
        if override is not None and key in override:
            locked = override[key]
        state = "gone" if locked is None else ("locked" if locked else "unlocked")
        lines.append(f"account {account_name(*key)}: {state}\n")
    return lines


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
        return [(_text(r[0]),) + tuple(r[1:]) for r in databases], [
            (_text(r[0]), _text(r[1]), _text(r[2]), _text(r[3]), _text(r[4]), _text(r[5])) for r in accounts
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
        names = [_text(row[0]) for row in rows]
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
        return [_text(row[0]) for row in self._run(public_grants_query(), "read the grants of PUBLIC")]

    def _public_rows(self):
        """[(db, grant_text, status)] of the record of PUBLIC's grants."""
        if not self._public() or not int(self._run(record_public_exists_query(), "look for the drain record")[0][0]):
            return []
        rows = self._run(record_public_query(), "read the drain record")
        return [(_text(row[0]), _text(row[2]), _text(row[3])) for row in rows]

    def drain(self, request, check_mode):
        """RightsOutcome of draining `request.databases` (check mode: what a real run would lock
        and revoke). A failure once a change was sent raises RightsError (_drain.Progress)."""
        self._check_databases(request.databases)
        accounts = self._accounts()
        self._check_allowed(request.allow_users, accounts)
        holders = dict((db, self._run(holders_query(db), f"read the privileges on {db}")) for db in request.databases)
        edges = [tuple(_text(v) for v in row) for row in self._run(role_edges_query(self.flavour), "read the roles")]
        sessions = dict(
            (db, set(_text(r[0]) for r in self._run(session_users_query(db), f"read the sessions on {db}")))
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
        changes += [public_entry(db, text, "revoked") for db, text in _first(revoke)]
        keys = set((a["user"], a["host"]) for a in lock) | set((u, h) for _db, u, h, _r in extend)
        before = _lines(accounts, keys) + [f"PUBLIC: {text}\n" for _db, text in _first(revoke)]
        after = _lines(accounts, keys, override=dict(((a["user"], a["host"]), True) for a in lock))
        after += [f"PUBLIC: revoked for the window: {text}\n" for _db, text in _first(revoke)]
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
            "public_revoked": [text for _db, text in _first(revoke)],
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
        for db, text in _first(revoke):
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
        before = _lines(accounts, keys) + [f"PUBLIC: revoked for the window: {text}\n" for _db, text in restore]
        after = _lines(accounts, keys, override=dict((key, False) for key in keys))
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
