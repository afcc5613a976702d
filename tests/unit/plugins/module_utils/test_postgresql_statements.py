# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL driver's statements (module_utils/_postgresql/statements.py): query builders,
records, identifiers.

No database here: what the SQL does on a server is tested in
tests/integration/test_postgresql_driver.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import driver
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import statements as pg

HOSTILE = 'it\'s "quoted"; %s %(x)s -- DROP TABLE x; \\'


# ---------------------------------------------------------------- query builders
def test_list_query_excludes_ourselves_and_non_client_backends_with_parameters():
    sql, args = pg.list_sessions_query(HOSTILE)
    assert args == {"own_application": HOSTILE, "query_max": 1024}
    assert HOSTILE not in sql
    assert "a.backend_type = 'client backend'" in sql
    assert "a.pid <> pg_backend_pid()" in sql
    assert "a.application_name IS DISTINCT FROM %(own_application)s" in sql
    assert "left(a.query, %(query_max)s)" in sql
    assert sql.count("FROM pg_stat_activity") == 1  # one statement, one snapshot


def test_session_setup_bounds_our_statements_on_the_server():
    sql, args = pg.session_setup_query(30)
    assert sql == (
        "SELECT pg_backend_pid(), set_config('statement_timeout', %(statement_timeout)s, false), "
        "current_setting('server_version_num')::int"
    )
    assert args == {"statement_timeout": "30s"}


def test_sweep_lock_queries_take_a_session_advisory_lock_without_waiting():
    lock, lock_args = pg.sweep_lock_query()
    unlock, unlock_args = pg.sweep_unlock_query()
    assert lock == "SELECT pg_try_advisory_lock(%(key)s::bigint)"
    assert unlock == "SELECT pg_advisory_unlock(%(key)s::bigint)"
    assert lock_args == unlock_args == {"key": pg.SWEEP_LOCK_KEY}
    assert pg.SWEEP_LOCK_KEY == 2306003038  # fixed: two versions of the collection must share it


def test_query_templates_are_templates():
    """Every statement the driver runs: its statements' and its guard's."""
    templates = object.__new__(driver.PostgreSQLDriver).query_templates()
    assert len(templates) == 9
    assert any("pg_terminate_backend" in t for t in templates)
    assert any("pg_cancel_backend" in t for t in templates)
    assert any("pg_try_advisory_lock" in t for t in templates)
    assert all("{signal}" not in t for t in templates)
    json.dumps(templates)


def test_server_role_from_recovery():
    assert pg.role_query() == ("SELECT pg_is_in_recovery()", {})
    assert pg.server_role(True) == "standby"
    assert pg.server_role(False) == "primary"


# ---------------------------------------------------------------- records
def row(**overrides):
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    record = {
        "pid": 4711,
        "backend_start": datetime.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=plus2),
        "usename": HOSTILE,
        "datname": "appdb",
        "application_name": "web",
        "client_addr": "10.1.2.3",
        "client_port": 50000,
        "client_hostname": None,
        "state": "idle_in_transaction",
        "raw_state": "idle in transaction",
        "state_change": datetime.datetime(2024, 5, 1, 10, 5, 0, tzinfo=plus2),
        "query_start": datetime.datetime(2024, 5, 1, 10, 4, 59, tzinfo=plus2),
        "xact_start": datetime.datetime(2024, 5, 1, 10, 4, 58, tzinfo=plus2),
        "connected_seconds": 3600.123456,
        "idle_seconds": 3300.0004,
        "query_seconds": None,
        "transaction_seconds": 3302.5,
        "query": "SELECT 1",
        "backend_type": "client backend",
        "wait_event_type": "Client",
        "wait_event": "ClientRead",
        "superuser": False,
        "blocked_by": None,
        "lock_wait_seconds": None,
        "lock_kind": None,
    }
    record.update(overrides)
    return record


def test_normalize_row_gives_the_record_of_the_contract():
    session = pg.normalize_row(row())
    assert session["id"] == 4711
    assert session["connected_at"] == "2024-05-01T08:00:00.123456+00:00"  # UTC, microseconds kept
    assert session["key"] == "4711@2024-05-01T08:00:00.123456+00:00"
    assert session["state_since"] == "2024-05-01T08:05:00+00:00"
    assert session["transaction_start"] == "2024-05-01T08:04:58+00:00"
    assert session["user"] == HOSTILE
    assert session["connected_seconds"] == 3600.123
    assert session["idle_seconds"] == 3300.0
    assert session["query_seconds"] is None
    assert session["superuser"] is False and session["command"] is None
    for field in (
        "id",
        "key",
        "user",
        "database",
        "application",
        "client_addr",
        "state",
        "connected_at",
        "state_since",
        "connected_seconds",
        "idle_seconds",
        "query_seconds",
        "transaction_seconds",
        "query",
        "superuser",
        "backend_type",
    ):
        assert field in session, field
    json.dumps(session)


@pytest.mark.parametrize(
    "key",
    [None, "", "4711", "abc@2024-01-01", "4711 @x", "-1@2024-01-01T00:00:00+00:00"],
)
def test_parse_key_rejects_what_is_not_a_key(key):
    with pytest.raises(ValueError):
        pg.parse_key(key)


def test_the_pure_files_import_without_psycopg2():
    """The statements, the guard, the connection options and the drain import without psycopg2."""
    import subprocess
    import sys

    collections = os.path.abspath(os.path.join(os.path.dirname(pg.__file__), "..", "..", "..", "..", "..", ".."))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.modules['psycopg2'] = None; "
        "from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import statements as s; "
        "from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import connect, drain, guard; "
        "print(s.list_sessions_query('me')[1]['own_application'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, collections],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "me"


# ---------------------------------------------------------------- locks
def test_list_query_reads_who_waits_on_whom_in_the_same_statement():
    sql, dummy = pg.list_sessions_query("me")
    assert sql.count("FROM pg_stat_activity") == 1  # one read, one snapshot, for sessions and waits
    assert sql.startswith("WITH act AS (SELECT a.*, ")
    # pg_blocking_pids only for backends waiting on a heavyweight lock.
    assert "CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(holder)" in sql
    assert "WHERE w.wait_event_type = 'Lock' AND w.pid <> pg_backend_pid()" in sql
    assert "LEFT JOIN pg_locks AS l ON l.pid = w.pid AND NOT l.granted" in sql
    assert "LEFT JOIN waits AS lw ON lw.pid = a.pid" in sql
    assert "lw.blocked_by" in sql and "AS lock_wait_seconds" in sql and "lw.lock_kind" in sql
    assert "{" not in sql and "}" not in sql


@pytest.mark.parametrize(
    "version_num, lock_group, wait_start",
    [
        (None, "COALESCE(a.leader_pid, a.pid)", "COALESCE(l.waitstart, w.state_change)"),
        (160004, "COALESCE(a.leader_pid, a.pid)", "COALESCE(l.waitstart, w.state_change)"),
        (150018, "COALESCE(a.leader_pid, a.pid)", "COALESCE(l.waitstart, w.state_change)"),
        (140000, "COALESCE(a.leader_pid, a.pid)", "COALESCE(l.waitstart, w.state_change)"),
        (130012, "COALESCE(a.leader_pid, a.pid)", "min(w.state_change)"),
        (120020, "a.pid AS lock_group", "min(w.state_change)"),
        (100023, "a.pid AS lock_group", "min(w.state_change)"),
    ],
)
def test_list_query_branches_on_the_server_version(version_num, lock_group, wait_start):
    sql, dummy = pg.list_sessions_query("me", version_num=version_num)
    assert lock_group in sql
    assert wait_start in sql
    if version_num is not None and version_num < 140000:
        assert "waitstart" not in sql
    if version_num is not None and version_num < 130000:
        assert "leader_pid" not in sql


def test_query_templates_list_the_newest_listing():
    assert pg.list_sessions_query("me")[0] in pg.query_templates()


def test_a_waiting_row_has_its_lock_fields():
    session = pg.normalize_row(
        row(state="active", blocked_by=[9, 3], lock_wait_seconds=12.34567, lock_kind="transactionid")
    )
    assert session["blocked_by"] == [3, 9]
    assert session["lock_wait_seconds"] == 12.346
    assert session["lock_kind"] == "transactionid"
    json.dumps(session)


def test_a_row_that_waits_on_nothing_has_empty_lock_fields():
    session = pg.normalize_row(row())
    assert session["blocked_by"] == []
    assert session["lock_wait_seconds"] is None and session["lock_kind"] is None


@pytest.mark.parametrize(
    "name, quoted",
    [("app", '"app"'), ('we"ird', '"we""ird"'), ("100%", '"100%%"'), ("a b;--", '"a b;--"')],
)
def test_quote_ident(name, quoted):
    assert pg.quote_ident(name) == quoted


def test_quote_ident_for_a_statement_without_parameters_keeps_percent_signs():
    assert pg.quote_ident('100% "x"', params=False) == '"100% ""x"""'


@pytest.mark.parametrize("bad", ["", None, "a\x00b", 3])
def test_quote_ident_refuses_what_is_no_identifier(bad):
    with pytest.raises(ValueError, match="not an identifier"):
        pg.quote_ident(bad)
