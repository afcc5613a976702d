# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL driver: connect, list sessions, guarded end.

Private to the collection. Its statements, and the reading of their rows into
session records, are in ``statements`` (pure: every query builder returns
``(sql, params)`` and is unit tested without a database); the connection
options, their check and the login's rights are in ``connect`` (pure); this
file connects and drives the statements.
Importable without psycopg2 (``HAS_PSYCOPG2`` says whether it is there), so
that the modules can report a missing library cleanly. It is the driver module
the engine registry names (``_engines.py``): ``open_driver``, ``PostgreSQLDriver``,
``HAS_PSYCOPG2`` and ``connection_argument_spec``.

How the safety invariants of docs/architecture.md are kept here:

* Our own connection carries an application_name of its own, unique per
  connection (``dbhygiene.sessions-<random>``), and is excluded by pid and by
  that name: a connection pooler that moves us to another backend cannot make
  us list ourselves. Only ``client backend`` rows are ever listed or signalled.
* The connection is in autocommit, so every statement is its own transaction
  and reads a fresh ``pg_stat_activity`` snapshot (it is frozen for the rest of
  a transaction once read).
* The guarded end checks and signals each victim in a fresh snapshot of
  backend status, in one statement per batch (see "The guard" in
  ``statements``). It
  signals only when pid, backend_start (from the session key), state and
  state_change all still match the plan, and only when our login may signal
  it: an ERROR in the middle of a batch would leave us not knowing which
  signals were already sent. Everything else is reported as ``gone``,
  ``state_changed`` or ``failed`` with a reason.
* Every wait is bounded: the connection is asynchronous and every poll of it
  waits in select() against a deadline (``connect_timeout`` for the connection,
  ``query_timeout`` for each statement), which holds even against a server
  frozen with SIGSTOP whose kernel still ACKs TCP; the server also cancels our
  statements itself after ``query_timeout`` (``statement_timeout``), and libpq
  keepalives notice a peer that vanished.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import selectors
import time
import traceback

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _engines, _platform
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import REASON_FAILED, Driver
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import cut, one_line
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.connect import (
    DEFAULT_QUERY_TIMEOUT,
    connect_hint,
    connect_kwargs,
    describe_target,
    new_application_name,
    preflight_error,
    scrub,
    timeouts,
    validate_connection_params,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.guard import (
    end_query,
    guard_of,
    row_outcome,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.guard import (
    query_templates as guard_templates,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.statements import (
    _FACTS_KEYS,
    SIGNAL_FUNCTIONS,
    facts_query,
    list_sessions_query,
    normalize_row,
    query_templates,
    rights_query,
    role_query,
    server_role,
    session_setup_query,
    sweep_lock_query,
    sweep_unlock_query,
)

# isort: split
# The engine registry's driver module gives the engine's connection options too (_inprocess.py).
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.connect import (  # noqa: F401  # pylint: disable=unused-import
    connection_argument_spec,
)

try:
    import psycopg2
    import psycopg2.extensions

    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

# The client-side bound of a statement is query_timeout plus this, so that the
# server's own statement_timeout (a clean error, connection kept) fires first
# when the server is alive.
CLIENT_GRACE_SECONDS = 1.0
# Sessions per guarded statement: one round trip for a normal sweep, bounded
# statement size (and statement time) for a big one.
BATCH_SIZE = 200
SWEEP_LOCK_POLL_SECONDS = 0.25


class _TimedOut(Exception):
    """The server did not answer before the deadline."""


def wait_for(conn, deadline):
    """Poll an asynchronous psycopg2 connection until its operation is done.

    Each wait is a select() on the connection's socket bounded by `deadline`
    (time.monotonic()), so a server that accepts TCP but never answers cannot
    hold us longer. Raises _TimedOut, or the psycopg2.Error of the operation.
    """
    selector = selectors.DefaultSelector()
    try:
        while True:
            state = conn.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            if state == psycopg2.extensions.POLL_READ:
                events = selectors.EVENT_READ
            elif state == psycopg2.extensions.POLL_WRITE:
                events = selectors.EVENT_WRITE
            else:
                raise psycopg2.OperationalError(f"unexpected poll state {state!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _TimedOut()
            selector.register(conn.fileno(), events)
            try:
                ready = selector.select(remaining)
            finally:
                selector.unregister(conn.fileno())
            if not ready and deadline - time.monotonic() <= 0:
                raise _TimedOut()
    finally:
        selector.close()


def open_driver(params):
    """A connected PostgreSQLDriver from the module's connection options (module.params).

    Checks the options first (SessionError naming the field), then connects
    within connect_timeout, whatever the server does once reached (a host
    name is resolved by libpq before the first poll, bounded by the system's
    resolver). Raises SessionError (never with the password in it) when the
    connection fails.
    """
    validate_connection_params(params)
    if not HAS_PSYCOPG2:
        raise SessionError("the PostgreSQL modules need the Python library psycopg2 on the node that runs them")
    application_name = new_application_name()
    target = describe_target(params)
    user = cut(params.get("login_user") or "(libpq default user)")
    connect_timeout, query_timeout = timeouts(params)
    conn = None
    try:
        # Asynchronous, so that every wait goes through wait_for() and its deadline
        # (libpq's own connect_timeout does not cover a server that ACKs and stays silent).
        conn = psycopg2.connect(async_=True, **connect_kwargs(params, application_name))
        wait_for(conn, time.monotonic() + connect_timeout)
    except _TimedOut:
        conn.close()
        raise SessionError(
            f"cannot connect to PostgreSQL at {target} as {user}: no answer within {connect_timeout} s "
            "(connect_timeout); "
            "the server may be overloaded, frozen or behind a firewall that drops packets"
        )
    except psycopg2.Error as exc:
        if conn is not None:
            conn.close()
        message = scrub(exc, params)
        hint = connect_hint(message)
        raise SessionError(
            f"cannot connect to PostgreSQL at {target} as {user}: {message}{('; ' + hint if hint else '')}"
        )
    try:
        driver = PostgreSQLDriver(conn, target, application_name, query_timeout)
        driver.platform_option = params.get("platform")
        return driver
    except Exception:
        conn.close()
        raise


# ---------------------------------------------------------------- driver
class _ConnectionLost(SessionError):
    """The connection is gone (it failed, or we closed it after a deadline passed)."""


class PostgreSQLDriver(Driver):
    """One open asynchronous (hence autocommit) connection to a PostgreSQL server.

    Build it with open_driver(). Every statement is bounded server-side by
    statement_timeout and client-side by a deadline (query_timeout plus a
    second); a statement that passes the deadline closes the connection.
    """

    engine = "postgresql"
    unsupported_conditions = _engines.ENGINES["postgresql"].unsupported_conditions

    def __init__(self, conn, target, application_name, query_timeout=DEFAULT_QUERY_TIMEOUT):
        self._conn = conn
        self.target = target
        self.application_name = application_name
        self.query_timeout = query_timeout
        self._rights = None
        self._holds_sweep_lock = False
        setup = self._fetch_one(session_setup_query(query_timeout), "identify our own connection")
        self._own_id, self.version_num = setup[0], setup[2]

    # -- plumbing
    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
                self._holds_sweep_lock = False

    def _cursor(self):
        if self._conn is None:
            raise _ConnectionLost(f"the connection to PostgreSQL at {self.target} is closed")
        return self._conn.cursor()

    def _query(self, query, doing):
        """(column names, rows) of one statement; SessionError saying what we were `doing`.

        _ConnectionLost (a SessionError) when the connection did not survive.
        """
        sql, params = query
        cur = self._cursor()
        try:
            try:
                cur.execute(sql, params)
                wait_for(self._conn, time.monotonic() + self.query_timeout + CLIENT_GRACE_SECONDS)
            except _TimedOut:
                # The statement may still be running or the server frozen: this
                # connection cannot be trusted with another statement.
                self.close()
                error = _ConnectionLost(
                    f"cannot {doing} on PostgreSQL at {self.target}: no answer within {self.query_timeout} s "
                    "(query_timeout); "
                    "the connection was closed"
                )
                error.statement = sql  # the template (_driver.failed_statement)
                raise error
            except psycopg2.Error as exc:
                lost = self._conn is None or self._conn.closed
                error = (_ConnectionLost if lost else SessionError)(
                    f"cannot {doing} on PostgreSQL at {self.target}: {one_line(exc)}"
                )
                error.statement = sql  # the template (_driver.failed_statement)
                if lost:
                    self.close()
                raise error
            if not cur.description:
                return [], []
            return [column[0] for column in cur.description], cur.fetchall()
        finally:
            cur.close()

    def _fetch_one(self, query, doing):
        rows = self._query(query, doing)[1]
        if not rows:
            raise SessionError(f"cannot {doing} on PostgreSQL at {self.target}: the server returned nothing")
        return rows[0]

    def execute(self, query, doing):
        """Rows of one (sql, params) built outside the driver (the drain and timeouts cores; a
        multi-statement one is one transaction); SessionError saying what we were `doing`."""
        return self._query(query, doing)[1]

    @property
    def own_id(self):
        return self._own_id

    # -- one sweep per server
    def acquire_sweep_lock(self, timeout):
        """Take the sweep's session advisory lock, waiting at most `timeout` seconds.

        True when we hold it (now or already), False when another sweep still
        holds it after `timeout`. Released by release_sweep_lock() or when the
        connection closes. Advisory locks are per database: sweeps of one server
        share the lock when they connect to the same login_db.
        """
        if self._holds_sweep_lock:
            return True
        deadline = time.monotonic() + max(0.0, float(timeout))
        while True:
            if self._fetch_one(sweep_lock_query(), "take the sweep lock")[0]:
                self._holds_sweep_lock = True
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(SWEEP_LOCK_POLL_SECONDS, remaining))

    def release_sweep_lock(self):
        """Release the sweep lock if we hold it (a no-op otherwise, or when closed)."""
        if not self._holds_sweep_lock or self._conn is None:
            self._holds_sweep_lock = False
            return
        try:
            self._fetch_one(sweep_unlock_query(), "release the sweep lock")
        finally:
            self._holds_sweep_lock = False

    # -- facts and rights
    def _load_rights(self):
        if self._rights is None:
            row = self._fetch_one(rights_query(), "read the rights of our login")
            login, superuser, read_all_stats, signal_backend, version_num = row
            self._rights = {
                "login": login,
                "superuser": bool(superuser),
                "read_all_stats": bool(read_all_stats),
                "signal_backend": bool(signal_backend),
                "version_num": version_num,
            }
        return self._rights

    def _login(self):
        return self._load_rights()["login"]

    def server_facts(self):
        facts = dict(zip(_FACTS_KEYS, self._fetch_one(facts_query(), "read the server facts")))
        facts.update(
            engine="postgresql",
            flavour="postgresql",
            target=self.target,
            role=server_role(facts["in_recovery"]),
            platform=self.platform_facts(),
        )
        return facts

    def server_role(self):
        return server_role(self._fetch_one(role_query(), "read whether the server is a standby")[0])

    def detect_platform(self):
        return _platform.detected(self._fetch_one(_platform.postgresql_detect_query(), "detect the platform"))

    def preflight(self, signal, policy=None):
        # Every right PostgreSQL needs is needed by every policy: `policy` changes nothing here.
        message = preflight_error(self._load_rights(), signal, self.target)
        if message:
            raise SessionError(message)

    # -- sessions
    def list_sessions(self):
        query = list_sessions_query(self.application_name, version_num=self.version_num)
        columns, rows = self._query(query, "list sessions")
        return self.mark_service_sessions([normalize_row(dict(zip(columns, row))) for row in rows])

    def end_sessions(self, victims, mode):
        """Guarded end of `victims`, one statement per batch, one fresh snapshot per victim.

        When the connection is lost part-way (a deadline passed, the server went
        away), raises SessionError with attribute ``outcomes``: the (session,
        outcome, detail) known so far, signals already sent included; the
        sessions of the batch that was in flight are not in it (their signal may
        or may not have gone out) and the message says how many they are.
        """
        if mode not in SIGNAL_FUNCTIONS:
            raise SessionError(f"unknown end mode {mode!r} (terminate or cancel)")
        results = [None] * len(victims)
        checkable = []  # (index in victims, guard)
        seen_keys = set()
        seen_pids = set()
        for index, session in enumerate(victims):
            try:
                guard = guard_of(session)
            except ValueError as exc:
                results[index] = (session, REASON_FAILED, f"not ended: {exc}")
                continue
            if session.get("key") in seen_keys or guard[0] in seen_pids:
                results[index] = (session, REASON_FAILED, "not ended: listed twice in the plan")
                continue
            if str(guard[0]) == str(self._own_id):
                results[index] = (session, REASON_FAILED, "not ended: this is our own connection")
                continue
            seen_keys.add(session.get("key"))
            seen_pids.add(guard[0])
            checkable.append((index, guard))
        for start in range(0, len(checkable), BATCH_SIZE):
            batch = checkable[start : start + BATCH_SIZE]
            try:
                outcomes = self._end_batch([guard for _index, guard in batch], mode)
            except _ConnectionLost as exc:
                # Outcomes of this batch already known (its sessions retried one by one) count too.
                partial = getattr(exc, "partial", [])
                for (index, _guard), outcome in zip(batch, partial):
                    results[index] = (victims[index],) + outcome
                known = [result for result in results if result is not None]
                untried = len(checkable) - start - len(batch)
                if getattr(exc, "one_by_one", False):
                    in_flight, untried = 1, untried + len(batch) - len(partial) - 1
                else:
                    in_flight = len(batch)
                error = SessionError(
                    f"{exc}; {in_flight} session(s) of the statement in flight may or may not have been signalled, "
                    f"{untried} were not tried"
                )
                error.outcomes = known
                raise error
            for (index, _guard), outcome in zip(batch, outcomes):
                results[index] = (victims[index],) + outcome
        return results

    def _end_batch(self, guards, mode):
        """[(outcome, detail)] for one batch; one statement, or one per session when it errors."""
        try:
            rows = self._query(end_query(guards, mode), f"{mode} sessions")[1]
        except _ConnectionLost:
            raise
        except SessionError as batch_error:
            if len(guards) == 1:
                return [(REASON_FAILED, f"not ended: {batch_error}")]
            # Some signals of the failed statement may have gone out: ask each
            # session again on its own, the guard sorts out who is still there.
            outcomes = []
            for guard in guards:
                try:
                    outcomes.extend(self._end_batch([guard], mode))
                except _ConnectionLost as exc:
                    exc.partial, exc.one_by_one = outcomes, True
                    raise
            return outcomes
        return [row_outcome(guard, row, mode, self.target, self._login) for guard, row in zip(guards, rows)]

    def query_templates(self):
        """Every statement the driver runs, as templates: the statements' and the guard's."""
        return query_templates() + guard_templates()
