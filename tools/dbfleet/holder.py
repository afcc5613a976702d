"""Open database sessions of a given kind and hold them, for tests and the demo.

    s = open_session(fleet, "pg1", "idle_in_transaction", user="app", application="ghost")
    s.id        # backend pid / thread id, as the server reports it
    s.alive()   # is the session still connected (asked through the admin login)
    s.age()     # seconds in its current state, as the server reports it
    s.close()

Kinds: idle, idle_in_transaction, idle_in_transaction_aborted (PostgreSQL),
active (a long sleep statement), active_ignores_cancel (a statement that swallows
cancel requests, ended only by terminate: a DO block on PostgreSQL, a stored
procedure with a CONTINUE handler on MariaDB), and a lock chain:
row_lock_holder (a transaction left open that has updated the row `lock_key` of the
table dbfleet_locks) and row_lock_waiter (an UPDATE of that same row, waiting for the
holder; it completes, and the session goes idle, once the holder is gone). Open the
holder first; each waiter after the first waits behind the ones before it too.
long_read: a long statement reading the table dbfleet_report (it holds the table's
shared lock while it runs); ddl_waiter: an ALTER TABLE of dbfleet_report (a no-op
change of a column default) waiting behind it (PostgreSQL: for the table lock;
MariaDB: for the metadata lock). Open the long_read first.
"""

import threading
import time

import psycopg2
import pymysql

from dbfleet import mariadb, postgres, state

KINDS = (
    "idle",
    "idle_in_transaction",
    "idle_in_transaction_aborted",
    "active",
    "active_ignores_cancel",
    "row_lock_holder",
    "row_lock_waiter",
    "long_read",
    "ddl_waiter",
)
REPORT_TABLE = "dbfleet_report"
_DDL = "ALTER TABLE %s ALTER COLUMN n SET DEFAULT 0" % REPORT_TABLE
LOCK_TABLE = "dbfleet_locks"

_PG_IGNORE_CANCEL = (
    "DO $$BEGIN LOOP BEGIN PERFORM pg_sleep(%d); EXIT; EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END$$"
)

_MY_IGNORE_CANCEL = (
    "CREATE PROCEDURE IF NOT EXISTS dbfleet_ignores_cancel(IN seconds INT) BEGIN "
    "DECLARE i INT DEFAULT 0; DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END; "
    "WHILE i < seconds DO DO SLEEP(1); SET i = i + 1; END WHILE; END"
)


def live(server, ids):
    """{id: raw state} of the given session ids still on `server` (asked through the admin login).

    The raw state is pg_stat_activity.state on PostgreSQL, PROCESSLIST.COMMAND on MariaDB.
    """
    ids = list(ids)
    if not ids:
        return {}
    if server["engine"] == "postgresql":
        conn = postgres.admin_connect(server)
        sql, params = "SELECT pid, state FROM pg_stat_activity WHERE pid = ANY(%s)", (ids,)
    else:
        conn = mariadb.admin_connect(server)
        sql = "SELECT ID, COMMAND FROM information_schema.PROCESSLIST WHERE ID IN (%s)" % ", ".join(["%s"] * len(ids))
        params = tuple(ids)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        return dict(cur.fetchall())
    finally:
        conn.close()


class HeldSession(object):
    def __init__(self, server, kind, conn, session_id, user, application):
        self.server = server
        self.engine = server["engine"]
        self.kind = kind
        self.conn = conn
        self.id = session_id
        self.user = user
        self.application = application
        self.thread = None
        self.error = None

    def _run_background(self, statement):
        def target():
            try:
                cur = self.conn.cursor()
                cur.execute(statement)
                cur.fetchall()
            except Exception as exc:  # the session being ended is the expected way out
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def alive(self):
        """True when the server still lists this session (asked through the admin login)."""
        return self.id in live(self.server, [self.id])

    def state(self):
        """The raw server-side state: pg_stat_activity.state / PROCESSLIST.COMMAND, None if gone."""
        return live(self.server, [self.id]).get(self.id)

    def age(self):
        """Seconds this session has been in its current state, as the server reports it
        (PostgreSQL: since pg_stat_activity.state_change; MariaDB: PROCESSLIST.TIME_MS);
        None if it is gone. The age a policy's *_longer_than compares."""
        rows = _ask(
            self,
            "SELECT EXTRACT(EPOCH FROM clock_timestamp() - state_change) FROM pg_stat_activity WHERE pid = %s",
            "SELECT TIME_MS / 1000 FROM information_schema.PROCESSLIST WHERE ID = %s",
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def execute(self, statement):
        """Run a statement on the held session itself (e.g. to make it 'wake up')."""
        cur = self.conn.cursor()
        cur.execute(statement)
        try:
            return cur.fetchall()
        except Exception:
            return None

    def close(self):
        """End the session, whatever it is doing, and free the client side."""
        if self.alive():
            if self.engine == "postgresql":
                conn = postgres.admin_connect(self.server)
                conn.autocommit = True
                try:
                    conn.cursor().execute("SELECT pg_terminate_backend(%s)", (self.id,))
                finally:
                    conn.close()
            else:
                conn = mariadb.admin_connect(self.server, autocommit=True)
                try:
                    conn.cursor().execute("KILL CONNECTION %d" % int(self.id))
                except pymysql.err.OperationalError:
                    pass
                finally:
                    conn.close()
        if self.thread is not None:
            self.thread.join(10)
        try:
            self.conn.close()
        except Exception:
            pass


def _ask(held, postgresql_sql, mysql_sql):
    """The rows of one query about the held session (its id the one parameter), through the
    admin login of its engine."""
    if held.engine == "postgresql":
        conn, sql = postgres.admin_connect(held.server), postgresql_sql
    else:
        conn, sql = mariadb.admin_connect(held.server), mysql_sql
    try:
        cur = conn.cursor()
        cur.execute(sql, (held.id,))
        return cur.fetchall()
    finally:
        conn.close()


def waiting_for_lock(held):
    """True when the held session waits for a lock (asked through the admin login)."""
    return bool(
        _ask(
            held,
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
            "SELECT 1 FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = %s AND trx_state = 'LOCK WAIT'",
        )
    )


def _wait_lock(held, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if waiting_for_lock(held):
            return
        if held.thread is not None and not held.thread.is_alive():
            raise RuntimeError(
                "session %s on %s never waited for the lock: %s" % (held.id, held.server["name"], held.error)
            )
        # InnoDB refreshes INNODB_TRX only when nobody read it in the last 100 ms: never poll faster.
        time.sleep(0.05 if held.engine == "postgresql" else 0.15)
    raise RuntimeError("session %s on %s never waited for a lock" % (held.id, held.server["name"]))


def _wait_mdl(held, timeout=10):
    """MariaDB: until the held session waits for a metadata lock (PROCESSLIST.STATE)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        conn = mariadb.admin_connect(held.server)
        try:
            cur = conn.cursor()
            cur.execute("SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = %s", (held.id,))
            row = cur.fetchone()
        finally:
            conn.close()
        if row and "metadata lock" in (row[0] or ""):
            return
        time.sleep(0.05)
    raise RuntimeError("session %s on %s never waited for a metadata lock" % (held.id, held.server["name"]))


def _lock_row(cur, engine, lock_key):
    """Make sure the row `lock_key` of the lock table exists (autocommit)."""
    if engine == "postgresql":
        for _attempt in range(5):
            try:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS %s (name text PRIMARY KEY, n int NOT NULL DEFAULT 0)" % LOCK_TABLE
                )
                break
            except psycopg2.IntegrityError:  # two sessions creating it at once
                time.sleep(0.1)
        cur.execute("INSERT INTO %s (name) VALUES (%%s) ON CONFLICT DO NOTHING" % LOCK_TABLE, (lock_key,))
    else:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS %s (name VARCHAR(190) PRIMARY KEY, n INT NOT NULL DEFAULT 0) ENGINE=InnoDB"
            % LOCK_TABLE
        )
        cur.execute("INSERT IGNORE INTO %s (name) VALUES (%%s)" % LOCK_TABLE, (lock_key,))


def _report_table(cur, engine):
    """Make sure the table of long_read / ddl_waiter exists with its one row (autocommit)."""
    if engine == "postgresql":
        try:
            cur.execute("CREATE TABLE IF NOT EXISTS %s (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)" % REPORT_TABLE)
        except psycopg2.IntegrityError:  # another session created it meanwhile
            pass
        cur.execute("INSERT INTO %s (id) VALUES (1) ON CONFLICT DO NOTHING" % REPORT_TABLE)
    else:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS %s (id INT PRIMARY KEY, n INT NOT NULL DEFAULT 0) ENGINE=InnoDB" % REPORT_TABLE
        )
        cur.execute("INSERT IGNORE INTO %s (id) VALUES (1)" % REPORT_TABLE)


def _wait_state(held, wanted, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if held.state() in wanted:
            return
        time.sleep(0.05)
    raise RuntimeError("session %s on %s never reached %s" % (held.id, held.server["name"], wanted))


def open_session(
    fleet,
    server_name,
    kind,
    user="app",
    application=None,
    database=None,
    seconds=3600,
    password=None,
    local=False,
    lock_key="dbfleet",
):
    """Open one session on `server_name` and put it in state `kind`; return a HeldSession.

    `local=True` connects through the unix socket (client address None) instead of TCP.
    `lock_key`: the row the row_lock_* kinds lock (one chain per key).
    """
    if kind not in KINDS:
        raise ValueError("kind must be one of %s, not %r" % (", ".join(KINDS), kind))
    server = fleet.server(server_name)
    password = password if password is not None else fleet.password(user)
    application = application if application is not None else "dbfleet-" + kind
    if server["engine"] == "postgresql":
        return _open_pg(
            server, kind, user, password, application, database or state.APP_DATABASE, seconds, local, lock_key
        )
    return _open_mysql(
        server, kind, user, password, application, database or state.APP_DATABASE, seconds, local, lock_key
    )


def _open_pg(server, kind, user, password, application, database, seconds, local, lock_key):
    conn = psycopg2.connect(
        host=server["socket_dir"] if local else server["host"],
        port=server["port"],
        user=user,
        password=password,
        dbname=database,
        application_name=application,
        sslmode="disable",
    )
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    held = HeldSession(server, kind, conn, cur.fetchone()[0], user, application)
    if kind == "idle":
        _wait_state(held, ("idle",))
    elif kind == "idle_in_transaction":
        cur.execute("BEGIN")
        cur.execute("SELECT txid_current()")
        _wait_state(held, ("idle in transaction",))
    elif kind == "idle_in_transaction_aborted":
        cur.execute("BEGIN")
        try:
            cur.execute("SELECT 1/0")
        except psycopg2.Error:
            pass
        _wait_state(held, ("idle in transaction (aborted)",))
    elif kind == "active":
        held._run_background("SELECT pg_sleep(%d)" % int(seconds))
        _wait_state(held, ("active",))
    elif kind == "active_ignores_cancel":
        held._run_background(_PG_IGNORE_CANCEL % int(seconds))
        _wait_state(held, ("active",))
    elif kind == "row_lock_holder":
        _lock_row(cur, "postgresql", lock_key)
        cur.execute("BEGIN")
        cur.execute("UPDATE %s SET n = n + 1 WHERE name = %%s" % LOCK_TABLE, (lock_key,))
        _wait_state(held, ("idle in transaction",))
    elif kind == "row_lock_waiter":
        held._run_background(
            cur.mogrify("UPDATE %s SET n = n + 1 WHERE name = %%s RETURNING n" % LOCK_TABLE, (lock_key,)).decode()
        )
        _wait_lock(held)
    elif kind == "long_read":
        _report_table(cur, "postgresql")
        held._run_background("SELECT pg_sleep(%d) FROM %s LIMIT 1" % (int(seconds), REPORT_TABLE))
        _wait_state(held, ("active",))
    elif kind == "ddl_waiter":
        held._run_background(_DDL + "; SELECT 1")
        _wait_lock(held)
    return held


def _open_mysql(server, kind, user, password, application, database, seconds, local, lock_key):
    if kind == "idle_in_transaction_aborted":
        raise ValueError("kind %r exists only on PostgreSQL" % kind)
    params = dict(
        user=user, password=password, database=database, program_name=application, ssl_disabled=True, autocommit=True
    )
    if local:
        params["unix_socket"] = server["socket"]
    else:
        params.update(host=server["host"], port=server["port"])
    conn = pymysql.connect(**params)
    cur = conn.cursor()
    cur.execute("SELECT CONNECTION_ID()")
    held = HeldSession(server, kind, conn, cur.fetchone()[0], user, application)
    if kind == "idle_in_transaction":
        cur.execute("CREATE TABLE IF NOT EXISTS dbfleet_held (id INT PRIMARY KEY) ENGINE=InnoDB")
        cur.execute("START TRANSACTION")
        cur.execute("INSERT INTO dbfleet_held VALUES (%s) ON DUPLICATE KEY UPDATE id = id", (held.id,))
    elif kind == "active":
        held._run_background("SELECT SLEEP(%d)" % int(seconds))
        _wait_state(held, ("Query",))
    elif kind == "active_ignores_cancel":
        # KILL QUERY interrupts the running SLEEP; the CONTINUE handler swallows
        # the interruption and the loop goes on: only KILL CONNECTION ends it.
        cur.execute(_MY_IGNORE_CANCEL)
        held._run_background("CALL dbfleet_ignores_cancel(%d)" % int(seconds))
        _wait_state(held, ("Query",))
    elif kind == "row_lock_holder":
        _lock_row(cur, "mysql", lock_key)
        cur.execute("START TRANSACTION")
        cur.execute("UPDATE %s SET n = n + 1 WHERE name = %%s" % LOCK_TABLE, (lock_key,))
    elif kind == "row_lock_waiter":
        # Wait as long as the session is held, not innodb_lock_wait_timeout's 50 s.
        cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (max(1, min(int(seconds), 1073741824)),))
        held._run_background("UPDATE %s SET n = n + 1 WHERE name = %s" % (LOCK_TABLE, conn.escape(lock_key)))
        _wait_lock(held)
    elif kind == "long_read":
        _report_table(cur, "mysql")
        held._run_background("SELECT SLEEP(%d) FROM %s LIMIT 1" % (int(seconds), REPORT_TABLE))
        _wait_state(held, ("Query",))
    elif kind == "ddl_waiter":
        cur.execute("SET SESSION lock_wait_timeout = %s", (max(1, min(int(seconds), 31536000)),))
        held._run_background(_DDL)
        _wait_mdl(held)
    return held
