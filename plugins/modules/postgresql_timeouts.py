#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: postgresql_timeouts
short_description: Reconcile PostgreSQL's own session timeouts, per server, role or database
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - 'Prevention: sets the server''s own limits, so that it ends ghost sessions by itself. C(idle_session) is
    C(idle_session_timeout) (PostgreSQL 14 or later), C(idle_in_transaction) is C(idle_in_transaction_session_timeout),
    C(statement) is C(statement_timeout).'
  - 'Per server with C(ALTER SYSTEM SET) followed by C(pg_reload_conf) (the value lives in C(postgresql.auto.conf));
    per role with C(ALTER ROLE ... SET); per database with C(ALTER DATABASE ... SET). A role''s or a database''s
    value applies to the sessions that log in after the change.'
  - 'Values are compared in PostgreSQL''s own unit, milliseconds: C(30m) and a current C(1800000) or C(30min) are
    the same and nothing changes. The server level is compared with what the configuration files say
    (C(pg_file_settings); the built-in default when no file sets it), never with our own session''s value.'
  - Everything is read and checked before the first change; a value the server cannot take (C(idle_session) on
    PostgreSQL 13, a role or a database that does not exist, more than C(INT_MAX) milliseconds) fails naming the
    field and the value, and nothing is changed on that server.
  - The login must be a superuser (C(ALTER SYSTEM) and C(pg_file_settings) need it), or, for roles and databases
    only, own them.
extends_documentation_fragment:
  - dbhygiene.sessions._postgresql_connection
attributes:
  check_mode:
    support: full
    description: Reads the current values and reports what would change; runs no statement that changes anything.
  diff_mode:
    support: full
    description: The current and the wanted value of every setting managed.
options:
  timeouts:
    description:
      - 'The limits to set: a mapping with up to three levels, C(server) (a mapping of fields), C(roles) and
        C(databases) (mappings of a role or database name to a mapping of fields).'
      - 'Fields: C(idle_session), C(idle_in_transaction), C(statement); each a duration as in the policy (V(45s),
        V(30m), V(1h30m), V(2d) or a whole number of seconds); V(0) or V(0s) is no limit. A field left out (or null)
        is not managed at that level.'
      - Validated before any connection is opened; an error names the field and the value.
    type: dict
    required: true
seealso:
  - module: dbhygiene.sessions.mysql_timeouts
  - module: dbhygiene.sessions.postgresql_sessions
"""

EXAMPLES = r"""
- name: Let the server end forgotten transactions and runaway statements of the application role
  dbhygiene.sessions.postgresql_timeouts:
    login_host: "{{ pg_host }}"
    login_user: "{{ pg_admin }}"
    login_password: "{{ pg_admin_password }}"
    timeouts:
      roles:
        app:
          idle_in_transaction: 5m
          statement: 2h
  register: pg_timeouts

- name: Show what was changed
  ansible.builtin.debug:
    msg: "{{ pg_timeouts.settings | selectattr('changed') | map(attribute='given_as') | list }}"

- name: No limit on statements for the role again (0 is no limit)
  dbhygiene.sessions.postgresql_timeouts:
    login_host: "{{ pg_host }}"
    login_user: "{{ pg_admin }}"
    login_password: "{{ pg_admin_password }}"
    timeouts:
      roles:
        app:
          idle_in_transaction: 0
          statement: 0
"""

RETURN = r"""
settings:
  description: Every setting managed, in the order given, with its current and wanted value.
  returned: success
  type: list
  elements: dict
  contains:
    level: {description: "V(server), V(role) or V(database).", type: str, returned: always}
    target: {description: The role or database name; null for the server., type: str, returned: always, sample: app}
    field: {description: "V(idle_session), V(idle_in_transaction) or V(statement).", type: str, returned: always}
    variable: {description: The server variable., type: str, returned: always, sample: statement_timeout}
    current:
      description: Milliseconds before the run; null when that role or database has no value of its own.
      type: int
      returned: always
    wanted: {description: Milliseconds wanted (0 is no limit)., type: int, returned: always, sample: 7200000}
    current_text: {description: The current value as PostgreSQL shows it., type: str, returned: always, sample: "0"}
    wanted_text: {description: The wanted value as PostgreSQL shows it., type: str, returned: always, sample: 2h}
    changed: {description: "The value was (check mode: would be) changed.", type: bool, returned: always}
    given_as: {description: Where the option gave it., type: str, returned: always, sample: timeouts.roles.app.statement}
queries:
  description: The statements run (check mode, that would run), values filled in; none holds a secret.
  returned: success
  type: list
  elements: str
  sample: ["ALTER ROLE \"app\" SET statement_timeout = '2h'"]
persisted:
  description: Always true (every level PostgreSQL has survives a restart).
  returned: success
  type: bool
check_mode:
  description: Whether this was a dry run.
  returned: success
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
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.connect import connection_argument_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.driver import (
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    open_driver,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._timeouts import argument_spec, run_timeouts_module

# isort: split
# The engine's timeouts class: _timeouts.engine_timeouts imports it by the registry's name; imported here too,
# so that AnsiballZ ships its file with the module.
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.timeouts import PostgreSQLTimeouts  # noqa: F401  # pylint: disable=unused-import


def main():
    spec = connection_argument_spec()
    spec.update(argument_spec("postgresql"))
    module = new_module(spec, supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    run_timeouts_module(module, "postgresql", open_driver)


if __name__ == "__main__":
    main()
