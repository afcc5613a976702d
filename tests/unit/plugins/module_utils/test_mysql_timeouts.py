# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MySQL / MariaDB timeouts (``_mysql/timeouts.py``): what each flavour can set, in its
variables' units, the statement builders (MySQL 8 included: no MySQL server here) and MariaDB's
option file. What the statements do on a server: tests/integration/test_timeouts.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _timeouts as t
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import timeouts as my_timeouts

HOSTILE = 'it\'s "quoted"; %s %(x)s -- DROP ROLE x; \\'


@pytest.mark.parametrize(
    "raw, field, words",
    [
        ({"databases": {"billing": {"statement": "1h"}}}, "timeouts.databases.billing.statement", "no per-database"),
        ({"roles": {"app": {"idle_session": "1h"}}}, "timeouts.roles.app.idle_session", "no per-user idle_session"),
        (
            {"roles": {"app": {"idle_in_transaction": "1h"}}},
            "timeouts.roles.app.idle_in_transaction",
            "no per-user idle_in_transaction",
        ),
        ({"server": {"idle_session": 0}}, "timeouts.server.idle_session", "wait_timeout has no 'no limit'"),
        ({"server": {"statement": "366d"}}, "timeouts.server.statement", "at most 31536000s"),
    ],
)
def test_mysql_refuses_what_neither_flavour_has_before_connecting(raw, field, words):
    with pytest.raises(PolicyError) as caught:
        my_timeouts.check_mysql(t.parse_timeouts(raw))
    assert caught.value.field == field and words in str(caught.value)


def test_mysql_takes_server_levels_and_a_per_user_statement_limit():
    my_timeouts.check_mysql(
        t.parse_timeouts(
            {"server": {"idle_session": "8h", "idle_in_transaction": 0}, "roles": {"app": {"statement": 0}}}
        )
    )


@pytest.mark.parametrize(
    "flavour, raw, words",
    [
        ("mysql", {"server": {"idle_in_transaction": "5m"}}, "MySQL has no idle-in-transaction timeout"),
        ("mysql", {"roles": {"app": {"statement": "5m"}}}, "no per-user statement limit"),
        ("mysql", {"server": {"statement": "50d"}}, "max_execution_time is at most"),
    ],
)
def test_what_mysql_8_has_not_fails_once_the_flavour_is_known(flavour, raw, words):
    with pytest.raises(PolicyError) as caught:
        my_timeouts.check_flavour(t.parse_timeouts(raw), flavour)
    assert words in str(caught.value)


def test_mariadb_has_what_mysql_8_has_not():
    my_timeouts.check_flavour(
        t.parse_timeouts(
            {"server": {"idle_in_transaction": "5m", "statement": "50d"}, "roles": {"a": {"statement": 1}}}
        ),
        "mariadb",
    )


def test_variables_and_units_of_each_flavour():
    by_field = dict((s.field, s) for s in t.parse_timeouts({"server": {"idle_session": 1, "statement": 2}}))
    assert my_timeouts.mysql_variable("mariadb", by_field["statement"]) == "max_statement_time"
    assert my_timeouts.mysql_variable("mysql", by_field["statement"]) == "max_execution_time"
    assert my_timeouts.mysql_variable("mysql", by_field["idle_session"]) == "wait_timeout"
    assert my_timeouts.mysql_wanted("max_execution_time", 2) == 2000
    assert my_timeouts.mysql_wanted("max_statement_time", 2) == 2.0 and isinstance(
        my_timeouts.mysql_wanted("max_statement_time", 2), float
    )
    assert my_timeouts.mysql_wanted("wait_timeout", 2) == 2 and isinstance(
        my_timeouts.mysql_wanted("wait_timeout", 2), int
    )


def test_server_level_mariadb_set_global_and_mysql_set_persist():
    assert my_timeouts.mysql_set_global_query("mariadb", "idle_transaction_timeout", 300) == (
        "SET GLOBAL idle_transaction_timeout = %s",
        (300,),
    )
    assert my_timeouts.mysql_set_global_query("mariadb", "max_statement_time", 7200.0) == (
        "SET GLOBAL max_statement_time = %s",
        (7200.0,),
    )
    assert my_timeouts.mysql_set_global_query("mysql", "wait_timeout", 28800) == (
        "SET PERSIST wait_timeout = %s",
        (28800,),
    )
    assert my_timeouts.mysql_set_global_query("mysql", "max_execution_time", 60000) == (
        "SET PERSIST max_execution_time = %s",
        (60000,),
    )


def test_mysql_reads():
    assert my_timeouts.mysql_variables_query(["max_statement_time", "wait_timeout"]) == (
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN (%s, %s)",
        ("max_statement_time", "wait_timeout"),
    )
    sql, params = my_timeouts.mysql_persisted_query(["wait_timeout"])
    assert "performance_schema.persisted_variables" in sql and params == ("wait_timeout",)


def test_mariadb_account_statements_pass_the_account_as_parameters():
    assert my_timeouts.mariadb_users_query("app") == (
        "SELECT User, Host, max_statement_time FROM mysql.user WHERE User = %s ORDER BY Host",
        ("app",),
    )
    assert my_timeouts.mariadb_users_query(HOSTILE + "@%")[1] == (HOSTILE, "%")
    query = my_timeouts.mariadb_user_statement_query(HOSTILE, "%", 600)
    assert query == ("ALTER USER %s@%s WITH MAX_STATEMENT_TIME %s", (HOSTILE, "%", 600.0))
    assert (
        t.shown_query(query)
        == "ALTER USER 'it''s \"quoted\"; %s %(x)s -- DROP ROLE x; \\'@'%' WITH MAX_STATEMENT_TIME 600"
    )


def test_the_option_file_that_keeps_mariadb_values():
    text = my_timeouts.persist_text({"wait_timeout": 28800, "max_statement_time": 0.5, "idle_transaction_timeout": 600})
    assert text.startswith("# Written by dbhygiene.sessions")
    assert (
        text.split("[mysqld]\n")[1]
        == "idle_transaction_timeout = 600\nmax_statement_time = 0.5\nwait_timeout = 28800\n"
    )


def test_a_file_is_replaced_whole(tmp_path):
    path = str(tmp_path / "timeouts.cnf")
    my_timeouts.write_file(path, "one\n")
    my_timeouts.write_file(path, "two\n")
    with open(path) as handle:
        assert handle.read() == "two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timeouts.cnf"]
    assert oct((tmp_path / "timeouts.cnf").stat().st_mode & 0o777) == "0o644"


def test_only_timeout_variables_are_ever_set():
    with pytest.raises(ValueError):
        my_timeouts.mysql_set_global_query("mariadb", "general_log_file", 1)
