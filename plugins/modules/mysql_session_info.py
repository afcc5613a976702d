#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: mysql_session_info
short_description: List the client sessions (threads) of a MySQL or MariaDB server
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - Lists every client thread of a MySQL or MariaDB server as normalized session records, the same shape for every
    engine of this collection, with a summary, the lock chains (RV(locks)) and facts about the server. One statement
    reads C(PROCESSLIST), the open transactions (C(performance_schema.events_transactions_current), and C(INNODB_TRX)
    for InnoDB's view of them) and the lock waits; a second the connection attributes
    (C(program_name)) of threads not seen before.
  - 'Lock waits: InnoDB lock waits (MariaDB C(INNODB_LOCK_WAITS); MySQL 8 C(performance_schema.data_lock_waits)) and
    metadata-lock waits (C(performance_schema.metadata_locks): an C(ALTER TABLE) behind a transaction that read the
    table, a query queued behind that C(ALTER TABLE), C(GET_LOCK), C(FLUSH TABLES WITH READ LOCK)). Metadata-lock
    waits are seen only where C(performance_schema) is on with the instrument C(wait/lock/metadata/sql/mdl)
    (off by default on MariaDB: C(performance_schema_instrument=wait/lock/metadata/sql/mdl=ON));
    RV(server.metadata_locks_visible) says whether they are.'
  - 'States: C(Query)/C(Execute) are V(active); C(Sleep) is V(idle), or V(idle_in_transaction) when the thread is in an
    open transaction (a bare C(BEGIN), C(XA START) and C(autocommit=0) work included), as performance_schema''s
    transaction events say at that moment; where they are off (MariaDB''s default) or the login may not read them, no
    C(Sleep) thread is proven outside a transaction and every one is V(idle_in_transaction), with RV(sessions[].state_detail)
    saying why; any other command is V(other).'
  - Never changes anything. Our own connection, system threads (C(system user), C(event_scheduler)), replication
    threads (C(Binlog Dump), replica threads) and logins still authenticating are not listed.
  - The login needs C(PROCESS); without it the module fails and names the grant, instead of returning only its own
    threads. Without the read grants listed in O(login_user), C(superuser) or C(application) are null (unknown).
extends_documentation_fragment:
  - dbhygiene.sessions._mysql_connection
attributes:
  check_mode:
    support: full
    description: The module never changes anything; check mode returns the same as a normal run.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
options:
  policy:
    description:
      - A session policy, the same structure (or the same JSON / YAML string) as
        O(dbhygiene.sessions.mysql_sessions#module:policy).
      - When given, the module also returns RV(plan), the policy's plan of this same listing (our own session left
        out), exactly as M(dbhygiene.sessions.mysql_sessions) would plan it at that moment. Nothing is ended.
      - Validated before any connection is opened; an error names the field and the value.
    type: raw
seealso:
  - module: dbhygiene.sessions.mysql_sessions
"""

EXAMPLES = r"""
- name: List the sessions of a server (connection options from module_defaults, group/dbhygiene.sessions.mysql)
  dbhygiene.sessions.mysql_session_info:
  register: mysql_threads

- name: Show how many sessions there are per state, and the oldest open transaction
  ansible.builtin.debug:
    msg:
      - "{{ mysql_threads.summary.by_state }}"
      - "{{ mysql_threads.summary.oldest_transaction }}"

- name: Threads that have sat idle in a transaction for more than five minutes
  ansible.builtin.debug:
    msg: "{{ mysql_threads.sessions | selectattr('state', 'eq', 'idle_in_transaction')
             | selectattr('idle_seconds', 'gt', 300) | map(attribute='id') | list }}"

- name: The lock chains, root blockers first, and who has waited on a lock for more than 30 seconds
  ansible.builtin.debug:
    msg:
      - "{{ mysql_threads.locks.chains | map(attribute='root') | list }}"
      - "{{ mysql_threads.sessions | selectattr('blocked_by') | selectattr('lock_wait_seconds', 'gt', 30)
            | map(attribute='id') | list }}"

- name: The same over TLS, the server certificate checked against our CA, connection options in the task
  dbhygiene.sessions.mysql_session_info:
    login_host: "{{ mysql_host }}"
    login_user: hygiene
    login_password: "{{ mysql_hygiene_password }}"
    ca_cert: "{{ mysql_ca_cert }}"
    check_hostname: true
"""

RETURN = r"""
sessions:
  description:
    - Every client thread but our own, ordered by thread id. The normalized record of the collection, plus MySQL extras.
  returned: success
  type: list
  elements: dict
  contains:
    id: {description: Thread id (C(PROCESSLIST.ID))., type: int, returned: always, sample: 4711}
    key:
      description: Identity C(id:user@host:port), safe against a thread id handed out again after a restart.
      type: str
      returned: always
      sample: "4711:app@10.1.2.3:51234"
    user: {description: Account user name., type: str, returned: always, sample: app}
    database: {description: "Default database (C(DB)), or null.", type: str, returned: always, sample: appdb}
    application:
      description: The C(program_name) connection attribute; null when the client sent none or the server has
        C(performance_schema) off.
      type: str
      returned: always
    client_addr: {description: Client IP address; null for a unix-socket connection., type: str, returned: always}
    state: {description: Normalized state., type: str, returned: always, sample: idle_in_transaction}
    connected_at: {description: Always null (the server does not record it)., type: str, returned: always}
    state_since: {description: "Start of the current command or idle period (UTC, ISO 8601).", type: str, returned: always}
    connected_seconds: {description: Always null (the server does not record it)., type: float, returned: always}
    idle_seconds:
      description: Seconds since the last state change (C(TIME_MS) on MariaDB, C(TIME) on MySQL), whatever the state.
      type: float
      returned: always
    query_seconds: {description: Age of the running statement; null unless V(active)., type: float, returned: always}
    transaction_seconds:
      description:
        - Age of the open transaction, from its C(BEGIN) (performance_schema's transaction event, where its instrument is
          timed); else of the InnoDB transaction (C(INNODB_TRX.trx_started), a lower bound, whole seconds); null without
          one.
      type: float
      returned: always
    query: {description: "Current statement (C(INFO)), truncated to 1024 characters.", type: str, returned: always}
    superuser:
      description: The account holds C(SUPER) (MySQL also C(SYSTEM_USER)); null when the login cannot read it.
      type: bool
      returned: always
    backend_type: {description: Always null., type: str, returned: always}
    command: {description: "C(PROCESSLIST.COMMAND) (C(Sleep), C(Query), ...).", type: str, returned: always}
    host: {description: "C(PROCESSLIST.HOST) (client host:port, or C(localhost)).", type: str, returned: always}
    thread_state: {description: C(PROCESSLIST.STATE)., type: str, returned: always}
    query_id: {description: MariaDB C(QUERY_ID) of the current or last statement; null on MySQL., type: int, returned: always}
    transaction_started: {description: "C(INNODB_TRX.trx_started) of its InnoDB transaction (UTC, ISO 8601) or null.", type: str, returned: always}
    state_detail:
      description:
        - Why a C(Sleep) thread is V(idle_in_transaction) without proof (performance_schema's transaction events off, not
          readable by the login, or the thread not instrumented); null when its state is exact.
      type: str
      returned: always
    trx_thread_id:
      description: The thread's C(performance_schema) C(THREAD_ID) (where its transaction events are read); null otherwise.
      type: int
      returned: always
    blocked_by:
      description:
        - Thread ids of the sessions this one waits on for a lock, sorted; empty when it does not wait.
        - 'InnoDB lock: every transaction ahead of it on that lock, as InnoDB reports them (the holder, and the waiters
          queued before it). Metadata lock or C(GET_LOCK): the threads whose granted locks conflict with its request,
          and those whose queued requests go first (a query behind a waiting C(ALTER TABLE) waits on the C(ALTER TABLE)).'
        - An id not in RV(sessions) is kept (a transaction without a connection, such as a prepared XA one, shows as 0).
        - A waiter whose holder the login cannot tell (MySQL without C(performance_schema)) waits on nobody here.
      type: list
      elements: int
      returned: always
      sample: [4702]
    lock_wait_seconds:
      description:
        - How long it has waited for its lock; null when it does not wait.
        - 'InnoDB lock: from C(INNODB_TRX.trx_wait_started), which has whole seconds: the lower bound, so up to a second
          short (as RV(sessions[].transaction_seconds)), never more than its statement''s age. Metadata lock: no server
          table has when the wait began, so the age of the waiting statement (a DDL asks for its lock first thing).'
      type: float
      returned: always
      sample: 42.118
    lock_kind:
      description: What it waits for, V(row) (an InnoDB lock), V(metadata) (a metadata lock) or V(user_lock) (C(GET_LOCK)); null when it does not wait.
      type: str
      returned: always
      sample: row
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
      cycle (a deadlock the server has not resolved yet) are never roots; they are listed in RV(locks.cycles).
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
        root: {description: Thread id of the root blocker., type: int, returned: always, sample: 4702}
        visible:
          description: The root is in RV(sessions); false for a holder our login cannot see or one without a connection.
          type: bool
          returned: always
        user: {description: Its user; null when not visible., type: str, returned: always}
        database: {description: Its database; null when not visible., type: str, returned: always}
        application: {description: Its application name; null when not visible., type: str, returned: always}
        state: {description: Its normalized state; null when not visible., type: str, returned: always, sample: idle_in_transaction}
        blocking: {description: Sessions waiting behind it., type: int, returned: always, sample: 2}
        blocking_seconds: {description: The longest wait among them., type: float, returned: always, sample: 42.118}
        waiters: {description: "Their thread ids, sorted.", type: list, elements: int, returned: always, sample: [4711, 4712]}
    cycles:
      description: Wait cycles, each the sorted thread ids of its sessions.
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
    engine: {description: V(mysql)., type: str, returned: always}
    flavour: {description: V(mariadb) or V(mysql)., type: str, returned: always}
    version: {description: Server version., type: str, returned: always, sample: "10.11.6"}
    version_full: {description: C(VERSION)., type: str, returned: always}
    hostname: {description: C(@@hostname)., type: str, returned: always}
    max_connections: {description: C(max_connections)., type: int, returned: always}
    login_user: {description: The account in use (C(CURRENT_USER))., type: str, returned: always}
    own_id: {description: Thread id of our own connection (never listed)., type: int, returned: always}
    performance_schema: {description: C(performance_schema) is on., type: bool, returned: always}
    processlist_table: {description: The table threads are read from., type: str, returned: always}
    can_see_all_sessions: {description: The login holds C(PROCESS)., type: bool, returned: always}
    can_end_sessions: {description: The login may end other users' threads., type: bool, returned: always}
    applications_readable: {description: The login can read C(program_name) of other threads., type: bool, returned: always}
    superusers_readable: {description: The login can read which accounts are superusers., type: bool, returned: always}
    row_lock_waits_visible:
      description:
        - The records name who waits on whom for InnoDB locks (MariaDB C(INNODB_LOCK_WAITS), under C(PROCESS); MySQL 8
          C(performance_schema.data_lock_waits), with C(performance_schema) on and read grants).
        - When false, InnoDB lock waiters still show (RV(sessions[].lock_wait_seconds)), waiting on nobody.
      type: bool
      returned: always
    transaction_state_exact:
      description:
        - Whether C(Sleep) threads are classified from performance_schema's transaction events (C(performance_schema) on,
          the instrument C(transaction) and the consumers C(global_instrumentation), C(thread_instrumentation) and
          C(events_transactions_current) on, and the login may read them).
        - When false, every C(Sleep) thread is V(idle_in_transaction) and RV(server.transaction_state_detail) says why.
      type: bool
      returned: always
    transaction_state_detail:
      description: Why the transaction state is not exact; null when it is.
      type: str
      returned: always
    read_only: {description: C(@@read_only) is on., type: bool, returned: always}
    role:
      description:
        - The server's part in replication - V(replica) when C(read_only) is on and it replicates from a source, else
          V(primary) (a writable server that replicates, one of a multi-primary ring, is a primary).
        - 'The source is read with C(SHOW ALL SLAVES STATUS) (MySQL: C(SHOW REPLICA STATUS)) where the login may (MariaDB
          C(SLAVE MONITOR) or C(SUPER), MySQL C(REPLICATION CLIENT)); else a replica is known by its running replication
          threads (C(PROCESS); MySQL: C(SELECT) on C(performance_schema.threads)), so that a stopped replica shows as a
          read-only V(primary) to such a login.'
      type: str
      returned: always
      sample: primary
    metadata_locks_visible:
      description:
        - Metadata-lock and C(GET_LOCK) waits are read (C(performance_schema) on, its instrument
          C(wait/lock/metadata/sql/mdl) on, and the login may read C(performance_schema.metadata_locks) and
          C(performance_schema.threads)).
        - When false, a session waiting on a metadata lock (an C(ALTER TABLE) behind an open transaction) shows as
          active, not waiting, and its blocker blocks nobody.
      type: bool
      returned: always
failed_statement:
  description:
    - When the run failed because a statement failed, the template of that one statement (placeholders, no values),
      cut to 2,000 characters.
  returned: when a statement failed
  type: str
  sample: SELECT ID, USER, HOST, DB, COMMAND, TIME FROM information_schema.PROCESSLIST WHERE ID = %s
"""

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.dbhygiene.sessions.plugins.module_utils._argspec import info_argument_spec, new_module
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.driver import (
    MySQLDriver,
    connection_argument_spec,
    open_driver,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.errors import HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import run_info_module


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(info_argument_spec())
    module = new_module(argument_spec, supports_check_mode=True)
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=PYMYSQL_IMPORT_ERROR)
    run_info_module(module, open_driver, MySQLDriver)


if __name__ == "__main__":
    main()
