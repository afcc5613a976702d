# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The timeouts core's pure parts: the option, what each engine can set, values in the
engines' units, the statement builders (MySQL 8 included: no MySQL server here), the
diff and the trail records. What the statements do on a server:
tests/integration/test_timeouts.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _timeouts as t
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _trail

HOSTILE = 'it\'s "quoted"; %s %(x)s -- DROP ROLE x; \\'


def settings(raw):
    return [(s.level, s.target, s.field, s.seconds) for s in t.parse_timeouts(raw)]


# ------------------------------------------------------------------ the option
def test_every_level_and_the_duration_syntax_of_the_policy():
    raw = {
        "server": {"idle_session": "1h30m", "idle_in_transaction": "5m", "statement": 0},
        "roles": {"app": {"statement": "0s"}, "batch": {"idle_in_transaction": 90}},
        "databases": {"billing": {"idle_session": "2d"}},
    }
    assert settings(raw) == [
        ("server", None, "idle_session", 5400),
        ("server", None, "idle_in_transaction", 300),
        ("server", None, "statement", 0),
        ("roles", "app", "statement", 0),
        ("roles", "batch", "idle_in_transaction", 90),
        ("databases", "billing", "idle_session", 172800),
    ]


def test_a_field_left_null_is_not_managed():
    assert settings({"server": {"statement": None, "idle_session": "10m"}, "roles": None}) == [
        ("server", None, "idle_session", 600)
    ]


def test_paths_name_where_a_setting_was_given():
    paths = [s.path for s in t.parse_timeouts({"server": {"statement": 1}, "roles": {"app": {"statement": 1}}})]
    assert paths == ["timeouts.server.statement", "timeouts.roles.app.statement"]


@pytest.mark.parametrize(
    "raw, field, words",
    [
        ("30m", "timeouts", "expected a mapping"),
        ({"servers": {}}, "timeouts.servers", "unknown key"),
        ({"server": {"idle": "5m"}}, "timeouts.server.idle", "unknown key"),
        ({"server": {"statement": "5 minutes"}}, "timeouts.server.statement", "invalid duration"),
        ({"server": {"statement": -1}}, "timeouts.server.statement", "negative"),
        ({"server": {"statement": 1.5}}, "timeouts.server.statement", "fractions"),
        ({"server": {"statement": True}}, "timeouts.server.statement", "invalid duration"),
        ({"server": {"statement": "400d"}}, "timeouts.server.statement", "above the maximum"),
        ({"roles": ["app"]}, "timeouts.roles", "expected a mapping"),
        ({"roles": {"app": "5m"}}, "timeouts.roles.app", "expected a mapping"),
        ({"roles": {"": {"statement": 1}}}, "timeouts.roles", "non-empty"),
        ({"databases": {"billing": {"wait": 1}}}, "timeouts.databases.billing.wait", "unknown key"),
        ({}, "timeouts", "nothing to set"),
        ({"server": {"statement": None}}, "timeouts", "nothing to set"),
    ],
)
def test_bad_input_names_the_field_and_the_value(raw, field, words):
    with pytest.raises(PolicyError) as caught:
        t.parse_timeouts(raw)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert str(caught.value).startswith(field + ":")


def test_checked_settings_checks_against_the_engine_it_is_given():
    raw = {"databases": {"billing": {"statement": "1h"}}}
    assert [setting.path for setting in t.checked_settings(raw, "postgresql")] == [
        "timeouts.databases.billing.statement"
    ]
    with pytest.raises(PolicyError, match="MySQL/MariaDB cannot set this"):
        t.checked_settings(raw, "mysql")


# ------------------------------------------------------------------ values as statements show them
@pytest.mark.parametrize(
    "value, text", [(0, "0"), (600, "600"), (7200.0, "7200"), (0.5, "0.5"), (31536000.0, "31536000")]
)
def test_mysql_values_as_text(value, text):
    assert t.mysql_value_text(value) == text


# ------------------------------------------------------------------ diff and trail
def _items():
    [server, role] = t.parse_timeouts({"server": {"statement": "1h"}, "roles": {"app": {"statement": 0}}})
    return [
        t.plan_item(server, "statement_timeout", None, 0, 3600000, "0", "1h"),
        t.plan_item(role, "statement_timeout", "app", None, 0, None, "0"),
    ]


def test_changed_compares_engine_values_not_their_text():
    [server, role] = _items()
    assert server["changed"] and role["changed"]
    [setting] = t.parse_timeouts({"server": {"statement": "30m"}})
    assert not t.plan_item(setting, "statement_timeout", None, 1800000, 1800000, "30min", "30min")["changed"]


def test_the_diff_shows_current_and_wanted():
    [diff] = t.diff_of(_items(), "db1:5432")
    assert diff["before"] == "server: statement_timeout = 0\nrole app: statement_timeout = (not set)\n"
    assert diff["after"] == "server: statement_timeout = 1h\nrole app: statement_timeout = 0\n"
    assert diff["before_header"] == "db1:5432 (current)"
    diffs = t.diff_of(_items(), "db1:3306", (None, "[mysqld]\n"), "/etc/x.cnf")
    assert diffs[1] == {
        "before_header": "/etc/x.cnf",
        "after_header": "/etc/x.cnf",
        "before": "",
        "after": "[mysqld]\n",
    }


def test_one_trail_line_per_setting_changed():
    items = _items()
    items[1]["changed"] = False
    result = {"settings": items, "persist_file": "/etc/x.cnf", "persist_file_changed": True}
    lines = _trail.timeouts_trail_records("db1", "mysql", result, True, {"login_host": "10.0.0.1", "job_id": 7}, "T")
    assert [(r["rule"], r["outcome"], r.get("before"), r.get("after")) for r in lines] == [
        ("timeouts.server.statement", "would_set", "0", "1h"),
        ("persist_file", "would_set", None, None),
    ]
    assert all(r["check_mode"] is True and r["host"] == "db1" and r["job_id"] == 7 and r["time"] == "T" for r in lines)
    real = _trail.timeouts_trail_records("db1", "postgresql", {"settings": items}, False, {}, "T")
    assert [r["outcome"] for r in real] == ["set"]


def test_a_partial_failure_records_the_statements_that_ran():
    result = {"failed": True, "msg": "x", "queries": ["SET GLOBAL wait_timeout = 60"]}
    [line] = _trail.timeouts_trail_records("db1", "mysql", result, False, {}, "T")
    assert line["statement"] == "SET GLOBAL wait_timeout = 60" and line["outcome"] == "set"


def test_a_change_that_fails_after_others_says_which_ran():
    ran = []

    def execute(query, doing):
        if len(ran) == 1:
            raise t.SessionError(f"cannot {doing} on db1: permission denied")
        ran.append(query)

    queries = [("SET GLOBAL wait_timeout = %s", (60,)), ("SET GLOBAL max_statement_time = %s", (5.0,))]
    with pytest.raises(t.ApplyError) as caught:
        t.apply_changes(execute, queries)
    assert caught.value.done == ["SET GLOBAL wait_timeout = 60"]
    assert "cannot run SET GLOBAL max_statement_time = 5 on db1" in str(caught.value)
    assert str(caught.value).endswith("changed before it: SET GLOBAL wait_timeout = 60")

    def down(query, doing):
        raise t.SessionError(f"cannot {doing}: the server is down")

    # Nothing ran: the error as it is, nothing to add.
    with pytest.raises(t.SessionError) as first:
        t.apply_changes(down, queries)
    assert not isinstance(first.value, t.ApplyError)
