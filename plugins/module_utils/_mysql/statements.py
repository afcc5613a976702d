# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The statements of the MySQL / MariaDB driver common to both flavours.

Private to the collection. Standard library only: no database driver, no
Ansible import, so the builders are unit tested without a server.

Builders return ``(sql, params)``; values are always driver parameters (PyMySQL
``%s``), never glued into the text. The only identifiers in the text are fixed
names of system tables and columns.

Here: which threads are client sessions, the columns of the listing (``COLUMNS``), the
transaction-event reads, and ``Flavour``, the statements of one flavour (facts, the listing,
replication, the session's set-up, the sweep lock, the KILLs, the rights they need); its
subclasses (``flavours.py``) change what differs. Beside it: the lock waits (``locks``), the
guard blocks (``guard``, ``verified``, ``statement_events``), how a row reads (``rows``), the
rights read from SHOW GRANTS (``grants``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    QUERY_MAX_CHARS,
    ROLE_PRIMARY,
    ROLE_REPLICA,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.locks import (
    SWEEP_LOCK,
    metadata_locks_join,
    metadata_locks_probe,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._platform import RDS_PROCEDURES

PROGRAM_NAME = "dbhygiene.sessions"

# Threads that are never client sessions (docs/architecture.md "Safety invariants" 1).
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
    "superuser",
    "now_utc",
    # lock waits (NULL where the listing does not read them: a re-read by id, a source not visible)
    "row_waiting",
    "row_wait_seconds",
    "row_blockers",
    "mdl_pending",
    "mdl_user_lock",
    "mdl_holders",
    # exact transaction state (performance_schema's transaction events; NULL where the listing does not read them)
    "trx_events_on",
    "trx_thread_id",
    "trx_event_state",
    "trx_event_seconds",
)

KILL_TEMPLATES = {"terminate": "KILL CONNECTION %s", "cancel": "KILL QUERY %s"}


# ---------------------------------------------------------------- transaction state
# Whether a Sleep thread is inside a transaction, exactly at the moment of the read:
# performance_schema.events_transactions_current (MariaDB 10.5+, MySQL 5.7+). Its latest
# transaction event is ACTIVE from BEGIN / START TRANSACTION / XA START (a transaction that
# has touched no InnoDB table yet included) or the first transactional statement under
# autocommit=0, until COMMIT / ROLLBACK; a thread that has had none has no row. It is
# written by the thread itself, not served from a cache: INFORMATION_SCHEMA.INNODB_TRX is
# InnoDB's trx_i_s cache, refreshed only for a reader that comes 100 ms after the last one
# (a monitoring agent polling it at 20 Hz keeps it from ever refreshing), and it never shows
# a transaction that has not touched InnoDB yet (a bare BEGIN). The events are complete
# while these consumers and the instrument are on and the thread is instrumented; MariaDB
# ships them off (performance_schema_instrument='transaction=ON',
# performance_schema_consumer_events_transactions_current=ON).
TRANSACTION_EVENT_CONSUMERS = ("global_instrumentation", "thread_instrumentation", "events_transactions_current")
TRANSACTION_INSTRUMENT = "transaction"
# 1 when the transaction events are complete right now (params: TRANSACTION_EVENT_CONSUMERS,
# TRANSACTION_INSTRUMENT).
TRX_EVENTS_ON = (
    "((SELECT COUNT(*) FROM performance_schema.setup_consumers WHERE NAME IN (%s, %s, %s) AND ENABLED = 'YES') = 3 "
    "AND (SELECT COUNT(*) FROM performance_schema.setup_instruments WHERE NAME = %s AND ENABLED = 'YES') = 1)"
)
TRANSACTION_EVENTS_ON_PARAMS = TRANSACTION_EVENT_CONSUMERS + (TRANSACTION_INSTRUMENT,)
# Each client thread's performance_schema THREAD_ID (instrumented threads only) and its
# latest transaction event: derived tables, each materialized once with a key.
_TRX_EVENTS_JOIN = (
    "LEFT JOIN (SELECT DISTINCT PROCESSLIST_ID, THREAD_ID FROM performance_schema.threads "
    "WHERE PROCESSLIST_ID IS NOT NULL AND INSTRUMENTED = 'YES') AS tt ON tt.PROCESSLIST_ID = p.ID "
    "LEFT JOIN (SELECT DISTINCT THREAD_ID, STATE, TIMER_WAIT FROM performance_schema.events_transactions_current) "
    "AS te ON te.THREAD_ID = tt.THREAD_ID"
)
TRX_EVENTS_OFF = (
    "performance_schema's transaction events are off (the instrument 'transaction', or the consumers "
    + ", ".join(TRANSACTION_EVENT_CONSUMERS)
    + ")"
)
TRX_THREAD_NOT_INSTRUMENTED = (
    "the thread is not instrumented in performance_schema (setup_actors, threads.INSTRUMENTED)"
)


def transaction_events_on_query():
    """(sql, params): one row, 1 when the transaction events are complete right now."""
    return f"SELECT {TRX_EVENTS_ON}", TRANSACTION_EVENTS_ON_PARAMS


def transaction_events_probe():
    """A statement that fails (1142) when the login cannot read the transaction events."""
    return (
        f"SELECT {TRX_EVENTS_ON}, t.THREAD_ID, e.STATE FROM performance_schema.threads AS t, "
        "performance_schema.events_transactions_current AS e LIMIT 0",
        TRANSACTION_EVENTS_ON_PARAMS,
    )


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

    # Who waits on whom for an InnoDB lock: a derived table of (waiter, blocker ids),
    # joined to the listing; None where the flavour has no such table.
    def row_lock_waits_join(self):
        """(LEFT JOIN text, params) of the InnoDB lock waits, giving rw.blockers."""
        return (
            "LEFT JOIN (SELECT w.requesting_trx_id AS trx_id, GROUP_CONCAT(DISTINCT b.trx_mysql_thread_id) AS blockers "
            "FROM information_schema.INNODB_LOCK_WAITS AS w "
            "JOIN (SELECT DISTINCT trx_id, trx_mysql_thread_id FROM information_schema.INNODB_TRX) AS b "
            "ON b.trx_id = w.blocking_trx_id "
            "GROUP BY w.requesting_trx_id) AS rw ON rw.trx_id = t.trx_id",
            (),
        )

    @staticmethod
    def row_lock_waits_probe():
        """A statement that fails (1142) when the login cannot read the InnoDB lock waits (None: PROCESS is enough)."""
        return None

    # The metadata-lock waits (locks.py), where performance_schema records them.
    metadata_locks_join = staticmethod(metadata_locks_join)
    metadata_locks_probe = staticmethod(metadata_locks_probe)

    def list_query(
        self,
        with_superusers=True,
        ids=None,
        query_max=QUERY_MAX_CHARS,
        row_locks=True,
        metadata_locks=True,
        transactions=False,
    ):
        """Client threads (ours and system threads excluded) in one statement.

        `ids`: only these thread ids (the kill guard's re-read: the driver asks
        for the lock waits only to check that a waiter still waits). The
        connection attributes (program_name) are not joined here: joining
        performance_schema.session_connect_attrs to the thread list is
        quadratic in the number of threads (203 ms at 1,000); attrs_query reads
        them apart, in one linear scan.

        Lock waits come in the same statement: whether a thread waits for an
        InnoDB lock and since when (INNODB_TRX, joined anyway), on whom
        (`row_locks`: row_lock_waits_join) and its metadata-lock waits
        (`metadata_locks`: metadata_locks_join). Both are derived tables, each
        read once per statement, so the listing stays linear in the threads.

        `transactions`: each thread's exact transaction state from performance_schema
        (transaction_state), with whether those events are complete at that moment.
        """
        params = [int(query_max)]
        lock_joins, lock_params = [], []
        row_blockers = mdl = None
        if row_locks and self.row_lock_waits_join() is not None:
            join, join_params = self.row_lock_waits_join()
            lock_joins.append(join)
            lock_params.extend(join_params)
            row_blockers = "rw.blockers"
        if metadata_locks:
            join, join_params = self.metadata_locks_join()
            lock_joins.append(join)
            lock_params.extend(join_params)
            mdl = ("m.pending", "m.user_lock", "m.holders")
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
            "s.is_super" if with_superusers else "NULL",
            "UTC_TIMESTAMP(6)",
            "t.trx_state = 'LOCK WAIT'",
            # trx_wait_started has whole seconds: the lower bound, as for trx_started.
            "GREATEST(0, TIMESTAMPDIFF(MICROSECOND, t.trx_wait_started, NOW(6)) / 1000000 - 1)",
            row_blockers or "NULL",
        ] + list(mdl or ("NULL", "NULL", "NULL"))
        if transactions:
            select.extend([TRX_EVENTS_ON, "tt.THREAD_ID", "te.STATE", "te.TIMER_WAIT / 1000000000000"])
            params.extend(TRANSACTION_EVENTS_ON_PARAMS)
        else:
            select.extend(["NULL"] * 4)
        # INNODB_TRX as a derived table: materialized once with a key on the thread id;
        # joined as a table, each thread scanned every transaction (1,000 threads in
        # transactions: 180 ms instead of 61 ms).
        joins = [
            "LEFT JOIN (SELECT DISTINCT trx_mysql_thread_id, trx_id, trx_started, trx_state, trx_wait_started "
            "FROM information_schema.INNODB_TRX) AS t ON t.trx_mysql_thread_id = p.ID"
        ]
        if with_superusers:
            joins.append(self.superuser_join())
        if transactions:
            joins.append(_TRX_EVENTS_JOIN)
        joins.extend(lock_joins)
        params.extend(lock_params)
        where = [
            "p.ID <> CONNECTION_ID()",
            f"p.USER NOT IN ({', '.join(['%s'] * len(SYSTEM_USERS))})",
            f"p.COMMAND NOT IN ({', '.join(['%s'] * len(SYSTEM_COMMANDS))})",
        ]
        params.extend(SYSTEM_USERS)
        params.extend(SYSTEM_COMMANDS)
        if ids is not None:
            ids = [int(thread_id) for thread_id in ids]
            if not ids:
                raise ValueError("ids must not be empty")
            where.append(f"p.ID IN ({', '.join(['%s'] * len(ids))})")
            params.extend(ids)
        sql = (
            f"SELECT {', '.join(select)} FROM {self.processlist_table} AS p {' '.join(joins)} WHERE "
            f"{' AND '.join(where)} ORDER BY p.ID"
        )
        return sql, tuple(params)

    @staticmethod
    def attrs_query(ids=None):
        """(thread id, program_name) of the threads that set one; `ids`: only these.

        A connection's attributes are fixed at login, so the driver reads them
        once per session and only for threads it has not seen yet.
        """
        sql = "SELECT PROCESSLIST_ID, ATTR_VALUE FROM performance_schema.session_connect_attrs WHERE ATTR_NAME = %s"
        params = ["program_name"]
        if ids is not None:
            ids = [int(thread_id) for thread_id in ids]
            if not ids:
                raise ValueError("ids must not be empty")
            sql += f" AND PROCESSLIST_ID IN ({', '.join(['%s'] * len(ids))})"
            params.extend(ids)
        return sql, tuple(params)

    # ------------------------------------------------------------- replication
    @staticmethod
    def read_only_query():
        return ("SELECT @@read_only", ())

    def replica_status_query(self):
        """One row per replication source the server has (MariaDB: every connection of a
        multi-source replica); needs SLAVE MONITOR or SUPER (MySQL: REPLICATION CLIENT)."""
        return ("SHOW ALL SLAVES STATUS", ())

    @staticmethod
    def replication_threads_query():
        """How many replication threads run: the replica status of a login that may only see
        the threads (PROCESS, which the listing needs); a stopped replica has none."""
        return (
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'system user' AND COMMAND IN %s",
            (("Slave_IO", "Slave_SQL"),),
        )

    # ------------------------------------------------------------- session set-up
    def server_started_query(self):
        """The server's start, exact epoch seconds: Uptime is counted from the same
        statement start as UNIX_TIMESTAMP(), so the difference never jitters."""
        return (
            "SELECT UNIX_TIMESTAMP() - VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = %s",
            ("UPTIME",),
        )

    def statement_timeout_query(self, seconds):
        """Bound every later statement of our session server-side (None: the engine has no such limit)."""
        return ("SET SESSION max_statement_time = %s", (int(seconds),))

    # ------------------------------------------------------------- sweep lock
    def lock_query(self, timeout, query_timeout):
        """GET_LOCK waiting at most `timeout` s; the statement limit of our session
        is lifted to `timeout + query_timeout` for this one statement."""
        return (
            "SET STATEMENT max_statement_time = %s FOR SELECT GET_LOCK(%s, %s)",
            (int(query_timeout) + int(timeout) + 1, SWEEP_LOCK, float(timeout)),
        )

    @staticmethod
    def unlock_query():
        return ("SELECT RELEASE_LOCK(%s)", (SWEEP_LOCK,))

    # ------------------------------------------------------------- killing
    # The guard runs server-side (guard_block) where the flavour has compound
    # statements; else the driver re-reads each victim right before its KILL.
    server_side_guard = False
    # RDS for MySQL / MariaDB without CONNECTION ADMIN or SUPER: threads are ended through the
    # service's procedures (mysql.rds_kill / mysql.rds_kill_query) instead of KILL. Set by the driver.
    rds_kill = False

    def loop_kill(self):
        """The statement ending the looped victim `v` inside a compound statement (the guard's
        loop, a verified block): KILL, or the service's procedure on RDS."""
        return f"CALL {RDS_PROCEDURES['terminate']}(v.id);" if self.rds_kill else "KILL CONNECTION v.id;"

    def kill_templates(self):
        """{mode: statement with one %s (the thread id)} of this server's way to end a thread."""
        if self.rds_kill:
            return dict((mode, f"CALL {procedure}(%s)") for mode, procedure in RDS_PROCEDURES.items())
        return KILL_TEMPLATES

    def kill_query(self, mode, thread_id):
        if mode not in KILL_TEMPLATES:
            raise ValueError(f"mode must be terminate or cancel, not {mode!r}")
        return self.kill_templates()[mode], (int(thread_id),)

    # ------------------------------------------------------------- privileges
    def can_see_all(self, privileges):
        return "ALL" in privileges or "PROCESS" in privileges

    def can_kill(self, privileges):
        return "ALL" in privileges or any(p in privileges for p in self.kill_privileges)

    def kill_grant(self, account):
        if self.rds_kill:
            return "; ".join(f"GRANT EXECUTE ON PROCEDURE {p} TO {account}" for p in RDS_PROCEDURES.values())
        return f"GRANT {self.kill_privileges[0]} ON *.* TO {account}"

    @property
    def kill_rights(self):
        """What ending another user's thread needs, for messages."""
        if self.rds_kill:
            return " and ".join(f"EXECUTE on {p}" for p in RDS_PROCEDURES.values())
        return " or ".join(self.kill_privileges)

    def superuser_grants(self, account):
        return [f"GRANT SELECT (User, Host, Super_priv) ON mysql.user TO {account}"]

    def templates(self, row_locks=True, metadata_locks=True, transactions=True):
        """Statement templates for the `queries` result (no values, no secrets)."""
        return [
            self.list_query(row_locks=row_locks, metadata_locks=metadata_locks, transactions=transactions)[0],
            self.list_query(ids=[0], transactions=transactions)[0].replace("p.ID IN (%s)", "p.ID IN (%s, ...)"),
            self.kill_templates()["terminate"],
            self.kill_templates()["cancel"],
        ]


def server_role(read_only, sources):
    """The server's role (_driver.ROLES): a replica is read-only and replicates from a source
    (`sources`: how many the server lists, or how many replication threads run); a server that
    replicates but takes writes (a multi-primary ring) is a primary: changes made there go on."""
    return ROLE_REPLICA if read_only and sources else ROLE_PRIMARY
