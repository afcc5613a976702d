# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prevention: the engines' own session timeouts, reconciled from one structure.

``parse_timeouts`` validates the ``timeouts`` option (docs/architecture.md "Change windows",
prevention) before any connection; each engine's timeouts class (the registry names it:
``_postgresql/timeouts.py`` ``PostgreSQLTimeouts``, ``_mysql/timeouts.py`` ``MySQLTimeouts``) reads
the current values through an engine driver (its public ``execute``), plan every
setting in the engine's own unit, refuse what the engine cannot set before any
change, and apply the rest; ``run_timeouts_module`` is the whole ``main()`` of the
``*_timeouts`` modules (and of the role's in-process run).

The engines' statement builders (in their ``timeouts.py``) return ``(sql, params)``: values are
driver parameters; the only identifiers (role and database names, PostgreSQL) are quoted by
``_postgresql.statements.quote_ident``; variable names come from the engines' tables, never
from input.

No AnsibleModule import, no database driver import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import re

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _engines, _platform
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import failed_statement
from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import parse_duration
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError, SessionError

FIELDS = ("idle_session", "idle_in_transaction", "statement")
LEVELS = ("server", "roles", "databases")
# Singular level names as results and the trail show them.
LEVEL_NAMES = {"server": "server", "roles": "role", "databases": "database"}
OPTION = "timeouts"

_PLACEHOLDER_RE = re.compile(r"(%%|%s)")


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


def apply_changes(execute, queries):
    """Run the change `queries` in order with `execute` (a driver's): the statements run, shown;
    ApplyError (with those) when one fails after others were made."""
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


def cannot_set(setting, engine, why):
    """The PolicyError of a setting `engine` cannot take, naming its field and value."""
    return PolicyError(setting.path, setting.seconds, f"{engine} cannot set this: {why}")


def checked_settings(raw, engine):
    """`dbhygiene_timeouts` parsed and checked against what `engine` can ever set: the
    settings, or a PolicyError naming the field (before any connection)."""
    settings = parse_timeouts(raw)
    engine_timeouts(engine).check(settings)
    return settings


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
def plan_item(setting, variable, target, current, wanted, shown_current, shown_wanted):
    """One setting's entry of the plan (the module's `settings`): where, the variable, both values."""
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
        return engine_timeouts(driver.engine).server_variable(driver, setting)

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
