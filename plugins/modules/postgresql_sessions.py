#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: postgresql_sessions
short_description: End the PostgreSQL sessions a policy names, safely
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - Applies a O(policy) to the client sessions of a PostgreSQL server (all databases) and terminates or cancels exactly
    the sessions it names, with C(pg_terminate_backend) / C(pg_cancel_backend).
  - 'Safe by construction: our own connection and non-client backends are never touched, superusers are protected unless
    O(policy.protect.superusers=false), O(policy.limits) fail closed (nothing is ended), and each session is ended only
    if it is still the same session (pid and C(backend_start)) in the same state (C(state) and C(state_change)) as when
    planned: one statement per batch re-checks all four in a fresh C(pg_stat_activity) snapshot.'
  - V(cancel) stops the running statement and keeps the connection; it does nothing to an idle or idle-in-transaction
    session (there is no statement to stop), so such victims are reported in RV(not_ended) with reason
    C(nothing_to_cancel). V(cancel_then_terminate) terminates idle victims straight away for the same reason.
  - 'Lock-aware: O(policy.rules[].blocking_longer_than) and O(policy.rules[].blocking_at_least) end the B(root blocker)
    of a lock queue (a session that waits on nothing and holds a lock others wait for, directly or down a chain), never
    the sessions waiting behind it; O(policy.rules[].waiting_longer_than) matches the waiters (with V(cancel), it stops
    a statement stuck in a lock queue and keeps its connection). Who waits on whom is read with the sessions, in the
    same statement (C(pg_blocking_pids), C(pg_locks)); no further privilege is needed.'
  - After ending, the module waits (at most O(wait_timeout) seconds) until the sessions are gone, so that a second run
    right after finds nothing to do.
  - 'The login needs: superuser, or C(pg_read_all_stats) (to see other users'' sessions) and C(pg_signal_backend) (to
    signal them). Without them the module fails before planning and names the grant. Only a superuser can end a
    superuser''s session.'
extends_documentation_fragment:
  - dbhygiene.sessions._policy
  - dbhygiene.sessions._postgresql_connection
attributes:
  check_mode:
    support: full
    description: Runs no statement that changes anything; RV(terminated) and RV(cancelled) list the sessions a real run would end.
  diff_mode:
    support: full
    description: Before lists the victims, after what a real run leaves of them, one line per session.
options: {}
seealso:
  - module: dbhygiene.sessions.postgresql_session_info
"""

EXAMPLES = r"""
- name: Apply the hygiene policy, connection options set once for every PostgreSQL module
  module_defaults:
    group/dbhygiene.sessions.postgresql:
      login_host: "{{ pg_host }}"
      login_user: hygiene
      login_password: "{{ pg_hygiene_password }}"
      ssl_mode: verify-full
      ca_cert: "{{ pg_ca_cert }}"
  block:
    - name: Dry run first (check mode) to see who would be ended
      dbhygiene.sessions.postgresql_sessions:
        policy: &nightly_sweep
          name: nightly-sweep
          rules:
            - name: ghost-idle
              states: [idle]
              idle_longer_than: 30m
            - name: stuck-transaction
              states: [idle_in_transaction, idle_in_transaction_aborted]
              idle_longer_than: 5m
            - name: runaway-query
              states: [active]
              running_longer_than: 2h
              action: cancel_then_terminate
          grace: 10s
          protect:
            users: [replicator, "backup_*"]
            applications: ["pg_dump*", "pg_basebackup"]
          limits:
            max_terminations: 100
            max_fraction: 0.5
      check_mode: true
      register: would_end

    - name: Show who would be ended
      ansible.builtin.debug:
        msg: "{{ would_end.terminated | map(attribute='id') | list }} by rules {{ would_end.summary.by_rule }}"

    - name: Enforce the same policy
      dbhygiene.sessions.postgresql_sessions:
        policy: *nightly_sweep
        wait_timeout: 30

- name: End logins from outside the allowed networks (local unix-socket logins are not matched)
  dbhygiene.sessions.postgresql_sessions:
    login_host: "{{ pg_host }}"
    login_user: hygiene
    login_password: "{{ pg_hygiene_password }}"
    ssl_mode: verify-full
    ca_cert: "{{ pg_ca_cert }}"
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
  dbhygiene.sessions.postgresql_sessions:
    login_host: "{{ pg_host }}"
    login_user: hygiene
    login_password: "{{ pg_hygiene_password }}"
    ssl_mode: verify-full
    ca_cert: "{{ pg_ca_cert }}"
    policy:
      name: slow-reports
      action: cancel
      rules:
        - name: slow-report
          applications: ["report-*"]
          running_longer_than: 15m
          query_matches: "(?i)^\\s*select"

- name: End a transaction left open that has blocked others for 30s, cancel a DDL that has waited 10s
  dbhygiene.sessions.postgresql_sessions:
    login_host: "{{ pg_host }}"
    login_user: hygiene
    login_password: "{{ pg_hygiene_password }}"
    ssl_mode: verify-full
    ca_cert: "{{ pg_ca_cert }}"
    policy:
      name: lock-queues
      rules:
        - name: root-blocker
          states: [idle_in_transaction, idle_in_transaction_aborted]
          blocking_longer_than: 30s
        - name: stuck-ddl
          waiting_longer_than: 10s
          query_matches: "(?i)^\\s*(alter|create index|drop|truncate|vacuum full|cluster|reindex)\\s"
          action: cancel
      limits:
        max_terminations: 5
"""

RETURN = r"""
terminated:
  description:
    - Sessions terminated (in check mode, that would be), each the normalized session record of
      M(dbhygiene.sessions.postgresql_session_info) (RV(dbhygiene.sessions.postgresql_session_info#module:sessions))
      plus the rule that matched it and the action.
  returned: always
  type: list
  elements: dict
  contains:
    id: {description: Backend pid., type: int, returned: always, sample: 4711}
    key: {description: Reuse-safe identity C(pid@backend_start)., type: str, returned: always}
    user: {description: Login role., type: str, returned: always}
    database: {description: Database., type: str, returned: always}
    application: {description: C(application_name)., type: str, returned: always}
    state: {description: Normalized state when planned., type: str, returned: always}
    idle_seconds: {description: "Seconds since the last state change, when planned.", type: float, returned: always}
    blocked_by: {description: "Pids it waited on for a lock, when planned; empty when it did not wait.", type: list, elements: int, returned: always}
    lock_wait_seconds: {description: "How long it had waited for its lock, when planned; null when it did not wait.", type: float, returned: always}
    blocking: {description: "How many sessions waited behind it (transitively), when planned.", type: int, returned: always, sample: 2}
    blocking_seconds: {description: "The longest wait among them, when planned; null when none.", type: float, returned: always}
    rule: {description: The first rule (policy order) that matched., type: str, returned: always, sample: ghost-idle}
    action: {description: The rule's action., type: str, returned: always, sample: terminate}
    group:
      description: "A victim of a budget (O(policy.rules[].keep)): its group, the O(policy.rules[].per) keys and its values (empty: the whole host)."
      type: dict
      returned: when a budget chose it
      sample: {user: app, application: pool}
    group_size: {description: "How many sessions the group has (protected ones not counted).", type: int, returned: when a budget chose it, sample: 25}
    kept: {description: "How many of the group the budget spares.", type: int, returned: when a budget chose it, sample: 20}
    rank:
      description: "Its rank in the group by O(policy.rules[].keep_by), 1 the first to keep; above RV(terminated[].kept)."
      type: int
      returned: when a budget chose it
      sample: 23
cancelled:
  description: Sessions whose statement was (in check mode, would be) cancelled; entries as in RV(terminated).
  returned: always
  type: list
  elements: dict
not_ended:
  description:
    - Sessions a rule matched but that were not ended, entries as in RV(terminated) plus C(reason) and C(detail).
    - 'Reasons: C(protected) (O(policy.protect), superuser), C(state_changed) (it moved on since planning), C(gone) (it
      left, or its pid now belongs to a newer session), C(nothing_to_cancel), C(still_present) (signalled, still there
      after O(wait_timeout)), C(failed) (the signal was refused; the detail says why and what to grant).'
  returned: always
  type: list
  elements: dict
groups:
  description:
    - The groups a rule with a budget (O(policy.rules[].keep)) found over it, each with C(rule), C(group) (as in
      RV(terminated[].group)), C(size), C(kept) and C(ended) (the sessions the budget made victims; in check mode, would
      end). A victim that moved on is still counted there, and listed in RV(not_ended).
  returned: when a rule has a budget
  type: list
  elements: dict
  sample: [{rule: pool-budget, group: {user: app, application: pool}, size: 25, kept: 20, ended: 5}]
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
    - Sessions whose signal went out, or may have, but whose fate could not be learned (the connection was lost, the
      server froze or died, the deadline ran out mid-statement); entries as in RV(terminated) plus C(detail). The host
      then fails, naming how many. The next contact with the server settles them (O(settle_keys)).
  returned: when some
  type: list
  elements: dict
settled:
  description:
    - For each key of O(settle_keys), what this run's listing shows, C(outcome) C(terminated) (gone) or
      C(still_present) (with C(session), the session listed under that key).
  returned: when O(settle_keys) is given
  type: list
  elements: dict
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
  sample: SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE pid = %(pid)s
"""

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.dbhygiene.sessions.plugins.module_utils._argspec import new_module, sessions_argument_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.connect import connection_argument_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.driver import (
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    PostgreSQLDriver,
    open_driver,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import run_sessions_module


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(sessions_argument_spec())
    module = new_module(argument_spec, supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    run_sessions_module(module, PostgreSQLDriver, open_driver)


if __name__ == "__main__":
    main()
