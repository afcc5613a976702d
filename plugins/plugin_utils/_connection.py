# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side glue shared by the roles' action plugins: which engine module
to run, which of the role's connection options it takes, and what it cannot do.

Private to the collection. No Ansible import.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

from typing import Any, Mapping

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _engines

COLLECTION = _engines.COLLECTION

# The engines, as the roles' `dbhygiene_engine` names them.
ENGINES = _engines.ENGINE_NAMES

# Where the work of a host runs (docs/architecture.md "Where the work runs"): in the controller's
# own worker for the host, or in the engine module on the database host.
RUN_ON = ("controller", "host")

# Options of the action plugins, as passed to the engine modules (same names): every
# engine's connection options (the engine registry), as the roles' variables type them.
CONNECTION_OPTIONS = dict((name, option.action_spec()) for name, option in _engines.role_options().items())

# The options each engine's modules take; the others are ignored for that engine
# (group_vars at the `databases` level may well set both kinds).
ENGINE_OPTIONS = dict((name, entry.option_names()) for name, entry in _engines.ENGINES.items())

# Options whose empty value means something: config_file '' turns reading ~/.my.cnf off.
KEEP_EMPTY = frozenset(name for entry in _engines.ENGINES.values() for name in entry.keep_empty)


def module_name(engine: str, kind: str) -> str:
    """kind: the module's purpose, one of the registry's PURPOSES ("sessions",
    "session_info", "drain", "timeouts")."""
    name: str = _engines.module_name(engine, kind)
    return name


def module_args(engine: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The engine module's connection arguments from the plugin params (None dropped).

    A unix socket wins over the host address: the role fills login_host from
    ansible_host by default, so both are often set. An empty value is dropped
    (an AWX credential injects '' for a file it does not have), except where
    '' has a meaning of its own (KEEP_EMPTY)."""
    keep_empty = _engines.ENGINES[engine].keep_empty
    args: dict[str, Any] = {}

    for name in ENGINE_OPTIONS[engine]:
        value = params.get(name)
        if value is not None and (value != "" or name in keep_empty):
            args[name] = value
    if args.get("login_unix_socket"):
        args.pop("login_host", None)
    return args
