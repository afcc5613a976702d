# -*- coding: utf-8 -*-
"""Fixtures and helpers of the MySQL/MariaDB tests (loaded with `pytest_plugins`).

Every test opens its own sessions under an application name (program_name)
starting with its own `my_tag`, or with a login of its own, scopes every
policy to them and closes them at teardown: other tests use the same servers.
"""

import contextlib
import threading
import time
import uuid

import pymysql
import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import driver as my_driver
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.guard import IDLE_PROOF_SECONDS
from dbfleet import holder, mariadb

SERVER = "mariadb1"
# Quotes of three kinds, placeholders, a comment, statement separators, a backslash.
HOSTILE = 'it\'s "odd" `x`; %s %(x)s -- ;KILL 1; \\'
LEAST_PRIVILEGE_GRANTS = (
    "GRANT PROCESS, CONNECTION ADMIN ON *.* TO %s@%s",
    "GRANT SELECT (User, Host, Super_priv) ON mysql.user TO %s@%s",
    "GRANT SELECT ON performance_schema.session_connect_attrs TO %s@%s",
    "GRANT SELECT ON performance_schema.metadata_locks TO %s@%s",
    "GRANT SELECT ON performance_schema.threads TO %s@%s",
    "GRANT SELECT ON performance_schema.events_transactions_current TO %s@%s",
    "GRANT SELECT ON performance_schema.setup_consumers TO %s@%s",
    "GRANT SELECT ON performance_schema.setup_instruments TO %s@%s",
)


def conn_params(fleet, server=SERVER, user="hygiene", password=None, **overrides):
    """The connection options of the modules (module.params names) for a fleet server."""
    srv = fleet.server(server)
    params = {
        "login_host": srv["host"],
        "login_port": srv["port"],
        "login_user": user,
        "login_password": password if password is not None else fleet.password(user),
        "login_unix_socket": None,
        "config_file": None,
        "connect_timeout": 5,
        "ca_cert": None,
        "client_cert": None,
        "client_key": None,
        "check_hostname": None,
    }
    params.update(overrides)
    return params


def module_conn(fleet, server=SERVER, user="hygiene", password=None, **overrides):
    """conn_params without the unset options, for module arguments."""
    return dict((k, v) for k, v in conn_params(fleet, server, user, password, **overrides).items() if v is not None)


@contextlib.contextmanager
def driver(fleet, server=SERVER, **kwargs):
    d = my_driver.open_driver(conn_params(fleet, server, **kwargs))
    try:
        yield d
    finally:
        d.close()


@contextlib.contextmanager
def admin(fleet, server=SERVER):
    conn = mariadb.admin_connect(fleet.server(server), autocommit=True)
    try:
        yield conn.cursor()
    finally:
        conn.close()


def mine(sessions, tag):
    return [s for s in sessions if (s.get("application") or "").startswith(tag)]


@pytest.fixture
def my_tag():
    """A unique application-name prefix for the sessions of one test."""
    return "t-%s" % uuid.uuid4().hex[:8]


def open_session(fleet, server, kind, **kwargs):
    """holder.open_session on a MariaDB server; an idle session is returned only once the driver
    may end it: it ends an idle thread only once it was planned idle for IDLE_PROOF_SECONDS
    (InnoDB's transaction cache), so the session is older than that."""
    session = holder.open_session(fleet, server, kind, **kwargs)
    if kind == "idle":
        time.sleep(IDLE_PROOF_SECONDS + 0.05)
    return session


@pytest.fixture
def my_held(fleet):
    """open(kind, **kw) -> HeldSession (dbfleet.holder) on mariadb1, closed at teardown."""
    opened = []

    def open_(kind, server=SERVER, **kwargs):
        session = open_session(fleet, server, kind, **kwargs)
        opened.append(session)
        return session

    yield open_
    for session in opened:
        session.close()


@pytest.fixture
def my_user(fleet):
    """make(name=None, grants=()) -> (user, password): a login of this test only, dropped at teardown.

    `grants` are GRANT templates with two %s for user and host (see LEAST_PRIVILEGE_GRANTS).
    """
    made = []

    def make(name=None, grants=(), server=SERVER):
        user = name or "t_%s" % uuid.uuid4().hex[:8]
        password = "pw-%s" % uuid.uuid4().hex[:12]
        with admin(fleet, server) as cur:
            for host in ("%", "localhost"):
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (user, host, password))
                cur.execute("GRANT ALL ON appdb.* TO %s@%s", (user, host))
                for grant in grants:
                    cur.execute(grant, (user, host))
        made.append((server, user))
        return user, password

    yield make
    for server, user in made:
        with admin(fleet, server) as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
            for (thread_id,) in cur.fetchall():
                try:
                    cur.execute("KILL CONNECTION %s", (thread_id,))
                except pymysql.MySQLError:
                    pass
            for host in ("%", "localhost"):
                cur.execute("DROP USER IF EXISTS %s@%s", (user, host))


class LockSession(object):
    """One connection of a lock test (login app, program_name = its application) that can
    hold a transaction and run a statement in the background (one that waits for a lock)."""

    def __init__(self, fleet, server, application, user="app"):
        self.server = fleet.server(server)
        self.application = application
        self.conn = pymysql.connect(
            host=self.server["host"],
            port=self.server["port"],
            user=user,
            password=fleet.password(user),
            database="appdb",
            autocommit=True,
            program_name=application,
            ssl_disabled=True,
        )
        self.id = self.conn.thread_id()
        self.thread = None
        self.error = None

    def execute(self, statement, params=None):
        cur = self.conn.cursor()
        try:
            cur.execute(statement, params)
            return cur.fetchall()
        finally:
            cur.close()

    def start(self, statement):
        """Run `statement` in a thread of its own; `done()` says whether it returned (`error`: how)."""

        def target():
            try:
                self.execute(statement)
            except Exception as exc:  # a cancel, a kill: what the test looks at
                self.error = exc

        self.error = None
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def done(self, timeout=0):
        if self.thread is None:
            return True
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def alive(self):
        return self.id in holder.live(self.server, [self.id])

    def close(self):
        if self.alive():
            conn = mariadb.admin_connect(self.server, autocommit=True)
            try:
                conn.cursor().execute("KILL CONNECTION %s", (self.id,))
            except pymysql.MySQLError:
                pass
            finally:
                conn.close()
        self.done(10)
        try:
            self.conn.close()
        except Exception:
            pass


class LockScene(object):
    """A table of one test (two rows, id 1 and 2) and the sessions that lock it."""

    def __init__(self, fleet, tag, server=SERVER):
        self.fleet = fleet
        self.tag = tag
        self.server = server
        self.table = "lk_" + tag.replace("-", "_")
        self.sessions = []
        with admin(fleet, server) as cur:
            cur.execute(f"CREATE TABLE appdb.{self.table} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
            cur.execute(f"INSERT INTO appdb.{self.table} VALUES (1, 0), (2, 0)")

    def open(self, name, **kwargs):
        """A LockSession whose application is `<tag>-<name>`."""
        session = LockSession(self.fleet, self.server, f"{self.tag}-{name}", **kwargs)
        self.sessions.append(session)
        return session

    def hold_row(self, session, row=1):
        """`session` opens a transaction that has updated `row` and stays idle in it."""
        session.execute("BEGIN")
        session.execute(f"UPDATE {self.table} SET v = v + 1 WHERE id = %s", (row,))

    def update_row(self, row=1):
        return f"UPDATE {self.table} SET v = v + 1 WHERE id = {int(row)}"

    def close(self):
        for session in self.sessions:
            session.close()
        with admin(self.fleet, self.server) as cur:
            cur.execute("SET SESSION lock_wait_timeout = 10")
            cur.execute(f"DROP TABLE IF EXISTS appdb.{self.table}")


@pytest.fixture
def my_locks(fleet, my_tag):
    """A LockScene on mariadb1: a table of this test and the sessions that lock it, all gone at teardown."""
    scene = LockScene(fleet, my_tag)
    yield scene
    scene.close()
