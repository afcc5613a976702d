#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation of the action plugin of the same name (plugins/action/session_timeouts.py),
# which runs on the control node; there is no module code.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: session_timeouts
short_description: Reconcile one host's native session timeouts and write the audit trail (timeouts role)
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - The one per-host task of the C(dbhygiene.sessions.timeouts) role. Runs M(dbhygiene.sessions.postgresql_timeouts) or
    M(dbhygiene.sessions.mysql_timeouts), chosen by O(engine), inside the controller's worker for the host
    (O(run_on=controller), the default) or on the task's connection (O(run_on=host)), and appends one JSON line per
    setting changed to O(audit_log) on the control node.
  - O(timeouts) is validated here, before any connection; a level or a field the engine has not (a per-database
    timeout on MariaDB) fails naming the field.
  - In check mode nothing changes; the lines say C(check_mode=true) with outcome C(would_set). With C(--diff), the
    current and wanted value of every setting.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - dbhygiene.sessions._role_connection
options:
  timeouts:
    description:
      - The limits, see O(dbhygiene.sessions.postgresql_timeouts#module:timeouts).
    type: dict
    required: true
  persist_file:
    description:
      - MySQL / MariaDB, see O(dbhygiene.sessions.mysql_timeouts#module:persist_file). Needs O(run_on=host) (the file
        is on the database host). Ignored for PostgreSQL.
    type: str
  audit_log:
    description: Audit trail file on the control node. Unset, no trail is written.
    type: path
attributes:
  check_mode:
    support: full
    details: The engine module's check mode; the audit-trail lines are written and marked C(check_mode=true).
  diff_mode:
    support: full
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
  - module: dbhygiene.sessions.postgresql_timeouts
  - module: dbhygiene.sessions.mysql_timeouts
"""

EXAMPLES = r"""
- name: Let the server end the application's forgotten transactions after five minutes
  dbhygiene.sessions.session_timeouts:
    engine: postgresql
    login_host: "{{ ansible_host }}"
    login_user: "{{ pg_admin }}"
    login_password: "{{ pg_admin_password }}"
    timeouts:
      roles:
        app:
          idle_in_transaction: 5m
    audit_log: ~/dbhygiene/audit.jsonl
  register: timeouts_result

- name: Back to no limit for the role
  dbhygiene.sessions.session_timeouts:
    engine: postgresql
    login_host: "{{ ansible_host }}"
    login_user: "{{ pg_admin }}"
    login_password: "{{ pg_admin_password }}"
    timeouts:
      roles:
        app:
          idle_in_transaction: 0
    audit_log: ~/dbhygiene/audit.jsonl
"""

RETURN = r"""
check_mode:
  description: Whether the task ran in check mode (a dry run); in every result, failed ones too.
  returned: always
  type: bool
settings:
  description: The engine module's C(settings) (every setting managed, current and wanted, C(changed)).
  returned: success
  type: list
  elements: dict
queries:
  description: The statements run (check mode, that would run).
  returned: success
  type: list
  elements: str
persisted:
  description: The values survive a server restart.
  returned: success
  type: bool
dbhygiene:
  description:
    - This host in brief (engine, login_host, check_mode, settings managed, changed, persisted, audit lines written);
      C(failure) is the reason code when the host failed.
  returned: always
  type: dict
"""
