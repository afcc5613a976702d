# -*- coding: utf-8 -*-
"""Fixtures and helpers of the PostgreSQL tests (loaded with `pytest_plugins`).

Every test opens its own sessions, under an application name starting with
its own `pg_tag` (or a login of its own), scopes every policy to them and
closes them at teardown: other tests use the same servers meanwhile.
"""

import contextlib
import threading
import uuid

import psycopg2
import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import driver as pg
from conftest import wait_until
from dbfleet import holder, postgres, state
from psycopg2 import sql

# Quotes, placeholders of both psycopg2 styles, a comment, a statement separator, a backslash.
HOSTILE = 'it\'s "odd"; %s %(x)s -- ;DROP TABLE t; \\'


def conn_params(fleet, server, user="hygiene", **overrides):
    """The connection options of the modules (module.params names) for a fleet server."""
    srv = fleet.server(server)
    params = {
        "login_host": srv["host"],
        "login_port": srv["port"],
        "login_user": user,
        "login_password": fleet.password(user) if user in fleet.passwords or user.startswith("app") else None,
        "login_db": "postgres",
        "connect_timeout": 5,
        "ssl_mode": "disable",
    }
    params.update(overrides)
    return params


@contextlib.contextmanager
def driver(fleet, server, **kwargs):
    d = pg.open_driver(conn_params(fleet, server, **kwargs))
    try:
        yield d
    finally:
        d.close()


def admin_connection(fleet, server):
    conn = postgres.admin_connect(fleet.server(server))
    conn.autocommit = True
    return conn


def server_version_num(fleet, server):
    """server_version_num of a fleet server: the suites run on every major 13-18 (docs/architecture.md
    "Supported platforms"), and what differs between majors is asserted per major."""
    conn = admin_connection(fleet, server)
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_setting('server_version_num')::int")
        return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def pg_tag():
    """A unique application-name prefix for the sessions of one test."""
    return "t-%s" % uuid.uuid4().hex[:8]


@pytest.fixture
def pg_held(fleet):
    """open(server, kind, **kw) -> HeldSession (dbfleet.holder), closed at teardown."""
    opened = []

    def open_(server, kind, **kwargs):
        session = holder.open_session(fleet, server, kind, **kwargs)
        opened.append(session)
        return session

    yield open_
    for session in opened:
        session.close()


def _has_sessions(conn, user):
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()", (user,))
    return cur.fetchone()[0] > 0


@pytest.fixture
def pg_role(fleet):
    """make(server, name, *grants) -> password: a login role, dropped at teardown."""
    made = []

    def make(server, name, *grants):
        password = uuid.uuid4().hex
        conn = admin_connection(fleet, server)
        try:
            cur = conn.cursor()
            # No parameters: a '%' in the quoted name must not be read as a placeholder.
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
            for grant in grants:
                cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(grant), sql.Identifier(name)))
        finally:
            conn.close()
        made.append((server, name))
        return password

    yield make
    for server, name in made:
        conn = admin_connection(fleet, server)
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            wait_until(lambda c=conn, n=name: not _has_sessions(c, n))
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        finally:
            conn.close()


# ---------------------------------------------------------------- lock waits
class Locker(object):
    """One session (login app) that takes locks and waits on them, for the lock tests.

    run(sql) runs a statement and returns at once with its rows; start(sql) runs it
    in a thread (it may wait on a lock): done() says whether it finished, error is
    what it raised (QueryCanceled when cancelled, OperationalError when terminated).
    """

    def __init__(self, fleet, server, application):
        self.server = fleet.server(server)
        self.application = application
        self.conn = psycopg2.connect(
            host=self.server["host"],
            port=self.server["port"],
            user="app",
            password=fleet.password("app"),
            dbname=state.APP_DATABASE,
            application_name=application,
            sslmode="disable",
        )
        self.conn.autocommit = True
        self.id = self.run("SELECT pg_backend_pid()")[0][0]
        self.thread = None
        self.error = None
        self.rows = None

    def run(self, statement):
        cur = self.conn.cursor()
        cur.execute(statement)
        return cur.fetchall() if cur.description else None

    def start(self, statement):
        def target():
            try:
                self.rows = self.run(statement)
            except psycopg2.Error as exc:  # cancelled or terminated: what the tests look at
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        return self

    def done(self, timeout=10.0):
        """True when the statement started by start() finished within `timeout` seconds."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def alive(self):
        return self.id in holder.live(self.server, [self.id])

    def state(self):
        return holder.live(self.server, [self.id]).get(self.id)

    def waits(self):
        """Whether the server shows this session waiting on a heavyweight lock (admin login)."""
        conn = postgres.admin_connect(self.server)
        try:
            cur = conn.cursor()
            cur.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (self.id,))
            row = cur.fetchone()
            return bool(row and row[0])
        finally:
            conn.close()

    def close(self):
        if self.alive():
            conn = postgres.admin_connect(self.server)
            conn.autocommit = True
            try:
                conn.cursor().execute("SELECT pg_terminate_backend(%s)", (self.id,))
            finally:
                conn.close()
        if self.thread is not None:
            self.thread.join(10)
        try:
            self.conn.close()
        except psycopg2.Error:
            pass


@pytest.fixture
def pg_lockers(fleet):
    """open(server, application) -> Locker, every one ended at teardown."""
    opened = []

    def open_(server, application):
        locker = Locker(fleet, server, application)
        opened.append(locker)
        return locker

    yield open_
    for locker in opened:
        locker.close()


@pytest.fixture
def pg_lock_table(fleet, pg_tag):
    """make(server) -> the name of a table (id int primary key, v int) with rows 1 and 2,
    owned by login app, for one test; dropped at teardown (after its sessions are ended)."""
    made = []

    def make(server):
        name = "locks_" + pg_tag.replace("-", "_")
        conn = postgres.admin_connect(fleet.server(server), state.APP_DATABASE)
        conn.autocommit = True
        try:
            cur = conn.cursor()
            cur.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v int)").format(sql.Identifier(name)))
            cur.execute(sql.SQL("INSERT INTO {} VALUES (1, 0), (2, 0)").format(sql.Identifier(name)))
            cur.execute(sql.SQL("ALTER TABLE {} OWNER TO app").format(sql.Identifier(name)))
        finally:
            conn.close()
        made.append((server, name))
        return name

    yield make
    for server, name in made:
        conn = postgres.admin_connect(fleet.server(server), state.APP_DATABASE)
        conn.autocommit = True
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
                (pg_tag + "%",),
            )
            cur.execute("SET lock_timeout = '10s'")
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        finally:
            conn.close()
