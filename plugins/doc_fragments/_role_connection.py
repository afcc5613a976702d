# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options every per-host action plugin of the roles has (plugin_utils/_action.py,
    # host_argument_spec()): the connection options of every engine (module_utils/_engines.py),
    # each passed to the engine module that takes it, the engine and where the work runs.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Address of the database server, passed to the engine module. Dropped when O(login_unix_socket) is set.
    type: str
  login_port:
    description: Port of the database server (module default when unset).
    type: int
  login_user:
    description: The login (module default when unset).
    type: str
  login_password:
    description: Password of O(login_user). Never shown in results, reports or the audit trail.
    type: str
  login_unix_socket:
    description: Unix socket (PostgreSQL, its directory) to connect through; wins over O(login_host).
    type: str
  login_db:
    description: PostgreSQL database to connect to. Not passed to MySQL.
    type: str
  connect_timeout:
    description: Connection timeout in seconds.
    type: raw
  query_timeout:
    description: Seconds any one statement may take (module default when unset).
    type: raw
  config_file:
    description:
      - MySQL option file to read C([client]) defaults from; V('') turns reading one off (no C(~/.my.cnf)). Not passed to
        PostgreSQL.
    type: str
  ssl_mode:
    description: PostgreSQL C(sslmode). Not passed to MySQL.
    type: str
  ca_cert:
    description: CA certificate to verify the server with.
    type: str
  ssl_cert:
    description: PostgreSQL client certificate. Not passed to MySQL.
    type: str
  ssl_key:
    description: PostgreSQL client key. Not passed to MySQL.
    type: str
  client_cert:
    description: MySQL client certificate. Not passed to PostgreSQL.
    type: str
  client_key:
    description: MySQL client key. Not passed to PostgreSQL.
    type: str
  check_hostname:
    description: MySQL, verify the server certificate's host name. Not passed to PostgreSQL.
    type: bool
  platform:
    description: The managed service that runs the server (V(auto) detects it); see the engine module's O(platform).
    type: str
  engine:
    description: Engine of the host, it selects the module.
    type: str
    required: true
    choices: [postgresql, mysql]
  run_on:
    description:
      - V(controller) (default) does the work inside this worker of the controller's own Ansible process, with the engine
        module's own code and argument spec, but no module process and no connection to the host. The driver
        (C(psycopg2) / C(PyMySQL)) must be importable by the Python that runs C(ansible-playbook); otherwise the host fails
        naming that interpreter and the pip command.
      - V(host) runs the engine module over the task's connection (on the database host).
      - The results, the audit trail and the reports are the same either way.
    type: str
    choices: [controller, host]
    default: controller
"""
