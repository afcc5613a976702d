# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The statements of the PostgreSQL drain: read, change and record the CONNECT privilege.

Private to the collection; pure (no psycopg2, no connection): every builder returns
``(sql, params)`` with the values as driver parameters, and is unit tested without a
server (tests/unit/plugins/module_utils/test_postgresql_drain_statements.py).
``drain.PostgreSQLRights`` runs them through the driver (``PostgreSQLDriver.execute``);
what they do, and why a drain or an open is ONE transaction, is said in ``drain``.

Identifiers cannot be parameters: they are quoted by ``statements.quote_ident``, a
``%`` in them doubled, because every statement is sent with parameters.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.statements import (
    SIGNAL_FUNCTIONS,
    parse_key,
    quote_ident,
)

RECORD_SCHEMA = "dbhygiene"
RECORD_TABLE = "dbhygiene.drain"
PUBLIC = "PUBLIC"
RIGHT = "CONNECT"
# The record lives in a table of the database the drain logged in to; each drained database
# points to it with this setting (pg_db_role_setting is a shared catalog: read from any
# database), so that a run logged in to another database finds where the record is.
POINTER = "dbhygiene.drain_record"


def _grantee(name):
    return PUBLIC if name == PUBLIC else quote_ident(name)


# ---------------------------------------------------------------- reading
_SUPERUSER_SQL = "SELECT rolsuper, current_user::text FROM pg_catalog.pg_roles WHERE rolname = current_user"

# The roles our login may SET ROLE to (PostgreSQL 16+: the SET option of a membership; before: membership).
_ACTABLE_SQL = "SELECT rolname::text FROM pg_catalog.pg_roles WHERE pg_catalog.pg_has_role(current_user, oid, %(mode)s)"

_ROLES_SQL = "SELECT rolname::text, rolsuper FROM pg_catalog.pg_roles WHERE rolname = ANY(%(names)s::text[])"

# Every CONNECT item of each database, in datacl order (the default rights when datacl is NULL).
_DATABASES_SQL = """SELECT d.datname::text, d.datacl::text, pg_catalog.pg_get_userbyid(d.datdba)::text,
  coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_array(
      CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END,
      pg_catalog.pg_get_userbyid(a.grantor)::text, a.is_grantable, coalesce(r.rolsuper, false)) ORDER BY a.n)
    FROM pg_catalog.aclexplode(coalesce(d.datacl, pg_catalog.acldefault('d', d.datdba)))
      WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n)
    LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
    WHERE a.privilege_type = 'CONNECT'), '[]')::text
FROM pg_catalog.pg_database d WHERE d.datname = ANY(%(names)s::text[]) ORDER BY d.datname"""

_RECORD_EXISTS_SQL = "SELECT pg_catalog.to_regclass(%(table)s) IS NOT NULL"

# Every drained database of the server and the database whose dbhygiene.drain records it.
_POINTERS_SQL = """SELECT d.datname::text, pg_catalog.substr(c, pg_catalog.length(%(prefix)s) + 1)
FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase,
  pg_catalog.unnest(s.setconfig) AS c
WHERE s.setrole = 0 AND pg_catalog.left(c, pg_catalog.length(%(prefix)s)) = %(prefix)s ORDER BY 1"""
_HERE_SQL = "SELECT pg_catalog.current_database()::text"

_RECORD_SQL = (
    "SELECT database, drained_at, drained_by, acl_before, acl_after, exact, changes::text "
    "FROM dbhygiene.drain ORDER BY database"
)

_ENSURE_RECORD_SQL = """CREATE SCHEMA IF NOT EXISTS dbhygiene;
CREATE TABLE IF NOT EXISTS dbhygiene.drain (
  database text PRIMARY KEY,
  drained_at timestamptz NOT NULL DEFAULT now(),
  drained_by text NOT NULL DEFAULT current_user,
  acl_before text,
  acl_after text,
  exact boolean NOT NULL DEFAULT true,
  changes jsonb NOT NULL DEFAULT '[]');
SELECT %(table)s::text"""

# ---------------------------------------------------------------- changing
# The first drain keeps datacl as it was; a later one keeps the first row.
_RECORD_BEGIN_SQL = (
    "INSERT INTO dbhygiene.drain (database, acl_before) "
    "SELECT datname::text, datacl::text FROM pg_catalog.pg_database WHERE datname = %(db{n})s "
    "ON CONFLICT (database) DO NOTHING"
)
# A later drain that changes more (someone granted CONNECT during the window) makes the
# byte-for-byte restore wrong: it would drop that grant. Such a record is undone change by change.
_RECORD_END_SQL = (
    "UPDATE dbhygiene.drain SET acl_after = (SELECT datacl::text FROM pg_catalog.pg_database "
    "WHERE datname = %(db{n})s), changes = changes || %(changes{n})s::jsonb, "
    "exact = exact AND (acl_after IS NULL OR %(changes{n})s::jsonb = '[]'::jsonb) "
    "WHERE database = %(db{n})s"
)
_REVOKE_SQL = "REVOKE CONNECT ON DATABASE {db} FROM {grantee}"
_GRANT_SQL = "GRANT CONNECT ON DATABASE {db} TO {grantee}{option}"
_AS_SQL = "SET ROLE {role}"
_RESET_SQL = "RESET ROLE"
_POINT_SQL = "ALTER DATABASE {db} SET dbhygiene.drain_record = %(here)s"
_UNPOINT_SQL = "ALTER DATABASE {db} RESET dbhygiene.drain_record"
# A drain's one end, no guard but the session's identity: a drain ends its targets whatever their state.
_END_ONE_SQL = (
    "SELECT pg_catalog.{signal}(pid) FROM pg_catalog.pg_stat_activity "
    "WHERE pid = %(pid)s AND backend_start = %(started)s::timestamptz"
)
# The exact restore, only while datacl is still what the drain left (else the transaction fails,
# saying so: a cast of a text that names the row, so that the planner cannot fold it ahead). The
# recorded changes are undone first with GRANT / REVOKE, which keep the roles' shared
# dependencies (pg_shdepend) right; then datacl is written back byte for byte (the same entries,
# in their order); the record and its pointer go with it.
_RESTORE_CHECK_SQL = (
    "SELECT CASE WHEN datacl::text IS NOT DISTINCT FROM %(after)s THEN 1 "
    "ELSE pg_catalog.int4('the rights of ' || datname || ' changed while open ran: run open again') END "
    "FROM pg_catalog.pg_database WHERE datname = %(db)s"
)
_RESTORE_SQL = "UPDATE pg_catalog.pg_database SET datacl = %(before)s::aclitem[] WHERE datname = %(db)s"
_SAME_GRANTS_SQL = (
    "SELECT (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(coalesce(d.datacl, "
    "pg_catalog.acldefault('d', d.datdba))) a) = (SELECT array_agg(b::text ORDER BY b::text) "
    "FROM unnest(coalesce(%(before)s::aclitem[], pg_catalog.acldefault('d', d.datdba))) b) "
    "FROM pg_catalog.pg_database d WHERE d.datname = %(db)s"
)
_RESTORE_FORGET_SQL = "DELETE FROM dbhygiene.drain WHERE database = %(db)s"
_FORGET_SQL = "DELETE FROM dbhygiene.drain WHERE database = %(db{n})s"


def superuser_query():
    """(sql, params): whether our login is a superuser, and its name."""
    return _SUPERUSER_SQL, {}


def actable_query(version_num):
    """(sql, params): the roles our login may act as (SET ROLE), itself included."""
    return _ACTABLE_SQL, {"mode": "SET" if version_num >= 160000 else "MEMBER"}


def roles_query(names):
    """(sql, params): (name, superuser) of the roles among `names` that exist."""
    return _ROLES_SQL, {"names": list(names)}


def databases_query(names):
    """(sql, params): per database: name, datacl text (None = default), owner, CONNECT items (JSON text,
    [grantee, grantor, grantable, grantee is superuser] in datacl order)."""
    return _DATABASES_SQL, {"names": list(names)}


def record_exists_query():
    """(sql, params): whether the record table exists (check mode never creates it)."""
    return _RECORD_EXISTS_SQL, {"table": RECORD_TABLE}


def ensure_record_query():
    """(sql, params): make the record's schema and table if they are not there."""
    return _ENSURE_RECORD_SQL, {"table": RECORD_TABLE}


def record_query():
    """(sql, params): every row of the record."""
    return _RECORD_SQL, {}


def _statement(change, undo=False):
    """The SQL of one change (as the role that granted it), or of its undoing."""
    database = quote_ident(change["database"])
    grantee = _grantee(change["account"])
    revoke = (change["change"] == "revoked") != undo
    if revoke:
        sql = _REVOKE_SQL.format(db=database, grantee=grantee)
    else:
        option = " WITH GRANT OPTION" if change.get("with_grant_option") else ""
        sql = _GRANT_SQL.format(db=database, grantee=grantee, option=option)
    return f"{_AS_SQL.format(role=quote_ident(change['grantor']))};\n{sql};\n{_RESET_SQL}"


def drain_query(plans, here, point=True):
    """(sql, params): ONE transaction that records and applies the plans of every database.

    `plans`: [(database, [change, ...])] (plan_drain). A database without changes is
    recorded too (it is drained: `open` must find it). `here`: the database the record is
    in (each drained database points to it, POINTER, unless not `point`: only a superuser
    may set a custom parameter of a database).
    """
    parts, params = [], {"here": here}
    for n, (database, changes) in enumerate(plans):
        params[f"db{n}"] = database
        params[f"changes{n}"] = json.dumps(changes, sort_keys=True)
        parts.append(_RECORD_BEGIN_SQL.format(n=n))
        if point:
            parts.append(_POINT_SQL.format(db=quote_ident(database)))
        parts.extend(_statement(change) for change in changes)
        parts.append(_RECORD_END_SQL.format(n=n))
    if not parts:
        raise ValueError("nothing to drain")
    parts.append("SELECT count(*) FROM dbhygiene.drain")
    return ";\n".join(parts), params


def restore_query(database, before, after, changes=()):
    """(sql, params): ONE transaction that, if datacl is still `after`, undoes the recorded
    `changes` (last first: the roles' dependencies follow), writes datacl back byte for byte as
    `before`, and forgets the record and its pointer; it fails, saying why, when datacl changed."""
    parts = [_RESTORE_CHECK_SQL]
    parts.extend(_statement(change, undo=True) for change in reversed(changes))
    parts += [_RESTORE_SQL, _RESTORE_FORGET_SQL, _UNPOINT_SQL.format(db=quote_ident(database)), "SELECT 1"]
    return ";\n".join(parts), {"db": database, "before": before, "after": after}


def undo_query(plans, gone=()):
    """(sql, params): ONE transaction that undoes the recorded changes (last first) and forgets the record
    (and the pointer to it, but of the databases `gone`: dropped, and their settings with them).

    `plans`: [(database, [recorded change, ...])] in the order they were made.
    """
    parts, params = [], {}
    for n, (database, changes) in enumerate(plans):
        params[f"db{n}"] = database
        parts.extend(_statement(change, undo=True) for change in reversed(changes))
        parts.append(_FORGET_SQL.format(n=n))
        if database not in gone:
            parts.append(_UNPOINT_SQL.format(db=quote_ident(database)))
    if not parts:
        raise ValueError("nothing to open")
    parts.append("SELECT count(*) FROM dbhygiene.drain")
    return ";\n".join(parts), params


def same_grants_query(database, before):
    """(sql, params): whether `database` has the same privilege items as `before` (a datacl
    text, None: the defaults), in any order."""
    return _SAME_GRANTS_SQL, {"db": database, "before": before}


def pointers_query():
    """(sql, params): (drained database, database of its record) of every pointer on the server."""
    return _POINTERS_SQL, {"prefix": POINTER + "="}


def here_query():
    """(sql, params): the database we are logged in to."""
    return _HERE_SQL, {}


def unpoint_query(database):
    """(sql, params): take the pointer of `database` away (its record is gone)."""
    return _UNPOINT_SQL.format(db=quote_ident(database)), {}


def end_one_query(session, mode):
    """(sql, params): cancel or terminate one session of a drain, if it is still that session
    (pid and backend_start from its key); one row (true) when the signal went out."""
    if mode not in SIGNAL_FUNCTIONS:
        raise ValueError(f"mode must be terminate or cancel, not {mode!r}")
    pid, started = parse_key(session.get("key"))
    return _END_ONE_SQL.format(signal=SIGNAL_FUNCTIONS[mode]), {"pid": pid, "started": started}


def query_templates():
    """The drain's statements, as templates (placeholders, never values)."""
    return [
        _POINTERS_SQL,
        _HERE_SQL,
        _POINT_SQL,
        _UNPOINT_SQL,
        _END_ONE_SQL.format(signal=SIGNAL_FUNCTIONS["cancel"]),
        _END_ONE_SQL.format(signal=SIGNAL_FUNCTIONS["terminate"]),
        _SUPERUSER_SQL,
        _ROLES_SQL,
        _DATABASES_SQL,
        _RECORD_EXISTS_SQL,
        _ENSURE_RECORD_SQL,
        _RECORD_SQL,
        _RECORD_BEGIN_SQL.format(n=""),
        _AS_SQL,
        _REVOKE_SQL,
        _GRANT_SQL.format(db="{db}", grantee="{grantee}", option="[ WITH GRANT OPTION]"),
        _RESET_SQL,
        _RECORD_END_SQL.format(n=""),
        _RESTORE_CHECK_SQL,
        _RESTORE_SQL,
        _RESTORE_FORGET_SQL,
        _FORGET_SQL.format(n=""),
        _ACTABLE_SQL,
        _SAME_GRANTS_SQL,
    ]
