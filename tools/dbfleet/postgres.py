"""Throwaway PostgreSQL servers: 127.0.1.N:5432, one data and socket directory each."""

import os
import shutil
import signal
import time

import psycopg2
from psycopg2 import sql

from dbfleet import pgbin, state

OS_USER = "postgres"
# Each server's max_connections (a benchmark may raise it for a run: max_connections()).
MAX_CONNECTIONS = 200


def bindir(server=None):
    """The binaries `server` runs (chosen at `up`: dbfleet.pgbin); without one, the default's."""
    if server and server.get("bindir"):
        return server["bindir"]
    return pgbin.bindir()


def describe(sdir, index, first, bindir_=None):
    name = "pg%d" % index
    base = os.path.join(sdir, name)
    return {
        "name": name,
        "engine": "postgresql",
        "bindir": bindir_ or bindir(),
        "host": "127.0.1.%d" % (first + index - 1),
        "port": 5432,
        "base": base,
        "datadir": os.path.join(base, "data"),
        "socket_dir": os.path.join(base, "sock"),
        "log": os.path.join(base, "server.log"),
        "pidfile": os.path.join(base, "data", "postmaster.pid"),
    }


def _template(sdir, server, user):
    """initdb once; every server's data directory is a copy of it (faster than N initdb)."""
    tdir = os.path.join(sdir, "templates", "postgresql")
    if os.path.exists(os.path.join(tdir, "PG_VERSION")):
        return tdir
    os.makedirs(os.path.dirname(tdir), exist_ok=True)
    if os.path.exists(tdir):
        shutil.rmtree(tdir)
    os.makedirs(tdir, mode=0o700)
    state.chown_tree(tdir, user)
    state.run_as(
        user,
        [
            os.path.join(bindir(server), "initdb"),
            "-D",
            tdir,
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
    )
    return tdir


def _configure(server, pki, user, extra=None):
    """Write the server's settings (postgresql.auto.conf: `extra` last), its pg_hba.conf and TLS files."""
    key = os.path.join(server["base"], "server.key")
    crt = os.path.join(server["base"], "server.crt")
    shutil.copyfile(pki["servers"][server["host"]]["key"], key)
    shutil.copyfile(pki["servers"][server["host"]]["cert"], crt)
    os.chmod(key, 0o600)
    conf = os.path.join(server["datadir"], "postgresql.auto.conf")
    settings = {
        "listen_addresses": server["host"],
        "port": str(server["port"]),
        "unix_socket_directories": server["socket_dir"],
        "unix_socket_permissions": "0770",
        "max_connections": str(MAX_CONNECTIONS),
        "shared_buffers": "16MB",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "ssl": "on",
        "ssl_cert_file": crt,
        "ssl_key_file": key,
        "ssl_ca_file": pki["ca_cert"],
        "password_encryption": "scram-sha-256",
        "log_line_prefix": "%m [%p] %q%u@%d ",
    }
    settings.update(extra or {})
    with open(conf, "w") as f:
        for k, v in settings.items():
            f.write("%s = '%s'\n" % (k, v))
    hba = os.path.join(server["datadir"], "pg_hba.conf")
    with open(hba, "w") as f:
        f.write(
            "local all all trust\n"
            "hostssl all %s 127.0.0.0/8 cert\n"
            "host all all 127.0.0.0/8 scram-sha-256\n" % state.HYGIENE_CERT_USER
        )
    state.chown_tree(server["base"], user)


def prepare(sdir, server, pki):
    """Create the data directory of `server` if it has none yet."""
    user = state.service_user(OS_USER)
    if os.path.exists(os.path.join(server["datadir"], "PG_VERSION")):
        return
    template = _template(sdir, server, user)
    os.makedirs(server["base"], mode=0o755, exist_ok=True)
    os.makedirs(server["socket_dir"], mode=0o770, exist_ok=True)
    shutil.copytree(template, server["datadir"], symlinks=True)
    _configure(server, pki, user)


def running_pid(server):
    pid = state.read_pid(server["pidfile"])
    return pid if pid and state.pid_alive(pid) else None


def start(server):
    if running_pid(server):
        return False
    user = state.service_user(OS_USER)
    state.run_as(
        user,
        [
            os.path.join(bindir(server), "pg_ctl"),
            "-D",
            server["datadir"],
            "-l",
            server["log"],
            "-w",
            "-t",
            "60",
            "start",
        ],
    )
    return True


def admin_connect(server, dbname="postgres"):
    return psycopg2.connect(
        host=server["socket_dir"], port=server["port"], user="postgres", dbname=dbname, application_name="dbfleet"
    )


def bootstrap(server, passwords):
    """Create the fleet's logins and database (idempotent)."""
    conn = admin_connect(server)
    conn.autocommit = True
    try:
        cur = conn.cursor()

        def ensure_role(name, password, extra):
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            stmt = sql.SQL("{} ROLE {} LOGIN " + extra + " PASSWORD %s").format(sql.SQL(verb), sql.Identifier(name))
            cur.execute(stmt, (password,))

        ensure_role(state.ADMIN_USER, passwords[state.ADMIN_USER], "SUPERUSER")
        ensure_role(state.HYGIENE_USER, passwords[state.HYGIENE_USER], "NOSUPERUSER")
        ensure_role(state.HYGIENE_CERT_USER, passwords[state.HYGIENE_USER], "NOSUPERUSER")
        ensure_role(state.NOPRIV_USER, passwords[state.NOPRIV_USER], "NOSUPERUSER")
        for app in state.APP_USERS:
            ensure_role(app, passwords["app"], "NOSUPERUSER")
        for login in (state.HYGIENE_USER, state.HYGIENE_CERT_USER):
            cur.execute(sql.SQL("GRANT pg_signal_backend, pg_read_all_stats TO {}").format(sql.Identifier(login)))
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (state.APP_DATABASE,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER app").format(sql.Identifier(state.APP_DATABASE)))
    finally:
        conn.close()


def stop(server, timeout=30):
    """Stop the server whose pid file we wrote. Fast shutdown, then immediate."""
    pid = running_pid(server)
    if not pid:
        return False
    os.kill(pid, signal.SIGINT)  # fast shutdown: disconnects clients, clean stop
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not state.pid_alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGQUIT)
    time.sleep(1)
    return True


def set_max_connections(server, value):
    """ALTER SYSTEM SET max_connections and restart the server (benchmarks beyond the
    fleet's MAX_CONNECTIONS; they put it back with the same call)."""
    conn = admin_connect(server)
    conn.autocommit = True
    try:
        conn.cursor().execute("ALTER SYSTEM SET max_connections = %s", (str(value),))
    finally:
        conn.close()
    state.run_as(
        state.service_user(OS_USER),
        [os.path.join(bindir(server), "pg_ctl"), "-D", server["datadir"], "-l", server["log"], "-w", "restart"],
    )
