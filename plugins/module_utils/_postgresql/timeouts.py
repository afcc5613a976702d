# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL's own session timeouts: its variables and units, their statements, the plan.

Private to the collection; no psycopg2 import. ``PostgreSQLTimeouts`` is the engine's
timeouts class the registry names (``_engines.py``: ``_timeouts.engine_timeouts`` finds it
by that name): it reads the current values through the driver (its public ``execute``),
plans every setting in milliseconds, refuses what the server cannot set before any change,
and applies the rest, on the core of ``_timeouts.py`` (the option, the plan's items, the
results). The statement builders return ``(sql, params)``: values are driver parameters;
role and database names are quoted by ``statements.quote_ident``; variable names come from
``PG_VARIABLES``, never from input.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.statements import quote_ident
from ansible_collections.dbhygiene.sessions.plugins.module_utils._timeouts import (
    LEVEL_NAMES,
    OPTION,
    apply_changes,
    cannot_set,
    plan_item,
)

# PostgreSQL: integer milliseconds (INT_MAX at most), 0 = no limit.
PG_VARIABLES = {
    "idle_session": "idle_session_timeout",
    "idle_in_transaction": "idle_in_transaction_session_timeout",
    "statement": "statement_timeout",
}
PG_MAX_MS = 2147483647
PG_MAX_NAME = 63
_PG_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}
_PG_SHOWN_UNITS = (("d", 86400000), ("h", 3600000), ("min", 60000), ("s", 1000))
_PG_VALUE_RE = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]*)?)\s*(us|ms|s|min|h|d)?\s*$")


def check_postgresql(settings):
    """PolicyError for a setting PostgreSQL can never take (before connecting)."""
    for setting in settings:
        if setting.seconds * 1000 > PG_MAX_MS:
            raise cannot_set(setting, "PostgreSQL", f"{PG_VARIABLES[setting.field]} is at most {PG_MAX_MS // 1000}s")
        if setting.target is not None and len(setting.target.encode("utf-8")) > PG_MAX_NAME:
            raise PolicyError(setting.path, setting.target, f"a PostgreSQL name is at most {PG_MAX_NAME} bytes")


# ------------------------------------------------------------------ PostgreSQL values
def pg_ms(text):
    """Milliseconds (int) of a PostgreSQL time setting as written (``5min``, ``300``, ``1.5s``), or None."""
    if text is None:
        return None
    match = _PG_VALUE_RE.match(str(text).strip("'"))
    if not match:
        return None
    number, unit = match.groups()
    return int(round(float(number) * _PG_UNITS_MS[unit or "ms"]))


def pg_text(ms):
    """A millisecond value as PostgreSQL shows it: the largest unit that divides it (``30min``)."""
    if not ms:
        return "0"
    for unit, size in _PG_SHOWN_UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def pg_setconfig(setconfig, variable):
    """The value of `variable` in a pg_db_role_setting.setconfig array (``name=value``), or None."""
    for item in setconfig or []:
        name, _sep, value = str(item).partition("=")
        if name == variable:
            return value
    return None


# ------------------------------------------------------------------ PostgreSQL statements
def pg_known_query(variables):
    """(sql, params): which of `variables` this server has, with their built-in default."""
    return "SELECT name, boot_val FROM pg_settings WHERE name = ANY(%s)", (list(variables),)


def pg_file_query(variables):
    """(sql, params): the server-level values written in the configuration files
    (postgresql.conf, then postgresql.auto.conf: the last line of a name wins)."""
    return (
        "SELECT name, setting FROM pg_file_settings WHERE name = ANY(%s) AND error IS NULL ORDER BY seqno",
        (list(variables),),
    )


def pg_roles_query(names):
    """(sql, params): each role named, with its own settings (all databases)."""
    return (
        "SELECT r.rolname, s.setconfig FROM pg_roles r "
        "LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0 "
        "WHERE r.rolname = ANY(%s)",
        (list(names),),
    )


def pg_databases_query(names):
    """(sql, params): each database named, with its own settings (all roles)."""
    return (
        "SELECT d.datname, s.setconfig FROM pg_database d "
        "LEFT JOIN pg_db_role_setting s ON s.setdatabase = d.oid AND s.setrole = 0 "
        "WHERE d.datname = ANY(%s)",
        (list(names),),
    )


def pg_set_query(level, target, variable, ms):
    """(sql, params): set `variable` to `ms` at `level` (server: ALTER SYSTEM)."""
    if variable not in PG_VARIABLES.values():
        raise ValueError(f"not a timeout variable: {variable!r}")
    value = pg_text(ms)
    if level == "server":
        return f"ALTER SYSTEM SET {variable} = %s", (value,)
    keyword = {"roles": "ROLE", "databases": "DATABASE"}[level]
    if "\x00" in target:
        raise PolicyError(OPTION, target, "a name cannot contain a NUL character")
    return f"ALTER {keyword} {quote_ident(target)} SET {variable} = %s", (value,)


def pg_reload_query():
    return "SELECT pg_reload_conf()", ()


class PostgreSQLTimeouts(object):
    """Plan and apply the settings on one PostgreSQL server (values in milliseconds)."""

    engine = "postgresql"
    check = staticmethod(check_postgresql)

    @staticmethod
    def server_variable(driver, setting):
        """The server variable a server-level setting sets (``_timeouts.check_platform``)."""
        return PG_VARIABLES[setting.field]

    def __init__(self, driver):
        self.driver = driver
        self.persisted = True  # ALTER SYSTEM / ALTER ROLE / ALTER DATABASE are all durable

    @classmethod
    def from_params(cls, driver, params):
        return cls(driver)

    def _rows(self, query, doing):
        return self.driver.execute(query, doing)

    def plan(self, settings):
        """(items, change queries); PolicyError / SessionError before any change."""
        variables = sorted(set(PG_VARIABLES[s.field] for s in settings))
        known = dict(self._rows(pg_known_query(variables), "read which timeouts the server has"))
        for setting in settings:
            variable = PG_VARIABLES[setting.field]
            if variable not in known:
                raise cannot_set(
                    setting, "PostgreSQL", f"this server has no {variable} (idle_session needs PostgreSQL 14 or later)"
                )
        current = {}
        if any(s.level == "server" for s in settings):
            files = dict((name, pg_ms(known[name])) for name in variables)
            for name, text in self._rows(pg_file_query(variables), "read the server's configuration files"):
                files[name] = pg_ms(text)
            current["server"] = {None: files}
        for level, query in (("roles", pg_roles_query), ("databases", pg_databases_query)):
            names = sorted(set(s.target for s in settings if s.level == level))
            if not names:
                continue
            rows = self._rows(query(names), f"read the settings of the {level} named")
            found = dict((row[0], row[1]) for row in rows)
            for setting in settings:
                if setting.level == level and setting.target not in found:
                    raise PolicyError(
                        setting.path,
                        setting.target,
                        f"no {LEVEL_NAMES[level]} {setting.target!r} on PostgreSQL at {self.driver.target}",
                    )
            current[level] = dict(
                (name, dict((v, pg_ms(pg_setconfig(config, v))) for v in variables)) for name, config in found.items()
            )
        items, queries = [], []
        for setting in settings:
            variable = PG_VARIABLES[setting.field]
            now = current[setting.level][setting.target][variable]
            wanted = setting.seconds * 1000
            item = plan_item(
                setting,
                variable,
                setting.target,
                now,
                wanted,
                None if now is None else pg_text(now),
                pg_text(wanted),
            )
            items.append(item)
            if item["changed"]:
                queries.append(pg_set_query(setting.level, setting.target, variable, wanted))
        if any(q[0].startswith("ALTER SYSTEM") for q in queries):
            queries.append(pg_reload_query())
        return items, queries

    def apply(self, queries):
        apply_changes(self.driver.execute, queries)
