# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection options of the MySQL / MariaDB modules: from the module's options and the
option file to ``pymysql.connect()`` keyword arguments.

Private to the collection. No PyMySQL import: bad input fails here, naming the option and the
value, before any connection. The options are the engine registry's (``_engines.py``: names,
defaults; no environment fallbacks, as in community.mysql: the option file, ``config_file``,
``~/.my.cnf`` by default, is the usual place for defaults). TLS only when asked (a CA, a
client certificate or check_hostname, as options or ``ssl-*`` in the option file); the
password is never in a message (``describe_target``, ``_scrub``, ``describe_failure``) and a
failed connect gets a hint (``connect_hint``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import configparser
import os

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _engines
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import cut, redact, shown
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import statements

# The connection options' defaults are the engine registry's (_engines.py); the port and the
# option file are not options' defaults (unset, they come from the option file, then these).
REGISTRY_ENTRY = _engines.ENGINES["mysql"]
DEFAULT_PORT = 3306
DEFAULT_CONFIG_FILE = "~/.my.cnf"
DEFAULT_CONNECT_TIMEOUT = REGISTRY_ENTRY.option("connect_timeout").default
DEFAULT_QUERY_TIMEOUT = REGISTRY_ENTRY.option("query_timeout").default
MAX_TIMEOUT = 86400


# Longest part of a value quoted in a message (_messages.shown / cut).
SHOWN_CHARS = 80


# ---------------------------------------------------------------- options


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
        "program_name": statements.PROGRAM_NAME,
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


def describe_failure(exc, kwargs):
    """The message of a connect or query failure, without a secret nor a codec's quote of it."""
    if isinstance(exc, UnicodeError):
        # a codec error quotes the character it failed on: never show it
        return f"a value could not be encoded ({exc.__class__.__name__})"
    return _scrub(exc, kwargs)


def connect_hint(message):
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
