# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options of every PostgreSQL module (module_utils/_postgresql.py,
    # connection_argument_spec()). Names follow community.postgresql.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
      - When neither this nor O(login_unix_socket) is set, libpq's default applies (usually the local unix socket).
      - With O(ssl_mode=verify-full) it must be a name or address in the server's certificate.
      - Falls back to the E(PGHOST) environment variable.
    type: str
    aliases: [host]
  login_port:
    description:
      - Port of the PostgreSQL server (also the number in the unix socket's file name).
      - Falls back to E(PGPORT).
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - The login to connect as. It needs to see other users' sessions and to signal them, so it must be a superuser or
        hold C(pg_read_all_stats) (both modules) and C(pg_signal_backend) (M(dbhygiene.sessions.postgresql_sessions)).
        The modules check this first and fail with the C(GRANT) to run when it is missing.
      - Falls back to E(PGUSER).
    type: str
    default: postgres
    aliases: [login]
  login_password:
    description:
      - The password of O(login_user). Never shown in results or logs.
      - Falls back to E(PGPASSWORD); when unset, libpq may still find one in C(~/.pgpass).
    type: str
  login_unix_socket:
    description:
      - Directory of the server's unix socket (or the socket file itself). Takes precedence over O(login_host).
    type: path
    aliases: [unix_socket]
  login_db:
    description:
      - Database to connect to. Sessions of B(every) database are listed, whichever this is.
      - Falls back to E(PGDATABASE), then V(postgres).
    type: str
    aliases: [db]
  connect_timeout:
    description:
      - Seconds to wait for the connection. Falls back to E(PGCONNECT_TIMEOUT).
    type: int
    default: 10
  ssl_mode:
    description:
      - TLS mode of the connection, as libpq's C(sslmode).
      - V(verify-ca) checks the server's certificate against O(ca_cert); V(verify-full) also checks that it names
        O(login_host). Use one of those two to be safe from a server in the middle.
      - Falls back to E(PGSSLMODE).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
    default: prefer
  ca_cert:
    description:
      - File of the CA certificate(s) the server's certificate must be signed by (libpq's C(sslrootcert)).
      - Falls back to E(PGSSLROOTCERT).
    type: path
    aliases: [ssl_rootcert]
  ssl_cert:
    description:
      - Client certificate file, for servers that authenticate the login by certificate. Falls back to E(PGSSLCERT).
    type: path
  ssl_key:
    description:
      - Private key file of O(ssl_cert). Falls back to E(PGSSLKEY).
    type: path
requirements:
  - psycopg2 (C(psycopg2-binary) or C(psycopg2)) on the node that runs the module
  - PostgreSQL 10 or later
notes:
  - The modules connect with an C(application_name) of their own (V(dbhygiene.sessions-) and a random suffix) and never list
    or touch their own connection; they list only client backends (never background workers, autovacuum, walsenders or
    parallel workers).
  - The connection runs in autocommit, so each statement reads a fresh C(pg_stat_activity).
"""
