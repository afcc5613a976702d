#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: mysql_drain
short_description: Drain MySQL / MariaDB databases before a change by locking their accounts, unlock them after
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - 'O(state=drained): the accounts that could use O(databases) are locked (C(ALTER USER ... ACCOUNT LOCK)), so they
    cannot log in, the grants of C(PUBLIC) on O(databases) are revoked for the window (MariaDB 10.11 and later), and
    every session of a locked account (on any database or none: qualified names such as C(billing.t) and C(USE billing)
    reach the drained one) and every other session on O(databases) but O(allow_users)'' and superusers'' is ended,
    whatever its state (a drain is not a sweep: no idle proof). A running statement is cancelled first (C(KILL QUERY));
    after O(grace) every such session still there is terminated (C(KILL CONNECTION)); then the sessions are listed and
    terminated again until none is left (a session that runs a statement every few milliseconds, a login that got in
    before its account was locked), at most O(wait_timeout) seconds. A session still there then fails the run, named
    in the message (thread id, user, database). MySQL and MariaDB have no per-database login right, so this is broader
    than the databases: a locked account cannot log in to any database, and the result says which accounts were locked
    (RV(accounts_locked)).'
  - 'Which accounts: every account other than those of O(allow_users) and superusers (C(SUPER); MySQL also
    C(SYSTEM_USER)) that holds a privilege on one of O(databases) at schema level (C(mysql.db), its wildcard patterns
    included, for example C(bill%)), table, column or routine level (C(tables_priv), C(columns_priv), C(procs_priv)),
    through a role it was granted (MariaDB C(roles_mapping)), or globally: a global privilege that reaches the objects of
    every database (C(SELECT), C(INSERT), C(UPDATE), C(DELETE), C(CREATE), C(DROP), C(ALTER), C(INDEX), C(EXECUTE), ...,
    C(ALL)) counts as a privilege on each of O(databases); global administrative privileges alone (C(PROCESS),
    C(RELOAD), C(REPLICATION CLIENT), ...) do not. Also every account with a session whose current database is one of
    O(databases). A thread shows its user name, not the account it logged in as: every account of a user name concerned
    is locked (the reason says it shares the name), and the sessions are ended by user name.'
  - 'PUBLIC: each line of C(SHOW GRANTS FOR PUBLIC) that gives privileges on one of O(databases) (a schema-level pattern
    such as C(bill%) that matches it included: revoking it closes the other databases it matches too) is recorded, then
    revoked (C(REVOKE ... FROM PUBLIC), its grant option too); V(open) grants each back as that line says (C(mysql.db)
    byte for byte; a table, column or routine grant gets the restoring login as grantor and a new timestamp in
    C(mysql.tables_priv) / C(procs_priv)), unless another drained database still needs it revoked. An account without
    privileges of its own then cannot use O(databases) during the window.'
  - 'An account already locked before the drain (by someone else) is not locked again, not recorded as ours and never
    unlocked by V(open); RV(accounts_already_locked) lists it. The account the module logs in with is never locked (V(open)
    needs it).'
  - 'The record: tables C(dbhygiene.drain_databases), C(dbhygiene.drain_accounts) and C(dbhygiene.drain_public)
    (database C(dbhygiene), made on the first real drain) on the server. Account statements commit implicitly, so the
    drain writes the record first, each account and each grant of PUBLIC marked C(pending), then locks the accounts and
    revokes the grants one by one, marking each C(locked) / C(revoked). V(open) unlocks every recorded account that is
    locked (a C(pending) one only when it is locked: the drain died between its record and its lock) and no longer
    needed by another drained database, grants back what PUBLIC lost, then deletes the record; a drain that died
    half-way is opened exactly. V(drained) on a database already drained keeps the record and adds only the accounts it
    locks on top.'
  - 'A drain (or V(open)) that fails half-way (the server stops answering, O(query_timeout) fires) fails with every
    change made so far in RV(changes), and the one in flight with C(status) V(unknown) (made or not); RV(closed) names the
    databases recorded as drained. The drain role writes a trail line for each.'
  - 'The login needs C(CREATE USER) (to lock and unlock), the privileges it revokes from and grants back to PUBLIC with
    C(GRANT OPTION) (an admin login), read access to the privilege tables of C(mysql), C(CREATE),
    C(INSERT), C(UPDATE), C(DELETE), C(SELECT) on C(dbhygiene), and what M(dbhygiene.sessions.mysql_sessions) needs to end
    sessions; an admin login has them all.'
  - 'On a replica (C(read_only) on and a replication source) no right is changed: the account locks and the record come
    from the primary through the binary log. V(drained) there ends the sessions on O(databases) and those of the
    accounts the primary''s record locked for them (they are the replica''s own: the primary''s drain does not reach
    them), and RV(replica) says so; V(open) changes nothing. A cluster: drain the primary, then each replica; V(open)
    on the primary opens them all.'

extends_documentation_fragment:
  - dbhygiene.sessions._drain
  - dbhygiene.sessions._mysql_connection
attributes:
  check_mode:
    support: full
    description:
      - Locks no account, revokes no grant, writes no record, ends no session; RV(changes), RV(accounts_locked),
        RV(public_revoked), RV(terminated) and RV(cancelled) list what a real run would do at that moment.
  diff_mode:
    support: full
    description: >-
      Before and after, one line per account concerned (locked or not), one per grant of PUBLIC revoked (given back) and
      one per session ended.
options: {}
notes:
  - 'Every change is returned in RV(changes) in the form the drain role writes to the audit trail (one line each).'
seealso:
  - module: dbhygiene.sessions.postgresql_drain
  - module: dbhygiene.sessions.mysql_sessions
"""

EXAMPLES = r"""
- name: Drain billing for its migration (the migration's accounts stay unlocked and keep their sessions)
  module_defaults:
    group/dbhygiene.sessions.mysql:
      login_host: "{{ mysql_host }}"
      login_user: "{{ mysql_admin_user }}"
      login_password: "{{ mysql_admin_password }}"
      ca_cert: "{{ mysql_ca_cert }}"
  block:
    - name: See which accounts the drain would lock and which sessions it would end (check mode)
      dbhygiene.sessions.mysql_drain:
        databases: [billing]
        allow_users: [migrator]
      check_mode: true
      register: would_drain

    - name: Show the accounts that would be locked
      ansible.builtin.debug:
        msg: "{{ would_drain.accounts_locked }} would be locked"

    - name: Drain billing, politely first (KILL QUERY, KILL CONNECTION after 10 seconds)
      dbhygiene.sessions.mysql_drain:
        databases: [billing]
        allow_users: [migrator]
        grace: 10s

    - name: Open billing again (unlock what the drain locked, nothing else)
      dbhygiene.sessions.mysql_drain:
        databases: [billing]
        state: open
"""

RETURN = r"""
state:
  description: The O(state) this run brought about (or would, in check mode).
  returned: always
  type: str
  sample: drained
databases:
  description: O(databases), as validated (duplicates dropped).
  returned: always
  type: list
  elements: str
  sample: [billing]
changes:
  description:
    - Every account this run locked or unlocked (in check mode, would), in order; one audit trail line each. Empty when
      nothing changed (a second V(drained), an V(open) with nothing recorded).
  returned: always
  type: list
  elements: dict
  contains:
    database: {description: 'The first of RV(changes[].databases).', type: str, returned: always, sample: billing}
    databases: {description: The drained databases this account is (was) locked for., type: list, elements: str, returned: always}
    account: {description: "The account, C('user'@'host'), or C(PUBLIC).", type: str, returned: always, sample: "'app'@'%'"}
    right:
      description: 'The right changed: C(ACCOUNT LOCK), or for C(PUBLIC) the privileges and their target (C(SELECT ON `billing`.*)).'
      type: str
      returned: always
      sample: ACCOUNT LOCK
    change:
      description: C(locked) or C(revoked) (PUBLIC) for V(drained); C(unlocked) or C(granted) for V(open).
      type: str
      returned: always
      sample: locked
    status:
      description: Only in a failed run's RV(changes) - C(done), or C(unknown) for the change in flight when it failed.
      type: str
      returned: when the run failed half-way
    grantor: {description: Always null here (kept for the same shape as on PostgreSQL)., type: str, returned: always}
    with_grant_option: {description: Always null here., type: bool, returned: always}
    reason:
      description: Why this account, for the trail.
      type: str
      returned: always
      sample: holds privileges on billing (schema)
accounts_locked:
  description: The accounts this run locked (check mode, would lock), C('user'@'host').
  returned: always
  type: list
  elements: str
  sample: ["'app'@'%'"]
accounts_unlocked:
  description: The accounts this run unlocked (V(open); check mode, would unlock).
  returned: always
  type: list
  elements: str
public_revoked:
  description: The grants of PUBLIC this run revoked (check mode, would revoke), as C(SHOW GRANTS FOR PUBLIC) wrote them.
  returned: always
  type: list
  elements: str
  sample: ["GRANT SELECT, INSERT ON `billing`.* TO PUBLIC"]
public_restored:
  description: The grants of PUBLIC this run gave back (V(open); check mode, would give back).
  returned: always
  type: list
  elements: str
accounts_already_locked:
  description: Accounts concerned that were locked before and not by a drain; left alone (never unlocked by V(open)).
  returned: always
  type: list
  elements: str
restored:
  description:
    - V(open) only (empty otherwise), one entry per database opened; C(exact) true when every recorded account was
      found as the drain left it.
  returned: always
  type: list
  elements: dict
  sample: [{database: billing, exact: true, detail: 1 account unlocked}]
closed:
  description:
    - The databases of this server that are drained after this run, read from the record on the server (all of them,
      not only O(databases)); in check mode, as they would be.
  returned: always
  type: list
  elements: str
  sample: [billing]
record:
  description: The record on the server after this run (in check mode, as it is), one entry per drained database.
  returned: always
  type: list
  elements: dict
  contains:
    database: {description: The drained database., type: str, returned: always}
    drained_at: {description: When it was first drained (ISO 8601 UTC)., type: str, returned: always}
    drained_by: {description: The login that drained it first., type: str, returned: always}
    complete: {description: False while an account of it is still C(pending) (a drain that died half-way)., type: bool, returned: always}
    changes:
      description: 'The accounts locked for it: entries as in RV(changes) plus C(status) (C(pending) or C(locked); C(revoked) for a grant of PUBLIC).'
      type: list
      elements: dict
      returned: always
record_before:
  description:
    - The record on the server as this run read it before it changed anything, entries as in RV(record). The drain
      role settles from it the changes of rights an earlier run journaled in the audit trail and never gave an outcome
      for (a controller killed mid-drain).
    - Each change also has C(now), what the server held at that read, so that a change recorded as C(pending) (about
      to be made when a run died) settles exactly, as do an open's undoings of the record's changes. An account
      V(locked), V(unlocked) or V(dropped); a grant of PUBLIC V(granted) or V(revoked).
  returned: when the run got as far as reading the record
  type: list
  elements: dict
beyond_plan:
  description:
    - Given O(journaled_changes) or O(journaled_sessions), the changes of rights (C(changes)) and the sessions
      (C(sessions)) this run came to that the controller had not journaled (rights changed, or a login got in, since
      its plan); the run stopped before sending anything of them (it fails). The drain role journals them and runs
      the module again.
  returned: when a run given O(journaled_changes) or O(journaled_sessions) met one
  type: dict
settled:
  description:
    - For each key of O(settle_keys), what this run's first listing (before any change) shows, C(outcome)
      C(terminated) (gone) or C(still_present) (with C(session)). The drain role settles from it the sessions an
      earlier run (a drain or a sweep) journaled as being ended in the audit trail and never learned the fate of.
  returned: when O(settle_keys) is given
  type: list
  elements: dict
terminated:
  description:
    - Sessions on O(databases) terminated (check mode, that would be), normalized session records as in
      RV(dbhygiene.sessions.mysql_sessions#module:terminated), with C(rule) V(drain) and C(action)
      V(cancel_then_terminate). Empty for V(open).
  returned: always
  type: list
  elements: dict
cancelled:
  description:
    - Sessions whose running statement was cancelled first (the polite step); entries as in RV(terminated).
    - A drain leaves no session on O(databases) but the kept ones, so each of them was then terminated too (after its
      statement stopped, or after O(grace) when it did not) and is in RV(terminated) as well.
  returned: always
  type: list
  elements: dict
not_ended:
  description:
    - Sessions on O(databases) that were not ended, entries as in RV(terminated) plus C(reason) and C(detail), reasons
      as in M(dbhygiene.sessions.mysql_sessions) (C(protected) for O(allow_users) and superusers).
  returned: always
  type: list
  elements: dict
summary:
  description:
    - Counts of the session part (as in M(dbhygiene.sessions.mysql_sessions)), C(terminated) and C(cancelled) counting
      the entries of RV(terminated) and RV(cancelled); empty for V(open).
  returned: always
  type: dict
queries:
  description:
    - The statement templates the module runs, with placeholders; never values or secrets.
    - Only at verbosity 3 (C(-vvv)) and above; below it they would fill every failed task's output.
  returned: at -vvv
  type: list
  elements: str
state_unknown:
  description:
    - 'True when the run failed while a change of rights was in flight (the server stopped answering): that change is in
      RV(changes) with C(status) V(unknown), made or not.'
  returned: always
  type: bool
role:
  description:
    - The server's part in replication - V(primary), or V(replica) (C(read_only) on and a replication source; see
      M(dbhygiene.sessions.mysql_session_info)).
  returned: always
  type: str
  sample: primary
replica:
  description:
    - 'True on a replica: no account was locked or unlocked and no grant changed there (it is read-only; the locks
      come from the primary through the binary log, with the primary''s record of the drain). V(drained) ended the
      sessions on O(databases) and those of the accounts the primary''s record locked for them (on any database);
      V(open) changed nothing (V(open) on the primary opens the replicas too). RV(closed) and RV(record) are the
      primary''s, as replicated here.'
  returned: always
  type: bool
not_drained_on_primary:
  description:
    - 'On a replica, V(drained): the databases of O(databases) that the primary''s record (replicated here) does not
      list - not drained on the primary yet, or not replicated yet: their accounts can still log in here (a warning
      says so). Drain the primary first, then its replicas. Empty on a primary.'
  returned: always
  type: list
  elements: str
check_mode:
  description: Whether this was a dry run.
  returned: always
  type: bool
failed_statement:
  description:
    - When the run failed because a statement failed, the template of that one statement (placeholders, no values),
      cut to 2,000 characters.
  returned: when a statement failed
  type: str
  sample: SELECT ID, USER, HOST, DB, COMMAND, TIME FROM information_schema.PROCESSLIST WHERE ID = %s
"""

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.dbhygiene.sessions.plugins.module_utils._argspec import new_module
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain import run_drain_module
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_request import drain_argument_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.drain import MySQLRights
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.driver import (
    MySQLDriver,
    connection_argument_spec,
    open_driver,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.errors import HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(drain_argument_spec())
    module = new_module(argument_spec, supports_check_mode=True)
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=PYMYSQL_IMPORT_ERROR)
    run_drain_module(module, MySQLDriver, open_driver, MySQLRights)


if __name__ == "__main__":
    main()
