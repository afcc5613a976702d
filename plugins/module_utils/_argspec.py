# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by every engine's modules: the policy and the waits.

Paired with the doc fragment ``dbhygiene.sessions._policy``. Connection options
are each engine's own (declared once, in that engine's driver module).
The policy is checked whole by the policy core (``_policy.parse_policy``):
types, choices, unknown keys, durations, globs, CIDRs and regexes, all before
any connection is opened.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def policy_spec():
    """The `policy` option: one structure for every engine (docs/architecture.md).

    ``raw``, not ``dict`` with suboptions: the policy may be a string holding its
    JSON or YAML (an AWX survey answer), and AnsibleModule converts only JSON
    strings to a dict. ``_policy.parse_policy`` is the one validator of both forms
    (types, choices, defaults, unknown keys), with messages naming the field.
    """
    return dict(type="raw", required=True)


def sessions_argument_spec():
    """Options of every `*_sessions` module besides the connection."""
    return dict(
        policy=policy_spec(),
        wait_timeout=dict(type="float", default=10.0),
        host_timeout=dict(type="float", default=300.0),
    )


def info_argument_spec():
    """Options of every `*_session_info` module besides the connection: an optional policy
    (its plan of the same listing is returned too)."""
    return dict(policy=dict(type="raw"))
