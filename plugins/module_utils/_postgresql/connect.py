# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the PostgreSQL driver reaches a server: the connection options, TLS, the login.

Private to the collection; pure (no psycopg2, no connection): the modules' connection
options from the engine registry, with libpq's environment variables as Ansible's
``env_fallback`` (``connection_argument_spec``); their check before any connection
(``validate_connection_params``: a clear error naming the field, never the password);
the TLS mode a set of options means (``effective_ssl_mode``); the keyword arguments of
``psycopg2.connect`` (``connect_kwargs``); where we connect and why it failed, for messages
(``describe_target``, ``scrub``, ``connect_hint``); and whether the login may do the job
once connected (``preflight_error``, from the row of ``statements.rights_query``).
``driver.open_driver`` connects with them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import secrets

from ansible.module_utils.common.parameters import env_fallback
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _engines
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import cut, one_line, redact, shown

APPLICATION_PREFIX = "dbhygiene.sessions"
# The connection options' defaults and choices are the engine registry's (_engines.py).
_REGISTRY_ENTRY = _engines.ENGINES["postgresql"]
DEFAULT_PORT = _REGISTRY_ENTRY.option("login_port").default
DEFAULT_DB = "postgres"
SSL_MODES = _REGISTRY_ENTRY.option("ssl_mode").choices
# Modes in which libpq may fall back to plain text (or never try TLS): refused
# together with a CA or a client certificate, which say the user wants TLS.
SSL_MODES_WITHOUT_TLS_GUARANTEE = ("disable", "allow", "prefer")
DEFAULT_SSL_MODE = "prefer"  # without any TLS option: libpq's own default
SSL_MODE_WITH_CERTIFICATES = "verify-full"  # ca_cert / ssl_cert given without ssl_mode
DEFAULT_CONNECT_TIMEOUT = _REGISTRY_ENTRY.option("connect_timeout").default
DEFAULT_QUERY_TIMEOUT = _REGISTRY_ENTRY.option("query_timeout").default
TIMEOUT_RANGE = (1, 3600)  # seconds, for connect_timeout and query_timeout
# libpq keepalives: notice a peer that vanished (not one that is frozen: its
# kernel still ACKs; the client-side deadline covers that).
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
MIN_SERVER_VERSION_NUM = 100000  # backend_type and the pg_signal_backend / pg_read_all_stats roles


# ---------------------------------------------------------------- options
def connection_argument_spec():
    """The connection options of every PostgreSQL module (doc fragment
    ``dbhygiene.sessions._postgresql_connection``), from the engine registry."""
    return _REGISTRY_ENTRY.connection_spec(env_fallback)


def new_application_name():
    """The application_name of a new connection of ours: unique per connection."""
    return f"{APPLICATION_PREFIX}-{secrets.token_hex(6)}"


# Options that are strings libpq receives: no NUL, no control character.
_STRING_OPTIONS = (
    "login_host",
    "login_user",
    "login_unix_socket",
    "login_db",
    "ssl_mode",
    "ca_cert",
    "ssl_cert",
    "ssl_key",
)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _as_int(params, option):
    value = params.get(option)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise SessionError(f"{option} must be an integer, not {shown(value)}")


def effective_ssl_mode(params):
    """The sslmode to connect with; SessionError when the options contradict each other.

    A CA (ca_cert) or a client certificate (ssl_cert) says the user wants TLS:
    without ssl_mode that means verify-full, and a mode in which libpq may go
    plain text (disable, allow, prefer) is refused rather than downgraded.
    Without any TLS option, libpq's default (prefer) stays.
    """
    mode = params.get("ssl_mode") or None
    certificates = [option for option in ("ca_cert", "ssl_cert") if params.get(option)]
    if mode is None:
        return SSL_MODE_WITH_CERTIFICATES if certificates else DEFAULT_SSL_MODE
    if mode not in SSL_MODES:
        raise SessionError(f"ssl_mode must be one of {', '.join(SSL_MODES)}, not {shown(mode)}")
    if certificates and mode in SSL_MODES_WITHOUT_TLS_GUARANTEE:
        raise SessionError(
            f"ssl_mode {mode} together with {' and '.join(certificates)} would let the connection go without "
            "verified TLS: "
            "use ssl_mode verify-full (or verify-ca, or require), or leave ssl_mode unset"
        )
    return mode


def validate_connection_params(params):
    """Check the connection options before any connection; SessionError naming the field.

    Strings must not carry a NUL or a control character (libpq cannot take
    them, and they cannot be what the user meant); numbers must be in range.
    Values are cut in messages, and the password is never shown.
    """
    password = params.get("login_password")
    if password is not None and "\x00" in str(password):
        raise SessionError("login_password must not contain a NUL character (value not shown)")
    for option in _STRING_OPTIONS:
        value = params.get(option)
        if value is None:
            continue
        if not isinstance(value, str):
            raise SessionError(f"{option} must be a string, not {shown(value)}")
        found = _CONTROL_RE.search(value)
        if found:
            raise SessionError(
                f"{option} must not contain the control character {found.group(0)!r} "
                f"(at position {found.start()}): {shown(value)}"
            )
    port = _as_int(params, "login_port")
    if port is not None and not 1 <= port <= 65535:
        raise SessionError(f"login_port must be between 1 and 65535, not {shown(params.get('login_port'))}")
    for option in ("connect_timeout", "query_timeout"):
        value = _as_int(params, option)
        if value is not None and not TIMEOUT_RANGE[0] <= value <= TIMEOUT_RANGE[1]:
            raise SessionError(
                f"{option} must be between {TIMEOUT_RANGE[0]} and {TIMEOUT_RANGE[1]} seconds, "
                f"not {shown(params.get(option))}"
            )
    effective_ssl_mode(params)


def timeouts(params):
    """(connect_timeout, query_timeout) in seconds, defaults filled in."""
    connect = _as_int(params, "connect_timeout")
    query = _as_int(params, "query_timeout")
    return (
        DEFAULT_CONNECT_TIMEOUT if connect is None else connect,
        DEFAULT_QUERY_TIMEOUT if query is None else query,
    )


def connect_kwargs(params, application_name):
    """psycopg2.connect() keyword arguments from the module's connection options.

    Options left unset are not passed, so libpq's own defaults and environment
    (PGSERVICE, ~/.pgpass, ...) still apply. The unix socket wins over the host.
    ssl_mode is always passed, as effective_ssl_mode() decides it.
    """
    kwargs = {
        "dbname": params.get("login_db") or DEFAULT_DB,
        "application_name": application_name,
        "sslmode": effective_ssl_mode(params),
        "connect_timeout": timeouts(params)[0],
    }
    kwargs.update(KEEPALIVES)
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
        return f"{cut(params['login_unix_socket'])} (unix socket, port {port})"
    if params.get("login_host"):
        return f"{cut(params['login_host'])}:{port}"
    return f"the default PostgreSQL server (libpq defaults, port {port})"


def scrub(text, params):
    """A driver message on one line, without the password whatever the driver put in it."""
    return redact(one_line(text), params.get("login_password"))


def connect_hint(message):
    """What to check, for a connection's error `message` (scrubbed), or None."""
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


# ---------------------------------------------------------------- the login's rights
def grant_hint(login, role):
    """The statement a superuser runs to give `login` the role `role` (its name quoted)."""
    escaped = str(login).replace('"', '""')
    return f'GRANT {role} TO "{escaped}"'


def preflight_error(rights, signal, target):
    """Why our login cannot do the job (a message naming the missing grant), or None.

    ``rights`` as read by rights_query(): login, superuser, read_all_stats,
    signal_backend, version_num. ``signal``: the run will cancel or terminate.
    """
    if rights["version_num"] < MIN_SERVER_VERSION_NUM:
        return (
            f"PostgreSQL at {target} is version {rights['version_num']}; dbhygiene.sessions needs PostgreSQL "
            "10 or later"
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
    cannot = " and ".join(what for _role, what in missing)
    roles = " and ".join(role for role, _what in missing)
    grants = "; ".join(grant_hint(login, role) for role, _what in missing)
    return f"login {login} on PostgreSQL at {target} {cannot}: it lacks {roles}; as a superuser, run: {grants}"
