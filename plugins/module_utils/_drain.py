# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Change windows: drain databases before a change, open them again after (engine neutral).

Private to the collection. No AnsibleModule import, so that an action plugin on
the controller can run a drain in-process too. Each engine brings a *rights*
object (``_postgresql_drain.PostgreSQLRights``, ``_mysql_drain.MySQLRights``)
that reads, changes and records the connection rights on its server; this file
validates the options, builds the policy that ends the sessions (run by the
runner's guarded kill, ``_runner.apply_policy``) and assembles the result.

Options are checked before any connection (``parse_request``); every error
names the field and the value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import shown
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import (
    MAX_GRACE,
    PolicyError,
    parse_duration,
    parse_policy,
)

STATES = ("drained", "open")
DEFAULT_GRACE = "30s"
POLICY_NAME = "drain"
RULE_NAME = "drain"
# The action of the drain's one rule: stop the statement first, terminate after grace.
DRAIN_ACTION = "cancel_then_terminate"
MAX_NAME_CHARS = 255

# change entries (result key `changes`)
CHANGE_REVOKED = "revoked"
CHANGE_GRANTED = "granted"
CHANGE_LOCKED = "locked"
CHANGE_UNLOCKED = "unlocked"


def drain_argument_spec():
    """Options of every `*_drain` module besides the connection (doc fragment ``dbhygiene.sessions._drain``)."""
    return dict(
        databases=dict(type="list", elements="str", required=True),
        state=dict(type="str", choices=list(STATES), default="drained"),
        allow_users=dict(type="list", elements="str", default=[]),
        grace=dict(type="raw", default=DEFAULT_GRACE),
        wait_timeout=dict(type="float", default=10.0),
        host_timeout=dict(type="float", default=300.0),
    )


def _glob_literal(name):
    """An fnmatch pattern that matches exactly `name` (the policy's globs take names literally this way)."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in name)


def _names(params, field, required):
    values = params.get(field)
    if values is None:
        values = []
    if not isinstance(values, (list, tuple)):
        raise PolicyError(field, values, f"must be a list of names, got {shown(values)}")
    if required and not values:
        raise PolicyError(field, values, "at least one database is required")
    names = []
    for index, value in enumerate(values):
        where = f"{field}[{index}]"
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(where, value, f"must be a non-empty name, got {shown(value)}")
        if "\x00" in value:
            raise PolicyError(where, value, f"must not contain a NUL character, got {shown(value)}")
        if len(value) > MAX_NAME_CHARS:
            raise PolicyError(where, value, f"longer than {MAX_NAME_CHARS} characters: {shown(value)}")
        if value not in names:
            names.append(value)
    return names


class DrainRequest(object):
    """The validated options of one drain / open run."""

    def __init__(self, databases, state, allow_users, grace, wait_timeout, host_timeout):
        self.databases = databases
        self.state = state
        self.allow_users = allow_users
        self.grace = grace
        self.wait_timeout = wait_timeout
        self.host_timeout = host_timeout
        self.policy = drain_policy(databases, allow_users, grace)


def drain_policy(databases, allow_users, grace):
    """The policy whose guarded kill ends the sessions of a drain: every client session on
    `databases` except `allow_users`' and superusers' (our own is never listed)."""
    return parse_policy(
        {
            "name": POLICY_NAME,
            "action": DRAIN_ACTION,
            "grace": grace,
            "rules": [{"name": RULE_NAME, "databases": [_glob_literal(d) for d in databases]}],
            "protect": {"users": [_glob_literal(u) for u in allow_users], "superusers": True},
        }
    )


def parse_request(params):
    """DrainRequest from module.params; PolicyError naming the field and the value otherwise.

    Called before connecting: nothing here reads the server.
    """
    # Imported here: the runner is the layer above the drivers, and this check is all we need of it.
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import check_timeouts

    databases = _names(params, "databases", required=True)
    allow_users = _names(params, "allow_users", required=False)
    state = params.get("state") or "drained"
    if state not in STATES:
        raise PolicyError("state", state, f"must be one of {', '.join(STATES)}, got {shown(state)}")
    raw_grace = params.get("grace")
    grace = parse_duration(DEFAULT_GRACE if raw_grace is None else raw_grace, "grace", maximum=MAX_GRACE)
    request = DrainRequest(databases, state, allow_users, grace, params.get("wait_timeout"), params.get("host_timeout"))
    try:
        check_timeouts(request.policy, request.wait_timeout, request.host_timeout)
    except PolicyError as exc:
        # The runner names policy.grace; the drain's option is `grace`.
        raise PolicyError(exc.field, exc.value, exc.problem.replace("policy.grace", "grace"))
    return request


def run_drain_module(module, driver_class, open_driver, rights_class):
    """The whole main() of a `*_drain` module."""
    try:
        parse_request(module.params)
    except PolicyError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    module.fail_json(msg=f"{driver_class.engine} drain: not implemented yet ({rights_class.__name__})")
