# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry of engines: for each engine, its modules, the policy conditions it
cannot evaluate, its connection options and its parts of the change windows (drain
rights, timeouts). The one source of all four.

Derived from it: each driver's ``connection_argument_spec()`` (the modules' options) and
the defaults it applies to an option left unset,
the roles' action plugins' options and engine choices (``plugin_utils/_connection.py``,
``_inprocess.py``), and the check (``tests/unit/.../test_engines.py``)
that every role's ``meta/argument_specs.yml`` connection entries and every connection
doc fragment agree with it.

Adding an engine is its driver (a module_utils module implementing ``_driver.Driver``, as
``_mysql/driver.py``) plus one entry in ``ENGINES`` below.

Pure: no Ansible import (the drivers turn ``env`` into Ansible's ``env_fallback``),
Python 3.8 syntax. Private to the collection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _platform

COLLECTION = "dbhygiene.sessions"


class Option(object):
    """One connection option of an engine's modules.

    ``type``, ``default``, ``no_log``, ``choices``, ``aliases`` are the module's
    (AnsibleModule's meanings); ``env``: environment variables it falls back to, in
    order. ``role_type``: the type of the roles' ``dbhygiene_<name>`` variable and of
    the action plugins' option of the same name, when it is not ``type`` (timeouts are
    ``raw`` there: the module checks them with its own messages).
    """

    def __init__(self, name, option_type, default=None, no_log=None, env=(), choices=None, aliases=(), role_type=None):
        self.name = name
        self.type = option_type
        self.default = default
        self.no_log = no_log
        self.env = tuple(env)
        self.choices = tuple(choices) if choices is not None else None
        self.aliases = tuple(aliases)
        self.role_type = role_type or option_type

    def module_spec(self, env_fallback=None):
        """The AnsibleModule spec of the option; ``env_fallback``: Ansible's function of that
        name, which turns ``env`` into a fallback (left out when None)."""
        spec = {"type": self.type}
        if self.default is not None:
            spec["default"] = self.default
        if self.no_log is not None:
            spec["no_log"] = self.no_log
        if self.choices is not None:
            spec["choices"] = list(self.choices)
        if self.aliases:
            spec["aliases"] = list(self.aliases)
        if self.env and env_fallback is not None:
            spec["fallback"] = (env_fallback, list(self.env))
        return spec

    def action_spec(self):
        """The option of the roles' action plugins: a path stays a plain string there (it is
        the database host's path when the module runs on the host, never expanded on the
        controller); no default (unset means the module's default)."""
        spec = {"type": "str" if self.role_type == "path" else self.role_type}
        if self.no_log is not None:
            spec["no_log"] = self.no_log
        return spec


class Engine(object):
    """One engine: its name, driver module, modules and connection options."""

    def __init__(
        self, name, driver, library, package, modules, unsupported_conditions, options, change_windows, keep_empty=()
    ):
        self.name = name
        # The driver: module_utils module (``_mysql.driver``: ``plugins/module_utils/_mysql/driver.py``),
        # its ``_driver.Driver`` class and its flag saying the Python library imported.
        self.driver_module, self.driver_class, self.driver_available = driver
        # The driver's Python library (as users know it, and as pip installs it).
        self.library = library
        self.package = package
        # Purpose -> module name (without the collection).
        self.modules = dict(modules)
        # Policy conditions the engine cannot evaluate (the planner refuses a policy using one).
        self.unsupported_conditions = frozenset(unsupported_conditions)
        self.options = tuple(options)
        # Options whose empty string means something (the roles pass it on; else '' is unset).
        self.keep_empty = frozenset(keep_empty)
        # The change windows' engine parts, by name (the registry imports none of them): the
        # drain's rights (module_utils module, class: ``_drain.run_drain_module``), the engine's
        # timeouts class (``<module>.<class>``: ``_timeouts.engine_timeouts``), and the options
        # its ``<engine>_timeouts`` module takes besides ``timeouts``.
        self.drain_module, self.drain_rights, self.timeouts_class, timeouts_options = change_windows
        self.timeouts_options = tuple(timeouts_options)

    def option(self, name):
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(name)

    def option_names(self):
        return tuple(option.name for option in self.options)

    def connection_spec(self, env_fallback=None):
        """The AnsibleModule spec of the engine's connection options."""
        return dict((option.name, option.module_spec(env_fallback)) for option in self.options)

    def timeouts_spec(self):
        """The AnsibleModule spec of the options of the engine's timeouts module besides ``timeouts``."""
        return dict((option.name, option.module_spec()) for option in self.timeouts_options)


def _modules(engine, purposes):
    return dict((purpose, f"{engine}_{purpose}") for purpose in purposes)


# What every engine's modules are for (purpose -> `<engine>_<purpose>`): list the
# sessions, apply a policy, close databases for a change window, set server timeouts.
PURPOSES = ("session_info", "sessions", "drain", "timeouts")

POSTGRESQL_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

ENGINES = {
    "postgresql": Engine(
        "postgresql",
        driver=("_postgresql.driver", "PostgreSQLDriver", "HAS_PSYCOPG2"),
        library="psycopg2",
        package="psycopg2-binary",
        modules=_modules("postgresql", PURPOSES),
        unsupported_conditions=(),
        # Names and environment fallbacks follow community.postgresql and libpq.
        options=(
            Option("login_host", "str", env=["PGHOST"]),
            Option("login_port", "int", default=5432, env=["PGPORT"]),
            Option("login_user", "str", default="postgres", env=["PGUSER"]),
            Option("login_password", "str", no_log=True, env=["PGPASSWORD"]),
            Option("login_unix_socket", "path", role_type="str"),
            Option("login_db", "str", env=["PGDATABASE"]),
            Option("connect_timeout", "int", default=10, env=["PGCONNECT_TIMEOUT"], role_type="raw"),
            Option("query_timeout", "int", default=30, role_type="raw"),
            # No default: unset means verify-full with a CA or client certificate, else prefer.
            Option("ssl_mode", "str", choices=POSTGRESQL_SSL_MODES, env=["PGSSLMODE"]),
            Option("ca_cert", "path", aliases=["ssl_rootcert"], env=["PGSSLROOTCERT"]),
            Option("ssl_cert", "path", env=["PGSSLCERT"]),
            Option("ssl_key", "path", no_log=False, env=["PGSSLKEY"]),
            # The managed service running the server (module_utils/_platform.py): auto detects it.
            Option("platform", "str", default=_platform.AUTO, choices=_platform.CHOICES),
        ),
        change_windows=("_postgresql.drain", "PostgreSQLRights", "_postgresql.timeouts.PostgreSQLTimeouts", ()),
    ),
    "mysql": Engine(
        "mysql",
        driver=("_mysql", "MySQLDriver", "HAS_PYMYSQL"),
        library="PyMySQL",
        package="PyMySQL",
        modules=_modules("mysql", PURPOSES),
        # Neither flavour records when a thread connected (PROCESSLIST has no connect
        # time; connection attributes carry none). No guessing.
        unsupported_conditions=("connected_longer_than",),
        # Names follow community.mysql. No environment fallbacks, as there: the option
        # file (config_file, ~/.my.cnf by default) is the usual place for defaults.
        options=(
            Option("login_host", "str"),
            Option("login_port", "int"),
            Option("login_user", "str"),
            Option("login_password", "str", no_log=True),
            Option("login_unix_socket", "str"),
            Option("config_file", "path", role_type="str"),
            Option("connect_timeout", "int", default=30, role_type="raw"),
            Option("query_timeout", "int", default=30, role_type="raw"),
            Option("ca_cert", "path", aliases=["ssl_ca"]),
            Option("client_cert", "path", aliases=["ssl_cert"]),
            Option("client_key", "path", aliases=["ssl_key"], no_log=False),
            Option("check_hostname", "bool"),
            Option("platform", "str", default=_platform.AUTO, choices=_platform.CHOICES),
        ),
        # persist_file: the option file a MariaDB server reads at start (MySQL 8 has SET PERSIST).
        change_windows=("_mysql_drain", "MySQLRights", "_timeouts.MySQLTimeouts", (Option("persist_file", "path"),)),
        # config_file '' turns reading ~/.my.cnf off.
        keep_empty=("config_file",),
    ),
}

ENGINE_NAMES = tuple(ENGINES)


def engine(name):
    """The registry entry of engine `name`; ValueError naming the known ones."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}: expected one of {', '.join(ENGINE_NAMES)}")


def unsupported_conditions(name):
    """Policy conditions engine `name` cannot evaluate (none for an engine the registry lacks)."""
    entry = ENGINES.get(name)
    return entry.unsupported_conditions if entry is not None else frozenset()


def check_supported(policy, name, unsupported=None):
    """The error message when the parsed `policy` uses a condition engine `name` cannot
    evaluate (`unsupported`; by default the registry's), else None. The one wording of the
    controller's check before any connection and of the runner's on the host."""
    if unsupported is None:
        unsupported = unsupported_conditions(name)
    missing = sorted(policy.conditions_used() & set(unsupported))
    if not missing:
        return None
    pronoun = "it" if len(missing) == 1 else "them"
    return (
        f"policy {policy.name!r} uses {', '.join(missing)}, which {name} cannot evaluate; "
        f"remove {pronoun} from the rules for {name} hosts"
    )


def module_name(engine_name, purpose):
    """The fully qualified name of the engine's module for `purpose` (see PURPOSES)."""
    return f"{COLLECTION}.{engine(engine_name).modules[purpose]}"


def role_options():
    """Every engine's connection options as the roles and their action plugins take them:
    name -> Option (the first engine's, in registry order; `role_type` and `no_log`
    agree across engines, which the unit test checks)."""
    options = {}
    for entry in ENGINES.values():
        for option in entry.options:
            options.setdefault(option.name, option)
    return options
