#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation of the action plugin of the same name (plugins/action/policy_check.py),
# which runs on the control node; there is no module code.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: policy_check
short_description: Validate the session policy of every host of the play, on the controller
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - Reads C(dbhygiene_engine), C(dbhygiene_policy) and C(dbhygiene_audit_thresholds) of every host of the play batch and
    validates each distinct policy with the same code the modules use, so that a bad duration, glob, CIDR or regex fails the
    play with the field, the value and the hosts named, before any database is contacted.
  - Also fails when a policy uses a condition the host's engine cannot evaluate.
  - Meant to run once per play (C(run_once=true)); the roles do that.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
options:
  hosts:
    description: Hosts whose variables are checked. Default, the hosts of the current play batch.
    type: list
    elements: str
  policy_required:
    description: Fail when a host has no C(dbhygiene_policy).
    type: bool
    default: true
  role:
    description:
      - Also validate every host's variables against the C(main) entry point of this role's C(meta/argument_specs.yml), as
        Ansible's own role validation would, but in this one task for the whole play instead of one task per host (the
        playbooks import the role with C(rolespec_validate=false)).
      - One of the collection's roles with an argument spec (V(audit), V(enforce), and the change-window roles V(drain)
        and V(timeouts) where the collection has them). Its C(defaults/main.yml) is taken into account for hosts that do
        not set a variable.
      - V(drain) also checks the change window's databases, allowed users and grace (C(dbhygiene_drain_*)).
    type: str
attributes:
  check_mode:
    support: full
    details: Changes nothing in any mode.
  diff_mode:
    support: none
  platform:
    support: N/A
    platforms: posix
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
"""

EXAMPLES = r"""
- name: Check the session policy of every host, before any database is contacted
  dbhygiene.sessions.policy_check:
  run_once: true
"""

RETURN = r"""
check_mode:
  description: Whether the task ran in check mode (a dry run); in every result, failed ones too.
  returned: always
  type: bool
policies:
  description: One entry per distinct policy, with its name, engine, rule count and hosts.
  returned: success
  type: list
  elements: dict
problems:
  description: What is wrong, one entry per group of hosts sharing the same bad values.
  returned: failure
  type: list
  elements: str
"""
