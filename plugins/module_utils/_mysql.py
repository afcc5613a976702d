# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MySQL / MariaDB driver: connection options, connect, list threads, guarded kill.

Private to the collection. The SQL of both flavours lives in
``_mysql_flavours`` (builders return ``(sql, params)``, unit tested without a
server); this file connects and executes. Importable without PyMySQL
(``HAS_PYMYSQL`` says whether it is there), so that the modules can report a
missing library cleanly.

How the safety invariants of docs/architecture.md are kept here:

* Our own connection is excluded by ``CONNECTION_ID()`` in the statement
  itself, carries the connection attribute program_name "dbhygiene.sessions"
  so a person can recognise it, and is never killed (checked again before KILL).
  System, replication and event threads are never listed.
* Superuser-class accounts (SUPER; MySQL also SYSTEM_USER) are read from the
  privilege tables, which a least-privilege login can read through a
  column-level grant that exposes no password hash. A login that cannot read
  them, or the connection attributes (program_name), fails the preflight of
  ``*_sessions`` with the GRANT that fixes it, instead of guessing.
* Guarded kill, per victim: a thread is killed only if it is the same thread
  (id, user, client host:port, server start) in the same state (COMMAND, no new
  statement: QUERY_ID; an active one's statement start not later than planned).
  MariaDB: the re-reads and the KILLs are instructions of one server-side
  compound statement (``BEGIN NOT ATOMIC``), up to 500 victims per round trip
  (fewer on a server with many threads: each re-read scans the thread list).
  Idle victims to terminate go through one loop (its text does not grow with
  them), the others through a step each; every victim is re-read on its own
  right before its KILL. What remains is the time inside the server from a
  victim's re-read to its KILL. Where performance_schema keeps statement events
  (the events_statements_current consumer and every statement instrument on),
  idle victims to terminate are bound to their latest event right after the
  listing and re-read there instead (_bind_statement_events,
  flavours.bind_statement_events): the same proof, a cheaper read.
  Cancels use ``KILL QUERY ID`` with the statement id just re-read.
  Idle victims to terminate that were idle long enough go first, through verified
  blocks (_verified_blocks, flavours.verified_block): one read of the thread list per
  block, in the same compound statement as their KILLs, then a tight loop of KILLs, each
  only while (time from that read to the KILL) / (the victim's idle time at the read),
  measured in the server right before it, is at most window_ratio_bound
  (flavours.WINDOW_RATIO_BOUND, 1e-4): the risk a window carries follows the victim's idle
  time. Blocks are sized from the costs the last block measured; a victim that fits none,
  or whose KILL the server refused for the bound, is re-read on its own as above. The
  largest ratio of the sweep: guard_figures() (the `guard` result). MySQL has
  no compound statements outside stored programs: each victim is re-read right
  before its own KILL, a window of one round trip.
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

import configparser
import math
import os
import time
import traceback

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _engines, _platform
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _mysql_flavours as flavours
from ansible_collections.dbhygiene.sessions.plugins.module_utils._conditions import LOCK_CONDITIONS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    GUARD_STILL_WAITING,
    OUTCOMES,
    REASON_FAILED,
    REASON_GONE,
    REASON_STATE_CHANGED,
    Driver,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import cut, redact, shown

try:
    import pymysql

    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
except ImportError:
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = traceback.format_exc()

# The connection options' defaults are the engine registry's (_engines.py); the port and the
# option file are not options' defaults (unset, they come from the option file, then these).
_REGISTRY_ENTRY = _engines.ENGINES["mysql"]
DEFAULT_PORT = 3306
DEFAULT_CONFIG_FILE = "~/.my.cnf"
DEFAULT_CONNECT_TIMEOUT = _REGISTRY_ENTRY.option("connect_timeout").default
DEFAULT_QUERY_TIMEOUT = _REGISTRY_ENTRY.option("query_timeout").default
MAX_TIMEOUT = 86400
MAX_LOCK_TIMEOUT = 3600
# Longest part of a value quoted in a message (_messages.shown / cut).
SHOWN_CHARS = 80
# Policy conditions that read whether a thread is in a transaction (flavours.transaction_state).
TRANSACTION_CONDITIONS = frozenset(["states", "transaction_longer_than"])


# Server error codes the driver reacts to.
ER_DBACCESS_DENIED = 1044
ER_UNKNOWN_THREAD = 1094
ER_KILL_DENIED = 1095
ER_NO_SUCH_QUERY = 1957
ER_STATEMENT_TIMEOUT = 1969
ER_QUERY_TIMEOUT = 3024  # MySQL max_execution_time
CR_SERVER_LOST = 2013
ER_TABLEACCESS_DENIED = 1142
ER_COLUMNACCESS_DENIED = 1143
ER_SPECIFIC_ACCESS_DENIED = 1227
_ACCESS_DENIED = (ER_DBACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_COLUMNACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED)


# ---------------------------------------------------------------- options
def connection_argument_spec():
    """The connection options of every MySQL/MariaDB module (doc fragment
    ``dbhygiene.sessions._mysql_connection``), from the engine registry.

    No environment fallbacks, as in community.mysql: the option file
    (config_file, ~/.my.cnf by default) is the usual place for defaults.
    """
    return _REGISTRY_ENTRY.connection_spec()


def _bad(field, value, problem):
    """Bad input, reported before any connection: names the option and the value (cut)."""
    return SessionError(f"{field}: {problem} {shown(value, SHOWN_CHARS)}")


# String options whose value may be echoed in a message (the password never is).
_STRING_OPTIONS = (
    "login_host",
    "login_user",
    "login_password",
    "login_unix_socket",
    "config_file",
    "ca_cert",
    "client_cert",
    "client_key",
)


def _check_text(field, value):
    """A str option that can go to the server or the file system: no NUL, encodable as UTF-8."""
    if value is None:
        return
    secret = field == "login_password"
    if not isinstance(value, str):
        raise SessionError(
            f"{field}: must be a string, got {('a ' + type(value).__name__ if secret else shown(value, SHOWN_CHARS))}"
        )
    problem = None
    if "\x00" in value:
        problem = "must not contain a NUL character"
    else:
        try:
            value.encode("utf-8")
        except UnicodeError:
            problem = "must be valid text (it holds a character that cannot be encoded as UTF-8)"
    if problem:
        if secret:
            raise SessionError(f"{field}: {problem} (the value is not shown)")
        raise _bad(field, value, problem + ", got")


def _check_number(field, value, low, high):
    """An int option within [low, high]; bool and non-integers refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        else:
            raise _bad(field, value, "must be a whole number, got")
    if not low <= value <= high:
        raise _bad(field, value, f"must be between {low} and {high}, got")
    return value


def read_config_file(path, explicit):
    """The [client] group of a MySQL option file as a dict (keys as in the file).

    A missing default file (~/.my.cnf) is no error; a missing or unreadable
    explicit one is, and names the option and the path. Values never appear
    in messages.
    """
    expanded = os.path.expanduser(path)
    if not os.path.exists(expanded):
        if explicit:
            raise _bad("config_file", path, "no such file")
        return {}
    parser = configparser.RawConfigParser(allow_no_value=True, strict=False)
    try:
        with open(expanded) as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error) as exc:
        raise SessionError(
            f"config_file: cannot read {path!r} ({exc.__class__.__name__}); fix the file or point config_file elsewhere"
        )
    values = {}
    if parser.has_section("client"):
        for key, value in parser.items("client"):
            if value is not None and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.replace("_", "-")] = value
    return values


def connect_kwargs(params):
    """pymysql.connect() keyword arguments from the connection options (module.params).

    Precedence: module options, then the option file's [client] group, then
    PyMySQL's defaults. TLS is used only when asked (a CA, a client certificate
    or check_hostname, as options or ssl-* in the option file); otherwise it is
    disabled, rather than PyMySQL's opportunistic TLS on every connection.
    Raises SessionError naming the option and value for bad input, before any
    connection is attempted.
    """
    for field in _STRING_OPTIONS:
        _check_text(field, params.get(field))
    explicit_file = params.get("config_file")
    if explicit_file == "":
        cfg = {}  # config_file: '' reads no option file at all (as community.mysql)
    else:
        cfg = read_config_file(explicit_file or DEFAULT_CONFIG_FILE, explicit=bool(explicit_file))
    for key in ("host", "user", "password", "socket", "ssl-ca", "ssl-cert", "ssl-key"):
        if cfg.get(key) is not None:
            try:
                _check_text("config_file", cfg[key])
            except SessionError:
                raise SessionError(
                    f"config_file: the {key} in the [client] group of {explicit_file or DEFAULT_CONFIG_FILE!r} "
                    "holds a NUL or a character that cannot "
                    "be encoded as UTF-8"
                )

    def pick(option, key):
        value = params.get(option)
        if value is None or value == "":
            value = cfg.get(key)
        return value

    port = params.get("login_port")
    if port is None and cfg.get("port"):
        try:
            port = int(cfg["port"])
        except ValueError:
            raise _bad(
                "config_file", explicit_file or DEFAULT_CONFIG_FILE, "the port in the [client] group is not a number in"
            )
    port = _check_number("login_port", DEFAULT_PORT if port is None else port, 1, 65535)
    timeout = params.get("connect_timeout")
    timeout = _check_number("connect_timeout", DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout, 1, MAX_TIMEOUT)
    query_timeout_of(params)

    kwargs = {
        "port": port,
        "connect_timeout": timeout,
        # PyMySQL's connect_timeout covers the TCP connect only: the handshake
        # reads and writes are bounded by these, set to query_timeout once logged in.
        "read_timeout": timeout,
        "write_timeout": timeout,
        "autocommit": True,
        "charset": "utf8mb4",
        "program_name": flavours.PROGRAM_NAME,
        # group_concat_max_len: the lock waits come as GROUP_CONCAT lists (MySQL's default is 1 KB).
        "init_command": "SET SESSION time_zone = '+00:00', group_concat_max_len = 4194304",
    }
    for option, key, keyword in (
        ("login_host", "host", "host"),
        ("login_user", "user", "user"),
        ("login_password", "password", "password"),
        ("login_unix_socket", "socket", "unix_socket"),
    ):
        value = pick(option, key)
        if value is not None and value != "":
            kwargs[keyword] = value
    if "password" in kwargs:
        # PyMySQL encodes a str password as Latin-1 (pass€word cannot be sent,
        # pässwörd is sent wrong); the server compares UTF-8 bytes.
        kwargs["password"] = kwargs["password"].encode("utf-8")

    ca_cert = pick("ca_cert", "ssl-ca")
    client_cert = pick("client_cert", "ssl-cert")
    client_key = pick("client_key", "ssl-key")
    check_hostname = params.get("check_hostname")
    for option, value in (("ca_cert", ca_cert), ("client_cert", client_cert), ("client_key", client_key)):
        if value and not os.path.isfile(os.path.expanduser(value)):
            raise _bad(option, value, "no such file")
    if client_key and not client_cert:
        raise _bad("client_key", client_key, "needs client_cert as well; got only")
    if check_hostname and not ca_cert:
        raise _bad("check_hostname", check_hostname, "needs ca_cert (the CA that signed the server certificate); got")
    if ca_cert or client_cert or check_hostname:
        if ca_cert:
            kwargs["ssl_ca"] = os.path.expanduser(ca_cert)
            kwargs["ssl_verify_cert"] = True
            kwargs["ssl_verify_identity"] = check_hostname is not False
        else:
            kwargs["ssl_verify_cert"] = False
            kwargs["ssl_verify_identity"] = False
        if client_cert:
            kwargs["ssl_cert"] = os.path.expanduser(client_cert)
        if client_key:
            kwargs["ssl_key"] = os.path.expanduser(client_key)
    else:
        kwargs["ssl_disabled"] = True
    return kwargs


def query_timeout_of(params):
    """The query_timeout option (seconds), checked."""
    value = params.get("query_timeout")
    return _check_number("query_timeout", DEFAULT_QUERY_TIMEOUT if value is None else value, 1, MAX_TIMEOUT)


def describe_target(kwargs):
    """Where we connect, for messages: host:port or the socket. Never a secret."""
    if kwargs.get("unix_socket"):
        return f"{cut(kwargs['unix_socket'], SHOWN_CHARS)} (unix socket)"
    return f"{cut(kwargs.get('host') or 'localhost', SHOWN_CHARS)}:{kwargs.get('port', DEFAULT_PORT)}"


def _scrub(text, kwargs):
    """Remove the password from a message, whatever the driver put in it; cut it short."""
    password = kwargs.get("password")
    if isinstance(password, bytes):
        password = password.decode("utf-8")
    text = redact(str(text).strip(), password)
    if len(text) > 500:
        text = text[:500] + "..."
    return text


def _describe_failure(exc, kwargs):
    """The message of a connect or query failure, without a secret nor a codec's quote of it."""
    if isinstance(exc, UnicodeError):
        # a codec error quotes the character it failed on: never show it
        return f"a value could not be encoded ({exc.__class__.__name__})"
    return _scrub(exc, kwargs)


def _connect_hint(message):
    lowered = message.lower()
    if "certificate verify failed" in lowered:
        if "hostname" in lowered or "ip address mismatch" in lowered:
            return "login_host must be a name or address in the server's certificate (or set check_hostname: false)"
        return "check ca_cert: it must be the CA that signed the server's certificate"
    if "access denied" in lowered:
        return "check login_user and login_password (or the client certificate for REQUIRE X509 accounts)"
    if "ssl" in lowered or "certificate" in lowered or "tls" in lowered:
        return "check ca_cert, client_cert, client_key and check_hostname"
    if "timed out" in lowered:
        return "the server accepted no login within connect_timeout; check that it is not frozen or overloaded"
    if "can't connect" in lowered or "refused" in lowered:
        return "check login_host, login_port / login_unix_socket and that the server accepts connections from here"
    return None


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
        message = _describe_failure(exc, kwargs)
        hint = _connect_hint(message)
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


def _error_code(exc):
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _client_side(code):
    """Whether an error code (_error_code) is the client's (2000+, or none): the connection
    failed or timed out, so the server's side of the statement is not known."""
    return code is None or code >= 2000


# ---------------------------------------------------------------- driver
class MySQLDriver(Driver):
    """One open PyMySQL connection to a MySQL or MariaDB server."""

    engine = "mysql"
    # connected_longer_than: neither flavour records when a thread connected.
    unsupported_conditions = _REGISTRY_ENTRY.unsupported_conditions

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
        # Verified blocks (flavours.verified_block): the bound of (read -> KILL) / idle time, the
        # largest ratio measured so far, and the predictions their sizes come from (then measured).
        self.window_ratio_bound = flavours.WINDOW_RATIO_BOUND
        self.window_ratio_max = None
        self._verify_read = flavours.VERIFY_READ_SECONDS_PER_THREAD
        self._verify_kill = flavours.VERIFY_KILL_SECONDS
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
        ) = self._fetch_one(flavours.Flavour.facts_query())
        self.version_text = version_text
        self.flavour = flavours.detect(version_text, version_comment, performance_schema)
        self._fetch_all(self.flavour.statement_timeout_query(query_timeout))
        started_query = self.flavour.server_started_query()
        self.server_started = int(self._fetch_one(started_query)[0]) if started_query else None
        self.account = flavours.quote_account(self.current_user)
        self.privileges = flavours.global_privileges(row[0] for row in self._fetch_all(self.flavour.grants_query()))
        # Whether the server records connection attributes at all, and whether we may read them.
        self.attrs_recorded = self.flavour.performance_schema
        self.attrs_readable = self.attrs_recorded and self._probe(flavours.Flavour.attrs_probe())
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
        # Exact transaction state (flavours.transaction_state): performance_schema's
        # transaction events, where the login may read them; else why not.
        self.transactions_readable = self.flavour.performance_schema and self._probe(
            flavours.transaction_events_probe()
        )
        self._transactions_unproven = None
        if not self.flavour.performance_schema:
            self._transactions_unproven = "performance_schema is off"
        elif not self.transactions_readable:
            self._transactions_unproven = (
                f"login {self.account} cannot read performance_schema's transaction events "
                f"({'; '.join(self.transaction_grants())})"
            )

    def transaction_grants(self):
        """The GRANTs that let the login read the transaction events (the exact transaction state)."""
        return [
            f"GRANT SELECT ON performance_schema.{table} TO {self.account}"
            for table in ("events_transactions_current", "threads", "setup_consumers", "setup_instruments")
        ]

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
        code = _error_code(exc)
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
            if _error_code(exc) in _ACCESS_DENIED:
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
            if _error_code(exc) in _ACCESS_DENIED:
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
            return flavours.server_role(read_only, 0)
        try:
            sources = len(self._execute(self.flavour.replica_status_query()))
        except pymysql.MySQLError as exc:
            if _error_code(exc) not in _ACCESS_DENIED:
                raise SessionError(f"query failed on {self.target} as {self.current_user}: {self._why(exc)}")
            sources = self._probe_value(self.flavour.replication_threads_query()) or 0
        return flavours.server_role(read_only, sources)

    # ------------------------------------------------------------ platform
    def detect_platform(self):
        query = _platform.mysql_detect_query(self.superusers_readable)
        return _platform.detected(self._fetch_one(query))

    def _use_platform(self):
        """Resolve the platform (once) and how threads are ended there: on RDS, a login without
        CONNECTION ADMIN or SUPER (the master user) ends them with the service's procedures."""
        self.flavour.rds_kill = self.platform == _platform.RDS and not self.flavour.can_kill(self.privileges)

    def can_end_sessions(self):
        """Whether the login may end other users' threads (KILL, or RDS's procedures)."""
        self._use_platform()
        if self.flavour.rds_kill:
            grants = [row[0] for row in self._fetch_all(self.flavour.grants_query())]
            wanted = list(_platform.RDS_PROCEDURES.values())
            return flavours.executable_procedures(grants, wanted) == wanted
        return self.flavour.can_kill(self.privileges)

    def _transaction_state_unproven(self):
        """Why the transaction state of Sleep threads is not exact right now, or None."""
        if self._transactions_unproven is not None:
            return self._transactions_unproven
        (on,) = self._fetch_one(flavours.transaction_events_on_query())
        return None if on else flavours.TRX_EVENTS_OFF

    def preflight_problems(
        self, signal, needs_superusers=True, needs_applications=True, needs_locks=True, needs_transactions=True
    ):
        """Messages for every missing right (empty when none). Never a secret."""
        who = f"login {self.account} on {self.target}"
        problems = []
        if not self.flavour.can_see_all(self.privileges):
            problems.append(
                f"{who} lacks PROCESS: it sees only its own threads, so no other session can be listed; "
                f"GRANT PROCESS ON *.* TO {self.account}"
            )
        if not signal:
            return problems
        if not self.can_end_sessions():
            problems.append(
                f"{who} lacks {self.flavour.kill_rights}: it cannot end other users' threads; "
                f"{self.flavour.kill_grant(self.account)}"
            )
        if needs_superusers and not self.superusers_readable:
            problems.append(
                f"{who} cannot read which accounts hold {' / '.join(self.flavour.superuser_privileges)}, so it "
                "cannot protect their sessions "
                f"(protect.superusers); {'; '.join(self.flavour.superuser_grants(self.account))} (no password "
                "hashes are exposed)"
            )
        if needs_applications and self.attrs_recorded and not self.attrs_readable:
            problems.append(
                f"{who} cannot read connection attributes, so applications (program_name) would look empty to "
                "applications rules and protect.applications; "
                f"GRANT SELECT ON performance_schema.session_connect_attrs TO {self.account}"
            )
        if needs_transactions and self.flavour.performance_schema and not self.transactions_readable:
            problems.append(
                f"{who} cannot read performance_schema's transaction events, so it cannot prove a Sleep thread is "
                "outside a transaction: every one would count as idle_in_transaction (states, "
                f"transaction_longer_than); {'; '.join(self.transaction_grants())}"
            )
        if needs_locks:
            problems.extend(self._lock_problems(who))
        return problems

    def _lock_problems(self, who):
        """What keeps the lock conditions from seeing the lock waits the server records."""
        problems = []
        if self.flavour.row_lock_waits_probe() is not None and self.flavour.performance_schema:
            if not self.row_lock_waits_readable:
                problems.append(
                    f"{who} cannot read who waits on whom for InnoDB locks, so lock conditions would see waiters "
                    "but not their blockers; "
                    f"GRANT SELECT ON performance_schema.data_lock_waits TO {self.account}; "
                    f"GRANT SELECT ON performance_schema.threads TO {self.account}"
                )
        if self.flavour.performance_schema and not self.metadata_locks_readable:
            problems.append(
                f"{who} cannot read metadata locks, so lock conditions would miss sessions waiting on a table "
                "lock (an ALTER TABLE behind an open transaction) and their blockers; "
                f"GRANT SELECT ON performance_schema.metadata_locks TO {self.account}; "
                f"GRANT SELECT ON performance_schema.threads TO {self.account}"
            )
        return problems

    def preflight(self, signal, policy=None):
        """Raise SessionError naming every missing right (and the GRANT that fixes it).

        `policy` (optional): when given, rights the policy does not need are not required
        (reading superusers when protect.superusers is false; reading connection
        attributes when no rule or protect uses applications).
        """
        needs_superusers = needs_applications = needs_locks = needs_transactions = True
        if policy is not None:
            needs_superusers = bool(policy.protect.superusers)
            needs_applications = "applications" in policy.conditions_used() or bool(policy.protect.applications)
            needs_locks = bool(policy.conditions_used().intersection(LOCK_CONDITIONS))
            needs_transactions = bool(TRANSACTION_CONDITIONS & set(policy.conditions_used()))
        problems = self.preflight_problems(
            signal, needs_superusers, needs_applications, needs_locks, needs_transactions
        )
        if problems:
            raise SessionError("; ".join(problems))
        if policy is not None:
            # Listings read program_name only for a policy that matches on it; the
            # victims get theirs anyway (end_sessions), for the results and the trail.
            self.list_applications = needs_applications

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
            raise SessionError(f"cannot take the sweep lock {flavours.SWEEP_LOCK!r} on {self.target}")
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
        # flavours.TRX_CACHE_QUIET_SECONDS without one: our own listings (a plan right after the
        # last sweep's confirm wait) must not keep it stale (its InnoDB lock waits; whether a
        # Sleep thread is in a transaction comes from the transaction events, which another
        # client cannot starve). A victim's re-read right before its KILL, `ids`, needs no fresh
        # transaction list.
        if ids is None and self._trx_read_at is not None:
            time.sleep(max(0.0, self._trx_read_at + flavours.TRX_CACHE_QUIET_SECONDS - time.monotonic()))
        try:
            rows = self._execute(query)
        except pymysql.MySQLError as exc:
            raise SessionError(f"cannot list the threads on {self.target} as {self.current_user}: {self._why(exc)}")
        finally:
            self._trx_read_at = time.monotonic()
        sessions = [
            flavours.normalize_row(row, self.server_started, unproven=self._transactions_unproven) for row in rows
        ]
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
                rows = self._execute(flavours.Flavour.attrs_query(ids))
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

    def end_sessions(self, victims, mode):
        """The guarded kill of docs/architecture.md, per victim (see the module docstring).

        On a failure part-way (connection lost, timeout), raises SessionError with
        `outcomes`: the (session, outcome, detail) known so far, in order.
        """
        if mode not in OUTCOMES:
            raise ValueError(f"mode must be terminate or cancel, not {mode!r}")
        if not victims:
            return []
        results = [None] * len(victims)
        todo = []
        for index, victim in enumerate(victims):
            planned_start = flavours.key_server_started(victim.get("key"))
            if str(victim.get("id")) == str(self._own_id):
                results[index] = (victim, REASON_FAILED, "refusing to end our own connection")
            elif planned_start is not None and planned_start != self.server_started:
                results[index] = (
                    victim,
                    REASON_GONE,
                    f"the server restarted since planning: thread id {victim.get('id')} is another connection",
                )
            elif flavours.idle_unproven(victim) and mode == "terminate":
                # No proof it is outside a transaction (flavours.IDLE_PROOF_SECONDS).
                results[index] = (victim, REASON_STATE_CHANGED, flavours.idle_unproven(victim))
            else:
                todo.append(index)
        if todo and not self.list_applications:
            try:
                self._add_applications([victims[index] for index in todo if victims[index].get("key")])
            except SessionError:
                pass  # only for the record: never a reason not to end a victim
        try:
            if self.flavour.server_side_guard:
                if mode == "terminate":
                    self._verified_blocks(victims, todo, results)
                    todo = [index for index in todo if results[index] is None]
                bound = self._bind_statement_events([victims[index] for index in todo], mode)
                size = flavours.guard_batch_size(self._threads_seen)
                for first in range(0, len(todo), size):
                    batch = todo[first : first + size]
                    for index, outcome in zip(batch, self._guarded_batch([victims[i] for i in batch], mode, bound)):
                        results[index] = outcome
            else:
                for index in todo:
                    results[index] = self._reread_and_kill(victims[index], mode)
        except SessionError as exc:
            exc.outcomes = [outcome for outcome in results if outcome is not None]
            raise
        return results

    def _bind_statement_events(self, victims, mode):
        """{key: (THREAD_ID, EVENT_ID)} of the idle victims to terminate that the guard can read
        in performance_schema.events_statements_current (flavours.bind_statement_events), or {}
        when its statement events are not complete on this server (performance_schema off, a
        consumer or a statement instrument off, no SELECT on those tables): they are then read
        in PROCESSLIST."""
        candidates = [victim for victim in victims if flavours.looped_reread(victim, mode) and victim.get("key")]
        if not candidates:
            return {}
        try:
            if not flavours.statement_events_complete(self._execute(flavours.statement_events_query())[0]):
                return {}
            threads = self._execute((flavours.BIND_THREADS_SQL, None))
            events = self._execute((flavours.BIND_EVENTS_SQL, None))
            thread_list = self._execute((flavours.BIND_THREAD_LIST_SQL, None))
        except pymysql.MySQLError as exc:
            if _client_side(_error_code(exc)):
                raise SessionError(
                    f"the guarded {mode} of {len(victims)} threads on {self.target} failed before any KILL "
                    f"(reading the statement events): {self._why(exc)}"
                )
            return {}  # a table the login may not read (1142), performance_schema off: PROCESSLIST
        bound = flavours.bind_statement_events(candidates, threads, events, thread_list)
        return dict((candidates[index]["key"], binding) for index, binding in bound.items())

    def _verified_blocks(self, victims, todo, results):
        """Set results[index] of the victims (indexes `todo`, to terminate) that verified blocks
        settle, block by block (a failure part-way keeps the outcomes known): the
        block_verifiable ones by planned idle time, shortest first, in blocks sized
        (flavours.verified_block_size) so that each one's predicted window stays within the
        bound; the predictions are this driver's last measured ones. A victim that a block left
        unverified (its window would have passed the bound: r; the block's read failed before
        it: x, no KILL went out for it) gets one more block; one that fits no block, or is left
        unverified twice, is left None: the guard block re-reads it on its own."""
        pending = sorted(
            (index for index in todo if flavours.block_verifiable(victims[index], "terminate")),
            key=lambda index: victims[index]["idle_seconds"],
        )
        tried = set()
        while pending:
            size = flavours.verified_block_size(
                [victims[index]["idle_seconds"] for index in pending],
                self._threads_seen,
                self.window_ratio_bound,
                self._verify_read,
                self._verify_kill,
            )
            if size == 0 and not self._verify_measured and self._may_fit(victims[pending[-1]]):
                # Predictions not measured yet: one block of the longest idle victim measures them.
                block, pending = pending[-1:], pending[:-1]
            elif size == 0:
                pending.pop(0)  # too recently active for any block: re-read on its own
                continue
            else:
                block, pending = pending[:size], pending[size:]
            rows = self._guard_rows(
                flavours.verified_block(
                    [victims[index] for index in block], self.window_ratio_bound, self.flavour.loop_kill()
                ),
                "terminate",
                len(block),
            )
            outcomes = flavours.parse_guard_outcomes(rows[0][0] if rows else None, len(block))
            self._measured(flavours.verified_block_figures(rows[0][1] if rows else None))
            self.guard_counts["blocks"] += 1
            again = []
            for index, (code, fields) in zip(block, outcomes):
                if code in (flavours.GUARD_UNVERIFIED, flavours.GUARD_ERROR):
                    # Not killed (its window would have passed the bound, or the block's read
                    # failed): once more in a later block (a fresh read), then on its own.
                    if index not in tried:
                        tried.add(index)
                        again.append(index)
                    continue
                if code == flavours.GUARD_BLOCK_ENDED:
                    ratio = float(fields[1]) if len(fields) > 1 and fields[1] else None
                    if ratio is not None:
                        self.window_ratio_max = max(ratio, self.window_ratio_max or 0.0)
                    code, fields = flavours.GUARD_ENDED, fields[:1]
                self.guard_counts["block_verified"] += 1
                self.block_verified_keys.add(victims[index].get("key"))
                results[index] = self._outcome(victims[index], "terminate", code, fields)
            pending = sorted(again + pending, key=lambda index: victims[index]["idle_seconds"])

    def _may_fit(self, victim):
        """Whether a block could take `victim` if reading the thread list cost nothing."""
        return flavours.verified_block_size([victim["idle_seconds"]], 1, self.window_ratio_bound, 0, self._verify_kill)

    def _measured(self, figures):
        """Take a verified block's figures as the predictions of the next block's size."""
        read, total, reached = figures
        if read is not None:
            self._verify_measured = True
            self._verify_read = max(read / max(1, self._threads_seen), 1e-7)
            if reached:
                self._verify_kill = max((total - read) / reached, 1e-6)

    def guard_figures(self):
        """The guard's figures over this driver's life (the `guard` result of a sweep)."""
        return {
            "window_ratio_bound": self.window_ratio_bound,
            "window_ratio_max": self.window_ratio_max,
            "block_verified": self.guard_counts["block_verified"],
            "blocks": self.guard_counts["blocks"],
            "re_read": sum(self.guard_counts[key] for key in ("looped", "own_step", "statement_events")),
        }

    def _guard_rows(self, query, mode, count):
        """The rows of one server-side guard statement over `count` victims."""
        try:
            return self._execute(query)
        except pymysql.MySQLError as exc:
            raise SessionError(
                f"the guarded {mode} of {count} threads on {self.target} failed "
                f"(whether their KILLs went out is not known): {self._why(exc)}"
            )

    def _guarded_batch(self, batch, mode, bound=None):
        """One guard block (MariaDB) for up to GUARD_BATCH victims; their outcomes in order."""
        ordered = self.flavour.guard_order(batch, mode, bound=bound)
        rows = self._guard_rows(self.flavour.guard_block(ordered, mode, bound=bound), mode, len(batch))
        outcomes = flavours.parse_guard_outcomes(rows[0][0] if rows else None, len(batch))
        for key, path in zip(
            ("statement_events", "looped", "own_step"), self.flavour.guard_paths(batch, mode, bound=bound)
        ):
            self.guard_counts[key] += len(path)
        self.guard_counts["transaction_checked"] += sum(
            1 for victim in batch if flavours.needs_transaction_check(victim, mode)
        )
        decided = {
            id(victim): self._outcome(victim, mode, code, fields) for victim, (code, fields) in zip(ordered, outcomes)
        }
        return [decided[id(victim)] for victim in batch]

    def _outcome(self, victim, mode, code, fields):
        thread_id = victim.get("id")
        if code == flavours.GUARD_GONE:
            return victim, REASON_GONE, f"thread {thread_id} is no longer connected"
        if code == flavours.GUARD_NOT_WAITING:
            return victim, REASON_STATE_CHANGED, flavours.NOT_WAITING_DETAIL
        if code == flavours.GUARD_EVENTS_OFF:
            return victim, REASON_STATE_CHANGED, flavours.EVENTS_OFF_DETAIL
        if code == flavours.GUARD_IN_TRANSACTION:
            return victim, REASON_STATE_CHANGED, flavours.IN_TRANSACTION_DETAIL
        if code == flavours.GUARD_TRX_UNPROVEN:
            return victim, REASON_STATE_CHANGED, flavours.TRX_UNPROVEN_DETAIL
        if code == flavours.GUARD_NEW_EVENT:
            event, running = (fields + ["", ""])[:2]
            if running not in ("", "0"):
                shown = f" (event {event})" if event else ""
                return victim, REASON_STATE_CHANGED, f"was idle (Sleep), now runs a statement{shown}"
            return victim, REASON_STATE_CHANGED, f"it ran a new statement since planning (statement event {event})"
        if code == flavours.GUARD_MOVED:
            command, query_id = (fields + ["", ""])[:2]
            if command == victim.get("command"):
                detail = (
                    f"it ran a new statement since planning (statement {query_id}, planned {victim.get('query_id')})"
                )
            else:
                detail = f"was {victim.get('state')} ({victim.get('command')}), now {command}"
            return victim, REASON_STATE_CHANGED, detail
        errno = int(fields[0]) if fields and fields[0].isdigit() else -1
        if code == flavours.GUARD_ENDED and errno == 0:
            return victim, OUTCOMES[mode], None
        if code == flavours.GUARD_ENDED:
            return self._kill_failure(victim, mode, errno, f"error {errno}")
        return victim, REASON_FAILED, f"cannot re-read thread {thread_id} on {self.target}: error {errno}"

    def _kill_failure(self, victim, mode, code, text):
        if code == ER_UNKNOWN_THREAD:
            return victim, REASON_GONE, f"thread {victim['id']} left before the KILL"
        if code == ER_NO_SUCH_QUERY:
            return victim, REASON_STATE_CHANGED, "its statement ended before the KILL"
        if code in (ER_KILL_DENIED, ER_SPECIFIC_ACCESS_DENIED):
            return (
                victim,
                REASON_FAILED,
                f"cannot {mode} thread {victim['id']} ({victim.get('user')}) on {self.target}: login "
                f"{self.account} lacks {self.flavour.kill_rights}; {self.flavour.kill_grant(self.account)}",
            )
        return victim, REASON_FAILED, f"cannot {mode} thread {victim['id']} on {self.target}: {text}"

    def _reread_and_kill(self, victim, mode):
        """MySQL: re-read this one victim, then KILL it at once if it has not moved on."""
        current = self._list(ids=[victim["id"]], applications=False, locks=bool(victim.get(GUARD_STILL_WAITING)))
        moved = flavours.moved_on(victim, current[0] if current else None, self.flavour.state_since_tolerance)
        if moved is not None:
            return victim, moved[0], moved[1]
        # One KILL per thread (not a multi-statement batch): a batch stops at the
        # first error (a thread that left meanwhile), leaving the rest unknown.
        try:
            self._execute(self.flavour.kill_query(mode, victim["id"]))
        except pymysql.MySQLError as exc:
            code = _error_code(exc)
            if code in (ER_UNKNOWN_THREAD, ER_NO_SUCH_QUERY, ER_KILL_DENIED, ER_SPECIFIC_ACCESS_DENIED):
                return self._kill_failure(victim, mode, code, str(exc))
            if _client_side(code):
                raise SessionError(
                    f"the {mode} of thread {victim['id']} on {self.target} failed (whether it went out is not "
                    f"known): {self._why(exc)}"
                )
            return self._kill_failure(victim, mode, code, self._why(exc))
        return victim, OUTCOMES[mode], None

    def query_templates(self):
        return self.flavour.templates(
            self.row_lock_waits_readable, self.metadata_locks_visible, self.transactions_readable
        )
