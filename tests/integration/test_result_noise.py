# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a module's result carries at default verbosity (issue 21): no statement templates
(`queries`, about 12 KB) but at -vvv, and, when a statement failed, that one statement
(`failed_statement`: its template, no values). Real servers, both engines."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import _mysql_fixtures as myfx
import _postgresql_fixtures as pgfx
from conftest import run_module

POLICY = {"name": "quiet", "rules": [{"name": "none", "states": ["idle"], "applications": ["no-such-app-zz"]}]}


def test_queries_only_at_vvv(fleet):
    """At default verbosity no template (also asserted by test_{postgresql,mysql}_drain); at -vvv, the templates."""
    args = dict((k, v) for k, v in myfx.module_conn(fleet, "mariadb1").items() if v is not None)
    loud, run = run_module("dbhygiene.sessions.mysql_sessions", dict(args, policy=POLICY), check=True, verbosity=3)
    assert not loud.get("failed") and loud["queries"], run.output
    assert all(isinstance(q, str) for q in loud["queries"])


def test_a_failed_statement_is_named_alone(fleet):
    """The hygiene login may not read pg_file_settings (the server level's configuration files):
    the failure names that one statement, as a template."""
    args = pgfx.conn_params(fleet, "pg1")
    timeouts = {"server": {"idle_in_transaction": "17m"}}
    result, run = run_module("dbhygiene.sessions.postgresql_timeouts", dict(args, timeouts=timeouts))
    assert result.get("failed"), run.output
    assert "failed_statement" in result, result
    assert "pg_file_settings" in result["msg"], result
    assert result["failed_statement"].startswith("SELECT name, setting FROM pg_file_settings WHERE"), result
    assert "%s" in result["failed_statement"] and "queries" not in result  # a template, and no 12 KB of them
