#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation of the action plugin of the same name (plugins/action/session_drain.py),
# which runs on the control node; there is no module code.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: session_drain
short_description: Drain or open the databases of a change window on one host and write the audit trail (drain role)
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - The one per-host task of the C(dbhygiene.sessions.drain) role. Runs M(dbhygiene.sessions.postgresql_drain) or
    M(dbhygiene.sessions.mysql_drain), chosen by O(engine), inside the controller's worker for the host (O(run_on=controller),
    the default) or on the task's connection (O(run_on=host)), and appends one JSON line per change to O(audit_log) on the
    control node.
  - A change is a connection right revoked or granted, an account locked or unlocked (outcomes C(revoked), C(granted),
    C(locked), C(unlocked)), or a session ended (C(cancelled), C(terminated)); in check mode nothing is changed and the
    lines say C(check_mode=true) with the outcome C(would_revoke), C(would_lock), C(would_terminate), and so on. A session
    the drain targeted but did not end gets a line with outcome C(not_ended) and the reason.
  - The lines have the enforce role's format, with C(policy=drain), C(rule=drain), C(action) what was done (C(revoke),
    C(grant), C(lock), C(unlock), or the session's action) and C(drain_state) the state asked for (C(drained) or C(open)).
  - The login needs the rights of the engine's drain module (PostgreSQL a superuser; MySQL / MariaDB C(CREATE USER)), see
    M(dbhygiene.sessions.postgresql_drain) and M(dbhygiene.sessions.mysql_drain).
  - O(databases), O(allow_users) and O(grace) are checked here, before any connection; an invalid one fails the host
    naming the option and the value.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - dbhygiene.sessions._role_connection
options:
  databases:
    description: The databases of the change window, see M(dbhygiene.sessions.postgresql_drain).
    type: list
    elements: str
    required: true
  state:
    description: V(drained) closes the databases and ends their sessions; V(open) undoes exactly what V(drained) changed.
    type: str
    choices: [drained, open]
    default: drained
  allow_users:
    description: Logins that may still connect and keep their sessions.
    type: list
    elements: str
    default: []
  grace:
    description: Cancel the sessions first, terminate those still there after this long (a duration as in a policy).
    type: raw
    default: 30s
  wait_timeout:
    description: Seconds to wait for ended sessions to disappear (module default when unset).
    type: float
  host_timeout:
    description: The whole host's deadline in seconds (module default when unset).
    type: raw
  audit_log:
    description:
      - Audit trail file on the control node. Unset, no trail is written.
      - Written ahead. Each change of rights has a C(changing) line and each session an C(ending) line on disk before
        the change is made or the session signalled; the outcome lines follow. With O(run_on=host) the engine module
        plans on the host first (check mode), the plan is written ahead, and the real run makes and ends only what
        the trail holds. A change or a session beyond it (rights changed, or a login got in, in between) stops that run
        before anything of it is sent; it is written ahead and the module runs again, at most 4 times.
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
  - module: dbhygiene.sessions.postgresql_drain
  - module: dbhygiene.sessions.mysql_drain
"""

EXAMPLES = r"""
- name: Close the billing database for a migration, from the control node
  dbhygiene.sessions.session_drain:
    engine: postgresql
    login_host: "{{ ansible_host }}"
    login_user: "{{ db_admin_user }}"
    login_password: "{{ vault_db_admin_password }}"
    databases: [billing]
    allow_users: [migrator]
    grace: 5s
    audit_log: ~/dbhygiene/audit.jsonl
  register: drain_result

- name: Open it again, exactly as it was
  dbhygiene.sessions.session_drain:
    engine: postgresql
    login_host: "{{ ansible_host }}"
    login_user: "{{ db_admin_user }}"
    login_password: "{{ vault_db_admin_password }}"
    databases: [billing]
    state: open
    audit_log: ~/dbhygiene/audit.jsonl
"""

RETURN = r"""
check_mode:
  description: Whether the task ran in check mode (a dry run); in every result, failed ones too.
  returned: always
  type: bool
changes:
  description: The engine module's C(changes) (the rights changed, or in check mode that would change).
  returned: success
  type: list
  elements: dict
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
not_ended:
  description:
    - The module's C(not_ended) list (sessions on the databases that were not ended), each with C(reason).
    - With O(audit_log), also each session the run journaled as being ended and never had to signal (it had left
      before), reason C(gone).
  returned: success
  type: list
  elements: dict
unknown:
  description:
    - With O(audit_log), the sessions the run journaled as being ended (an C(ending) line in the trail) whose fate it
      did not learn (the connection lost, the server frozen, the deadline). The host fails and its message counts
      them. They wait in C(<audit_log>.pending/<host>.json) and the next drain, open or sweep on the host settles each.
  returned: when there are any
  type: list
  elements: dict
dbhygiene:
  description:
    - What the fleet report needs of this host (engine, state, databases, the changes, the sessions ended and not ended in
      brief, what is still closed, audit lines written).
    - When the host failed, C(failure) is the reason code (C(unreachable), C(login), C(privilege), C(timeout), C(error)).
  returned: always
  type: dict
"""
