# -*- coding: utf-8 -*-
"""Managed platforms on real servers: a fleet server dressed as RDS, Cloud SQL or Azure
(tools/dbfleet/platforms.py: the service's admin login with exactly its documented rights,
the service's own superuser with a session of its own, on MariaDB mysql.rds_kill /
mysql.rds_kill_query), worked as the admin login, as a user of that service would.

Each emulation lives for one module-scoped fixture and is removed after it (its markers
make `platform: auto` detect the service on that server). Everything runs in-process on the
drivers (as `run_on: controller` does), but for one module run per engine through Ansible.
"""

import contextlib
import uuid

import psycopg2
import pymysql
import pytest
from _roles_fixtures import AUDIT, edit_inventory, read_json, write_inventory
from conftest import run_module, run_playbook, wait_until

pytest.register_assert_rewrite("_postgresql_fixtures", "_mysql_fixtures")
import _mysql_fixtures as myfx  # noqa: E402,I001 (after register_assert_rewrite)
import _postgresql_fixtures as pgfx  # noqa: E402

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _drain, _drain_request, _runner, _timeouts  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError, SessionError  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import connect as my_connect  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.drain import MySQLRights  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.timeouts import MySQLTimeouts  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.drain import (  # noqa: E402
    PostgreSQLRights,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.timeouts import PostgreSQLTimeouts  # noqa: E402
from dbfleet import holder, mariadb, platforms  # noqa: E402
from psycopg2 import sql  # noqa: E402

PG, MY = "pg3", "mariadb3"
CASES = [("postgresql", "rds"), ("postgresql", "cloudsql"), ("postgresql", "azure"), ("mysql", "rds")]
SERVER = {"postgresql": PG, "mysql": MY}


@pytest.fixture(scope="module", params=CASES, ids=["-".join(case) for case in CASES])
def emulated(request, fleet):
    engine, platform = request.param
    server = SERVER[engine]
    platforms.remove(fleet, server, platform)  # a run that died left it: start clean
    logins = platforms.emulate(fleet, server, platform)
    service = holder.open_session(
        fleet, server, "idle", user=logins["service"], password=logins["password"], application="svc-" + platform
    )
    try:
        yield dict(logins, engine=engine, platform=platform, server=server, service_session=service)
    finally:
        service.close()
        platforms.remove(fleet, server, platform)


def params(fleet, emulated, **overrides):
    """The connection options of the emulated service's admin login."""
    user, password = emulated["admin"], emulated["password"]
    if emulated["engine"] == "postgresql":
        return pgfx.conn_params(fleet, emulated["server"], user=user, login_password=password, **overrides)
    return myfx.conn_params(fleet, emulated["server"], user=user, password=password, **overrides)


@contextlib.contextmanager
def admin_driver(fleet, emulated, **overrides):
    opener = pgfx.pg.open_driver if emulated["engine"] == "postgresql" else myfx.my_driver.open_driver
    driver = opener(params(fleet, emulated, **overrides))
    try:
        yield driver
    finally:
        driver.close()


def hold(fleet, emulated, kind, tag, database=None, user="app", **extra):
    return holder.open_session(fleet, emulated["server"], kind, user=user, application=tag, database=database, **extra)


def test_detects_the_platform_and_protects_the_service_sessions(fleet, emulated):
    tag = "mgd-%s" % uuid.uuid4().hex[:8]
    app = hold(fleet, emulated, "idle", tag)
    try:
        # protect.superusers off: the service's session stays protected all the same.
        policy = parse_policy(
            {
                "name": "managed",
                "rules": [{"name": "mine", "users": [emulated["service"], "app"], "applications": [tag, "svc-*"]}],
                "protect": {"superusers": False},
                "limits": {"max_terminations": 10, "max_fraction": "unlimited"},
            }
        )
        with admin_driver(fleet, emulated) as driver:
            info = _runner.session_info(driver, policy)
        assert info["server"]["platform"]["name"] == emulated["platform"]
        assert info["server"]["platform"]["detected"] is True
        service = [s for s in info["sessions"] if s["user"] == emulated["service"]]
        assert service and all(s["service"] for s in service)
        assert [v["session"]["id"] for v in info["plan"]["victims"]] == [app.id]
        protected = [e for e in info["plan"]["not_ended"] if e["session"]["user"] == emulated["service"]]
        assert protected and all(e["reason"] == "protected" and e["detail"].startswith("service") for e in protected)
        # platform: self_managed turns the detection (and the service protection) off.
        with admin_driver(fleet, emulated, platform="self_managed") as driver:
            assert driver.server_facts()["platform"]["name"] == "self_managed"
            assert not any(s["service"] for s in driver.list_sessions())
    finally:
        app.close()


def test_a_self_managed_server_is_detected_as_such(fleet, emulated):
    other = {"postgresql": "pg1", "mysql": "mariadb1"}[emulated["engine"]]
    opener = pgfx.driver if emulated["engine"] == "postgresql" else myfx.driver
    with opener(fleet, other) as driver:
        assert driver.server_facts()["platform"] == {
            "name": "self_managed",
            "label": "a self-managed server",
            "detected": True,
            "service_users": [],
        }


def test_enforce_and_cancel_as_the_admin_login(fleet, emulated):
    tag = "mgd-%s" % uuid.uuid4().hex[:8]
    idle = hold(fleet, emulated, "idle", tag + "-idle")
    active = hold(fleet, emulated, "active", tag + "-active")
    try:
        policy = parse_policy(
            {
                "name": "managed-enforce",
                "rules": [
                    {"name": "ghost", "states": ["idle"], "applications": [tag + "-idle", "svc-*"]},
                    {"name": "runaway", "states": ["active"], "applications": [tag + "-active"], "action": "cancel"},
                ],
                "protect": {"superusers": False},
                "limits": {"max_terminations": 10, "max_fraction": "unlimited"},
            }
        )
        # MariaDB proves a Sleep thread outside a transaction once it is idle 150 ms (flavours.IDLE_PROOF_SECONDS).
        wait_until(lambda: idle.age() > 0.5, timeout=10)
        with admin_driver(fleet, emulated) as driver:
            driver.preflight(signal=True, policy=policy)
            result = _runner.apply_policy(driver, policy, check_mode=False)
            if emulated["engine"] == "mysql":
                # RDS's procedures, not KILL: the master user has neither SUPER nor CONNECTION ADMIN.
                assert driver.flavour.rds_kill
                assert driver.server_facts()["kill_statements"] == {
                    "terminate": "CALL mysql.rds_kill(%s)",
                    "cancel": "CALL mysql.rds_kill_query(%s)",
                }
        assert not result.get("failed"), result
        assert [s["id"] for s in result["terminated"]] == [idle.id], [
            (e["reason"], e.get("detail")) for e in result["not_ended"]
        ]
        assert [s["id"] for s in result["cancelled"]] == [active.id]
        assert [e["reason"] for e in result["not_ended"]] == ["protected"]
        wait_until(lambda: not idle.alive(), timeout=10)
        wait_until(lambda: active.state() in ("idle", "Sleep"), timeout=10)
        assert active.alive() and emulated["service_session"].alive()
    finally:
        idle.close()
        active.close()


def test_locks_as_the_admin_login(fleet, emulated):
    tag = "mgd-%s" % uuid.uuid4().hex[:8]
    blocker = hold(fleet, emulated, "row_lock_holder", tag + "-holder", lock_key=tag)
    waiter = hold(fleet, emulated, "row_lock_waiter", tag + "-waiter", lock_key=tag)
    try:
        policy = parse_policy(
            {
                "name": "managed-locks",
                "rules": [{"name": "root-blocker", "blocking_at_least": 1, "applications": [tag + "-*"]}],
                "limits": {"max_terminations": 10, "max_fraction": "unlimited"},
            }
        )
        with admin_driver(fleet, emulated) as driver:
            driver.preflight(signal=True, policy=policy)
            info = _runner.session_info(driver)
            chains = [s for s in info["sessions"] if s["id"] == blocker.id]
            assert chains and chains[0]["blocking"] == 1
            result = _runner.apply_policy(driver, policy, check_mode=False)
        assert not result.get("failed"), result
        assert [s["id"] for s in result["terminated"]] == [blocker.id]
        wait_until(lambda: not holder.waiting_for_lock(waiter), timeout=10)
        assert waiter.alive()
    finally:
        blocker.close()
        waiter.close()


def test_mariadb_rds_kill_refuses_the_service_threads(fleet, emulated):
    if emulated["engine"] != "mysql":
        pytest.skip("mysql.rds_kill is RDS for MySQL / MariaDB's")
    conn = pymysql.connect(**my_connect.connect_kwargs(params(fleet, emulated, login_host=fleet.server(MY)["host"])))
    try:
        with pytest.raises(pymysql.MySQLError) as refused:
            conn.cursor().execute("CALL mysql.rds_kill(%s)", (emulated["service_session"].id,))
        assert refused.value.args[0] == 1095
        with pytest.raises(pymysql.MySQLError) as direct:
            conn.cursor().execute("KILL CONNECTION %s", (emulated["service_session"].id,))
        assert direct.value.args[0] == 1095  # the master user has no CONNECTION ADMIN of its own
    finally:
        conn.close()
    assert emulated["service_session"].alive()


def drain_run(driver, rights_class, databases, state):
    request = _drain_request.parse_request(
        {"databases": databases, "state": state, "grace": "1s", "wait_timeout": 10.0, "host_timeout": 120.0}
    )
    driver.preflight(signal=state == "drained", policy=request.policy)
    driver.list_applications = True
    rights = rights_class(driver)
    rights.preflight()
    return _drain.run_drain(driver, rights, request, check_mode=False)


def _connects(fleet, server, user, database):
    srv = fleet.server(server)
    try:
        psycopg2.connect(
            host=srv["host"],
            port=srv["port"],
            user=user,
            password=fleet.password(user),
            dbname=database,
            sslmode="disable",
            connect_timeout=5,
        ).close()
        return True
    except psycopg2.OperationalError:
        return False


def _pg_acl_items(fleet, database):
    conn = pgfx.admin_connection(fleet, PG)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT array_agg(a::text ORDER BY a::text) FROM pg_database d, "
            "unnest(coalesce(d.datacl, acldefault('d', d.datdba))) a WHERE d.datname = %s",
            (database,),
        )
        return cur.fetchone()[0]
    finally:
        conn.close()


def test_drain_and_open_without_a_superuser(fleet, emulated):
    if emulated["engine"] == "mysql":
        return _mariadb_drain_and_open(fleet, emulated)
    database = "mgd_%s_%s" % (emulated["platform"], uuid.uuid4().hex[:6])
    other = "mgd_other_" + uuid.uuid4().hex[:6]
    with admin_driver(fleet, emulated) as driver:
        driver.execute(('CREATE DATABASE "%s"' % database, {}), "set up")
    admin = pgfx.admin_connection(fleet, PG)
    try:
        cur = admin.cursor()
        # A grant made by a role the admin login may not act as: it stays, and the result says so.
        cur.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(other)))
        cur.execute(
            sql.SQL("SET ROLE {}; GRANT CONNECT ON DATABASE {} TO {} WITH GRANT OPTION; RESET ROLE").format(
                sql.Identifier(emulated["admin"]), sql.Identifier(database), sql.Identifier(other)
            )
        )
        cur.execute(
            sql.SQL("SET ROLE {}; GRANT CONNECT ON DATABASE {} TO app2; RESET ROLE").format(
                sql.Identifier(other), sql.Identifier(database)
            )
        )
        before = _pg_acl_items(fleet, database)
        session = hold(fleet, emulated, "idle", "mgd-drain", database=database)
        with admin_driver(fleet, emulated, login_db=database) as driver:
            drained = drain_run(driver, PostgreSQLRights, [database], "drained")
        assert not drained.get("failed"), drained["msg"]
        assert [s["id"] for s in drained["terminated"]] == [session.id]
        assert [(c["account"], c["change"]) for c in drained["changes"]] == [("PUBLIC", "revoked")]
        assert sorted((g["account"], g["grantor"]) for g in drained["grants_not_changed"]) == sorted(
            [("app2", other), (other, emulated["admin"])]
        )
        assert not _connects(fleet, PG, "app", database)
        assert _connects(fleet, PG, "app2", database)  # what the grant it could not change leaves open
        with admin_driver(fleet, emulated, login_db=database) as driver:
            opened = drain_run(driver, PostgreSQLRights, [database], "open")
        assert not opened.get("failed"), opened
        assert [r["exact"] for r in opened["restored"]] == [True]
        assert _pg_acl_items(fleet, database) == before
        assert _connects(fleet, PG, "app", database)
        session.close()
    finally:
        cur = admin.cursor()
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(other)))
        admin.close()


def _mariadb_drain_and_open(fleet, emulated):
    database = "mgd_rds_%s" % uuid.uuid4().hex[:6]
    user = "mgd_u_%s" % uuid.uuid4().hex[:6]
    with admin_driver(fleet, emulated) as driver:
        for statement in (
            "CREATE DATABASE `%s`" % database,
            "CREATE USER '%s'@'%%' IDENTIFIED BY 'mgd-Secret1'" % user,
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `%s`.* TO '%s'@'%%'" % (database, user),
        ):
            driver.execute((statement, None), "set up")
    srv = fleet.server(MY)
    conn = pymysql.connect(host=srv["host"], port=srv["port"], user=user, password="mgd-Secret1", database=database)
    try:
        with admin_driver(fleet, emulated) as driver:
            drained = drain_run(driver, MySQLRights, [database], "drained")
        assert not drained.get("failed"), drained["msg"]
        assert [c["account"] for c in drained["changes"] if c["change"] == "locked"] == ["'%s'@'%%'" % user]
        assert [s["user"] for s in drained["terminated"]] == [user]  # through mysql.rds_kill
        assert emulated["service_session"].alive()
        with admin_driver(fleet, emulated) as driver:
            opened = drain_run(driver, MySQLRights, [database], "open")
        assert not opened.get("failed"), opened
        assert [c["change"] for c in opened["changes"] if c["account"] == "'%s'@'%%'" % user] == ["unlocked"]
        pymysql.connect(host=srv["host"], port=srv["port"], user=user, password="mgd-Secret1").close()
    finally:
        with contextlib.suppress(pymysql.MySQLError):
            conn.close()
        with mariadb.admin_connect(srv, autocommit=True) as admin:
            admin.cursor().execute("DROP DATABASE IF EXISTS `%s`" % database)
            admin.cursor().execute("DROP USER IF EXISTS '%s'@'%%'" % user)


def test_timeouts_refuse_the_server_level_and_reconcile_the_others(fleet, emulated):
    engine = emulated["engine"]
    name = "mgd_t_%s" % uuid.uuid4().hex[:6]
    with admin_driver(fleet, emulated) as driver:
        if engine == "postgresql":
            driver.execute(("CREATE ROLE %s NOLOGIN" % name, {}), "set up")
            timeouts_class, variable = PostgreSQLTimeouts, "statement_timeout"
        else:
            driver.execute(("CREATE USER '%s'@'%%' IDENTIFIED BY 'mgd-Secret1'" % name, None), "set up")
            timeouts_class, variable = MySQLTimeouts, "max_statement_time"
        try:
            both = _timeouts.checked_settings(
                {"server": {"statement": "1h"}, "roles": {name: {"statement": "5m"}}}, engine
            )
            with pytest.raises(PolicyError) as refused:
                _timeouts.check_platform(driver, both)
            place = {"rds": "parameter group", "cloudsql": "database flag", "azure": "server parameter"}
            assert place[emulated["platform"]] in str(refused.value) and variable in str(refused.value)
            roles = _timeouts.checked_settings({"roles": {name: {"statement": "5m"}}}, engine)
            _timeouts.check_platform(driver, roles)
            first = _timeouts.reconcile(timeouts_class(driver), roles, check_mode=False)
            again = _timeouts.reconcile(timeouts_class(driver), roles, check_mode=False)
            assert first["changed"] and not again["changed"]
        finally:
            if engine == "postgresql":
                driver.execute(("DROP ROLE %s" % name, {}), "clean up")
            else:
                driver.execute(("DROP USER '%s'@'%%'" % name, None), "clean up")


def test_the_module_takes_the_platform_option(fleet, emulated):
    if emulated["platform"] != "rds":
        pytest.skip("one run through Ansible per engine")
    module = "dbhygiene.sessions.%s_timeouts" % emulated["engine"]
    args = dict((k, v) for k, v in params(fleet, emulated).items() if v is not None)
    args.update(timeouts={"server": {"idle_in_transaction": "10m"}}, platform="auto")
    result, run = run_module(module, args)
    assert result.get("failed") and "parameter group" in result["msg"], run.output
    assert result["field"] == "timeouts.server"


def test_a_bad_platform_fails_naming_it_before_any_connection(fleet, emulated):
    if emulated["engine"] != "postgresql" or emulated["platform"] != "rds":
        pytest.skip("one run through Ansible")
    # Port 1: nothing listens there; the option is refused before the module connects.
    args = dict(login_host="127.0.0.1", login_port=1, login_user="nobody", platform="aws")
    result, run = run_module("dbhygiene.sessions.postgresql_session_info", args)
    assert result.get("failed"), run.output
    assert "platform" in result["msg"] and "aws" in result["msg"] and "connect" not in result["msg"], result["msg"]


def test_mariadb_rds_preflight_wants_execute_on_the_procedures(fleet, emulated):
    if emulated["engine"] != "mysql":
        pytest.skip("RDS for MySQL / MariaDB")
    user = "mgd_noexec_%s" % uuid.uuid4().hex[:6]
    privileges = platforms.RDS_MASTER_PRIVILEGES.replace(" EXECUTE,", "")
    with mariadb.admin_connect(fleet.server(MY), autocommit=True) as admin:
        admin.cursor().execute("CREATE USER %s@'%%' IDENTIFIED BY 'mgd-Secret1'", (user,))
        admin.cursor().execute("GRANT " + privileges + " ON *.* TO %s@'%%'", (user,))
    try:
        with myfx.driver(fleet, MY, user=user, password="mgd-Secret1") as driver:
            assert driver.platform == "rds"
            with pytest.raises(SessionError) as missing:
                driver.preflight(signal=True)
            message = str(missing.value)
            assert "EXECUTE on mysql.rds_kill" in message and "CONNECTION ADMIN" not in message, message
            assert "GRANT EXECUTE ON PROCEDURE mysql.rds_kill TO" in message, message
            driver.preflight(signal=False)  # listing needs no kill right
        # A login that may KILL (CONNECTION ADMIN: Aurora MySQL 3, RDS MySQL 8.0.36+) keeps KILL.
        with myfx.driver(fleet, MY) as driver:
            driver.list_sessions()
            assert driver.platform == "rds" and not driver.flavour.rds_kill
            driver.preflight(signal=True)
    finally:
        with mariadb.admin_connect(fleet.server(MY), autocommit=True) as admin:
            admin.cursor().execute("DROP USER IF EXISTS %s@'%%'", (user,))


def test_the_audit_role_reports_each_hosts_platform(fleet, emulated, tmp_path):
    if emulated["engine"] != "postgresql" or emulated["platform"] != "rds":
        pytest.skip("one role run")
    tag = "mgd-%s" % uuid.uuid4().hex[:8]
    group_vars = {
        "dbhygiene_policy": {
            "name": "audit-" + tag,
            "rules": [{"name": "svc", "users": [emulated["service"]], "applications": ["svc-*"]}],
            "protect": {"superusers": False},
            "limits": {"max_fraction": "unlimited"},
        },
        "dbhygiene_report_dir": str(tmp_path / "reports"),
    }
    inventory = write_inventory(fleet, tmp_path, group_vars, hosts=("pg1", PG))

    def as_admin(groups):
        groups["postgresql"]["hosts"][PG].update(
            dbhygiene_login_user=emulated["admin"], dbhygiene_login_password=emulated["password"]
        )
        groups["postgresql"]["hosts"]["pg1"]["dbhygiene_platform"] = "self_managed"

    edit_inventory(inventory, as_admin)
    run = run_playbook(AUDIT, inventory=inventory)
    assert run.rc == 0, run.output
    report = read_json(str(tmp_path / "reports" / "audit-latest.json"))
    assert report["hosts"][PG]["platform"] == "rds" and report["hosts"]["pg1"]["platform"] == "self_managed"
    assert report["hosts"][PG]["would_end"] == [] and report["hosts"][PG]["protected"] >= 1
