"""Throwaway MariaDB servers: 127.0.2.N:3306, one data and socket directory each."""

import os
import shutil
import signal
import subprocess
import time

import pymysql

from dbfleet import state

OS_USER = "mysql"


def _binary(name):
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if not path:
        raise SystemExit("dbfleet: %s not found (make deps installs mariadb-server)" % name)
    return path


def describe(sdir, index, first):
    name = "mariadb%d" % index
    base = os.path.join(sdir, name)
    return {
        "name": name,
        "engine": "mysql",
        "flavour": "mariadb",
        "host": "127.0.2.%d" % (first + index - 1),
        "port": 3306,
        "base": base,
        "datadir": os.path.join(base, "data"),
        "socket_dir": os.path.join(base, "sock"),
        "socket": os.path.join(base, "sock", "mysqld.sock"),
        "log": os.path.join(base, "error.log"),
        "pidfile": os.path.join(base, "sock", "mysqld.pid"),
    }


def _template(sdir, user):
    tdir = os.path.join(sdir, "templates", "mariadb")
    if os.path.exists(tdir) and os.path.isdir(os.path.join(tdir, "mysql")) and os.path.exists(tdir + ".done"):
        return tdir
    if os.path.exists(tdir):
        shutil.rmtree(tdir)
    os.makedirs(tdir, mode=0o750)
    state.chown_tree(tdir, user)
    argv = [
        _binary("mariadb-install-db"),
        "--no-defaults",
        "--datadir=" + tdir,
        "--skip-test-db",
        "--auth-root-authentication-method=socket",
        "--skip-name-resolve",
    ]
    if state.is_root():
        argv.append("--user=" + user)
    state.run_as("root" if state.is_root() else user, argv)
    open(tdir + ".done", "w").close()
    return tdir


def prepare(sdir, server, pki, source=None):
    """Create the data directory of `server` if it has none yet: a copy of the template, or of
    `source` (the data directory of a stopped server: a replica's, dbfleet.replicas)."""
    user = state.service_user(OS_USER)
    if os.path.isdir(os.path.join(server["datadir"], "mysql")):
        return
    template = source or _template(sdir, user)
    os.makedirs(server["base"], mode=0o755, exist_ok=True)
    os.makedirs(server["socket_dir"], mode=0o755, exist_ok=True)
    shutil.copytree(template, server["datadir"], symlinks=True)
    key = os.path.join(server["base"], "server.key")
    shutil.copyfile(pki["servers"][server["host"]]["key"], key)
    shutil.copyfile(pki["servers"][server["host"]]["cert"], os.path.join(server["base"], "server.crt"))
    os.chmod(key, 0o600)
    state.chown_tree(server["base"], user)


def running_pid(server):
    pid = state.read_pid(server["pidfile"])
    return pid if pid and state.pid_alive(pid) else None


def start(server, pki, timeout=60):
    if running_pid(server):
        return False
    user = state.service_user(OS_USER)
    # A temporary directory per server: the listing of a long thread list writes temporary tables,
    # and servers sharing /tmp have seen theirs vanish under load (a failed listing, fail safe).
    tmpdir = os.path.join(server["base"], "tmp")
    os.makedirs(tmpdir, mode=0o750, exist_ok=True)
    state.chown_tree(tmpdir, user)
    argv = [
        _binary("mariadbd"),
        "--no-defaults",
        "--datadir=" + server["datadir"],
        "--tmpdir=" + tmpdir,
        "--socket=" + server["socket"],
        "--pid-file=" + server["pidfile"],
        "--bind-address=" + server["host"],
        "--port=%d" % server["port"],
        "--log-error=" + server["log"],
        "--skip-name-resolve",
        "--max-connections=300",
        "--innodb-buffer-pool-size=32M",
        "--innodb-flush-log-at-trx-commit=0",
        "--performance-schema=ON",  # connection attributes (program_name) live there
        # metadata-lock waits (an ALTER TABLE behind an open transaction): off by default in MariaDB
        "--performance-schema-instrument=wait/lock/metadata/sql/mdl=ON",
        # exact transaction state of Sleep threads (the driver's classification and its guard): off by default
        "--performance-schema-instrument=transaction=ON",
        "--performance-schema-consumer-events-transactions-current=ON",
        "--ssl-ca=" + pki["ca_cert"],
        "--ssl-cert=" + os.path.join(server["base"], "server.crt"),
        "--ssl-key=" + os.path.join(server["base"], "server.key"),
    ] + server.get("replication_args", [])  # a primary's binary log, a replica's settings (dbfleet.replicas)
    if state.is_root():
        argv.append("--user=" + user)
    with open(os.devnull, "rb") as devnull, open(server["log"] + ".stdout", "ab") as out:
        subprocess.Popen(argv, stdin=devnull, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            admin_connect(server).close()
            return True
        except pymysql.err.OperationalError:
            time.sleep(0.2)
    with open(server["log"]) as f:
        tail = f.read()[-3000:]
    raise RuntimeError("MariaDB %s did not start within %ds:\n%s" % (server["name"], timeout, tail))


def admin_connect(server, **kwargs):
    # OS root logs in as root through the unix_socket plugin: no password to keep.
    return pymysql.connect(
        unix_socket=server["socket"], user="root", ssl_disabled=True, program_name="dbfleet", **kwargs
    )


def admin_query(server, statement, params=None):
    """The rows of one statement run through the admin login."""
    conn = admin_connect(server, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(statement, params)
        return cur.fetchall()
    finally:
        conn.close()


def set_statement_events(server, enabled):
    """Switch performance_schema's events_statements_current consumer on or off (the servers
    start with it off, as MariaDB ships it; the driver's guard reads statement events where it
    is on). Returns whether it was on."""
    conn = admin_connect(server, autocommit=True)
    try:
        cur = conn.cursor()
        where = "WHERE NAME = 'events_statements_current'"
        cur.execute("SELECT ENABLED FROM performance_schema.setup_consumers " + where)
        (before,) = cur.fetchone()
        cur.execute(
            "UPDATE performance_schema.setup_consumers SET ENABLED = %s " + where, ("YES" if enabled else "NO",)
        )
        return before == "YES"
    finally:
        conn.close()


def set_transaction_events(server, enabled):
    """Switch performance_schema's transaction events (the instrument 'transaction' and the
    events_transactions_current consumer) on or off: the servers start with them on, so that
    the driver reads the exact transaction state of Sleep threads; off, it cannot prove any
    outside a transaction (the fail-safe path). Returns whether they were on."""
    conn = admin_connect(server, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT (SELECT ENABLED FROM performance_schema.setup_instruments WHERE NAME = 'transaction') = 'YES' "
            "AND (SELECT ENABLED FROM performance_schema.setup_consumers "
            "WHERE NAME = 'events_transactions_current') = 'YES'"
        )
        (before,) = cur.fetchone()
        value = "YES" if enabled else "NO"
        cur.execute(
            "UPDATE performance_schema.setup_instruments SET ENABLED = %s, TIMED = %s WHERE NAME = 'transaction'",
            (value, value),
        )
        cur.execute(
            "UPDATE performance_schema.setup_consumers SET ENABLED = %s WHERE NAME = 'events_transactions_current'",
            (value,),
        )
        return bool(before)
    finally:
        conn.close()


def bootstrap(server, passwords):
    conn = admin_connect(server, autocommit=True)
    try:
        cur = conn.cursor()
        accounts = [
            (state.ADMIN_USER, passwords[state.ADMIN_USER], ["ALL PRIVILEGES"], True, ""),
            (state.HYGIENE_USER, passwords[state.HYGIENE_USER], ["PROCESS", "CONNECTION ADMIN"], False, ""),
            (
                state.HYGIENE_CERT_USER,
                passwords[state.HYGIENE_USER],
                ["PROCESS", "CONNECTION ADMIN"],
                False,
                " REQUIRE X509",
            ),
            (state.NOPRIV_USER, passwords[state.NOPRIV_USER], [], False, ""),
        ] + [(app, passwords["app"], [], False, "") for app in state.APP_USERS]
        for user, password, privs, grant_option, require in accounts:
            for host in ("%", "localhost"):
                cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
                cur.execute("ALTER USER %s@%s IDENTIFIED BY %s" + require, (user, host, password))
                if privs:
                    cur.execute(
                        "GRANT "
                        + ", ".join(privs)
                        + " ON *.* TO %s@%s"
                        + (" WITH GRANT OPTION" if grant_option else ""),
                        (user, host),
                    )
        # What the MySQL modules read besides PROCESS (documented least privilege): which
        # accounts hold SUPER (a column grant, no password hashes), program_name, the
        # metadata-lock waits, the statement events the guard reads where they are on
        # (the servers run with that consumer off, as MariaDB ships it; tests switch it on),
        # and the transaction events (the exact transaction state; the servers run with them on).
        for user in (state.HYGIENE_USER, state.HYGIENE_CERT_USER):
            for host in ("%", "localhost"):
                cur.execute("GRANT SELECT (User, Host, Super_priv) ON mysql.user TO %s@%s", (user, host))
                for table in (
                    "session_connect_attrs",
                    "metadata_locks",
                    "threads",
                    "events_statements_current",
                    "events_transactions_current",
                    "setup_consumers",
                    "setup_instruments",
                ):
                    cur.execute("GRANT SELECT ON performance_schema.%s TO %%s@%%s" % table, (user, host))
        cur.execute("CREATE DATABASE IF NOT EXISTS `%s`" % state.APP_DATABASE)
        for app in state.APP_USERS:
            for host in ("%", "localhost"):
                cur.execute("GRANT ALL ON `%s`.* TO %%s@%%s" % state.APP_DATABASE, (app, host))
    finally:
        conn.close()


def stop(server, timeout=60):
    pid = running_pid(server)
    if not pid:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not state.pid_alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    return True
