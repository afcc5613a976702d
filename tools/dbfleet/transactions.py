"""Open transactions of every shape on MariaDB, and a monitoring agent that starves InnoDB's
transaction cache: what tests/integration/test_mysql_transactions.py and
tests/reliability/test_transaction_state.py share.

INFORMATION_SCHEMA.INNODB_TRX is served from InnoDB's trx_i_s cache, refreshed only for a
reader that comes 100 ms after the last read (every read counts): a client reading it every
50 ms keeps it from ever being refreshed, so a transaction opened meanwhile never shows there.
"""

import threading
import time

from dbfleet import mariadb

# name -> the statements that leave a session Sleep in an open transaction ({table}: an InnoDB
# table with a row whose id is the session's thread id, {xid}: a unique XA id).
OPEN_SHAPES = {
    "bare_begin": ["BEGIN"],
    "begin_select_1": ["BEGIN", "SELECT 1"],
    "begin_select": ["BEGIN", "SELECT n FROM {table} WHERE id = {id}"],
    "uncommitted_update": ["BEGIN", "UPDATE {table} SET n = n + 1 WHERE id = {id}"],
    "select_for_update": ["BEGIN", "SELECT n FROM {table} WHERE id = {id} FOR UPDATE"],
    "autocommit_0_dml": ["SET autocommit = 0", "UPDATE {table} SET n = n + 1 WHERE id = {id}"],
    "autocommit_0_select": ["SET autocommit = 0", "SELECT n FROM {table} WHERE id = {id}"],
    "consistent_snapshot": ["START TRANSACTION WITH CONSISTENT SNAPSHOT"],
    "read_only": ["START TRANSACTION READ ONLY"],
    "xa_start": ["XA START '{xid}'"],
    "xa_update_ended": ["XA START '{xid}'", "UPDATE {table} SET n = n + 1 WHERE id = {id}", "XA END '{xid}'"],
}
# ... and shapes that leave it Sleep outside any transaction.
CLOSED_SHAPES = {
    "never": [],
    "after_autocommit_update": ["UPDATE {table} SET n = n + 1 WHERE id = {id}"],
    "after_commit": ["BEGIN", "UPDATE {table} SET n = n + 1 WHERE id = {id}", "COMMIT"],
    "after_rollback": ["BEGIN", "UPDATE {table} SET n = n + 1 WHERE id = {id}", "ROLLBACK"],
    "autocommit_0_committed": ["SET autocommit = 0", "UPDATE {table} SET n = n + 1 WHERE id = {id}", "COMMIT"],
}
# The shape a session takes after planning, in the guard tests (one of each kind of start).
LATE_STARTS = ["bare_begin", "uncommitted_update", "autocommit_0_dml", "xa_start", "consistent_snapshot"]


def make_table(cursor, name):
    cursor.execute(f"CREATE TABLE IF NOT EXISTS appdb.{name} (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB")


def prepare(session, table):
    """A held session (dbfleet.holder, MariaDB, database appdb) given a row of its own in `table`
    (id = its thread id), for the shapes; returns it."""
    session.table = table
    session.execute(f"INSERT INTO {table} VALUES ({int(session.id)}, 0) ON DUPLICATE KEY UPDATE n = 0")
    return session


def take(session, shape):
    """Run the statements of a shape (OPEN_SHAPES / CLOSED_SHAPES) on a prepared session."""
    statements = OPEN_SHAPES.get(shape, CLOSED_SHAPES.get(shape))
    for statement in statements:
        session.execute(statement.format(table=session.table, id=int(session.id), xid=f"x{int(session.id)}-{shape}"))


def in_transaction(session):
    """@@in_transaction of the session itself (a statement of its own: it leaves Sleep)."""
    return bool(session.execute("SELECT @@in_transaction")[0][0])


class InnodbTrxPoller(object):
    """A monitoring agent: reads INFORMATION_SCHEMA.INNODB_TRX every `interval` seconds on a
    thread of its own, until stopped or `limit` seconds (bounded: a test that dies early never
    leaves it running). `reads` counts its reads."""

    def __init__(self, fleet, server, interval=0.05, limit=300):
        self.server = fleet.server(server)
        self.interval = interval
        self.limit = limit
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = mariadb.admin_connect(self.server, autocommit=True)
        deadline = time.monotonic() + self.limit
        try:
            cursor = conn.cursor()
            while not self._stop.is_set() and time.monotonic() < deadline:
                cursor.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX")
                cursor.fetchall()
                self.reads += 1
                self._stop.wait(self.interval)
        finally:
            conn.close()

    def __enter__(self):
        self._thread.start()
        time.sleep(3 * self.interval)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        return False


def innodb_trx_ids(fleet, server):
    """The thread ids INNODB_TRX lists right now (from its cache, as any reader sees it)."""
    with mariadb.admin_connect(fleet.server(server)) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX")
        return set(row[0] for row in cursor.fetchall())
