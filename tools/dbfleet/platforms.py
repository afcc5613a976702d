"""A fleet server dressed as a managed service (RDS, Cloud SQL, Azure), as extra roles.

`emulate(fleet, server_name, platform)` creates on a running fleet server, idempotently:

* the service's own superuser (RDS `rdsadmin`, Cloud SQL `cloudsqladmin`, Azure
  `azure_superuser`), a login the tests open sessions with;
* the service's admin login with exactly the rights the service documents for it:
  PostgreSQL: a member of the service's admin role (`rds_superuser`, `cloudsqlsuperuser`,
  `azure_pg_admin`: pg_signal_backend, pg_read_all_stats, pg_monitor) with CREATEROLE and
  CREATEDB, no superuser; MariaDB (RDS): the master user's global privileges (no SUPER,
  no CONNECTION ADMIN) and EXECUTE on
* (RDS MariaDB) `mysql.rds_kill(id)` / `mysql.rds_kill_query(id)`, SQL SECURITY DEFINER
  procedures that KILL a thread unless it is the service user's (error 1095, as RDS).

`remove(fleet, server_name, platform)` drops all of it again: the markers make `platform:
auto` detect the service on that server, so a test dresses a shared server only for as long
as it runs. Command line: `python -m dbfleet platform --server pg1 --platform rds [--remove]`.
"""

from psycopg2 import sql

from dbfleet import mariadb, postgres

PLATFORMS = ("rds", "cloudsql", "azure")
# platform: (service superuser, admin role)
POSTGRESQL = {
    "rds": ("rdsadmin", "rds_superuser"),
    "cloudsql": ("cloudsqladmin", "cloudsqlsuperuser"),
    "azure": ("azure_superuser", "azure_pg_admin"),
}
ADMIN_ROLE_RIGHTS = ("pg_signal_backend", "pg_read_all_stats", "pg_monitor")
MARIADB = {"rds": "rdsadmin"}
# The master user of RDS for MariaDB / MySQL 8.0.35 and older (no SUPER, no CONNECTION ADMIN).
RDS_MASTER_PRIVILEGES = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, INDEX, ALTER, SHOW DATABASES, "
    "CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, BINLOG MONITOR, CREATE VIEW, SHOW VIEW, "
    "CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER"
)
PASSWORD = "dbfleet-managed-Secret1"
HOSTS = ("%", "localhost")
_RDS_PROCEDURE = """CREATE DEFINER = 'root'@'localhost' PROCEDURE mysql.{name}(IN thread BIGINT UNSIGNED)
SQL SECURITY DEFINER
BEGIN
  IF EXISTS (SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = thread AND USER = '{service}') THEN
    SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1095, MESSAGE_TEXT = 'You are not owner of thread';
  END IF;
  KILL {what} thread;
END"""


def admin_login(platform):
    """The name of the emulated service's admin login."""
    return "dbfleet_%s_admin" % platform


def service_user(engine, platform):
    return POSTGRESQL[platform][0] if engine == "postgresql" else MARIADB[platform]


def emulate(fleet, server_name, platform):
    """Dress `server_name` as `platform`; {admin, service, password} of its logins."""
    server = fleet.server(server_name)
    if server["engine"] == "postgresql":
        _emulate_postgresql(server, platform)
    else:
        _emulate_mariadb(server, platform)
    return {"admin": admin_login(platform), "service": service_user(server["engine"], platform), "password": PASSWORD}


def _emulate_postgresql(server, platform):
    service, admin_role = POSTGRESQL[platform]
    conn = postgres.admin_connect(server)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        for name, options in ((service, "SUPERUSER LOGIN"), (admin_role, "NOLOGIN CREATEROLE CREATEDB")):
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(name)))
        cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(service)), (PASSWORD,))
        cur.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(r) for r in ADMIN_ROLE_RIGHTS), sql.Identifier(admin_role)
            )
        )
        login = admin_login(platform)
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(
            sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER CREATEROLE CREATEDB PASSWORD %s").format(sql.Identifier(login)),
            (PASSWORD,),
        )
        cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(admin_role), sql.Identifier(login)))
    finally:
        conn.close()


def _emulate_mariadb(server, platform):
    if platform not in MARIADB:
        raise ValueError("MariaDB is emulated as rds only, not %r" % platform)
    service = MARIADB[platform]
    login = admin_login(platform)
    conn = mariadb.admin_connect(server, autocommit=True)
    try:
        cur = conn.cursor()
        for host in HOSTS:
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (service, host, PASSWORD))
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (service, host))
        # One master account, as RDS makes it ('%'): a drain never locks the login it runs as.
        cur.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (login, PASSWORD))
        cur.execute("GRANT " + RDS_MASTER_PRIVILEGES + " ON *.* TO %s@'%%' WITH GRANT OPTION", (login,))
        for name, what in (("rds_kill", "CONNECTION"), ("rds_kill_query", "QUERY")):
            cur.execute("DROP PROCEDURE IF EXISTS mysql.%s" % name)
            cur.execute(_RDS_PROCEDURE.format(name=name, what=what, service=service))
    finally:
        conn.close()


def remove(fleet, server_name, platform):
    """Undo emulate(): the logins, the admin role, the procedures (their sessions are ended first)."""
    server = fleet.server(server_name)
    if server["engine"] == "postgresql":
        service, admin_role = POSTGRESQL[platform]
        conn = postgres.admin_connect(server)
        conn.autocommit = True
        try:
            cur = conn.cursor()
            names = [admin_login(platform), service, admin_role]
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)", (names,))
            for name in names:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
                if cur.fetchone():
                    cur.execute("SELECT datname FROM pg_database WHERE datdba = %s::regrole", (name,))
                    for (db,) in cur.fetchall():
                        cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
                    for db in _databases(cur):
                        _drop_owned(server, db, name)
                    cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return
    conn = mariadb.admin_connect(server, autocommit=True)
    try:
        cur = conn.cursor()
        names = (admin_login(platform), MARIADB[platform])
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER IN (%s, %s)", names)
        for (thread,) in cur.fetchall():
            try:
                cur.execute("KILL CONNECTION %s", (thread,))
            except Exception:  # noqa: BLE001 -- gone meanwhile
                pass
        for name in names:
            for host in HOSTS:
                cur.execute("DROP USER IF EXISTS %s@%s", (name, host))
        for name in ("rds_kill", "rds_kill_query"):
            cur.execute("DROP PROCEDURE IF EXISTS mysql.%s" % name)
    finally:
        conn.close()


def _databases(cur):
    cur.execute("SELECT datname FROM pg_database WHERE datallowconn")
    return [row[0] for row in cur.fetchall()]


def _drop_owned(server, db, role):
    conn = postgres.admin_connect(server, db)
    conn.autocommit = True
    try:
        conn.cursor().execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
    finally:
        conn.close()
