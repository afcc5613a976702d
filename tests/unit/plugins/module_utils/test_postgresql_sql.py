# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL driver's pure parts: options, query builders, records, messages.

No database here: what the SQL does on a server is tested in
tests/integration/test_postgresql_driver.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _postgresql as pg

HOSTILE = 'it\'s "quoted"; %s %(x)s -- DROP TABLE x; \\'


def params(**overrides):
    base = {
        "login_host": "db1.example.com",
        "login_port": 5432,
        "login_user": "hygiene",
        "login_password": "s3cret-pw",
        "login_unix_socket": None,
        "login_db": None,
        "connect_timeout": 10,
        "ssl_mode": "prefer",
        "ca_cert": None,
        "ssl_cert": None,
        "ssl_key": None,
    }
    base.update(overrides)
    return base


# ---------------------------------------------------------------- options
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            {},
            {
                "host": "db1.example.com",
                "port": 5432,
                "user": "hygiene",
                "password": "s3cret-pw",
                "dbname": "postgres",
                "connect_timeout": 10,
                "sslmode": "prefer",
            },
        ),
        (
            {"login_unix_socket": "/run/postgresql", "login_db": "appdb"},
            {"host": "/run/postgresql", "dbname": "appdb"},
        ),
        ({"login_unix_socket": "/run/postgresql/.s.PGSQL.5433"}, {"host": "/run/postgresql"}),
        (
            {"ssl_mode": "verify-full", "ca_cert": "/ca.crt", "ssl_cert": "/c.crt", "ssl_key": "/c.key"},
            {"sslmode": "verify-full", "sslrootcert": "/ca.crt", "sslcert": "/c.crt", "sslkey": "/c.key"},
        ),
    ],
    ids=["tcp", "socket-wins", "socket-file", "tls"],
)
def test_connect_kwargs(overrides, expected):
    kwargs = pg.connect_kwargs(params(**overrides), "dbhygiene.sessions-abc")
    assert kwargs["application_name"] == "dbhygiene.sessions-abc"
    for key, value in expected.items():
        assert kwargs[key] == value, key


def test_connect_kwargs_leaves_unset_options_to_libpq():
    kwargs = pg.connect_kwargs(
        params(login_host=None, login_password=None, login_user=None, login_port=None, ssl_mode=None), "app"
    )
    assert set(kwargs) == {"dbname", "application_name", "connect_timeout"}


def test_application_name_is_ours_and_unique():
    names = {pg._application_name() for dummy in range(20)}
    assert len(names) == 20
    assert all(name.startswith(pg.APPLICATION_PREFIX + "-") for name in names)


def test_argument_spec_hides_the_password_and_uses_libpq_environment():
    spec = pg.connection_argument_spec()
    assert spec["login_password"]["no_log"] is True
    assert spec["ssl_key"]["no_log"] is False  # a path, not a secret
    fallbacks = {name: option["fallback"][1] for name, option in spec.items() if "fallback" in option}
    assert fallbacks["login_host"] == ["PGHOST"]
    assert fallbacks["login_password"] == ["PGPASSWORD"]
    assert fallbacks["ssl_mode"] == ["PGSSLMODE"]
    assert spec["ssl_mode"]["choices"] == ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, "db1.example.com:5432"),
        ({"login_unix_socket": "/run/pg", "login_port": 5433}, "/run/pg (unix socket, port 5433)"),
        ({"login_host": None}, "the default PostgreSQL server (libpq defaults, port 5432)"),
    ],
)
def test_describe_target_never_shows_the_password(overrides, expected):
    described = pg.describe_target(params(**overrides))
    assert described == expected
    assert "s3cret-pw" not in described


def test_scrub_removes_the_password():
    assert pg._scrub("FATAL: bad password s3cret-pw\n\tfor x\n", params()) == "FATAL: bad password ******** for x"
    assert pg._scrub("nothing secret", params(login_password=None)) == "nothing secret"


@pytest.mark.parametrize(
    "message, hint_word",
    [
        ("SSL error: certificate verify failed", "ca_cert"),
        ('server certificate for "x" does not match host name "y"', "verify-full"),
        ('FATAL:  password authentication failed for user "hygiene"', "login_password"),
        ("connection refused\n\tIs the server running", "login_port"),
        ('no pg_hba.conf entry for host "127.0.0.1", user "x", database "y", SSL off', "pg_hba.conf"),
        ("something else entirely", None),
    ],
)
def test_connect_hints(message, hint_word):
    hint = pg._connect_hint(message)
    if hint_word is None:
        assert hint is None
    else:
        assert hint_word in hint


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


GUARDS = [
    (101, "2024-01-01T00:00:00.123456+00:00", "idle", "2024-01-01T00:05:00+00:00"),
    (202, "2024-01-02T00:00:00+00:00", "idle_in_transaction", None),
]


@pytest.mark.parametrize("mode, function", [("terminate", "pg_terminate_backend"), ("cancel", "pg_cancel_backend")])
def test_end_query_is_one_guarded_statement(mode, function):
    sql, args = pg.end_query(GUARDS, mode)
    assert args == {
        "pids": [101, 202],
        "backend_starts": ["2024-01-01T00:00:00.123456+00:00", "2024-01-02T00:00:00+00:00"],
        "states": ["idle", "idle_in_transaction"],
        "state_changes": ["2024-01-01T00:05:00+00:00", None],
    }
    assert "%s(a.pid)" % function in sql
    other = "pg_cancel_backend" if function == "pg_terminate_backend" else "pg_terminate_backend"
    assert other not in sql
    # Every guard precedes the signal in the CASE, so the signal is reached only when all hold.
    signal_at = sql.index(function)
    for guard in (
        "a.backend_start IS DISTINCT FROM v.backend_start",
        "a.backend_type IS DISTINCT FROM 'client backend'",
        "IS DISTINCT FROM v.state",
        "a.state_change IS DISTINCT FROM v.state_change",
        "pg_has_role('pg_signal_backend', 'USAGE')",
    ):
        assert -1 < sql.index(guard) < signal_at, guard
    for value in ("101", "202", "2024-01-0"):
        assert value not in sql


def test_end_query_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="terminate or cancel"):
        pg.end_query(GUARDS, "pg_reload_conf")


def test_query_templates_are_templates():
    templates = pg.query_templates()
    assert len(templates) == 6
    assert any("pg_terminate_backend" in t for t in templates)
    assert any("pg_cancel_backend" in t for t in templates)
    assert all("{signal}" not in t for t in templates)
    json.dumps(templates)


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


def test_the_guard_of_a_normalized_record_is_its_identity_and_planned_state():
    session = pg.normalize_row(row())
    assert pg.guard_of(session) == (
        4711,
        "2024-05-01T08:00:00.123456+00:00",
        "idle_in_transaction",
        "2024-05-01T08:05:00+00:00",
    )


@pytest.mark.parametrize(
    "key",
    [None, "", "4711", "abc@2024-01-01", "4711 @x", "-1@2024-01-01T00:00:00+00:00"],
)
def test_parse_key_rejects_what_is_not_a_key(key):
    with pytest.raises(ValueError):
        pg.parse_key(key)


def test_guard_refuses_a_record_whose_id_and_key_disagree():
    session = dict(pg.normalize_row(row()), id=4712)
    with pytest.raises(ValueError, match="does not match its key"):
        pg.guard_of(session)


# ---------------------------------------------------------------- preflight messages
def rights(**overrides):
    base = {
        "login": "hygiene",
        "superuser": False,
        "read_all_stats": True,
        "signal_backend": True,
        "version_num": 150006,
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "overrides, signal, needles, absent",
    [
        ({}, True, None, ()),
        ({"read_all_stats": False, "signal_backend": False, "superuser": True}, True, None, ()),
        ({"signal_backend": False}, False, None, ()),
        (
            {"read_all_stats": False},
            False,
            [
                "login hygiene on PostgreSQL at db1:5432",
                "lacks pg_read_all_stats",
                'GRANT pg_read_all_stats TO "hygiene"',
            ],
            ["pg_signal_backend"],
        ),
        (
            {"signal_backend": False},
            True,
            ["cannot cancel or terminate", 'GRANT pg_signal_backend TO "hygiene"'],
            ["pg_read_all_stats"],
        ),
        (
            {"read_all_stats": False, "signal_backend": False, "login": 'we"ird'},
            True,
            [
                "lacks pg_read_all_stats and pg_signal_backend",
                'GRANT pg_read_all_stats TO "we""ird"; GRANT pg_signal_backend TO "we""ird"',
            ],
            [],
        ),
        ({"version_num": 90624}, True, ["needs PostgreSQL 10 or later"], []),
    ],
    ids=["ok", "superuser", "info-needs-no-signal", "no-stats", "no-signal", "neither", "too-old"],
)
def test_preflight_error(overrides, signal, needles, absent):
    message = pg.preflight_error(rights(**overrides), signal, "db1:5432")
    if needles is None:
        assert message is None
        return
    for needle in needles:
        assert needle in message
    for word in absent:
        assert word not in message
