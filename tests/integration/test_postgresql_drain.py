# -*- coding: utf-8 -*-
"""postgresql_drain, run by Ansible against a real server.

Every test makes databases and roles of its own (names under a unique tag), so it
drains only what it made; after each run the server's real state is read through
the admin login: pg_database.datacl byte for byte, the record table, who can log in,
which sessions are left.
"""

import os
import uuid

import psycopg2
import pytest
import yaml
from conftest import run_module, run_playbook, wait_until
from psycopg2 import sql

pytest.register_assert_rewrite("_postgresql_fixtures")
import _postgresql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import connect
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import drain as pgd
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import drain_statements
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import driver as pg
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_request import parse_request
from ansible_collections.dbhygiene.sessions.plugins.modules import postgresql_drain

pytest_plugins = ["_postgresql_fixtures"]

SERVER = "pg1"
DRAIN = "dbhygiene.sessions.postgresql_drain"
ADMIN = "fleet_admin"


def admin(fleet, server=SERVER):
    return fx.admin_connection(fleet, server)


def q(conn, statement, params=None):
    cur = conn.cursor()
    cur.execute(statement, params)
    return cur.fetchall() if cur.description else None


class Window(object):
    """Two databases (billing_<tag>, other_<tag>), an application role and a migration role."""

    def __init__(self, fleet, server=SERVER):
        self.fleet = fleet
        self.server = server
        tag = uuid.uuid4().hex[:8]
        self.billing, self.other = f"billing_{tag}", f"other_{tag}"
        self.app, self.migrator = f"app_{tag}", f"migrator_{tag}"
        self.password = uuid.uuid4().hex
        self.held = []
        conn = admin(fleet, server)
        try:
            for role in (self.app, self.migrator):
                q(conn, sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), (self.password,))
            for db in (self.billing, self.other):
                q(conn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        finally:
            conn.close()

    def datacl(self, db=None):
        conn = admin(self.fleet, self.server)
        try:
            return q(conn, "SELECT datacl::text FROM pg_database WHERE datname = %s", (db or self.billing,))[0][0]
        finally:
            conn.close()

    def admin_sql(self, statement, params=None):
        conn = admin(self.fleet, self.server)
        try:
            return q(conn, statement, params)
        finally:
            conn.close()

    def record(self):
        conn = admin(self.fleet, self.server)
        try:
            if not q(conn, "SELECT to_regclass('dbhygiene.drain') IS NOT NULL")[0][0]:
                return []
            return q(
                conn,
                "SELECT database FROM dbhygiene.drain WHERE database IN (%s, %s) ORDER BY 1",
                (self.billing, self.other),
            )
        finally:
            conn.close()

    def can_login(self, user, db):
        try:
            conn = psycopg2.connect(
                host=self.fleet.server(self.server)["host"],
                port=self.fleet.server(self.server)["port"],
                user=user,
                password=self.password,
                dbname=db,
                sslmode="disable",
                connect_timeout=5,
            )
        except psycopg2.OperationalError as exc:
            assert "permission denied for database" in str(exc), exc
            return False
        conn.close()
        return True

    def hold(self, kind, user=None, db=None, application="held"):
        from dbfleet import holder

        session = holder.open_session(
            self.fleet,
            self.server,
            kind,
            user=user or self.app,
            password=self.password,
            database=db or self.billing,
            application=application,
        )
        self.held.append(session)
        return session

    def close(self):
        for session in self.held:
            session.close()
        conn = admin(self.fleet, self.server)
        try:
            for db in (self.billing, self.other):
                q(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,))
                q(conn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
                if q(conn, "SELECT to_regclass('dbhygiene.drain') IS NOT NULL")[0][0]:
                    q(conn, "DELETE FROM dbhygiene.drain WHERE database = %s", (db,))
            for role in (self.app, self.migrator):
                q(conn, sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        finally:
            conn.close()


@pytest.fixture
def window(fleet):
    made = Window(fleet)
    yield made
    made.close()


def login(fleet, server=SERVER, **overrides):
    args = fx.conn_params(fleet, server, user=ADMIN)
    args["login_password"] = fleet.password(ADMIN)
    args.update(overrides)
    return args


def drain(fleet, window, state="drained", check=False, diff=False, **options):
    args = login(fleet)
    args.update(databases=[window.billing], state=state, allow_users=[window.migrator], grace="2s")
    args.update(options)
    result, run = run_module(DRAIN, args, check=check, diff=diff)
    assert not result.get("failed"), run.output
    return result, run


# ---------------------------------------------------------------- the four steps and the window
def test_check_drain_open(fleet, window):
    before = window.datacl()
    assert before is None  # the default rights: PUBLIC may connect
    assert window.can_login(window.app, window.billing)
    idle = window.hold("idle")
    busy = window.hold("active")
    stubborn = window.hold("active_ignores_cancel")
    allowed = window.hold("idle", user=window.migrator)
    elsewhere = window.hold("idle", db=window.other)

    # check mode: reports, changes nothing
    result, run = drain(fleet, window, check=True, diff=True)
    assert result["changed"] is True and result["check_mode"] is True
    assert {(c["account"], c["change"]) for c in result["changes"]} == {
        ("PUBLIC", "revoked"),
        (window.migrator, "granted"),
    }
    assert sorted(e["id"] for e in result["terminated"]) == sorted([idle.id, busy.id, stubborn.id])
    assert sorted(e["id"] for e in result["cancelled"]) == sorted([busy.id, stubborn.id])
    assert [e["id"] for e in result["not_ended"] if e["user"] == window.migrator] == [allowed.id]
    assert window.billing in result["closed"]  # as it would be
    assert window.billing not in [r["database"] for r in result["record"]]  # as it is
    assert "CONNECT PUBLIC (by" in result["diff"]["before"] and "PUBLIC" not in result["diff"]["after"]
    assert f"{window.migrator} (by" in result["diff"]["after"]
    assert window.datacl() is None and window.record() == []
    assert all(s.alive() for s in (idle, busy, stubborn, allowed, elsewhere))

    # drained
    result, run = drain(fleet, window)
    always = [key for key, doc in yaml.safe_load(postgresql_drain.RETURN).items() if doc.get("returned") == "always"]
    assert set(always) <= set(result) and "queries" not in result  # every key returned always; templates at -vvv
    assert result["changed"] is True and run.task_status("the module") == "changed"
    assert {(c["account"], c["change"]) for c in result["changes"]} == {
        ("PUBLIC", "revoked"),
        (window.migrator, "granted"),
    }
    assert sorted(e["id"] for e in result["terminated"]) == sorted([idle.id, busy.id, stubborn.id])
    # the long query was cancelled (then its connection terminated); the one that ignores the cancel
    # was terminated after grace
    assert [e["id"] for e in result["cancelled"]] == [busy.id]
    assert window.billing in result["closed"] and window.billing in [r["database"] for r in result["record"]]
    wait_until(lambda: not any(s.alive() for s in (idle, busy, stubborn)))
    assert allowed.alive() and elsewhere.alive()
    assert not window.can_login(window.app, window.billing)
    assert window.can_login(window.migrator, window.billing)
    assert window.can_login(window.app, window.other)
    assert window.record() == [(window.billing,)]

    # drained again: nothing to do, the first record kept
    drained_acl = window.datacl()
    result, run = drain(fleet, window)
    assert result["changed"] is False and result["changes"] == [] and result["terminated"] == []
    assert window.datacl() == drained_acl

    # open: check mode first, then real, then again (nothing to do)
    result, run = drain(fleet, window, state="open", check=True)
    assert result["changed"] is True and window.datacl() == drained_acl
    assert window.billing not in result["closed"]
    result, run = drain(fleet, window, state="open")
    assert result["changed"] is True
    assert result["restored"] == [
        {"database": window.billing, "exact": True, "detail": "datacl restored as before the drain"}
    ]
    assert {(c["account"], c["change"]) for c in result["changes"]} == {
        ("PUBLIC", "granted"),
        (window.migrator, "revoked"),
    }
    assert window.datacl() == before  # byte for byte: NULL again
    assert window.record() == [] and window.billing not in result["closed"]
    assert window.can_login(window.app, window.billing)
    result, run = drain(fleet, window, state="open")
    assert result["changed"] is False and result["changes"] == [] and result["restored"] == []
    assert window.datacl() == before


def _explicit_rights(window):
    """Entries a GRANT / REVOKE round trip would reorder: a delegated grant, grant options, TEMP kept."""
    db, app, mig = (sql.Identifier(n) for n in (window.billing, window.app, window.migrator))
    window.admin_sql(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
    window.admin_sql(sql.SQL("GRANT CONNECT ON DATABASE {} TO {} WITH GRANT OPTION").format(db, app))
    window.admin_sql(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC").format(db))
    window.admin_sql(sql.SQL("SET ROLE {}; GRANT CONNECT ON DATABASE {} TO {}; RESET ROLE").format(app, db, mig))
    window.admin_sql(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO PUBLIC").format(db))


def test_open_is_byte_for_byte_with_delegated_grants_and_twice_drained(fleet, window):
    _explicit_rights(window)
    before = window.datacl()
    assert window.app in before and f"{window.migrator}=c/{window.app}" in before

    result, _run = drain(fleet, window, allow_users=[])
    changes = [(c["account"], c["grantor"], c["change"]) for c in result["changes"]]
    # the delegated grant is revoked (as its grantor) before the grant it depends on
    assert changes == [(window.migrator, window.app, "revoked"), ("PUBLIC", "postgres", "revoked")] or changes == [
        (window.migrator, window.app, "revoked"),
        (window.app, "postgres", "revoked"),
        ("PUBLIC", "postgres", "revoked"),
    ], changes
    assert not window.can_login(window.app, window.billing)
    assert not window.can_login(window.migrator, window.billing)
    first_record = window.admin_sql("SELECT acl_before FROM dbhygiene.drain WHERE database = %s", (window.billing,))

    result, _run = drain(fleet, window, allow_users=[])  # twice
    assert result["changed"] is False
    assert (
        window.admin_sql("SELECT acl_before FROM dbhygiene.drain WHERE database = %s", (window.billing,))
        == first_record
    )

    result, _run = drain(fleet, window, state="open")
    assert result["restored"][0]["exact"] is True
    assert window.datacl() == before
    assert window.can_login(window.app, window.billing) and window.can_login(window.migrator, window.billing)


def test_rights_changed_during_the_window_are_kept_by_open(fleet, window):
    result, _run = drain(fleet, window)
    assert result["changed"]
    # someone grants CONNECT during the window; the next drain revokes it (and records it)
    window.admin_sql(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(*map(sql.Identifier, (window.billing, window.app)))
    )
    result, _run = drain(fleet, window)
    assert [(c["account"], c["change"]) for c in result["changes"]] == [(window.app, "revoked")]
    assert not window.can_login(window.app, window.billing)
    result, _run = drain(fleet, window, state="open")
    assert result["restored"][0]["exact"] is False
    # every recorded change undone: PUBLIC and the app's grant back, the migrator's grant gone
    acl = window.datacl()
    assert acl.startswith("{=") and f"{window.app}=c/" in acl and window.migrator not in acl
    assert window.can_login(window.app, window.billing)
    assert window.record() == []


def _driver(fleet):
    return pg.open_driver(login(fleet))


def test_a_drain_that_died_half_way(fleet, window):
    before = window.datacl()
    request = parse_request(
        {
            "databases": [window.billing],
            "allow_users": [window.migrator],
            "grace": 1,
            "wait_timeout": 5,
            "host_timeout": 60,
        }
    )
    # 1. died inside the rights transaction (before its COMMIT): nothing changed, nothing recorded
    driver = _driver(fleet)
    try:
        rights = pgd.PostgreSQLRights(driver)
        driver.execute(drain_statements.ensure_record_query(), "create the record")
        found = rights.read_databases([window.billing], must_exist=True)
        plan = [(window.billing, pgd.plan_drain(window.billing, found[window.billing], [window.migrator]))]
        statement, params = drain_statements.drain_query(plan, rights.here)
    finally:
        driver.close()
    conn = psycopg2.connect(**connect.connect_kwargs(login(fleet), "t-died"))
    cur = conn.cursor()  # not autocommit: the drain's statements in a transaction that never commits
    cur.execute(statement, params)
    conn.close()  # the connection dies: the server rolls it back
    assert window.datacl() == before and window.record() == []
    result, _run = drain(fleet, window, state="open")
    assert result["changed"] is False and window.datacl() == before

    # 2. died after the rights and the record, before the sessions: open restores it exactly
    idle = window.hold("idle")
    driver = _driver(fleet)
    try:
        outcome = pgd.PostgreSQLRights(driver).drain(request, check_mode=False)
        assert outcome.changes
    finally:
        driver.close()
    assert idle.alive() and not window.can_login(window.app, window.billing)
    assert window.record() == [(window.billing,)]
    result, _run = drain(fleet, window, state="open")
    assert result["changed"] is True and result["restored"][0]["exact"] is True
    assert window.datacl() == before and window.record() == []


def test_bad_options_fail_before_connecting(fleet, window):
    args = login(fleet, login_host="127.0.0.1", login_port=1)  # nothing listens there
    for options, field in (
        ({"databases": []}, "databases"),
        ({"databases": [""]}, "databases[0]"),
        ({"databases": ["x"], "grace": "soon"}, "grace"),
        ({"databases": ["x"], "grace": "1h", "host_timeout": 60}, "host_timeout"),
        ({"databases": ["x"], "allow_users": ["a\x00b"]}, "allow_users[0]"),
    ):
        result, run = run_module(DRAIN, dict(args, **options))
        assert result.get("failed") and result.get("field") == field, (options, run.output)
        assert "cannot connect" not in result["msg"]


def test_unknown_database_or_allowed_role_changes_nothing(fleet, window):
    args = login(fleet)
    result, run = run_module(DRAIN, dict(args, databases=[window.billing, "no_such_db_x"]))
    assert result.get("failed") and "no_such_db_x" in result["msg"], run.output
    result, run = run_module(DRAIN, dict(args, databases=[window.billing], allow_users=["no_such_role_x"]))
    assert result.get("failed") and "no_such_role_x" in result["msg"], run.output
    assert window.datacl() is None and window.record() == []


def test_needs_a_superuser(fleet, window):
    args = fx.conn_params(fleet, SERVER)  # the least-privilege hygiene login
    result, run = run_module(DRAIN, dict(args, databases=[window.billing]), check=True)
    assert result.get("failed") and "not a superuser" in result["msg"], run.output
    assert window.datacl() is None


# ---------------------------------------------------------------- EXAMPLES as written
def test_examples_run_as_written(fleet, tmp_path):
    made = Window(fleet)
    try:
        tasks = yaml.safe_load(postgresql_drain.EXAMPLES)
        text = yaml.safe_dump(tasks).replace("billing", made.billing).replace("migrator", made.migrator)
        tasks = yaml.safe_load(text)
        playbook = [
            {
                "name": "EXAMPLES of postgresql_drain",
                "hosts": "localhost",
                "connection": "local",
                "gather_facts": False,
                "vars": {
                    "pg_host": fleet.server(SERVER)["host"],
                    "pg_admin_user": ADMIN,
                    "pg_admin_password": fleet.password(ADMIN),
                    "pg_ca_cert": fleet.pki["ca_cert"],
                },
                "tasks": tasks,
            }
        ]
        path = os.path.join(str(tmp_path), "examples.yml")
        with open(path, "w") as f:
            yaml.safe_dump(playbook, f, sort_keys=False)
        run = run_playbook(path)
        assert run.rc == 0, run.output
        ran = [r for r in run.results if r["action"].startswith("dbhygiene.sessions.")]
        assert len(ran) == 3 and all(r["status"] in ("ok", "changed") for r in ran), [
            (r["task"], r["status"]) for r in ran
        ]
        assert made.datacl() is None and made.record() == []
    finally:
        made.close()


# ---------------------------------------------------------------- the record found from any login_db (issue 19)
def pointers(window):
    return window.admin_sql(
        "SELECT d.datname::text, c FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, "
        "unnest(s.setconfig) c WHERE d.datname IN (%s, %s)",
        (window.billing, window.other),
    )


def test_open_or_drained_from_another_login_db_finds_where_the_record_is(fleet, window):
    before = window.datacl()
    drain(fleet, window)
    assert pointers(window) == [(window.billing, "dbhygiene.drain_record=postgres")]
    drained = window.datacl()
    for state in ("open", "drained"):
        args = login(fleet, login_db=window.other)
        args.update(databases=[window.billing], state=state, allow_users=[window.migrator], grace="2s")
        result, run = run_module(DRAIN, args)
        assert result.get("failed"), run.output
        assert f"the drain record of {window.billing} in database 'postgres'" in result["msg"], result["msg"]
        assert "login_db" in result["msg"] and result["closed"] == [window.billing]
        assert window.datacl() == drained and not window.can_login(window.app, window.billing)
    # check mode from there says it is closed too (its record is elsewhere)
    args = login(fleet, login_db=window.other)
    args.update(databases=[window.other], allow_users=[window.migrator])
    result, run = run_module(DRAIN, args, check=True)
    assert not result.get("failed"), run.output
    assert window.billing in result["closed"]
    [elsewhere] = [r for r in result["record"] if r["database"] == window.billing]
    assert elsewhere["record_database"] == "postgres"

    result, _run = drain(fleet, window, state="open")
    assert result["restored"][0]["exact"] is True
    assert window.datacl() == before and pointers(window) == [] and window.record() == []


def test_members_of_an_allowed_role_inherit_its_connect(fleet, window):
    """allow_users keeps CONNECT for a role: its members (INHERIT) can still log in during the window;
    their sessions are not protected unless they are allowed themselves."""
    group, member = f"grp_{window.app}", f"mem_{window.app}"
    window.admin_sql(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
    window.admin_sql(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s IN ROLE {}").format(sql.Identifier(member), sql.Identifier(group)),
        (window.password,),
    )
    try:
        held = window.hold("idle", user=member)
        result, _run = drain(fleet, window, allow_users=[group])
        assert (group, "granted") in [(c["account"], c["change"]) for c in result["changes"]]
        assert held.id in [e["id"] for e in result["terminated"]]  # the member itself is not allowed
        assert window.can_login(member, window.billing)  # but it inherits the group's CONNECT
        assert not window.can_login(window.app, window.billing)
        drain(fleet, window, state="open")
        assert window.datacl() is None
    finally:
        # After the exact restore, nothing depends on the group any more (pg_shdepend follows the undo):
        # it can be dropped while the database is there.
        roles = sql.SQL(", ").join([sql.Identifier(member), sql.Identifier(group)])
        window.admin_sql(sql.SQL("DROP ROLE {}").format(roles))


def test_the_exact_restore_refuses_rights_changed_under_it(fleet, window):
    drain(fleet, window)
    drained = window.datacl()
    [entry] = [r for r in drain(fleet, window, check=True)[0]["record"] if r["database"] == window.billing]
    driver = _driver(fleet)
    try:
        wrong = drain_statements.restore_query(window.billing, entry["acl_before"], "{}", entry["changes"])
        with pytest.raises(pg.SessionError) as refused:
            driver.execute(wrong, "restore")
        assert f"the rights of {window.billing} changed while open ran" in str(refused.value)
    finally:
        driver.close()
    assert window.datacl() == drained and window.record() == [(window.billing,)]  # nothing done
    drain(fleet, window, state="open")
    assert window.datacl() is None
