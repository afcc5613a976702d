# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by every engine's modules: the policy and the waits.

Paired with the doc fragment ``dbhygiene.sessions._policy``. Connection options
are each engine's own (declared once, in that engine's driver module).
The policy is checked whole by the policy core (``_policy.parse_policy``):
types, choices, unknown keys, durations, globs, CIDRs and regexes, all before
any connection is opened.

The roles' action plugins take the engine modules' options from here too, as
``role_spec()`` turns them (community.crypto's pattern: the action plugin's spec
is its module's, extended by its own options; ``plugin_utils/_action.py``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown

# The option types whose values are numbers (AnsibleModule's names).
NUMBER_TYPES = ("int", "float")

# How the roles' action plugins take an engine module's options where not as the module does
# (role_spec(); for the connection options, the registry's Option.role_type and action_spec()).
# Internal: set by the plugin itself, from its write-ahead audit trail (plugin_utils/_journal.py),
# never by a task.
INTERNAL_OPTIONS = frozenset(["settle_keys", "end_only", "journaled_changes", "journaled_sessions"])
# Passed on only when set, so that the module's default applies: name -> the type the plugins
# give it, None for the module's (host_timeout is raw there, as the connection timeouts are:
# the module checks it, with its own message).
MODULE_DEFAULT_OPTIONS = {"wait_timeout": None, "host_timeout": "raw"}


def policy_spec():
    """The `policy` option: one structure for every engine (docs/architecture.md).

    ``raw``, not ``dict`` with suboptions: the policy may be a string holding its
    JSON or YAML (an AWX survey answer), and AnsibleModule converts only JSON
    strings to a dict. ``_policy.parse_policy`` is the one validator of both forms
    (types, choices, defaults, unknown keys), with messages naming the field.
    """
    return dict(type="raw", required=True)


def waits_argument_spec():
    """The options every module that ends sessions shares (`*_sessions`, `*_drain`): how long
    to wait for the ended sessions and for the whole host, and the keys of the sessions the
    role's write-ahead trail settles (internal; module_utils/_runner.py apply_policy)."""
    return dict(
        wait_timeout=dict(type="float", default=10.0),
        host_timeout=dict(type="float", default=300.0),
        settle_keys=dict(type="list", elements="str", no_log=False),  # session keys, not secrets
    )


def sessions_argument_spec():
    """Options of every `*_sessions` module besides the connection."""
    spec = dict(policy=policy_spec(), end_only=dict(type="list", elements="str"))
    spec.update(waits_argument_spec())
    return spec


def info_argument_spec():
    """Options of every `*_session_info` module besides the connection: an optional policy
    (its plan of the same listing is returned too)."""
    return dict(policy=dict(type="raw"))


def role_spec(spec):
    """`spec` (an engine module's options besides the connection) as the roles' action plugins
    take them: without the internal options, a path as a plain string (the database host's
    path when the module runs there, never expanded on the controller), and the options of
    MODULE_DEFAULT_OPTIONS without a default, in their type."""
    taken = {}
    for name, option in spec.items():
        if name in INTERNAL_OPTIONS:
            continue
        option = dict(option)
        if option.get("type") == "path":
            option["type"] = "str"
        if name in MODULE_DEFAULT_OPTIONS:
            option.pop("default", None)
            option["type"] = MODULE_DEFAULT_OPTIONS[name] or option["type"]
        taken[name] = option
    return taken


def number_problem(value):
    """Why `value` (an int or float option's, as given: a number or its text) is no usable
    number, or None. ``inf``, ``-inf``, ``nan`` (a float, or any text Python reads as one):
    "is not a finite number"; a number beyond a float (``1e999``, a 400-digit int): "is too
    large". ansible-core takes a non-finite float as is and converts one to an int with an
    OverflowError (a traceback); a value that is no number at all is left to the type check."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    except OverflowError:
        return "is too large"
    if math.isfinite(number):
        return None
    if math.isinf(number) and "inf" not in str(value).lower():
        return "is too large"
    return "is not a finite number"


def number_problems(spec, params, prefix=""):
    """Messages naming each int / float option of `spec` (by its name or an alias, as given in
    `params`, with `prefix`) whose value number_problem() refuses, and the value."""
    problems = []
    params = params or {}
    for name, option in spec.items():
        if option.get("type") not in NUMBER_TYPES:
            continue
        for given in (name,) + tuple(option.get("aliases") or ()):
            problem = number_problem(params.get(given))
            if problem:
                problems.append(f"{prefix}{given}: {shown(params[given])} {problem}")
    return problems


def numbers_as_raw(spec):
    """`spec` with its int / float options taken as they come (type raw), for a first check."""
    return dict(
        (name, dict(option, type="raw") if option.get("type") in NUMBER_TYPES else option)
        for name, option in spec.items()
    )


def new_module(argument_spec, **kwargs):
    """``AnsibleModule(argument_spec=argument_spec, **kwargs)`` for a module's main(); a number
    option given ``inf``, ``-inf``, ``nan`` or too large a number fails first, naming the option
    and the value, before any connection: ansible-core's own conversion of such a value to an
    int raises OverflowError (2.21: a traceback) or names no value (2.16)."""
    from ansible.module_utils.basic import AnsibleModule, _load_params  # where a module runs

    problems = number_problems(argument_spec, _load_params())
    if not problems:
        try:
            return AnsibleModule(argument_spec=argument_spec, **kwargs)
        except OverflowError:  # from an environment fallback (PGPORT=inf): not in the arguments
            pass
    module = AnsibleModule(argument_spec=numbers_as_raw(argument_spec), **kwargs)
    problems = number_problems(argument_spec, module.params) or ["a number option is out of range"]
    module.fail_json(msg="; ".join(problems))
