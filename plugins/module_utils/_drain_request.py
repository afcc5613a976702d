# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A drain / open's options, checked before any connection, and the policy that picks the
sessions a drain ends. Pure, Python 3.8.

``parse_request(params)`` returns a ``DrainRequest`` or raises PolicyError naming the field
and the value; ``drain_policy`` is the policy of the drain's one rule (its databases, the
logins it locked), run by ``_drain_closing``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils._argspec import waits_argument_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._deadline import check_timeouts
from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import MAX_GRACE, parse_duration
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._limits import UNLIMITED
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy

STATES = ("drained", "open")
# The drain modules' `grace` option when it is not given, as the option takes it: a duration text
# (the policy's own grace default is _policy.DEFAULT_POLICY_GRACE_SECONDS).
DEFAULT_DRAIN_GRACE = "30s"
POLICY_NAME = "drain"
RULE_NAME = "drain"
# The rule of the sessions of the logins a drain locked (MariaDB / MySQL), on any database.
ACCOUNT_RULE_NAME = "drain-account"
# The action of the drain's one rule: stop the statement first, terminate after grace.
DRAIN_ACTION = "cancel_then_terminate"
MAX_NAME_CHARS = 255


def drain_argument_spec():
    """Options of every `*_drain` module besides the connection (doc fragment ``dbhygiene.sessions._drain``)."""
    spec = dict(
        databases=dict(type="list", elements="str", required=True),
        state=dict(type="str", choices=list(STATES), default="drained"),
        allow_users=dict(type="list", elements="str", default=[]),
        grace=dict(type="raw", default=DEFAULT_DRAIN_GRACE),
        journaled_changes=dict(type="list", elements="str", no_log=False),  # change keys (change_key)
        journaled_sessions=dict(type="list", elements="str", no_log=False),  # session keys
    )
    spec.update(waits_argument_spec())
    return spec


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

    def __init__(self, databases, state, allow_users, grace, wait_timeout, host_timeout, settle_keys=None):
        self.databases = databases
        self.settle_keys = list(settle_keys or [])
        self.state = state
        self.allow_users = allow_users
        self.grace = grace
        self.wait_timeout = wait_timeout
        self.host_timeout = host_timeout
        self.policy = drain_policy(databases, allow_users, grace)


def drain_policy(databases, allow_users, grace, users=()):
    """The policy that picks the sessions a drain ends: every client session on `databases`,
    and every session of `users` (on any database or none), except `allow_users`' and
    superusers' (our own is never listed)."""
    rules = [{"name": RULE_NAME, "databases": [_glob_literal(d) for d in databases]}]
    if users:
        rules.append({"name": ACCOUNT_RULE_NAME, "users": [_glob_literal(u) for u in users]})
    return parse_policy(
        {
            "name": POLICY_NAME,
            "action": DRAIN_ACTION,
            "grace": grace,
            "rules": rules,
            "protect": {"users": [_glob_literal(u) for u in allow_users], "superusers": True},
            # A change window ends every session on its databases, asked for by name: no default limit applies.
            "limits": {"max_terminations": UNLIMITED, "max_fraction": UNLIMITED},
        }
    )


def parse_request(params):
    """DrainRequest from module.params; PolicyError naming the field and the value otherwise.

    Called before connecting: nothing here reads the server.
    """
    databases = _names(params, "databases", required=True)
    allow_users = _names(params, "allow_users", required=False)
    state = params.get("state") or "drained"
    if state not in STATES:
        raise PolicyError("state", state, f"must be one of {', '.join(STATES)}, got {shown(state)}")
    raw_grace = params.get("grace")
    grace = parse_duration(DEFAULT_DRAIN_GRACE if raw_grace is None else raw_grace, "grace", maximum=MAX_GRACE)
    request = DrainRequest(
        databases,
        state,
        allow_users,
        grace,
        params.get("wait_timeout"),
        params.get("host_timeout"),
        params.get("settle_keys"),
    )
    try:
        check_timeouts(request.policy, request.wait_timeout, request.host_timeout)
    except PolicyError as exc:
        # The runner names policy.grace; the drain's option is `grace`.
        raise PolicyError(exc.field, exc.value, exc.problem.replace("policy.grace", "grace"))
    return request
