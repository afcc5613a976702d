# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The statements of the MySQL / MariaDB drain: account locks, the PUBLIC grants MariaDB
revokes, and their record on the server (``dbhygiene.drain_*``).

Private to the collection; no PyMySQL import. The builders return ``(sql, params)`` and are
unit tested without a server; ``drain.MySQLRights`` runs them through the driver
(``MySQLDriver.execute``). See ``drain.py`` for the order that makes every interruption
openable exactly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

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
