# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MySQL / MariaDB driver: connection options, connect, list threads, guarded kill.

Private to the collection. The SQL of both flavours lives in
``_mysql_flavours`` (builders return ``(sql, params)``, unit tested without a
server); this file connects and executes. Importable without PyMySQL
(``HAS_PYMYSQL`` says whether it is there), so that the modules can report a
missing library cleanly.

How the safety invariants of DESIGN.md are kept here:

* Our own connection is excluded by ``CONNECTION_ID()`` in the statement
  itself, carries the connection attribute program_name "dbhygiene.sessions"
  so a person can recognise it, and is never killed (checked again before KILL).
  System, replication and event threads are never listed.
* Superuser-class accounts (SUPER; MySQL also SYSTEM_USER) are read from the
  privilege tables, which a least-privilege login can read through a
  column-level grant that exposes no password hash. A login that cannot read
  them, or the connection attributes (program_name), fails the preflight of
  ``*_sessions`` with the GRANT that fixes it, instead of guessing.
* Guarded kill: right before KILL, one statement re-reads every victim; a thread
  is killed only if it is the same thread (id, user, client host:port) in the
  same state (COMMAND, transaction start, no new statement: MariaDB QUERY_ID of
  an idle thread; its state change time not later than planned). MySQL has no
  conditional KILL, so a window of one round trip remains between the re-read
  and the KILL; it is as short as it can be made.
* The connection runs in autocommit (no snapshot held) with time_zone '+00:00'
  (every DATETIME read is UTC).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import configparser
import os
import traceback

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _mysql_flavours as flavours
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    REASON_FAILED,
    REASON_GONE,
    Driver,
    SessionError,
    redact,
)

try:
    import pymysql

    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
except ImportError:
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = traceback.format_exc()

DEFAULT_PORT = 3306
DEFAULT_CONFIG_FILE = "~/.my.cnf"
DEFAULT_CONNECT_TIMEOUT = 30

OUTCOMES = {"terminate": "terminated", "cancel": "cancelled"}

# Server error codes the driver reacts to.
ER_DBACCESS_DENIED = 1044
ER_UNKNOWN_THREAD = 1094
ER_KILL_DENIED = 1095
ER_TABLEACCESS_DENIED = 1142
ER_COLUMNACCESS_DENIED = 1143
ER_SPECIFIC_ACCESS_DENIED = 1227
_ACCESS_DENIED = (ER_DBACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_COLUMNACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED)


# ---------------------------------------------------------------- options
def connection_argument_spec():
    """The connection options of every MySQL/MariaDB module (doc fragment
    ``dbhygiene.sessions._mysql_connection``). Names follow community.mysql.

    No environment fallbacks, as in community.mysql: the option file
    (config_file, ~/.my.cnf by default) is the usual place for defaults.
    """
    return dict(
        login_host=dict(type="str"),
        login_port=dict(type="int"),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        login_unix_socket=dict(type="str"),
        config_file=dict(type="path"),
        connect_timeout=dict(type="int", default=DEFAULT_CONNECT_TIMEOUT),
        ca_cert=dict(type="path", aliases=["ssl_ca"]),
        client_cert=dict(type="path", aliases=["ssl_cert"]),
        client_key=dict(type="path", aliases=["ssl_key"], no_log=False),
        check_hostname=dict(type="bool"),
    )


def _bad(field, value, problem):
    """Bad input, reported before any connection: names the option and the value."""
    return SessionError("%s: %s %r" % (field, problem, value))


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
            "config_file: cannot read %r (%s); fix the file or point config_file elsewhere"
            % (path, exc.__class__.__name__)
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
    explicit_file = params.get("config_file")
    cfg = read_config_file(explicit_file or DEFAULT_CONFIG_FILE, explicit=bool(explicit_file))

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
    port = DEFAULT_PORT if port is None else port
    if not 0 < port < 65536:
        raise _bad("login_port", port, "must be between 1 and 65535, got")
    timeout = params.get("connect_timeout")
    timeout = DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout
    if timeout <= 0:
        raise _bad("connect_timeout", timeout, "must be a positive number of seconds, got")

    kwargs = {
        "port": port,
        "connect_timeout": timeout,
        "autocommit": True,
        "charset": "utf8mb4",
        "program_name": flavours.PROGRAM_NAME,
        "init_command": "SET SESSION time_zone = '+00:00'",
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


def describe_target(kwargs):
    """Where we connect, for messages: host:port or the socket. Never a secret."""
    if kwargs.get("unix_socket"):
        return "%s (unix socket)" % kwargs["unix_socket"]
    return "%s:%s" % (kwargs.get("host") or "localhost", kwargs.get("port", DEFAULT_PORT))


def _scrub(text, kwargs):
    """Remove the password from a message, whatever the driver put in it."""
    return redact(str(text).strip(), kwargs.get("password"))


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
    if "can't connect" in lowered or "timed out" in lowered or "refused" in lowered:
        return "check login_host, login_port / login_unix_socket and that the server accepts connections from here"
    return None


def open_driver(params):
    """A connected MySQLDriver from the module's connection options (module.params).

    Raises SessionError (never with the password in it) for bad options, before
    connecting, and when the connection fails.
    """
    kwargs = connect_kwargs(params)
    if not HAS_PYMYSQL:
        raise SessionError("the MySQL modules need the Python library PyMySQL on the node that runs them")
    target = describe_target(kwargs)
    user = kwargs.get("user") or "(default user)"
    try:
        conn = pymysql.connect(**kwargs)
    except Exception as exc:  # PyMySQL raises OperationalError, but also ssl / OS errors as they are
        message = _scrub(exc, kwargs)
        hint = _connect_hint(message)
        raise SessionError(
            "cannot connect to MySQL/MariaDB at %s as %s: %s%s" % (target, user, message, "; " + hint if hint else "")
        )
    try:
        return MySQLDriver(conn, target)
    except Exception:
        conn.close()
        raise


def _error_code(exc):
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


# ---------------------------------------------------------------- driver
class MySQLDriver(Driver):
    """One open PyMySQL connection to a MySQL or MariaDB server."""

    engine = "mysql"
    # Neither flavour records when a thread connected (PROCESSLIST has no
    # connect time; connection attributes carry none). No guessing.
    unsupported_conditions = frozenset(["connected_longer_than"])

    def __init__(self, conn, target):
        self._conn = conn
        self.target = target
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
        self.account = flavours.quote_account(self.current_user)
        self.privileges = flavours.global_privileges(row[0] for row in self._fetch_all(self.flavour.grants_query()))
        # Whether the server records connection attributes at all, and whether we may read them.
        self.attrs_recorded = self.flavour.performance_schema
        self.attrs_readable = self.attrs_recorded and self._probe(flavours.Flavour.attrs_probe())
        self.superusers_readable = self._probe(self.flavour.superuser_probe())

    @property
    def state_since_tolerance(self):
        return self.flavour.state_since_tolerance

    # ------------------------------------------------------------ plumbing
    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _execute(self, query):
        sql, params = query
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, params or None)
            return cursor.fetchall()
        finally:
            cursor.close()

    def _fetch_all(self, query):
        try:
            return self._execute(query)
        except pymysql.MySQLError as exc:
            raise SessionError("query failed on %s as %s: %s" % (self.target, self.current_user, exc))

    def _fetch_one(self, query):
        try:
            return self._execute(query)[0]
        except pymysql.MySQLError as exc:
            raise SessionError("query failed on %s: %s" % (self.target, exc))

    def _probe(self, query):
        try:
            self._execute(query)
            return True
        except pymysql.MySQLError as exc:
            if _error_code(exc) in _ACCESS_DENIED:
                return False
            raise SessionError("query failed on %s as %s: %s" % (self.target, self.current_user, exc))

    # ------------------------------------------------------------ contract
    @property
    def own_id(self):
        return self._own_id

    def server_facts(self):
        return {
            "engine": self.engine,
            "flavour": self.flavour.name,
            "version": ".".join(str(part) for part in self.flavour.version),
            "version_full": self.version_text,
            "hostname": self.server_hostname,
            "max_connections": int(self.max_connections) if self.max_connections is not None else None,
            "login_user": self.current_user,
            "own_id": self._own_id,
            "performance_schema": self.flavour.performance_schema,
            "processlist_table": self.flavour.processlist_table,
            "can_see_all_sessions": self.flavour.can_see_all(self.privileges),
            "can_end_sessions": self.flavour.can_kill(self.privileges),
            "applications_readable": self.attrs_readable,
            "superusers_readable": self.superusers_readable,
        }

    def preflight_problems(self, signal, needs_superusers=True, needs_applications=True):
        """Messages for every missing right (empty when none). Never a secret."""
        who = "login %s on %s" % (self.account, self.target)
        problems = []
        if not self.flavour.can_see_all(self.privileges):
            problems.append(
                "%s lacks PROCESS: it sees only its own threads, so no other session can be listed; "
                "GRANT PROCESS ON *.* TO %s" % (who, self.account)
            )
        if not signal:
            return problems
        if not self.flavour.can_kill(self.privileges):
            problems.append(
                "%s lacks %s: it cannot end other users' threads; %s"
                % (who, " or ".join(self.flavour.kill_privileges), self.flavour.kill_grant(self.account))
            )
        if needs_superusers and not self.superusers_readable:
            problems.append(
                "%s cannot read which accounts hold %s, so it cannot protect their sessions "
                "(protect.superusers); %s (no password hashes are exposed)"
                % (
                    who,
                    " / ".join(self.flavour.superuser_privileges),
                    "; ".join(self.flavour.superuser_grants(self.account)),
                )
            )
        if needs_applications and self.attrs_recorded and not self.attrs_readable:
            problems.append(
                "%s cannot read connection attributes, so applications (program_name) would look empty to "
                "applications rules and protect.applications; "
                "GRANT SELECT ON performance_schema.session_connect_attrs TO %s" % (who, self.account)
            )
        return problems

    def preflight(self, signal, policy=None):
        """Raise SessionError naming every missing right (and the GRANT that fixes it).

        `policy` (optional): when given, rights the policy does not need are not required
        (reading superusers when protect.superusers is false; reading connection
        attributes when no rule or protect uses applications).
        """
        needs_superusers = needs_applications = True
        if policy is not None:
            needs_superusers = bool(policy.protect.superusers)
            needs_applications = "applications" in policy.conditions_used() or bool(policy.protect.applications)
        problems = self.preflight_problems(signal, needs_superusers, needs_applications)
        if problems:
            raise SessionError("; ".join(problems))

    def _list(self, ids=None):
        query = self.flavour.list_query(
            with_attrs=self.attrs_readable, with_superusers=self.superusers_readable, ids=ids
        )
        try:
            rows = self._execute(query)
        except pymysql.MySQLError as exc:
            raise SessionError("cannot list the threads on %s as %s: %s" % (self.target, self.current_user, exc))
        return [flavours.normalize_row(row) for row in rows]

    def list_sessions(self):
        return self._list()

    def end_sessions(self, victims, mode):
        if mode not in OUTCOMES:
            raise ValueError("mode must be terminate or cancel, not %r" % (mode,))
        if not victims:
            return []
        # One round trip re-reads every victim, right before the KILLs.
        current = dict((s["id"], s) for s in self._list(ids=[v["id"] for v in victims]))
        results = []
        for victim in victims:
            if str(victim.get("id")) == str(self._own_id):
                results.append((victim, REASON_FAILED, "refusing to end our own connection"))
                continue
            moved = flavours.moved_on(victim, current.get(victim["id"]), self.flavour.state_since_tolerance)
            if moved is not None:
                results.append((victim, moved[0], moved[1]))
                continue
            results.append(self._kill(victim, mode))
        return results

    def _kill(self, victim, mode):
        # One KILL per thread (not a multi-statement batch): a batch stops at the
        # first error (a thread that left meanwhile), leaving the rest unknown,
        # and needs CLIENT.MULTI_STATEMENTS on the connection. A KILL is a
        # sub-millisecond round trip on the same connection.
        try:
            self._execute(self.flavour.kill_query(mode, victim["id"]))
        except pymysql.MySQLError as exc:
            code = _error_code(exc)
            if code == ER_UNKNOWN_THREAD:
                return victim, REASON_GONE, "thread %s left before the KILL" % victim["id"]
            if code in (ER_KILL_DENIED, ER_SPECIFIC_ACCESS_DENIED):
                return (
                    victim,
                    REASON_FAILED,
                    "cannot %s thread %s (%s) on %s: login %s lacks %s; %s"
                    % (
                        mode,
                        victim["id"],
                        victim.get("user"),
                        self.target,
                        self.account,
                        " or ".join(self.flavour.kill_privileges),
                        self.flavour.kill_grant(self.account),
                    ),
                )
            return victim, REASON_FAILED, "cannot %s thread %s on %s: %s" % (mode, victim["id"], self.target, exc)
        return victim, OUTCOMES[mode], None

    def query_templates(self):
        return self.flavour.templates()
