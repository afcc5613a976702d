# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by every engine's modules: the policy and the waits.

Paired with the doc fragment ``dbhygiene.sessions._policy``. Connection options
are each engine's own (declared once, in that engine's driver module).
Ansible checks types, choices and unknown keys; the policy core
(``_policy.parse_policy``) then checks durations, globs, CIDRs and regexes, all
before any connection is opened.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import STATES
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import ACTIONS

_CONDITIONS = dict(
    states=dict(type="list", elements="str", choices=list(STATES)),
    users=dict(type="list", elements="str"),
    databases=dict(type="list", elements="str"),
    applications=dict(type="list", elements="str"),
    client_addresses=dict(type="list", elements="str"),
    idle_longer_than=dict(type="raw"),
    running_longer_than=dict(type="raw"),
    transaction_longer_than=dict(type="raw"),
    connected_longer_than=dict(type="raw"),
    query_matches=dict(type="str"),
)


def _rule_options():
    options = copy.deepcopy(_CONDITIONS)
    options.update(
        name=dict(type="str"),
        action=dict(type="str", choices=list(ACTIONS)),
    )
    options["except"] = dict(type="dict", options=copy.deepcopy(_CONDITIONS))
    return options


def policy_spec():
    """The `policy` option: one structure for every engine (DESIGN.md)."""
    return dict(
        type="dict",
        required=True,
        options=dict(
            name=dict(type="str", default="unnamed"),
            action=dict(type="str", choices=list(ACTIONS), default="terminate"),
            grace=dict(type="raw", default="10s"),
            rules=dict(type="list", elements="dict", required=True, options=_rule_options()),
            protect=dict(
                type="dict",
                options=dict(
                    users=dict(type="list", elements="str"),
                    applications=dict(type="list", elements="str"),
                    databases=dict(type="list", elements="str"),
                    client_addresses=dict(type="list", elements="str"),
                    superusers=dict(type="bool", default=True),
                ),
            ),
            limits=dict(
                type="dict",
                options=dict(
                    max_terminations=dict(type="int"),
                    max_fraction=dict(type="float"),
                ),
            ),
        ),
    )


def sessions_argument_spec():
    """Options of every `*_sessions` module besides the connection."""
    return dict(
        policy=policy_spec(),
        wait_timeout=dict(type="float", default=10.0),
        host_timeout=dict(type="float", default=300.0),
    )


def info_argument_spec():
    """Options of every `*_session_info` module besides the connection."""
    return dict()
