#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation of the action plugin of the same name (plugins/action/session_enforce.py),
# which runs on the control node; there is no module code.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: session_enforce
short_description: Apply a session policy to one host and write the audit trail (enforce role)
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - The one per-host task of the C(dbhygiene.sessions.enforce) role. Runs M(dbhygiene.sessions.postgresql_sessions) or
    M(dbhygiene.sessions.mysql_sessions), chosen by O(engine), on the task's connection (the role delegates it to the control
    node by default), and appends one JSON line per ended session to O(audit_log) on the control node.
  - In check mode the module ends nothing and the lines say C(check_mode=true) with outcome C(would_terminate) or C(would_cancel).
  - Targeted sessions that were not ended (C(state_changed), C(gone), C(failed), C(still_present), C(nothing_to_cancel)) get a
    line with outcome C(skipped) and the reason; protected sessions get none.
  - The file is created with mode 0600 and appended to under an exclusive lock, one write per host, so hosts finishing at once
    never interleave. A line never holds a secret; credential literals in captured statements are masked.
options:
  login_host:
    description:
      - Address of the database server, passed to the engine module. Dropped when O(login_unix_socket) is set.
    type: str
  login_port:
    description: Port of the database server (module default when unset).
    type: int
  login_user:
    description: The login (module default when unset).
    type: str
  login_password:
    description: Password of O(login_user). Never shown in results, reports or the audit trail.
    type: str
  login_unix_socket:
    description: Unix socket (PostgreSQL, its directory) to connect through; wins over O(login_host).
    type: str
  login_db:
    description: PostgreSQL database to connect to. Not passed to MySQL.
    type: str
  connect_timeout:
    description: Connection timeout in seconds.
    type: raw
  ssl_mode:
    description: PostgreSQL C(sslmode). Not passed to MySQL.
    type: str
  ca_cert:
    description: CA certificate to verify the server with.
    type: str
  ssl_cert:
    description: PostgreSQL client certificate. Not passed to MySQL.
    type: str
  ssl_key:
    description: PostgreSQL client key. Not passed to MySQL.
    type: str
  client_cert:
    description: MySQL client certificate. Not passed to PostgreSQL.
    type: str
  client_key:
    description: MySQL client key. Not passed to PostgreSQL.
    type: str
  check_hostname:
    description: MySQL, verify the server certificate's host name. Not passed to PostgreSQL.
    type: bool
  engine:
    description: Engine of the host, it selects the module.
    type: str
    required: true
    choices: [postgresql, mysql]
  policy:
    description: The session policy, see M(dbhygiene.sessions.postgresql_sessions).
    type: dict
    required: true
  wait_timeout:
    description: Seconds to wait for ended sessions to disappear (module default when unset).
    type: float
  audit_log:
    description: Audit trail file on the control node. Unset, no trail is written.
    type: path
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The engine module's check mode; the audit-trail lines are written and marked C(check_mode=true).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
  async:
    description: Supports being used with the C(async) keyword.
    support: none
seealso:
  - module: dbhygiene.sessions.postgresql_sessions
  - module: dbhygiene.sessions.mysql_sessions
"""

EXAMPLES = r"""
- name: End the sessions of the policy, from the control node
  dbhygiene.sessions.session_enforce:
    engine: postgresql
    login_host: "{{ ansible_host }}"
    login_user: hygiene
    login_password: "{{ vault_hygiene_password }}"
    policy:
      name: nightly-sweep
      rules:
        - name: ghost-idle
          states: [idle]
          idle_longer_than: 30m
    audit_log: ~/dbhygiene/audit.jsonl
  delegate_to: localhost
  register: enforce_result
"""

RETURN = r"""
terminated:
  description: The module's C(terminated) list (check mode, would be terminated).
  returned: success
  type: list
  elements: dict
cancelled:
  description: The module's C(cancelled) list.
  returned: success
  type: list
  elements: dict
skipped_sessions:
  description:
    - The module's C(skipped) list (sessions a rule matched that were not ended), each with C(reason).
    - Renamed because a non-empty C(skipped) in a task result makes Ansible report the task as skipped.
  returned: success
  type: list
  elements: dict
dbhygiene:
  description: What the fleet report needs of this host (engine, policy, seen, ended and skipped sessions in brief, audit lines written).
  returned: always
  type: dict
"""
