# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options of every PostgreSQL module (module_utils/_postgresql/connect.py,
    # connection_argument_spec()). Names follow community.postgresql.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
      - When neither this nor O(login_unix_socket) is set, libpq's default applies (usually the local unix socket).
      - With O(ssl_mode=verify-full) it must be a name or address in the server's certificate.
      - Falls back to the E(PGHOST) environment variable.
      - Must not contain a NUL or another control character (checked before connecting).
    type: str
  login_port:
    description:
      - Port of the PostgreSQL server (also the number in the unix socket's file name).
      - Falls back to E(PGPORT).
      - Between 1 and 65535.
    type: int
    default: 5432
  login_user:
    description:
      - The login to connect as. It needs to see other users' sessions and to signal them, so it must be a superuser or
        hold C(pg_read_all_stats) (both modules) and C(pg_signal_backend) (M(dbhygiene.sessions.postgresql_sessions)).
        The modules check this first and fail with the C(GRANT) to run when it is missing.
      - Falls back to E(PGUSER).
    type: str
    default: postgres
  login_password:
    description:
      - The password of O(login_user). Never shown in results or logs.
      - Falls back to E(PGPASSWORD); when unset, libpq may still find one in C(~/.pgpass).
    type: str
  login_unix_socket:
    description:
      - Directory of the server's unix socket (or the socket file itself). Takes precedence over O(login_host).
    type: path
  login_db:
    description:
      - Database to connect to. Sessions of B(every) database are listed, whichever this is.
      - Falls back to E(PGDATABASE), then V(postgres).
      - The sweep lock of M(dbhygiene.sessions.postgresql_sessions) is an advisory lock in this database, so concurrent
        runs against one server exclude each other when they connect to the same O(login_db).
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the connection (TCP, TLS and login), between 1 and 3600. Falls back to E(PGCONNECT_TIMEOUT).
      - Enforced by the module itself, so it also holds against a server that accepts the TCP connection and then never
        answers (frozen, overloaded).
    type: int
    default: 10
  query_timeout:
    description:
      - Seconds each statement of the module may take, between 1 and 3600.
      - The server cancels our statement after this long (C(statement_timeout) of our own session only), and the module
        gives up one second later whatever the server does (a server frozen with its TCP stack still up answers
        neither), closes the connection and fails the host with a message saying so.
      - libpq TCP keepalives are on (first probe after 10 seconds idle), so a server that vanished from the network is
        noticed even while no statement runs.
    type: int
    default: 30
  ssl_mode:
    description:
      - TLS mode of the connection, as libpq's C(sslmode).
      - V(verify-ca) checks the server's certificate against O(ca_cert); V(verify-full) also checks that it names
        O(login_host). Use one of those two to be safe from a server in the middle.
      - When unset, V(verify-full) if O(ca_cert) or O(ssl_cert) is set (TLS is never silently downgraded), else libpq's
        default V(prefer) (TLS when the server offers it, without checking its certificate).
      - V(disable), V(allow) or V(prefer) together with O(ca_cert) or O(ssl_cert) is refused before connecting, as those
        modes may connect without verified TLS.
      - Over a unix socket (O(login_unix_socket)) libpq uses no TLS, whatever this says.
      - Falls back to E(PGSSLMODE).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
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
  platform:
    description:
      - The service that runs the server, for what it does not allow (see the README, "Managed databases").
      - V(self_managed) turns the detection off; V(rds) (Amazon RDS and Aurora), V(cloudsql) (Google Cloud SQL) and
        V(azure) (Azure Database) name the service.
      - 'V(auto) detects it from the server, once per connection, first match wins: V(rds) when the role C(rdsadmin)
        exists or an C(rds.*) setting is defined, V(cloudsql) for the role C(cloudsqladmin) or a C(cloudsql.*) setting, V(azure)
        for the role C(azure_superuser) or C(azuresu) or an C(azure.*) setting; else V(self_managed).'
      - On a managed platform the service's own sessions (RDS C(rdsadmin), Cloud SQL C(cloudsqladmin), Azure
        C(azure_superuser)) are never ended, whatever the policy says (listed as protected, detail C(service)), and
        server-level timeouts fail before any change, naming the parameter group / database flag to set instead.
      - A drain without a superuser login (a managed platform only) revokes CONNECT as the roles the login may act as
        (the database owner) and lists the grants it could not change in the result (C(grants_not_changed)).
    type: str
    default: auto
    choices: [auto, self_managed, rds, cloudsql, azure]
requirements:
  - psycopg2 (C(psycopg2-binary) or C(psycopg2)) on the node that runs the module
  - PostgreSQL 10 or later
notes:
  - The modules connect with an C(application_name) of their own (V(dbhygiene.sessions-) and a random suffix) and never list
    or touch their own connection; they list only client backends (never background workers, autovacuum, walsenders or
    parallel workers).
  - The connection runs in autocommit, so each statement reads a fresh C(pg_stat_activity); the guarded end goes further
    and reads each victim in a fresh snapshot of its own, immediately before signalling it.
  - Strings with a NUL or control character and out-of-range numbers fail before any connection, naming the option (long
    values are cut in messages; the password is never shown).
"""
