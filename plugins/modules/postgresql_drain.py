#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: postgresql_drain
short_description: Drain PostgreSQL databases before a change, open them again exactly as they were
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - 'O(state=drained): no login but superusers and O(allow_users) can connect to O(databases) any more, and every
    session on them but ours, O(allow_users)'' and superusers'' is ended, whatever its state (a drain is not a sweep:
    no idle proof): a running statement is cancelled first, and after O(grace) every such session still there is
    terminated (C(pg_terminate_backend), checked by pid and C(backend_start) only); then the sessions are listed and
    terminated again until none is left (a session that runs a statement every few milliseconds), at most
    O(wait_timeout) seconds. A session still there then fails the run, named in the message (pid, user, database).'
  - 'Mechanism: the C(CONNECT) privilege. It is the only one of the three PostgreSQL has that keeps some logins in:
    C(datallowconn=false) refuses superusers and O(allow_users) too, and C(CONNECTION LIMIT) counts every non-superuser
    alike. The drain revokes C(CONNECT) from C(PUBLIC) and from every role that holds it on the database (each as the
    role that granted it, so that grants made by a delegate go too), and grants it to the O(allow_users) that do not hold
    it themselves. Roles that get C(CONNECT) only through membership of a role it was revoked from lose it with it.'
  - 'Exactness of the restore: the rights change and the record of the change (the database''s C(datacl) before and
    after, and each privilege revoked or granted) are one transaction, so a run that dies leaves either both or
    neither. V(open) puts C(pg_database.datacl) back byte for byte (the same entries in the same order, or C(NULL) for
    the default rights) when nobody changed the database''s rights during the window (its C(datacl) is still what the
    drain left), in one transaction that first undoes the recorded changes with C(GRANT) / C(REVOKE), so that the
    roles'' dependencies (C(pg_shdepend)) are right too; otherwise it undoes only the recorded changes with C(GRANT) /
    C(REVOKE), which keeps what others changed meanwhile, and says so in RV(restored). Grants and revokes do not keep
    the order of the entries, and a revoke from
    C(PUBLIC) turns a C(NULL) C(datacl) into explicit entries, hence the byte-for-byte restore.'
  - 'The record: table C(dbhygiene.drain) (schema and table made on the first real drain) in the database the module
    connects to (O(login_db), default C(postgres)); each drained database points to it with the setting
    C(dbhygiene.drain_record) (C(ALTER DATABASE ... SET), in the same transaction; C(pg_db_role_setting) is a shared
    catalog, so any database shows it). A run connected to another O(login_db) finds where the record is: V(open) and
    V(drained) fail naming that database (run them again with O(login_db) set to it), and RV(closed) lists the database
    all the same. Another controller, or the same one after a crash, opens what was drained. V(drained) on a database
    already drained keeps the first record (the rights before the first drain) and adds only what it changes on top (a
    grant made during the window). V(open) removes the setting with the record.'
  - 'O(allow_users) keeps C(CONNECT) for those roles, and PostgreSQL checks C(CONNECT) with the privileges a login has
    through its roles: every member of an allowed role (with C(INHERIT), the default) can still connect and its
    sessions are kept only when it is itself in O(allow_users) (the sessions of a member that is not are ended, but
    it can log in again during the window). Allow login roles, not groups, unless every member may connect.'
  - 'A drain that fails while its one transaction of rights is in flight (the server stops answering, O(query_timeout)
    fires) fails with every change of it in RV(changes) with C(status) V(unknown): the transaction made all of them or
    none, the record on the server says which (V(open) undoes exactly what it finds).'
  - 'The login must be a superuser: only a superuser can revoke as every grantor and write C(pg_database.datacl); the
    module fails before changing anything otherwise, also in check mode.'
  - Every client session on O(databases) is ended, whoever's it is; a session of a role in O(allow_users) or of a
    superuser is kept and listed in RV(not_ended) with reason C(protected). Our own connection is never listed.
  - 'An interrupted run: the rights and the record are committed together, before any session is ended; a run that died
    after them left the database drained and recorded (run V(drained) again to end the sessions, or V(open)); one that
    died before left nothing changed.'
  - 'Errors: a database that does not exist, or a role of O(allow_users) that does not exist, fails the run before any
    change (also in check mode). A role that got C(CONNECT) with a delegated grant option and re-granted it to a role in
    O(allow_users) cannot lose it without that grant (C(REVOKE) would need C(CASCADE)): the server''s error fails the run
    and the transaction changes nothing.'
  - 'On a hot standby (read-only: C(pg_is_in_recovery())) no right is changed (the login is the same as on
    the primary: it reads the record): C(CONNECT) and the record come from the primary by replication. V(drained) there ends the sessions on O(databases)
    as above (they are the standby''s own: the primary''s drain does not reach them) and RV(replica) says so; V(open)
    changes nothing. A cluster: drain the primary, then each standby; V(open) on the primary opens them all.'

extends_documentation_fragment:
  - dbhygiene.sessions._drain
  - dbhygiene.sessions._postgresql_connection
attributes:
  check_mode:
    support: full
    description:
      - Changes no right, writes no record, ends no session; RV(changes), RV(terminated) and RV(cancelled) list what a
        real run would do at that moment.
  diff_mode:
    support: full
    description: Before and after, one line per database with its C(CONNECT) holders and one line per session ended.
options: {}
notes:
  - 'Every change is returned in RV(changes) in the form the drain role writes to the audit trail (one line each).'
seealso:
  - module: dbhygiene.sessions.mysql_drain
  - module: dbhygiene.sessions.postgresql_sessions
"""

EXAMPLES = r"""
- name: Drain billing for its migration (the migration login keeps its rights and its sessions)
  module_defaults:
    group/dbhygiene.sessions.postgresql:
      login_host: "{{ pg_host }}"
      login_user: "{{ pg_admin_user }}"
      login_password: "{{ pg_admin_password }}"
      ssl_mode: verify-full
      ca_cert: "{{ pg_ca_cert }}"
  block:
    - name: See what the drain would change and end (check mode)
      dbhygiene.sessions.postgresql_drain:
        databases: [billing]
        allow_users: [migrator]
      check_mode: true
      register: would_drain

    - name: Show the rights that would change
      ansible.builtin.debug:
        msg: "{{ would_drain.changes | map(attribute='account') | list }} would lose CONNECT"

    - name: Drain billing, politely first (cancel, terminate after 10 seconds)
      dbhygiene.sessions.postgresql_drain:
        databases: [billing]
        allow_users: [migrator]
        grace: 10s

    - name: Open billing again, exactly as it was
      dbhygiene.sessions.postgresql_drain:
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
    - Every right this run changed (in check mode, would change), in order; one audit trail line each. Empty when
      nothing changed (a second V(drained), an V(open) with nothing recorded).
  returned: always
  type: list
  elements: dict
  contains:
    database: {description: The database whose right changed., type: str, returned: always, sample: billing}
    databases: {description: 'The drained databases this change is for (here: RV(changes[].database) alone).', type: list, elements: str, returned: always}
    account: {description: The role that lost or got the right; C(PUBLIC) for every role., type: str, returned: always, sample: PUBLIC}
    right: {description: 'The right changed: always C(CONNECT) here.', type: str, returned: always, sample: CONNECT}
    change:
      description:
        - C(revoked) or C(granted).
        - V(drained) revokes from the holders and grants to O(allow_users); V(open) grants back what was revoked and
          revokes what was granted.
      type: str
      returned: always
      sample: revoked
    grantor: {description: The role the privilege is (was) granted by., type: str, returned: always, sample: postgres}
    with_grant_option: {description: The privilege carried the grant option., type: bool, returned: always}
    reason: {description: Why (for the trail)., type: str, returned: always, sample: holds CONNECT on billing}
    status:
      description: Only in a failed run's RV(changes) - C(unknown) for the changes in flight when it failed.
      type: str
      returned: when the run failed half-way
restored:
  description:
    - V(open) only (empty otherwise), one entry per database opened.
    - C(exact) true when C(pg_database.datacl) was put back byte for byte; false when the rights were changed by someone
      else during the window and only the recorded changes were undone (C(detail) says so).
    - A login without superuser on a managed platform (O(platform)) undoes the recorded changes grant by grant; C(exact)
      is then true when the database has the same grants as before the drain (their order in C(datacl) may differ).
  returned: always
  type: list
  elements: dict
  sample: [{database: billing, exact: true, detail: datacl restored as before the drain}]
grants_not_changed:
  description:
    - V(drained) by a login without superuser on a managed platform (O(platform)) only. The CONNECT grants it could not
      revoke, because a role it may not act as (C(SET ROLE)) made them, or a grant such a role made depends on them;
      C(reason) says who can still connect.
  returned: when the login is not a superuser on a managed platform
  type: list
  elements: dict
  sample:
    - database: billing
      account: app2
      right: CONNECT
      grantor: billing_owner
      with_grant_option: false
      reason: "granted by billing_owner, a role login admin may not act as (SET ROLE), ...: role app2 can still connect"
closed:
  description:
    - The databases of this server that are drained after this run, read from the record on the server (all of them,
      not only O(databases)); in check mode, as they would be.
  returned: always
  type: list
  elements: str
  sample: [billing]
record:
  description:
    - The record on the server after this run (in check mode, as it is), one entry per drained database.
  returned: always
  type: list
  elements: dict
  contains:
    database: {description: The drained database., type: str, returned: always}
    drained_at: {description: When it was first drained (ISO 8601 UTC)., type: str, returned: always}
    drained_by: {description: The login that drained it first., type: str, returned: always}
    complete:
      description: True on PostgreSQL (the rights change and the record are one transaction); null for a record elsewhere.
      type: bool
      returned: always
    exact:
      description:
        - Whether V(open) may put C(datacl) back byte for byte (to RV(record[].acl_before)).
        - False once a later V(drained) had to revoke more (someone granted C(CONNECT) during the window); that grant must
          come back on V(open), so the changes are then undone one by one.
      type: bool
      returned: always
    changes: {description: 'The changes V(open) undoes: entries as in RV(changes), as the drain made them.', type: list, elements: dict, returned: always}
    acl_before: {description: C(datacl) as text before the first drain (null for the default rights)., type: str, returned: always}
    acl_after: {description: C(datacl) as text as the drain left it., type: str, returned: always}
    record_database:
      description:
        - Only for a database drained with its record in another database than O(login_db) (found by the setting
          C(dbhygiene.drain_record)); the entry then has C(database), this, C(complete) null and no changes.
      type: str
      returned: when the record is elsewhere
record_before:
  description:
    - The record on the server as this run read it before it changed anything, entries as in RV(record). The drain
      role settles from it the changes of rights an earlier run journaled in the audit trail and never gave an outcome
      for (a controller killed mid-drain).
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
      RV(dbhygiene.sessions.postgresql_sessions#module:terminated), with C(rule) V(drain) and C(action)
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
      as in M(dbhygiene.sessions.postgresql_sessions) (C(protected) for O(allow_users) and superusers).
  returned: always
  type: list
  elements: dict
summary:
  description:
    - Counts of the session part (as in M(dbhygiene.sessions.postgresql_sessions)), C(terminated) and C(cancelled)
      counting the entries of RV(terminated) and RV(cancelled); empty for V(open).
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
    - 'True when the run failed while a change of rights was in flight (the server stopped answering): those changes are
      in RV(changes) with C(status) V(unknown), made or not; the record on the server says which.'
  returned: always
  type: bool
role:
  description:
    - The server's part in replication - V(primary), or V(standby) (a hot standby, C(pg_is_in_recovery())).
  returned: always
  type: str
  sample: primary
replica:
  description:
    - 'True on a standby: no right was changed there (it is read-only, and C(CONNECT) comes from the primary by
      replication, with the primary''s record of the drain). V(drained) ended the sessions on O(databases); V(open)
      changed nothing (V(open) on the primary opens the standbys too). RV(closed) and RV(record) are the primary''s,
      as replicated here.'
  returned: always
  type: bool
not_drained_on_primary:
  description:
    - 'On a standby, V(drained): the databases of O(databases) that the primary''s record (replicated here) does not
      list - not drained on the primary yet, or not replicated yet: logins can still connect to them here (a warning
      says so). Drain the primary first, then its standbys. Empty on a primary.'
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
  sample: SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE pid = %(pid)s
"""

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.dbhygiene.sessions.plugins.module_utils._argspec import new_module
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain import run_drain_module
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_request import drain_argument_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.connect import connection_argument_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.drain import PostgreSQLRights
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.driver import (
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    PostgreSQLDriver,
    open_driver,
)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(drain_argument_spec())
    module = new_module(argument_spec, supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    run_drain_module(module, PostgreSQLDriver, open_driver, PostgreSQLRights)


if __name__ == "__main__":
    main()
