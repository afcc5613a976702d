# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options of every MySQL/MariaDB module (module_utils/_mysql/driver.py,
    # connection_argument_spec()). Names follow community.mysql.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the MySQL or MariaDB server.
      - When neither this, O(login_unix_socket) nor the option file sets one, V(localhost) (over TCP) is used.
      - With O(check_hostname) it must be a name or address in the server's certificate.
    type: str
  login_port:
    description:
      - TCP port of the server.
      - When not set, the C(port) of the option file (O(config_file)), else V(3306).
    type: int
  login_user:
    description:
      - The login. When not set, the C(user) of the option file, else PyMySQL's default (the OS user).
      - 'Least privilege: C(PROCESS) (to see other users'' threads), C(CONNECTION ADMIN) on MariaDB 10.5.2+ or
        C(CONNECTION_ADMIN) on MySQL 8 (C(SUPER) on older servers) to end them, plus two read grants that expose no
        password hash: C(SELECT (User, Host, Super_priv) ON mysql.user) (MySQL 8 also C(SELECT ON mysql.global_grants))
        to tell superuser sessions apart, and C(SELECT ON performance_schema.session_connect_attrs) to read
        C(program_name). A policy with lock conditions also reads C(SELECT ON performance_schema.metadata_locks) and
        C(SELECT ON performance_schema.threads) (MySQL 8 also C(SELECT ON performance_schema.data_lock_waits)).
        A policy with C(states) or C(transaction_longer_than) in a rule reads whether a C(Sleep)
        thread is in a transaction in C(performance_schema): C(SELECT ON performance_schema.events_transactions_current),
        C(performance_schema.threads), C(performance_schema.setup_consumers) and C(performance_schema.setup_instruments).
        Missing rights fail the run with the GRANT that fixes them.'
    type: str
  login_password:
    description:
      - The password of O(login_user). When not set, the C(password) of the option file.
      - Never logged nor returned.
    type: str
  login_unix_socket:
    description:
      - Path of the server's unix socket. Takes precedence over O(login_host).
      - When not set, the C(socket) of the option file.
    type: str
  config_file:
    description:
      - A MySQL option file whose C([client]) group gives defaults for C(host), C(port), C(user), C(password),
        C(socket), C(ssl-ca), C(ssl-cert) and C(ssl-key). Module options win over the file.
      - When not set, C(~/.my.cnf) is read if it exists. A file given here must exist.
      - Set it to an empty string (V('')) to read no option file at all, as community.mysql does.
    type: path
  connect_timeout:
    description:
      - Seconds to wait for the TCP connection, and for each answer of the server during the login (handshake).
        A server that accepts the connection but never answers (frozen, overloaded) fails the host after about this
        long, never hangs.
      - Between 1 and 86400.
    type: int
    default: 30
  query_timeout:
    description:
      - Seconds every later statement may take. Client side, each read and write on the connection waits at most this
        long (a frozen server fails the host instead of hanging it); server side, the session's C(max_statement_time)
        (MariaDB) or C(max_execution_time) (MySQL) stops a statement that runs longer.
      - Waiting for the sweep lock may take longer, by the time the lock wait is allowed.
      - Between 1 and 86400.
    type: int
    default: 30
  ca_cert:
    description:
      - The CA certificate (PEM) that signed the server's certificate. Setting it turns TLS on and makes the server's
        certificate verified; the host name is checked too unless O(check_hostname=false).
      - Without O(ca_cert), O(client_cert) or O(check_hostname), TLS is off (PyMySQL would otherwise try TLS
        on every connection without verifying anything).
    type: path
    aliases: [ssl_ca]
  client_cert:
    description:
      - Client certificate (PEM) for TLS client authentication (accounts created C(REQUIRE X509)). Turns TLS on.
    type: path
    aliases: [ssl_cert]
  client_key:
    description: The private key (PEM) of O(client_cert).
    type: path
    aliases: [ssl_key]
  check_hostname:
    description:
      - Whether the server's certificate must name O(login_host). Needs O(ca_cert).
      - When not set, the host name is checked whenever O(ca_cert) is set.
    type: bool
  platform:
    description:
      - The service that runs the server, for what it does not allow (see the README, "Managed databases").
      - V(self_managed) turns the detection off; V(rds) (Amazon RDS and Aurora), V(cloudsql) (Google Cloud SQL) and
        V(azure) (Azure Database) name the service.
      - 'V(auto) detects it from the server, once per connection, first match wins: V(rds) when the procedure
        C(mysql.rds_kill) or the account C(rdsadmin) exists, V(cloudsql) for the account C(cloudsqladmin), V(azure) for the account
        C(azure_superuser) (accounts read in C(mysql.user) where the login may, else in the thread list); else V(self_managed).'
      - On a managed platform the service's own sessions (RDS C(rdsadmin), Cloud SQL C(cloudsqladmin), Azure
        C(azure_superuser)) are never ended, whatever the policy says (listed as protected, detail C(service)), and
        server-level timeouts fail before any change, naming the parameter group / database flag to set instead.
      - On RDS a login without CONNECTION ADMIN or SUPER (the master user) ends threads with C(CALL mysql.rds_kill) (the
        thread id) and cancels statements with C(CALL mysql.rds_kill_query) (the thread id), inside the guarded step; it needs EXECUTE on both.
    type: str
    default: auto
    choices: [auto, self_managed, rds, cloudsql, azure]
requirements:
  - PyMySQL (on the node that runs the module)
notes:
  - Our own connection carries the connection attribute C(program_name=dbhygiene.sessions) and is never touched.
  - 'The guarded kill, per victim: MariaDB re-reads each victim and KILLs it only if it is the same thread (id, user,
    client host:port, server start) in the planned state (same COMMAND and QUERY_ID: no statement since planning),
    both inside one server-side compound statement (C(BEGIN NOT ATOMIC)), up to 500 victims per round trip (idle
    victims in one loop, each re-read right before its own KILL); cancels use C(KILL QUERY ID) of the statement just
    re-read. MySQL re-reads each victim right before its own KILL (one round trip apart).'
  - 'Where C(performance_schema) has the C(events_statements_current) consumer and every statement instrument on (MariaDB
    ships that consumer off) and the login may read it, MariaDB reads idle victims on their latest statement event
    instead of C(information_schema.PROCESSLIST): the same proof (no command since planning), several times faster, and
    less time between the read and the KILL.'
  - 'Transaction state: a C(Sleep) thread is V(idle_in_transaction) or V(idle) as performance_schema''s transaction
    events say at that moment (C(events_transactions_current): exact, a bare C(BEGIN) and C(XA START) included), never
    from C(INFORMATION_SCHEMA.INNODB_TRX), a cache a monitoring agent can keep from refreshing. They need
    C(performance_schema=ON), the instrument C(transaction) and the consumer C(events_transactions_current) on (MariaDB
    ships both off: C(performance_schema_instrument=''transaction=ON''),
    C(performance_schema_consumer_events_transactions_current=ON)). Where they are off, or a thread is not instrumented,
    no C(Sleep) thread can be proven outside a transaction: it counts as V(idle_in_transaction) (an idle rule never
    ends it), its C(state_detail) says why, and RV(dbhygiene.sessions.mysql_session_info#module:server.transaction_state_exact)
    is false. The guard re-reads a victim planned V(idle) in those events right before its C(KILL), in the same
    server-side step, and ends it only if it is still outside a transaction.'
  - Passwords are sent as UTF-8 (PyMySQL alone would send Latin-1), so any password the server accepts works.
  - A session's C(key) holds the server's start time, so sessions of a server that restarted since planning are
    reported C(gone) and never ended.
  - MySQL and MariaDB do not record when a thread connected, so C(connected_at) and C(connected_seconds) are always
    null and a policy using C(connected_longer_than) fails before connecting.
"""
