# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side glue shared by the roles' action plugins: which engine module
to run, which of the role's connection options it takes, and what it cannot do.

Private to the collection. No Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import inspect

COLLECTION = "dbhygiene.sessions"

# Where the work of a host runs (DESIGN.md "Where the work runs"): in the controller's
# own worker for the host, or in the engine module on the database host.
RUN_ON = ("controller", "host")

# Options of the action plugins, as passed to the engine modules (same names).
CONNECTION_OPTIONS = {
    "login_host": {"type": "str"},
    "login_port": {"type": "int"},
    "login_user": {"type": "str"},
    "login_password": {"type": "str", "no_log": True},
    "login_unix_socket": {"type": "str"},
    "login_db": {"type": "str"},
    "connect_timeout": {"type": "raw"},
    "query_timeout": {"type": "raw"},
    "config_file": {"type": "str"},
    "ssl_mode": {"type": "str"},
    "ca_cert": {"type": "str"},
    "ssl_cert": {"type": "str"},
    "ssl_key": {"type": "str", "no_log": False},
    "client_cert": {"type": "str"},
    "client_key": {"type": "str", "no_log": False},
    "check_hostname": {"type": "bool"},
}

# The options each engine's modules take; the others are ignored for that engine
# (group_vars at the `databases` level may well set both kinds).
ENGINE_OPTIONS = {
    "postgresql": (
        "login_host",
        "login_port",
        "login_user",
        "login_password",
        "login_unix_socket",
        "login_db",
        "connect_timeout",
        "query_timeout",
        "ssl_mode",
        "ca_cert",
        "ssl_cert",
        "ssl_key",
    ),
    "mysql": (
        "login_host",
        "login_port",
        "login_user",
        "login_password",
        "login_unix_socket",
        "connect_timeout",
        "query_timeout",
        "config_file",
        "ca_cert",
        "client_cert",
        "client_key",
        "check_hostname",
    ),
}

# Options whose empty value means something: config_file '' turns reading ~/.my.cnf off.
KEEP_EMPTY = frozenset(["config_file"])

# module_utils holding each engine's driver (the class with `engine` set).
_DRIVER_MODULES = {
    "postgresql": "ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql",
    "mysql": "ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql",
}


def module_name(engine, kind):
    """kind: "sessions" or "session_info"."""
    return f"{COLLECTION}.{engine}_{kind}"


def module_args(engine, params):
    """The engine module's connection arguments from the plugin params (None dropped).

    A unix socket wins over the host address: the role fills login_host from
    ansible_host by default, so both are often set. An empty value is dropped
    (an AWX credential injects '' for a file it does not have), except where
    '' has a meaning of its own (KEEP_EMPTY)."""
    args = {}
    for name in ENGINE_OPTIONS[engine]:
        value = params.get(name)
        if value is not None and (value != "" or name in KEEP_EMPTY):
            args[name] = value
    if args.get("login_unix_socket"):
        args.pop("login_host", None)
    return args


def unsupported_conditions(engine):
    """Policy conditions the engine's driver cannot evaluate (empty if unknown)."""
    try:
        module = importlib.import_module(_DRIVER_MODULES[engine])
    except ImportError:
        return frozenset()
    for _name, value in inspect.getmembers(module, inspect.isclass):
        if getattr(value, "engine", None) == engine and hasattr(value, "unsupported_conditions"):
            return frozenset(value.unsupported_conditions)
    return frozenset()


def check_supported(policy, engine):
    """An error message when the parsed policy uses a condition the engine lacks, else None."""
    missing = sorted(policy.conditions_used() & unsupported_conditions(engine))
    if not missing:
        return None
    return "policy {!r} uses {} which {} cannot evaluate; remove {} or scope the rule to the other engine".format(
        policy.name, ", ".join(missing), engine, "it" if len(missing) == 1 else "them"
    )
