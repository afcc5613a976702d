#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: mysql_sessions
short_description: End the MySQL or MariaDB sessions a policy names, safely
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - Applies a O(policy) to the client threads of a MySQL or MariaDB server and ends exactly the sessions it names,
    with C(KILL CONNECTION) (terminate) or C(KILL QUERY) (cancel). The same policy means the same thing as on
    PostgreSQL (M(dbhygiene.sessions.postgresql_sessions)).
  - 'Safe by construction: our own connection, system, event and replication threads are never touched, sessions of
    accounts holding C(SUPER) (MySQL also C(SYSTEM_USER)) are protected unless O(policy.protect.superusers=false),
    O(policy.limits) fail closed (nothing is ended), and each thread is re-read right before its C(KILL): it is killed
    only if it is still the same thread (id, user, client host:port) in the same state (command, transaction, no new
    statement since planning); a thread planned V(idle) is also read in performance_schema''s transaction events in that
    same step and ended only if it is still outside a transaction. A thread that moved on is reported in RV(not_ended)
    with reason C(state_changed).'
  - V(cancel) stops the running statement and keeps the connection; it does nothing to an idle or idle-in-transaction
    session, so such victims are reported in RV(not_ended) with reason C(nothing_to_cancel). V(cancel_then_terminate)
    terminates idle victims straight away for the same reason, and terminates active ones still running the same
    statement after O(policy.grace) (for example a stored procedure whose handler swallows the interruption).
  - 'Lock-aware: O(policy.rules[].blocking_longer_than) and O(policy.rules[].blocking_at_least) end the B(root blocker)
    of a lock queue (a session that waits on nothing and holds a lock others wait for, directly or down a chain), never
    the sessions waiting behind it; O(policy.rules[].waiting_longer_than) matches the waiters (with V(cancel), it stops
    a statement stuck in a lock queue, for example an C(ALTER TABLE) behind an open transaction, and keeps its
    connection). A waiter matched by O(policy.rules[].waiting_longer_than) is ended only if it still waits when its
    turn comes (MariaDB: live for metadata locks; for InnoDB locks as of the listing, C(INNODB_TRX) being a cache).
    Who waits on whom is read with the threads, in the same statement: InnoDB lock waits and, where
    C(performance_schema) records them, metadata-lock waits (see M(dbhygiene.sessions.mysql_session_info)); such a
    policy needs the read grants listed in O(login_user).'
  - After ending, the module waits (at most O(wait_timeout) seconds) until the sessions are gone, so that a second run
    right after finds nothing to do.
  - The condition C(connected_longer_than) is not available (the server does not record when a thread connected); a
    policy using it fails before connecting.
  - The login needs the rights listed in O(login_user); without them the module fails before planning, also in check
    mode, and names the GRANT.
extends_documentation_fragment:
  - dbhygiene.sessions._policy
  - dbhygiene.sessions._mysql_connection
attributes:
  check_mode:
    support: full
    description: Runs no statement that changes anything; RV(terminated) and RV(cancelled) list the sessions a real run would end.
  diff_mode:
    support: full
    description: Before lists the victims, after what a real run leaves of them, one line per session.
options: {}
seealso:
  - module: dbhygiene.sessions.mysql_session_info
  - module: dbhygiene.sessions.postgresql_sessions
"""

EXAMPLES = r"""
- name: Apply the hygiene policy, connection options set once for every MySQL module
  module_defaults:
    group/dbhygiene.sessions.mysql:
      login_host: "{{ mysql_host }}"
      login_user: hygiene
      login_password: "{{ mysql_hygiene_password }}"
      ca_cert: "{{ mysql_ca_cert }}"
  block:
    - name: Dry run first (check mode) to see who would be ended
      dbhygiene.sessions.mysql_sessions:
        policy: &nightly_sweep
          name: nightly-sweep
          rules:
            - name: ghost-idle
              states: [idle]
              idle_longer_than: 30m
            - name: stuck-transaction
              states: [idle_in_transaction]
              idle_longer_than: 5m
            - name: runaway-query
              states: [active]
              running_longer_than: 2h
              action: cancel_then_terminate
          grace: 10s
          protect:
            users: [replicator, "backup_*"]
            applications: ["mysqldump*", "mariadb-dump*"]
          limits:
            max_terminations: 100
            max_fraction: 0.5
      check_mode: true
      register: would_end

    - name: Show who would be ended
      ansible.builtin.debug:
        msg: "{{ would_end.terminated | map(attribute='id') | list }} by rules {{ would_end.summary.by_rule }}"

    - name: Enforce the same policy
      dbhygiene.sessions.mysql_sessions:
        policy: *nightly_sweep
        wait_timeout: 30

- name: End logins from outside the allowed networks (connection options from module_defaults)
  dbhygiene.sessions.mysql_sessions:
    policy:
      name: foreign-origin
      rules:
        - name: foreign-origin
          client_addresses: ["0.0.0.0/0", "::/0"]
          except:
            client_addresses: ["10.0.0.0/8", "127.0.0.0/8", "::1"]
      limits:
        max_terminations: 20

- name: Cancel reporting queries that run longer than 15 minutes, keep their connections
  dbhygiene.sessions.mysql_sessions:
    policy:
      name: slow-reports
      action: cancel
      rules:
        - name: slow-report
          applications: ["report-*"]
          running_longer_than: 15m
          query_matches: "(?i)^\\s*select"

- name: End a transaction left open that has blocked others for 30s, cancel a DDL that has waited 10s
  dbhygiene.sessions.mysql_sessions:
    policy:
      name: lock-queues
      rules:
        - name: root-blocker
          states: [idle_in_transaction]
          blocking_longer_than: 30s
        - name: stuck-ddl
          waiting_longer_than: 10s
          query_matches: "(?i)^\\s*(alter|create index|drop|truncate|optimize|rename)\\s"
          action: cancel
      limits:
        max_terminations: 5
"""

RETURN = r"""
terminated:
  description:
    - Sessions terminated (in check mode, that would be), each the normalized session record of
      M(dbhygiene.sessions.mysql_session_info) (RV(dbhygiene.sessions.mysql_session_info#module:sessions))
      plus the rule that matched it and the action.
  returned: always
  type: list
  elements: dict
  contains:
    id: {description: Thread id., type: int, returned: always, sample: 4711}
    key: {description: Identity C(id:user@host:port)., type: str, returned: always}
    user: {description: Account user name., type: str, returned: always}
    database: {description: Default database., type: str, returned: always}
    application: {description: The C(program_name) connection attribute., type: str, returned: always}
    state: {description: Normalized state when planned., type: str, returned: always}
    idle_seconds: {description: "Seconds since the last state change, when planned.", type: float, returned: always}
    blocked_by: {description: "Thread ids it waited on for a lock, when planned; empty when it did not wait.", type: list, elements: int, returned: always}
    lock_wait_seconds: {description: "How long it had waited for its lock, when planned; null when it did not wait.", type: float, returned: always}
    lock_kind: {description: "V(row), V(metadata) or V(user_lock), when planned; null when it did not wait.", type: str, returned: always}
    blocking: {description: "How many sessions waited behind it (transitively), when planned.", type: int, returned: always, sample: 2}
    blocking_seconds: {description: "The longest wait among them, when planned; null when none.", type: float, returned: always}
    rule: {description: The first rule (policy order) that matched., type: str, returned: always, sample: ghost-idle}
    action: {description: The rule's action., type: str, returned: always, sample: terminate}
    group: {description: "As RV(dbhygiene.sessions.postgresql_sessions#module:terminated[].group).", type: dict, returned: when a budget chose it}
    group_size: {description: "As RV(dbhygiene.sessions.postgresql_sessions#module:terminated[].group_size).", type: int, returned: when a budget chose it}
    kept: {description: "As RV(dbhygiene.sessions.postgresql_sessions#module:terminated[].kept).", type: int, returned: when a budget chose it}
    rank: {description: "As RV(dbhygiene.sessions.postgresql_sessions#module:terminated[].rank).", type: int, returned: when a budget chose it}
cancelled:
  description: Sessions whose statement was (in check mode, would be) cancelled; entries as in RV(terminated).
  returned: always
  type: list
  elements: dict
not_ended:
  description:
    - Sessions a rule matched but that were not ended, entries as in RV(terminated) plus C(reason) and C(detail).
    - 'Reasons: C(protected) (O(policy.protect), superuser), C(state_changed) (it moved on since planning), C(gone) (it
      left, or its thread id now belongs to another connection), C(nothing_to_cancel), C(still_present) (killed, still
      there after O(wait_timeout)), C(failed) (the KILL was refused; the detail says why and what to grant).'
  returned: always
  type: list
  elements: dict
groups:
  description: The groups over budget, as RV(dbhygiene.sessions.postgresql_sessions#module:groups).
  returned: when a rule has a budget
  type: list
  elements: dict
matched:
  description: Number of sessions any rule matched (victims, protected, and those a budget spared).
  returned: always
  type: int
  sample: 3
summary:
  description: Counts, totals, per rule and per action, and C(limit_error) when a limit stopped the run.
  returned: always
  type: dict
  sample: {policy: nightly-sweep, seen: 40, matched: 3, victims: 2, protected: 1, terminated: 2, cancelled: 0}
policy:
  description: The policy as validated and normalized (durations in seconds).
  returned: always
  type: dict
queries:
  description:
    - The statement templates the module runs, with placeholders; never values or secrets.
    - Only at verbosity 3 (C(-vvv)) and above; below it they would fill every failed task's output.
  returned: at -vvv
  type: list
  elements: str
check_mode:
  description: Whether this was a dry run.
  returned: always
  type: bool
unknown:
  description:
    - Sessions signalled (or maybe) whose fate could not be learned, as
      RV(dbhygiene.sessions.postgresql_sessions#module:unknown); settled by the next contact (O(settle_keys)).
  returned: when some
  type: list
  elements: dict
settled:
  description: What this run's listing shows of each key of O(settle_keys), as
    RV(dbhygiene.sessions.postgresql_sessions#module:settled).
  returned: when O(settle_keys) is given
  type: list
  elements: dict
guard:
  description:
    - How the guarded kill went (MariaDB verified blocks). V(block_verified) victims were verified by one read of the
      thread list per block (V(blocks)) and killed in a tight loop, each only while (time from that read to its KILL)
      / (its idle time at the read) was at most V(window_ratio_bound); V(window_ratio_max) is the largest such ratio
      of the sweep (null when no block killed). V(re_read) victims were re-read on their own right before their KILL.
  returned: when not in check mode and the sweep got that far
  type: dict
  sample: {window_ratio_bound: 0.0001, window_ratio_max: 0.000031, block_verified: 3980, blocks: 12, re_read: 20}
would_end:
  description: When a limit stopped the run, the sessions that would have been ended (nothing was).
  returned: failed
  type: list
  elements: dict
failed_statement:
  description:
    - When the run failed because a statement failed, the template of that one statement (placeholders, no values),
      cut to 2,000 characters.
  returned: when a statement failed
  type: str
  sample: SELECT ID, USER, HOST, DB, COMMAND, TIME FROM information_schema.PROCESSLIST WHERE ID = %s
"""

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.dbhygiene.sessions.plugins.module_utils._argspec import new_module, sessions_argument_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.driver import (
    MySQLDriver,
    connection_argument_spec,
    open_driver,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.errors import HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import run_sessions_module


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(sessions_argument_spec())
    module = new_module(argument_spec, supports_check_mode=True)
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=PYMYSQL_IMPORT_ERROR)
    run_sessions_module(module, MySQLDriver, open_driver)


if __name__ == "__main__":
    main()
