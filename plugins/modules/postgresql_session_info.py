#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: postgresql_session_info
short_description: List the client sessions of a PostgreSQL server
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - Lists every client session of a PostgreSQL server (all databases) from C(pg_stat_activity) as normalized session
    records, the same shape for every engine of this collection, with a summary and facts about the server.
  - Never changes anything. Our own connection, background workers, autovacuum, walsenders and parallel workers are
    not listed.
  - The login must be able to see other users' sessions (superuser, or C(pg_read_all_stats)); otherwise the module fails
    and names the grant, instead of returning sessions whose state and query are hidden.
extends_documentation_fragment:
  - dbhygiene.sessions._postgresql_connection
attributes:
  check_mode:
    support: full
    description: The module never changes anything; check mode returns the same as a normal run.
  diff_mode:
    support: none
    description: Nothing changes, so there is no difference to show.
options:
  policy:
    description:
      - A session policy, the same structure (or the same JSON / YAML string) as
        O(dbhygiene.sessions.postgresql_sessions#module:policy).
      - When given, the module also returns RV(plan), the policy's plan of this same listing (our own session left
        out), exactly as M(dbhygiene.sessions.postgresql_sessions) would plan it at that moment. Nothing is ended.
      - Validated before any connection is opened; an error names the field and the value.
    type: raw
seealso:
  - module: dbhygiene.sessions.postgresql_sessions
"""

EXAMPLES = r"""
- name: List the sessions of a server, connection options from the task
  dbhygiene.sessions.postgresql_session_info:
    login_host: "{{ pg_host }}"
    login_user: hygiene
    login_password: "{{ pg_hygiene_password }}"
    ssl_mode: verify-full
    ca_cert: "{{ pg_ca_cert }}"
  register: pg_sessions

- name: Show how many sessions there are per state, and the oldest open transaction
  ansible.builtin.debug:
    msg:
      - "{{ pg_sessions.summary.by_state }}"
      - "{{ pg_sessions.summary.oldest_transaction }}"

- name: Sessions that have sat idle in a transaction for more than five minutes
  ansible.builtin.debug:
    msg: "{{ pg_sessions.sessions | selectattr('state', 'eq', 'idle_in_transaction')
             | selectattr('idle_seconds', 'gt', 300) | map(attribute='id') | list }}"

- name: The lock chains, root blockers first, and who has waited on a lock for more than 30 seconds
  ansible.builtin.debug:
    msg:
      - "{{ pg_sessions.locks.chains | map(attribute='root') | list }}"
      - "{{ pg_sessions.sessions | selectattr('blocked_by') | selectattr('lock_wait_seconds', 'gt', 30)
            | map(attribute='id') | list }}"
"""

RETURN = r"""
sessions:
  description:
    - Every client session but our own, ordered by pid. The normalized record of the collection, plus PostgreSQL extras.
  returned: success
  type: list
  elements: dict
  contains:
    id: {description: Backend pid., type: int, returned: always, sample: 4711}
    key:
      description: Reuse-safe identity, C(pid@backend_start) (UTC, ISO 8601).
      type: str
      returned: always
      sample: "4711@2024-05-01T08:00:00.123456+00:00"
    user: {description: Login role (C(usename)).,  type: str, returned: always, sample: app}
    database: {description: Database (C(datname))., type: str, returned: always, sample: appdb}
    application: {description: C(application_name)., type: str, returned: always, sample: web}
    client_addr: {description: Client IP address; null for a unix-socket connection., type: str, returned: always}
    state:
      description: Normalized state.
      type: str
      returned: always
      sample: idle_in_transaction
    connected_at: {description: "C(backend_start) (UTC, ISO 8601).", type: str, returned: always}
    state_since: {description: "C(state_change) (UTC, ISO 8601).", type: str, returned: always}
    connected_seconds: {description: Age of the connection., type: float, returned: always}
    idle_seconds: {description: "Seconds since the last state change, whatever the state.", type: float, returned: always}
    query_seconds: {description: Age of the running statement; null unless V(active)., type: float, returned: always}
    transaction_seconds: {description: Age of the open transaction; null without one., type: float, returned: always}
    query: {description: "Current or last statement, truncated to 1024 characters.", type: str, returned: always}
    superuser: {description: The session's role is a superuser., type: bool, returned: always}
    backend_type: {description: Always C(client backend)., type: str, returned: always}
    raw_state: {description: C(pg_stat_activity.state) as the server says it., type: str, returned: always}
    client_port: {description: Client TCP port; -1 or null for a unix socket., type: int, returned: always}
    query_start: {description: "Start of the current or last statement (UTC, ISO 8601).", type: str, returned: always}
    transaction_start: {description: "Start of the open transaction (UTC, ISO 8601) or null.", type: str, returned: always}
    wait_event_type: {description: C(wait_event_type)., type: str, returned: always}
    wait_event: {description: C(wait_event)., type: str, returned: always}
    blocked_by:
      description:
        - Pids of the sessions this one waits on for a lock (C(pg_blocking_pids)), sorted; empty when it does not wait.
        - A pid not in RV(sessions) is kept (a session our login cannot see, or a non-client backend). A parallel
          worker that holds the lock is named by its leader; a waiting parallel worker counts for its leader (13+).
      type: list
      elements: int
      returned: always
      sample: [4702]
    lock_wait_seconds:
      description:
        - How long it has waited for its lock; null when it does not wait.
        - From C(pg_locks.waitstart) on PostgreSQL 14 and later; on 10 to 13 from the waiter's C(state_change) (when its
          current statement began), so it may be longer than the wait.
      type: float
      returned: always
      sample: 42.118
    lock_kind:
      description: What it waits for, C(pg_locks.locktype) (V(relation), V(transactionid), V(tuple), V(advisory), ...); null when it does not wait.
      type: str
      returned: always
      sample: transactionid
    blocking:
      description: How many sessions wait behind this one, directly or down a chain (A <- B <- C counts 2 for A); 0 when none.
      type: int
      returned: always
      sample: 2
    blocking_seconds:
      description: The longest RV(sessions[].lock_wait_seconds) among the sessions waiting behind it; null when none.
      type: float
      returned: always
      sample: 42.118
locks:
  description:
    - The lock chains of the server, from the same listing as RV(sessions).
    - A B(root blocker) waits on nothing and holds a lock others wait for, directly or down a chain. Sessions in a wait
      cycle (a deadlock PostgreSQL has not resolved yet) are never roots; they are listed in RV(locks.cycles).
  returned: success
  type: dict
  contains:
    waiting: {description: Number of sessions waiting for a lock., type: int, returned: always, sample: 3}
    longest_wait_seconds:
      description: The longest lock wait of any session; null when none waits.
      type: float
      returned: always
      sample: 42.118
    chains:
      description: One entry per root blocker, the most waiters first.
      type: list
      elements: dict
      returned: always
      contains:
        root: {description: Pid of the root blocker., type: int, returned: always, sample: 4702}
        visible:
          description: The root is in RV(sessions); false for a holder our login cannot see or a non-client backend.
          type: bool
          returned: always
        user: {description: Its user; null when not visible., type: str, returned: always}
        database: {description: Its database; null when not visible., type: str, returned: always}
        application: {description: Its application name; null when not visible., type: str, returned: always}
        state: {description: Its normalized state; null when not visible., type: str, returned: always, sample: idle_in_transaction}
        blocking: {description: Sessions waiting behind it., type: int, returned: always, sample: 2}
        blocking_seconds: {description: The longest wait among them., type: float, returned: always, sample: 42.118}
        waiters: {description: "Their pids, sorted.", type: list, elements: int, returned: always, sample: [4711, 4712]}
    cycles:
      description: Wait cycles, each the sorted pids of its sessions.
      type: list
      elements: list
      returned: always
      sample: []
summary:
  description: Counts of the sessions.
  returned: success
  type: dict
  contains:
    total: {description: Number of client sessions (ours excluded)., type: int, returned: always, sample: 42}
    by_state: {description: Sessions per normalized state., type: dict, returned: always, sample: {idle: 40, active: 2}}
    by_user: {description: Sessions per user., type: dict, returned: always}
    by_database: {description: Sessions per database., type: dict, returned: always}
    by_application: {description: Sessions per application name., type: dict, returned: always}
    oldest_idle:
      description: The idle session idle the longest (id, user, database, application, state, seconds), or null.
      type: dict
      returned: always
    oldest_transaction:
      description: The session with the oldest open transaction (same fields), or null.
      type: dict
      returned: always
    connection_use: {description: Share of C(max_connections) in use (ours included)., type: float, returned: always}
plan:
  description:
    - The plan of O(policy) on this listing (keys C(victims), C(not_ended), C(summary), C(policy), C(seen), C(matched),
      C(limit_error)); entries are session records plus C(rule) and C(action) (and C(reason), C(detail) in C(not_ended)).
    - With a budget (O(dbhygiene.sessions.postgresql_sessions#module:policy.rules[].keep)), a victim also has
      C(group), C(group_size), C(kept) and C(rank), and the plan has C(groups), the groups over budget (C(rule),
      C(group), C(size), C(kept), C(ended)), as in RV(dbhygiene.sessions.postgresql_sessions#module:groups).
  returned: when O(policy) is given
  type: dict
server:
  description: Facts about the server and our login.
  returned: success
  type: dict
  contains:
    engine: {description: V(postgresql)., type: str, returned: always}
    version: {description: C(server_version)., type: str, returned: always, sample: "15.6"}
    version_num: {description: C(server_version_num)., type: int, returned: always, sample: 150006}
    max_connections: {description: C(max_connections)., type: int, returned: always}
    login_user: {description: The login in use., type: str, returned: always}
    login_superuser: {description: The login is a superuser., type: bool, returned: always}
    can_read_all_stats: {description: The login has the privileges of C(pg_read_all_stats)., type: bool, returned: always}
    can_signal: {description: The login has the privileges of C(pg_signal_backend)., type: bool, returned: always}
    in_recovery: {description: The server is a standby., type: bool, returned: always}
    role:
      description:
        - The server's part in replication - V(primary), or V(standby) (a hot standby, in recovery; its sessions are its
          own, and M(dbhygiene.sessions.postgresql_drain) changes no right there).
      type: str
      returned: always
      sample: primary
    own_pid: {description: Pid of our own connection (never listed)., type: int, returned: always}
failed_statement:
  description:
    - When the run failed because a statement failed, the template of that one statement (placeholders, no values),
      cut to 2,000 characters.
  returned: when a statement failed
  type: str
  sample: SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE pid = %(pid)s
"""

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.dbhygiene.sessions.plugins.module_utils._argspec import info_argument_spec, new_module
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.connect import connection_argument_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.driver import (
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    PostgreSQLDriver,
    open_driver,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import run_info_module


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(info_argument_spec())
    module = new_module(argument_spec, supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    run_info_module(module, open_driver, PostgreSQLDriver)


if __name__ == "__main__":
    main()
