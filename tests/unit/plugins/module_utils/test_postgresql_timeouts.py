# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL's timeouts (module_utils/_postgresql/timeouts.py), their pure parts: what the
engine can set, values in milliseconds, the statement builders. What the statements do on a
server: tests/integration/test_timeouts.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _timeouts as t
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import timeouts as pg

HOSTILE = 'it\'s "quoted"; %s %(x)s -- DROP ROLE x; \\'


# ------------------------------------------------------------------ what the engine can set
def test_postgresql_takes_every_level_within_int_max_milliseconds():
    pg.check_postgresql(
        t.parse_timeouts(
            {"server": {"statement": "24d"}, "roles": {"a": {"idle_session": 0}}, "databases": {"d": {"statement": 1}}}
        )
    )
    with pytest.raises(PolicyError) as caught:
        pg.check_postgresql(t.parse_timeouts({"roles": {"app": {"statement": "25d"}}}))
    assert caught.value.field == "timeouts.roles.app.statement" and "2147483s" in str(caught.value)
    with pytest.raises(PolicyError) as caught:
        pg.check_postgresql(t.parse_timeouts({"databases": {"x" * 64: {"statement": 1}}}))
    assert "63 bytes" in str(caught.value)


# ------------------------------------------------------------------ PostgreSQL values
@pytest.mark.parametrize(
    "text, ms",
    [
        ("0", 0),
        ("300", 300),
        ("300ms", 300),
        ("5s", 5000),
        ("1.5s", 1500),
        ("5min", 300000),
        ("2h", 7200000),
        ("1d", 86400000),
        ("1500us", 2),
        ("'30s'", 30000),
        (" 10 s ", 10000),
        ("five", None),
        (None, None),
    ],
)
def test_postgresql_values_in_milliseconds(text, ms):
    assert pg.pg_ms(text) == ms


@pytest.mark.parametrize(
    "ms, text",
    [(0, "0"), (500, "500ms"), (5000, "5s"), (90000, "90s"), (300000, "5min"), (7200000, "2h"), (172800000, "2d")],
)
def test_postgresql_values_as_postgresql_shows_them(ms, text):
    assert pg.pg_text(ms) == text
    assert pg.pg_ms(text) == ms


def test_a_setting_read_from_pg_db_role_setting():
    config = ["search_path=a, b", "statement_timeout=5min", "idle_in_transaction_session_timeout=0"]
    assert pg.pg_setconfig(config, "statement_timeout") == "5min"
    assert pg.pg_setconfig(config, "idle_in_transaction_session_timeout") == "0"
    assert pg.pg_setconfig(config, "idle_session_timeout") is None
    assert pg.pg_setconfig(None, "statement_timeout") is None


# ------------------------------------------------------------------ PostgreSQL statements
def test_postgresql_statements_per_level():
    assert pg.pg_set_query("server", None, "statement_timeout", 7200000) == (
        "ALTER SYSTEM SET statement_timeout = %s",
        ("2h",),
    )
    assert pg.pg_set_query("roles", "app", "idle_in_transaction_session_timeout", 300000) == (
        'ALTER ROLE "app" SET idle_in_transaction_session_timeout = %s',
        ("5min",),
    )
    assert pg.pg_set_query("databases", "Billing", "idle_session_timeout", 0) == (
        'ALTER DATABASE "Billing" SET idle_session_timeout = %s',
        ("0",),
    )
    assert pg.pg_reload_query() == ("SELECT pg_reload_conf()", ())


def test_postgresql_names_are_quoted_and_their_percent_signs_doubled():
    sql, params = pg.pg_set_query("roles", HOSTILE, "statement_timeout", 1000)
    assert sql == 'ALTER ROLE "it\'s ""quoted""; %%s %%(x)s -- DROP ROLE x; \\" SET statement_timeout = %s'
    assert params == ("1s",)
    assert (
        sql % ("'1s'",) == 'ALTER ROLE "it\'s ""quoted""; %s %(x)s -- DROP ROLE x; \\" SET statement_timeout = \'1s\''
    )
    assert t.shown_query((sql, params)).startswith('ALTER ROLE "it\'s ""quoted""; %s %(x)s')
    with pytest.raises(PolicyError, match=r"^timeouts: a name cannot contain a NUL character"):
        pg.pg_set_query("roles", "a\x00b", "statement_timeout", 1000)


def test_only_timeout_variables_are_ever_set():
    with pytest.raises(ValueError):
        pg.pg_set_query("server", None, "archive_command", 1000)


def test_postgresql_reads_take_the_names_as_parameters():
    assert pg.pg_known_query(["statement_timeout"]) == (
        "SELECT name, boot_val FROM pg_settings WHERE name = ANY(%s)",
        (["statement_timeout"],),
    )
    sql, params = pg.pg_file_query(["statement_timeout"])
    assert "pg_file_settings" in sql and "ORDER BY seqno" in sql and params == (["statement_timeout"],)
    sql, params = pg.pg_roles_query([HOSTILE])
    assert HOSTILE not in sql and params == ([HOSTILE],) and "setdatabase = 0" in sql
    sql, params = pg.pg_databases_query([HOSTILE])
    assert HOSTILE not in sql and params == ([HOSTILE],) and "setrole = 0" in sql
