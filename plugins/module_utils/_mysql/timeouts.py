# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MySQL / MariaDB timeouts: the engine's part of the ``*_timeouts`` modules
(``_timeouts.py`` is the core: the option, the plan's items, applying, the result).

``MySQLTimeouts`` reads the global values through the driver (its public ``execute``),
plans every setting in the variable's own unit (wait_timeout seconds, MySQL 8's
max_execution_time milliseconds, MariaDB's max_statement_time a float, and per account
MAX_STATEMENT_TIME), refuses what the flavour cannot set before any change, and applies the
rest: MySQL 8 with SET PERSIST, MariaDB with SET GLOBAL and, when given, the option file
``persist_file`` that keeps the values over a restart.

The statement builders return ``(sql, params)``: values are driver parameters; variable
names come from the tables below, never from input. No AnsibleModule import, no database
driver import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile

from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.grants import (
    split_roles_key,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._timeouts import (
    ApplyError,
    apply_changes,
    cannot_set,
    mysql_value_text,
    plan_item,
)

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


PERSIST_HEADER = (
    "# Written by dbhygiene.sessions (role timeouts / mysql_timeouts persist_file): the server-level\n"
    "# timeouts, read at server start. Edits here are replaced on the next run.\n"
)


def check_mysql(settings):
    """PolicyError for a setting neither MySQL nor MariaDB can take (before connecting)."""
    for setting in settings:
        if setting.level == "databases":
            raise cannot_set(
                setting,
                "MySQL/MariaDB",
                "there are no per-database timeouts; set it under server (or, for statement, per user under roles)",
            )
        if setting.level == "roles" and setting.field != "statement":
            raise cannot_set(
                setting,
                "MySQL/MariaDB",
                f"there is no per-user {setting.field} timeout ({MARIADB_VARIABLES[setting.field]} is global or per "
                "session only); set it under server",
            )
        if setting.seconds > MYSQL_MAX_SECONDS:
            raise cannot_set(setting, "MySQL/MariaDB", f"the limit is at most {MYSQL_MAX_SECONDS}s (365 days)")
        if setting.level == "server" and setting.field == "idle_session" and setting.seconds == 0:
            raise cannot_set(
                setting,
                "MySQL/MariaDB",
                f"wait_timeout has no 'no limit' value (1 to {MYSQL_MAX_SECONDS} seconds); give a duration instead",
            )


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


def mysql_variable(flavour, setting):
    """The server variable of a server-level setting on `flavour` (mysql / mariadb), or PolicyError."""
    table = MYSQL_VARIABLES if flavour == "mysql" else MARIADB_VARIABLES
    variable = table.get(setting.field)
    if variable is None:
        raise cannot_set(
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
            raise cannot_set(setting, "MySQL", "MySQL has no per-user statement limit (MariaDB has MAX_STATEMENT_TIME)")
        if setting.level == "server":
            variable = mysql_variable(flavour, setting)
            if variable == "max_execution_time" and setting.seconds * 1000 > MYSQL_MAX_EXECUTION_MS:
                raise cannot_set(setting, "MySQL", f"max_execution_time is at most {MYSQL_MAX_EXECUTION_MS} ms")


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

    @staticmethod
    def server_variable(driver, setting):
        """The variable a server-level setting sets on `driver`'s server, or PolicyError
        (``_timeouts.check_platform``)."""
        return mysql_variable(driver.flavour.name, setting)

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
                raise cannot_set(
                    setting, self.driver.flavour.label, f"this server has no {variable} (MariaDB 10.3 or later has it)"
                )
            now = _number(values[variable], variable)
            wanted = mysql_wanted(variable, setting.seconds)
            shown = mysql_value_text(now)
            item = plan_item(setting, variable, None, now, wanted, shown, mysql_value_text(wanted))
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
                item = plan_item(
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
        done = apply_changes(self.driver.execute, queries)
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
