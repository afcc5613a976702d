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
import os

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _postgresql as pg
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _postgresql_sql as pg_sql
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import GUARD_STILL_WAITING

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
        "query_timeout": 30,
        "ssl_mode": None,
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
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
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
    assert set(kwargs) == {"dbname", "application_name", "connect_timeout", "sslmode"} | set(pg.KEEPALIVES)
    assert kwargs["sslmode"] == "prefer"  # no TLS option at all: libpq's default, as before


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, "prefer"),
        ({"ca_cert": "/ca.crt"}, "verify-full"),
        ({"ssl_cert": "/c.crt", "ssl_key": "/c.key"}, "verify-full"),
        ({"ca_cert": "/ca.crt", "ssl_mode": "verify-ca"}, "verify-ca"),
        ({"ca_cert": "/ca.crt", "ssl_mode": "require"}, "require"),
        ({"ssl_mode": "disable"}, "disable"),
        ({"ssl_mode": "allow"}, "allow"),
        ({"ssl_mode": ""}, "prefer"),
    ],
)
def test_effective_ssl_mode(overrides, expected):
    assert pg.effective_ssl_mode(params(**overrides)) == expected
    assert pg.connect_kwargs(params(**overrides), "app")["sslmode"] == expected


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
@pytest.mark.parametrize("certificate", ["ca_cert", "ssl_cert"])
def test_a_mode_that_may_go_plain_text_is_refused_with_a_certificate(mode, certificate):
    with pytest.raises(pg.SessionError) as info:
        pg.connect_kwargs(params(ssl_mode=mode, **{certificate: "/x.crt"}), "app")
    message = str(info.value)
    assert "ssl_mode %s together with %s" % (mode, certificate) in message
    assert "verify-full" in message
    with pytest.raises(pg.SessionError, match="ssl_mode %s" % mode):
        pg.validate_connection_params(params(ssl_mode=mode, **{certificate: "/x.crt"}))


def test_connect_timeout_defaults_when_unset():
    assert pg.connect_kwargs(params(connect_timeout=None), "app")["connect_timeout"] == pg.DEFAULT_CONNECT_TIMEOUT
    assert pg.timeouts(params(connect_timeout=None, query_timeout=None)) == (10, 30)
    assert pg.timeouts({"connect_timeout": "7", "query_timeout": "5"}) == (7, 5)  # the controller passes raw values


# ---------------------------------------------------------------- hostile input
@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("login_host", "db1\x00.example.com", "login_host must not contain the control character '\\x00'"),
        ("login_host", "db1\n.example.com", "login_host must not contain the control character '\\n'"),
        ("login_user", "hy\x00giene", "login_user must not contain"),
        ("login_db", "app\x1bdb", "login_db must not contain"),
        ("login_unix_socket", "/run/\x00pg", "login_unix_socket must not contain"),
        ("ca_cert", "/ca\x00.crt", "ca_cert must not contain"),
        ("ssl_cert", "/c\x7f.crt", "ssl_cert must not contain"),
        ("ssl_key", "/k\x00.key", "ssl_key must not contain"),
        ("ssl_mode", "verify-full\x00", "ssl_mode must not contain"),
        ("ssl_mode", "sloppy", "ssl_mode must be one of disable, allow, prefer, require, verify-ca, verify-full"),
        ("login_user", 12, "login_user must be a string, not 12"),
        ("login_port", 0, "login_port must be between 1 and 65535, not 0"),
        ("login_port", 65536, "login_port must be between 1 and 65535, not 65536"),
        ("login_port", -5432, "login_port must be between 1 and 65535, not -5432"),
        ("login_port", "many", "login_port must be an integer, not 'many'"),
        ("connect_timeout", 0, "connect_timeout must be between 1 and 3600 seconds, not 0"),
        ("connect_timeout", -1, "connect_timeout must be between 1 and 3600 seconds, not -1"),
        ("connect_timeout", 10**12, "connect_timeout must be between 1 and 3600 seconds, not 1000000000000"),
        ("query_timeout", 0, "query_timeout must be between 1 and 3600 seconds, not 0"),
        ("query_timeout", 99999999999, "query_timeout must be between 1 and 3600 seconds"),
        ("query_timeout", "nan", "query_timeout must be an integer, not 'nan'"),
    ],
)
def test_hostile_connection_options_fail_naming_the_field(field, value, needle):
    with pytest.raises(pg.SessionError) as info:
        pg.validate_connection_params(params(**{field: value}))
    assert needle in str(info.value)
    assert "s3cret-pw" not in str(info.value)


def test_open_driver_checks_the_options_before_anything_else():
    with pytest.raises(pg.SessionError, match="login_host must not contain"):
        pg.open_driver(params(login_host="a\x00b"))


def test_a_nul_in_the_password_is_refused_without_showing_it():
    with pytest.raises(pg.SessionError) as info:
        pg.validate_connection_params(params(login_password="s3cret\x00pw"))
    assert "login_password" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_long_values_are_cut_in_messages():
    with pytest.raises(pg.SessionError) as info:
        pg.validate_connection_params(params(login_host="h" * 100000 + "\x00"))
    message = str(info.value)
    assert len(message) < 400
    assert "(100001 characters)" in message
    assert pg.shown("x" * 10) == "'xxxxxxxxxx'"


def test_long_hosts_are_cut_in_the_target():
    described = pg.describe_target(params(login_host="h" * 5000))
    assert described == "h" * 200 + "... (5000 characters):5432"


def test_good_options_pass():
    pg.validate_connection_params(params())
    pg.validate_connection_params(params(ssl_mode="verify-full", ca_cert="/ca.crt", login_port=1, connect_timeout=3600))


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
    assert "default" not in spec["ssl_mode"]  # unset: decided by effective_ssl_mode()
    assert spec["query_timeout"] == {"type": "int", "default": 30}


def test_argument_spec_has_no_alias_community_postgresql_removed():
    spec = pg.connection_argument_spec()
    aliases = {alias for option in spec.values() for alias in option.get("aliases", [])}
    assert not aliases & {"login", "host", "port", "unix_socket", "db", "database"}


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
        "still_waiting": [False, False],
    }
    assert "%s(s.pid)" % function in sql
    other = "pg_cancel_backend" if function == "pg_terminate_backend" else "pg_terminate_backend"
    assert other not in sql
    # Every guard precedes the signal in the CASE, so the signal is reached only when all hold.
    signal_at = sql.index(function)
    for guard in (
        "s.backend_start IS DISTINCT FROM v.backend_start",
        "s.backend_type IS DISTINCT FROM 'client backend'",
        "IS DISTINCT FROM v.state",
        "s.state_change IS DISTINCT FROM v.state_change",
        "WHEN v.still_waiting AND s.wait_event_type IS DISTINCT FROM 'Lock' THEN 'lock_released'",
        "pg_has_role('pg_signal_backend', 'USAGE')",
    ):
        assert -1 < sql.index(guard) < signal_at, guard
    for value in ("101", "202", "2024-01-0"):
        assert value not in sql


def test_end_query_reads_each_victim_in_a_fresh_snapshot():
    sql, dummy = pg.end_query(GUARDS, "terminate")
    # No view read once for the whole statement: per row, a clear, then a read of that one pid.
    assert "pg_stat_activity" not in sql
    clear = sql.index("CROSS JOIN LATERAL (SELECT pg_stat_clear_snapshot() AS cleared, v.ord, v.pid) AS c")
    read = sql.index("LEFT JOIN LATERAL (")
    assert sql.index("FROM pg_stat_get_activity(c.pid) AS s") > read > clear
    # The check and the signal are computed in the same subquery as the read.
    assert read < sql.index("pg_terminate_backend(s.pid)") < sql.index(") AS a ON true")
    assert sql.count("pg_stat_clear_snapshot()") == 1 and sql.count("pg_stat_get_activity(") == 1
    assert pg_sql._VICTIMS_SQL in sql


def test_end_query_refuses_a_pid_twice_in_one_batch():
    with pytest.raises(ValueError, match="one pid twice"):
        pg.end_query([GUARDS[0], (101,) + GUARDS[1][1:]], "terminate")


def test_end_query_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="terminate or cancel"):
        pg.end_query(GUARDS, "pg_reload_conf")


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
    assert lock_args == unlock_args == {"key": pg_sql.SWEEP_LOCK_KEY}
    assert pg_sql.SWEEP_LOCK_KEY == 2306003038  # fixed: two versions of the collection must share it


def test_query_templates_are_templates():
    templates = pg.query_templates()
    assert len(templates) == 9
    assert any("pg_terminate_backend" in t for t in templates)
    assert any("pg_cancel_backend" in t for t in templates)
    assert any("pg_try_advisory_lock" in t for t in templates)
    assert all("{signal}" not in t for t in templates)
    json.dumps(templates)


def test_server_role_from_recovery():
    assert pg.role_query() == ("SELECT pg_is_in_recovery()", {})
    assert pg_sql.server_role(True) == "standby"
    assert pg_sql.server_role(False) == "primary"


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


def test_the_guard_of_a_normalized_record_is_its_identity_and_planned_state():
    session = pg.normalize_row(row())
    assert pg.guard_of(session) == (
        4711,
        "2024-05-01T08:00:00.123456+00:00",
        "idle_in_transaction",
        "2024-05-01T08:05:00+00:00",
        False,
    )


@pytest.mark.parametrize(
    "key",
    [None, "", "4711", "abc@2024-01-01", "4711 @x", "-1@2024-01-01T00:00:00+00:00"],
)
def test_parse_key_rejects_what_is_not_a_key(key):
    with pytest.raises(ValueError):
        pg_sql.parse_key(key)


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


def test_the_statements_are_pure_and_the_driver_re_exports_them():
    """_postgresql_sql imports without psycopg2; _postgresql's names for its builders are the same objects."""
    import subprocess
    import sys

    collections = os.path.abspath(os.path.join(os.path.dirname(pg.__file__), "..", "..", "..", "..", ".."))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.modules['psycopg2'] = None; "
        "from ansible_collections.dbhygiene.sessions.plugins.module_utils import _postgresql_sql as s; "
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
    for name in ("end_query", "list_sessions_query", "normalize_row", "guard_of", "query_templates", "_VICTIMS_SQL"):
        assert getattr(pg, name) is getattr(pg_sql, name)


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


def test_the_guard_of_a_waiter_planned_by_waiting_longer_than_requires_it_still_waits():
    session = pg.normalize_row(row(state="active", blocked_by=[3], lock_wait_seconds=5.0, lock_kind="relation"))
    assert pg.guard_of(session)[4] is False
    marked = dict(session, **{GUARD_STILL_WAITING: True})
    guard = pg.guard_of(marked)
    assert guard[4] is True
    sql, args = pg.end_query([guard, GUARDS[1]], "cancel")
    assert args["still_waiting"] == [True, False]


def test_end_query_still_takes_guards_without_the_wait_flag():
    assert pg.end_query(GUARDS, "cancel")[1]["still_waiting"] == [False, False]


@pytest.mark.parametrize(
    "name, quoted",
    [("app", '"app"'), ('we"ird', '"we""ird"'), ("100%", '"100%%"'), ("a b;--", '"a b;--"')],
)
def test_quote_ident(name, quoted):
    assert pg_sql.quote_ident(name) == quoted


def test_quote_ident_for_a_statement_without_parameters_keeps_percent_signs():
    assert pg_sql.quote_ident('100% "x"', params=False) == '"100% ""x"""'


@pytest.mark.parametrize("bad", ["", None, "a\x00b", 3])
def test_quote_ident_refuses_what_is_no_identifier(bad):
    with pytest.raises(ValueError, match="not an identifier"):
        pg_sql.quote_ident(bad)
