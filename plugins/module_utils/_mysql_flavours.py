# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every SQL statement of the MySQL/MariaDB driver, per flavour, and the pure
helpers around them (grant parsing, row normalization, the kill guard).

Private to the collection. Standard library only: no database driver, no
Ansible import, so the builders are unit tested without a server.

Builders return ``(sql, params)``; values are always driver parameters (PyMySQL
``%s``), never glued into the text. The only identifiers in the text are fixed
names of system tables and columns.

The flavour differences live in the two classes at the bottom, nowhere else:

============================  =================================  ==================================
                              MariaDB (10.4+; TIME_MS since 5.x)  MySQL 8.0
============================  =================================  ==================================
thread list                   information_schema.PROCESSLIST     performance_schema.processlist
                                                                  (8.0.22+, when performance_schema
                                                                  is ON), else information_schema
elapsed time                  TIME_MS (milliseconds)              TIME (whole seconds)
"no new statement" witness    QUERY_ID of an idle thread          TIME only
superuser-class account       SUPER (ALL implies it)              SUPER or SYSTEM_USER
                              from mysql.user.Super_priv          mysql.user + mysql.global_grants
right to kill others          CONNECTION ADMIN (10.5.2+) / SUPER  CONNECTION_ADMIN or SUPER
============================  =================================  ==================================
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import re

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    QUERY_MAX_CHARS,
    REASON_GONE,
    REASON_STATE_CHANGED,
)

PROGRAM_NAME = "dbhygiene.sessions"

# Threads that are never client sessions (DESIGN.md invariant 1).
SYSTEM_USERS = ("system user", "event_scheduler", "unauthenticated user")
SYSTEM_COMMANDS = (
    "Daemon",
    "Binlog Dump",
    "Binlog Dump GTID",
    "Register Slave",
    "Slave_IO",
    "Slave_SQL",
    "Slave_worker",
    "Connect",  # replica threads and logins still authenticating
)
ACTIVE_COMMANDS = ("Query", "Execute")
IDLE_COMMAND = "Sleep"

# Columns every flavour's list query returns, in this order.
COLUMNS = (
    "id",
    "user",
    "host",
    "db",
    "command",
    "thread_state",
    "elapsed_ms",
    "info",
    "query_id",
    "trx_started",
    "trx_seconds",
    "application",
    "superuser",
    "now_utc",
)

KILL_TEMPLATES = {"terminate": "KILL CONNECTION %s", "cancel": "KILL QUERY %s"}

_GLOBAL_GRANT_RE = re.compile(r"^GRANT (.+?) ON \*\.\* TO ", re.IGNORECASE)
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)")
_HOST_PORT_RE = re.compile(r"^\[?(?P<addr>.+?)\]?:(?P<port>\d+)$")


def parse_version(text):
    """(major, minor, patch) from VERSION() text such as 10.11.19-MariaDB-0+deb12u1."""
    found = _VERSION_RE.match(text or "")
    if not found:
        return (0, 0, 0)
    return tuple(int(part) for part in found.groups())


def global_privileges(grant_lines):
    """The set of global privileges (upper case) in SHOW GRANTS output lines.

    ALL / ALL PRIVILEGES is kept as the single token "ALL". Only the privilege
    list is read: the rest of a line (it may carry a password hash) is dropped.
    """
    privileges = set()
    for line in grant_lines:
        found = _GLOBAL_GRANT_RE.match(line or "")
        if not found:
            continue
        for privilege in found.group(1).split(","):
            name = " ".join(privilege.split()).upper()
            if name in ("ALL", "ALL PRIVILEGES"):
                name = "ALL"
            if name:
                privileges.add(name)
    return privileges


def split_account(current_user):
    """('user', 'host') from CURRENT_USER() text 'user@host' (the user may contain '@')."""
    user, sep, host = (current_user or "").rpartition("@")
    if not sep:
        return current_user or "", "%"
    return user, host


def quote_account(current_user):
    """An account as written in a GRANT hint: 'user'@'host' (quotes doubled)."""
    user, host = split_account(current_user)
    return "'%s'@'%s'" % (user.replace("'", "''"), host.replace("'", "''"))


def client_address(host):
    """The client IP of a PROCESSLIST HOST value, None for a local (socket) login.

    "127.0.0.1:51234" -> "127.0.0.1"; "::1:51234" / "[::1]:51234" -> "::1";
    "localhost" -> None. A host name (name resolution on) is returned as is.
    """
    if host is None or host == "" or host == "localhost":
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    found = _HOST_PORT_RE.match(host)
    if found:
        try:
            return str(ipaddress.ip_address(found.group("addr")))
        except ValueError:
            name = found.group("addr")
            return None if name == "localhost" else name
    return host


def session_key(thread_id, user, host):
    """Reuse-safe-ish identity: thread id + account + client host:port.

    MariaDB and MySQL never reuse a thread id while the server runs; the user
    and the client's host:port guard against a restart handing the id out again.
    """
    return "%s:%s@%s" % (thread_id, user, host)


def _iso(moment):
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.isoformat()


def _float(value):
    return None if value is None else round(float(value), 3)


def normalize_row(row):
    """A list-query row (COLUMNS order) as the normalized session record.

    The connection runs with time_zone '+00:00', so every DATETIME is UTC.
    """
    values = dict(zip(COLUMNS, row))
    command = values["command"]
    in_trx = values["trx_started"] is not None
    if command in ACTIVE_COMMANDS:
        state = "active"
    elif command == IDLE_COMMAND:
        state = "idle_in_transaction" if in_trx else "idle"
    else:
        state = "other"
    elapsed = None if values["elapsed_ms"] is None else round(float(values["elapsed_ms"]) / 1000.0, 3)
    now = values["now_utc"]
    state_since = None
    if now is not None and elapsed is not None:
        state_since = _iso(now - datetime.timedelta(seconds=elapsed))
    query = values["info"]
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    if query is not None:
        query = query[:QUERY_MAX_CHARS]
    superuser = values["superuser"]
    thread_id = int(values["id"])
    return {
        "id": thread_id,
        "key": session_key(thread_id, values["user"], values["host"]),
        "user": values["user"],
        "database": values["db"],
        "application": values["application"],
        "client_addr": client_address(values["host"]),
        "state": state,
        "connected_at": None,  # neither flavour records the connect time of a thread
        "state_since": state_since,
        "connected_seconds": None,
        "idle_seconds": elapsed,
        "query_seconds": elapsed if state == "active" else None,
        "transaction_seconds": _float(values["trx_seconds"]) if in_trx else None,
        "query": query,
        "superuser": None if superuser is None else bool(int(superuser)),
        "backend_type": None,
        "command": command,
        # MySQL extras (the kill guard reads them back)
        "host": values["host"],
        "thread_state": values["thread_state"],
        "query_id": None if values["query_id"] is None else int(values["query_id"]),
        "transaction_started": _iso(values["trx_started"]),
    }


def _instant(text):
    try:
        return datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def moved_on(planned, current, tolerance):
    """Why `current` (a fresh record of the same thread id, or None) is no longer
    the session that was planned: None when it still is, else (reason, detail).

    Same thread = same id, user and client host:port. Same state = same
    COMMAND and normalized state, same transaction (trx_started), no new
    statement since planning (QUERY_ID where the flavour has it; otherwise its
    state_since did not move later than `tolerance` seconds).
    """
    if current is None:
        return REASON_GONE, "thread %s is no longer connected" % planned.get("id")
    if current.get("user") != planned.get("user") or current.get("host") != planned.get("host"):
        return REASON_GONE, "thread id %s now belongs to another connection (%s@%s)" % (
            planned.get("id"),
            current.get("user"),
            current.get("host"),
        )
    if current.get("command") != planned.get("command") or current.get("state") != planned.get("state"):
        return REASON_STATE_CHANGED, "was %s (%s), now %s (%s)" % (
            planned.get("state"),
            planned.get("command"),
            current.get("state"),
            current.get("command"),
        )
    if current.get("transaction_started") != planned.get("transaction_started"):
        return REASON_STATE_CHANGED, "its transaction changed since planning"
    if (
        planned.get("state") != "active"
        and planned.get("query_id") is not None
        and current.get("query_id") != planned.get("query_id")
    ):
        return REASON_STATE_CHANGED, "it ran a new statement since planning"
    then, now = _instant(planned.get("state_since")), _instant(current.get("state_since"))
    if then is None or now is None:
        return REASON_STATE_CHANGED, "its state change time cannot be compared"
    if (now - then).total_seconds() > tolerance:
        return REASON_STATE_CHANGED, "it started a new command since planning"
    return None


class Flavour(object):
    """The SQL of one flavour. Subclasses change only what differs."""

    name = None
    label = None
    # The elapsed time moves by this much between two listings of one state
    # (clock granularity of TIME / TIME_MS, plus the round trip).
    state_since_tolerance = 0.5
    # Privileges that let a login end other users' threads (any one is enough).
    kill_privileges = ("SUPER",)
    # Privileges that make an account superuser-class (protect.superusers).
    superuser_privileges = ("SUPER",)

    def __init__(self, version, performance_schema):
        self.version = version
        self.performance_schema = bool(performance_schema)

    # ------------------------------------------------------------- facts
    @staticmethod
    def facts_query():
        return (
            "SELECT VERSION(), @@version_comment, @@performance_schema, CONNECTION_ID(), CURRENT_USER(), "
            "@@max_connections, @@hostname",
            (),
        )

    @staticmethod
    def grants_query():
        return ("SHOW GRANTS", ())

    def superuser_probe(self):
        """A statement that fails (1142/1143) when the login cannot read which accounts are superusers."""
        return ("SELECT User, Super_priv FROM mysql.user LIMIT 0", ())

    @staticmethod
    def attrs_probe():
        """A statement that fails (1142) when the login cannot read connection attributes."""
        return ("SELECT ATTR_VALUE FROM performance_schema.session_connect_attrs LIMIT 0", ())

    # ------------------------------------------------------------- listing
    processlist_table = "information_schema.PROCESSLIST"
    elapsed_ms_expr = "p.TIME * 1000"
    query_id_expr = "NULL"

    def superuser_join(self):
        return (
            "LEFT JOIN (SELECT User AS user_name, MAX(Super_priv = 'Y') AS is_super FROM mysql.user GROUP BY User) "
            "AS s ON s.user_name = p.USER"
        )

    def list_query(self, with_attrs=True, with_superusers=True, ids=None, query_max=QUERY_MAX_CHARS):
        """Client threads (ours and system threads excluded) in one statement.

        `ids`: only these thread ids (the kill guard's re-read).
        """
        params = [int(query_max)]
        select = [
            "p.ID",
            "p.USER",
            "p.HOST",
            "p.DB",
            "p.COMMAND",
            "p.STATE",
            self.elapsed_ms_expr,
            "LEFT(p.INFO, %s)",
            self.query_id_expr,
            "t.trx_started",
            # trx_started has whole seconds: report the lower bound of the age, so a
            # transaction_longer_than rule never fires early.
            "GREATEST(0, TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) / 1000000 - 1)",
            "a.ATTR_VALUE" if with_attrs else "NULL",
            "s.is_super" if with_superusers else "NULL",
            "UTC_TIMESTAMP(6)",
        ]
        joins = ["LEFT JOIN information_schema.INNODB_TRX AS t ON t.trx_mysql_thread_id = p.ID"]
        if with_attrs:
            joins.append(
                "LEFT JOIN performance_schema.session_connect_attrs AS a "
                "ON a.PROCESSLIST_ID = p.ID AND a.ATTR_NAME = %s"
            )
            params.append("program_name")
        if with_superusers:
            joins.append(self.superuser_join())
        where = [
            "p.ID <> CONNECTION_ID()",
            "p.USER NOT IN (%s)" % ", ".join(["%s"] * len(SYSTEM_USERS)),
            "p.COMMAND NOT IN (%s)" % ", ".join(["%s"] * len(SYSTEM_COMMANDS)),
        ]
        params.extend(SYSTEM_USERS)
        params.extend(SYSTEM_COMMANDS)
        if ids is not None:
            ids = [int(thread_id) for thread_id in ids]
            if not ids:
                raise ValueError("ids must not be empty")
            where.append("p.ID IN (%s)" % ", ".join(["%s"] * len(ids)))
            params.extend(ids)
        sql = "SELECT %s FROM %s AS p %s WHERE %s ORDER BY p.ID" % (
            ", ".join(select),
            self.processlist_table,
            " ".join(joins),
            " AND ".join(where),
        )
        return sql, tuple(params)

    # ------------------------------------------------------------- killing
    @staticmethod
    def kill_query(mode, thread_id):
        if mode not in KILL_TEMPLATES:
            raise ValueError("mode must be terminate or cancel, not %r" % (mode,))
        return KILL_TEMPLATES[mode], (int(thread_id),)

    # ------------------------------------------------------------- privileges
    def can_see_all(self, privileges):
        return "ALL" in privileges or "PROCESS" in privileges

    def can_kill(self, privileges):
        return "ALL" in privileges or any(p in privileges for p in self.kill_privileges)

    def kill_grant(self, account):
        return "GRANT %s ON *.* TO %s" % (self.kill_privileges[0], account)

    def superuser_grants(self, account):
        return ["GRANT SELECT (User, Host, Super_priv) ON mysql.user TO %s" % account]

    def templates(self):
        """Statement templates for the `queries` result (no values, no secrets)."""
        return [
            self.list_query()[0],
            self.list_query(ids=[0])[0].replace("p.ID IN (%s)", "p.ID IN (%s, ...)"),
            KILL_TEMPLATES["terminate"],
            KILL_TEMPLATES["cancel"],
        ]


class MariaDB(Flavour):
    name = "mariadb"
    label = "MariaDB"
    elapsed_ms_expr = "p.TIME_MS"
    query_id_expr = "p.QUERY_ID"
    state_since_tolerance = 0.5

    @property
    def kill_privileges(self):
        # 10.5.2 split CONNECTION ADMIN out of SUPER; SUPER still works where it exists.
        if self.version >= (10, 5, 2):
            return ("CONNECTION ADMIN", "SUPER")
        return ("SUPER",)


class MySQL(Flavour):
    name = "mysql"
    label = "MySQL"
    kill_privileges = ("CONNECTION_ADMIN", "SUPER")
    superuser_privileges = ("SUPER", "SYSTEM_USER")
    # TIME has whole seconds only.
    state_since_tolerance = 1.5

    @property
    def processlist_table(self):
        # information_schema.PROCESSLIST is deprecated in 8.0 and takes a global
        # mutex; performance_schema.processlist (8.0.22+) does not.
        if self.performance_schema and self.version >= (8, 0, 22):
            return "performance_schema.processlist"
        return "information_schema.PROCESSLIST"

    def superuser_probe(self):
        return ("SELECT u.User, u.Super_priv, g.PRIV FROM mysql.user AS u, mysql.global_grants AS g LIMIT 0", ())

    def superuser_join(self):
        return (
            "LEFT JOIN (SELECT User AS user_name, MAX(Super_priv = 'Y') AS is_super FROM ("
            "SELECT User, Super_priv FROM mysql.user "
            "UNION ALL SELECT USER, 'Y' FROM mysql.global_grants WHERE PRIV = 'SYSTEM_USER'"
            ") AS su GROUP BY User) AS s ON s.user_name = p.USER"
        )

    def superuser_grants(self, account):
        return [
            "GRANT SELECT (User, Host, Super_priv) ON mysql.user TO %s" % account,
            "GRANT SELECT ON mysql.global_grants TO %s" % account,
        ]


def detect(version_text, version_comment, performance_schema):
    """The flavour object for a server, from VERSION() and @@version_comment."""
    text = "%s %s" % (version_text or "", version_comment or "")
    flavour = MariaDB if "mariadb" in text.lower() else MySQL
    return flavour(parse_version(version_text), performance_schema)
