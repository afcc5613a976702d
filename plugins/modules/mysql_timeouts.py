#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: mysql_timeouts
short_description: Reconcile MariaDB's and MySQL's own session timeouts
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - 'Prevention: sets the server''s own limits, so that it ends ghost sessions by itself. MariaDB: C(idle_session) is
    C(wait_timeout), C(idle_in_transaction) is C(idle_transaction_timeout) (MariaDB 10.3 or later), C(statement) is
    C(max_statement_time). MySQL 8: C(wait_timeout) and C(max_execution_time) (milliseconds; MySQL applies it to
    C(SELECT) only); MySQL has no idle-in-transaction limit.'
  - 'Server level: MariaDB C(SET GLOBAL), which lasts until the server restarts (MariaDB has no C(SET PERSIST)); with
    O(persist_file) the module also writes the values to an option file the server reads at start. MySQL 8:
    C(SET PERSIST), which survives a restart. A new global value applies to the sessions that connect after it.'
  - 'Per user (C(roles)): only C(statement), on MariaDB, as the account resource limit C(MAX_STATEMENT_TIME)
    (C(ALTER USER ... WITH MAX_STATEMENT_TIME)). A name is every account of that user name, or one account as
    C(user@host). Neither engine has a per-user idle timeout, nor any per-database timeout: such a setting fails
    before connecting, with a message naming the field.'
  - Values are compared in the server's unit (seconds; C(max_statement_time) a float; MySQL's C(max_execution_time)
    milliseconds). C(wait_timeout) cannot be 0 (no limit); the limits are at most 365 days.
  - Everything is read and checked before the first change; a value the server cannot take fails and nothing is
    changed on that server.
  - The login needs C(SUPER) or C(SYSTEM_VARIABLES_ADMIN) for the server level, and C(CREATE USER) plus C(SELECT) on
    C(mysql.user) for users.
extends_documentation_fragment:
  - dbhygiene.sessions._mysql_connection
attributes:
  check_mode:
    support: full
    description: Reads the current values and reports what would change; runs no statement that changes anything.
  diff_mode:
    support: full
    description: The current and the wanted value of every setting managed, and the option file's content.
options:
  timeouts:
    description:
      - The limits to set, the same structure as O(dbhygiene.sessions.postgresql_timeouts#module:timeouts).
    type: dict
    required: true
  persist_file:
    description:
      - 'MariaDB: an option file on the node that runs the module (the database host) that the server reads at start,
        for example C(/etc/mysql/mariadb.conf.d/99-dbhygiene-timeouts.cnf). The module writes the server-level values
        there (a C([mysqld]) section; the whole file is the module''s). Its directory must exist.'
      - Unset, the values set with C(SET GLOBAL) are lost when the server restarts; the result says RV(persisted=false)
        and warns. Ignored on MySQL 8 (C(SET PERSIST)).
    type: path
seealso:
  - module: dbhygiene.sessions.postgresql_timeouts
  - module: dbhygiene.sessions.mysql_sessions
"""

EXAMPLES = r"""
- name: Let MariaDB end forgotten transactions, and statements of the reporting account after ten minutes
  dbhygiene.sessions.mysql_timeouts:
    login_host: "{{ mysql_host }}"
    login_user: "{{ mysql_admin }}"
    login_password: "{{ mysql_admin_password }}"
    timeouts:
      server:
        idle_in_transaction: 15m
      roles:
        app:
          statement: 10m
    persist_file: "{{ mysql_timeouts_file }}"
  register: mysql_timeouts

- name: Show the statements run
  ansible.builtin.debug:
    var: mysql_timeouts.queries

- name: Back to no limits
  dbhygiene.sessions.mysql_timeouts:
    login_host: "{{ mysql_host }}"
    login_user: "{{ mysql_admin }}"
    login_password: "{{ mysql_admin_password }}"
    timeouts:
      server:
        idle_in_transaction: 0
      roles:
        app:
          statement: 0
    persist_file: "{{ mysql_timeouts_file }}"
"""

RETURN = r"""
settings:
  description: Every setting managed, with its current and wanted value (a user name expands to each of its accounts).
  returned: success
  type: list
  elements: dict
  contains:
    level: {description: "V(server) or V(role) (a user account).", type: str, returned: always}
    target: {description: "The account (C(user@host)); null for the server.", type: str, returned: always}
    field: {description: "V(idle_session), V(idle_in_transaction) or V(statement).", type: str, returned: always}
    variable: {description: The server variable or account limit., type: str, returned: always, sample: wait_timeout}
    current: {description: "The value before the run, in the server's unit.", type: raw, returned: always, sample: 28800}
    wanted: {description: "The value wanted, in the server's unit (0 is no limit).", type: raw, returned: always}
    current_text: {description: The current value as text., type: str, returned: always}
    wanted_text: {description: The wanted value as text., type: str, returned: always}
    changed: {description: "The value was (check mode: would be) changed.", type: bool, returned: always}
    given_as: {description: Where the option gave it., type: str, returned: always, sample: timeouts.server.idle_session}
queries:
  description: The statements run (check mode, that would run), values filled in; none holds a secret.
  returned: success
  type: list
  elements: str
  sample: ["SET GLOBAL idle_transaction_timeout = 900"]
persisted:
  description: The values survive a server restart (MySQL 8 C(SET PERSIST), or MariaDB with O(persist_file)).
  returned: success
  type: bool
persist_file:
  description: The option file written, when O(persist_file) is given.
  returned: when O(persist_file) is given on MariaDB
  type: str
persist_file_changed:
  description: The option file was (check mode, would be) rewritten.
  returned: when O(persist_file) is given
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
  sample: SELECT ID, USER, HOST, DB, COMMAND, TIME FROM information_schema.PROCESSLIST WHERE ID = %s
"""

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.dbhygiene.sessions.plugins.module_utils._argspec import new_module
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.driver import (
    connection_argument_spec,
    open_driver,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.errors import HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.timeouts import MySQLTimeouts
from ansible_collections.dbhygiene.sessions.plugins.module_utils._timeouts import argument_spec, run_timeouts_module


def main():
    # The core (_timeouts) finds MySQLTimeouts by the registry's name; importing it here ships it (AnsiballZ).
    spec = connection_argument_spec()
    spec.update(argument_spec(MySQLTimeouts.engine))
    module = new_module(spec, supports_check_mode=True)
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=PYMYSQL_IMPORT_ERROR)
    run_timeouts_module(module, MySQLTimeouts.engine, open_driver)


if __name__ == "__main__":
    main()
