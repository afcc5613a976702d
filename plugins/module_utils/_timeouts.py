# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prevention: the engines' own session timeouts, reconciled from one structure.

``parse_timeouts`` validates the ``timeouts`` option (docs/architecture.md "Change windows",
prevention) before any connection; each engine's timeouts class (the registry names it:
``_postgresql/timeouts.py`` ``PostgreSQLTimeouts``, ``MySQLTimeouts`` below) reads
the current values through an engine driver (its public ``execute``), plan every
setting in the engine's own unit, refuse what the engine cannot set before any
change, and apply the rest; ``run_timeouts_module`` is the whole ``main()`` of the
``*_timeouts`` modules (and of the role's in-process run).

The statement builders return ``(sql, params)``: values are driver parameters;
the only identifiers (role and database names, PostgreSQL) are quoted by
``_postgresql.statements.quote_ident``; variable names come from the tables below, never from input.

No AnsibleModule import, no database driver import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import os
import re
import tempfile

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _engines, _platform
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import failed_statement
from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import parse_duration
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError, SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql_flavours import split_roles_key

FIELDS = ("idle_session", "idle_in_transaction", "statement")
LEVELS = ("server", "roles", "databases")
# Singular level names as results and the trail show them.
LEVEL_NAMES = {"server": "server", "roles": "role", "databases": "database"}
OPTION = "timeouts"

# MariaDB: seconds (max_statement_time a float), 31536000 at most.
MARIADB_VARIABLES = {
    "idle_session": "wait_timeout",
    "idle_in_transaction": "idle_transaction_timeout",
    "statement": "max_statement_time",
}
# MySQL 8: wait_timeout in seconds; max_execution_time in milliseconds (SELECT only);
# no idle-in-transaction limit.
MYSQL_VARIABLES = {"idle_session": "wait_timeout", "statement": "max_execution_time"}
MYSQL_MAX_SECONDS = 31536000
MYSQL_MAX_EXECUTION_MS = 4294967295
# Variables that cannot be 0 ("no limit"): the server's range starts at 1.
NO_ZERO = frozenset(["wait_timeout"])

_PLACEHOLDER_RE = re.compile(r"(%%|%s)")

PERSIST_HEADER = (
    "# Written by dbhygiene.sessions (role timeouts / mysql_timeouts persist_file): the server-level\n"
    "# timeouts, read at server start. Edits here are replaced on the next run.\n"
)


# ------------------------------------------------------------------ the option
class Setting(object):
    """One wanted value: level (server / roles / databases), target name (None for the
    server), field (idle_session ...) and seconds (0 = no limit)."""

    def __init__(self, level, target, field, seconds):
        self.level = level
        self.target = target
        self.field = field
        self.seconds = seconds

    @property
    def path(self):
        """Where it was given, for messages: timeouts.roles.app.statement."""
        if self.target is None:
            return f"{OPTION}.{self.level}.{self.field}"
        return f"{OPTION}.{self.level}.{self.target}.{self.field}"

    def __repr__(self):
        return f"Setting({self.path}={self.seconds})"


def _mapping(raw, field, allowed=None):
    if not isinstance(raw, dict):
        what = f"a mapping with keys {', '.join(allowed)}" if allowed else "a mapping of names"
        raise PolicyError(field, raw, f"expected {what}, got {raw!r}")
    if allowed:
        for key in raw:
            if key not in allowed:
                raise PolicyError(f"{field}.{key}", key, f"unknown key {key!r} (allowed: {', '.join(allowed)})")
    return raw


def _fields(raw, level, target, field):
    settings = []
    for name, value in _mapping(raw, field, FIELDS).items():
        if value is None:
            continue  # not managed at this level
        where = f"{field}.{name}"
        settings.append(Setting(level, target, name, parse_duration(value, where)))
    return settings


def parse_timeouts(raw):
    """The wanted settings (list of Setting) of the ``timeouts`` option, or PolicyError.

    ``{server: {idle_session: 30m, ...}, roles: {app: {...}}, databases: {billing: {...}}}``;
    durations as in the policy (0 / ``0s``: no limit); a field left out or null is not managed.
    """
    _mapping(raw, OPTION, LEVELS)
    settings = []
    for level in LEVELS:
        value = raw.get(level)
        if value is None:
            continue
        field = f"{OPTION}.{level}"
        if level == "server":
            settings.extend(_fields(value, level, None, field))
            continue
        for name, fields in _mapping(value, field).items():
            if not isinstance(name, str) or not name.strip():
                raise PolicyError(field, name, f"a {LEVEL_NAMES[level]} name must be a non-empty string, got {name!r}")
            settings.extend(_fields(fields, level, name, f"{field}.{name}"))
    if not settings:
        raise PolicyError(OPTION, raw, "nothing to set: give at least one duration under server, roles or databases")
    return settings


class ApplyError(SessionError):
    """A change failed after others were made: `done` lists the statements that ran."""

    def __init__(self, message, done):
        SessionError.__init__(self, message)
        self.done = done


def _apply(execute, queries):
    done = []
    for query in queries:
        try:
            execute(query, f"run {shown_query(query)}")
        except SessionError as exc:
            if not done:
                raise
            raise ApplyError(f"{exc}; changed before it: {'; '.join(done)}", done)
        done.append(shown_query(query))
    return done


def _cannot(setting, engine, why):
    return PolicyError(setting.path, setting.seconds, f"{engine} cannot set this: {why}")


def check_mysql(settings):
    """PolicyError for a setting neither MySQL nor MariaDB can take (before connecting)."""
    for setting in settings:
        if setting.level == "databases":
            raise _cannot(
                setting,
                "MySQL/MariaDB",
                "there are no per-database timeouts; set it under server (or, for statement, per user under roles)",
            )
        if setting.level == "roles" and setting.field != "statement":
            raise _cannot(
                setting,
                "MySQL/MariaDB",
                f"there is no per-user {setting.field} timeout ({MARIADB_VARIABLES[setting.field]} is global or per "
                "session only); set it under server",
            )
        if setting.seconds > MYSQL_MAX_SECONDS:
            raise _cannot(setting, "MySQL/MariaDB", f"the limit is at most {MYSQL_MAX_SECONDS}s (365 days)")
        if setting.level == "server" and setting.field == "idle_session" and setting.seconds == 0:
            raise _cannot(
                setting,
                "MySQL/MariaDB",
                f"wait_timeout has no 'no limit' value (1 to {MYSQL_MAX_SECONDS} seconds); give a duration instead",
            )


def checked_settings(raw, engine):
    """`dbhygiene_timeouts` parsed and checked against what `engine` can ever set: the
    settings, or a PolicyError naming the field (before any connection)."""
    settings = parse_timeouts(raw)
    engine_timeouts(engine).check(settings)
    return settings


# ------------------------------------------------------------------ MySQL / MariaDB statements
def mysql_variables_query(variables):
    """(sql, params): the global values of `variables` (those the server has)."""
    marks = ", ".join(["%s"] * len(variables))
    return f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({marks})", tuple(variables)


def mysql_set_global_query(flavour, variable, value):
    """(sql, params): MariaDB SET GLOBAL (lasts until restart); MySQL 8 SET PERSIST (survives it)."""
    if variable not in set(MARIADB_VARIABLES.values()) | set(MYSQL_VARIABLES.values()):
        raise ValueError(f"not a timeout variable: {variable!r}")
    scope = "PERSIST" if flavour == "mysql" else "GLOBAL"
    return f"SET {scope} {variable} = %s", (value,)


def mariadb_users_query(name):
    """(sql, params): the accounts a roles key names, with their MAX_STATEMENT_TIME."""
    user, host = split_roles_key(name)
    if host is None:
        return "SELECT User, Host, max_statement_time FROM mysql.user WHERE User = %s ORDER BY Host", (user,)
    return (
        "SELECT User, Host, max_statement_time FROM mysql.user WHERE User = %s AND Host = %s ORDER BY Host",
        (user, host),
    )


def mariadb_user_statement_query(user, host, seconds):
    """(sql, params): an account's MAX_STATEMENT_TIME resource limit (0: none of its own)."""
    return "ALTER USER %s@%s WITH MAX_STATEMENT_TIME %s", (user, host, float(seconds))


def persist_text(values):
    """The option file that keeps the server-level values over a restart: {variable: value}."""
    lines = [PERSIST_HEADER, "[mysqld]\n"]
    for variable in sorted(values):
        lines.append(f"{variable} = {mysql_value_text(values[variable])}\n")
    return "".join(lines)


def mysql_value_text(value):
    """A value as the server takes it in a statement or an option file (7200.0 as 7200)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shown_query(query):
    """A statement with its parameters filled in, for results and diffs (no value here is a secret)."""
    sql, params = query

    def literal(value):
        if isinstance(value, (int, float)):
            return mysql_value_text(value)
        return "'" + str(value).replace("'", "''") + "'"

    values = list(params)
    if sum(1 for token in _PLACEHOLDER_RE.findall(sql) if token == "%s") != len(values):
        return sql
    pieces = []
    for token in _PLACEHOLDER_RE.split(sql):
        if token == "%%":
            pieces.append("%")
        elif token == "%s":
            pieces.append(literal(values.pop(0)))
        else:
            pieces.append(token)
    return "".join(pieces)


# ------------------------------------------------------------------ plans
def _item(setting, variable, target, current, wanted, shown_current, shown_wanted):
    return {
        "level": LEVEL_NAMES[setting.level],
        "target": target,
        "field": setting.field,
        "variable": variable,
        "current": current,
        "wanted": wanted,
        "current_text": shown_current,
        "wanted_text": shown_wanted,
        "changed": current != wanted,
        "given_as": setting.path,
    }


def mysql_variable(flavour, setting):
    """The server variable of a server-level setting on `flavour` (mysql / mariadb), or PolicyError."""
    table = MYSQL_VARIABLES if flavour == "mysql" else MARIADB_VARIABLES
    variable = table.get(setting.field)
    if variable is None:
        raise _cannot(
            setting, "MySQL", "MySQL has no idle-in-transaction timeout (MariaDB has idle_transaction_timeout)"
        )
    return variable


def mysql_wanted(variable, seconds):
    """Seconds in the variable's own unit: max_execution_time ms, max_statement_time a float."""
    if variable == "max_execution_time":
        return seconds * 1000
    if variable == "max_statement_time":
        return float(seconds)
    return int(seconds)


def check_flavour(settings, flavour):
    """PolicyError for a setting this flavour cannot take (known once connected)."""
    for setting in settings:
        if setting.level == "roles" and flavour == "mysql":
            raise _cannot(setting, "MySQL", "MySQL has no per-user statement limit (MariaDB has MAX_STATEMENT_TIME)")
        if setting.level == "server":
            variable = mysql_variable(flavour, setting)
            if variable == "max_execution_time" and setting.seconds * 1000 > MYSQL_MAX_EXECUTION_MS:
                raise _cannot(setting, "MySQL", f"max_execution_time is at most {MYSQL_MAX_EXECUTION_MS} ms")


def mysql_persisted_query(variables):
    """(sql, params), MySQL 8: the values SET PERSIST wrote (mysqld-auto.cnf)."""
    marks = ", ".join(["%s"] * len(variables))
    return (
        f"SELECT VARIABLE_NAME, VARIABLE_VALUE FROM performance_schema.persisted_variables "
        f"WHERE VARIABLE_NAME IN ({marks})",
        tuple(variables),
    )


class MySQLTimeouts(object):
    """Plan and apply the settings on one MySQL / MariaDB server (engine units)."""

    engine = "mysql"
    check = staticmethod(check_mysql)

    def __init__(self, driver, persist_file=None):
        self.driver = driver
        self.flavour = driver.flavour.name
        self.persist_file = persist_file if self.flavour != "mysql" else None
        self.persisted = True
        self.persist_change = None  # (before text or None, after text) when the file changes

    @classmethod
    def from_params(cls, driver, params):
        return cls(driver, params.get("persist_file"))

    def _rows(self, query, doing):
        return self.driver.execute(query, doing)

    def plan(self, settings):
        check_flavour(settings, self.flavour)
        server = [s for s in settings if s.level == "server"]
        users = [s for s in settings if s.level == "roles"]
        variables = sorted(set(mysql_variable(self.flavour, s) for s in server))
        values, persisted = {}, {}
        if variables:
            values = dict(self._rows(mysql_variables_query(variables), "read the global timeouts"))
            if self.flavour == "mysql":
                rows = self._rows(mysql_persisted_query(variables), "read the persisted variables")
                persisted = dict((name.lower(), value) for name, value in rows)
        items, queries = [], []
        for setting in server:
            variable = mysql_variable(self.flavour, setting)
            if variable not in values:
                raise _cannot(
                    setting, self.driver.flavour.label, f"this server has no {variable} (MariaDB 10.3 or later has it)"
                )
            now = _number(values[variable], variable)
            wanted = mysql_wanted(variable, setting.seconds)
            shown = mysql_value_text(now)
            item = _item(setting, variable, None, now, wanted, shown, mysql_value_text(wanted))
            if self.flavour == "mysql":
                kept = persisted.get(variable)
                if kept is None or _number(kept, variable) != wanted:
                    # The running value may be right and still be lost at the next restart.
                    item["changed"] = True
                    item["current_text"] = f"{shown} (persisted: {'none' if kept is None else kept})"
            items.append(item)
            if item["changed"]:
                queries.append(mysql_set_global_query(self.flavour, variable, wanted))
        for setting in users:
            rows = self._rows(mariadb_users_query(setting.target), f"read the accounts named {setting.target}")
            if not rows:
                raise PolicyError(
                    setting.path, setting.target, f"no account {setting.target!r} on MariaDB at {self.driver.target}"
                )
            for user, host, now in rows:
                now = float(now or 0)
                wanted = float(setting.seconds)
                target = f"{user}@{host}"
                item = _item(
                    setting, "max_statement_time", target, now, wanted, mysql_value_text(now), mysql_value_text(wanted)
                )
                items.append(item)
                if item["changed"]:
                    queries.append(mariadb_user_statement_query(user, host, setting.seconds))
        if server and self.flavour != "mysql":
            # MariaDB has no SET PERSIST: the option file is what keeps the values over a restart.
            self.persisted = bool(self.persist_file)
            if self.persist_file:
                wanted_file = persist_text(dict((i["variable"], i["wanted"]) for i in items if i["level"] == "server"))
                before = _read_text(self.persist_file)
                if before != wanted_file:
                    self.persist_change = (before, wanted_file)
        return items, queries

    def apply(self, queries):
        done = _apply(self.driver.execute, queries)
        if self.persist_change:
            try:
                write_file(self.persist_file, self.persist_change[1])
            except OSError as exc:
                what = f"; changed before it: {'; '.join(done)}" if done else ""
                raise ApplyError(f"cannot write persist_file {self.persist_file}: {exc}{what}", done)


def _number(text, variable):
    value = float(text)
    if variable == "max_statement_time":
        return value
    return int(value)


def _read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def write_file(path, text):
    """Replace `path` atomically (mode 0644: the server reads it), its directory must exist."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".dbhygiene-timeouts-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.rename(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# ------------------------------------------------------------------ results
def _line(item, value):
    where = item["level"] if item["target"] is None else f"{item['level']} {item['target']}"
    return f"{where}: {item['variable']} = {value}\n"


def diff_of(items, target, persist_change=None, persist_file=None):
    """Ansible's diff: every managed value, current and wanted."""
    before = "".join(_line(i, i["current_text"] if i["current_text"] is not None else "(not set)") for i in items)
    after = "".join(_line(i, i["wanted_text"]) for i in items)
    diffs = [
        {"before_header": f"{target} (current)", "after_header": f"{target} (wanted)", "before": before, "after": after}
    ]
    if persist_change:
        diffs.append(
            {
                "before_header": persist_file,
                "after_header": persist_file,
                "before": persist_change[0] or "",
                "after": persist_change[1],
            }
        )
    return diffs


def reconcile(engine_timeouts, settings, check_mode, diff=False):
    """Plan, then (unless check mode) apply: the module's result."""
    items, queries = engine_timeouts.plan(settings)
    persist_change = getattr(engine_timeouts, "persist_change", None)
    if not check_mode:
        engine_timeouts.apply(queries)
    result = {
        "changed": bool(queries or persist_change),
        "settings": items,
        "queries": [shown_query(q) for q in queries],
        "persisted": engine_timeouts.persisted,
        "check_mode": bool(check_mode),
    }
    persist_file = getattr(engine_timeouts, "persist_file", None)
    if persist_file:
        result["persist_file"] = persist_file
        result["persist_file_changed"] = bool(persist_change)
    if diff:
        result["diff"] = diff_of(items, engine_timeouts.driver.target, persist_change, persist_file)
    return result


def check_platform(driver, settings):
    """PolicyError (before any change) when server-level values are asked on a managed platform,
    which refuses ALTER SYSTEM / SET GLOBAL: it names the parameter group / flag to set instead."""
    server = [s for s in settings if s.level == "server"]
    if not server or not driver.managed:
        return

    def variable_of(setting):
        if driver.engine == "postgresql":
            return engine_timeouts(driver.engine).server_variable(driver, setting)
        return mysql_variable(driver.flavour.name, setting)

    message = _platform.server_level_refusal(driver.platform, driver.engine, server, variable_of)
    raise PolicyError(f"{OPTION}.server", None, message)


# The package of the files the registry names (``Engine.timeouts_class``: ``<file>.<class>``).
_MODULE_UTILS = __name__.rpartition(".")[0]


def engine_timeouts(engine):
    """The class that plans and applies `engine`'s timeouts (``check(settings)`` before any
    connection, ``from_params(driver, params)``), as the engine registry names it: imported
    by name (this core imports no engine's file; the ``<engine>_timeouts`` module imports its
    engine's, so that AnsiballZ ships it)."""
    module, _sep, name = _engines.engine(engine).timeouts_class.rpartition(".")
    return getattr(importlib.import_module(f"{_MODULE_UTILS}.{module}"), name)


def argument_spec(engine):
    """Options of the `<engine>_timeouts` module besides the connection: ``timeouts`` and the
    engine's own (the registry's ``timeouts_options``: MySQL / MariaDB ``persist_file``)."""
    spec = dict(timeouts=dict(type="dict", required=True))
    spec.update(_engines.engine(engine).timeouts_spec())
    return spec


def run_timeouts_module(module, engine, open_driver):
    """The whole main() of a *_timeouts module (engine: postgresql or mysql)."""
    params = module.params
    try:
        settings = checked_settings(params["timeouts"], engine)
    except PolicyError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    driver = None
    try:
        driver = open_driver(params)
        check_platform(driver, settings)
        timeouts = engine_timeouts(engine).from_params(driver, params)
        result = reconcile(timeouts, settings, module.check_mode, diff=module._diff)
    except PolicyError as exc:
        module.fail_json(msg=f"{exc} (on {driver.target}; nothing was changed)", field=exc.field)
    except ApplyError as exc:
        module.fail_json(msg=str(exc), changed=True, queries=exc.done, **failed_statement(exc))
    except (SessionError, OSError) as exc:
        module.fail_json(msg=str(exc), **failed_statement(exc))
    finally:
        if driver is not None:
            driver.close()
    if not result["persisted"] and result["changed"]:
        result["warnings"] = [
            "MariaDB has no SET PERSIST: the server-level timeouts set with SET GLOBAL last until the server "
            "restarts; give persist_file (role: dbhygiene_timeouts_persist_file), an option file the server "
            "reads on the database host, to keep them"
        ]
    module.exit_json(**result)
