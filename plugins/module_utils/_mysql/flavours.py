# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two flavours of the MySQL / MariaDB driver: what MariaDB and MySQL do differently.

Private to the collection. Standard library only. ``detect`` picks the class from the
server's version; each class changes only what differs from ``statements.Flavour`` (MariaDB's
server-side guard block is ``guard.MariaDBGuard``, a base of ``MariaDB``):

============================  =================================  ==================================
                              MariaDB (10.4+; TIME_MS since 5.x)  MySQL 8.0
============================  =================================  ==================================
thread list                   information_schema.PROCESSLIST     performance_schema.processlist
                                                                  (8.0.22+, when performance_schema
                                                                  is ON), else information_schema
elapsed time                  TIME_MS (milliseconds)              TIME (whole seconds)
"no new statement" witness    QUERY_ID of an idle thread          TIME only
guarded kill                  one BEGIN NOT ATOMIC block per      re-read of the thread, then KILL,
                              batch: check + KILL per victim,     per victim (two round trips)
                              server-side; cancel by QUERY ID
server start (session key)    I_S.GLOBAL_STATUS Uptime            performance_schema.global_status
superuser-class account       SUPER (ALL implies it)              SUPER or SYSTEM_USER
                              from mysql.user.Super_priv          mysql.user + mysql.global_grants
right to kill others          CONNECTION ADMIN (10.5.2+) / SUPER  CONNECTION_ADMIN or SUPER
row-lock waits (who on whom)  information_schema.INNODB_LOCK_      performance_schema.data_lock_waits
                              WAITS + INNODB_TRX (PROCESS)        + threads (SELECT on both)
metadata-lock waits           performance_schema.metadata_locks + threads, both flavours, where the
                              wait/lock/metadata/sql/mdl instrument is on (MariaDB: off by default)
replication sources           SHOW ALL SLAVES STATUS (SLAVE       SHOW REPLICA STATUS (8.0.22+, else
  (server role)               MONITOR or SUPER), else the         SLAVE; REPLICATION CLIENT), else
                              Slave_IO / Slave_SQL threads        performance_schema.threads
============================  =================================  ==================================
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.guard import (
    MariaDBGuard,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.locks import SWEEP_LOCK
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.statement_events import (
    BIND_EVENTS_SQL,
    BIND_THREAD_LIST_SQL,
    BIND_THREADS_SQL,
    statement_events_query,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.statements import (
    Flavour,
)

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


def parse_version(text):
    """(major, minor, patch) from VERSION() text such as 10.11.19-MariaDB-0+deb12u1."""
    found = _VERSION_RE.match(text or "")
    if not found:
        return (0, 0, 0)
    return tuple(int(part) for part in found.groups())


class MariaDB(MariaDBGuard, Flavour):
    name = "mariadb"
    label = "MariaDB"
    elapsed_ms_expr = "p.TIME_MS"
    query_id_expr = "p.QUERY_ID"
    state_since_tolerance = 0.5
    server_side_guard = True

    def templates(self, row_locks=True, metadata_locks=True, transactions=True):
        sample = {"id": 0, "user": "", "host": "", "command": "Sleep", "state": "idle", "query_id": 0, "key": "k"}
        return Flavour.templates(self, row_locks, metadata_locks, transactions) + [
            self.guard_block([sample], "terminate")[0].replace(
                "KILL CONNECTION %s;", "KILL CONNECTION %s; ... (one such step per victim)"
            ),
            "KILL QUERY ID q (q: the statement id the guard just re-read)",
            statement_events_query()[0],
            BIND_THREADS_SQL,
            BIND_EVENTS_SQL,
            BIND_THREAD_LIST_SQL,
            self.guard_block([sample], "terminate", bound={"k": (0, 0)})[0],
        ]

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

    def server_started_query(self):
        if not self.performance_schema:
            return None  # no global_status to read Uptime in the same statement: keys without the start
        return (
            "SELECT UNIX_TIMESTAMP() - VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = %s",
            ("Uptime",),
        )

    def replica_status_query(self):
        return ("SHOW REPLICA STATUS" if self.version >= (8, 0, 22) else "SHOW SLAVE STATUS", ())

    @staticmethod
    def replication_threads_query():
        # MySQL's processlist shows them as plain Connect / Query threads of 'system user'.
        return (
            "SELECT COUNT(*) FROM performance_schema.threads WHERE NAME IN %s",
            (("thread/sql/replica_io", "thread/sql/replica_sql", "thread/sql/slave_io", "thread/sql/slave_sql"),),
        )

    def statement_timeout_query(self, seconds):
        # max_execution_time (ms) bounds read-only SELECTs, which is all we run but KILL.
        return ("SET SESSION max_execution_time = %s", (int(seconds) * 1000,))

    def lock_query(self, timeout, query_timeout):
        return (
            f"SELECT /*+ MAX_EXECUTION_TIME({(int(query_timeout) + int(timeout) + 1) * 1000}) */ GET_LOCK(%s, %s)",
            (SWEEP_LOCK, int(math.ceil(timeout))),
        )

    @property
    def processlist_table(self):
        # information_schema.PROCESSLIST is deprecated in 8.0 and takes a global
        # mutex; performance_schema.processlist (8.0.22+) does not.
        if self.performance_schema and self.version >= (8, 0, 22):
            return "performance_schema.processlist"
        return "information_schema.PROCESSLIST"

    def superuser_probe(self):
        return ("SELECT u.User, u.Super_priv, g.PRIV FROM mysql.user AS u, mysql.global_grants AS g LIMIT 0", ())

    def row_lock_waits_join(self):
        # 8.0 dropped INNODB_LOCK_WAITS; performance_schema has the waits (by
        # performance_schema thread id: threads maps them to processlist ids).
        if not self.performance_schema:
            return None
        return (
            "LEFT JOIN (SELECT rt.PROCESSLIST_ID AS waiter_id, GROUP_CONCAT(DISTINCT bt.PROCESSLIST_ID) AS blockers "
            "FROM performance_schema.data_lock_waits AS w "
            "JOIN performance_schema.threads AS rt ON rt.THREAD_ID = w.REQUESTING_THREAD_ID "
            "JOIN performance_schema.threads AS bt ON bt.THREAD_ID = w.BLOCKING_THREAD_ID "
            "GROUP BY rt.PROCESSLIST_ID) AS rw ON rw.waiter_id = p.ID",
            (),
        )

    @staticmethod
    def row_lock_waits_probe():
        return (
            "SELECT w.REQUESTING_THREAD_ID, t.PROCESSLIST_ID FROM performance_schema.data_lock_waits AS w, "
            "performance_schema.threads AS t LIMIT 0",
            (),
        )

    def superuser_join(self):
        return (
            "LEFT JOIN (SELECT User AS user_name, MAX(Super_priv = 'Y') AS is_super FROM ("
            "SELECT User, Super_priv FROM mysql.user "
            "UNION ALL SELECT USER, 'Y' FROM mysql.global_grants WHERE PRIV = 'SYSTEM_USER'"
            ") AS su GROUP BY User) AS s ON s.user_name = p.USER"
        )

    def superuser_grants(self, account):
        return [
            f"GRANT SELECT (User, Host, Super_priv) ON mysql.user TO {account}",
            f"GRANT SELECT ON mysql.global_grants TO {account}",
        ]


def detect(version_text, version_comment, performance_schema):
    """The flavour object for a server, from VERSION() and @@version_comment."""
    text = f"{version_text or ''} {version_comment or ''}"
    flavour = MariaDB if "mariadb" in text.lower() else MySQL
    return flavour(parse_version(version_text), performance_schema)
