# -*- coding: utf-8 -*-
"""Timeouts on real servers: postgresql_timeouts, mysql_timeouts, the timeouts role.

Each test works on objects of its own (a role, a database, a user it creates) or, for
the server level, restores the server's previous values afterwards, so other tests
never meet a limit they did not set. Four steps everywhere: check mode, real, check
mode again, real again, each asserting `changed` and then what the server says
(SHOW / pg_db_role_setting / pg_file_settings / @@GLOBAL / mysql.user).
"""

import json
import os
import sys
import uuid

import pytest
import yaml
from conftest import run_module, run_playbook, wait_until

pytest.register_assert_rewrite("_postgresql_fixtures", "_mysql_fixtures")
import _mysql_fixtures as myfx  # noqa: E402,I001 (after register_assert_rewrite)
import _postgresql_fixtures as pgfx  # noqa: E402

from ansible_collections.dbhygiene.sessions.plugins.modules import (  # noqa: E402
    mysql_timeouts,
    postgresql_timeouts,
    session_timeouts,
)
from dbfleet import holder  # noqa: E402
from psycopg2 import sql  # noqa: E402

pytest_plugins = ["_postgresql_fixtures", "_mysql_fixtures"]

PG, MY = "pg2", "mariadb2"
PG_MODULE = "dbhygiene.sessions.postgresql_timeouts"
MY_MODULE = "dbhygiene.sessions.mysql_timeouts"
ADMIN = "fleet_admin"
# idle_session_timeout came with PostgreSQL 14; on 13 the module and the role refuse idle_session.
IDLE_SESSION_VERSION_NUM = 140000
MY_VARIABLES = ("idle_transaction_timeout", "max_statement_time", "wait_timeout")


def pg_args(fleet, timeouts, server=PG, **overrides):
    args = pgfx.conn_params(fleet, server, user=ADMIN)
    args.update(timeouts=timeouts, **overrides)
    return args


def my_args(fleet, timeouts, server=MY, **overrides):
    args = myfx.module_conn(fleet, server, user=ADMIN, password=fleet.password(ADMIN))
    args.update(timeouts=timeouts, **overrides)
    return args


def four_steps(module, args):
    """check, real, check, real: the four results (each asserted not failed)."""
    results = []
    for check in (True, False, True, False):
        result, run = run_module(module, args, check=check, diff=True)
        assert not result.get("failed"), run.output
        results.append((result, run))
    return results


# ---------------------------------------------------------------- PostgreSQL helpers
def pg_query(fleet, statement, params=None, server=PG, dbname="postgres"):
    conn = pgfx.postgres.admin_connect(fleet.server(server), dbname=dbname)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def role_settings(fleet, role, server=PG):
    rows = pg_query(
        fleet,
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
        "WHERE r.rolname = %s AND s.setdatabase = 0",
        (role,),
        server,
    )
    return sorted(rows[0][0]) if rows else []


def database_settings(fleet, database, server=PG):
    rows = pg_query(
        fleet,
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE d.datname = %s AND s.setrole = 0",
        (database,),
        server,
    )
    return sorted(rows[0][0]) if rows else []


@pytest.fixture
def pg_database(fleet):
    name = "t_%s" % uuid.uuid4().hex[:8]
    pg_query(fleet, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    pg_query(fleet, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def pg_idle_session(fleet):
    """Whether PG has idle_session_timeout (PostgreSQL 14+): the suites run on every major."""
    return pgfx.server_version_num(fleet, PG) >= IDLE_SESSION_VERSION_NUM


@pytest.fixture
def pg_idle(pg_idle_session):
    """(field, variable) of an idle limit PG has at every level: idle_session from 14 on,
    else idle_in_transaction (tests of the levels, not of the limit)."""
    if pg_idle_session:
        return "idle_session", "idle_session_timeout"
    return "idle_in_transaction", "idle_in_transaction_session_timeout"


@pytest.fixture
def pg_server_restored(fleet):
    """The server-level timeouts of PG as they were, again after the test."""
    yield
    known = pg_query(
        fleet,
        "SELECT name FROM pg_settings WHERE name IN "
        "('idle_session_timeout', 'idle_in_transaction_session_timeout', 'statement_timeout') ORDER BY name",
    )
    for (variable,) in known:
        pg_query(fleet, "ALTER SYSTEM RESET %s" % variable)
    pg_query(fleet, "SELECT pg_reload_conf()")


# ---------------------------------------------------------------- MariaDB helpers
def my_globals(fleet, server=MY):
    with myfx.admin(fleet, server) as cur:
        cur.execute("SELECT @@GLOBAL.idle_transaction_timeout, @@GLOBAL.max_statement_time, @@GLOBAL.wait_timeout")
        return dict(zip(MY_VARIABLES, cur.fetchone()))


def account_limits(fleet, user, server=MY):
    with myfx.admin(fleet, server) as cur:
        cur.execute("SELECT Host, max_statement_time FROM mysql.user WHERE User = %s ORDER BY Host", (user,))
        return dict((host, float(value)) for host, value in cur.fetchall())


@pytest.fixture
def my_server_restored(fleet):
    """MY's global timeouts as they were, again after the test."""
    before = my_globals(fleet)
    yield before
    with myfx.admin(fleet, MY) as cur:
        for variable, value in before.items():
            cur.execute("SET GLOBAL %s = %%s" % variable, (value,))
    assert my_globals(fleet) == before


# ---------------------------------------------------------------- PostgreSQL
def test_postgresql_role_and_database_levels_in_four_steps(fleet, pg_role, pg_database, pg_idle):
    role = "t_" + uuid.uuid4().hex[:6] + pgfx.HOSTILE
    pg_role(PG, role)
    idle, idle_variable = pg_idle
    timeouts = {
        "roles": {role: {"idle_in_transaction": "5m", "statement": "2h"}},
        "databases": {pg_database: {idle: "1h30m", "statement": 0}},
    }
    (check, check_run), (real, real_run), (again_check, _again_check_run), (again, again_run) = four_steps(
        PG_MODULE, pg_args(fleet, timeouts)
    )

    assert check["changed"] is True and check["check_mode"] is True
    assert check_run.task_status("the module") == "changed"
    assert [s["given_as"] for s in check["settings"] if s["changed"]] == [
        f"timeouts.roles.{role}.idle_in_transaction",
        f"timeouts.roles.{role}.statement",
        f"timeouts.databases.{pg_database}.{idle}",
        f"timeouts.databases.{pg_database}.statement",
    ]
    [diff] = check["diff"]
    assert f"role {role}: statement_timeout = (not set)" in diff["before"]
    assert f"role {role}: statement_timeout = 2h" in diff["after"]
    assert f"database {pg_database}: {idle_variable} = 90min" in diff["after"]
    assert check["queries"] == real["queries"]

    assert real["changed"] is True and real_run.task_status("the module") == "changed"
    assert role_settings(fleet, role) == ["idle_in_transaction_session_timeout=5min", "statement_timeout=2h"]
    assert database_settings(fleet, pg_database) == [f"{idle_variable}=90min", "statement_timeout=0"]

    assert again_check["changed"] is False and again["changed"] is False, again_run.output
    assert again["queries"] == [] and all(not s["changed"] for s in again["settings"])
    assert [s["current"] for s in again["settings"]] == [300000, 7200000, 5400000, 0]
    assert again_run.task_status("the module") == "ok"


def test_postgresql_new_sessions_get_the_values(fleet, pg_role, pg_database):
    role = "t_" + uuid.uuid4().hex[:8]
    password = pg_role(PG, role)
    result, run = run_module(
        PG_MODULE,
        pg_args(
            fleet, {"roles": {role: {"statement": "45s"}}, "databases": {pg_database: {"idle_in_transaction": "2m"}}}
        ),
    )
    assert result["changed"] is True, run.output
    held = holder.open_session(fleet, PG, "idle", user=role, password=password, database=pg_database)
    try:
        cur = held.conn.cursor()
        cur.execute(
            "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')"
        )
        assert cur.fetchone() == ("45s", "2min")
    finally:
        held.close()


def test_postgresql_server_level_is_alter_system_and_reloaded(fleet, pg_server_restored, pg_idle):
    idle, idle_variable = pg_idle
    timeouts = {"server": {idle: "12h", "statement": "6h"}}
    steps = four_steps(PG_MODULE, pg_args(fleet, timeouts))
    check, real, again_check, again = [result for result, _run in steps]
    assert check["changed"] is True and real["changed"] is True, steps[1][1].output
    assert real["queries"] == [
        f"ALTER SYSTEM SET {idle_variable} = '12h'",
        "ALTER SYSTEM SET statement_timeout = '6h'",
        "SELECT pg_reload_conf()",
    ]
    assert again_check["changed"] is False and again["changed"] is False
    files = dict(
        pg_query(
            fleet,
            "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%%postgresql.auto.conf' "
            "AND name IN (%s, 'statement_timeout')",
            (idle_variable,),
        )
    )
    assert files == {idle_variable: "12h", "statement_timeout": "6h"}
    # A new session sees the reloaded value.
    assert wait_until(lambda: pg_query(fleet, "SHOW %s" % idle_variable) == [("12h",)])


def test_postgresql_check_mode_changes_nothing(fleet, pg_role, pg_server_restored):
    role = "t_" + uuid.uuid4().hex[:8]
    pg_role(PG, role)
    before = pg_query(fleet, "SELECT name, setting FROM pg_file_settings ORDER BY seqno")
    result, run = run_module(
        PG_MODULE, pg_args(fleet, {"server": {"statement": "1h"}, "roles": {role: {"statement": "1m"}}}), check=True
    )
    assert result["changed"] is True and result["check_mode"] is True, run.output
    assert role_settings(fleet, role) == []
    assert pg_query(fleet, "SELECT name, setting FROM pg_file_settings ORDER BY seqno") == before


def test_postgresql_refuses_before_any_change(fleet, pg_role):
    role = "t_" + uuid.uuid4().hex[:8]
    pg_role(PG, role)
    missing = "t_missing_" + uuid.uuid4().hex[:6]
    result, run = run_module(
        PG_MODULE, pg_args(fleet, {"roles": {role: {"statement": "1m"}, missing: {"statement": "1m"}}})
    )
    assert result.get("failed") is True, run.output
    assert result["field"] == f"timeouts.roles.{missing}.statement"
    assert f"no role '{missing}'" in result["msg"] and "nothing was changed" in result["msg"]
    assert role_settings(fleet, role) == []


def test_postgresql_idle_session_where_the_major_has_it(
    fleet, pg_role, pg_database, pg_server_restored, pg_idle_session, tmp_path
):
    # idle_session_timeout came with PostgreSQL 14. Before, the module refuses idle_session at
    # every level, naming the field and saying the engine has no such limit there, before any
    # change (the statement limit asked beside it is not set either); so does the role.
    role = "t_" + uuid.uuid4().hex[:8]
    pg_role(PG, role)
    levels = {
        "server": {"server": {"idle_session": "1h"}},
        f"roles.{role}": {"roles": {role: {"statement": "1m", "idle_session": "1h"}}},
        f"databases.{pg_database}": {"databases": {pg_database: {"statement": "1m", "idle_session": "1h"}}},
    }
    server_files = "SELECT name, setting FROM pg_file_settings ORDER BY seqno"
    if pg_idle_session:
        both = {key: value for timeouts in levels.values() for key, value in timeouts.items()}
        result, run = run_module(PG_MODULE, pg_args(fleet, both))
        assert not result.get("failed") and result["changed"] is True, run.output
        assert role_settings(fleet, role) == ["idle_session_timeout=1h", "statement_timeout=1min"]
        assert database_settings(fleet, pg_database) == ["idle_session_timeout=1h", "statement_timeout=1min"]
        assert ("idle_session_timeout", "1h") in pg_query(fleet, server_files)
        return
    before = pg_query(fleet, server_files)
    for level, timeouts in levels.items():
        result, run = run_module(PG_MODULE, pg_args(fleet, timeouts))
        assert result.get("failed") is True, run.output
        assert result["field"] == f"timeouts.{level}.idle_session"
        assert "has no idle_session_timeout" in result["msg"] and "PostgreSQL 14" in result["msg"]
        assert "nothing was changed" in result["msg"]
    assert role_settings(fleet, role) == [] and database_settings(fleet, pg_database) == []
    assert pg_query(fleet, server_files) == before

    hosts = {
        PG: {
            "ansible_host": fleet.server(PG)["host"],
            "dbhygiene_engine": "postgresql",
            "dbhygiene_login_db": "postgres",
            "dbhygiene_timeouts": levels[f"roles.{role}"],
        }
    }
    run = run_playbook(_role_playbook(tmp_path), inventory=_inventory(fleet, tmp_path, hosts))
    assert run.rc != 0 and run.stats[PG]["failures"] == 1, run.output
    assert f"timeouts.roles.{role}.idle_session" in run.output and "has no idle_session_timeout" in run.output
    assert role_settings(fleet, role) == []


@pytest.mark.parametrize(
    "timeouts, field, words",
    [
        ({"server": {"statement": "30d"}}, "timeouts.server.statement", "at most 2147483s"),
        ({"server": {"statment": "30m"}}, "timeouts.server.statment", "unknown key"),
        ({"roles": {"app": {"statement": "ten minutes"}}}, "timeouts.roles.app.statement", "invalid duration"),
    ],
)
def test_bad_values_fail_before_any_connection(fleet, timeouts, field, words):
    # An address nothing listens on: the error must be the value's, not the connection's.
    result, run = run_module(PG_MODULE, pg_args(fleet, timeouts, login_host="127.0.0.1", login_port=1))
    assert result.get("failed") is True and result["field"] == field, run.output
    assert words in result["msg"] and "connect" not in result["msg"]


def test_postgresql_ends_an_idle_transaction_by_itself(fleet, pg_role):
    role = "t_" + uuid.uuid4().hex[:8]
    password = pg_role(PG, role)
    result, run = run_module(PG_MODULE, pg_args(fleet, {"roles": {role: {"idle_in_transaction": "1s"}}}))
    assert result["changed"] is True, run.output
    stuck = holder.open_session(fleet, PG, "idle_in_transaction", user=role, password=password)
    bystander = holder.open_session(fleet, PG, "idle_in_transaction", user="app")
    try:
        assert wait_until(lambda: not stuck.alive(), timeout=15)
        # The limit is the role's: another login's open transaction, as old, is still there.
        assert bystander.alive()
    finally:
        stuck.close()
        bystander.close()


# ---------------------------------------------------------------- MariaDB
def test_mariadb_server_and_user_levels_in_four_steps(fleet, my_user, my_server_restored, tmp_path):
    user, _password = my_user(server=MY)
    persist = str(tmp_path / "99-dbhygiene-timeouts.cnf")
    timeouts = {"server": {"idle_in_transaction": "10m", "statement": "1h"}, "roles": {user: {"statement": "2m"}}}
    before = dict(my_server_restored)
    args = my_args(fleet, timeouts, persist_file=persist)
    check, run = run_module(MY_MODULE, args, check=True, diff=True)
    assert check["changed"] is True and check["persist_file_changed"] is True, run.output
    assert not os.path.exists(persist) and my_globals(fleet) == before
    texts = "".join(d["before"] + d["after"] for d in check["diff"])
    assert "server: idle_transaction_timeout = 600" in texts and f"role {user}@%: max_statement_time = 120" in texts
    assert f"role {user}@localhost: max_statement_time = 0" in check["diff"][0]["before"]
    assert check["diff"][1]["after_header"] == persist

    (real, real_run), (again_check, _again_check_run), (again, again_run) = four_steps(MY_MODULE, args)[1:]
    assert real["changed"] is True and real["persisted"] is True, real_run.output
    assert my_globals(fleet) == dict(before, idle_transaction_timeout=600, max_statement_time=3600.0)
    assert account_limits(fleet, user) == {"%": 120.0, "localhost": 120.0}
    with open(persist) as handle:
        assert handle.read().split("[mysqld]\n")[1] == "idle_transaction_timeout = 600\nmax_statement_time = 3600\n"

    assert again_check["changed"] is False and again["changed"] is False, again_run.output
    assert again["persist_file_changed"] is False and again["queries"] == []


def test_mariadb_without_persist_file_says_so(fleet, my_server_restored):
    result, run = run_module(MY_MODULE, my_args(fleet, {"server": {"idle_session": "7h"}}))
    assert result["changed"] is True and result["persisted"] is False, run.output
    assert "MariaDB has no SET PERSIST" in run.output
    assert my_globals(fleet)["wait_timeout"] == 7 * 3600


def test_mariadb_check_mode_changes_nothing(fleet, my_user, my_server_restored):
    user, _password = my_user(server=MY)
    before = dict(my_server_restored)
    result, run = run_module(
        MY_MODULE,
        my_args(fleet, {"server": {"idle_in_transaction": "1m"}, "roles": {user: {"statement": 5}}}),
        check=True,
    )
    assert result["changed"] is True and result["check_mode"] is True, run.output
    assert my_globals(fleet) == before
    assert account_limits(fleet, user) == {"%": 0.0, "localhost": 0.0}


@pytest.mark.parametrize(
    "timeouts, field, words",
    [
        ({"databases": {"appdb": {"statement": "1h"}}}, "timeouts.databases.appdb.statement", "no per-database"),
        ({"roles": {"app": {"idle_session": "1h"}}}, "timeouts.roles.app.idle_session", "no per-user idle_session"),
        ({"server": {"idle_session": 0}}, "timeouts.server.idle_session", "no 'no limit'"),
    ],
)
def test_mariadb_refuses_what_it_has_not_before_connecting(fleet, timeouts, field, words):
    result, run = run_module(MY_MODULE, my_args(fleet, timeouts, login_host="127.0.0.1", login_port=1))
    assert result.get("failed") is True and result["field"] == field, run.output
    assert words in result["msg"] and "connect" not in result["msg"]


def test_mariadb_refuses_a_missing_account_before_any_change(fleet, my_server_restored):
    before = dict(my_server_restored)
    missing = "t_missing_" + uuid.uuid4().hex[:6]
    result, run = run_module(
        MY_MODULE, my_args(fleet, {"server": {"idle_in_transaction": "1m"}, "roles": {missing: {"statement": 5}}})
    )
    assert result.get("failed") is True and result["field"] == f"timeouts.roles.{missing}.statement", run.output
    assert "nothing was changed" in result["msg"]
    assert my_globals(fleet) == before


def test_mariadb_ends_an_idle_transaction_by_itself(fleet, my_server_restored):
    result, run = run_module(MY_MODULE, my_args(fleet, {"server": {"idle_in_transaction": "1s"}}))
    assert result["changed"] is True, run.output
    stuck = holder.open_session(fleet, MY, "idle_in_transaction")
    idle = holder.open_session(fleet, MY, "idle")
    try:
        assert wait_until(lambda: not stuck.alive(), timeout=15)
        # Only open transactions: an idle session without one stays.
        assert idle.alive()
    finally:
        stuck.close()
        idle.close()


# ---------------------------------------------------------------- the role
def _inventory(fleet, tmp_path, hosts_vars):
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "dbhygiene_login_user": ADMIN,
                "dbhygiene_login_password": fleet.password(ADMIN),
                "dbhygiene_audit_log": str(tmp_path / "audit.jsonl"),
            },
            "hosts": hosts_vars,
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return str(path)


def _role_hosts(fleet, pg_timeouts, my_timeouts):
    """The inventory's host variables of PG and MY, each with its dbhygiene_timeouts."""
    return {
        PG: {
            "ansible_host": fleet.server(PG)["host"],
            "dbhygiene_engine": "postgresql",
            "dbhygiene_login_db": "postgres",
            "dbhygiene_timeouts": pg_timeouts,
        },
        MY: {"ansible_host": fleet.server(MY)["host"], "dbhygiene_engine": "mysql", "dbhygiene_timeouts": my_timeouts},
    }


def _role_playbook(tmp_path):
    path = tmp_path / "timeouts.yml"
    path.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Timeouts",
                    "hosts": "all",
                    "gather_facts": False,
                    "roles": [{"role": "dbhygiene.sessions.timeouts"}],
                }
            ]
        )
    )
    return str(path)


def _trail(tmp_path):
    path = tmp_path / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_role_refuses_a_persist_file_on_the_controller_only_for_the_engine_that_takes_one(fleet, tmp_path):
    """persist_file is an option of the MySQL / MariaDB timeouts module (the engine registry says
    which engine takes it): with run_on controller that host fails before any connection; the
    PostgreSQL host, whose module has no such option, runs as if it were unset."""
    persist = str(tmp_path / "timeouts.cnf")
    hosts = _role_hosts(fleet, {"server": {"statement": "1h"}}, {"server": {"idle_in_transaction": "20m"}})
    for host in (PG, MY):
        hosts[host]["dbhygiene_timeouts_persist_file"] = persist
    inventory = _inventory(fleet, tmp_path, hosts)
    run = run_playbook(
        _role_playbook(tmp_path), inventory=inventory, check=True, extra_vars={"dbhygiene_run_on": "controller"}
    )
    assert run.rc != 0 and run.stats[MY]["failures"] == 1 and run.stats[PG]["failures"] == 0, run.output
    assert "persist_file is an option file on the database host, but dbhygiene_run_on is controller" in run.output
    assert not os.path.exists(persist)


@pytest.mark.parametrize("run_on", ["controller", "host"])
def test_the_role_on_both_engines(fleet, pg_role, my_user, my_server_restored, tmp_path, run_on):
    role = "t_" + uuid.uuid4().hex[:8]
    pg_role(PG, role)
    user, _password = my_user(server=MY)
    persist = str(tmp_path / "timeouts.cnf")
    hosts = _role_hosts(
        fleet,
        {"roles": {role: {"idle_in_transaction": "5m", "statement": "1h"}}},
        {"server": {"idle_in_transaction": "20m"}, "roles": {user: {"statement": "1h"}}},
    )
    if run_on == "host":
        hosts[MY]["dbhygiene_timeouts_persist_file"] = persist
    inventory = _inventory(fleet, tmp_path, hosts)
    extra = {"dbhygiene_run_on": run_on}
    playbook = _role_playbook(tmp_path)

    check = run_playbook(playbook, inventory=inventory, check=True, diff=True, extra_vars=extra)
    assert check.rc == 0, check.output
    assert role_settings(fleet, role) == [] and account_limits(fleet, user) == {"%": 0.0, "localhost": 0.0}
    assert "statement_timeout = (not set)" in check.output and "statement_timeout = 1h" in check.output
    lines = _trail(tmp_path)
    assert len(lines) == 2 + 1 + 2 + (1 if run_on == "host" else 0)
    assert all(line["check_mode"] is True and line["outcome"] == "would_set" for line in lines)

    real = run_playbook(playbook, inventory=inventory, extra_vars=extra)
    assert real.rc == 0, real.output
    assert real.stats[PG]["changed"] == 1 and real.stats[MY]["changed"] == 1, real.output
    assert role_settings(fleet, role) == ["idle_in_transaction_session_timeout=5min", "statement_timeout=1h"]
    assert account_limits(fleet, user) == {"%": 3600.0, "localhost": 3600.0}
    assert my_globals(fleet)["idle_transaction_timeout"] == 1200
    assert os.path.exists(persist) == (run_on == "host")
    done = [line for line in _trail(tmp_path) if not line["check_mode"]]
    assert sorted(
        [(line["host"], line["target"], line["variable"], line["after"]) for line in done], key=str
    ) == sorted(
        [
            (PG, role, "idle_in_transaction_session_timeout", "5min"),
            (PG, role, "statement_timeout", "1h"),
            (MY, None, "idle_transaction_timeout", "1200"),
            (MY, user + "@%", "max_statement_time", "3600"),
            (MY, user + "@localhost", "max_statement_time", "3600"),
        ]
        + ([(MY, persist, None, None)] if run_on == "host" else []),
        key=str,
    )
    assert all(line["outcome"] == "set" for line in done)

    again = run_playbook(playbook, inventory=inventory, extra_vars=extra)
    assert again.rc == 0 and again.stats[PG]["changed"] == 0 and again.stats[MY]["changed"] == 0, again.output
    assert len(_trail(tmp_path)) == len(lines) * 2


def test_the_role_refuses_a_bad_value_before_connecting(fleet, tmp_path):
    hosts = {
        MY: {
            "ansible_host": "127.0.0.1",
            "dbhygiene_login_port": 1,
            "dbhygiene_engine": "mysql",
            "dbhygiene_timeouts": {"databases": {"appdb": {"statement": "1h"}}},
        }
    }
    run = run_playbook(_role_playbook(tmp_path), inventory=_inventory(fleet, tmp_path, hosts))
    assert run.rc != 0
    assert "timeouts.databases.appdb.statement" in run.output and "no per-database" in run.output
    assert _trail(tmp_path) == []


# ---------------------------------------------------------------- EXAMPLES as written
def _examples(module):
    return yaml.safe_load(module.EXAMPLES)


def test_examples_run_as_written(fleet, my_server_restored, tmp_path):
    pg_host, my_host = fleet.server(PG)["host"], fleet.server(MY)["host"]
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "pg_host": pg_host,
                "pg_admin": ADMIN,
                "pg_admin_password": fleet.password(ADMIN),
                "mysql_host": my_host,
                "mysql_admin": ADMIN,
                "mysql_admin_password": fleet.password(ADMIN),
                "mysql_timeouts_file": str(tmp_path / "timeouts.cnf"),
            },
            "hosts": {PG: {"ansible_host": pg_host}},
        }
    }
    tasks = _examples(postgresql_timeouts) + _examples(mysql_timeouts) + _examples(session_timeouts)
    playbook = [{"name": "EXAMPLES of the timeouts modules", "hosts": PG, "gather_facts": False, "tasks": tasks}]
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "examples.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    home = tmp_path / "home"
    home.mkdir()
    try:
        run = run_playbook(
            str(tmp_path / "examples.yml"), inventory=str(tmp_path / "inventory.yml"), env={"HOME": str(home)}
        )
        assert run.rc == 0, run.output
        ran = [r for r in run.results if r["action"].startswith("dbhygiene.sessions.")]
        assert len(ran) == 6 and all(r["status"] == "ok" for r in ran), [(r["task"], r["status"]) for r in ran]
        # Each example changes something: the first of a pair sets a limit, the second lifts it.
        assert [r["result"].get("changed") for r in ran] == [True] * 6
        # Every example that set a limit is followed by one that lifts it.
        assert role_settings(fleet, "app") == ["idle_in_transaction_session_timeout=0", "statement_timeout=0"]
        assert account_limits(fleet, "app") == {"%": 0.0, "localhost": 0.0}
        assert len([json.loads(x) for x in (home / "dbhygiene" / "audit.jsonl").read_text().splitlines()]) == 2
    finally:
        for variable in ("idle_in_transaction_session_timeout", "statement_timeout"):
            pg_query(fleet, "ALTER ROLE app RESET %s" % variable)
