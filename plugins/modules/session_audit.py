#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation of the action plugin of the same name (plugins/action/session_audit.py),
# which runs on the control node; there is no module code.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: session_audit
short_description: Read-only session audit of one host (audit role)
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - The one per-host task of the C(dbhygiene.sessions.audit) role. Takes one snapshot with
    M(dbhygiene.sessions.postgresql_session_info) or M(dbhygiene.sessions.mysql_session_info) (chosen by O(engine)), and
    computes from that same snapshot the session counts by state, user, database, application and client, the oldest
    idle-in-transaction session and open transaction, connection use against C(max_connections), the lock chains (each
    root blocker with how many sessions wait behind it and their longest wait; cycles flagged) and the longest lock wait,
    and, with O(policy), what the policy would end (the planner the C(*_sessions) modules use, on the controller).
  - Never changes anything. A host over one of O(thresholds) fails with a message naming each threshold (for alerting).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - dbhygiene.sessions._role_connection
options:
  policy:
    description:
      - The session policy, see M(dbhygiene.sessions.postgresql_sessions). Optional.
      - A mapping, or a string holding the JSON or YAML of the mapping (an AWX survey answer).
    type: raw
  thresholds:
    description:
      - Thresholds that make the host fail. Keys C(max_sessions), C(max_connection_use) (0-1), C(max_idle_in_transaction),
        C(max_oldest_idle_in_transaction), C(max_oldest_transaction), C(max_lock_wait) (durations), C(max_would_end).
      - C(max_lock_wait) fails the host when a session has waited for a lock longer than this.
    type: dict
attributes:
  check_mode:
    support: full
    details: Read only in any mode.
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
seealso:
  - module: dbhygiene.sessions.postgresql_session_info
  - module: dbhygiene.sessions.mysql_session_info
"""

EXAMPLES = r"""
- name: Audit one MariaDB host, alert above 80% of max_connections
  dbhygiene.sessions.session_audit:
    engine: mysql
    login_host: "{{ ansible_host }}"
    login_user: hygiene
    login_password: "{{ vault_hygiene_password }}"
    thresholds:
      max_connection_use: 0.8
      max_oldest_transaction: 15m
      max_lock_wait: 30s
  delegate_to: localhost
  register: audit_result
"""

RETURN = r"""
check_mode:
  description: Whether the task ran in check mode (a dry run); in every result, failed ones too.
  returned: always
  type: bool
dbhygiene:
  description:
    - The host's figures (sessions, by_state, by_user, by_database, by_application, oldest_idle_in_transaction,
      oldest_transaction, max_connections, connection_use, would_end, protected, limit_error, breaches, server).
    - 'Locks: C(lock_waiting) (sessions waiting for a lock), C(longest_lock_wait) (the session that has waited longest: id,
      user, database, application, state, blocked_by, seconds; null when none waits), C(lock_chains) (one per root blocker,
      most waiters first: root, visible, user, database, application, state, blocking, blocking_seconds, waiters) and
      C(lock_cycles) (lists of session ids waiting for each other); C(lock_waits_hidden), the kinds of lock wait the login
      cannot see on this server (MySQL / MariaDB: C(row-lock waits) without the grants, C(metadata-lock waits) with the
      performance_schema instrument off), and with C(max_lock_wait) in O(thresholds) a C(lock_note) saying so.'
  returned: always
  type: dict
"""
