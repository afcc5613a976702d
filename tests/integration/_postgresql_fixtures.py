# -*- coding: utf-8 -*-
"""Fixtures and helpers of the PostgreSQL tests (loaded with `pytest_plugins`).

Every test opens its own sessions, under an application name starting with
its own `pg_tag` (or a login of its own), scopes every policy to them and
closes them at teardown: other tests use the same servers meanwhile.
"""

import contextlib
import uuid

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _postgresql as pg
from conftest import wait_until
from dbfleet import holder, postgres
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
