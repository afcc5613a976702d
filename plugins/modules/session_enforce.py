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
    M(dbhygiene.sessions.mysql_sessions), chosen by O(engine), inside the controller's worker for the host (O(run_on=controller),
    the default) or on the task's connection (O(run_on=host)), and appends one JSON line per ended session to O(audit_log) on the control node.
  - In check mode the module ends nothing and the lines say C(check_mode=true) with outcome C(would_terminate) or C(would_cancel).
  - Targeted sessions that were not ended (C(state_changed), C(gone), C(failed), C(still_present), C(nothing_to_cancel)) get a
    line with outcome C(not_ended) and the reason; protected sessions get none.
  - When the host fails after sessions were ended (a later step failed), the sessions ended still get their lines, the
    result still lists them and the host fails with both facts in its message.
  - The trail is opened by its path for every append, so a rotation that renames it (C(logrotate) without C(copytruncate))
    loses no line.
  - The file is created with mode 0600 and appended to under an exclusive lock, one write per host, so hosts finishing at once
    never interleave. A line never holds a secret; credential literals in captured statements are masked.
  - The trail is written ahead. Before each statement that signals sessions, one line per victim with outcome C(ending) is
    written and flushed to disk (O(run_on=host) journals the victims of a plan made on the host first, then the real run
    may end those alone). When it cannot be written (a full or read-only file system, a directory that cannot be created)
    nothing of that statement is signalled and the host fails naming the path and the error.
  - A statement whose fate could not be learned (the connection lost, the server frozen or killed, the deadline) leaves
    its victims with outcome C(unknown), in the result (RV(unknown)), the trail and the report, and the host fails saying
    how many. They are kept in C(<audit_log>.pending/<host>.json) until the next run on the host settles each with a line
    of its own naming the run that signalled it (C(settles)), C(terminated) when gone, C(not_ended) with reason
    C(still_present) when the same session is still there.
  - Every line is one write; a write that fails or falls short is cut back at once, and a partial last line left by
    anything else is cut before the next append.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - dbhygiene.sessions._role_connection
options:
  policy:
    description:
      - The session policy, see M(dbhygiene.sessions.postgresql_sessions).
      - A mapping, or a string holding the JSON or YAML of the mapping (an AWX survey answer). Validated here, before any
        connection.
    type: raw
    required: true
  wait_timeout:
    description: Seconds to wait for ended sessions to disappear (module default when unset).
    type: float
  host_timeout:
    description: The whole host's deadline in seconds (module default when unset).
    type: raw
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
check_mode:
  description: Whether the task ran in check mode (a dry run); in every result, failed ones too.
  returned: always
  type: bool
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
  description: The module's C(not_ended) list (sessions a rule matched that were not ended), each with C(reason) and C(detail).
  returned: success
  type: list
  elements: dict
unknown:
  description: Sessions signalled (or maybe) whose fate could not be learned, each with C(detail); settled by the next run.
  returned: when some
  type: list
  elements: dict
dbhygiene:
  description:
    - What the fleet report needs of this host (engine, policy, seen, ended and not ended sessions in brief, audit lines
      written).
    - When the host failed, C(failure) is the reason code (C(unreachable), C(login), C(privilege), C(limit), C(policy),
      C(busy), C(timeout), C(unknown_outcome), C(error)).
  returned: always
  type: dict
"""
