# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL driver: connection options, connect, list sessions, guarded end.

Private to the collection. All SQL of PostgreSQL lives here; every query
builder returns ``(sql, params)`` and is unit tested without a database.
Importable without psycopg2 (``HAS_PSYCOPG2`` says whether it is there), so
that the modules can report a missing library cleanly.

How the safety invariants of DESIGN.md are kept here:

* Our own connection carries an application_name of its own, unique per
  connection (``dbhygiene.sessions-<random>``), and is excluded by pid and by
  that name: a connection pooler that moves us to another backend cannot make
  us list ourselves. Only ``client backend`` rows are ever listed or signalled.
* The connection is in autocommit, so every statement is its own transaction
  and reads a fresh ``pg_stat_activity`` snapshot (it is frozen for the rest of
  a transaction once read).
* The guarded end is one statement per batch. For each planned session it
  re-reads the backend and signals it only when pid, backend_start (from the
  session key), state and state_change all still match the plan, and only when
  our login may signal it: an ERROR in the middle of a batch would leave us not
  knowing which signals were already sent. Everything else is reported as
  ``gone``, ``state_changed`` or ``failed`` with a reason.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import re
import secrets
import traceback

from ansible.module_utils.common.parameters import env_fallback
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    QUERY_MAX_CHARS,
    REASON_FAILED,
    REASON_GONE,
    REASON_STATE_CHANGED,
    Driver,
    SessionError,
    redact,
)

try:
    import psycopg2
    import psycopg2.extensions

    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

APPLICATION_PREFIX = "dbhygiene.sessions"
DEFAULT_PORT = 5432
DEFAULT_DB = "postgres"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Sessions per guarded statement: one round trip for a normal sweep, bounded
# statement size for a big one.
BATCH_SIZE = 200
MIN_SERVER_VERSION_NUM = 100000  # backend_type and the pg_signal_backend / pg_read_all_stats roles

OUTCOME_TERMINATED = "terminated"
OUTCOME_CANCELLED = "cancelled"
_SIGNAL_FUNCTIONS = {"terminate": "pg_terminate_backend", "cancel": "pg_cancel_backend"}
_SIGNAL_OUTCOMES = {"terminate": OUTCOME_TERMINATED, "cancel": OUTCOME_CANCELLED}


# ---------------------------------------------------------------- options
def connection_argument_spec():
    """The connection options of every PostgreSQL module (doc fragment
    ``dbhygiene.sessions._postgresql_connection``). Names and environment
    fallbacks follow community.postgresql and libpq."""
    return dict(
        login_host=dict(type="str", aliases=["host"], fallback=(env_fallback, ["PGHOST"])),
        login_port=dict(type="int", default=DEFAULT_PORT, aliases=["port"], fallback=(env_fallback, ["PGPORT"])),
        login_user=dict(type="str", default="postgres", aliases=["login"], fallback=(env_fallback, ["PGUSER"])),
        login_password=dict(type="str", no_log=True, fallback=(env_fallback, ["PGPASSWORD"])),
        login_unix_socket=dict(type="path", aliases=["unix_socket"]),
        login_db=dict(type="str", aliases=["db"], fallback=(env_fallback, ["PGDATABASE"])),
        connect_timeout=dict(type="int", default=10, fallback=(env_fallback, ["PGCONNECT_TIMEOUT"])),
        ssl_mode=dict(type="str", choices=list(SSL_MODES), default="prefer", fallback=(env_fallback, ["PGSSLMODE"])),
        ca_cert=dict(type="path", aliases=["ssl_rootcert"], fallback=(env_fallback, ["PGSSLROOTCERT"])),
        ssl_cert=dict(type="path", fallback=(env_fallback, ["PGSSLCERT"])),
        ssl_key=dict(type="path", no_log=False, fallback=(env_fallback, ["PGSSLKEY"])),
    )


def _application_name():
    return "%s-%s" % (APPLICATION_PREFIX, secrets.token_hex(6))


def connect_kwargs(params, application_name):
    """psycopg2.connect() keyword arguments from the module's connection options.

    Options left unset are not passed, so libpq's own defaults and environment
    (PGSERVICE, ~/.pgpass, ...) still apply. The unix socket wins over the host.
    """
    kwargs = {
        "dbname": params.get("login_db") or DEFAULT_DB,
        "application_name": application_name,
    }
    socket = params.get("login_unix_socket")
    if socket:
        # libpq wants the directory; accept the socket file itself too.
        base = os.path.basename(socket.rstrip("/"))
        kwargs["host"] = os.path.dirname(socket.rstrip("/")) if base.startswith(".s.PGSQL.") else socket
    elif params.get("login_host"):
        kwargs["host"] = params["login_host"]
    for option, keyword in (
        ("login_port", "port"),
        ("login_user", "user"),
        ("login_password", "password"),
        ("connect_timeout", "connect_timeout"),
        ("ssl_mode", "sslmode"),
        ("ca_cert", "sslrootcert"),
        ("ssl_cert", "sslcert"),
        ("ssl_key", "sslkey"),
    ):
        value = params.get(option)
        if value is not None and value != "":
            kwargs[keyword] = value
    return kwargs


def describe_target(params):
    """Where we connect, for messages: host:port or the socket directory. Never a secret."""
    port = params.get("login_port") or DEFAULT_PORT
    if params.get("login_unix_socket"):
        return "%s (unix socket, port %s)" % (params["login_unix_socket"], port)
    if params.get("login_host"):
        return "%s:%s" % (params["login_host"], port)
    return "the default PostgreSQL server (libpq defaults, port %s)" % port


def _one_line(text):
    return " ".join(str(text).split())


def _scrub(text, params):
    """A driver message on one line, without the password whatever the driver put in it."""
    return redact(_one_line(text), params.get("login_password"))


def _connect_hint(message):
    lowered = message.lower()
    if "no pg_hba.conf entry" in lowered:
        return "the server's pg_hba.conf does not admit this login from here (over TLS or not: see ssl_mode)"
    if "certificate verify failed" in lowered or "root certificate" in lowered:
        return "check ca_cert: it must be the CA that signed the server's certificate"
    if "does not match host name" in lowered:
        return "with ssl_mode verify-full, login_host must be a name or address in the server's certificate"
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return "check login_user and login_password"
    if "certificate" in lowered or "ssl" in lowered:
        return "check ssl_mode, ca_cert, ssl_cert and ssl_key"
    if "timeout" in lowered or "could not connect" in lowered or "connection refused" in lowered:
        return "check login_host, login_port and that the server accepts connections from here"
    return None


def open_driver(params):
    """A connected PostgreSQLDriver from the module's connection options (module.params).

    Raises SessionError (never with the password in it) when the connection fails.
    """
    if not HAS_PSYCOPG2:
        raise SessionError("the PostgreSQL modules need the Python library psycopg2 on the node that runs them")
    application_name = _application_name()
    target = describe_target(params)
    user = params.get("login_user") or "(libpq default user)"
    try:
        conn = psycopg2.connect(**connect_kwargs(params, application_name))
    except psycopg2.Error as exc:
        message = _scrub(exc, params)
        hint = _connect_hint(message)
        raise SessionError(
            "cannot connect to PostgreSQL at %s as %s: %s%s" % (target, user, message, "; " + hint if hint else "")
        )
    try:
        conn.autocommit = True
        return PostgreSQLDriver(conn, target, application_name)
    except Exception:
        conn.close()
        raise


# ---------------------------------------------------------------- SQL
# pg_stat_activity.state -> the normalized states of DESIGN.md.
_STATE_SQL = (
    "CASE {col} WHEN 'active' THEN 'active' WHEN 'idle' THEN 'idle' "
    "WHEN 'idle in transaction' THEN 'idle_in_transaction' "
    "WHEN 'idle in transaction (aborted)' THEN 'idle_in_transaction_aborted' "
    "ELSE 'other' END"
)

_LIST_SQL = (
    "SELECT a.pid, a.backend_start, a.usename, a.datname, a.application_name, "
    "host(a.client_addr) AS client_addr, a.client_port, a.client_hostname, "
    + _STATE_SQL.format(col="a.state")
    + " AS state, a.state AS raw_state, a.state_change, a.query_start, a.xact_start, "
    "EXTRACT(EPOCH FROM (n.now - a.backend_start))::float8 AS connected_seconds, "
    "EXTRACT(EPOCH FROM (n.now - a.state_change))::float8 AS idle_seconds, "
    "CASE WHEN a.state = 'active' THEN EXTRACT(EPOCH FROM (n.now - a.query_start))::float8 END "
    "AS query_seconds, "
    "EXTRACT(EPOCH FROM (n.now - a.xact_start))::float8 AS transaction_seconds, "
    "left(a.query, %(query_max)s) AS query, a.backend_type, a.wait_event_type, a.wait_event, "
    "COALESCE(r.rolsuper, false) AS superuser "
    "FROM pg_stat_activity AS a "
    "CROSS JOIN (SELECT clock_timestamp() AS now) AS n "
    "LEFT JOIN pg_roles AS r ON r.oid = a.usesysid "
    "WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() "
    "AND a.application_name IS DISTINCT FROM %(own_application)s "
    "ORDER BY a.pid"
)

_LIST_COLUMNS = (
    "pid",
    "backend_start",
    "usename",
    "datname",
    "application_name",
    "client_addr",
    "client_port",
    "client_hostname",
    "state",
    "raw_state",
    "state_change",
    "query_start",
    "xact_start",
    "connected_seconds",
    "idle_seconds",
    "query_seconds",
    "transaction_seconds",
    "query",
    "backend_type",
    "wait_event_type",
    "wait_event",
    "superuser",
)

_OWN_PID_SQL = "SELECT pg_backend_pid()"

_RIGHTS_SQL = (
    "SELECT current_user, r.rolsuper, pg_has_role('pg_read_all_stats', 'USAGE'), "
    "pg_has_role('pg_signal_backend', 'USAGE'), current_setting('server_version_num')::int "
    "FROM pg_roles AS r WHERE r.rolname = current_user"
)

_FACTS_SQL = (
    "SELECT current_setting('server_version'), current_setting('server_version_num')::int, version(), "
    "current_setting('max_connections')::int, current_user, current_database(), "
    "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), pg_is_in_recovery(), "
    "pg_has_role('pg_read_all_stats', 'USAGE'), pg_has_role('pg_signal_backend', 'USAGE'), "
    "pg_backend_pid(), current_setting('application_name')"
)

_FACTS_KEYS = (
    "version",
    "version_num",
    "version_full",
    "max_connections",
    "login_user",
    "login_db",
    "login_superuser",
    "in_recovery",
    "can_read_all_stats",
    "can_signal",
    "own_pid",
    "own_application",
)

# One guarded statement per batch. The CASE only reaches the signal function
# when every guard holds, and in that order; the function is volatile, so the
# planner cannot evaluate it early. {signal} is one of two fixed function names.
_END_SQL = (
    "SELECT v.ord, "
    "CASE WHEN a.pid IS NULL OR a.backend_start IS DISTINCT FROM v.backend_start "
    "OR a.backend_type IS DISTINCT FROM 'client backend' THEN 'gone' "
    "WHEN " + _STATE_SQL.format(col="a.state") + " IS DISTINCT FROM v.state "
    "OR a.state_change IS DISTINCT FROM v.state_change THEN 'state_changed' "
    "WHEN NOT (me.rolsuper OR (NOT COALESCE(r.rolsuper, false) "
    "AND (pg_has_role(a.usesysid, 'USAGE') OR pg_has_role('pg_signal_backend', 'USAGE')))) THEN 'denied' "
    "WHEN {signal}(a.pid) THEN 'signalled' "
    "ELSE 'gone' END AS outcome, "
    "a.pid IS NOT NULL AS pid_present, a.backend_start, "
    + _STATE_SQL.format(col="a.state")
    + " AS state_now, a.state_change, COALESCE(r.rolsuper, false) AS target_superuser "
    "FROM unnest(%(pids)s::int[], %(backend_starts)s::timestamptz[], %(states)s::text[], "
    "%(state_changes)s::timestamptz[]) WITH ORDINALITY AS v(pid, backend_start, state, state_change, ord) "
    "CROSS JOIN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS me "
    "LEFT JOIN pg_stat_activity AS a ON a.pid = v.pid "
    "LEFT JOIN pg_roles AS r ON r.oid = a.usesysid "
    "ORDER BY v.ord"
)


def list_sessions_query(own_application, query_max=QUERY_MAX_CHARS):
    """(sql, params) listing every client session but ours, in one statement."""
    return _LIST_SQL, {"own_application": own_application, "query_max": int(query_max)}


def own_pid_query():
    """(sql, params): the pid of our own backend."""
    return _OWN_PID_SQL, {}


def rights_query():
    """(sql, params): our login, whether it is superuser, can read all stats, can signal; server version."""
    return _RIGHTS_SQL, {}


def facts_query():
    """(sql, params) for server_facts()."""
    return _FACTS_SQL, {}


def end_query(guards, mode):
    """(sql, params): the guarded end of one batch.

    ``guards`` are (pid, backend_start, state, state_change) tuples (timestamps
    as ISO 8601 text, state normalized); ``mode`` is terminate or cancel.
    """
    if mode not in _SIGNAL_FUNCTIONS:
        raise ValueError("mode must be terminate or cancel, not %r" % (mode,))
    params = {
        "pids": [guard[0] for guard in guards],
        "backend_starts": [guard[1] for guard in guards],
        "states": [guard[2] for guard in guards],
        "state_changes": [guard[3] for guard in guards],
    }
    return _END_SQL.format(signal=_SIGNAL_FUNCTIONS[mode]), params


def query_templates():
    """Every statement the driver runs, as templates (placeholders, never values)."""
    return [
        _OWN_PID_SQL,
        _RIGHTS_SQL,
        _FACTS_SQL,
        _LIST_SQL,
        _END_SQL.format(signal=_SIGNAL_FUNCTIONS["terminate"]),
        _END_SQL.format(signal=_SIGNAL_FUNCTIONS["cancel"]),
    ]


# ---------------------------------------------------------------- records
def _iso(value):
    """A timestamptz (datetime) as ISO 8601 in UTC, microseconds kept when non-zero."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).isoformat()


def _seconds(value):
    """Seconds rounded to the millisecond; never negative (the clock read and the
    activity snapshot are a few microseconds apart)."""
    return None if value is None else max(0.0, round(float(value), 3))


def session_key(pid, backend_start_iso):
    return "%s@%s" % (pid, backend_start_iso)


_KEY_RE = re.compile(r"^([0-9]+)@(.+)\Z")


def parse_key(key):
    """(pid, backend_start ISO text) from a session key; ValueError when it is not one of ours."""
    found = _KEY_RE.match(str(key or ""))
    if not found:
        raise ValueError("not a PostgreSQL session key (pid@backend_start): %r" % (key,))
    return int(found.group(1)), found.group(2)


def normalize_row(row):
    """A pg_stat_activity row (dict of _LIST_COLUMNS) as the normalized session record."""
    connected_at = _iso(row["backend_start"])
    return {
        "id": row["pid"],
        "key": session_key(row["pid"], connected_at),
        "user": row["usename"],
        "database": row["datname"],
        "application": row["application_name"],
        "client_addr": row["client_addr"],
        "state": row["state"],
        "connected_at": connected_at,
        "state_since": _iso(row["state_change"]),
        "connected_seconds": _seconds(row["connected_seconds"]),
        "idle_seconds": _seconds(row["idle_seconds"]),
        "query_seconds": _seconds(row["query_seconds"]),
        "transaction_seconds": _seconds(row["transaction_seconds"]),
        "query": row["query"],
        "superuser": bool(row["superuser"]),
        "backend_type": row["backend_type"],
        "command": None,
        # PostgreSQL extras
        "raw_state": row["raw_state"],
        "client_port": row["client_port"],
        "client_hostname": row["client_hostname"],
        "query_start": _iso(row["query_start"]),
        "transaction_start": _iso(row["xact_start"]),
        "wait_event_type": row["wait_event_type"],
        "wait_event": row["wait_event"],
    }


def guard_of(session):
    """(pid, backend_start, state, state_change) to re-check before signalling.

    The identity comes from the key (reuse-safe by design), the state from the
    record as planned. ValueError when the record cannot be checked.
    """
    pid, backend_start = parse_key(session.get("key"))
    if str(session.get("id")) != str(pid):
        raise ValueError("session id %r does not match its key %r" % (session.get("id"), session.get("key")))
    return (pid, backend_start, session.get("state"), session.get("state_since"))


def _grant_hint(login, role):
    quoted = '"%s"' % str(login).replace('"', '""')
    return "GRANT %s TO %s" % (role, quoted)


def preflight_error(rights, signal, target):
    """Why our login cannot do the job (a message naming the missing grant), or None.

    ``rights`` as read by rights_query(): login, superuser, read_all_stats,
    signal_backend, version_num. ``signal``: the run will cancel or terminate.
    """
    if rights["version_num"] < MIN_SERVER_VERSION_NUM:
        return "PostgreSQL at %s is version %s; dbhygiene.sessions needs PostgreSQL 10 or later" % (
            target,
            rights["version_num"],
        )
    if rights["superuser"]:
        return None
    missing = []
    if not rights["read_all_stats"]:
        missing.append(
            (
                "pg_read_all_stats",
                "cannot see other users' sessions (pg_stat_activity hides their state and query, "
                "so no rule could match them)",
            )
        )
    if signal and not rights["signal_backend"]:
        missing.append(("pg_signal_backend", "cannot cancel or terminate other users' sessions"))
    if not missing:
        return None
    login = rights["login"]
    return "login %s on PostgreSQL at %s %s: it lacks %s; as a superuser, run: %s" % (
        login,
        target,
        " and ".join(what for _role, what in missing),
        " and ".join(role for role, _what in missing),
        "; ".join(_grant_hint(login, role) for role, _what in missing),
    )


# ---------------------------------------------------------------- driver
class PostgreSQLDriver(Driver):
    """One open autocommit connection to a PostgreSQL server. Build it with open_driver()."""

    engine = "postgresql"
    unsupported_conditions = frozenset()

    def __init__(self, conn, target, application_name):
        self._conn = conn
        self.target = target
        self.application_name = application_name
        self._own_id = self._fetch_one(own_pid_query(), "identify our own connection")[0]
        self._rights = None

    # -- plumbing
    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _cursor(self):
        if self._conn is None:
            raise SessionError("the connection to PostgreSQL at %s is closed" % self.target)
        return self._conn.cursor()

    def _query(self, query, doing):
        """(column names, rows) of one statement; SessionError saying what we were `doing`."""
        sql, params = query
        cur = self._cursor()
        try:
            try:
                cur.execute(sql, params)
            except psycopg2.Error as exc:
                raise SessionError("cannot %s on PostgreSQL at %s: %s" % (doing, self.target, _one_line(exc)))
            if not cur.description:
                return [], []
            return [column[0] for column in cur.description], cur.fetchall()
        finally:
            cur.close()

    def _fetch_one(self, query, doing):
        rows = self._query(query, doing)[1]
        if not rows:
            raise SessionError("cannot %s on PostgreSQL at %s: the server returned nothing" % (doing, self.target))
        return rows[0]

    @property
    def own_id(self):
        return self._own_id

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

    def server_facts(self):
        facts = dict(zip(_FACTS_KEYS, self._fetch_one(facts_query(), "read the server facts")))
        facts.update(engine="postgresql", flavour="postgresql", target=self.target)
        return facts

    def preflight(self, signal, policy=None):
        # Every right PostgreSQL needs is needed by every policy: `policy` changes nothing here.
        message = preflight_error(self._load_rights(), signal, self.target)
        if message:
            raise SessionError(message)

    # -- sessions
    def list_sessions(self):
        columns, rows = self._query(list_sessions_query(self.application_name), "list sessions")
        return [normalize_row(dict(zip(columns, row))) for row in rows]

    def end_sessions(self, victims, mode):
        if mode not in _SIGNAL_FUNCTIONS:
            raise SessionError("unknown end mode %r (terminate or cancel)" % (mode,))
        results = [None] * len(victims)
        checkable = []  # (index in victims, guard)
        seen_keys = set()
        for index, session in enumerate(victims):
            try:
                guard = guard_of(session)
            except ValueError as exc:
                results[index] = (session, REASON_FAILED, "not ended: %s" % exc)
                continue
            if session.get("key") in seen_keys:
                results[index] = (session, REASON_FAILED, "not ended: listed twice in the plan")
                continue
            if str(guard[0]) == str(self._own_id):
                results[index] = (session, REASON_FAILED, "not ended: this is our own connection")
                continue
            seen_keys.add(session.get("key"))
            checkable.append((index, guard))
        for start in range(0, len(checkable), BATCH_SIZE):
            batch = checkable[start : start + BATCH_SIZE]
            for (index, _guard), outcome in zip(batch, self._end_batch([guard for _index, guard in batch], mode)):
                results[index] = (victims[index],) + outcome
        return results

    def _end_batch(self, guards, mode):
        """[(outcome, detail)] for one batch; one statement, or one per session when it errors."""
        try:
            rows = self._query(end_query(guards, mode), "%s sessions" % mode)[1]
        except SessionError as batch_error:
            if len(guards) == 1:
                return [(REASON_FAILED, "not ended: %s" % batch_error)]
            # Some signals of the failed statement may have gone out: ask each
            # session again on its own, the guard sorts out who is still there.
            outcomes = []
            for guard in guards:
                outcomes.extend(self._end_batch([guard], mode))
            return outcomes
        return [self._explain(guard, row, mode) for guard, row in zip(guards, rows)]

    def _explain(self, guard, row, mode):
        pid, backend_start, state, state_change = guard
        _ord, outcome, pid_present, now_start, state_now, change_now, target_superuser = row
        if outcome == "signalled":
            return (_SIGNAL_OUTCOMES[mode], None)
        if outcome == "gone":
            if pid_present and _iso(now_start) != backend_start:
                return (
                    REASON_GONE,
                    "pid %s now belongs to another session (started %s, planned %s)"
                    % (pid, _iso(now_start), backend_start),
                )
            return (REASON_GONE, "the session ended before it was signalled")
        if outcome == "state_changed":
            return (
                REASON_STATE_CHANGED,
                "was %s since %s when planned, now %s since %s" % (state, state_change, state_now, _iso(change_now)),
            )
        login = self._load_rights()["login"]
        if target_superuser:
            return (
                REASON_FAILED,
                "cannot %s pid %s on %s: it is a superuser's session and login %s is not a superuser "
                "(keep protect.superusers true, or run as a superuser)" % (mode, pid, self.target, login),
            )
        return (
            REASON_FAILED,
            "cannot %s pid %s on %s: login %s lacks pg_signal_backend; %s"
            % (mode, pid, self.target, login, _grant_hint(login, "pg_signal_backend")),
        )

    def query_templates(self):
        return query_templates()
