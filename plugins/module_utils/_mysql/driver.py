# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MySQL / MariaDB driver: connect, what the server and the login are, list threads.

Private to the collection. The SQL lives in the pure files beside it (builders return
``(sql, params)``, unit tested without a server: ``statements``, ``flavours``, ``locks``,
``guard``, ``verified``, ``statement_events``); the connection options in ``connect``; this
file connects (``open_driver``) and executes. ``MySQLDriver`` implements ``_driver.Driver``;
its guarded kill (``end_sessions``) is ``kill.GuardedKill``, its preflight (the rights a
run needs, the GRANTs that fix them) ``preflight.Preflight``.

How the safety invariants of docs/architecture.md are kept here (the kill: ``kill.py``):

* Our own connection is excluded by ``CONNECTION_ID()`` in the statement
  itself, carries the connection attribute program_name "dbhygiene.sessions"
  so a person can recognise it, and is never killed (checked again before KILL).
  System, replication and event threads are never listed.
* Superuser-class accounts (SUPER; MySQL also SYSTEM_USER) are read from the
  privilege tables, which a least-privilege login can read through a
  column-level grant that exposes no password hash. A login that cannot read
  them, or the connection attributes (program_name), fails the preflight of
  ``*_sessions`` with the GRANT that fixes it, instead of guessing.
* Every wait is bounded: connect_timeout covers the TCP connect and each read of
  the handshake (PyMySQL's own connect_timeout covers only the TCP connect, so a
  server frozen after accepting would hang the login); query_timeout bounds every
  later read and write client-side and every statement server-side
  (max_statement_time on MariaDB, max_execution_time on MySQL).
* The connection runs in autocommit (no snapshot held) with time_zone '+00:00'
  (every DATETIME read is UTC).

Lock waits (docs/architecture.md "Locks") come with the listing, in the same statement:
InnoDB lock waits (MariaDB INNODB_LOCK_WAITS + INNODB_TRX under PROCESS; MySQL
performance_schema.data_lock_waits) and metadata-lock waits
(performance_schema.metadata_locks, where its instrument
wait/lock/metadata/sql/mdl is on). Where a source cannot be read, the records
say less (server_facts: row_lock_waits_visible, metadata_locks_visible) and the
preflight of a policy with lock conditions names the GRANT that fixes it; an
instrument that is off is no privilege problem and fails nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import time

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _platform
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import Driver
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import cut, shown
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import (
    flavours,
    grants,
    guard,
    statements,
    verified,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.connect import (
    DEFAULT_QUERY_TIMEOUT,
    REGISTRY_ENTRY,
    SHOWN_CHARS,
    connect_hint,
    connect_kwargs,
    describe_failure,
    describe_target,
    query_timeout_of,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.errors import (
    ACCESS_DENIED,
    CR_SERVER_LOST,
    ER_QUERY_TIMEOUT,
    ER_STATEMENT_TIMEOUT,
    HAS_PYMYSQL,
    error_code,
    pymysql,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.kill import (
    GuardedKill,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.locks import SWEEP_LOCK
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.preflight import (
    Preflight,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.rows import normalize_row

MAX_LOCK_TIMEOUT = 3600


def connection_argument_spec():
    """The connection options of every MySQL/MariaDB module (doc fragment
    ``dbhygiene.sessions._mysql_connection``), from the engine registry.

    No environment fallbacks, as in community.mysql: the option file
    (config_file, ~/.my.cnf by default) is the usual place for defaults.
    """
    return REGISTRY_ENTRY.connection_spec()


def open_driver(params):
    """A connected MySQLDriver from the module's connection options (module.params).

    Raises SessionError (never with the password in it) for bad options, before
    connecting, and when the connection fails.
    """
    kwargs = connect_kwargs(params)
    query_timeout = query_timeout_of(params)
    if not HAS_PYMYSQL:
        raise SessionError("the MySQL modules need the Python library PyMySQL on the node that runs them")
    target = describe_target(kwargs)
    user = kwargs.get("user") or "(default user)"
    try:
        conn = pymysql.connect(**kwargs)
    except Exception as exc:  # PyMySQL raises OperationalError, but also ssl / OS errors as they are
        message = describe_failure(exc, kwargs)
        hint = connect_hint(message)
        raise SessionError(
            f"cannot connect to MySQL/MariaDB at {target} as {cut(user, SHOWN_CHARS)}: "
            f"{message}{('; ' + hint if hint else '')}"
        )
    try:
        driver = MySQLDriver(conn, target, query_timeout)
        driver.platform_option = params.get("platform")
        return driver
    except Exception:
        conn.close()
        raise


class MySQLDriver(Preflight, GuardedKill, Driver):
    """One open PyMySQL connection to a MySQL or MariaDB server."""

    engine = "mysql"
    # connected_longer_than: neither flavour records when a thread connected.
    unsupported_conditions = REGISTRY_ENTRY.unsupported_conditions

    def __init__(self, conn, target, query_timeout=DEFAULT_QUERY_TIMEOUT):
        self._conn = conn
        self.target = target
        self.query_timeout = query_timeout
        self._set_io_timeout(query_timeout)
        self._lock_held = False
        self._threads_seen = 1  # client threads of the last full listing (sizes the guard blocks)
        # Victims the guard block re-read in its loop / in a step of their own, or that a verified
        # block settled with one read for the block (and verified blocks run), over this driver's life.
        self.guard_counts = {
            "looped": 0,
            "own_step": 0,
            "statement_events": 0,
            "transaction_checked": 0,
            "block_verified": 0,
            "blocks": 0,
        }
        # Verified blocks (verified.verified_block): the bound of (read -> KILL) / idle time, the
        # largest ratio measured so far, and the predictions their sizes come from (then measured).
        self.window_ratio_bound = verified.WINDOW_RATIO_BOUND
        self.window_ratio_max = None
        self._verify_read = verified.VERIFY_READ_SECONDS_PER_THREAD
        self._verify_kill = verified.VERIFY_KILL_SECONDS
        self._verify_measured = False
        self.block_verified_keys = set()  # the keys of the victims verified blocks settled
        self._trx_read_at = None  # when our last listing read INNODB_TRX (time.monotonic)
        # program_name per session key: a connection's attributes are fixed at login.
        self._applications = {}
        # Read program_name with every listing unless the policy needs no applications.
        self.list_applications = True
        (
            version_text,
            version_comment,
            performance_schema,
            self._own_id,
            self.current_user,
            self.max_connections,
            self.server_hostname,
        ) = self._fetch_one(statements.Flavour.facts_query())
        self.version_text = version_text
        self.flavour = flavours.detect(version_text, version_comment, performance_schema)
        self._fetch_all(self.flavour.statement_timeout_query(query_timeout))
        started_query = self.flavour.server_started_query()
        self.server_started = int(self._fetch_one(started_query)[0]) if started_query else None
        self.account = grants.quote_account(self.current_user)
        self.privileges = grants.global_privileges(row[0] for row in self._fetch_all(self.flavour.grants_query()))
        # Whether the server records connection attributes at all, and whether we may read them.
        self.attrs_recorded = self.flavour.performance_schema
        self.attrs_readable = self.attrs_recorded and self._probe(statements.Flavour.attrs_probe())
        self.superusers_readable = self._probe(self.flavour.superuser_probe())
        # Lock waits: who waits on whom for an InnoDB lock (MariaDB: PROCESS, as the
        # listing; MySQL: performance_schema), and the metadata-lock waits, where the
        # server records them (its instrument is on: our own probe holds locks then).
        row_probe = self.flavour.row_lock_waits_probe()
        if row_probe is None:
            self.row_lock_waits_readable = self.flavour.can_see_all(self.privileges)
        else:
            self.row_lock_waits_readable = self.flavour.performance_schema and self._probe(row_probe)
        self.metadata_locks_readable = self.metadata_locks_visible = False
        if self.flavour.performance_schema:
            held = self._probe_value(self.flavour.metadata_locks_probe())
            self.metadata_locks_readable = held is not None
            self.metadata_locks_visible = bool(held)
        # Exact transaction state (rows.transaction_state): performance_schema's
        # transaction events, where the login may read them; else why not.
        self.transactions_readable = self.flavour.performance_schema and self._probe(
            statements.transaction_events_probe()
        )
        self._transactions_unproven = None
        if not self.flavour.performance_schema:
            self._transactions_unproven = "performance_schema is off"
        elif not self.transactions_readable:
            self._transactions_unproven = (
                f"login {self.account} cannot read performance_schema's transaction events "
                f"({'; '.join(self.transaction_grants())})"
            )

    @property
    def state_since_tolerance(self):
        return self.flavour.state_since_tolerance

    # ------------------------------------------------------------ plumbing
    def _set_io_timeout(self, seconds):
        # PyMySQL reads these before every socket read / write; there is no public setter.
        self._conn._read_timeout = seconds
        self._conn._write_timeout = seconds

    def close(self):
        # Closing the connection also releases the sweep lock (GET_LOCK is per connection).
        self._lock_held = False
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _execute(self, query):
        if self._conn is None:
            raise pymysql.err.InterfaceError(0, "the connection is closed")
        sql, params = query
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, params or None)
            return cursor.fetchall()
        except pymysql.MySQLError as exc:
            exc.statement = sql  # the template, for the failed result (_driver.failed_statement)
            raise
        finally:
            cursor.close()

    def _why(self, exc):
        """What a failed statement means, for a message (never a secret, never 100 KB)."""
        code = error_code(exc)
        text = str(exc)
        if len(text) > 500:
            text = text[:500] + "..."
        if code == CR_SERVER_LOST and "timed out" in text:
            return f"no answer within query_timeout ({self.query_timeout}s): the server may be frozen or overloaded"
        if code in (ER_STATEMENT_TIMEOUT, ER_QUERY_TIMEOUT):
            return f"the statement ran longer than query_timeout ({self.query_timeout}s) and was stopped by the server"
        if isinstance(exc, pymysql.err.InterfaceError):
            return "the connection is closed (it failed or timed out before)"
        return text

    def _fetch_all(self, query):
        try:
            return self._execute(query)
        except pymysql.MySQLError as exc:
            raise SessionError(f"query failed on {self.target} as {self.current_user}: {self._why(exc)}")

    def _fetch_one(self, query):
        try:
            return self._execute(query)[0]
        except pymysql.MySQLError as exc:
            raise SessionError(f"query failed on {self.target}: {self._why(exc)}")

    def _probe(self, query):
        try:
            self._execute(query)
            return True
        except pymysql.MySQLError as exc:
            if error_code(exc) in ACCESS_DENIED:
                return False
            raise SessionError(f"query failed on {self.target} as {self.current_user}: {self._why(exc)}")

    def execute(self, query, doing):
        """Rows of one (sql, params) statement built outside the driver (the drain and timeouts
        cores); SessionError saying what we were `doing`."""
        try:
            return self._execute(query)
        except pymysql.MySQLError as exc:
            raise SessionError(f"cannot {doing} on {self.target} as {self.current_user}: {self._why(exc)}")

    def _probe_value(self, query):
        """The first column of the first row of `query`, or None when the login may not read it."""
        try:
            rows = self._execute(query)
        except pymysql.MySQLError as exc:
            if error_code(exc) in ACCESS_DENIED:
                return None
            raise SessionError(f"query failed on {self.target} as {self.current_user}: {self._why(exc)}")
        return rows[0][0] if rows else 0

    # ------------------------------------------------------------ contract
    @property
    def own_id(self):
        return self._own_id

    def server_facts(self):
        unproven = self._transaction_state_unproven()
        return {
            "engine": self.engine,
            "flavour": self.flavour.name,
            "version": ".".join(str(part) for part in self.flavour.version),
            "version_full": self.version_text,
            "hostname": self.server_hostname,
            "max_connections": int(self.max_connections) if self.max_connections is not None else None,
            "login_user": self.current_user,
            "own_id": self._own_id,
            "server_started": self.server_started,
            "performance_schema": self.flavour.performance_schema,
            "processlist_table": self.flavour.processlist_table,
            "can_see_all_sessions": self.flavour.can_see_all(self.privileges),
            "can_end_sessions": self.can_end_sessions(),
            "platform": self.platform_facts(),
            "kill_statements": self.flavour.kill_templates(),
            "applications_readable": self.attrs_readable,
            "superusers_readable": self.superusers_readable,
            # Lock waits the records show (blocked_by, lock_wait_seconds): InnoDB's
            # waiters always, on whom only where readable; metadata-lock waits only where
            # performance_schema records them (instrument wait/lock/metadata/sql/mdl).
            "row_lock_waits_visible": self.row_lock_waits_readable,
            "metadata_locks_visible": self.metadata_locks_visible,
            # Whether a Sleep thread's transaction state is exact (performance_schema's
            # transaction events); when not, why, and every Sleep thread is idle_in_transaction.
            "transaction_state_exact": unproven is None,
            "transaction_state_detail": unproven,
            "read_only": bool(self._read_only()),
            "role": self.server_role(),
        }

    def _read_only(self):
        return self._fetch_one(self.flavour.read_only_query())[0]

    def server_role(self):
        """A replica is read-only with a replication source: listed where the login may read the
        replica status, else seen by its running replication threads."""
        read_only = self._read_only()
        if not read_only:
            return statements.server_role(read_only, 0)
        try:
            sources = len(self._execute(self.flavour.replica_status_query()))
        except pymysql.MySQLError as exc:
            if error_code(exc) not in ACCESS_DENIED:
                raise SessionError(f"query failed on {self.target} as {self.current_user}: {self._why(exc)}")
            sources = self._probe_value(self.flavour.replication_threads_query()) or 0
        return statements.server_role(read_only, sources)

    # ------------------------------------------------------------ platform
    def detect_platform(self):
        query = _platform.mysql_detect_query(self.superusers_readable)
        return _platform.detected(self._fetch_one(query))

    def _use_platform(self):
        """Resolve the platform (once) and how threads are ended there: on RDS, a login without
        CONNECTION ADMIN or SUPER (the master user) ends them with the service's procedures."""
        self.flavour.rds_kill = self.platform == _platform.RDS and not self.flavour.can_kill(self.privileges)

    def _transaction_state_unproven(self):
        """Why the transaction state of Sleep threads is not exact right now, or None."""
        if self._transactions_unproven is not None:
            return self._transactions_unproven
        (on,) = self._fetch_one(statements.transaction_events_on_query())
        return None if on else statements.TRX_EVENTS_OFF

    # ------------------------------------------------------------ sweep lock
    def acquire_sweep_lock(self, timeout):
        """Take GET_LOCK('dbhygiene.sessions.sweep'), waiting at most `timeout` seconds.

        True when held (by this connection: closing it releases the lock), False when
        another sweep still holds it after `timeout`.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
            raise SessionError(
                f"sweep lock timeout: must be a finite number of seconds, got {shown(timeout, SHOWN_CHARS)}"
            )
        if not 0 <= timeout <= MAX_LOCK_TIMEOUT:
            raise SessionError(
                f"sweep lock timeout: must be between 0 and {MAX_LOCK_TIMEOUT} seconds, "
                f"got {shown(timeout, SHOWN_CHARS)}"
            )
        if self._lock_held:
            return True
        self._set_io_timeout(self.query_timeout + int(math.ceil(timeout)) + 1)
        try:
            (got,) = self._fetch_one(self.flavour.lock_query(timeout, self.query_timeout))
        finally:
            if self._conn is not None:
                self._set_io_timeout(self.query_timeout)
        if got is None:
            raise SessionError(f"cannot take the sweep lock {SWEEP_LOCK!r} on {self.target}")
        self._lock_held = bool(int(got))
        return self._lock_held

    def release_sweep_lock(self):
        """Release the sweep lock if this driver holds it (no error when it does not)."""
        if not self._lock_held:
            return
        self._lock_held = False
        self._fetch_one(self.flavour.unlock_query())

    # ------------------------------------------------------------ listing
    def _list(self, ids=None, applications=True, locks=None):
        """The client threads (`ids`: only these). Lock waits: a full listing reads every
        source it can; a re-read by id reads whether the threads wait only if `locks`."""
        locks = ids is None if locks is None else locks
        query = self.flavour.list_query(
            with_superusers=self.superusers_readable,
            ids=ids,
            row_locks=locks and self.row_lock_waits_readable,
            metadata_locks=locks and self.metadata_locks_visible,
            transactions=self.transactions_readable,
        )
        # InnoDB refreshes INFORMATION_SCHEMA.INNODB_TRX only for a reader that comes after
        # guard.TRX_CACHE_QUIET_SECONDS without one: our own listings (a plan right after the
        # last sweep's confirm wait) must not keep it stale (its InnoDB lock waits; whether a
        # Sleep thread is in a transaction comes from the transaction events, which another
        # client cannot starve). A victim's re-read right before its KILL, `ids`, needs no fresh
        # transaction list.
        if ids is None and self._trx_read_at is not None:
            time.sleep(max(0.0, self._trx_read_at + guard.TRX_CACHE_QUIET_SECONDS - time.monotonic()))
        try:
            rows = self._execute(query)
        except pymysql.MySQLError as exc:
            raise SessionError(f"cannot list the threads on {self.target} as {self.current_user}: {self._why(exc)}")
        finally:
            self._trx_read_at = time.monotonic()
        sessions = [normalize_row(row, self.server_started, unproven=self._transactions_unproven) for row in rows]
        if ids is None:
            self._use_platform()
            self.mark_service_sessions(sessions)
        if ids is None:
            self._threads_seen = len(sessions) + 1
        if applications and self.list_applications:
            self._add_applications(sessions)
        return sessions

    def _add_applications(self, sessions):
        """Set `application` of each session: from the cache, else one read of the attributes.

        Only found values are cached (a thread's attributes may not be recorded yet in
        the instant after its login), so a thread without program_name is asked again.
        """
        if not self.attrs_readable:
            return
        unknown = [s for s in sessions if s["key"] not in self._applications]
        if unknown:
            ids = [s["id"] for s in unknown] if len(unknown) <= 1000 else None
            try:
                rows = self._execute(statements.Flavour.attrs_query(ids))
            except pymysql.MySQLError as exc:
                raise SessionError(
                    f"cannot read the connection attributes on {self.target} as {self.current_user}: {self._why(exc)}"
                )
            found = dict((int(thread_id), value) for thread_id, value in rows)
            for session in unknown:
                value = found.get(session["id"])
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if value is not None:
                    self._applications[session["key"]] = value
        for session in sessions:
            session["application"] = self._applications.get(session["key"])

    def list_sessions(self):
        return self._list()

    def query_templates(self):
        return self.flavour.templates(
            self.row_lock_waits_readable, self.metadata_locks_visible, self.transactions_readable
        )
